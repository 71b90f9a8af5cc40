"""HIL HTML report: one self-contained file (inline SVG charts, inline CSS, no scripts
or external resources): summary table, confusion matrix and per-class accuracy,
per-layer latency, per-layer arena use, the memory plan (buffers as rectangles:
op index across, arena offset down), the divergence finding and the samples that
differ."""
from __future__ import annotations

import html
from pathlib import Path

from toolchain.hil.runner import HilResult

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]
FONT = "font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _n(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return f"{v:,}"


def _svg(w, h, body: str, title: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}" '
            f'style="{FONT};font-size:11px">{body}</svg>')


def _short(name: str, n: int = 26) -> str:
    name = name.strip("/")
    return name if len(name) <= n else "…" + name[-(n - 1):]


def hbar_chart(labels, values, unit: str, color="#4e79a7", title="", note=None,
               share: bool = True) -> str:
    """Horizontal bars, one per label, with the value printed at the bar's end."""
    values = [v or 0 for v in values]
    lw, bw, rh = 230, 380, 20
    vmax = max(values, default=0) or 1
    total = sum(values) or 1
    h = rh * len(labels) + 34
    parts = [f'<text x="{lw}" y="14" fill="#555">{_e(unit)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = 24 + i * rh
        w = max(1.0, bw * v / vmax)
        tip = f"{lab}: {v:,} {unit} ({100 * v / total:.1f} %)"
        parts.append(f'<text x="{lw - 6}" y="{y + 13}" text-anchor="end" fill="#222">'
                     f'{_e(lab)}</text>')
        parts.append(f'<rect x="{lw}" y="{y + 2}" width="{w:.1f}" height="{rh - 5}" rx="2" '
                     f'fill="{(note or {}).get(i, color)}"><title>{_e(tip)}</title></rect>')
        pct = f'<tspan fill="#888">({100 * v / total:.0f} %)</tspan>' if share else ""
        parts.append(f'<text x="{lw + w + 5:.1f}" y="{y + 13}" fill="#333">{v:,} {pct}</text>')
    return _svg(lw + bw + 120, h, "".join(parts), title)


def confusion_svg(m: list[list[int]]) -> str:
    k = len(m)
    cell = max(22, min(40, 360 // max(k, 1)))
    off = 46
    w = off + cell * k + 110
    h = off + cell * k + 10
    vmax = max((max(r) for r in m), default=1) or 1
    parts = [f'<text x="{off + cell * k / 2}" y="12" text-anchor="middle" fill="#444">'
             f'device prediction</text>',
             f'<text x="12" y="{off + cell * k / 2}" text-anchor="middle" fill="#444" '
             f'transform="rotate(-90 12 {off + cell * k / 2})">true label</text>']
    for j in range(k):
        parts.append(f'<text x="{off + j * cell + cell / 2}" y="{off - 6}" '
                     f'text-anchor="middle" fill="#555">{j}</text>')
    for i in range(k):
        parts.append(f'<text x="{off - 6}" y="{off + i * cell + cell / 2 + 4}" '
                     f'text-anchor="end" fill="#555">{i}</text>')
        for j in range(k):
            v = m[i][j]
            a = v / vmax
            if i == j:
                fill = f"rgba(78,121,167,{0.08 + 0.92 * a:.3f})"
            else:
                fill = f"rgba(225,87,89,{(0.15 + 0.85 * a) if v else 0.0:.3f})"
            parts.append(f'<rect x="{off + j * cell}" y="{off + i * cell}" width="{cell - 1}" '
                         f'height="{cell - 1}" fill="{fill}" stroke="#eee">'
                         f'<title>label {i}, predicted {j}: {v}</title></rect>')
            if v:
                col = "#fff" if a > 0.55 else "#222"
                parts.append(f'<text x="{off + j * cell + cell / 2}" '
                             f'y="{off + i * cell + cell / 2 + 4}" text-anchor="middle" '
                             f'fill="{col}">{v}</text>')
    # per-class accuracy at the right
    x0 = off + cell * k + 10
    for i in range(k):
        n = sum(m[i])
        acc = m[i][i] / n if n else None
        txt = f"{100 * acc:.0f} % of {n}" if acc is not None else "–"
        parts.append(f'<text x="{x0}" y="{off + i * cell + cell / 2 + 4}" fill="#333">'
                     f'{txt}</text>')
    return _svg(w, h, "".join(parts), "confusion matrix")


def memory_plan_svg(plan: dict, op_names: list[str]) -> str:
    """Buffers as rectangles: x = op index from first write to last read, y = arena offset."""
    bufs = [b for b in plan.get("buffers", []) if b.get("size")]
    n_ops = max(len(op_names), 1)
    arena = plan.get("arena_size") or max((b["offset"] + b["size"] for b in bufs), default=1)
    left, top, pw, ph = 70, 24, 640, 300
    col_w = pw / (n_ops + 1)   # column 0 = "before invoke" (graph input)

    def x_of(i):
        return left + (i + 1) * col_w

    parts = []
    # grid + axes
    for i in range(-1, n_ops):
        x = x_of(i)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" '
                     f'stroke="#eee"/>')
        lab = "in" if i < 0 else str(i)
        parts.append(f'<text x="{x + col_w / 2:.1f}" y="{top + ph + 14}" text-anchor="middle" '
                     f'fill="#555">{lab}</text>')
    for f in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + ph * f
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                     f'stroke="#ddd" stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
                     f'{int(arena * f):,}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
                 f'stroke="#999"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{top + ph + 30}" text-anchor="middle" '
                 f'fill="#444">op index (first write … last read)</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" fill="#444" '
                 f'transform="rotate(-90 14 {top + ph / 2})">arena offset (B)</text>')
    for k, b in enumerate(sorted(bufs, key=lambda b: (b.get("first_op", 0), b["offset"]))):
        first = max(-1, b.get("first_op", 0))
        last = min(n_ops - 1, b.get("last_op", n_ops - 1))
        x = x_of(first) + 1
        w = max(3.0, x_of(last) + col_w - x - 1)
        y = top + ph * b["offset"] / arena
        h = max(2.0, ph * b["size"] / arena - 1)
        color = "#bab0ac" if b.get("kind") == "scratch" else PALETTE[k % len(PALETTE)]
        names = b.get("tensors", [])
        tip = (f"{', '.join(names)}: {b['size']:,} B at offset {b['offset']:,}, "
               f"ops {b.get('first_op')}…{b.get('last_op')}")
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" '
                     f'fill="{color}" fill-opacity="0.8" stroke="#fff"><title>{_e(tip)}'
                     f'</title></rect>')
        if h >= 12 and w >= 60:
            parts.append(f'<text x="{x + 4:.1f}" y="{y + min(h, 24) / 2 + 4:.1f}" fill="#fff">'
                         f'{_e(_short(names[0] if names else "", int(w / 6.5)))}</text>')
    return _svg(left + pw + 20, top + ph + 40, "".join(parts), "memory plan")


def arena_use_svg(rows: list[dict], arena: int) -> str:
    labels = [f"{r['index']} {r['type'].lower()}" for r in rows]
    vals = [r.get("arena_live", 0) for r in rows]
    return hbar_chart(labels, vals, f"bytes live in the arena during each op (arena "
                                    f"{arena:,} B)", color="#59a14f", title="arena use",
                      share=False)


def latency_hist_svg(lat: list[int], unit: str) -> str:
    """Latency per sample as a strip (min..max), for spotting outliers."""
    if not lat:
        return ""
    lo, hi = min(lat), max(lat)
    w, h, left = 640, 60, 10
    parts = [f'<line x1="{left}" y1="30" x2="{left + w}" y2="30" stroke="#ccc"/>']
    span = (hi - lo) or 1
    for v in lat:
        x = left + w * (v - lo) / span
        parts.append(f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="42" stroke="#4e79a7" '
                     f'stroke-opacity="0.35"/>')
    parts.append(f'<text x="{left}" y="56" fill="#555">{lo:,}</text>')
    parts.append(f'<text x="{left + w}" y="56" text-anchor="end" fill="#555">{hi:,} '
                 f'{_e(unit)}</text>')
    return _svg(w + 20, h, "".join(parts), "latency per sample")


CSS = """
body{%s;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:16px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;margin-left:8px;font-size:14px}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;font-size:13px} td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{color:#555;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #e3e3e3;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .l{color:#666;font-size:12px}
.warn{background:#fff4e5;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px}
code{background:#f5f5f5;padding:1px 4px;border-radius:3px}
""" % FONT


def render_html(res: HilResult) -> str:
    s, m = res.summary(), res.meta
    ok = res.passed
    title = f"HIL report: {Path(str(m.get('model', 'model'))).name} on {m.get('board', '?')}"
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}<span class='badge {'pass' if ok else 'fail'}'>"
           f"{'PASS' if ok else 'FAIL'}</span></h1>",
           f"<div class='sub'>{_e(m.get('started', ''))} · oracle {_e(res.oracle)} · "
           f"{res.done}/{res.planned} samples{'' if res.complete else ' (cut short)'}</div>"]
    cards = []
    if s["device_accuracy"] is not None:
        cards.append((f"{100 * s['device_accuracy']:.2f} %", "device accuracy"))
        cards.append((f"{100 * s['host_accuracy']:.2f} %", f"host accuracy ({res.oracle})"))
    cards.append((f"{res.agree}/{res.done}", "byte-exact outputs"))
    cards.append((str(res.max_abs_diff), "max abs difference"))
    lat = res.latency_stats()
    if lat:
        cards.append((f"{lat['mean']:,.0f}", f"{lat['unit']} / inference (mean)"))
    if m.get("flash_used"):
        cards.append((f"{m['flash_used'] / 1024:,.1f} KiB", "flash"))
    if m.get("ram_used"):
        cards.append((f"{m['ram_used'] / 1024:,.1f} KiB", "RAM"))
    out.append("<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{_e(v)}</div><div class='l'>{_e(lab)}</div></div>"
        for v, lab in cards) + "</div>")
    for f in res.failures():
        out.append(f"<p class='warn'>{_e(f)}</p>")

    # summary table
    rows = [("model", m.get("model")), ("model hash", (m.get("model_hash") or "")[:16]),
            ("board", f"{m.get('board')} ({m.get('board_kind')})"),
            ("device", m.get("device_url")), ("firmware", m.get("firmware")),
            ("firmware build", m.get("firmware_build_id")),
            ("data", f"{m.get('data')} ({m.get('data_dtype')}, {m.get('layout')})"),
            ("samples", f"{res.done} run of {res.planned} planned ({m.get('data_total')} in file)"),
            ("oracle", res.oracle + (f" — {m['oracle_note']}" if m.get("oracle_note") else ""))]
    if s["device_accuracy"] is not None:
        rows += [("device accuracy", f"{100 * s['device_accuracy']:.2f} %"),
                 ("host accuracy", f"{100 * s['host_accuracy']:.2f} %")]
    rows += [("byte-exact agreement", f"{res.agree}/{res.done}"),
             ("max abs difference", f"{res.max_abs_diff} (tolerance {res.config.tolerance})")]
    if lat:
        rows.append(("latency", f"mean {lat['mean']:,.0f} / min {lat['min']:,} / max "
                                f"{lat['max']:,} {lat['unit']}"))
    for what in ("flash", "ram"):
        u, b = m.get(f"{what}_used"), m.get(f"{what}_budget")
        if u:
            rows.append((what.upper() if what == "ram" else what,
                         f"{u:,} B" + (f" of {b:,} B ({100 * u / b:.1f} %)" if b else "")))
    if m.get("arena_size"):
        rows.append(("activation arena", f"{m['arena_size']:,} B"))
    rows.append(("wall time", f"{res.wall_s:.2f} s"))
    out.append("<h2>Summary</h2><table>" + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v is not None)
        + "</table>")

    if res.divergence:
        d = res.divergence
        out.append("<h2>Divergence finder</h2>")
        out.append(f"<p>{_e(d.get('message', ''))}</p>")
        if d.get("checked"):
            out.append("<table><tr><th>#</th><th>layer</th><th>type</th><th>shape</th>"
                       "<th>differing values</th></tr>" + "".join(
                           f"<tr><td class='num'>{c['index']}</td><td>{_e(c['name'])}</td>"
                           f"<td>{_e(c['type'])}</td><td>{_e(c['shape'])}</td>"
                           f"<td class='num'>{'✔ 0' if c.get('equal') else _n(c.get('count'))}"
                           f"</td></tr>" for c in d["checked"]) + "</table>")

    conf = res.confusion()
    if conf:
        out.append("<h2>Confusion matrix (device) and per-class accuracy</h2>")
        out.append(confusion_svg(conf))

    if res.layers and any("latency" in r for r in res.layers):
        unit = next(r.get("unit", "") for r in res.layers if "latency" in r)
        labels = [f"{r['index']} {r['type'].lower()}" for r in res.layers]
        out.append(f"<h2>Latency per layer ({_e(unit)})</h2>")
        out.append(hbar_chart(labels, [r.get("latency", 0) for r in res.layers],
                              f"{unit} per inference", title="latency per layer"))
    if lat:
        out.append(f"<h2>Latency per sample</h2>"
                   + latency_hist_svg([x.latency for x in res.samples
                                       if x.latency is not None], lat["unit"]))

    plan = res.memory_plan or {}
    if plan.get("buffers"):
        out.append("<h2>Activation arena: use per layer</h2>")
        out.append(arena_use_svg(res.layers, plan.get("arena_size", 0)))
        out.append("<h2>Memory plan over time</h2>")
        out.append(f"<p class='sub'>Each rectangle is one buffer in the {plan['arena_size']:,} B "
                   f"arena (no sharing would need {plan.get('naive_size', 0):,} B); it spans "
                   f"the ops from its write to its last read. Hover for names.</p>")
        out.append(memory_plan_svg(plan, [r["name"] for r in res.layers]))

    if res.layers:
        out.append("<h2>Layers</h2><table><tr><th>#</th><th>layer</th><th>type</th>"
                   "<th>output</th><th>latency</th><th>arena live</th></tr>" + "".join(
                       f"<tr><td class='num'>{r['index']}</td><td>{_e(_short(r['name'], 40))}"
                       f"</td><td>{_e(r['type'])}</td><td>{_e(r['shape'])}</td>"
                       f"<td class='num'>{_n(r.get('latency'))}</td>"
                       f"<td class='num'>{_n(r.get('arena_live'))}</td></tr>"
                       for r in res.layers) + "</table>")

    bad = [x for x in res.samples if not x.exact][:20]
    if bad:
        out.append("<h2>Samples that differ (first 20)</h2><table><tr><th>sample</th>"
                   "<th>max abs diff</th><th>device</th><th>reference</th></tr>" + "".join(
                       f"<tr><td class='num'>{x.index}</td><td class='num'>{x.max_abs_diff}</td>"
                       f"<td><code>{_e(x.device_out[:16])}</code></td>"
                       f"<td><code>{_e(x.host_out[:16])}</code></td></tr>" for x in bad)
                   + "</table>")
    if res.stopped:
        out.append(f"<h2>Run cut short</h2><p class='warn'>stopped at sample "
                   f"{res.stopped['at']}: {_e(res.stopped['error'])}</p>")
    out.append("<p class='sub' style='margin-top:32px'>Generated by <code>mcu hil</code>. "
               "Per-sample results are in the JSON report.</p></body></html>")
    return "\n".join(out)


def write_html(res: HilResult, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(render_html(res), encoding="utf-8")
    tmp.replace(p)
    return p


# --------------------------------------------------------------------------- spiking models
def raster_svg(raster: dict, neurons: dict, timesteps: int, max_rows: int = 64,
               labels: dict | None = None) -> str:
    """Spike raster of one sample: a panel per spiking layer, time step across, neuron
    index down (the first max_rows neurons of large layers), one mark per spike."""
    left, cw, top = 150, max(8, min(24, 600 // max(timesteps, 1))), 18
    parts, y = [], top
    for li, (name, steps) in enumerate(raster.items()):
        n = int(neurons.get(name, 0)) or 1 + max((max(s) for s in steps if s), default=0)
        rows = min(n, max_rows)
        rh = max(2.0, min(8.0, 160 / rows))
        h = rows * rh
        color = PALETTE[li % len(PALETTE)]
        total = sum(len(s) for s in steps)
        parts.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end" fill="#222">'
                     f'{_e(_short((labels or {}).get(name, name), 22))}</text>')
        parts.append(f'<text x="{left - 8}" y="{y + 26}" text-anchor="end" fill="#777">'
                     f'{n} neurons{"" if n <= max_rows else f" (first {max_rows})"}</text>')
        parts.append(f'<text x="{left - 8}" y="{y + 40}" text-anchor="end" fill="#777">'
                     f'{total} spikes</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{cw * timesteps}" height="{h:.1f}" '
                     f'fill="#fafafa" stroke="#ccc"/>')
        for t, idx in enumerate(steps):
            for j in idx:
                if j < rows:
                    parts.append(f'<rect x="{left + t * cw + 1}" y="{y + j * rh:.1f}" '
                                 f'width="{cw - 2}" height="{max(1.0, rh - 0.6):.1f}" '
                                 f'fill="{color}"><title>{_e(name)} neuron {j}, step {t}'
                                 f'</title></rect>')
        y += max(h, 44) + 16
    for t in range(timesteps):
        if timesteps <= 30 or t % 5 == 0:
            parts.append(f'<text x="{left + t * cw + cw / 2}" y="{y}" text-anchor="middle" '
                         f'fill="#555">{t}</text>')
    parts.append(f'<text x="{left + cw * timesteps / 2}" y="{y + 16}" text-anchor="middle" '
                 f'fill="#444">time step</text>')
    return _svg(left + cw * timesteps + 20, y + 24, "".join(parts), "spike raster")


def render_snn_html(res) -> str:
    """The report of a spiking model (toolchain.hil.snn.SnnHilResult)."""
    s, m = res.summary(), res.meta
    ok = res.passed
    title = f"HIL report: {Path(str(m.get('model', 'model'))).name} (spiking) on {m.get('board', '?')}"
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}<span class='badge {'pass' if ok else 'fail'}'>"
           f"{'PASS' if ok else 'FAIL'}</span></h1>",
           f"<div class='sub'>{_e(m.get('started', ''))} · oracle {_e(res.oracle)} · "
           f"{res.done}/{res.planned} samples · T = {res.timesteps}</div>"]
    cards = []
    if s["device_accuracy"] is not None:
        cards += [(f"{100 * s['device_accuracy']:.2f} %", "device accuracy"),
                  (f"{100 * s['fixed_accuracy']:.2f} %", "fixed point (host)"),
                  (f"{100 * s['float_accuracy']:.2f} %", "float (host)")]
    cards.append((f"{res.identical}/{res.done}", "spike-exact samples"))
    if s["float_agreement"] is not None:
        cards.append((f"{100 * s['float_agreement']:.1f} %", "argmax agreement with float"))
    lat = res.latency_stats()
    if lat:
        cards += [(f"{lat['mean']:,.0f}", f"{lat['unit']} / sample"),
                  (f"{lat['per_step']:,.0f}", f"{lat['unit']} / step")]
    if m.get("flash_used"):
        cards.append((f"{m['flash_used'] / 1024:,.1f} KiB", "flash"))
    if m.get("ram_used"):
        cards.append((f"{m['ram_used'] / 1024:,.1f} KiB", "RAM"))
    out.append("<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{_e(v)}</div><div class='l'>{_e(lab)}</div></div>"
        for v, lab in cards) + "</div>")
    for f in res.failures():
        out.append(f"<p class='warn'>{_e(f)}</p>")
    for w in m.get("warnings", []):
        out.append(f"<p class='warn'>warning: {_e(w)}</p>")
    o = m.get("options", {})
    rows = [("model", m.get("model")), ("model hash", (m.get("model_hash") or "")[:16]),
            ("time steps", f"T = {res.timesteps}, dt = {o.get('dt')}, reset "
                           f"{o.get('reset') or 'as in the graph'}"),
            ("input", f"{o.get('encoding')} encoding"
                      + (f", seed {o.get('seed')}" if o.get("encoding") == "rate" else "")),
            ("neuron state", f"int{o.get('state_bits')}"),
            ("board", f"{m.get('board')} ({m.get('board_kind')})"),
            ("device", m.get("device_url")), ("firmware", m.get("firmware")),
            ("data", m.get("data")), ("calibration", f"{m.get('calibration')} "
                                                     f"({m.get('calibration_samples')} samples)"),
            ("spike-exact", f"{res.identical}/{res.done} samples identical to the fixed-point "
                            "reference (output counts, per-layer spikes and events)")]
    if lat:
        rows.append(("latency", f"mean {lat['mean']:,.0f} / min {lat['min']:,} / max "
                                f"{lat['max']:,} {lat['unit']} per sample"))
    rows.append(("wall time", f"{res.wall_s:.2f} s"))
    out.append("<h2>Summary</h2><table>" + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v is not None)
        + "</table>")
    spk = [r for r in res.layers if "spike_rate" in r]
    if spk:
        out.append("<h2>Spike rate per layer (device, per neuron and step, %)</h2>")
        out.append(hbar_chart([f"{r['index']} {r['type'].lower()} {_short(r['name'], 14)}"
                               for r in spk], [round(100 * r["spike_rate"], 2) for r in spk],
                              "% of neurons spiking per step", color="#e15759",
                              title="spike rates", share=False))
    syn = [r for r in res.layers if r.get("synops_per_sample")]
    if syn:
        out.append("<h2>Synaptic operations per sample (input events × fan-out)</h2>")
        out.append(hbar_chart([f"{r['index']} {r['type'].lower()}" for r in syn],
                              [int(round(r["synops_per_sample"])) for r in syn],
                              "additions per sample", color="#76b7b2", title="synops"))
    if res.raster:
        out.append("<h2>Spike raster, sample 0</h2><p class='sub'>From the host fixed-point "
                   "reference, which the device matches spike for spike "
                   "(per-layer counts checked on every sample).</p>")
        out.append(raster_svg(res.raster, m.get("raster_neurons", {}), res.timesteps,
                              labels=m.get("raster_labels")))
    conf = res.confusion()
    if conf:
        out.append("<h2>Confusion matrix (device) and per-class accuracy</h2>")
        out.append(confusion_svg(conf))
    if res.layers and any("latency" in r for r in res.layers):
        unit = next(r.get("unit", "") for r in res.layers if "latency" in r)
        out.append(f"<h2>Latency per layer ({_e(unit)}, last sample)</h2>")
        out.append(hbar_chart([f"{r['index']} {r['type'].lower()}" for r in res.layers],
                              [r.get("latency", 0) for r in res.layers],
                              f"{unit} per sample", title="latency per layer"))
    if lat:
        out.append("<h2>Latency per sample</h2>" + latency_hist_svg(
            [x.latency for x in res.samples if x.latency is not None], lat["unit"]))
    out.append("<h2>Layers</h2><table><tr><th>#</th><th>layer</th><th>type</th><th>output</th>"
               "<th>latency</th><th>spikes / sample</th><th>events / sample</th>"
               "<th>synaptic ops / sample</th></tr>" + "".join(
                   f"<tr><td class='num'>{r['index']}</td><td>{_e(_short(r['name'], 30))}</td>"
                   f"<td>{_e(r['type'])}</td><td>{_e(r['shape'])}</td>"
                   f"<td class='num'>{_n(r.get('latency'))}</td>"
                   f"<td class='num'>{_n(r.get('spikes_per_sample'))}</td>"
                   f"<td class='num'>{_n(r.get('events_per_sample'))}</td>"
                   f"<td class='num'>{_n(r.get('synops_per_sample'))}</td></tr>"
                   for r in res.layers) + "</table>")
    bad = [x for x in res.samples if not (x.exact and x.layers_exact)][:20]
    if bad:
        out.append("<h2>Samples that differ (first 20)</h2><table><tr><th>sample</th>"
                   "<th>device</th><th>fixed-point reference</th></tr>" + "".join(
                       f"<tr><td class='num'>{x.index}</td><td><code>{_e(x.device_out[:16])}"
                       f"</code></td><td><code>{_e(x.fixed_out[:16])}</code></td></tr>"
                       for x in bad) + "</table>")
    if res.stopped:
        out.append(f"<h2>Run cut short</h2><p class='warn'>stopped at sample "
                   f"{res.stopped['at']}: {_e(res.stopped['error'])}</p>")
    out.append("<p class='sub' style='margin-top:32px'>Generated by <code>mcu hil</code>. "
               "Per-sample results are in the JSON report.</p></body></html>")
    return "\n".join(out)


def write_snn_html(res, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(render_snn_html(res), encoding="utf-8")
    tmp.replace(p)
    return p

"""Build a subnet export into one firmware and run it on a device, level by level.

    rep = build_subnets("OUT/", board, "build/x")        # every level, one store
    res = run_levels("OUT/", "test.npz", board)           # one boot, every level:
    res["levels"][k]  -> accuracy, byte-exact vs tflite-micro (level k's dense-with-zeros
                         .tflite), instructions per inference, arena, switch time
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from toolchain.subnets.export import SubnetError, load_export


def check_fits(ex, board) -> None:
    """The store alone must fit the board's flash (bytes needed vs available)."""
    need = int(ex.manifest["store"]["bytes"])
    have = int(board.flash_size or 0)
    if have and need > have:
        raise SubnetError(f"the subnet store needs {need:,} B of flash; board {board.name} has "
                          f"{have:,} B (choose sparser levels or a larger board)")


def build_subnets(export_dir, board, out_dir=None, *, kernels: str = "auto",
                  test_build: bool = False, werror: bool = False, force: bool = False,
                  log=None) -> dict:
    """All levels of an export in one firmware (toolchain.build_model with the level
    graphs passed down to the code generator)."""
    from toolchain.boards import load_board
    from toolchain.build_model import build_model
    b = load_board(board)
    ex = load_export(export_dir)
    check_fits(ex, b)
    name = ex.manifest.get("name") or Path(export_dir).name
    out = Path(out_dir or Path("build") / f"{b.name}-{name}-subnets-{kernels}")
    g0 = ex.graphs[0]
    g0.name = name
    rep = build_model(g0, b, out, kernels=kernels, test_build=test_build, werror=werror,
                      force=force, measure_tflm=False, gen_options=dict(levels=ex.graphs),
                      log=log)
    rep["model"] = os.fspath(export_dir)
    rep["subnets"] = dict(levels=ex.levels, store_bytes=ex.manifest["store"]["bytes"],
                          store_vs_dense=ex.manifest["store"]["vs_dense"])
    rep["switch_instructions"] = switch_instructions(rep["elf"], b)
    return rep


def switch_instructions(elf, board) -> int | None:
    """Instructions of model_set_level on the path that switches (straight-line code,
    counted in the ELF's disassembly; None if no objdump for the target)."""
    if board.kind == "host":
        return None
    od = shutil.which("arm-none-eabi-objdump")
    if not od:
        return None
    r = subprocess.run([od, "-d", "--no-show-raw-insn", os.fspath(elf)], capture_output=True,
                       text=True)
    lines, on = [], False
    for ln in r.stdout.splitlines():
        if ln.endswith("<model_set_level>:"):
            on = True
            continue
        if on:
            if not ln.strip():
                break
            if ":" in ln and "\t" in ln:
                lines.append(ln.split("\t", 1)[1].strip())
    if not lines:
        return None
    # the switching path is the fall-through from the entry to the first return (the
    # out-of-range exit is a forward branch to its own return after it)
    n = 0
    for ins in lines:
        op = ins.split()[0]
        if op.startswith("."):
            break
        n += 1
        if op.startswith("bx") or (op.startswith("pop") and "pc" in ins):
            break
    return n


class _Data:
    def __init__(self, xq, y):
        self.xq, self.y = xq, y

    def __len__(self):
        return len(self.xq)


def load_data(path, in_shape, scale, zero_point, num_classes=None, limit=None,
              source_layout=None):
    """A data set .npz (x float or int8, NHWC or NCHW; y labels optional) -> int8 NHWC."""
    from converters.npz import read_xy_npz
    x, y = read_xy_npz(path, "data", SubnetError)
    x = np.asarray(x)
    if limit:
        x, y = x[:limit], (None if y is None else y[:limit])
    shp = tuple(int(d) for d in in_shape)
    if tuple(x.shape[1:]) != shp:
        if x.ndim == 4 and (x.shape[2], x.shape[3], x.shape[1]) == shp:
            x = x.transpose(0, 2, 3, 1)                 # NCHW (PyTorch) -> NHWC
        elif x[0].size == int(np.prod(shp)):
            x = x.reshape((len(x),) + shp)
        else:
            raise SubnetError(f"{path}: samples of shape {tuple(x.shape[1:])}; the model takes "
                              f"{list(shp)} (NHWC) or its NCHW form")
    if x.dtype != np.int8:
        if not np.issubdtype(x.dtype, np.floating):
            raise SubnetError(f"{path}: x has dtype {x.dtype}; give float32 or int8")
        x = np.clip(np.round(x.astype(np.float64) / scale) + zero_point, -128, 127)
    y = None if y is None else np.asarray(y).reshape(-1).astype(np.int64)
    return _Data(np.ascontiguousarray(x.astype(np.int8)), y)


def run_levels(export_dir, data_path, board, *, levels=None, kernels: str = "auto",
               limit: int | None = None, port: str | None = None, out_dir=None,
               progress=None, log=None) -> dict:
    """One boot; for each level (all, or the given indices): select it on the device,
    run the data set, compare each output byte with tflite-micro on the level's
    dense-with-zeros .tflite, and count accuracy and instructions."""
    from toolchain.boards import load_board
    from toolchain.build import load_build
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    from toolchain.tflm_oracle import TflmRunner
    b = load_board(board)
    ex = load_export(export_dir)
    L = len(ex.levels)
    sel = list(range(L)) if levels is None else [int(k) for k in levels]
    for k in sel:
        if not 0 <= k < L:
            raise SubnetError(f"subnet level {k} is out of range: {export_dir} has {L} levels "
                              f"(0..{L - 1})")
    g0 = ex.graphs[0]
    xt = g0.t(g0.inputs[0])
    num_classes = int(np.prod(g0.t(g0.outputs[0]).shape[1:]))
    src_layout = ((g0.meta or {}).get("input_layouts") or {}).get(g0.inputs[0])
    data = load_data(data_path, xt.shape[1:], float(xt.quant.scale[0]),
                     int(xt.quant.zero_point[0]), num_classes, limit=limit,
                     source_layout=src_layout)
    datas = {(float(xt.quant.scale[0]), int(xt.quant.zero_point[0])): data.xq}
    rep = None
    if port is None:
        rep = build_subnets(export_dir, b, out_dir, kernels=kernels, log=log)
        dev = start_device(b, load_build(rep["build_dir"]))
    else:
        dev = start_device(b, None, port=port)
    rows = []
    with dev:
        client = ModelClient(dev.link())
        base = client.info()
        from toolchain.subnets.graph import levels_hash
        if base.model_hash and base.model_hash != levels_hash(ex.graphs):
            raise SubnetError(f"the device runs model {base.model_hash[:16]}, not this subnet "
                              f"export ({levels_hash(ex.graphs)[:16]})")
        for k in sel:
            g = ex.graphs[k]
            t0 = time.perf_counter()
            active, _ = client.level(k)
            t_switch = time.perf_counter() - t0
            if active != k:
                raise SubnetError(f"the device reports level {active} after selecting {k}")
            info = client.info(refresh=True)
            ref = TflmRunner(ex.tflite[k])
            gq = g.t(g.inputs[0]).quant
            key = (float(gq.scale[0]), int(gq.zero_point[0]))
            if key not in datas:       # a level with its own input quantization
                datas[key] = load_data(data_path, xt.shape[1:], key[0], key[1], num_classes,
                                       limit=limit, source_layout=src_layout).xq
            xq = datas[key]
            n_eq = n_ok = 0
            counts = []
            for i in range(len(data)):
                xi = xq[i]
                out, c = client.infer(np.ascontiguousarray(xi).tobytes())
                y = np.frombuffer(out, np.int8)
                want = ref.run(np.asarray(xi).reshape(xt.shape))[0].reshape(-1)
                n_eq += int(np.array_equal(want, y))
                if data.y is not None:
                    n_ok += int(int(y.argmax()) == int(data.y[i]))
                counts.append(int(c))
                if progress:
                    progress(k, i + 1, len(data))
            rows.append(dict(level=k, sparsity=ex.levels[k], samples=len(data),
                             accuracy=(n_ok / len(data)) if data.y is not None else None,
                             byte_exact=n_eq, unit=info.count_unit,
                             per_inference=int(np.median(counts)) if counts else 0,
                             arena=info.arena_size, switch_ms=t_switch * 1e3,
                             store_bytes_read=ex.manifest["level"][k]["store_bytes_read"]))
        client.level(0)
    return dict(export=os.fspath(export_dir), board=b.name, data=os.fspath(data_path),
                samples=len(data), levels=rows,
                switch_instructions=(rep or {}).get("switch_instructions"),
                store_bytes=ex.manifest["store"]["bytes"],
                dense_int8_bytes=ex.manifest["store"]["dense_int8_bytes"],
                flash=(rep or {}).get("flash"), ram=(rep or {}).get("ram"),
                model_hash=levels_hash(ex.graphs))


def format_levels(res: dict) -> str:
    unit = res["levels"][0]["unit"] if res["levels"] else ""
    sw = res.get("switch_instructions")
    lines = [f"subnets: {res['export']} on {res['board']}, {res['samples']} samples per level "
             f"(one boot); store {res['store_bytes']:,} B "
             f"({res['store_bytes'] / max(1, res['dense_int8_bytes']):.2f}x dense int8)",
             f"{'level':>5} {'sparsity':>8} {'accuracy':>8} {'= TFLM':>9} "
             f"{unit + '/inference':>22} {'arena':>8} {'switch':>10}"]
    for r in res["levels"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        lines.append(f"{r['level']:>5} {r['sparsity']:>8.2f} {acc:>8} "
                     f"{r['byte_exact']:>4}/{r['samples']:<4} {r['per_inference']:>22,} "
                     f"{r['arena']:>6,} B {r['switch_ms']:>7.2f} ms")
    if sw is not None:
        lines.append(f"level switch on the device: {sw} instructions (model_set_level: two "
                     "pointer stores, no flash write); the times above are host round trips")
    return "\n".join(lines)


def levels_svg(rows: list[dict]) -> str:
    """Accuracy against instructions per inference, one point per level."""
    from html import escape
    pts = [(r["per_inference"], 100 * (r["accuracy"] or 0.0), r) for r in rows]
    W, H, l, b, t, rgt = 560, 320, 60, 40, 20, 20
    xmax = max((p[0] for p in pts), default=1) * 1.1 or 1
    ys = [p[1] for p in pts] or [0]
    ylo, yhi = max(0.0, min(ys) - 5), min(100.0, max(ys) + 2)
    if yhi <= ylo:
        yhi = ylo + 1

    def X(v):
        return l + (W - l - rgt) * v / xmax

    def Y(v):
        return H - b - (H - b - t) * (v - ylo) / (yhi - ylo)
    parts = [f'<line x1="{l}" y1="{H - b}" x2="{W - rgt}" y2="{H - b}" stroke="#999"/>',
             f'<line x1="{l}" y1="{t}" x2="{l}" y2="{H - b}" stroke="#999"/>',
             f'<text x="{(W + l) / 2}" y="{H - 8}" text-anchor="middle" fill="#555">'
             f'{escape(rows[0]["unit"] if rows else "")} per inference</text>',
             f'<text x="14" y="{(H - b + t) / 2}" fill="#555" transform="rotate(-90 14 '
             f'{(H - b + t) / 2})" text-anchor="middle">accuracy %</text>']
    for i in range(5):
        v = ylo + (yhi - ylo) * i / 4
        parts.append(f'<text x="{l - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" fill="#777">'
                     f'{v:.1f}</text>')
        xv = xmax * i / 4
        parts.append(f'<text x="{X(xv):.1f}" y="{H - b + 16}" text-anchor="middle" '
                     f'fill="#777">{xv / 1e6:.2f}M</text>')
    prev = None
    for x, y, r in sorted(pts, key=lambda p: p[0]):
        if prev:
            parts.append(f'<line x1="{X(prev[0]):.1f}" y1="{Y(prev[1]):.1f}" x2="{X(x):.1f}" '
                         f'y2="{Y(y):.1f}" stroke="#4e79a7"/>')
        prev = (x, y)
        parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="5" fill="#4e79a7"><title>'
                     f'level {r["level"]} (sparsity {r["sparsity"]:g}): {y:.1f} %, {x:,}'
                     f'</title></circle>')
        parts.append(f'<text x="{X(x) + 8:.1f}" y="{Y(y) - 6:.1f}" fill="#333">'
                     f'L{r["level"]} ({r["sparsity"]:g})</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" role="img" aria-label="accuracy against instructions '
            f'per level" style="font-family:sans-serif;font-size:11px">{"".join(parts)}</svg>')


def write_levels_html(res: dict, path) -> Path:
    from html import escape
    def acc(r):
        return "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
    rows = "".join(
        f"<tr><td>{r['level']}</td><td>{r['sparsity']:g}</td><td>{acc(r)}</td><td>{r['byte_exact']}/{r['samples']}</td><td>{r['per_inference']:,}</td>"
        f"<td>{r['arena']:,} B</td><td>{r['switch_ms']:.2f} ms</td></tr>" for r in res["levels"])
    sw = res.get("switch_instructions")
    html = (f"<!doctype html><meta charset='utf-8'><title>mcu hil subnets</title>"
            f"<body style='font-family:sans-serif'><h1>Subnet levels: {escape(res['export'])}</h1>"
            f"<p>board {escape(res['board'])}, {res['samples']} samples per level, one boot; "
            f"store {res['store_bytes']:,} B; level switch "
            f"{'-' if sw is None else f'{sw} instructions'}</p>"
            f"<table border=1 cellpadding=4><tr><th>level</th><th>sparsity</th><th>accuracy"
            f"</th><th>= tflite-micro</th><th>per inference</th><th>arena</th><th>switch "
            f"(host round trip)</th></tr>{rows}</table>"
            f"<h2>Accuracy against instructions</h2>{levels_svg(res['levels'])}</body>")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(p)
    return p

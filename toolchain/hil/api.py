"""`mcu hil` as a function: model + board + data set -> HilResult (+ JSON/HTML reports).

    res = run_hil("out/model.tflite", "data.npz", board="mps2-an386",
                  config=HilConfig(limit=100, min_accuracy=0.9),
                  json_path="out/hil.json", html_path="out/hil.html")
    print(format_summary(res)); sys.exit(0 if res.passed else 1)

The JSON is rewritten every second while the run goes on (complete:
false), so a run that is killed still leaves its partial results."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from toolchain.errors import LinkError
from toolchain.hil.data import load_data
from toolchain.hil.reference import HostReference
from toolchain.hil.runner import HilConfig, HilResult, run_samples
from toolchain.hil.session import HilDevice, load_int8_model


def write_json_atomic(path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def memory_plan(model, build=None) -> dict | None:
    """The arena plan: the code generator's (from the build directory) when it wrote one,
    else the planner run here on the graph."""
    if build is not None:
        for cand in ("model/memory_plan.json", "model/plan.json", "memory_plan.json"):
            p = Path(build.build_dir) / cand
            if p.exists():
                try:
                    d = json.loads(p.read_text())
                    d.setdefault("source", str(p))
                    return d
                except ValueError:
                    pass
    try:
        from toolchain.codegen.planner import plan_memory
        g = model.graph
        d = plan_memory(g).to_json(len(g.ops))
        d["source"] = "toolchain.codegen.planner (host)"
        return d
    except Exception as e:  # noqa: BLE001 - the report just lacks the plan
        return dict(error=f"{type(e).__name__}: {e}")


def layer_table(model, client, plan: dict | None, unit: str) -> list[dict]:
    """Per-layer rows: index, name, type, output tensor/shape, latency, arena live."""
    g = model.graph
    times = None
    try:
        raw = client.layer_times()
        times = []
        for t in raw:
            if isinstance(t, dict):
                t = t.get("instructions", t.get("cycles", t.get("ticks", t.get("latency"))))
            elif isinstance(t, (tuple, list)):
                t = t[-1]
            times.append(None if t is None else int(t))
    except (LinkError, AttributeError, NotImplementedError):
        times = None
    timeline = (plan or {}).get("timeline") or []
    rows = []
    for k, op in enumerate(g.ops):
        o = g.t(op.outputs[0])
        r = dict(index=k, name=op.name, type=op.type, output=op.outputs[0],
                 shape=list(o.shape), out_bytes=o.nbytes)
        if times is not None and k < len(times):
            r["latency"] = times[k]
            r["unit"] = unit
        if k < len(timeline):
            r["arena_live"] = int(timeline[k])
        rows.append(r)
    return rows


def run_hil(model, data_path, *, board: str | None = None, port: str | None = None,
            config: HilConfig | None = None, json_path=None, html_path=None,
            device: HilDevice | None = None, protocol_defines: dict | None = None,
            patch_c=None, log=None) -> HilResult:
    """Build/boot (or connect), run the data set, compare, write the reports.

    device: an already open HilDevice (the pytest plugin, tests with a fake client).
    Raises only for problems before the loop (model, data, build, boot, wrong model);
    a device that stops mid-run gives a result with `stopped` set."""
    config = config or HilConfig()
    t_start = time.perf_counter()
    m = load_int8_model(model)
    q = m.in_tensor.quant
    data = load_data(data_path, m.in_tensor.shape[1:], float(q.scale[0]),
                     int(q.zero_point[0]), m.num_classes, layout=config.layout,
                     source_layout=m.source_layout, limit=config.limit)
    ref = HostReference(m.graph, m.tflite)
    if log:
        log(f"data: {len(data)} samples ({data.source_dtype}, {data.layout_note}); "
            f"oracle: {ref.name}" + (f" ({ref.why_not_tflm})" if ref.why_not_tflm else ""))
    # The host outputs first: cheap, and a bad model fails before a device is started.
    host_out = np.stack([ref(data.xq[i]) for i in range(len(data))])
    own = device is None
    dev = device or HilDevice(m, board, port=port, defines=protocol_defines, patch_c=patch_c,
                              log=log)
    try:
        info = dev.info()
        fw = dev.build
        plan = memory_plan(m, fw)
        meta = run_meta(m, dev, data, ref, info, plan)
        last = [0.0]

        def on_sample(res, s):
            if json_path and time.monotonic() - last[0] > 1.0:
                last[0] = time.monotonic()
                write_json_atomic(json_path, res.to_json())

        res = run_samples(dev.client, data, ref, config, latency_unit=dev.latency_unit,
                          num_classes=m.num_classes, info=info, meta=meta,
                          host_outputs=host_out, on_sample=on_sample)
        res.memory_plan = plan
        if res.stopped is None:
            res.layers = layer_table(m, dev.client, plan, dev.latency_unit)
            first = res.first_diff()
            if first is not None or config.debug_layer:
                from toolchain.hil.debug import find_divergence
                k = first if first is not None else 0
                try:
                    res.divergence = find_divergence(dev.client, m.graph, ref, data.xq[k], k)
                except LinkError as e:
                    res.divergence = dict(sample=k, first_layer=None,
                                          message=f"divergence finder failed: {e}")
        else:
            res.layers = layer_table(m, _NoTimes(), plan, dev.latency_unit)
        res.wall_s = time.perf_counter() - t_start
    finally:
        if own:
            dev.close()
    if json_path:
        write_json_atomic(json_path, res.to_json())
    if html_path:
        from toolchain.hil.html import write_html
        write_html(res, html_path)
    return res


def run_meta(m, dev, data, ref, info, plan) -> dict:
    """The report's meta block: model, board, data, oracle, firmware and budgets."""
    fw = dev.build
    return dict(model=m.path, model_hash=m.hash, model_name=m.graph.name,
                ops=len(m.graph.ops), board=dev.board.name, board_kind=dev.board.kind,
                device_url=dev.url, data=data.path, data_total=data.total,
                data_dtype=data.source_dtype, layout=data.layout_note, oracle=ref.name,
                oracle_note=ref.why_not_tflm, cpu_hz=dev.board.cpu_hz or None,
                flash_used=(fw.flash_used if fw else info.flash_used),
                ram_used=(fw.ram_used if fw else info.ram_used),
                flash_budget=(fw.flash_budget if fw else info.flash_budget),
                ram_budget=(fw.ram_budget if fw else info.ram_budget),
                firmware=(str(fw.elf) if fw else None),
                firmware_build_id=(fw.build_id if fw else info.build_id),
                firmware_reused=(bool(fw.cached) if fw else None),
                arena_size=(plan or {}).get("arena_size"),
                started=time.strftime("%Y-%m-%dT%H:%M:%S"))


class _NoTimes:
    def layer_times(self):
        raise NotImplementedError

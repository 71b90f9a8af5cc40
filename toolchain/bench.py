"""`mcu bench [MODEL.tflite ...]` / `make bench` / `python -m toolchain.bench`: our firmware
against TensorFlow Lite Micro, measured side by side in the same run on the same emulated
Cortex-M4 (mps2-an386, QEMU -icount shift=0: instructions = SysTick ticks x 40) with the
same input bytes.

For each model: our instructions per inference (portable and DSP kernels) next to TFLM's
(reference kernels and CMSIS-NN: toolchain.tflm_kit), their ratio, our arena vs TFLM's
smallest (bisection on the device), the physical floor (the largest live set of one
layer in our memory plan), flash (weights, tables, code) vs TFLM's code for the model's
ops, and whether TFLM's output bytes equal ours. Without a model: the MLPerf Tiny models
(../shared/models/mlperf-tiny) and a few zoo models (toolchain/examples/zoo_models.py),
plus the wall time of `mcu build` for KWS; writes bench-results/bench.json and the table
in README.md ("Runtime and code generation").

Without the kit or QEMU for it, TFLM's arena falls back to the tflite-micro host
interpreter's (labelled; a 64-bit host needs more than the Cortex-M4) and its
instructions are not measured.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = REPO_ROOT.parent / "shared" / "models" / "mlperf-tiny"
NAMES = {"kws_ref_model.tflite": "KWS", "pretrainedResnet_quant.tflite": "ResNet-8"}
# our kernels -> the TFLM variant on the same footing
COUNTERPART = {"portable": "ref", "dsp": "cmsis"}
TFLM_TITLE = {"ref": "TFLM ref", "cmsis": "TFLM CMSIS-NN"}
README_HEAD = "| model | kernels | instructions / inference | TFLite Micro |"


def model_inputs(graph, n: int, seed: int = 0) -> list[bytes]:
    """n random int8 inputs (input 0) as raw bytes; the first is also TFLM's."""
    rng = np.random.default_rng(seed)
    t = graph.t(graph.inputs[0])
    return [rng.integers(-128, 128, size=t.shape).astype(np.int8).tobytes() for _ in range(n)]


def run_ours(path: Path, board, kernels: str, inputs: list[bytes], gen_options=None,
             tag="", out_root=Path("build") / "bench", host_check: bool = True) -> dict:
    """Build `path` for `board` and run `inputs` on it: instructions for inputs[0] after
    a warm-up run of it (as the kit times TFLM), its output bytes, the others' counts,
    and bit-exactness of every output with the tflite-micro host interpreter."""
    from converters import load_model
    from toolchain.boards import load_board
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    board = load_board(board)
    out = Path(out_root) / f"{board.name}-{path.stem}-{kernels}{tag}"
    t0 = time.time()
    rep = build_model(path, board, out, kernels=kernels, gen_options=gen_options,
                      measure_tflm=False)
    build_s = time.time() - t0
    g = load_model(path)
    with start_device(board, load_build(rep["build_dir"])) as dev:
        c = ModelClient(dev.link())
        unit = c.info().count_unit
        c.infer(inputs[0])                       # warm-up
        y0, n0 = c.infer(inputs[0])
        layers = c.layer_times()
        outs, counts = [y0], [n0]
        for x in inputs[1:]:
            y, cnt = c.infer(x)
            outs.append(y)
            counts.append(cnt)
    exact = None
    if host_check:
        try:
            from toolchain.tflm_oracle import TflmRunner
        except ImportError:
            TflmRunner = None
        if TflmRunner is not None:
            tf = TflmRunner(path.read_bytes())
            xt = g.t(g.inputs[0])
            exact = sum(
                bytes(y) == tf.run(np.frombuffer(x, np.int8).reshape(xt.shape))[0]
                .astype(np.int8).tobytes()
                for x, y in zip(inputs, outs))
    return dict(kernels=rep["kernels"], unit=unit, instructions=int(n0),
                instructions_all=[int(v) for v in counts], output=bytes(y0).hex(),
                bit_exact_host=None if exact is None else f"{exact}/{len(inputs)}",
                arena=rep["ram"]["arena"], floor=rep["plan"]["floor"], flash=rep["flash"],
                segments=rep["plan"].get("segments", 0),
                ram=rep["ram"], build_s=round(build_s, 2), build_dir=rep["build_dir"],
                layers=[dict(index=k, type=op.type, instructions=int(v))
                        for k, (op, v) in enumerate(zip(g.ops, layers))])


def compare(ours: dict, tflm: dict) -> dict:
    """Our figures against the TFLM variant on the same footing (portable vs ref, DSP
    vs CMSIS-NN), and against both for instructions and output bytes."""
    k = COUNTERPART.get(ours["kernels"], "cmsis")
    vs = tflm.get("variants") or {}
    cmp = dict(counterpart=k, source=tflm.get("source"))
    for name, v in vs.items():
        if not v["ok"]:
            cmp[name] = dict(ok=False, error=v["error"])
            continue
        cmp[name] = dict(ok=True, instructions=v["instructions"],
                         ratio=ours["instructions"] / v["instructions"],
                         output_equal=v["output"] == ours["output"],
                         smallest_arena=v["smallest_arena"],
                         arena_ratio=(ours["arena"] / v["smallest_arena"]
                                      if v["smallest_arena"] else None),
                         code_flash=v["code_flash"],
                         code_ratio=ours["flash"]["code"] / v["code_flash"]
                         if v["code_flash"] else None)
    if tflm.get("source") == "host":
        cmp["host_arena"] = tflm.get("arena_min_host")
        cmp["fallback"] = tflm.get("label")
    return cmp


def bench_model(path, board="mps2-an386", name=None, kernels=("portable", "dsp"), n=3,
                no_rows=False, out_root=Path("build") / "bench", echo=print) -> dict:
    """One model, all figures (see the module doc)."""
    from converters import load_model
    from toolchain.boards import load_board
    from toolchain.build_model import tflm_measure
    path = Path(path)
    board = load_board(board)
    t0 = time.time()
    g = load_model(path)
    inputs = model_inputs(g, n)
    tflm = tflm_measure(path, ("ref", "cmsis"), inputs[0])
    r = dict(model=name or path.stem, file=str(path), tflite_bytes=path.stat().st_size,
             input="random int8, numpy default_rng(0); the first input goes to both",
             tflm=tflm)
    for k in kernels:
        r[k] = run_ours(path, board, k, inputs, out_root=out_root)
        r[k]["vs_tflm"] = compare(r[k], tflm)
    if "dsp" in kernels and r["dsp"].get("segments"):
        # the effect of streamed segments: the same DSP build without them
        r["dsp_no_stream"] = run_ours(path, board, "dsp", inputs[:1], dict(stream=False),
                                      tag="-nostream", out_root=out_root, host_check=False)
        r["dsp_no_stream"]["vs_tflm"] = compare(r["dsp_no_stream"], tflm)
    if no_rows and "dsp" in kernels:
        # the cost of row-delayed in place: the same DSP build without it
        r["dsp_no_rows"] = run_ours(path, board, "dsp", inputs[:1], dict(rows=False),
                                    tag="-norows", out_root=out_root, host_check=False)
        r["dsp_no_rows"]["vs_tflm"] = compare(r["dsp_no_rows"], tflm)
    r["seconds"] = round(time.time() - t0, 1)
    return r


def zoo_tflite(name: str, out_dir: Path, seed: int = 0, n_calib: int = 24) -> Path:
    """Write zoo model `name` (toolchain/examples/zoo_models.py) as an int8 .tflite:
    ONNX export, our PTQ on seeded random calibration data, our .tflite writer."""
    import torch
    from converters import from_torch
    from converters.quantize import quantize
    from converters.tflite_writer import write_tflite
    from toolchain.examples.zoo_models import zoo_module
    m, shape = zoo_module(name, seed)
    x = np.random.default_rng(seed).standard_normal((n_calib,) + tuple(shape[1:]))
    x = x.astype(np.float32)
    g = from_torch(m, torch.from_numpy(x[:1]))
    layout = g.meta.get("input_layouts", {}).get(g.inputs[0])
    if layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    elif layout == "NCL":
        x = x.transpose(0, 2, 1)[:, None]
    p = Path(out_dir) / f"{name}.tflite"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(write_tflite(quantize(g, np.ascontiguousarray(x))))
    return p


def compile_time(board: str, model: Path, out_dir: Path) -> dict:
    """Wall time of `mcu build MODEL --force` as a user runs it (a fresh process: Python
    start-up, conversion, code generation, compile and link, TFLM's arena by the kit):
    cold (object cache off, everything compiled) and warm (the runtime, app and board
    objects from the cache, as on any build after the first; toolchain/build_cache.py)."""
    import os
    import resource
    cmd = [sys.executable, "-m", "toolchain.cli", "build", str(model), "--board", board,
           "-o", str(out_dir), "--force"]
    cmdline = "mcu build " + " ".join(cmd[4:7] + cmd[9:])
    out = dict(command=cmdline, ok=True, cores=os.cpu_count(), target_seconds=10.0)
    for mode, env in (("cold", dict(os.environ, MCU_NO_CACHE="1")),
                      ("warm", {k: v for k, v in os.environ.items() if k != "MCU_NO_CACHE"})):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(Path.cwd()), env=env)
        wall = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            return dict(command=cmdline, ok=False,
                        error=(p.stderr.strip().splitlines() or ["?"])[-1])
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        out[mode] = dict(seconds=round(wall, 2), cpu_seconds=round(cpu, 2),
                         load_average=round(os.getloadavg()[0], 2))
        if mode == "cold":       # the warm run must find the objects: fill the cache
            subprocess.run(cmd, capture_output=True, text=True, env=env | {"MCU_NO_CACHE": ""})
    out.update(seconds=out["cold"]["seconds"], cpu_seconds=out["cold"]["cpu_seconds"],
               load_average=out["cold"]["load_average"])
    return out


def run(board: str = "mps2-an386", json_path="bench-results/bench.json", echo=print,
        models=None, kernels=("portable", "dsp"), zoo=True, readme=None, log=None) -> dict:
    """models: .tflite paths (None: the MLPerf Tiny models, then the zoo models)."""
    from toolchain.boards import load_board
    b = load_board(board)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    results, extra = [], {}
    if models:
        todo = [(Path(m), None, False) for m in models]
    else:
        todo = []
        for fname, short in NAMES.items():
            if (MODELS / fname).exists():
                todo.append((MODELS / fname, short, True))
            else:
                echo(f"skip {short}: {MODELS / fname} not present")
        if zoo:
            try:
                import torch  # noqa: F401
            except ImportError:
                echo("skip the zoo models: torch is not installed (pip install '.[torch]')")
            else:
                from toolchain.examples.zoo_models import BENCH
                zdir = Path("build") / "bench" / "zoo"
                todo += [(zoo_tflite(z, zdir), z, False) for z in BENCH]
    for path, name, no_rows in todo:
        log(f"bench: {name or path.name} ...")
        results.append(bench_model(path, b, name, kernels, no_rows=no_rows))
    if not models and (MODELS / "kws_ref_model.tflite").exists():
        with tempfile.TemporaryDirectory(prefix="mcu-bench-build-") as d:
            extra["compile_time_kws"] = compile_time(b.name, MODELS / "kws_ref_model.tflite",
                                                     Path(d) / "kws")
    for line in table(results):
        echo(line)
    ct = extra.get("compile_time_kws")
    if ct:
        echo(f"compile time: {ct['command']}: "
             + (f"cold {ct['cold']['seconds']:.1f} s wall, {ct['cold']['cpu_seconds']:.1f} s "
                f"CPU; warm (object cache) {ct['warm']['seconds']:.1f} s wall, "
                f"{ct['warm']['cpu_seconds']:.1f} s CPU (target <= 10 s; {ct['cores']} cores "
                f"at load {ct['cold']['load_average']})"
                if ct["ok"] else f"failed: {ct['error']}"))
    out = dict(board=b.name, unit="instructions (QEMU -icount shift=0, SysTick ticks x 40)",
               tflm="toolchain.tflm_kit (../shared/tflm-m4): TFLM on the same emulated "
                    "Cortex-M4, same input", results=results, **extra)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
        echo(f"wrote {json_path}")
    if readme:
        if update_readme(Path(readme), results):
            echo(f"updated the table in {readme}")
        else:
            echo(f"{readme}: no bench table found (a line starting {README_HEAD!r})")
    return out


# ---------------------------------------------------------------- reports
def _m(v):
    return f"{v / 1e6:.2f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"


def _kb(v):
    return f"{v / 1000:.1f} kB"


def rows(results) -> list[dict]:
    """One row per model and kernel variant, the figures of the table as strings."""
    out = []
    for r in results:
        t = r["tflm"]
        vs = t.get("variants") or {}
        for k in ("portable", "dsp", "dsp_no_stream", "dsp_no_rows"):
            if k not in r:
                continue
            x = r[k]
            cmp = x["vs_tflm"]
            cp = COUNTERPART.get(x["kernels"], "cmsis")
            tv = vs.get(cp) or {}
            f = x["flash"]
            fl = x["floor"]
            row = dict(model=r["model"], kernels={"portable": "portable", "dsp": "DSP",
                                                  "dsp_no_stream": "DSP, no streaming",
                                                  "dsp_no_rows": "DSP, no row in-place"}[k],
                       instr=_m(x["instructions"]), arena=f"{x['arena']:,} B",
                       floor=f"{fl['bytes']:,} B ({fl['type']})" if fl.get("type") else "-",
                       weights=f"{f['weights']:,} B", tables=_kb(f.get("model_tables", 0)),
                       code=_kb(f["code"]), tflite=f"{r['tflite_bytes']:,} B")
            if tv.get("ok"):
                c = cmp[cp]
                row["tflm"] = f"{_m(tv['instructions'])} ({c['ratio']:.2f}×)"
                row["tflm_arena"] = (f"{tv['smallest_arena']:,} B "
                                     f"({100 * c['arena_ratio']:.0f} %)"
                                     if tv.get("smallest_arena") else "-")
                row["tflm_code"] = _kb(tv["code_flash"]) if tv.get("code_flash") else "-"
                eq = [TFLM_TITLE[n].split()[-1] for n in ("ref", "cmsis")
                      if (cmp.get(n) or {}).get("ok")
                      and cmp[n]["output_equal"]]
                ne = [TFLM_TITLE[n].split()[-1] for n in ("ref", "cmsis")
                      if (cmp.get(n) or {}).get("ok") and not cmp[n]["output_equal"]]
                row["equal"] = "yes" if not ne else ("NO: " + ", ".join(ne))
                if eq and ne:
                    row["equal"] += f" (yes: {', '.join(eq)})"
            elif tv:
                row.update(tflm=f"fails: {tv['error']}", tflm_arena="-", tflm_code="-",
                           equal="-")
            else:
                host = t.get("arena_min_host")
                row.update(tflm="- (not measured: no kit/QEMU)",
                           tflm_arena=(f"{host:,} B (host interpreter, fallback)"
                                       if host else "-"), tflm_code="-", equal="-")
            out.append(row)
    return out


COLS = (("model", "model"), ("kernels", "kernels"), ("instr", "instructions / inference"),
        ("tflm", "TFLite Micro"), ("arena", "arena"), ("floor", "physical floor"),
        ("tflm_arena", "TFLite Micro arena"), ("weights", "weights"), ("tables", "tables"),
        ("code", "code"), ("tflm_code", "TFLite Micro code"), ("equal", "output = TFLM"),
        ("tflite", ".tflite"))
NOTE = ("TFLite Micro: measured in the same run on the same emulated M4 with the same "
        "input (toolchain.tflm_kit, ../shared/tflm-m4): its reference kernels beside our "
        "portable C, CMSIS-NN beside our DSP kernels; ratio = ours / TFLM's instructions; "
        "TFLM arena = its smallest working arena (bisection on the device), % = ours / "
        "TFLM's; TFLM code = its flash for the model's ops without the model (the kit's "
        "estimate: library, op resolver, startup and I/O, libc, libgcc). physical floor = "
        "the largest live set of one layer in our plan (its inputs + output + scratch; "
        "for a streamed segment: its inputs + output + rings + kernel scratch). "
        "weights = weights, biases, repacked filters; tables = generated constant data; "
        "code = runtime + app + board + generated code. output = TFLM: TFLM's output "
        "bytes equal ours (ref and CMSIS-NN).")


def table(results) -> list[str]:
    rs = rows(results)
    if not rs:
        return ["(no results)"]
    w = {k: max(len(h), *(len(r[k]) for r in rs)) for k, h in COLS}
    lines = ["  ".join(f"{h:<{w[k]}}" for k, h in COLS)]
    lines += ["  ".join(f"{r[k]:<{w[k]}}" for k, _ in COLS) for r in rs]
    return lines + [NOTE]


def markdown_table(results) -> list[str]:
    rs = rows(results)
    lines = ["| " + " | ".join(h for _, h in COLS) + " |", "|" + "---|" * len(COLS)]
    prev = None
    for r in rs:
        cells = [r[k] for k, _ in COLS]
        if r["model"] == prev and r["kernels"].startswith("DSP, no"):
            cells[-1] = ""
        prev = r["model"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def update_readme(readme: Path, results) -> bool:
    """Replace the bench table (the block of lines from README_HEAD to the first line
    that is not a table row) in README.md with this run's."""
    if not readme.exists():
        return False
    lines = readme.read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(README_HEAD)), None)
    if start is None:
        return False
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = markdown_table(results)
    readme.write_text("\n".join(lines) + "\n")
    return True


# ---------------------------------------------------------------- mcu build --vs-tflm
def vs_tflm_build(rep: dict, board, n: int = 1) -> dict:
    """After build_model: TFLM on the same model and input next to the firmware just
    built (run on `board` when it is a QEMU board: instructions and output bytes)."""
    from converters import load_model
    from toolchain.boards import load_board
    from toolchain.build import load_build
    from toolchain.build_model import tflm_measure
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    board = load_board(board)
    path = Path(rep["tflite"])
    g = load_model(path)
    x0 = model_inputs(g, n)[0]
    tflm = tflm_measure(path, ("ref", "cmsis"), x0)
    ours = dict(kernels=rep["kernels"], arena=rep["ram"]["arena"], floor=rep["plan"]["floor"],
                flash=rep["flash"], instructions=None, output=None, board=board.name)
    if board.kind == "qemu":
        with start_device(board, load_build(rep["build_dir"])) as dev:
            c = ModelClient(dev.link())
            ours["unit"] = c.info().count_unit
            c.infer(x0)
            y, cnt = c.infer(x0)
        ours.update(instructions=int(cnt), output=bytes(y).hex())
    else:
        ours["note"] = (f"board {board.name} is not emulated: our instructions are not "
                        "measured (the kit runs QEMU mps2-an386)")
    cmp = dict(ours=ours, tflm=tflm, input="random int8, numpy default_rng(0)")
    if ours["instructions"] is not None:
        cmp["vs"] = compare(ours, tflm)
    return cmp


def format_vs_tflm(cmp: dict) -> str:
    ours, t = cmp["ours"], cmp["tflm"]
    vs = t.get("variants") or {}
    if t.get("source") != "tflm-m4":
        return f"vs TFLite Micro: not measured on the Cortex-M4 ({t.get('fallback')})"
    cols = [n for n in ("ref", "cmsis") if n in vs]
    head = f"{'':<24}{'ours (' + ours['kernels'] + ')':>16}" + "".join(
        f"{TFLM_TITLE[n]:>16}" for n in cols)
    lines = [f"vs TFLite Micro on the same emulated Cortex-M4 (tflm-m4 kit, "
             f"{'same input' if ours['instructions'] is not None else 'its own input'}):",
             head]

    def row(label, mine, key, fmt):
        s = f"{label:<24}{mine:>16}"
        for n in cols:
            v = vs[n]
            s += f"{(fmt(v[key]) if v['ok'] and v.get(key) is not None else 'fails'):>16}"
        return s
    mi = ours["instructions"]
    lines.append(row("instructions", f"{mi:,}" if mi is not None else "-", "instructions",
                     lambda v: f"{v:,}"))

    def sub(label, f):
        return f"{label:<24}{'':>16}" + "".join(
            f"{(f(vs[n]) if vs[n]['ok'] else '-'):>16}" for n in cols)
    if mi is not None:
        lines.append(sub("  ratio ours / TFLM", lambda v: f"{mi / v['instructions']:.2f}x"))
    lines.append(row("arena (smallest)", f"{ours['arena']:,} B", "smallest_arena",
                     lambda v: f"{v:,} B"))
    lines.append(sub("  ours / TFLM", lambda v: f"{100 * ours['arena'] / v['smallest_arena']:.0f} %"
                     if v["smallest_arena"] else "-"))
    fl = ours.get("floor") or {}
    if fl.get("type"):
        what = (f"streamed layers {fl['type'].split()[-1]}: their inputs + output + rings"
                if str(fl["type"]).startswith("segment") else
                f"layer {fl['layer']} {fl['type']}: the largest live set of one layer")
        lines.append(f"{'physical floor':<24}{fl['bytes']:>14,} B  ({what})")
    lines.append(row("code flash", f"{ours['flash']['code']:,} B", "code_flash",
                     lambda v: f"{v:,} B"))
    if ours.get("output") is not None:
        lines.append(sub("output bytes = ours",
                         lambda v: "yes" if v["output"] == ours["output"] else "NO"))
    for n in cols:
        if not vs[n]["ok"]:
            lines.append(f"  {TFLM_TITLE[n]}: {vs[n]['error']}")
    if ours.get("note"):
        lines.append("  " + ours["note"])
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=".tflite files (default: MLPerf Tiny + zoo)")
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--json", default="bench-results/bench.json")
    ap.add_argument("--no-readme", action="store_true")
    a = ap.parse_args(argv)
    readme = None if a.no_readme or a.models else REPO_ROOT / "README.md"
    run(a.board, a.json, models=a.models or None, readme=readme)


if __name__ == "__main__":
    main()

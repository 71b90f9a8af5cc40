"""`make bench` / `python -m toolchain.bench`: the MLPerf Tiny models through the whole
flow on the emulated Cortex-M4 (mps2-an386, QEMU -icount shift=0: instructions =
SysTick ticks x 40): instructions per inference with portable and DSP kernels, the
arena vs TFLite Micro's, flash (weights, code) vs the .tflite, compared with the
TFLite Micro figures of REFERENCE.md §4. Prints a table, writes bench-results/bench.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODELS = Path("/work/shared/models/mlperf-tiny")
NAMES = {"kws_ref_model.tflite": "KWS", "pretrainedResnet_quant.tflite": "ResNet-8"}


def measure(path: Path, board, kernels: str, gen_options=None, n: int = 3, tag=""):
    from converters import load_model
    from toolchain.boards import load_board
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    from toolchain.link.model import ModelClient
    board = load_board(board)       # a Board from run(): no TOML read per build and start
    out = Path("build") / "bench" / f"{board.name}-{path.stem}-{kernels}{tag}"
    rep = build_model(path, board, out, kernels=kernels, gen_options=gen_options,
                      measure_tflm=False)
    g = load_model(path)
    tf = TflmRunner(path.read_bytes())
    rng = np.random.default_rng(0)
    counts, exact = [], 0
    with start_device(board, load_build(rep["build_dir"])) as dev:
        c = ModelClient(dev.link())
        for _ in range(n):
            x = rng.integers(-128, 128, size=g.t(g.inputs[0]).shape).astype(np.int8)
            y, cnt = c.infer(x.tobytes())
            counts.append(cnt)
            exact += np.frombuffer(y, np.int8).tolist() == tf.run(x)[0].reshape(-1).tolist()
        layers = c.layer_times()
    return dict(instructions=int(np.median(counts)), instructions_all=counts,
                bit_exact=f"{exact}/{n}", arena=rep["ram"]["arena"], flash=rep["flash"],
                ram=rep["ram"],
                layers=[dict(index=k, type=op.type, instructions=int(v))
                        for k, (op, v) in enumerate(zip(g.ops, layers))])


def run(board: str = "mps2-an386", json_path="bench-results/bench.json", echo=print):
    from toolchain.build_model import TFLM_MCU_REFERENCE, tflm_min_arena
    from converters import load_model
    from toolchain.boards import load_board
    b = load_board(board)           # once for every model and kernel variant
    results = []
    for fname, short in NAMES.items():
        path = MODELS / fname
        if not path.exists():
            echo(f"skip {short}: {path} not present")
            continue
        t0 = time.time()
        g = load_model(path)
        ref = TFLM_MCU_REFERENCE.get(g.model_hash(), {})
        r = dict(model=short, file=str(path), tflite_bytes=path.stat().st_size,
                 tflm_arena_min_host=tflm_min_arena(path.read_bytes()), tflm_reference=ref)
        r["portable"] = measure(path, b, "portable")
        r["dsp"] = measure(path, b, "dsp")
        # the cost of row-delayed in place: the same DSP build without it
        r["dsp_no_rows"] = measure(path, b, "dsp", dict(rows=False), n=1, tag="-norows")
        r["seconds"] = round(time.time() - t0, 1)
        results.append(r)
    _table(results, echo)
    out = dict(board=board, unit="instructions (QEMU -icount shift=0, SysTick ticks x 40)",
               results=results)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
        echo(f"wrote {json_path}")
    return out


def _table(results, echo):
    def m(v):
        return f"{v / 1e6:.2f} M"
    echo(f"{'model':<9} {'kernels':<10} {'instr/inf':>10} {'TFLM':>9} {'ratio':>6} "
         f"{'arena':>8} {'TFLM arena':>10} {'weights':>8} {'tables':>7} {'code':>7} "
         f"{'TFLM code':>9} {'.tflite':>8}")
    for r in results:
        ref = r["tflm_reference"]
        tflm_arena = ref.get("arena_cmsis_nn") or r["tflm_arena_min_host"]
        for k, refk, refc in (("portable", "instructions_reference", "flash_without_model_reference"),
                              ("dsp", "instructions_cmsis_nn", "flash_without_model_cmsis_nn"),
                              ("dsp_no_rows", "instructions_cmsis_nn",
                               "flash_without_model_cmsis_nn")):
            x = r[k]
            ti, tc = ref.get(refk), ref.get(refc)
            f = x["flash"]
            echo(f"{r['model']:<9} {k:<10} {m(x['instructions']):>10} "
                 f"{m(ti) if ti else '-':>9} {x['instructions'] / ti if ti else 0:>6.2f} "
                 f"{x['arena']:>8,} {tflm_arena:>10,} {f['weights']:>8,} "
                 f"{f.get('model_tables', 0):>7,} {f.get('code', f['code_without_weights']):>7,} "
                 f"{f'{tc:,}' if tc else '-':>9} {r['tflite_bytes']:>8,}")
    echo("TFLM columns: REFERENCE.md §4 (TFLM on the emulated M4: reference kernels for "
         "'portable', CMSIS-NN for 'dsp'; arena = CMSIS-NN build's smallest; TFLM code = "
         "its flash without the model). weights = weights, biases, repacked filters; "
         "tables = generated constant data (requantization tables, layer parameters, "
         "names); code = runtime + app + board + generated code (all the rest of flash).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--json", default="bench-results/bench.json")
    a = ap.parse_args(argv)
    run(a.board, a.json)


if __name__ == "__main__":
    main()

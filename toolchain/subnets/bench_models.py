"""`make bench-subnets`: whole MLPerf Tiny models (KWS DS-CNN, IC ResNet-8) with levels
nested by |w| (no retraining: speed and bytes only) built into ONE firmware each, on
the emulated Cortex-M4 (QEMU mps2-an386, -icount: instructions), every level checked
byte for byte against tflite-micro on its dense-with-zeros .tflite; against the dense
DSP build of the same model.

    python -m toolchain.subnets.bench_models [--json bench-results/subnets_models_m4.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {"KWS": "kws_ref_model.tflite", "ResNet-8": "pretrainedResnet_quant.tflite"}
MODEL_DIR = Path("/work/shared/models/mlperf-tiny")
LEVEL_SETS = {"{50,75,90}": (0.5, 0.75, 0.9), "{0,50,75,90}": (0.0, 0.5, 0.75, 0.9)}


def _dense_instructions(model, board, x, out_dir) -> dict:
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    from toolchain.tflm_oracle import TflmRunner
    rep = build_model(model, board, out_dir, kernels="dsp", measure_tflm=False)
    ref = TflmRunner(Path(model).read_bytes())
    counts, eq = [], 0
    with start_device(board, load_build(rep["build_dir"])) as dev:
        c = ModelClient(dev.link())
        for xi in x:
            out, n = c.infer(xi.tobytes())
            counts.append(n)
            eq += int(np.array_equal(np.frombuffer(out, np.int8),
                                     ref.run(xi[None])[0].reshape(-1)))
    return dict(instructions=int(np.median(counts)), byte_exact=eq, samples=len(x),
                weights_bytes=rep["flash"]["weights"], flash=rep["flash"]["total"],
                arena=rep["ram"]["arena"])


def run(json_path="bench-results/subnets_models_m4.json", board="mps2-an386", n=3, echo=print):
    from converters import load_model
    from toolchain.boards import load_board
    from toolchain.subnets.export import export_levels, magnitude_levels
    from toolchain.subnets.run import run_levels
    b = load_board(board)
    out = dict(board=board, kernels="dsp", note="levels nested by |int8 w| per row, no "
               "retraining (quantization of the dense model kept): speed and bytes only; "
               "instructions = SysTick ticks x 40 under -icount shift=0", models={})
    tmp = Path(tempfile.mkdtemp(prefix="mcu-bench-subnets-"))
    for name, fn in MODELS.items():
        path = MODEL_DIR / fn
        g = load_model(path)
        xt = g.t(g.inputs[0])
        x = np.random.default_rng(0).integers(-128, 128, (n,) + tuple(xt.shape[1:])) \
            .astype(np.int8)
        np.savez(tmp / f"{name}.npz", x=x)
        t0 = time.time()
        dense = _dense_instructions(path, b, x, tmp / f"{name}-dense")
        echo(f"{name}: dense DSP build {dense['instructions']:,} instructions "
             f"({time.time() - t0:.0f} s)")
        res = dict(dense=dense, level_sets={})
        for ls_name, ls in LEVEL_SETS.items():
            shared, _ = magnitude_levels(g, ls, None)
            ex_dir = tmp / f"{name}-{ls_name.strip('{}').replace(',', '_')}"
            man = export_levels(shared, ex_dir, name=name, check=x[:2],
                                source=f"{fn} (magnitude)")
            r = run_levels(ex_dir, tmp / f"{name}.npz", b, kernels="dsp",
                           out_dir=tmp / f"{ex_dir.name}-build")
            st = man["store"]
            rows = []
            for row, lv in zip(r["levels"], man["level"]):
                rows.append(dict(level=row["level"], sparsity=row["sparsity"],
                                 instructions=row["per_inference"],
                                 vs_dense=row["per_inference"] / dense["instructions"],
                                 byte_exact=row["byte_exact"], samples=row["samples"],
                                 arena=row["arena"]))
            res["level_sets"][ls_name] = dict(
                store_bytes=st["bytes"], sparsified_dense_int8_bytes=st["dense_int8_bytes"],
                store_vs_dense=st["vs_dense"], k_dense_models_bytes=st["k_dense_models_bytes"],
                store_vs_k_dense=st["vs_k_dense"],
                firmware_flash=(r.get("flash") or {}).get("total"),
                model_weights_flash=(r.get("flash") or {}).get("weights"),
                switch_instructions=r["switch_instructions"], levels=rows)
            echo(f"{name} {ls_name}: store {st['vs_dense']:.2f}x dense, "
                 + ", ".join(f"{x['sparsity']:g}: {x['vs_dense']:.2f}x "
                             f"({x['byte_exact']}/{x['samples']} = TFLM)" for x in rows))
        out["models"][name] = res
    if json_path:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(out, indent=1) + "\n")
    echo(table(out))
    return out


def table(res: dict) -> str:
    lines = ["| model | levels | store / dense int8 | store / K dense models | level | "
             "instructions | vs dense DSP | = TFLM |", "|---|---|---|---|---|---|---|---|"]
    for name, m in res["models"].items():
        d = m["dense"]
        lines.append(f"| {name} | dense DSP build | 1.00x | - | - | {d['instructions']:,} | "
                     f"1.00x | {d['byte_exact']}/{d['samples']} |")
        for ls, s in m["level_sets"].items():
            for i, r in enumerate(s["levels"]):
                head = (f"| {name} | {ls} | {s['store_vs_dense']:.2f}x | "
                        f"{s['store_vs_k_dense']:.2f}x |") if i == 0 else "| | | | |"
                lines.append(f"{head} {r['sparsity']:g} | {r['instructions']:,} | "
                             f"{r['vs_dense']:.2f}x | {r['byte_exact']}/{r['samples']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="bench-results/subnets_models_m4.json")
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("-n", type=int, default=3, help="inputs per level")
    a = ap.parse_args()
    run(a.json, a.board, a.n)


if __name__ == "__main__":
    main()

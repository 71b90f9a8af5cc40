"""Instructions of the row-sparse kernels on the emulated Cortex-M4 (mps2-an386,
QEMU -icount shift=0, instructions = SysTick ticks * 40) per level, against the
dense DSP kernel (mcu_conv2d_s8_pre / mcu_fc_s8) of the same layer, on the
CONV_2D / FULLY_CONNECTED shapes of the MLPerf Tiny KWS and ResNet-8 models
(random weights nested by |w|, each level quantized on its own calibration data).
Every call's output is checked on the device against tflite-micro on the level's
dense-with-zeros .tflite.

    .venv/bin/python tests/bench_subnets_kernels.py [--levels 0,0.5,0.75,0.9] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from kernel_qemu import build_image, run_image  # noqa: E402
from subnets_cases import make_case  # noqa: E402
from subnets_kernels import emit_sparse_cases  # noqa: E402

from toolchain.tflm_oracle import run_tflite  # noqa: E402
from toolchain.subnets.store import byte_report  # noqa: E402

TICK = 40


def layers():
    """(name, op type, make_case kwargs, count in the model)"""
    c = "CONV_2D"
    return [
        ("kws.conv1_10x4_s2", c, dict(h=49, w=10, cin=1, cout=64, kh=10, kw=4, stride=2), 1),
        ("kws.pw1x1_64", c, dict(h=25, w=5, cin=64, cout=64, kh=1, kw=1), 4),
        ("kws.fc_64x12", "FULLY_CONNECTED", dict(batch=1, k=64, out=12), 1),
        ("ic.conv1_3x3_3to16", c, dict(h=32, w=32, cin=3, cout=16, kh=3, kw=3), 1),
        ("ic.conv3x3_16", c, dict(h=32, w=32, cin=16, cout=16, kh=3, kw=3), 2),
        ("ic.conv3x3_s2_16to32", c, dict(h=32, w=32, cin=16, cout=32, kh=3, kw=3, stride=2), 1),
        ("ic.conv3x3_32", c, dict(h=16, w=16, cin=32, cout=32, kh=3, kw=3), 1),
        ("ic.conv1x1_s2_16to32", c, dict(h=32, w=32, cin=16, cout=32, kh=1, kw=1, stride=2), 1),
        ("ic.conv3x3_s2_32to64", c, dict(h=16, w=16, cin=32, cout=64, kh=3, kw=3, stride=2), 1),
        ("ic.conv3x3_64", c, dict(h=8, w=8, cin=64, cout=64, kh=3, kw=3), 1),
        ("ic.conv1x1_s2_32to64", c, dict(h=16, w=16, cin=32, cout=64, kh=1, kw=1, stride=2), 1),
        ("ic.fc_64x10", "FULLY_CONNECTED", dict(batch=1, k=64, out=10), 1),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="0,0.5,0.75,0.9")
    ap.add_argument("--only", default=None, help="comma-separated layer name substrings")
    ap.add_argument("--explicit-dense", action="store_true",
                    help="store the dense level's columns (2x bytes, faster dense level)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    levels = tuple(float(v) for v in a.levels.split(","))
    rng = np.random.default_rng(10)
    cases, meta = [], []
    for name, t, kw, count in layers():
        if a.only and not any(s in name for s in a.only.split(",")):
            continue
        case = make_case(rng, t, levels=levels, n_calib=4, act="RELU" if t == "CONV_2D" else "NONE",
                         implicit_dense=not a.explicit_dense, **kw)
        meta.append((name, case, count))
        for k in range(len(levels)):
            want = run_tflite(case.shared.tflite(k), case.x[k])[0]
            cases.append((f"{name}@{levels[k]}", case, k, want.reshape(-1)))
    with tempfile.TemporaryDirectory() as d:
        src = emit_sparse_cases(cases, dense=True, scratch_words=8192)
        elf = build_image(src, "m4", Path(d))
        rc, results, text = run_image(elf, "m4", timeout=600)
    bad = [r for r in results if r[3]]
    if rc != 0 or bad:
        print(text[-3000:])
        raise SystemExit(f"mismatch on device (exit {rc}): {bad[:5]}")
    per = {}
    for key, variant, ticks, _ in results:
        per.setdefault(key, {})[variant] = ticks * TICK
    rows = []
    hdr = "  ".join(f"{'s=' + str(v):>14s}" for v in levels)
    print(f"{'layer':24s} {'dense dsp':>11s}  {hdr}   (sparse DSP instructions, ratio to dense)")
    tot_dense, tot = 0, np.zeros(len(levels))
    for name, case, count in meta:
        dense = min(per[f"{name}@{v}"]["dense_dsp"] for v in levels)
        sp = [per[f"{name}@{v}"]["sparse_dsp"] for v in levels]
        tot_dense += dense * count
        tot += np.array(sp) * count
        cells = "  ".join(f"{s:>8,d} {s / dense:4.2f}x" for s in sp)
        print(f"{name:24s} {dense:>11,d}  {cells}")
        rows.append(dict(layer=name, count=count, dense_dsp=dense,
                         sparse_dsp=dict(zip(map(str, levels), sp)),
                         sparse_portable=dict(zip(map(str, levels),
                                                  [per[f"{name}@{v}"]["sparse_portable"]
                                                   for v in levels])),
                         ratio=dict(zip(map(str, levels), [s / dense for s in sp])),
                         bytes=byte_report(case.store)))
    print(f"{'total (x count)':24s} {tot_dense:>11,d}  " +
          "  ".join(f"{int(s):>8,d} {s / tot_dense:4.2f}x" for s in tot))
    stores = [c.store for _, c, _ in meta]
    br = byte_report(stores)
    print(f"store bytes: {br['store_bytes']:,d} = {br['store_vs_dense']:.3f}x dense int8 "
          f"({br['dense_int8_bytes']:,d}); {br['store_vs_k_dense']:.3f}x {len(levels)} dense "
          f"models; {br['store_vs_k_sparse']:.3f}x {len(levels)} separate sparse models")
    report = dict(levels=list(levels), layers=rows, total_dense_dsp=int(tot_dense),
                  total_sparse_dsp=dict(zip(map(str, levels), map(int, tot))), bytes=br)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

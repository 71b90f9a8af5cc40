"""Instruction counts of the runtime kernels on the emulated Cortex-M4
(mps2-an386, QEMU -icount shift=0; instructions = SysTick ticks * 40), portable vs
DSP, on the layers of the MLPerf Tiny KWS (DS-CNN) and IC (ResNet-8) models.
Every call's output is also checked on the device against tflite-micro.

    .venv/bin/python tests/bench_kernels.py [--cpu m4|m7] [--json out.json]
    .venv/bin/python tests/bench_kernels.py --fc     # FULLY_CONNECTED shapes only

Per-model totals are the sum of kernel calls (no graph runtime overhead); the
anchors are whole-inference counts of TFLM + CMSIS-NN on the same emulated M4
(REFERENCE.md §4): KWS 7,697,240, ResNet-8 29,863,440.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from kernel_qemu import build_image, emit_cases, run_image  # noqa: E402
from opgen import act_quant, make_average_pool2d, make_conv2d, make_depthwise_conv2d  # noqa: E402
from opgen import make_fully_connected, make_softmax, random_feeds  # noqa: E402

from toolchain.ir.graph import Graph, Op, Tensor  # noqa: E402
from toolchain.tflm_oracle import run_graph  # noqa: E402

ANCHORS = {"kws": 7_697_240, "resnet8": 29_863_440}
TICK = 40


def _add(rng, shape):
    g = Graph(name="add")
    q1, q2 = act_quant(rng), act_quant(rng)
    g.add_tensor(Tensor("a", shape, "int8", q1))
    g.add_tensor(Tensor("b", shape, "int8", q2))
    g.add_tensor(Tensor("y", shape, "int8", act_quant(rng, float(np.float32(
        max(q1.scale[0], q2.scale[0]) * 1.5)))))
    g.add_op(Op("ADD", ["a", "b"], ["y"], dict(fused_activation="RELU")))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return g


def conv(rng, h, w, cin, cout, k, stride=1, kw=None):
    return make_conv2d(rng, n=1, h=h, w=w, cin=cin, cout=cout, kh=k, kw=kw or k, stride=stride,
                       dilation=1, padding="SAME", act="RELU", per_channel=True, bias=True)


def dw(rng, h, w, c):
    return make_depthwise_conv2d(rng, n=1, h=h, w=w, cin=c, multiplier=1, kh=3, kw=3, stride=1,
                                 dilation=1, padding="SAME", act="RELU", per_channel=True,
                                 bias=True)


def models(rng):
    """{model: [(layer name, graph, count)]}"""
    kws = [("conv1_10x4_s2", conv(rng, 49, 10, 1, 64, 10, 2, kw=4), 1),
           ("dw3x3_64", dw(rng, 25, 5, 64), 4),
           ("pw1x1_64", conv(rng, 25, 5, 64, 64, 1), 4),
           ("avgpool_25x5", make_average_pool2d(rng, n=1, h=25, w=5, c=64, fh=25, fw=5,
                                                stride=1, padding="VALID", act="NONE"), 1),
           ("fc_64x12", make_fully_connected(rng, batch=1, k=64, out=12, act="NONE",
                                             per_channel=False, bias=True, input_4d=False), 1),
           ("softmax_12", make_softmax(rng, shape=(1, 12), beta=1.0), 1)]
    ic = [("conv1_3x3_3to16", conv(rng, 32, 32, 3, 16, 3), 1),
          ("conv3x3_16", conv(rng, 32, 32, 16, 16, 3), 2),
          ("add_32x32x16", _add(rng, (1, 32, 32, 16)), 1),
          ("conv3x3_s2_16to32", conv(rng, 32, 32, 16, 32, 3, 2), 1),
          ("conv3x3_32", conv(rng, 16, 16, 32, 32, 3), 1),
          ("conv1x1_s2_16to32", conv(rng, 32, 32, 16, 32, 1, 2), 1),
          ("add_16x16x32", _add(rng, (1, 16, 16, 32)), 1),
          ("conv3x3_s2_32to64", conv(rng, 16, 16, 32, 64, 3, 2), 1),
          ("conv3x3_64", conv(rng, 8, 8, 64, 64, 3), 1),
          ("conv1x1_s2_32to64", conv(rng, 16, 16, 32, 64, 1, 2), 1),
          ("add_8x8x64", _add(rng, (1, 8, 8, 64)), 1),
          ("avgpool_8x8", make_average_pool2d(rng, n=1, h=8, w=8, c=64, fh=8, fw=8, stride=1,
                                              padding="VALID", act="NONE"), 1),
          ("fc_64x10", make_fully_connected(rng, batch=1, k=64, out=10, act="NONE",
                                            per_channel=False, bias=True, input_4d=False), 1),
          ("softmax_10", make_softmax(rng, shape=(1, 10), beta=1.0), 1)]
    return {"kws": kws, "resnet8": ic}


FC_SHAPES = [(640, 128), (128, 128), (128, 8), (64, 12), (256, 10), (1000, 10)]


def fc_models(rng):
    """FULLY_CONNECTED alone: the FC autoencoder (640-128-128-8) and classifier heads."""
    return {"fc": [(f"fc_{k}x{o}", make_fully_connected(rng, batch=1, k=k, out=o, act="NONE",
                                                        per_channel=False, bias=True,
                                                        input_4d=False), 1)
                   for k, o in FC_SHAPES]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="m4", choices=["m4", "m7"])
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--fc", action="store_true", help="FULLY_CONNECTED shapes only")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(7)
    ms = fc_models(rng) if a.fc else models(rng)
    cases, where = [], {}
    for model, layers in ms.items():
        for name, g, count in layers:
            f = random_feeds(rng, g)
            key = f"{model}.{name}"
            where[key] = (model, name, count, g.ops[0].type)
            cases.append((key, g, f, run_graph(g, f)[g.outputs[0]]))
    with tempfile.TemporaryDirectory() as d:
        elf = build_image(emit_cases(cases), a.cpu, Path(d), a.opt)
        rc, results, text = run_image(elf, a.cpu, timeout=300)
    if rc != 0 or any(r[3] for r in results):
        print(text[-3000:])
        raise SystemExit(f"kernel mismatch on device (exit {rc})")
    per = {}
    for key, variant, ticks, _ in results:
        per.setdefault(key, {})[variant] = ticks * TICK
    report = {"cpu": a.cpu, "opt": a.opt, "instructions_per_tick": TICK, "models": {}}
    for model, layers in ms.items():
        rows, tot = [], {"portable": 0, "best": 0}
        print(f"\n{model}: instructions per layer call (x count)")
        print(f"  {'layer':24s} {'op':18s} {'count':>5s} {'portable':>12s} {'dsp':>12s} {'speedup':>8s}")
        for name, g, count in layers:
            v = per[f"{model}.{name}"]
            # the variant generated DSP code calls (FC: the packed filter, no scratch)
            port, dsp = v["portable"], v.get("dsp_packed", v.get("dsp_direct", v.get("dsp_pre4", v.get("dsp"))))
            best = dsp if dsp is not None else port
            tot["portable"] += port * count
            tot["best"] += best * count
            rows.append(dict(layer=name, op=g.ops[0].type, count=count, portable=port, dsp=dsp))
            print(f"  {name:24s} {g.ops[0].type:18s} {count:5d} {port:12,d} "
                  f"{(f'{dsp:,d}' if dsp is not None else '-'):>12s} "
                  f"{(f'{port / dsp:7.2f}x' if dsp else ''):>8s}")
        anchor = ANCHORS.get(model)
        ratio = tot["best"] / anchor if anchor else None
        print(f"  total portable {tot['portable']:,d}; best (DSP where available) "
              f"{tot['best']:,d}" + (f" = {ratio:.3f}x TFLM+CMSIS-NN ({anchor:,d})"
                                     if anchor else ""))
        report["models"][model] = dict(layers=rows, total_portable=tot["portable"],
                                       total_best=tot["best"], anchor_tflm_cmsis_nn=anchor,
                                       ratio_to_anchor=ratio)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {a.json}")
    return report


if __name__ == "__main__":
    main()

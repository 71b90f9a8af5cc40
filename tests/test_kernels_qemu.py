"""Runtime kernels on the emulated Cortex-M4 (mps2-an386) and Cortex-M7
(mps2-an500): portable and DSP variants run on the device against expected
bytes from the tflite-micro interpreter, baked into the image; the image exits
with the mismatch count through semihosting."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kernel_qemu import DSP_OPS, build_image, emit_cases, have_toolchain, run_image  # noqa: E402
from opgen import OP_BUILDERS, add_all_pairs, add_pair_quants, random_feeds  # noqa: E402

from toolchain.tflm_oracle import run_graph  # noqa: E402

pytestmark = pytest.mark.skipif(not have_toolchain(),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")

PER_OP = {"CONV_2D": 12, "DEPTHWISE_CONV_2D": 12, "FULLY_CONNECTED": 10}
SHAPES = [
    ("CONV_2D", dict(cin=8, cout=16, kh=3, kw=3, stride=1, padding="SAME", h=7, w=5)),
    ("CONV_2D", dict(cin=1, cout=12, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10)),
    ("CONV_2D", dict(cin=16, cout=7, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5)),
    ("CONV_2D", dict(cin=3, cout=5, kh=3, kw=3, stride=2, padding="SAME", dilation=2, h=9, w=8)),
    ("DEPTHWISE_CONV_2D", dict(cin=16, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=6, w=5)),
    ("DEPTHWISE_CONV_2D", dict(cin=13, multiplier=1, kh=3, kw=3, stride=2, padding="SAME",
                               h=9, w=7)),
    # DEPTHWISE 3x3 path (C % 4 == 0, stride 1/2) and full-range activations (the
    # assembly requantize-and-store loops)
    ("DEPTHWISE_CONV_2D", dict(cin=64, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=25, w=5, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=20, multiplier=1, kh=3, kw=3, stride=2, padding="SAME",
                               h=8, w=8, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=12, multiplier=1, kh=3, kw=3, stride=2, padding="VALID",
                               h=9, w=7)),
    ("CONV_2D", dict(cin=16, cout=12, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5,
                     act="NONE")),
    ("CONV_2D", dict(cin=8, cout=7, kh=3, kw=3, stride=2, padding="SAME", h=7, w=7,
                     act="NONE")),
    # the six-pixel CONV_2D kernel: 6k + 1..5 pixels, odd out_c, K / 4 % 4 = 0..3, K > 64
    ("CONV_2D", dict(cin=4, cout=7, kh=1, kw=1, stride=1, padding="VALID", h=1, w=13,
                     act="NONE")),
    ("CONV_2D", dict(cin=8, cout=3, kh=1, kw=1, stride=1, padding="VALID", h=2, w=5,
                     act="NONE")),
    ("CONV_2D", dict(cin=72, cout=5, kh=1, kw=1, stride=1, padding="VALID", h=3, w=3,
                     act="NONE")),
    ("CONV_2D", dict(cin=12, cout=11, kh=1, kw=3, stride=1, padding="SAME", h=2, w=7,
                     act="NONE")),
    ("CONV_2D", dict(cin=2, cout=6, kh=2, kw=3, stride=1, padding="VALID", h=4, w=5,
                     act="NONE")),
    ("CONV_2D", dict(cin=20, cout=13, kh=1, kw=1, stride=1, padding="VALID", h=1, w=11,
                     act="NONE")),
    ("CONV_2D", dict(cin=64, cout=64, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5,
                     act="NONE")),
    # the four-pixel CONV_2D path and the fused depthwise store (full range)
    ("CONV_2D", dict(cin=8, cout=5, kh=1, kw=1, stride=1, padding="VALID", h=3, w=3,
                     act="NONE")),
    ("CONV_2D", dict(cin=4, cout=9, kh=3, kw=3, stride=2, padding="SAME", h=7, w=7,
                     act="NONE")),
    ("CONV_2D", dict(cin=1, cout=16, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10,
                     act="NONE")),
    ("CONV_2D", dict(cin=3, cout=7, kh=2, kw=2, stride=1, padding="SAME", h=5, w=6,
                     act="NONE")),
    ("CONV_2D", dict(cin=6, cout=4, kh=2, kw=2, stride=2, padding="SAME", dilation=2, h=9,
                     w=7, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=12, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=4, w=6, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=4, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=3, w=1, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=20, multiplier=1, kh=3, kw=3, stride=1, padding="VALID",
                               h=5, w=7, act="NONE")),
    # the direct form (narrow rows, stride 2, other kernel sizes, widths 1/2/odd)
    ("DEPTHWISE_CONV_2D", dict(cin=64, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=25, w=5, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=4, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=3, w=1, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=12, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=4, w=2, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=20, multiplier=1, kh=3, kw=3, stride=2, padding="SAME",
                               h=9, w=7, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=8, multiplier=1, kh=3, kw=3, stride=2, padding="VALID",
                               h=8, w=40, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=8, multiplier=1, kh=5, kw=5, stride=1, padding="SAME",
                               h=7, w=9, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=16, multiplier=1, kh=10, kw=4, stride=2, padding="SAME",
                               h=13, w=10, act="NONE")),
    ("DEPTHWISE_CONV_2D", dict(cin=16, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=5, w=5)),
    ("MAX_POOL_2D", dict(n=1, h=8, w=8, c=16, fh=2, fw=2, stride=2, padding="VALID",
                         act="NONE")),
    ("MAX_POOL_2D", dict(n=2, h=7, w=5, c=6, fh=3, fw=3, stride=2, padding="SAME",
                         act="RELU")),
    ("AVERAGE_POOL_2D", dict(n=1, h=25, w=5, c=64, fh=25, fw=5, stride=1, padding="VALID",
                             act="NONE")),
    ("AVERAGE_POOL_2D", dict(n=1, h=5, w=9, c=12, fh=3, fw=2, stride=1, padding="SAME",
                             act="RELU6")),
    ("CONV_2D", dict(cin=8, cout=70, kh=1, kw=1, stride=1, padding="VALID", h=1, w=3,
                     act="NONE")),
    ("CONV_2D", dict(cin=16, cout=16, kh=1, kw=1, stride=1, padding="VALID", h=3, w=5,
                     act="NONE")),
    ("FULLY_CONNECTED", dict(k=256, out=12)),
    ("FULLY_CONNECTED", dict(k=63, out=9, per_channel=True)),
    # DSP FC in several blocks of columns (odd K, O % 4 != 0, batches) and one block
    # with more outputs than a stack chunk
    ("FULLY_CONNECTED", dict(k=640, out=128)),
    ("FULLY_CONNECTED", dict(k=1000, out=10, batch=3)),
    ("FULLY_CONNECTED", dict(k=257, out=9, per_channel=True, batch=1)),
    ("FULLY_CONNECTED", dict(k=1001, out=7, batch=3, per_channel=True)),
    ("FULLY_CONNECTED", dict(k=131, out=70, batch=3)),
    ("FULLY_CONNECTED", dict(k=300, out=6, batch=3, bias=False)),
    ("FULLY_CONNECTED", dict(k=70, out=37, bias=False)),
]


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(2024)
    out = []

    def add(t, g):
        f = random_feeds(rng, g)
        out.append((f"{t}_{len(out)}", g, f, run_graph(g, f)[g.outputs[0]]))
    for t in sorted(OP_BUILDERS):
        if t in ("QUANTIZE", "DEQUANTIZE") or t.startswith("SPARSE_"):
            continue    # row-sparse family: its own harness (tests/test_subnets_kernels.py)
        for _ in range(PER_OP.get(t, 4)):
            add(t, OP_BUILDERS[t](rng))
    for t, kw in SHAPES:
        add(t, OP_BUILDERS[t](rng, **kw))
    # ADD fast path (SMMULR form): every int8 input pair, equal / wide scale ratios
    for k in (0, 1, 2, 3, 6):
        g, f = add_all_pairs(*add_pair_quants()[k], act=("NONE", "RELU")[k % 2])
        out.append((f"ADD_pairs_{len(out)}", g, f, run_graph(g, f)[g.outputs[0]]))
    return out


@pytest.mark.parametrize("cpu", ["m4", "m7"])
def test_kernels_on_qemu(cases, cpu, tmp_path):
    elf = build_image(emit_cases(cases), cpu, tmp_path)
    rc, results, text = run_image(elf, cpu)
    bad = [r for r in results if r[3]]
    assert not bad, f"mismatching kernel calls on {cpu}: {bad[:10]}"
    assert rc == 0, text[-2000:]
    variants = {(r[0], r[1]) for r in results}
    n_dsp = sum(1 for _, v in variants if v == "dsp")
    assert len({r[0] for r in results}) == len(cases)
    assert n_dsp == sum(1 for c in cases if c[1].ops[0].type in DSP_OPS)

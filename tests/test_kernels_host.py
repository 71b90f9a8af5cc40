"""C runtime kernels (host build, via ctypes) against the tflite-micro interpreter,
byte for byte, on random single-op graphs from tests/opgen.py.

Two host builds: "portable" (the reference C) and "dsp" (the Cortex-M DSP code
paths with the ACLE intrinsics emulated in C). The same DSP code runs on the
emulated M4/M7 in tests/test_kernels_qemu.py.
"""
import ctypes as C
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kernel_host import CFLAGS, RUNTIME, host_lib, run_op  # noqa: E402
from opgen import OP_BUILDERS, add_all_pairs, add_pair_quants, random_feeds  # noqa: E402

from toolchain.codegen.kernel_params import kernel_params  # noqa: E402
from toolchain.codegen.scratch import conv_pre4, dw_direct  # noqa: E402
from toolchain.ir import quant_math as qm  # noqa: E402
from toolchain.tflm_oracle import run_graph  # noqa: E402

CASES = {
    "CONV_2D": 150, "DEPTHWISE_CONV_2D": 150, "FULLY_CONNECTED": 120,
    "AVERAGE_POOL_2D": 80, "MAX_POOL_2D": 60, "ADD": 80, "MUL": 60, "RESHAPE": 20,
    "SOFTMAX": 100, "CONCATENATION": 40, "PAD": 40, "MEAN": 80, "RELU": 40, "RELU6": 40,
    "LOGISTIC": 40, "TANH": 40, "HARD_SWISH": 40, "LEAKY_RELU": 40, "SUB": 80,
    "MAXIMUM": 40, "MINIMUM": 40, "TRANSPOSE": 60,
    "STRIDED_SLICE": 80, "PRELU": 60, "TRANSPOSE_CONV": 100, "RESIZE_NEAREST_NEIGHBOR": 60,
}
# kernels with a DSP variant: check the explicit _portable and _dsp entry points
VARIANTS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@pytest.fixture(scope="module")
def libs():
    return {"portable": host_lib("portable"), "dsp": host_lib("dsp")}


def _check(libs, g, feeds):
    ref = run_graph(g, feeds)[g.outputs[0]]
    op = g.ops[0]
    for name, lib in libs.items():
        fns = ["_portable", "_dsp"] if (op.type in VARIANTS and name == "dsp") else [""]
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            fns.append("_pre")   # q = NULL, prepared table (+ packed filter)
        if op.type == "CONV_2D" and conv_pre4(kernel_params(g, op), "dsp"):
            fns.append("_pre4")   # the four-pixel path alone (last pixels via scratch)
        if (op.type == "DEPTHWISE_CONV_2D" and name == "dsp"
                and dw_direct(kernel_params(g, op), "dsp", False)):
            fns.append("_direct")   # packed filter the int8 size, folded bias
        if (op.type == "FULLY_CONNECTED" and name == "dsp"
                and kernel_params(g, op)["filter_offset"] == 0):
            fns.append("_packed")   # packed filter, folded bias, no scratch
        for fn in fns:
            y = run_op(lib, g, op, feeds, fn).reshape(ref.shape)
            if not np.array_equal(y, ref):
                bad = int(np.sum(y != ref))
                raise AssertionError(
                    f"{op.type} ({name}{fn}): {bad}/{ref.size} bytes differ; attrs {op.attrs}; "
                    + ", ".join(f"{n}{g.t(n).shape}" for n in g.tensors))


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_kernel_matches_tflm(libs, op_type):
    rng = np.random.default_rng(sum(map(ord, op_type)) * 7919)
    for _ in range(CASES[op_type]):
        g = OP_BUILDERS[op_type](rng)
        _check(libs, g, random_feeds(rng, g))


# Shapes the random generators reach rarely: MLPerf-like layers, channel counts
# that are / are not multiples of 4 (the DSP fast paths), odd pixel counts.
@pytest.mark.parametrize("kw", [
    dict(cin=8, cout=16, kh=3, kw=3, stride=1, padding="SAME", h=7, w=5),
    dict(cin=16, cout=7, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5),
    dict(cin=1, cout=12, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10),
    dict(cin=3, cout=16, kh=3, kw=3, stride=1, padding="SAME", h=8, w=8),
    dict(cin=12, cout=9, kh=3, kw=3, stride=2, padding="SAME", dilation=2, h=9, w=11),
    dict(cin=16, cout=12, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5, act="NONE"),
    # the four-pixel path (K % 4 == 0, full range: requantized in the assembly store):
    # pixel counts 4k + 1/2/3, odd output channels, gathered patches (in_c % 4 != 0)
    # with padding, strides and dilation
    dict(cin=8, cout=5, kh=1, kw=1, stride=1, padding="VALID", h=3, w=3, act="NONE"),
    dict(cin=12, cout=3, kh=1, kw=1, stride=1, padding="VALID", h=2, w=3, act="NONE"),
    dict(cin=4, cout=9, kh=3, kw=3, stride=2, padding="SAME", h=7, w=7, act="NONE"),
    dict(cin=1, cout=16, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10, act="NONE"),
    dict(cin=3, cout=7, kh=2, kw=2, stride=1, padding="SAME", h=5, w=6, act="NONE"),
    dict(cin=6, cout=4, kh=2, kw=2, stride=2, padding="SAME", dilation=2, h=9, w=7,
         act="NONE"),
    dict(cin=3, cout=16, kh=3, kw=3, stride=1, padding="SAME", h=8, w=8, act="NONE"),
    dict(cin=5, cout=6, kh=4, kw=4, stride=1, padding="VALID", h=6, w=7, act="NONE"),
    # four-pixel entry alone (mcu_conv2d_s8_pre4): fewer than four pixels in all, with
    # more than one 64-channel chunk through the stack buffer; 4k + 1..3 pixels
    dict(cin=8, cout=70, kh=1, kw=1, stride=1, padding="VALID", h=1, w=3, act="NONE"),
    dict(cin=4, cout=9, kh=3, kw=3, stride=1, padding="VALID", h=3, w=4, act="NONE"),
    dict(cin=12, cout=5, kh=1, kw=1, stride=1, padding="VALID", h=1, w=1, act="NONE"),
    dict(cin=16, cout=16, kh=1, kw=1, stride=1, padding="VALID", h=3, w=5, act="NONE"),
    # six-pixel kernel (mcu_conv_s8s16_6px): 6k + 1..5 pixels, odd out_c, K / 4 % 4 = 0..3
    dict(cin=4, cout=7, kh=1, kw=1, stride=1, padding="VALID", h=1, w=13, act="NONE"),
    dict(cin=8, cout=3, kh=1, kw=1, stride=1, padding="VALID", h=2, w=5, act="NONE"),
    dict(cin=72, cout=5, kh=1, kw=1, stride=1, padding="VALID", h=3, w=3, act="NONE"),
    dict(cin=4, cout=9, kh=2, kw=2, stride=1, padding="VALID", h=5, w=4, act="NONE"),
    dict(cin=12, cout=11, kh=1, kw=3, stride=1, padding="SAME", h=2, w=7, act="NONE"),
    dict(cin=2, cout=6, kh=2, kw=3, stride=1, padding="VALID", h=4, w=5, act="NONE"),
    dict(cin=20, cout=13, kh=1, kw=1, stride=1, padding="VALID", h=1, w=11, act="NONE"),
    dict(cin=64, cout=64, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5, act="NONE"),
])
def test_conv_shapes(libs, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS["CONV_2D"](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


@pytest.mark.parametrize("kw", [
    dict(cin=16, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=6, w=5),
    dict(cin=13, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=9, w=7),
    dict(cin=8, multiplier=2, kh=3, kw=3, stride=1, padding="VALID", h=6, w=6),
    dict(cin=8, multiplier=1, kh=3, kw=3, stride=1, dilation=2, padding="SAME", h=6, w=6),
    # the 3x3 path (C % 4 == 0, stride 1/2): channel chunks of 8 (+4), odd/even widths
    dict(cin=64, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=25, w=5),
    dict(cin=20, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=8, w=8),
    dict(cin=12, multiplier=1, kh=3, kw=3, stride=2, padding="VALID", h=9, w=7),
    dict(cin=4, multiplier=1, kh=3, kw=3, stride=1, padding="VALID", h=5, w=6),
    dict(cin=24, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=7, w=1),
    dict(cin=64, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=25, w=5, act="NONE"),
    dict(cin=8, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=6, w=7, act="NONE"),
    # stride 1, full range: requantized in the assembly store (odd/even/1/2 widths,
    # a 4-channel last chunk, VALID)
    dict(cin=12, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=4, w=6, act="NONE"),
    dict(cin=4, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=3, w=1, act="NONE"),
    dict(cin=20, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=5, w=2, act="NONE"),
    dict(cin=8, multiplier=1, kh=3, kw=3, stride=1, padding="VALID", h=6, w=7, act="NONE"),
    # the direct form (packed int8 filter, folded bias, gathered columns): rows narrower
    # than 16 at stride 1, stride 2, other kernel sizes; widths 1/2/odd, one and odd
    # numbers of channel groups, padding on every side, pixel runs longer than 16
    dict(cin=64, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=25, w=5, act="NONE"),
    dict(cin=4, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=3, w=1, act="NONE"),
    dict(cin=12, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=4, w=2, act="NONE"),
    dict(cin=20, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=9, w=7, act="NONE"),
    dict(cin=8, multiplier=1, kh=3, kw=3, stride=2, padding="VALID", h=8, w=40, act="NONE"),
    dict(cin=12, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=5, w=1, act="NONE"),
    dict(cin=8, multiplier=1, kh=5, kw=5, stride=1, padding="SAME", h=7, w=9, act="NONE"),
    dict(cin=4, multiplier=1, kh=3, kw=1, stride=2, padding="SAME", h=7, w=3, act="NONE"),
    dict(cin=16, multiplier=1, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10, act="NONE"),
    dict(cin=24, multiplier=1, kh=3, kw=3, stride=1, padding="VALID", h=5, w=9, act="NONE"),
    dict(cin=16, multiplier=1, kh=3, kw=3, stride=1, padding="SAME", h=5, w=5),   # clamped
    dict(cin=8, multiplier=1, kh=3, kw=3, stride=2, padding="SAME", h=6, w=6),    # clamped
])
def test_depthwise_shapes(libs, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS["DEPTHWISE_CONV_2D"](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


# pooling, four channels per word on DSP builds (C % 4 == 0 and tails, padding,
# strides, clamped activations, the KWS/ResNet-8 global average pools)
POOL_SHAPES = [
    dict(n=1, h=8, w=8, c=16, fh=2, fw=2, stride=2, padding="VALID", act="NONE"),
    dict(n=2, h=7, w=5, c=6, fh=3, fw=3, stride=2, padding="SAME", act="RELU"),
    dict(n=1, h=5, w=9, c=12, fh=3, fw=2, stride=1, padding="SAME", act="RELU6"),
    dict(n=1, h=25, w=5, c=64, fh=25, fw=5, stride=1, padding="VALID", act="NONE"),
    dict(n=1, h=1, w=7, c=5, fh=1, fw=3, stride=1, padding="SAME", act="NONE"),
    dict(n=1, h=16, w=16, c=4, fh=16, fw=16, stride=1, padding="VALID", act="NONE"),  # 256 taps
]


@pytest.mark.parametrize("op_type", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("kw", POOL_SHAPES)
def test_pool_shapes(libs, op_type, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS[op_type](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


@pytest.mark.parametrize("kw", [
    dict(k=256, out=12), dict(k=64, out=10, per_channel=True), dict(k=3, out=1),
    dict(k=7, out=5, batch=3),
    # DSP: several blocks of columns with int32 partials (odd K: a tail in the last
    # block; O % 4 != 0: rows outside the four-row groups), batches reuse the partials
    dict(k=640, out=128), dict(k=1000, out=10, batch=3), dict(k=257, out=9, per_channel=True),
    dict(k=257, out=6, batch=3), dict(k=1001, out=7, batch=3, per_channel=True),
    dict(k=640, out=130, batch=3), dict(k=257, out=10, batch=3, bias=False),
    # one block, more outputs than one stack chunk of sums, odd K
    dict(k=130, out=70, batch=3), dict(k=131, out=33, per_channel=True),
    dict(k=70, out=37, bias=False),
])
def test_fc_shapes(libs, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS["FULLY_CONNECTED"](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


def test_fc_scratch_blocks():
    """DSP FC scratch: one block (2K) unless blocks of ~128 columns (a multiple of 4, as
    few blocks as that allows) plus int32 partials (2B + 4O) are smaller."""
    from toolchain.codegen.scratch import RUNTIME_SIZER as rt
    assert rt.fc_scratch(640, 128) == 2 * 128 + 4 * 128
    assert rt.fc_scratch(1000, 10) == 2 * 128 + 4 * 10
    assert rt.fc_scratch(257, 9) == 2 * 88 + 4 * 9      # 3 blocks: 88 + 88 + 81
    assert rt.fc_scratch(256, 10) == 2 * 128 + 4 * 10
    assert rt.fc_scratch(128, 128) == 2 * 128
    assert rt.fc_scratch(128, 8) == 2 * 128
    assert rt.fc_scratch(64, 12) == 2 * 64
    assert rt.fc_scratch(300, 200) == 2 * 300           # partials would cost more


FIXEDPOINT_TEST_C = r"""
#include "mcu_fixedpoint.h"
void mbqm_both(const int32_t *x, const int32_t *m, const int32_t *s, int32_t n,
               int32_t *ref, int32_t *fast) {
    for (int32_t i = 0; i < n; i++) {
        ref[i] = mcu_mbqm_ref(x[i], m[i], s[i]);
        fast[i] = mcu_requantize(x[i], m[i], s[i]);
    }
}
"""


def test_requantize_equals_double_rounding():
    """mcu_requantize (one 64-bit multiply-add) == TFLM's double-rounding
    MultiplyByQuantizedMultiplier, and both == quant_math's numpy version."""
    d = Path(tempfile.mkdtemp())
    (d / "fp.c").write_text(FIXEDPOINT_TEST_C)
    so = d / "fp.so"
    subprocess.run([os.environ.get("CC", "cc"), *CFLAGS, f"-I{RUNTIME}", str(d / "fp.c"),
                    "-o", str(so)], check=True)
    lib = C.CDLL(str(so))
    rng = np.random.default_rng(5)
    n = 400_000
    x = np.concatenate([rng.integers(-(1 << 31), 1 << 31, n // 2),
                        rng.integers(-100_000, 100_000, n // 4),
                        rng.integers(-(1 << 16), 1 << 16, n // 4) << rng.integers(0, 15, n // 4)])
    x = np.clip(x, -(1 << 31), (1 << 31) - 1).astype(np.int32)
    m = rng.integers(1 << 30, 1 << 31, n).astype(np.int32)
    s = rng.integers(-31, 1, n).astype(np.int32)
    # some left shifts on small values (no overflow), and exact ties
    s[:1000] = rng.integers(1, 8, 1000)
    x[:1000] = rng.integers(-4000, 4000, 1000)
    m[1000:2000] = 1 << 30
    ref, fast = np.zeros(n, np.int32), np.zeros(n, np.int32)
    P = lambda a: a.ctypes.data_as(C.POINTER(C.c_int32))  # noqa: E731
    lib.mbqm_both(P(x), P(m), P(s), n, P(ref), P(fast))
    assert np.array_equal(ref, fast)
    assert np.array_equal(ref, qm.multiply_by_quantized_multiplier(x, m, s))


# ---- ADD fast path (elementwise.c: SMMULR form of the double rounding) ----------------
@pytest.mark.parametrize("k", range(24))
def test_add_all_pairs_match_tflm(libs, k):
    """Every input pair, against the tflite-micro interpreter, same-shape and broadcast
    entry points (the fast path), portable and DSP builds."""
    q1, q2, qo = add_pair_quants()[k]
    act = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")[k % 4]
    g, feeds = add_all_pairs(q1, q2, qo, act)
    _check(libs, g, feeds)
    # the broadcast entry point over the same pairs: b = one row of 256 values
    from toolchain.ir.graph import Tensor
    g2, _ = add_all_pairs(q1, q2, qo, act)
    g2.tensors["b"] = Tensor("b", (1, 1, 256, 1), "int8", g2.t("b").quant)
    f2 = {"a": feeds["a"], "b": feeds["b"][:, :1, :, :].copy()}
    _check(libs, g2, f2)


def test_add_fast_path_used():
    """ResNet-8-like ADD parameters take the fast path (left_shift 20, input shifts <= 0)."""
    from toolchain.codegen.kernel_params import kernel_params
    for q1, q2, qo in add_pair_quants()[:8]:
        g, _ = add_all_pairs(q1, q2, qo)
        p = kernel_params(g, g.ops[0])
        assert p["left_shift"] == 20
        assert -31 <= p["input1_shift"] <= 0 and -31 <= p["input2_shift"] <= 0
        assert -128 <= p["input1_offset"] <= 128 and -128 <= p["input2_offset"] <= 128


ADD_STAGE_TEST_C = r"""
#include "elementwise.c"
/* number of (x, off) for which the fast input stage differs from TFLM's literal
 * RDBP(SRDHM((x + off) << ls, m), -shift) */
int32_t add_stage_mismatches(const int32_t *m, const int32_t *shift, int32_t n, int32_t ls)
{
    int32_t bad = 0;
    for (int32_t i = 0; i < n; i++)
        for (int32_t off = -128; off <= 128; off++) {
            mcu_add_in_t c;
            if (!add_in_prepare(off, m[i], shift[i], &c)) return -1;
            for (int32_t x = -128; x < 128; x++) {
                const int32_t a = (int32_t)((uint32_t)(x + off) << ls);
                const int32_t ref = mcu_rdbp(mcu_srdhm(a, m[i]), -shift[i]);
                bad += add_in(&c, ls + 1, x) != ref;
            }
        }
    return bad;
}
"""


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_add_input_stage_exact(variant):
    """The ADD fast path's input stage (SMMULR form) == TFLM's literal double rounding
    for every int8 input, every offset -128..128, left shifts 20/21 and random
    multipliers (incl. 0, 2^30, 2^31-1) with shifts 0..-31: the intermediate sums are
    checked exactly, not only the final (more forgiving) int8 outputs."""
    d = Path(tempfile.mkdtemp())
    (d / "a.c").write_text(ADD_STAGE_TEST_C)
    so = d / "a.so"
    flags = ["-DMCU_EMULATE_DSP"] if variant == "dsp" else []
    subprocess.run([os.environ.get("CC", "cc"), *CFLAGS, *flags, f"-I{RUNTIME}", str(d / "a.c"),
                    str(RUNTIME / "requant.c"), "-o", str(so)], check=True)
    lib = C.CDLL(str(so))
    rng = np.random.default_rng(3)
    n = 160
    m = rng.integers(0, 1 << 31, n).astype(np.int32)
    m[:4] = [0, 1 << 30, (1 << 31) - 1, 1]
    s = np.concatenate([np.zeros(8), -np.arange(0, 32), rng.integers(-31, 1, n - 40)]).astype(np.int32)
    P = lambda a: a.ctypes.data_as(C.POINTER(C.c_int32))  # noqa: E731
    for ls in (20, 21):
        assert lib.add_stage_mismatches(P(m), P(s), n, ls) == 0

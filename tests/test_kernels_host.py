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
from opgen import OP_BUILDERS, random_feeds  # noqa: E402

from toolchain.ir import quant_math as qm  # noqa: E402
from toolchain.ir.tflm import run_graph  # noqa: E402

CASES = {
    "CONV_2D": 150, "DEPTHWISE_CONV_2D": 150, "FULLY_CONNECTED": 120,
    "AVERAGE_POOL_2D": 80, "MAX_POOL_2D": 60, "ADD": 80, "MUL": 60, "RESHAPE": 20,
    "SOFTMAX": 100, "CONCATENATION": 40, "PAD": 40, "MEAN": 80, "RELU": 40, "RELU6": 40,
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
])
def test_depthwise_shapes(libs, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS["DEPTHWISE_CONV_2D"](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


@pytest.mark.parametrize("kw", [dict(k=256, out=12), dict(k=64, out=10, per_channel=True),
                                dict(k=3, out=1), dict(k=7, out=5, batch=3)])
def test_fc_shapes(libs, kw):
    rng = np.random.default_rng(len(str(kw)))
    for _ in range(3):
        g = OP_BUILDERS["FULLY_CONNECTED"](rng, **kw)
        _check(libs, g, random_feeds(rng, g))


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

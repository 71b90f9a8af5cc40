"""quant_math against scalar transcriptions of the TFLite/gemmlowp C++ and against
tflite-micro itself (which MultiplyByQuantizedMultiplier variant TFLM uses)."""
import math

import numpy as np
import pytest

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, Op, Quant, Tensor
from toolchain.tflm_oracle import run_graph


# ---- scalar transcriptions of the C++ (int semantics spelled out) -------------------
def c_div(a, b):                      # C truncating division
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def srdhm_c(a, b):
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return c_div(ab + nudge, 1 << 31)


def rdbpot_c(x, e):
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def quantize_multiplier_c(d):
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    qf = int(math.copysign(math.floor(abs(q * 2**31) + 0.5), q))   # exact here (|q*2^31| < 2^31)
    if qf == 2**31:
        qf //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return qf, shift


def test_quantize_multiplier_matches_c_and_edge_cases():
    rng = np.random.default_rng(0)
    vals = np.exp(rng.uniform(-30, 5, 2000))
    m, s = qm.quantize_multiplier(vals)
    for v, mm, ss in zip(vals, m, s):
        assert (int(mm), int(ss)) == quantize_multiplier_c(float(v))
        assert mm == 0 or 2**30 <= mm < 2**31
    # mantissa that rounds up to 2^31: halve and bump the shift
    d = (2**31 - 0.5) / 2**31 * 2.0**-3
    assert qm.quantize_multiplier(d) == (2**30, -2)
    assert qm.quantize_multiplier(0.0) == (0, 0)
    assert qm.quantize_multiplier(2.0**-40) == (0, 0)          # flushed (shift < -31)
    assert qm.quantize_multiplier(1.0) == (2**30, 1)
    assert qm.quantize_multiplier(0.5) == (2**30, 0)


def test_srdhm_and_rounding_divide_match_c():
    rng = np.random.default_rng(1)
    a = rng.integers(-2**31, 2**31, 3000)
    b = rng.integers(-2**31, 2**31, 3000)
    a[:5] = [-2**31, -2**31, 2**31 - 1, 0, -1]
    b[:5] = [-2**31, 2**31 - 1, -2**31, 5, 2**31 - 1]
    got = qm.saturating_rounding_doubling_high_mul(a, b)
    assert [int(v) for v in got] == [srdhm_c(int(x), int(y)) for x, y in zip(a, b)]
    e = rng.integers(0, 32, 3000)
    x = rng.integers(-2**31, 2**31, 3000)
    x[:6] = [-3, -2, -1, 1, 2, 3]
    e[:6] = 1
    got = qm.rounding_divide_by_pot(x, e)
    assert [int(v) for v in got] == [rdbpot_c(int(v), int(k)) for v, k in zip(x, e)]
    # ties go away from zero
    assert list(qm.rounding_divide_by_pot(np.array([-3, -1, 1, 3]), 1)) == [-2, -1, 1, 2]


def test_round_half_away_and_trunc_div():
    assert list(qm.round_half_away([-2.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994])) == \
        [-3, -1, 1, 2, 3, 0]
    assert list(qm.trunc_div(np.array([-7, 7, -7, 7]), np.array([2, 2, -2, -2]))) == [-3, 3, 3, -3]


def test_fixed_point_exp_and_reciprocal_are_accurate():
    x = np.linspace(-31.9, 0, 5000)
    raw = np.round(x * 2**26).astype(np.int64)                 # Q5.26
    e = qm.exp_on_negative_values(raw, 5) / 2**31
    assert np.max(np.abs(e - np.exp(raw / 2**26))) < 2e-8 * 2**5
    a = np.linspace(0, 1, 1000, endpoint=False)
    r = qm.one_over_one_plus_x_for_x_in_0_1(np.round(a * 2**31).astype(np.int64)) / 2**31
    assert np.max(np.abs(r - 1 / (1 + a))) < 1e-7
    assert list(qm.count_leading_zeros_u32(np.array([0, 1, 2**31, 2**32 - 1, 3]))) == [32, 31, 0, 0, 30]


def test_softmax_int8_close_to_float():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (50, 10))
    s = 0.1
    m, sh, dmin = qm.softmax_params(1.0, float(np.float32(s)))
    q = qm.softmax_int8(x, m, sh, dmin).astype(np.int64)
    xf = x * s
    p = np.exp(xf - xf.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.max(np.abs((q + 128) / 256 - p)) <= 1.5 / 256


def _double_vs_single_cases(rng, n):
    """(acc, mult, shift) triples where single- and double-rounding differ and the
    result lies in int8 range."""
    out = []
    while len(out) < n:
        real = float(np.exp(rng.uniform(np.log(2**-12), np.log(2**-6))))
        m, s = qm.quantize_multiplier(real)
        acc = rng.integers(-int(100 / real), int(100 / real), 20000)
        d = qm.multiply_by_quantized_multiplier(acc, m, s)
        sr = qm.multiply_by_quantized_multiplier_single_rounding(acc, m, s)
        idx = np.nonzero(d != sr)[0]
        if idx.size:
            out.append((int(acc[idx[0]]), real))
    return out


def test_tflm_uses_double_rounding():
    """A FULLY_CONNECTED whose bias carries accumulators on which the two
    MultiplyByQuantizedMultiplier variants disagree: TFLM must match double rounding."""
    rng = np.random.default_rng(3)
    cases = _double_vs_single_cases(rng, 24)
    n = len(cases)
    in_s = 0.5
    w_scales = np.array([np.float32(r * 0.25 / in_s) for _, r in cases], np.float64)
    g = Graph(name="fc_rounding")
    g.add_tensor(Tensor("x", (1, 1), "int8", Quant.per_tensor(in_s, 0)))
    g.add_tensor(Tensor("w", (n, 1), "int8", Quant(w_scales, np.zeros(n), 0),
                        np.zeros((n, 1), np.int8)))
    bias_s = (np.float32(in_s) * w_scales.astype(np.float32)).astype(np.float64)
    g.add_tensor(Tensor("b", (n,), "int32", Quant(bias_s, np.zeros(n), 0),
                        np.array([a for a, _ in cases], np.int32)))
    g.add_tensor(Tensor("y", (1, n), "int8", Quant.per_tensor(0.25, 0)))
    g.add_op(Op("FULLY_CONNECTED", ["x", "w", "b"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    got = run_graph(g, np.zeros((1, 1), np.int8))["y"].reshape(-1).astype(np.int64)
    m, s = qm.quantize_multiplier(in_s * w_scales / 0.25)
    acc = np.array([a for a, _ in cases])
    double = np.clip(qm.multiply_by_quantized_multiplier(acc, m, s), -128, 127)
    single = np.clip(qm.multiply_by_quantized_multiplier_single_rounding(acc, m, s), -128, 127)
    assert np.any(double != single)
    assert np.array_equal(got, double)

"""TFLite / TFLite Micro fixed-point arithmetic, vectorized in numpy and exact.

Every function here reproduces, bit for bit, the C++ helper of the same name in
TFLite (`tensorflow/lite/kernels/internal/common.{h,cc}`, `quantization_util.cc`)
and gemmlowp (`fixedpoint/fixedpoint.h`) as TFLite Micro builds them:

* **Double rounding.** TFLM builds with ``TFLITE_SINGLE_ROUNDING`` off (0), so
  ``MultiplyByQuantizedMultiplier`` is
  ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, M), right)``
  — two roundings (one in the high multiply, one in the shift).  The
  single-rounding variant (``(x*M + 2^(30-shift)) >> (31-shift)``) differs by
  ±1 on about 1 in 2^10 values; ``multiply_by_quantized_multiplier_single_rounding``
  is kept here for comparison only.  tests/test_quant_math.py checks against the
  installed tflite-micro which one it uses.
* **Rounding.** ``TfLiteRound``/``std::round``/``roundf`` round half away from zero
  (``round_half_away``), never numpy's half-to-even ``np.round``.
* **C integer division** truncates toward zero (``trunc_div``), never numpy's
  floor ``//``.
* **float32.** Scales live in a .tflite file as float32.  TFLM computes real
  multipliers in double from those float32 values (older TFLite sources multiply
  FULLY_CONNECTED's two scales in float32 first; the installed tflite-micro does
  not, tests/test_quant_formulas.py decides such cases).  Use
  ``f32`` to round a scale to float32 before building any multiplier.

All integer arrays are carried as int64 holding int32 values; functions accept
python ints or numpy arrays and broadcast.  The C-kernel engineer and codegen
mirror exactly these functions.
"""
from __future__ import annotations

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# --------------------------------------------------------------------------- basics
def f32(x):
    """Round a scale (python float or array) to float32 and back to float64, as a
    .tflite file stores it."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x):
    """Two's-complement wrap of int64 values to int32 range (C int32 overflow)."""
    x = i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def round_half_away(x):
    """std::round / roundf / TfLiteRound: halves go away from zero. Exact for any
    double (no x+0.5 trick)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.trunc(x)
    frac = x - t                      # exact in binary floating point
    return t + np.where(np.abs(frac) >= 0.5, np.sign(x), 0.0)


def trunc_div(a, b):
    """C integer division (truncates toward zero) for int64 arrays."""
    a, b = i64(a), i64(b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


# --------------------------------------------------------------------------- multipliers
def quantize_multiplier(real_multiplier):
    """QuantizeMultiplier(double) -> (quantized_multiplier Q31 int32, shift).

    real ≈ quantized_multiplier * 2^(shift - 31), quantized_multiplier in
    [2^30, 2^31).  As TFLite: frexp, round half away from zero; a mantissa that
    rounds up to 2^31 is halved and the shift incremented; shift < -31 flushes to
    (0, 0); 0.0 gives (0, 0).  Vectorized: returns int64 arrays (scalars for scalar
    input)."""
    d = np.asarray(real_multiplier, dtype=np.float64)
    q, e = np.frexp(d)
    q_fixed = round_half_away(q * float(1 << 31)).astype(np.int64)
    e = e.astype(np.int64)
    if np.any(np.abs(q_fixed) > (1 << 31)):
        raise ValueError("quantize_multiplier: mantissa out of range")
    up = q_fixed == (1 << 31)
    q_fixed = np.where(up, q_fixed // 2, q_fixed)
    e = np.where(up, e + 1, e)
    tiny = e < -31
    q_fixed = np.where(tiny, 0, q_fixed)
    e = np.where(tiny, 0, e)
    zero = d == 0.0
    q_fixed = np.where(zero, 0, q_fixed)
    e = np.where(zero, 0, e)
    if q_fixed.ndim == 0:
        return int(q_fixed), int(e)
    return q_fixed, e


def quantize_multiplier_smaller_than_one_exp(real_multiplier):
    """QuantizeMultiplierSmallerThanOneExp: requires 0 < m < 1; shift <= 0."""
    m, s = quantize_multiplier(real_multiplier)
    if np.any(np.asarray(s) > 0):
        raise ValueError("multiplier must be < 1")
    return m, s



ADD_LEFT_SHIFT = 20   # TFLM's int8 ADD


def add_multipliers(s1: float, s2: float, so: float):
    """TFLM's int8 ADD preparation (PrepareGeneralSubOp): inputs are rescaled to twice the
    larger input scale, with a left shift of 20, then the sum to the output scale.
    Returns (left_shift, (m1, sh1), (m2, sh2), (mo, sho)); shared by the reference
    interpreter and the code generator so both use the same parameters."""
    twice_max = 2 * max(s1, s2)
    return (ADD_LEFT_SHIFT,
            quantize_multiplier_smaller_than_one_exp(s1 / twice_max),
            quantize_multiplier_smaller_than_one_exp(s2 / twice_max),
            quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << ADD_LEFT_SHIFT) * so)))

def quantize_multiplier_greater_than_one(real_multiplier):
    """QuantizeMultiplierGreaterThanOne: requires m > 1; shift >= 0."""
    m, s = quantize_multiplier(real_multiplier)
    if np.any(np.asarray(s) < 0):
        raise ValueError("multiplier must be > 1")
    return m, s


# --------------------------------------------------------------------------- gemmlowp core
def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul for int32 (ARM VQRDMULH):
    (a*b + nudge) / 2^31 truncated, nudge = 2^30 or 1-2^30 by sign of a*b;
    INT32_MIN*INT32_MIN saturates to INT32_MAX."""
    a, b = i64(a), i64(b)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    hi = np.where(s >= 0, s >> 31, -((-s) >> 31))      # truncating division by 2^31
    return np.where(overflow, INT32_MAX, hi)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: arithmetic shift right by `exponent` (0..31),
    rounding to nearest, ties away from zero."""
    x, exponent = i64(x), i64(exponent)
    mask = (i64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for int32 raw values."""
    x = i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    r = wrap_int32(x << exponent)
    r = np.where(x > threshold, INT32_MAX, r)
    return np.where(x < -threshold, INT32_MIN, r)


def multiply_by_quantized_multiplier(x, quantized_multiplier, shift):
    """TFLM MultiplyByQuantizedMultiplier(int32 x, int32 M, int shift), double
    rounding (TFLITE_SINGLE_ROUNDING off, the TFLM default):
    RoundingDivideByPOT(SRDHM(x * 2^max(shift,0), M), max(-shift,0)).
    Used by int8 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MUL, MEAN, RELU,
    QUANTIZE (requantize)."""
    x, m, shift = i64(x), i64(quantized_multiplier), i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap_int32(x << left), m), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, quantized_multiplier, left_shift):
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0), used by ADD."""
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, quantized_multiplier), -i64(left_shift))


def multiply_by_quantized_multiplier_greater_than_one(x, quantized_multiplier, left_shift):
    """MultiplyByQuantizedMultiplierGreaterThanOne (shift >= 0), used by SOFTMAX."""
    return saturating_rounding_doubling_high_mul(
        wrap_int32(i64(x) << i64(left_shift)), quantized_multiplier)


def multiply_by_quantized_multiplier_single_rounding(x, quantized_multiplier, shift):
    """The TFLITE_SINGLE_ROUNDING=1 variant (NOT what TFLM uses by default):
    (x*M + 2^(30-shift)) >> (31-shift).  For comparison and tests only."""
    x, m, shift = i64(x), i64(quantized_multiplier), i64(shift)
    total = 31 - shift
    return (x * m + (i64(1) << (total - 1))) >> total


# --------------------------------------------------------------------------- activation ranges
def activation_range_quantized(activation: str, scale: float, zero_point: int,
                               qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: clamp bounds of a fused activation,
    quantized with the output's float32 scale (TfLiteRound(f / scale) in float32)."""
    s = np.float32(scale)

    def q(f):
        return int(zero_point) + int(round_half_away(np.float32(f) / s))
    if activation in (None, "NONE"):
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


# --------------------------------------------------------------------------- softmax pieces
# gemmlowp FixedPoint<int32, I>: raw int32 with I integer bits (Q I.(31-I)).
def fp_one(integer_bits: int) -> int:
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def rescale(x, src_bits: int, dst_bits: int):
    """gemmlowp Rescale<dst>(FixedPoint<src>)."""
    return saturating_rounding_multiply_by_pot(x, src_bits - dst_bits)


def rounding_half_sum(a, b):
    """gemmlowp RoundingHalfSum(int32): (a+b+sign)/2 with C truncation."""
    s = i64(a) + i64(b)
    return trunc_div(s + np.where(s >= 0, 1, -1), 2)


def _srdhm(a, b):
    return saturating_rounding_doubling_high_mul(a, b)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp: exp(x) for x in [-1/4, 0), FixedPoint<int32,0> in and out."""
    constant_term = 1895147668            # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap_int32(i64(a) + (1 << 28))    # a + 1/8
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    t = saturating_rounding_multiply_by_pot(
        wrap_int32(_srdhm(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return wrap_int32(constant_term + _srdhm(constant_term, wrap_int32(x + t)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp exp_on_negative_values(FixedPoint<int32, integer_bits>) ->
    FixedPoint<int32, 0>.  Softmax uses integer_bits = 5 (Q5.26 input)."""
    a = i64(a)
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = wrap_int32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a)
    for exponent, mult in _EXP_BARREL:
        if integer_bits > exponent:
            shift = frac_bits + exponent
            result = np.where((remainder & (1 << shift)) != 0, _srdhm(result, mult), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: FixedPoint<int32,0> -> <int32,0>,
    Newton-Raphson with 3 iterations in Q2.29."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_f2 = 1 << 29
    x = wrap_int32(constant_48_over_17 + _srdhm(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)          # F2
        one_minus = wrap_int32(one_f2 - half_denominator_times_x)       # F2
        x = wrap_int32(x + rescale(_srdhm(x, one_minus), 4, 2))         # F2*F2 = F4 -> F2
    # ExactMulByPot<-1>: F2 -> F1 (same raw), then Rescale<0> from 1 integer bit
    return rescale(x, 1, 0)


def count_leading_zeros_u32(x):
    """CountLeadingZeros(uint32) for int64 arrays holding uint32 values (0 -> 32)."""
    x = i64(x) & 0xFFFFFFFF
    _, e = np.frexp(x.astype(np.float64))      # exact: x < 2^32; e = bit length
    return np.where(x == 0, 32, 32 - e.astype(np.int64))


def get_reciprocal(x, x_integer_digits: int):
    """TFLite GetReciprocal(int32 x, x_integer_digits) -> (FixedPoint<0> raw of
    1/x scaled, num_bits_over_unit)."""
    x = i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap_int32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int):
    """PreprocessSoftmaxScaling (double rounding build): multiplier for
    input_diff -> Q(integer_bits) and its left shift."""
    max_real = float((1 << 31) - 1)
    real = min(float(beta) * float(input_scale) * float(1 << (31 - input_integer_bits)), max_real)
    return quantize_multiplier_greater_than_one(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """CalculateInputRadius (non-emulated float path)."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(np.floor(max_input_rescaled))


SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """TFLM SoftmaxPrepare for int8 in/out: (input_multiplier, input_left_shift,
    diff_min).  `input_scale` must already be the float32 value."""
    m, s = preprocess_softmax_scaling(float(np.float32(beta)), input_scale,
                                      SOFTMAX_SCALED_DIFF_INTEGER_BITS)
    diff_min = -calculate_input_radius(SOFTMAX_SCALED_DIFF_INTEGER_BITS, s)
    return m, s, diff_min


def softmax_int8(x: np.ndarray, input_multiplier: int, input_left_shift: int,
                 diff_min: int) -> np.ndarray:
    """reference_ops::Softmax<int8_t, int8_t> over the last axis (output scale
    1/256, zero point -128)."""
    x = i64(x)
    shape = x.shape
    depth = shape[-1]
    x = x.reshape(-1, depth)
    max_in_row = x.max(axis=1, keepdims=True)
    diff = x - max_in_row
    valid = diff >= diff_min
    rescaled = multiply_by_quantized_multiplier_greater_than_one(diff, input_multiplier,
                                                                 input_left_shift)
    e = exp_on_negative_values(rescaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)
    e_acc = rescale(e, 0, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    sum_of_exps = np.zeros(x.shape[0], dtype=np.int64)
    for c in range(depth):                      # sequential int32 (wrapping) adds, as C
        sum_of_exps = wrap_int32(sum_of_exps + np.where(valid[:, c], e_acc[:, c], 0))
    shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps,
                                                       SOFTMAX_ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - 8
    unsat = rounding_divide_by_pot(_srdhm(shifted_scale[:, None], e), exponent[:, None])
    out = np.clip(unsat - 128, -128, 127)
    out = np.where(valid, out, -128)
    return out.reshape(shape).astype(np.int8)


# --------------------------------------------------------------------------- logistic
# TFLM LOGISTIC, int8 in / int8 out (kernels/logistic_common.cc Prepare and
# reference_integer_ops::Logistic):
# * Prepare requires input and output of the same type and an output zero point of
#   -128.  It does NOT check the output scale: the kernel always writes
#   round(256 * sigmoid) - 128, i.e. values in units of 1/256 — a model whose
#   LOGISTIC output has another scale runs in TFLM, but its int8 bytes mean
#   scale 1/256.  The quantizer therefore fixes (1/256, -128) (LOGISTIC_QUANT).
# * Any input scale and zero point: input_multiplier/left_shift come from
#   frexp(input_scale * 2^27) (the mantissa of the float32 scale, exact, no
#   QuantizeMultiplier halving); left_shift = floor(log2(scale)) + 28 (scales
#   2^-9..2^2 give 19..30; TFLM is undefined below 2^-28), the int8 difference x - zp (|.| <= 255) is moved to Q4.27 with
#   MultiplyByQuantizedMultiplier (double rounding).  Differences with
#   |x - zp| >= input_range_radius saturate to -128 / 127 without evaluation; the
#   radius is floor(15 * 2^27 / 2^left_shift), the largest difference whose
#   Q4.27 value stays below 15 in magnitude (no int32 overflow in the left shift).
# * Quirk: for input scales >= 8 (left_shift >= 31) the radius is 0, so every
#   input saturates, including x == zp (difference 0 <= -0) -> -128.
# * The evaluation is gemmlowp::logistic on FixedPoint<int32, 4>: 1/2 at 0;
#   for a > 0, one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-a)); for
#   a < 0, one minus that of |a|; then RoundingDivideByPOT(., 23) - 128, clamped.
LOGISTIC_INPUT_INTEGER_BITS = 4
LOGISTIC_OUTPUT_INTEGER_BITS = 8
LOGISTIC_QUANT = (1.0 / 256.0, -128)     # required output (scale, zero point)


def logistic_params(input_scale: float, input_zero_point: int) -> tuple[int, int, int, int]:
    """TFLM LogisticPrepare (CalculateArithmeticOpDataLogistic) for int8:
    (input_zero_point, input_multiplier, input_left_shift, input_range_radius), the
    argument order of `logistic_int8` and of the C kernel `mcu_logistic_s8`.
    `input_scale` is rounded to float32 first (as the .tflite stores it)."""
    import math
    real = float(np.float32(input_scale)) * float(1 << (31 - LOGISTIC_INPUT_INTEGER_BITS))
    if not real > 0.0:
        raise ValueError(f"LOGISTIC: input scale must be > 0, got {input_scale}")
    q, left_shift = math.frexp(real)
    multiplier = int(round_half_away(q * float(1 << 31)))
    if multiplier >= (1 << 31):       # cannot happen for a float32 mantissa (24 bits)
        raise ValueError("LOGISTIC: input multiplier out of int32 range")
    if not 0 <= left_shift <= 62:
        # TFLM's CalculateInputRadius computes 1LL << left_shift: undefined for
        # input scales < 2^-28 (and >= 2^35); its result differs between builds.
        raise ValueError(f"LOGISTIC: input scale {float(np.float32(input_scale)):g} out of "
                         "the range TFLM supports (2^-28 <= scale < 2^35)")
    # CalculateInputRadius(4, left_shift, 31): floor(15 * 2^27 / 2^left_shift)
    radius = math.floor(float((1 << LOGISTIC_INPUT_INTEGER_BITS) - 1)
                        * float(1 << (31 - LOGISTIC_INPUT_INTEGER_BITS))
                        / float(1 << left_shift))
    return int(input_zero_point), multiplier, int(left_shift), int(radius)


def logistic_fixed(a, integer_bits: int = LOGISTIC_INPUT_INTEGER_BITS):
    """gemmlowp::logistic(FixedPoint<int32, integer_bits>) -> FixedPoint<int32, 0>
    raw (Q0.31)."""
    a = i64(a)
    positive = a > 0
    abs_input = np.where(positive, a, wrap_int32(-a))
    result_if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap_int32(-abs_input), integer_bits))
    result_if_negative = wrap_int32(INT32_MAX - result_if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, result_if_positive, result_if_negative))


def logistic_int8(x, input_zero_point: int, input_multiplier: int, input_left_shift: int,
                  input_range_radius: int) -> np.ndarray:
    """reference_integer_ops::Logistic (int8 -> int8, output scale 1/256, zero point
    -128), elementwise; parameters from `logistic_params`."""
    x = np.asarray(x)
    shape = x.shape
    inp = i64(x).reshape(-1) - int(input_zero_point)
    out = np.where(inp <= -int(input_range_radius), -128, 127).astype(np.int64)
    mid = (inp > -int(input_range_radius)) & (inp < int(input_range_radius))
    if np.any(mid):
        q4 = multiply_by_quantized_multiplier(inp[mid], input_multiplier, input_left_shift)
        q0 = logistic_fixed(q4, LOGISTIC_INPUT_INTEGER_BITS)
        o = rounding_divide_by_pot(q0, 31 - LOGISTIC_OUTPUT_INTEGER_BITS) + LOGISTIC_QUANT[1]
        out[mid] = np.clip(o, -128, 127)
    return out.reshape(shape).astype(np.int8)


def lut_s8_table(fn) -> np.ndarray:
    """256-entry int8 lookup table of an elementwise int8 -> int8 function, in the
    order `mcu_lut_s8` indexes it: entry i is fn of the int8 whose byte is i
    (i = 0..127 -> x = 0..127, i = 128..255 -> x = -128..-1).  `fn` takes an int8
    array.  E.g. lut_s8_table(lambda x: logistic_int8(x, *logistic_params(s, zp)))."""
    x = np.arange(256, dtype=np.uint8).view(np.int8)
    t = np.asarray(fn(x))
    if t.shape != (256,):
        raise ValueError(f"lut_s8_table: fn returned shape {t.shape}, expected (256,)")
    return t.astype(np.int8)


def logistic_table(input_scale: float, input_zero_point: int) -> np.ndarray:
    """The `mcu_lut_s8` table of TFLM's int8 LOGISTIC for this input quantization."""
    p = logistic_params(input_scale, input_zero_point)
    return lut_s8_table(lambda x: logistic_int8(x, *p))


# --------------------------------------------------------------------------- tanh
# TFLM TANH, int8 in / int8 out (kernels/tanh.cc CalculateArithmeticOpData and
# reference_integer_ops::Tanh):
# * Prepare requires input and output of the same type and checks NOTHING of the
#   int8 output quantization: the kernel always writes round(128 * tanh), clamped
#   to [-128, 127], i.e. bytes in units of 1/128 around 0.  TF's converter writes
#   (1/128, 0); the quantizer fixes that (TANH_QUANT) and the op refuses any other.
# * The input side is LOGISTIC's arithmetic exactly: kInputIntegerBits = 4,
#   frexp(input_scale * 2^27) -> (input_multiplier, input_left_shift), radius
#   CalculateInputRadius(4, left_shift, 31); differences |x - zp| >= radius
#   saturate to -128 / 127 (and, as LOGISTIC, x == zp gives -128 when the radius is 0,
#   input scales >= 8).
# * The evaluation is gemmlowp::tanh on FixedPoint<int32, 4>: 0 at 0; otherwise
#   t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-|a|) read
#   as FixedPoint<int32, 5> (ExactMulByPot<1>: exp(-2|a|))), negated for a < 0;
#   then RoundingDivideByPOT(., 31 - 7), clamped.
TANH_INPUT_INTEGER_BITS = 4
TANH_OUTPUT_FRACTIONAL_BITS = 7
TANH_QUANT = (1.0 / 128.0, 0)           # required output (scale, zero point)


def tanh_params(input_scale: float, input_zero_point: int) -> tuple[int, int, int, int]:
    """TFLM TanhPrepare for int8: (input_zero_point, input_multiplier,
    input_left_shift, input_range_radius), computed exactly as `logistic_params`
    (same kInputIntegerBits, frexp and radius)."""
    try:
        return logistic_params(input_scale, input_zero_point)
    except ValueError as e:
        raise ValueError(str(e).replace("LOGISTIC", "TANH")) from None


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: FixedPoint<int32,0> ->
    <int32,0>; the Newton-Raphson loop of one_over_one_plus_x_for_x_in_0_1, then
    Rescale<0>(x - F2::One())."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_f2 = 1 << 29
    x = wrap_int32(constant_48_over_17 + _srdhm(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)          # F2
        one_minus = wrap_int32(one_f2 - half_denominator_times_x)       # F2
        x = wrap_int32(x + rescale(_srdhm(x, one_minus), 4, 2))         # F4 -> F2
    return rescale(wrap_int32(x - one_f2), 2, 0)


def tanh_fixed(a, integer_bits: int = TANH_INPUT_INTEGER_BITS):
    """gemmlowp::tanh(FixedPoint<int32, integer_bits>) -> FixedPoint<int32, 0> raw."""
    a = i64(a)
    negative = a < 0
    n = np.where(negative, a, wrap_int32(-a))                 # -|a|
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap_int32(-t), t))


def tanh_int8(x, input_zero_point: int, input_multiplier: int, input_left_shift: int,
              input_range_radius: int) -> np.ndarray:
    """reference_integer_ops::Tanh (int8 -> int8, output scale 1/128, zero point 0),
    elementwise; parameters from `tanh_params`."""
    x = np.asarray(x)
    shape = x.shape
    inp = i64(x).reshape(-1) - int(input_zero_point)
    out = np.where(inp <= -int(input_range_radius), -128, 127).astype(np.int64)
    mid = (inp > -int(input_range_radius)) & (inp < int(input_range_radius))
    if np.any(mid):
        q4 = multiply_by_quantized_multiplier(inp[mid], input_multiplier, input_left_shift)
        q0 = tanh_fixed(q4, TANH_INPUT_INTEGER_BITS)
        out[mid] = np.clip(rounding_divide_by_pot(q0, 31 - TANH_OUTPUT_FRACTIONAL_BITS),
                           -128, 127)
    return out.reshape(shape).astype(np.int8)


# --------------------------------------------------------------------------- hard swish
# TFLM HARD_SWISH, int8 (kernels/hard_swish_common.cc HardSwishPrepare and
# reference_ops::HardSwish<int8_t>), all in int16 fixed point:
# * Prepare: hires_input_scale = input_scale / 128, reluish_scale = 3 / 32768;
#   output_multiplier = hires / output_scale and reluish_multiplier = hires /
#   reluish_scale, divided in DOUBLE (of the float32 scales): older TFLM sources
#   divide in float32 and cast the quotient, but the installed tflite-micro agrees
#   only with the double quotient (tests/test_op_activations.py checks cases
#   where the two differ).  Each goes through QuantizeMultiplier and
#   DownScaleInt32ToInt16Multiplier ((m + 2^15) >> 16, 32767 when
#   m >= INT32_MAX - 2^15).  TF_LITE_ENSURE(output_multiplier_exponent
#   <= 0): the output scale must be at least about input_scale / 128.  Any output
#   zero point.
# * Eval per element: v = (x - input_zp) * 2^7 (int16); preshift =
#   SRDHM16(v, output_m16); reluish: saturating left shift by exp - 1, SRDHM16 by
#   reluish_m16, saturating left shift by 1 (exp > 0), or RoundingDivideByPOT(-exp)
#   (exp < 0); then (reluish + 2^15) >> 1 in [0, 32767]; out =
#   RoundingDivideByPOT(SaturatingDoublingHighMul(reluish, preshift) (truncating,
#   no rounding), -output_exp) + output_zp, clamped to int8.
# * Quirk (emulated): gemmlowp's RoundingDivideByPOT on int16 builds its mask as
#   int16((1 << exponent) - 1), which is -1 for exponents >= 16; it then returns +1
#   for x >= 0 and -1 for x < 0.  That happens for output scales > 512 * input
#   scale (output exponent <= -16) and input scales < ~2^-22 (reluish exponent).
def wrap_int16(x):
    """Two's-complement wrap of int64 values to int16 range (C conversion to int16_t)."""
    x = i64(x)
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def saturating_rounding_doubling_high_mul_int16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul<int16_t>: (a*b + nudge) / 2^15
    truncated, nudge 2^14 or 1 - 2^14 by sign; -32768 * -32768 saturates to 32767."""
    a, b = i64(a), i64(b)
    overflow = (a == b) & (a == -(1 << 15))
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    return np.where(overflow, (1 << 15) - 1, wrap_int16(trunc_div(ab + nudge, 1 << 15)))


def saturating_doubling_high_mul_int16(a, b):
    """TFLite reference_ops::SaturatingDoublingHighMul (int16, like ARM SQDMULH):
    a*b / 2^15 truncated toward zero; -32768 * -32768 saturates to 32767."""
    a, b = i64(a), i64(b)
    overflow = (a == b) & (a == -(1 << 15))
    return np.where(overflow, (1 << 15) - 1, wrap_int16(trunc_div(a * b, 1 << 15)))


def rounding_divide_by_pot_int16(x, exponent: int):
    """gemmlowp RoundingDivideByPOT<int16_t>, including its int16 mask (exponents
    >= 16 make the mask -1: the result is then +1 for x >= 0 and -1 for x < 0)."""
    x = i64(x)
    mask = int(wrap_int16((1 << int(exponent)) - 1))
    remainder = wrap_int16(x & mask)
    threshold = wrap_int16((mask >> 1) + (x < 0))
    return wrap_int16((x >> int(exponent)) + (remainder > threshold))


def saturating_left_shift_int16(x, amount: int):
    """TFLite reference_ops::SaturatingLeftShift(int16 value, amount)."""
    return np.clip(i64(x) * (1 << int(amount)), -(1 << 15), (1 << 15) - 1)


def downscale_int32_to_int16_multiplier(m: int) -> int:
    """TFLite DownScaleInt32ToInt16Multiplier (m >= 0)."""
    m = int(m)
    if m >= INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int) -> tuple[int, int, int, int, int, int]:
    """TFLM HardSwishPrepare for int8: (input_zero_point, output_zero_point,
    reluish_multiplier_fixedpoint_int16, reluish_multiplier_exponent,
    output_multiplier_fixedpoint_int16, output_multiplier_exponent), the argument
    order of `hard_swish_int8`.  Raises ValueError where TFLM's Prepare fails
    (output exponent > 0) or its arithmetic is undefined (reluish exponent > 31)."""
    in_s, out_s = np.float32(input_scale), np.float32(output_scale)
    if not (in_s > 0 and out_s > 0):
        raise ValueError(f"HARD_SWISH: scales must be > 0, got {input_scale}, {output_scale}")
    hires = float(np.float32(1.0 / 128.0) * in_s)
    reluish_scale = 3.0 / 32768.0
    om32, oexp = quantize_multiplier(hires / float(out_s))
    if oexp > 0:
        raise ValueError(f"HARD_SWISH: output scale {float(out_s):g} is too small for input "
                         f"scale {float(in_s):g}; TFLM needs output_scale >= about "
                         "input_scale / 128 (output multiplier exponent <= 0)")
    rm32, rexp = quantize_multiplier(hires / reluish_scale)
    if rexp > 31:
        raise ValueError(f"HARD_SWISH: input scale {float(in_s):g} out of the range TFLM "
                         "supports")
    return (int(input_zero_point), int(output_zero_point),
            downscale_int32_to_int16_multiplier(rm32), int(rexp),
            downscale_int32_to_int16_multiplier(om32), int(oexp))


def hard_swish_int8(x, input_zero_point: int, output_zero_point: int,
                    reluish_multiplier_fixedpoint_int16: int, reluish_multiplier_exponent: int,
                    output_multiplier_fixedpoint_int16: int,
                    output_multiplier_exponent: int) -> np.ndarray:
    """reference_ops::HardSwish<int8_t> with HardSwishParams from `hard_swish_params`."""
    x = np.asarray(x)
    rexp, oexp = int(reluish_multiplier_exponent), int(output_multiplier_exponent)
    v = wrap_int16(i64(x) - int(input_zero_point))
    hires = wrap_int16(v * (1 << 7))
    preshift = saturating_rounding_doubling_high_mul_int16(hires,
                                                           output_multiplier_fixedpoint_int16)
    r = hires
    if rexp > 0:
        r = saturating_left_shift_int16(r, rexp - 1)
    r = saturating_rounding_doubling_high_mul_int16(r, reluish_multiplier_fixedpoint_int16)
    if rexp > 0:
        r = saturating_left_shift_int16(r, 1)
    if rexp < 0:
        r = rounding_divide_by_pot_int16(r, -rexp)
    r = wrap_int16((r + (1 << 15)) >> 1)                       # [-1, 1] -> [0, 1]
    pre = saturating_doubling_high_mul_int16(r, preshift)
    out = wrap_int16(rounding_divide_by_pot_int16(pre, -oexp) + int(output_zero_point))
    return np.clip(out, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------- leaky relu
# TFLM LEAKY_RELU, int8 (kernels/leaky_relu_common.cc CalculateOpDataLeakyRelu and
# reference_ops::QuantizeLeakyRelu<int8_t>):
# * Prepare: identity = input_scale / output_scale and alpha = input_scale * alpha /
#   output_scale, in DOUBLE (of the float32 values; older TFLM sources compute them
#   in float32, which the installed tflite-micro does not match on tie cases), each
#   through QuantizeMultiplier; a negative alpha gives a negative alpha multiplier.
#   Any output quantization; alpha is LeakyReluOptions.alpha (float32).
# * Eval: v = x - input_zp; for v >= 0, output_zp + MultiplyByQuantizedMultiplier(v,
#   identity); for v < 0, MultiplyByQuantizedMultiplier(v, |alpha multiplier|),
#   negated when the multiplier is negative (current TFLM's "safe_alpha_multiplier":
#   MultiplyByQuantizedMultiplier requires a non-negative multiplier; this rounds
#   ties differently from multiplying by the negative multiplier directly); then
#   clamped to int8.
def leaky_relu_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int, alpha: float) -> tuple[int, int, int, int, int, int]:
    """TFLM LeakyReluPrepare for int8: (input_zero_point, output_zero_point,
    output_multiplier_identity, output_shift_identity, output_multiplier_alpha,
    output_shift_alpha), the argument order of `leaky_relu_int8`."""
    in_s, out_s, a = np.float32(input_scale), np.float32(output_scale), np.float32(alpha)
    if not (in_s > 0 and out_s > 0):
        raise ValueError(f"LEAKY_RELU: scales must be > 0, got {input_scale}, {output_scale}")
    mi, si = quantize_multiplier(float(in_s) / float(out_s))
    ma, sa = quantize_multiplier(float(in_s) * float(a) / float(out_s))
    return int(input_zero_point), int(output_zero_point), int(mi), int(si), int(ma), int(sa)


def leaky_relu_int8(x, input_zero_point: int, output_zero_point: int,
                    output_multiplier_identity: int, output_shift_identity: int,
                    output_multiplier_alpha: int, output_shift_alpha: int) -> np.ndarray:
    """reference_ops::QuantizeLeakyRelu<int8_t>; parameters from `leaky_relu_params`."""
    v = i64(x) - int(input_zero_point)
    ma = int(output_multiplier_alpha)
    safe = int(wrap_int32(-ma)) if ma < 0 else ma        # C int32 negation (wraps at -2^31)
    scaled_alpha = multiply_by_quantized_multiplier(v, safe, output_shift_alpha)
    out = int(output_zero_point) + np.where(
        v >= 0,
        multiply_by_quantized_multiplier(v, output_multiplier_identity, output_shift_identity),
        -scaled_alpha if ma < 0 else scaled_alpha)
    return np.clip(out, -128, 127).astype(np.int8)

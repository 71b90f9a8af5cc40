/* Fixed-point helpers, bit-exact with TFLite Micro (gemmlowp semantics,
 * TFLITE_SINGLE_ROUNDING off = the default "double rounding" path).
 * C99, freestanding: only stdint.h / stdbool.h. */
#ifndef MCU_FIXEDPOINT_H
#define MCU_FIXEDPOINT_H

#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MCU_INLINE static inline __attribute__((always_inline))
#else
#define MCU_INLINE static inline
#endif

#define MCU_INT32_MIN ((int32_t)0x80000000)
#define MCU_INT32_MAX ((int32_t)0x7fffffff)

/* a + b modulo 2^32 (two's complement wrap-around). TFLM adds biases to its int32
 * accumulators with plain signed `+` and relies on wrap-around when a bias is near
 * +-2^31 (an authenticated weight patch may set any int32 bias); in C that is
 * undefined behaviour. Unsigned addition is defined modulo 2^32, and converting the
 * result back to int32_t is modulo 2^32 too (implementation-defined in C99 6.3.1.3;
 * gcc and clang define it so), so this gives TFLM's bytes with the same single ADD.
 * Every kernel accumulator that can wrap uses it (runtime/README.md, "Arithmetic
 * that wraps on purpose"). */
MCU_INLINE int32_t mcu_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

MCU_INLINE int32_t mcu_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
MCU_INLINE int32_t mcu_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
MCU_INLINE int32_t mcu_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* gemmlowp::SaturatingRoundingDoublingHighMul */
MCU_INLINE int32_t mcu_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == MCU_INT32_MIN) return MCU_INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    /* C division truncates toward zero, as in gemmlowp */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp::RoundingDivideByPOT, 0 <= exponent <= 31 */
MCU_INLINE int32_t mcu_rdbp(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* tflite::MultiplyByQuantizedMultiplier, literal form (reference for tests). */
MCU_INLINE int32_t mcu_mbqm_ref(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return mcu_rdbp(mcu_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* Same result as mcu_mbqm_ref for every x when 0 <= mult < 2^31 (all
 * multipliers QuantizeMultiplier produces), in one 64-bit multiply-add:
 *   SRDHM(a, m) == floor((a*m + 2^30) / 2^31)            (m != INT32_MIN)
 *   RDBP(r, e)  == floor((r + 2^(e-1) + s) / 2^e), s = -1 if r < 0
 *   floor(floor(y/B + h)/C) == floor((y + h*B)/(B*C))  (integer h)
 * and sign(r) may be taken from x (r == 0 rounds to 0 either way). */
MCU_INLINE int32_t mcu_requantize(int32_t x, int32_t mult, int32_t shift)
{
    if (shift >= 0) {
        const int64_t acc = (int64_t)(int32_t)((uint32_t)x << shift) * mult + (1 << 30);
        return (int32_t)(acc >> 31);
    }
    const int32_t e = -shift;
    int64_t acc = (int64_t)x * mult + ((int64_t)1 << 30) + ((int64_t)1 << (30 + e));
    if (x < 0) acc -= ((int64_t)1 << 31);
    return (int32_t)(acc >> 32) >> (e - 1);
}

/* tflite::MultiplyByQuantizedMultiplierSmallerThanOneExp (ADD): identical
 * formula to MultiplyByQuantizedMultiplier when left_shift <= 0. */
MCU_INLINE int32_t mcu_mbqm_smaller_than_one(int32_t x, int32_t mult, int32_t left_shift)
{
    return mcu_rdbp(mcu_srdhm(x, mult), -left_shift);
}

/* tflite::MultiplyByQuantizedMultiplierGreaterThanOne (softmax) */
MCU_INLINE int32_t mcu_mbqm_greater_than_one(int32_t x, int32_t mult, int32_t left_shift)
{
    return mcu_srdhm((int32_t)((uint32_t)x << left_shift), mult);
}

/* gemmlowp::SaturatingRoundingMultiplyByPOT for exponent > 0 (a saturating
 * left shift) or < 0 (RoundingDivideByPOT). */
MCU_INLINE int32_t mcu_srmbpot(int32_t x, int32_t exponent)
{
    if (exponent > 0) {
        const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
        if (x > threshold) return MCU_INT32_MAX;
        if (x < -threshold) return MCU_INT32_MIN;
        return (int32_t)((uint32_t)x << exponent);
    }
    if (exponent < 0) return mcu_rdbp(x, -exponent);
    return x;
}

/* gemmlowp::RoundingHalfSum */
MCU_INLINE int32_t mcu_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

MCU_INLINE int32_t mcu_clz_u32(uint32_t x)
{
#if defined(__GNUC__)
    return x ? __builtin_clz(x) : 32;
#else
    int32_t n = 0;
    if (!x) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; n++; }
    return n;
#endif
}

/* gemmlowp::exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 */
MCU_INLINE int32_t mcu_exp_on_interval_neg_quarter_0(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
    const int32_t x = a + (1 << 28);               /* a + 1/8 */
    const int32_t x2 = mcu_srdhm(x, x);
    const int32_t x3 = mcu_srdhm(x2, x);
    const int32_t x4 = mcu_srdhm(x2, x2);
    const int32_t x4_over_4 = mcu_srmbpot(x4, -2);
    const int32_t poly = mcu_srmbpot(mcu_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1);
    return constant_term + mcu_srdhm(constant_term, x + poly);
}

/* gemmlowp::exp_on_negative_values for an input with `integer_bits` integer
 * bits (softmax uses 5); returns Q0.31. */
MCU_INLINE int32_t mcu_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result = mcu_exp_on_interval_neg_quarter_0(
        mcu_srmbpot(a_mod_quarter_minus_one_quarter, integer_bits));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308,
                                     39332535, 720401, 242};
    for (int32_t i = 0; i < 7; i++) {
        const int32_t exponent = i - 2;
        if (integer_bits > exponent) {
            const int32_t shift_amount = fractional_bits + exponent;
            if (remainder & ((int32_t)1 << shift_amount)) result = mcu_srdhm(result, mults[i]);
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) result = 0;
    }
    if (a == 0) result = MCU_INT32_MAX;
    return result;
}

/* gemmlowp::one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out */
MCU_INLINE int32_t mcu_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = mcu_rounding_half_sum(a, MCU_INT32_MAX);
    const int32_t c48_17 = 1515870810;       /* Q2.29 48/17 */
    const int32_t cneg32_17 = -1010580540;   /* Q2.29 -32/17 */
    int32_t x = c48_17 + mcu_srdhm(half_denominator, cneg32_17);
    for (int32_t i = 0; i < 3; i++) {
        const int32_t hdx = mcu_srdhm(half_denominator, x);
        const int32_t one_minus = (1 << 29) - hdx;
        x = x + mcu_srmbpot(mcu_srdhm(x, one_minus), 2);
    }
    return mcu_srmbpot(x, 1);
}

/* tflite::GetReciprocal */
MCU_INLINE int32_t mcu_get_reciprocal(int32_t x, int32_t x_integer_digits,
                                      int32_t *num_bits_over_unit)
{
    const int32_t headroom_plus_one = mcu_clz_u32((uint32_t)x);
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
    return mcu_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

#ifdef __cplusplus
}
#endif
#endif /* MCU_FIXEDPOINT_H */

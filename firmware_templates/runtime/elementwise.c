/* ADD / SUB / MUL / MAXIMUM / MINIMUM / RESHAPE / RELU / RELU6 int8 (TFLM reference
 * kernels). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* sign = +1 (ADD) or -1 (SUB: TFLM's Sub uses ADD's Prepare and subtracts the
 * rescaled inputs; the difference wraps in int32 as TFLM's does). */
static inline int8_t addsub_one(const mcu_add_params_t *p, int32_t x1, int32_t x2, int sub)
{
    const int32_t ls = p->left_shift;
    const int32_t a = (int32_t)((uint32_t)(p->input1_offset + x1) << ls);
    const int32_t b = (int32_t)((uint32_t)(p->input2_offset + x2) << ls);
    const int32_t sa = mcu_requantize(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = mcu_requantize(b, p->input2_multiplier, p->input2_shift);
    const uint32_t raw = sub ? (uint32_t)sa - (uint32_t)sb : (uint32_t)sa + (uint32_t)sb;
    const int32_t r = mcu_requantize((int32_t)raw, p->output_multiplier,
                                     p->output_shift) + p->output_offset;
    return (int8_t)mcu_clamp_i32(r, p->act_min, p->act_max);
}

static inline int8_t add_one(const mcu_add_params_t *p, int32_t x1, int32_t x2)
{
    return addsub_one(p, x1, x2, 0);
}

static inline int8_t sub_one(const mcu_add_params_t *p, int32_t x1, int32_t x2)
{
    return addsub_one(p, x1, x2, 1);
}

/* ---- ADD fast path ------------------------------------------------------
 * TFLM (double rounding, PrepareGeneralSubOp): per input
 *   s = RDBP(SRDHM(a, m), e),  a = (x + off) << ls,  e = -shift >= 0,
 * then out = clamp(MBQM(s1 + s2, mo, so) + zp). With A = 2a = (x + off) << (ls + 1)
 * (no int32 overflow: |x + off| <= 256, ls <= 21):
 *  1. SRDHM(a, m) = floor((a*m + 2^30) / 2^31) (m >= 0; mcu_fixedpoint.h)
 *                 = floor((A*m + 2^31) / 2^32) = SMMULR(A, m)  =: r.
 *  2. RDBP(r, e) = floor((r + 2^(e-1) - [r<0]) / 2^e) for e >= 1 (rounding up iff
 *     r mod 2^e >= 2^(e-1) + [r<0], RDBP's "remainder > threshold"), r for e = 0.
 *  3. [r<0] may be replaced by [A<0] = -(A >> 31): A<0 gives r <= 0 and A>=0 gives
 *     r >= 0, and r == 0 yields 0 with either term (2^(e-1) - 1 < 2^e).
 * So s = (SMMULR(A, m) + h + ((A >> 31) & smask)) >> e with h = 2^(e-1), smask = -1
 * (e >= 1) or h = smask = 0 (e = 0): 32-bit only. |s| < 2^29, so s1 + s2 does not
 * overflow; the output stage is the prepared requantization of the conv kernels
 * (mcu_requant_prepare, output offset folded in). Tested against the literal
 * double rounding for every input pair (tests/test_kernels_host.py). */
typedef struct {
    int32_t off, m, h, smask, e;
} mcu_add_in_t;

typedef struct {
    mcu_add_in_t in1, in2;
    int32_t k; /* left_shift + 1 */
    mcu_requant_t out;
    int32_t out_off, act_min, act_max;
} mcu_add_prep_t;

static int add_in_prepare(int32_t off, int32_t m, int32_t shift, mcu_add_in_t *c)
{
    if (off < -128 || off > 128 || m < 0 || shift > 0 || shift < -31) return 0;
    c->off = off;
    c->m = m;
    c->e = -shift;
    c->h = shift < 0 ? (int32_t)(1u << (-shift - 1)) : 0;
    c->smask = shift < 0 ? -1 : 0;
    return 1;
}

static int add_prepare(const mcu_add_params_t *p, mcu_add_prep_t *c)
{
    if (p->left_shift < 0 || p->left_shift > 21) return 0;
    if (!add_in_prepare(p->input1_offset, p->input1_multiplier, p->input1_shift, &c->in1) ||
        !add_in_prepare(p->input2_offset, p->input2_multiplier, p->input2_shift, &c->in2))
        return 0;
    c->k = p->left_shift + 1;
    mcu_requant_prepare(&c->out, 1, &p->output_multiplier, &p->output_shift, 0,
                        p->output_offset);
    c->out_off = p->output_offset;
    c->act_min = p->act_min;
    c->act_max = p->act_max;
    return 1;
}

MCU_INLINE int32_t mcu_smmulr(int32_t a, int32_t b)
{
#if MCU_HAVE_DSP && !defined(MCU_EMULATE_DSP)
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

MCU_INLINE int32_t add_in(const mcu_add_in_t *c, int32_t k, int32_t x)
{
    const int32_t A = (int32_t)((uint32_t)(x + c->off) << k);
    return (mcu_smmulr(A, c->m) + c->h + ((A >> 31) & c->smask)) >> c->e;
}

MCU_INLINE int8_t add_fast(const mcu_add_prep_t *c, int32_t x1, int32_t x2)
{
    const int32_t s = add_in(&c->in1, c->k, x1) + add_in(&c->in2, c->k, x2);
    return mcu_clamp8(mcu_rqt_apply(s, &c->out, c->out_off), c->act_min, c->act_max);
}

/* SUB: |s| < 2^29 per input, so s1 - s2 does not overflow either. */
MCU_INLINE int8_t sub_fast(const mcu_add_prep_t *c, int32_t x1, int32_t x2)
{
    const int32_t s = add_in(&c->in1, c->k, x1) - add_in(&c->in2, c->k, x2);
    return mcu_clamp8(mcu_rqt_apply(s, &c->out, c->out_off), c->act_min, c->act_max);
}

static inline int8_t mul_one(const mcu_mul_params_t *p, int32_t x1, int32_t x2)
{
    const int32_t a = p->input1_offset + x1;
    const int32_t b = p->input2_offset + x2;
    const int32_t r = p->output_offset +
                      mcu_requantize(a * b, p->output_multiplier, p->output_shift);
    return (int8_t)mcu_clamp_i32(r, p->act_min, p->act_max);
}

void mcu_add_s8(const mcu_add_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size)
{
    mcu_add_prep_t c;
    if (add_prepare(p, &c)) {
        for (int32_t i = 0; i < size; i++) output[i] = add_fast(&c, input1[i], input2[i]);
        return;
    }
    for (int32_t i = 0; i < size; i++) output[i] = add_one(p, input1[i], input2[i]);
}

void mcu_sub_s8(const mcu_add_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size)
{
    mcu_add_prep_t c;
    if (add_prepare(p, &c)) {
        for (int32_t i = 0; i < size; i++) output[i] = sub_fast(&c, input1[i], input2[i]);
        return;
    }
    for (int32_t i = 0; i < size; i++) output[i] = sub_one(p, input1[i], input2[i]);
}

void mcu_mul_s8(const mcu_mul_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) output[i] = mul_one(p, input1[i], input2[i]);
}

#define BROADCAST_LOOP(ONE)                                                              \
    for (int32_t n = 0; n < d->n; n++)                                                   \
        for (int32_t h = 0; h < d->h; h++)                                               \
            for (int32_t w = 0; w < d->w; w++) {                                         \
                const int8_t *a = input1 + n * s1[0] + h * s1[1] + w * s1[2];             \
                const int8_t *b = input2 + n * s2[0] + h * s2[1] + w * s2[2];             \
                for (int32_t c = 0; c < d->c; c++)                                       \
                    *output++ = ONE(p, a[c * s1[3]], b[c * s2[3]]);                      \
            }

void mcu_add_s8_broadcast(const mcu_add_params_t *p, const mcu_dims_t *d, const int8_t *input1,
                          const int32_t *s1, const int8_t *input2, const int32_t *s2,
                          int8_t *output)
{
    mcu_add_prep_t c;
    if (add_prepare(p, &c)) {
        const mcu_add_prep_t *const pc = &c;
#define add_fast_p(unused, x1, x2) add_fast(pc, x1, x2)
        BROADCAST_LOOP(add_fast_p)
#undef add_fast_p
        return;
    }
    BROADCAST_LOOP(add_one)
}

void mcu_sub_s8_broadcast(const mcu_add_params_t *p, const mcu_dims_t *d, const int8_t *input1,
                          const int32_t *s1, const int8_t *input2, const int32_t *s2,
                          int8_t *output)
{
    mcu_add_prep_t c;
    if (add_prepare(p, &c)) {
        const mcu_add_prep_t *const pc = &c;
#define sub_fast_p(unused, x1, x2) sub_fast(pc, x1, x2)
        BROADCAST_LOOP(sub_fast_p)
#undef sub_fast_p
        return;
    }
    BROADCAST_LOOP(sub_one)
}

void mcu_mul_s8_broadcast(const mcu_mul_params_t *p, const mcu_dims_t *d, const int8_t *input1,
                          const int32_t *s1, const int8_t *input2, const int32_t *s2,
                          int8_t *output)
{
    BROADCAST_LOOP(mul_one)
}

/* MAXIMUM / MINIMUM (TFLM MaximumMinimumBroadcastSlow on int8): raw bytes compared,
 * inputs and output share one quantization. */
#define MCU_MAX8(a, b) ((a) > (b) ? (a) : (b))
#define MCU_MIN8(a, b) ((a) < (b) ? (a) : (b))
#define MAXMIN_ONE_MAX(unused, x1, x2) MCU_MAX8(x1, x2)
#define MAXMIN_ONE_MIN(unused, x1, x2) MCU_MIN8(x1, x2)

void mcu_maximum_s8(const int8_t *input1, const int8_t *input2, int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) output[i] = MCU_MAX8(input1[i], input2[i]);
}

void mcu_minimum_s8(const int8_t *input1, const int8_t *input2, int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) output[i] = MCU_MIN8(input1[i], input2[i]);
}

void mcu_maximum_s8_broadcast(const mcu_dims_t *d, const int8_t *input1, const int32_t *s1,
                              const int8_t *input2, const int32_t *s2, int8_t *output)
{
    BROADCAST_LOOP(MAXMIN_ONE_MAX)
}

void mcu_minimum_s8_broadcast(const mcu_dims_t *d, const int8_t *input1, const int32_t *s1,
                              const int8_t *input2, const int32_t *s2, int8_t *output)
{
    BROADCAST_LOOP(MAXMIN_ONE_MIN)
}

void mcu_reshape_s8(const int8_t *input, int8_t *output, int32_t size)
{
    if (input == output) return;
    for (int32_t i = 0; i < size; i++) output[i] = input[i];
}

void mcu_relu_s8(const int8_t *input, int8_t *output, int32_t size, int32_t input_zero_point,
                 int32_t output_zero_point, int32_t multiplier, int32_t shift,
                 int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++) {
        const int32_t v = output_zero_point +
                          mcu_requantize((int32_t)input[i] - input_zero_point, multiplier, shift);
        output[i] = (int8_t)mcu_clamp_i32(v, act_min, act_max);
    }
}

void mcu_clamp_s8(const int8_t *input, int8_t *output, int32_t size, int32_t lo, int32_t hi)
{
    for (int32_t i = 0; i < size; i++) output[i] = (int8_t)mcu_clamp_i32(input[i], lo, hi);
}

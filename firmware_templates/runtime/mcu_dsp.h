/* Internal helpers shared by the kernel files (not part of the public API). */
#ifndef MCU_DSP_H
#define MCU_DSP_H

#include <stdint.h>
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

#if MCU_HAVE_DSP && defined(MCU_EMULATE_DSP)
/* Host emulation of the ACLE DSP intrinsics (for testing the DSP code paths
 * on the build machine; never used on a target). */
MCU_INLINE uint32_t mcu_emu_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16);
}
MCU_INLINE int32_t mcu_emu_lo(uint32_t x) { return (int16_t)(x & 0xffffu); }
MCU_INLINE int32_t mcu_emu_hi(uint32_t x) { return (int16_t)(x >> 16); }
MCU_INLINE uint32_t __sxtb16(uint32_t x)
{
    return mcu_emu_pack16((int8_t)(x & 0xff), (int8_t)((x >> 16) & 0xff));
}
MCU_INLINE uint32_t __sxtab16(uint32_t a, uint32_t x)
{
    return mcu_emu_pack16(mcu_emu_lo(a) + (int8_t)(x & 0xff),
                          mcu_emu_hi(a) + (int8_t)((x >> 16) & 0xff));
}
MCU_INLINE int32_t __smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mcu_emu_lo(a) * mcu_emu_lo(b)) +
                     (uint32_t)(mcu_emu_hi(a) * mcu_emu_hi(b)));
}
MCU_INLINE int32_t __smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mcu_emu_lo(a) * mcu_emu_lo(b)));
}
MCU_INLINE int32_t __smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mcu_emu_hi(a) * mcu_emu_hi(b)));
}
MCU_INLINE int32_t __smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mcu_emu_lo(a) * mcu_emu_hi(b)));
}
MCU_INLINE int32_t __smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mcu_emu_hi(a) * mcu_emu_lo(b)));
}
MCU_INLINE uint32_t mcu_ror8(uint32_t x) { return (x >> 8) | (x << 24); }
MCU_INLINE uint32_t mcu_sxtb16_ror8(uint32_t x) { return __sxtb16(mcu_ror8(x)); }
MCU_INLINE uint32_t mcu_sxtab16_ror8(uint32_t a, uint32_t x) { return __sxtab16(a, mcu_ror8(x)); }
#elif MCU_HAVE_DSP
#include <arm_acle.h>

/* SXTB16 / SXTAB16 of the operand rotated right by 8 (one instruction). */
MCU_INLINE uint32_t mcu_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

MCU_INLINE uint32_t mcu_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#endif

/* Unaligned 32-bit load/store (Cortex-M4/M7 LDR/STR handle unaligned). */
MCU_INLINE uint32_t mcu_read_u32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

MCU_INLINE void mcu_write_u32(void *p, uint32_t v)
{
    __builtin_memcpy(p, &v, 4);
}

/* Requantize an accumulator and clamp it to [act_min, act_max]. */
/* element i of an int32 field found every `stride` bytes from `base` */
#define MCU_QAT(base, i, stride) \
    (*(const int32_t *)(const void *)((const char *)(base) + (i) * (stride)))

MCU_INLINE int8_t mcu_requant_clamp(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset,
                                    int32_t act_min, int32_t act_max)
{
    int32_t v = mcu_requantize(acc, mult, shift) + out_offset;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

/* Requantization split into a per-channel part (mcu_rq_prep) and a 5-instruction
 * per-value part (mcu_rq_apply), equal to mcu_requantize for shift <= -1:
 *   acc = x*M + 2^30 + 2^(30+e) - [x<0]*2^31,  result = (acc >> 32) >> (e-1)
 * with e = -shift. mcu_rq_prep returns 0 when shift >= 0 (use mcu_requantize). */
typedef struct {
    uint32_t rlo;
    int32_t rhi;
    int32_t sh;
} mcu_rq_t;

MCU_INLINE int mcu_rq_prep(int32_t shift, mcu_rq_t *r)
{
    if (shift >= 0) return 0;
    const int32_t e = -shift;
    const uint64_t c = ((uint64_t)1 << 30) + ((uint64_t)1 << (30 + e));
    r->rlo = (uint32_t)c;
    r->rhi = (int32_t)(uint32_t)(c >> 32);
    r->sh = e - 1;
    return 1;
}

MCU_INLINE int32_t mcu_rq_apply(int32_t x, int32_t mult, mcu_rq_t r)
{
#if MCU_HAVE_DSP && !defined(MCU_EMULATE_DSP)
    uint32_t lo, t;
    int32_t hi;
    __asm__("and %[t], %[x], #0x80000000\n\t"
            "adds %[lo], %[rlo], %[t]\n\t"
            "adc %[hi], %[rhi], %[x], asr #31\n\t"
            "smlal %[lo], %[hi], %[x], %[m]\n\t"
            "asr %[hi], %[hi], %[sh]"
            : [lo] "=&r"(lo), [hi] "=&r"(hi), [t] "=&r"(t)
            : [x] "r"(x), [m] "r"(mult), [rlo] "r"(r.rlo), [rhi] "r"(r.rhi), [sh] "r"(r.sh)
            : "cc");
    return hi;
#else
    int64_t acc = (int64_t)(((uint64_t)(uint32_t)r.rhi << 32) | r.rlo);
    acc += (int64_t)(x >> 31) * ((int64_t)1 << 31);
    acc += (int64_t)x * mult;
    return (int32_t)(acc >> 32) >> r.sh;
#endif
}

MCU_INLINE int8_t mcu_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)v;
}

#if defined(__GNUC__)
#define MCU_NOINLINE __attribute__((noinline))
#else
#define MCU_NOINLINE
#endif

/* Prepared requantization (mcu_requant_t, see mcu_kernels.h): value + output
 * offset, before the activation clamp. */
MCU_INLINE int32_t mcu_rqt_fast(int32_t x, int32_t mult, uint32_t rlo, int32_t rhi, int32_t sh)
{
    mcu_rq_t r;
    r.rlo = rlo;
    r.rhi = rhi;
    r.sh = sh;
    return mcu_rq_apply(x, mult, r);
}

MCU_INLINE int32_t mcu_rqt_apply(int32_t x, const mcu_requant_t *t, int32_t out_off)
{
    if (t->sh >= 0) return mcu_rqt_fast(x, t->mult, t->rlo, t->rhi, t->sh);
    return mcu_requantize(x, t->mult, t->rhi) + out_off;
}

/* Saturate to int8 (one SSAT on DSP cores). */
MCU_INLINE int32_t mcu_ssat8(int32_t v)
{
#if MCU_HAVE_DSP && !defined(MCU_EMULATE_DSP)
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* Activation clamp; full = (act_min, act_max) == (-128, 127). */
MCU_INLINE int8_t mcu_act8(int32_t v, int full, int32_t lo, int32_t hi)
{
    if (full) return (int8_t)mcu_ssat8(v);
    return mcu_clamp8(v, lo, hi);
}

/* Requantize + store loops in mcu_mm_arm.S (C models on the host): full int8
 * range, every entry fast (mcu_rqt_all_fast), bias not NULL. */
#if MCU_HAVE_DSP && defined(MCU_EMULATE_DSP)
MCU_INLINE void mcu_rq_store2(const int32_t *acc, int32_t n, const int32_t *bias,
                              const mcu_requant_t *rq, int8_t *o0, int8_t *o1)
{
    for (int32_t i = 0; i < n; i++, rq++) {
        o0[i] = (int8_t)mcu_ssat8(mcu_rqt_fast(mcu_add_wrap(acc[2 * i], bias[i]), rq->mult,
                                               rq->rlo, rq->rhi, rq->sh));
        o1[i] = (int8_t)mcu_ssat8(mcu_rqt_fast(mcu_add_wrap(acc[2 * i + 1], bias[i]), rq->mult,
                                               rq->rlo, rq->rhi, rq->sh));
    }
}
MCU_INLINE void mcu_rq_store_cols(const int32_t *acc, const int32_t *bias,
                                  const mcu_requant_t *rq, int8_t *o, int32_t n, int32_t nch,
                                  int32_t C, int32_t ap)
{
    for (int32_t c = 0; c < nch; c++, rq++)
        for (int32_t i = 0; i < n; i++)
            o[i * C + c] = (int8_t)mcu_ssat8(
                mcu_rqt_fast(mcu_add_wrap(acc[c * (ap / 4) + i], bias[c]), rq->mult, rq->rlo,
                             rq->rhi, rq->sh));
}
#elif MCU_HAVE_DSP
void mcu_rq_store2(const int32_t *acc, int32_t n, const int32_t *bias, const mcu_requant_t *rq,
                   int8_t *o0, int8_t *o1);
void mcu_rq_store_cols(const int32_t *acc, const int32_t *bias, const mcu_requant_t *rq,
                       int8_t *o, int32_t n, int32_t nch, int32_t C, int32_t ap);
#endif

/* four filter rows x one int16 column (FULLY_CONNECTED, CONV_2D single pixels) */
#if MCU_HAVE_DSP && defined(MCU_EMULATE_DSP)
/* C model of mcu_fc_s8s16_4row in mcu_mm_arm.S (host tests of the DSP path). */
MCU_INLINE void mcu_fc_s8s16_4row(const int8_t *w, const int16_t *xs, int32_t K, int32_t n4,
                              int32_t n_groups, int32_t *acc, const int32_t *init)
{
    for (int32_t g = 0; g < n_groups; g++, w += 4 * K, acc += 4, init += 4)
        for (int32_t r = 0; r < 4; r++) {
            const uint32_t *a = (const uint32_t *)xs;
            int32_t s = init[r];
            for (int32_t k = 0; k < 4 * n4; k += 4, a += 2) {
                const uint32_t W = mcu_read_u32(w + r * K + k);
                s = __smlad(__sxtb16(W), a[0], s);
                s = __smlad(mcu_sxtb16_ror8(W), a[1], s);
            }
            acc[r] = s;
        }
}
#elif MCU_HAVE_DSP
void mcu_fc_s8s16_4row(const int8_t *w, const int16_t *xs, int32_t K, int32_t n4,
                       int32_t n_groups, int32_t *acc, const int32_t *init);
#endif

MCU_INLINE int mcu_rqt_all_fast(const mcu_requant_t *rq, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (rq[i].sh < 0) return 0;
    return 1;
}

/* im2col element order used by the DSP kernels: within each group of four
 * consecutive k, int16 slots hold [x0, x2, x1, x3] so that SXTB16 of a word of
 * four int8 weights [w0 w1 w2 w3] (-> [w0,w2]) and of the word rotated by 8
 * (-> [w1,w3]) pair up with the two int16 words for SMLAD. */
#define MCU_PERM4(k) (((k) & ~3) | ((((k) & 1) << 1) | (((k) >> 1) & 1)))

#endif

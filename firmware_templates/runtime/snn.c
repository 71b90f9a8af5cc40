/* Spiking-network kernels: event-driven synapses, fixed-point neurons, spike pooling and
 * the rate-coding PRNG. Bit-exact with toolchain/snn/fixed_point.py and encoding.py
 * (docs/snn.md gives the arithmetic; tests/test_snn_kernels.py checks it).
 *
 * Conventions: activations are int8 NHWC (batch 1): spikes 0/1, sum-pool counts, or
 * the quantized analog input. Synapses write int32 accumulators (bias + sum w*x);
 * neurons turn them into state updates and spikes. Per-channel neuron constants are
 * arrays of mcu_snn_neuron_t.channels; element k of a layer has channel k % channels.
 * Intermediate arithmetic is exact in 64 bits; every state write saturates. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* ---- synapses ------------------------------------------------------------ */
/* acc[o] += col[o] for o < n: four weights per 32-bit load, each added sign-extended
 * from its byte (one SXTAB on Cortex-M with the DSP extension's ALU). */
static inline void snn_add_col(int32_t *acc, const int8_t *col, int32_t n)
{
    int32_t o = 0;
    for (; o + 4 <= n; o += 4) {
        uint32_t w;
        __builtin_memcpy(&w, col + o, 4);   /* little endian: byte k = col[o + k] */
        const int32_t a0 = acc[o] + (int8_t)(w & 0xFFu);
        const int32_t a1 = acc[o + 1] + (int8_t)((w >> 8) & 0xFFu);
        const int32_t a2 = acc[o + 2] + (int8_t)((w >> 16) & 0xFFu);
        const int32_t a3 = acc[o + 3] + (int8_t)(w >> 24);
        acc[o] = a0;
        acc[o + 1] = a1;
        acc[o + 2] = a2;
        acc[o + 3] = a3;
    }
    for (; o < n; o++) {
        acc[o] += col[o];
    }
}

#if MCU_HAVE_DSP
/* DSP: acc[o] += col[o] for o < (n & ~3) in snn_arm.S (LDR of four weights, LDM/STM of
 * four accumulators, SXTAB per weight: 2.0 instructions per synaptic event); this C
 * model on the host (MCU_EMULATE_DSP). */
#if defined(MCU_EMULATE_DSP)
static void mcu_snn_add_col_s8(int32_t *acc, const int8_t *col, int32_t n)
{
    for (int32_t o = 0; o + 4 <= n; o += 4) {
        const uint32_t w = mcu_read_u32(col + o);
        acc[o] += (int8_t)(w & 0xFFu);
        acc[o + 1] += (int8_t)((w >> 8) & 0xFFu);
        acc[o + 2] += (int8_t)((w >> 16) & 0xFFu);
        acc[o + 3] += (int8_t)(w >> 24);
    }
}
static void mcu_snn_mac_col_s8(int32_t *acc, const int8_t *col, int32_t n, int32_t x)
{
    for (int32_t o = 0; o + 4 <= n; o += 4) {
        const uint32_t w = mcu_read_u32(col + o);
        const uint32_t w02 = __sxtb16(w), w13 = mcu_sxtb16_ror8(w);
        acc[o] = __smlabb(w02, (uint32_t)x, acc[o]);
        acc[o + 2] = __smlatb(w02, (uint32_t)x, acc[o + 2]);
        acc[o + 1] = __smlabb(w13, (uint32_t)x, acc[o + 1]);
        acc[o + 3] = __smlatb(w13, (uint32_t)x, acc[o + 3]);
    }
}
#else
void mcu_snn_add_col_s8(int32_t *acc, const int8_t *col, int32_t n);
void mcu_snn_mac_col_s8(int32_t *acc, const int8_t *col, int32_t n, int32_t x);
#endif

static inline void snn_add_col_dsp(int32_t *acc, const int8_t *col, int32_t n)
{
    const int32_t n4 = n & ~3;
    if (n4) {
        mcu_snn_add_col_s8(acc, col, n4);
    }
    for (int32_t o = n4; o < n; o++) {
        acc[o] += col[o];
    }
}

static inline void snn_mac_col_dsp(int32_t *acc, const int8_t *col, int32_t n, int32_t x)
{
    const int32_t n4 = n & ~3;
    if (n4) {
        mcu_snn_mac_col_s8(acc, col, n4, x);
    }
    for (int32_t o = n4; o < n; o++) {
        acc[o] += x * col[o];
    }
}
#endif

/* one non-zero input x: acc += x * col (x == 1: adds only) */
MCU_INLINE void snn_add_input(int32_t *acc, const int8_t *col, int32_t n, int32_t x, int dsp)
{
    if (x == 1) {
#if MCU_HAVE_DSP
        if (dsp) {
            snn_add_col_dsp(acc, col, n);
            return;
        }
#endif
        snn_add_col(acc, col, n);
    } else {
#if MCU_HAVE_DSP
        if (dsp) {
            snn_mac_col_dsp(acc, col, n, x);
            return;
        }
#endif
        for (int32_t o = 0; o < n; o++) {
            acc[o] += x * col[o];
        }
    }
    (void)dsp;
}

/* weights_t: column-contiguous, weights_t[j * out + o] = W[o][j]. */
int32_t mcu_snn_fc_events_s8_portable(int32_t in_features, int32_t out_features, const int8_t *input,
                             const int8_t *weights_t, const int32_t *bias, int32_t *acc)
{
    int32_t events = 0;
    for (int32_t o = 0; o < out_features; o++) {
        acc[o] = bias ? bias[o] : 0;
    }
    for (int32_t j = 0; j < in_features; j++) {
        const int32_t x = input[j];
        if (x == 0) {
            continue;
        }
        const int8_t *col = weights_t + (size_t)j * (size_t)out_features;
        events++;
        if (x == 1) {                       /* a spike: add the column, no multiplies */
            snn_add_col(acc, col, out_features);
        } else {                            /* a count or an analog value */
            for (int32_t o = 0; o < out_features; o++) {
                acc[o] += x * col[o];
            }
        }
    }
    return events;
}

void mcu_snn_fc_dense_s8_portable(int32_t in_features, int32_t out_features, const int8_t *input,
                         const int8_t *weights_t, const int32_t *bias, int32_t *acc)
{
    for (int32_t o = 0; o < out_features; o++) {
        acc[o] = bias ? bias[o] : 0;
    }
    for (int32_t j = 0; j < in_features; j++) {
        const int32_t x = input[j];
        const int8_t *col = weights_t + (size_t)j * (size_t)out_features;
        for (int32_t o = 0; o < out_features; o++) {
            acc[o] += x * col[o];
        }
    }
}

/* Scatter form: every non-zero input (iy, ix, ic) adds its weight runs to the outputs
 * it reaches. weights_g: [groups][kh][kw][ic_per_group][oc_per_group] (contiguous over
 * the output channels of the group). filter_dims: n = out channels, h = kh, w = kw,
 * c = in channels per group. */
MCU_INLINE int32_t snn_conv_events(const mcu_snn_conv_params_t *p, const mcu_dims_t *input_dims,
                                   const int8_t *input, const mcu_dims_t *filter_dims,
                                   const int8_t *weights_g, const int32_t *bias,
                                   const mcu_dims_t *output_dims, int32_t *acc, int dsp)
{
    const int32_t H = input_dims->h, W = input_dims->w, C = input_dims->c;
    const int32_t OH = output_dims->h, OW = output_dims->w, OC = output_dims->c;
    const int32_t KH = filter_dims->h, KW = filter_dims->w, ICG = filter_dims->c;
    const int32_t OCG = OC / p->groups;
    int32_t events = 0;
    for (int32_t k = 0; k < OH * OW; k++) {
        for (int32_t o = 0; o < OC; o++) {
            acc[k * OC + o] = bias ? bias[o] : 0;
        }
    }
    for (int32_t iy = 0; iy < H; iy++) {
        for (int32_t ix = 0; ix < W; ix++) {
            const int8_t *px = input + (iy * W + ix) * C;
            for (int32_t ic = 0; ic < C; ic++) {
                const int32_t x = px[ic];
                if (x == 0) {
                    continue;
                }
                events++;
                const int32_t g = ic / ICG, icl = ic - g * ICG;
                for (int32_t ky = 0; ky < KH; ky++) {
                    /* oy * stride_h - pad_h + ky * dilation_h == iy */
                    const int32_t ny = iy + p->pad_h - ky * p->dilation_h;
                    if (ny < 0 || ny % p->stride_h) {
                        continue;
                    }
                    const int32_t oy = ny / p->stride_h;
                    if (oy >= OH) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < KW; kx++) {
                        const int32_t nx = ix + p->pad_w - kx * p->dilation_w;
                        if (nx < 0 || nx % p->stride_w) {
                            continue;
                        }
                        const int32_t ox = nx / p->stride_w;
                        if (ox >= OW) {
                            continue;
                        }
                        const int8_t *wr = weights_g +
                            ((((size_t)g * KH + ky) * KW + kx) * ICG + icl) * (size_t)OCG;
                        int32_t *a = acc + (oy * OW + ox) * OC + g * OCG;
                        snn_add_input(a, wr, OCG, x, dsp);
                    }
                }
            }
        }
    }
    return events;
}

int32_t mcu_snn_conv_events_s8_portable(const mcu_snn_conv_params_t *p,
                                        const mcu_dims_t *input_dims, const int8_t *input,
                                        const mcu_dims_t *filter_dims, const int8_t *weights_g,
                                        const int32_t *bias, const mcu_dims_t *output_dims,
                                        int32_t *acc)
{
    return snn_conv_events(p, input_dims, input, filter_dims, weights_g, bias, output_dims, acc,
                           0);
}

/* ---- pooling of spikes ---------------------------------------------------- */
void mcu_snn_sumpool_s8_portable(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                        const int8_t *input, const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t H = input_dims->h, W = input_dims->w, C = input_dims->c;
    for (int32_t oy = 0; oy < output_dims->h; oy++) {
        for (int32_t ox = 0; ox < output_dims->w; ox++) {
            int8_t *out = output + (oy * output_dims->w + ox) * C;
            for (int32_t c = 0; c < C; c++) {
                out[c] = 0;
            }
            for (int32_t fy = 0; fy < p->filter_h; fy++) {
                const int32_t iy = oy * p->stride_h - p->pad_h + fy;
                if (iy < 0 || iy >= H) {
                    continue;
                }
                for (int32_t fx = 0; fx < p->filter_w; fx++) {
                    const int32_t ix = ox * p->stride_w - p->pad_w + fx;
                    if (ix < 0 || ix >= W) {
                        continue;
                    }
                    const int8_t *in = input + (iy * W + ix) * C;
                    for (int32_t c = 0; c < C; c++) {
                        out[c] = (int8_t)(out[c] + in[c]);   /* <= 127 taps of 0/1 */
                    }
                }
            }
        }
    }
}

/* ---- neurons -------------------------------------------------------------- */
static inline int64_t snn_cur(int32_t acc, int32_t f)
{
    if (f >= 0) {
        return (int64_t)acc * ((int64_t)1 << f);
    }
    return ((int64_t)acc + ((int64_t)1 << (-f - 1))) >> (-f);
}

static inline int64_t snn_mulq15(int32_t b, int64_t v)
{
    return ((int64_t)b * v + 16384) >> 15;
}

static inline int64_t snn_sat(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

#define MCU_SNN_NEURONS(SCOPE, SFX, T, LO, HI)                                               \
SCOPE int32_t mcu_snn_lif_##SFX(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, T *v,    \
                          int8_t *spikes)                                                    \
{                                                                                            \
    const int32_t C = p->channels, f = p->frac_bits;                                         \
    int32_t count = 0;                                                                       \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                  \
        for (int32_t c = 0; c < C; c++) {                                                    \
            const int32_t k = k0 + c;                                                        \
            const int64_t thr = p->thr[c], old = v[k];                                       \
            const int32_t fired = old > thr;                                                 \
            int64_t vn;                                                                      \
            if (p->reset_subtract) {                                                         \
                vn = snn_mulq15(p->beta[c], old) + snn_cur(acc[k], f) + p->leak[c] -         \
                     (fired ? thr : 0);                                                      \
            } else {                                                                         \
                vn = snn_mulq15(p->beta[c], fired ? (int64_t)p->vreset[c] : old) +           \
                     snn_cur(acc[k], f) + p->leak[c];                                        \
            }                                                                                \
            vn = snn_sat(vn, LO, HI);                                                        \
            v[k] = (T)vn;                                                                    \
            spikes[k] = (int8_t)(vn > thr);                                                  \
            count += vn > thr;                                                               \
        }                                                                                    \
    }                                                                                        \
    return count;                                                                            \
}                                                                                            \
                                                                                             \
SCOPE int32_t mcu_snn_cuba_lif_##SFX(const mcu_snn_neuron_t *p, int32_t n,                    \
                                     const int32_t *acc,                                    \
                               T *i, T *v, int8_t *spikes)                                   \
{                                                                                            \
    const int32_t C = p->channels, f = p->frac_bits;                                         \
    int32_t count = 0;                                                                       \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                  \
        for (int32_t c = 0; c < C; c++) {                                                    \
            const int32_t k = k0 + c;                                                        \
            const int64_t in = snn_sat(snn_mulq15(p->alpha[c], i[k]) + snn_cur(acc[k], f),   \
                                       LO, HI);                                              \
            const int64_t thr = p->thr[c], old = v[k];                                       \
            const int64_t base = snn_mulq15(p->beta[c], old) + in + p->leak[c];              \
            int64_t vn;                                                                      \
            i[k] = (T)in;                                                                    \
            if (p->reset_subtract) {                                                         \
                vn = base - (old > thr ? thr : 0);                                           \
            } else {                                                                         \
                vn = old > thr ? (int64_t)p->vreset[c] : base;                               \
            }                                                                                \
            vn = snn_sat(vn, LO, HI);                                                        \
            v[k] = (T)vn;                                                                    \
            spikes[k] = (int8_t)(vn > thr);                                                  \
            count += vn > thr;                                                               \
        }                                                                                    \
    }                                                                                        \
    return count;                                                                            \
}                                                                                            \
                                                                                             \
SCOPE void mcu_snn_li_##SFX(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, T *v)  \
{                                                                                            \
    const int32_t C = p->channels, f = p->frac_bits;                                         \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                  \
        for (int32_t c = 0; c < C; c++) {                                                    \
            const int32_t k = k0 + c;                                                        \
            v[k] = (T)snn_sat(snn_mulq15(p->beta[c], v[k]) + snn_cur(acc[k], f) + p->leak[c],\
                              LO, HI);                                                       \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
SCOPE void mcu_snn_cuba_li_##SFX(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,    \
                                 T *i,                                                      \
                           T *v)                                                             \
{                                                                                            \
    const int32_t C = p->channels, f = p->frac_bits;                                         \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                  \
        for (int32_t c = 0; c < C; c++) {                                                    \
            const int32_t k = k0 + c;                                                        \
            const int64_t in = snn_sat(snn_mulq15(p->alpha[c], i[k]) + snn_cur(acc[k], f),   \
                                       LO, HI);                                              \
            i[k] = (T)in;                                                                    \
            v[k] = (T)snn_sat(snn_mulq15(p->beta[c], v[k]) + in + p->leak[c], LO, HI);       \
        }                                                                                    \
    }                                                                                        \
}

MCU_SNN_NEURONS(, s32, int32_t, INT32_MIN, INT32_MAX)
MCU_SNN_NEURONS(static, s16_generic, int16_t, INT16_MIN, INT16_MAX)

/* 16-bit state in 32-bit arithmetic, equal to the exact (64-bit) form when frac_bits is
 * in [-8, 12] and the constants lie in the int16 range (what quantize produces): the
 * current is computed from acc clamped to +-2^20/2^F (F >= 0) or +-2^29 (F < 0); a
 * clamped current is beyond +-2^20 - 2^17 either way, so with the other terms (each
 * within +-2^15) the saturated result is the same. Other frac_bits: the 64-bit form. */
typedef struct {
    int32_t lim, rnd, rsh, mul;
} snn16_cur_t;

static inline int snn16_prepare(const mcu_snn_neuron_t *p, snn16_cur_t *c)
{
    const int32_t f = p->frac_bits;
    if (f < -8 || f > 12) {
        return 0;
    }
    c->lim = f >= 0 ? (int32_t)((1 << 20) >> f) : (1 << 29);
    c->rsh = f < 0 ? -f : 0;
    c->rnd = f < 0 ? 1 << (-f - 1) : 0;
    c->mul = f > 0 ? 1 << f : 1;
    return 1;
}

static inline int32_t snn16_cur(int32_t lim, int32_t rnd, int32_t rsh, int32_t mul, int32_t acc)
{
    const int32_t a = acc < -lim ? -lim : (acc > lim ? lim : acc);
    return ((a + rnd) >> rsh) * mul;
}

/* locals of the 16-bit kernels: constants out of the struct (int8 stores may alias it) */
#define SNN16_LOCALS(p, cc)                                                                  \
    const int32_t lim = (cc).lim, rnd = (cc).rnd, rsh = (cc).rsh, mul = (cc).mul;            \
    const int32_t *const beta = (p)->beta, *const alpha = (p)->alpha, *const thrs = (p)->thr, \
                  *const vres = (p)->vreset, *const leak = (p)->leak;                        \
    (void)alpha; (void)vres; (void)thrs
#define SNN16_CUR(x) snn16_cur(lim, rnd, rsh, mul, (x))

static inline int32_t snn16_mulq15(int32_t b, int32_t v)
{
    return (b * v + 16384) >> 15;
}

static inline int32_t snn16_sat(int32_t v)
{
    return v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v);
}

int32_t mcu_snn_lif_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v,
                        int8_t *spikes)
{
    snn16_cur_t cc;
    if (!snn16_prepare(p, &cc)) {
        return mcu_snn_lif_s16_generic(p, n, acc, v, spikes);
    }
    const int32_t C = p->channels;
    SNN16_LOCALS(p, cc);
    int32_t count = 0;
    for (int32_t k0 = 0; k0 < n; k0 += C) {
        const int32_t *a = acc + k0;
        int16_t *vv = v + k0;
        int8_t *sp = spikes + k0;
        if (p->reset_subtract) {
            for (int32_t c = 0; c < C; c++) {
                const int32_t thr = thrs[c], old = vv[c];
                const int32_t vn = snn16_sat(snn16_mulq15(beta[c], old) + SNN16_CUR(a[c]) +
                                             leak[c] - (old > thr ? thr : 0));
                vv[c] = (int16_t)vn;
                sp[c] = (int8_t)(vn > thr);
                count += vn > thr;
            }
        } else {
            for (int32_t c = 0; c < C; c++) {
                const int32_t thr = thrs[c], old = vv[c];
                const int32_t vn = snn16_sat(snn16_mulq15(beta[c], old > thr ? vres[c] : old) +
                                             SNN16_CUR(a[c]) + leak[c]);
                vv[c] = (int16_t)vn;
                sp[c] = (int8_t)(vn > thr);
                count += vn > thr;
            }
        }
    }
    return count;
}

int32_t mcu_snn_cuba_lif_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *i, int16_t *v, int8_t *spikes)
{
    snn16_cur_t cc;
    if (!snn16_prepare(p, &cc)) {
        return mcu_snn_cuba_lif_s16_generic(p, n, acc, i, v, spikes);
    }
    const int32_t C = p->channels, sub = p->reset_subtract;
    SNN16_LOCALS(p, cc);
    int32_t count = 0;
    for (int32_t k0 = 0; k0 < n; k0 += C) {
        for (int32_t c = 0; c < C; c++) {
            const int32_t k = k0 + c;
            const int32_t in = snn16_sat(snn16_mulq15(alpha[c], i[k]) + SNN16_CUR(acc[k]));
            const int32_t thr = thrs[c], old = v[k];
            const int32_t base = snn16_mulq15(beta[c], old) + in + leak[c];
            const int32_t vn = snn16_sat(sub ? base - (old > thr ? thr : 0)
                                             : (old > thr ? vres[c] : base));
            i[k] = (int16_t)in;
            v[k] = (int16_t)vn;
            spikes[k] = (int8_t)(vn > thr);
            count += vn > thr;
        }
    }
    return count;
}

void mcu_snn_li_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v)
{
    snn16_cur_t cc;
    if (!snn16_prepare(p, &cc)) {
        mcu_snn_li_s16_generic(p, n, acc, v);
        return;
    }
    const int32_t C = p->channels;
    SNN16_LOCALS(p, cc);
    for (int32_t k0 = 0; k0 < n; k0 += C) {
        for (int32_t c = 0; c < C; c++) {
            const int32_t k = k0 + c;
            v[k] = (int16_t)snn16_sat(snn16_mulq15(beta[c], v[k]) + SNN16_CUR(acc[k]) +
                                      leak[c]);
        }
    }
}

void mcu_snn_cuba_li_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *i,
                         int16_t *v)
{
    snn16_cur_t cc;
    if (!snn16_prepare(p, &cc)) {
        mcu_snn_cuba_li_s16_generic(p, n, acc, i, v);
        return;
    }
    const int32_t C = p->channels;
    SNN16_LOCALS(p, cc);
    for (int32_t k0 = 0; k0 < n; k0 += C) {
        for (int32_t c = 0; c < C; c++) {
            const int32_t k = k0 + c;
            const int32_t in = snn16_sat(snn16_mulq15(alpha[c], i[k]) + SNN16_CUR(acc[k]));
            i[k] = (int16_t)in;
            v[k] = (int16_t)snn16_sat(snn16_mulq15(beta[c], v[k]) + in + leak[c]);
        }
    }
}

/* ---- DSP variants --------------------------------------------------------- */
#if MCU_HAVE_DSP
/* Inputs are read four per word: a word of four zero inputs costs one load and one
 * branch, so the cost of a step falls with the input spike rate. */
int32_t mcu_snn_fc_events_s8_dsp(int32_t in_features, int32_t out_features,
                                 const int8_t *input, const int8_t *weights_t,
                                 const int32_t *bias, int32_t *acc)
{
    const int32_t out = out_features;
    int32_t events = 0, j = 0;
    if (bias) {
        for (int32_t o = 0; o < out; o++) {
            acc[o] = bias[o];
        }
    } else {
        for (int32_t o = 0; o < out; o++) {
            acc[o] = 0;
        }
    }
    for (; j + 4 <= in_features; j += 4) {
        uint32_t w = mcu_read_u32(input + j);
        const int8_t *col = weights_t + (size_t)j * (size_t)out;
        for (; w; w >>= 8, col += out) {
            const int32_t x = (int8_t)(w & 0xFFu);
            if (x) {
                events++;
                snn_add_input(acc, col, out, x, 1);
            }
        }
    }
    for (; j < in_features; j++) {
        const int32_t x = input[j];
        if (x) {
            events++;
            snn_add_input(acc, weights_t + (size_t)j * (size_t)out, out, x, 1);
        }
    }
    return events;
}

/* Analog input: the same sum (zero inputs skipped: identical), SMLABB/SMLATB columns. */
void mcu_snn_fc_dense_s8_dsp(int32_t in_features, int32_t out_features, const int8_t *input,
                             const int8_t *weights_t, const int32_t *bias, int32_t *acc)
{
    for (int32_t o = 0; o < out_features; o++) {
        acc[o] = bias ? bias[o] : 0;
    }
    for (int32_t j = 0; j < in_features; j++) {
        const int32_t x = input[j];
        if (x) {
            snn_add_input(acc, weights_t + (size_t)j * (size_t)out_features, out_features, x, 1);
        }
    }
}

/* Sum of 0/1 spikes, four channels per 32-bit add: every byte sum is <= 127 (at most 127
 * taps), so no carry crosses a byte and the word sum is the four byte sums. */
void mcu_snn_sumpool_s8_dsp(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                            const int8_t *input, const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t H = input_dims->h, W = input_dims->w, C = input_dims->c, C4 = C & ~3;
    for (int32_t oy = 0; oy < output_dims->h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        const int32_t fy0 = y0 < 0 ? -y0 : 0;
        const int32_t fy1 = y0 + p->filter_h > H ? H - y0 : p->filter_h;
        for (int32_t ox = 0; ox < output_dims->w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            const int32_t fx0 = x0 < 0 ? -x0 : 0;
            const int32_t fx1 = x0 + p->filter_w > W ? W - x0 : p->filter_w;
            int8_t *out = output + (oy * output_dims->w + ox) * C;
            for (int32_t c = 0; c < C4; c += 4) {
                uint32_t sum = 0;
                for (int32_t fy = fy0; fy < fy1; fy++) {
                    for (int32_t fx = fx0; fx < fx1; fx++) {
                        sum += mcu_read_u32(input + ((y0 + fy) * W + x0 + fx) * C + c);
                    }
                }
                mcu_write_u32(out + c, sum);
            }
            for (int32_t c = C4; c < C; c++) {
                int32_t sum = 0;
                for (int32_t fy = fy0; fy < fy1; fy++) {
                    for (int32_t fx = fx0; fx < fx1; fx++) {
                        sum += input[((y0 + fy) * W + x0 + fx) * C + c];
                    }
                }
                out[c] = (int8_t)sum;
            }
        }
    }
}

int32_t mcu_snn_conv_events_s8_dsp(const mcu_snn_conv_params_t *p, const mcu_dims_t *input_dims,
                                   const int8_t *input, const mcu_dims_t *filter_dims,
                                   const int8_t *weights_g, const int32_t *bias,
                                   const mcu_dims_t *output_dims, int32_t *acc)
{
    return snn_conv_events(p, input_dims, input, filter_dims, weights_g, bias, output_dims, acc,
                           1);
}

/* 16-bit neurons in 32-bit arithmetic with SSAT (frac_bits in [-8, 12], else the
 * portable kernels). The input current saturates the acc at a fixed width first:
 * F >= 0: SSAT(acc, 19) * 2^F; F < 0: (SSAT(acc, 27) + 2^(-F-1)) >> -F. Unclamped it is
 * the exact current; clamped, |current| >= 2^18 - 1 while the other terms of a state
 * update (beta*v, alpha*i, leak, threshold, each within +-2^15) sum to < 2^17: the
 * state saturates to the sign of acc, as in the exact form (and as with the portable
 * clamp at +-2^20 / 2^F). One ASR-shifted add per Q15 product (MLA + ADD asr #15),
 * spike = (thr - v) >> 31 (both int16: no overflow), no branches. */
#if defined(MCU_EMULATE_DSP)
MCU_INLINE int32_t snn_ssat(int32_t x, int32_t bits)
{
    const int32_t hi = (int32_t)((1u << (bits - 1)) - 1u), lo = -hi - 1;
    return x < lo ? lo : (x > hi ? hi : x);
}
#define SNN_SSAT(x, bits) snn_ssat((x), (bits))
#else
#define SNN_SSAT(x, bits) __ssat((x), (bits))
#endif
#define SNN_CUR_POS(x) (SNN_SSAT((x), 19) * mul)
#define SNN_CUR_NEG(x) ((SNN_SSAT((x), 27) + rnd) >> rsh)
#define SNN_Q15(b, x) (((b) * (x) + 16384) >> 15)
#define SNN_GT(x, thr) ((int32_t)((uint32_t)((thr) - (x)) >> 31))

#define SNN_LIF16_LOOP(CUR)                                                                   \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                   \
        const int32_t *a = acc + k0;                                                          \
        int16_t *vv = v + k0;                                                                 \
        int8_t *sp = spikes + k0;                                                             \
        if (sub) {                                                                            \
            for (int32_t c = 0; c < C; c++) {                                                 \
                const int32_t thr = thrs[c], old = vv[c];                                     \
                int32_t x = CUR(a[c]) + leak[c] + SNN_Q15(beta[c], old);                      \
                x -= old > thr ? thr : 0;                                                     \
                x = SNN_SSAT(x, 16);                                                          \
                vv[c] = (int16_t)x;                                                           \
                const int32_t s = SNN_GT(x, thr);                                             \
                sp[c] = (int8_t)s;                                                            \
                count += s;                                                                   \
            }                                                                                 \
        } else {                                                                              \
            for (int32_t c = 0; c < C; c++) {                                                 \
                const int32_t thr = thrs[c], old = vv[c];                                     \
                const int32_t base = old > thr ? vres[c] : old;                               \
                const int32_t x = SNN_SSAT(CUR(a[c]) + leak[c] + SNN_Q15(beta[c], base), 16); \
                vv[c] = (int16_t)x;                                                           \
                const int32_t s = SNN_GT(x, thr);                                             \
                sp[c] = (int8_t)s;                                                            \
                count += s;                                                                   \
            }                                                                                 \
        }                                                                                     \
    }

#define SNN16_DSP_LOCALS(p)                                                                   \
    const int32_t C = (p)->channels, f = (p)->frac_bits, sub = (p)->reset_subtract;          \
    const int32_t mul = f > 0 ? 1 << f : 1, rsh = f < 0 ? -f : 0;                             \
    const int32_t rnd = f < 0 ? 1 << (-f - 1) : 0;                                            \
    const int32_t *const beta = (p)->beta, *const alpha = (p)->alpha, *const thrs = (p)->thr, \
                  *const vres = (p)->vreset, *const leak = (p)->leak;                        \
    (void)alpha; (void)vres; (void)thrs; (void)sub; (void)mul; (void)rsh; (void)rnd

int32_t mcu_snn_lif_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                            int16_t *v, int8_t *spikes)
{
    if (p->frac_bits < -8 || p->frac_bits > 12) {
        return mcu_snn_lif_s16_generic(p, n, acc, v, spikes);
    }
    SNN16_DSP_LOCALS(p);
    int32_t count = 0;
    if (f >= 0) {
        SNN_LIF16_LOOP(SNN_CUR_POS)
    } else {
        SNN_LIF16_LOOP(SNN_CUR_NEG)
    }
    return count;
}

#define SNN_CUBA16_LOOP(CUR, SPIKE)                                                           \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                   \
        for (int32_t c = 0; c < C; c++) {                                                     \
            const int32_t k = k0 + c;                                                         \
            const int32_t in = SNN_SSAT(SNN_Q15(alpha[c], i[k]) + CUR(acc[k]), 16);           \
            const int32_t old = v[k];                                                         \
            i[k] = (int16_t)in;                                                               \
            SPIKE                                                                             \
        }                                                                                     \
    }
#define SNN_CUBA_LIF_TAIL                                                                     \
    const int32_t thr = thrs[c];                                                              \
    const int32_t base = SNN_Q15(beta[c], old) + in + leak[c];                                \
    const int32_t x = SNN_SSAT(sub ? base - (old > thr ? thr : 0)                             \
                                   : (old > thr ? vres[c] : base), 16);                      \
    v[k] = (int16_t)x;                                                                        \
    const int32_t s = SNN_GT(x, thr);                                                         \
    spikes[k] = (int8_t)s;                                                                    \
    count += s;
#define SNN_CUBA_LI_TAIL v[k] = (int16_t)SNN_SSAT(SNN_Q15(beta[c], old) + in + leak[c], 16);

int32_t mcu_snn_cuba_lif_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                                 int16_t *i, int16_t *v, int8_t *spikes)
{
    if (p->frac_bits < -8 || p->frac_bits > 12) {
        return mcu_snn_cuba_lif_s16_generic(p, n, acc, i, v, spikes);
    }
    SNN16_DSP_LOCALS(p);
    int32_t count = 0;
    if (f >= 0) {
        SNN_CUBA16_LOOP(SNN_CUR_POS, SNN_CUBA_LIF_TAIL)
    } else {
        SNN_CUBA16_LOOP(SNN_CUR_NEG, SNN_CUBA_LIF_TAIL)
    }
    return count;
}

void mcu_snn_cuba_li_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *i, int16_t *v)
{
    if (p->frac_bits < -8 || p->frac_bits > 12) {
        mcu_snn_cuba_li_s16_generic(p, n, acc, i, v);
        return;
    }
    SNN16_DSP_LOCALS(p);
    if (f >= 0) {
        SNN_CUBA16_LOOP(SNN_CUR_POS, SNN_CUBA_LI_TAIL)
    } else {
        SNN_CUBA16_LOOP(SNN_CUR_NEG, SNN_CUBA_LI_TAIL)
    }
}

#define SNN_LI16_LOOP(CUR)                                                                    \
    for (int32_t k0 = 0; k0 < n; k0 += C) {                                                   \
        const int32_t *a = acc + k0;                                                          \
        int16_t *vv = v + k0;                                                                 \
        for (int32_t c = 0; c < C; c++) {                                                     \
            vv[c] = (int16_t)SNN_SSAT(CUR(a[c]) + leak[c] + SNN_Q15(beta[c], vv[c]), 16);     \
        }                                                                                     \
    }

void mcu_snn_li_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v)
{
    if (p->frac_bits < -8 || p->frac_bits > 12) {
        mcu_snn_li_s16_generic(p, n, acc, v);
        return;
    }
    SNN16_DSP_LOCALS(p);
    if (f >= 0) {
        SNN_LI16_LOOP(SNN_CUR_POS)
    } else {
        SNN_LI16_LOOP(SNN_CUR_NEG)
    }
}
#endif /* MCU_HAVE_DSP */

/* ---- best available (compile time) --------------------------------------- */
#if MCU_HAVE_DSP
#define SNN_BEST(name) name##_dsp
#else
#define SNN_BEST(name) name##_portable
#endif

int32_t mcu_snn_fc_events_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                             const int8_t *weights_t, const int32_t *bias, int32_t *acc)
{
    return SNN_BEST(mcu_snn_fc_events_s8)(in_features, out_features, input, weights_t, bias,
                                          acc);
}

int32_t mcu_snn_conv_events_s8(const mcu_snn_conv_params_t *p, const mcu_dims_t *input_dims,
                               const int8_t *input, const mcu_dims_t *filter_dims,
                               const int8_t *weights_g, const int32_t *bias,
                               const mcu_dims_t *output_dims, int32_t *acc)
{
    return SNN_BEST(mcu_snn_conv_events_s8)(p, input_dims, input, filter_dims, weights_g, bias,
                                            output_dims, acc);
}

void mcu_snn_fc_dense_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                         const int8_t *weights_t, const int32_t *bias, int32_t *acc)
{
    SNN_BEST(mcu_snn_fc_dense_s8)(in_features, out_features, input, weights_t, bias, acc);
}

void mcu_snn_sumpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                        const int8_t *input, const mcu_dims_t *output_dims, int8_t *output)
{
    SNN_BEST(mcu_snn_sumpool_s8)(p, input_dims, input, output_dims, output);
}

int32_t mcu_snn_lif_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v,
                        int8_t *spikes)
{
    return SNN_BEST(mcu_snn_lif_s16)(p, n, acc, v, spikes);
}

int32_t mcu_snn_cuba_lif_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *i, int16_t *v, int8_t *spikes)
{
    return SNN_BEST(mcu_snn_cuba_lif_s16)(p, n, acc, i, v, spikes);
}

void mcu_snn_li_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v)
{
    SNN_BEST(mcu_snn_li_s16)(p, n, acc, v);
}

void mcu_snn_cuba_li_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *i,
                         int16_t *v)
{
    SNN_BEST(mcu_snn_cuba_li_s16)(p, n, acc, i, v);
}

int32_t mcu_snn_threshold(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                          int8_t *spikes)
{
    const int32_t C = p->channels, f = p->frac_bits;
    int32_t count = 0;
    for (int32_t k0 = 0; k0 < n; k0 += C) {
        for (int32_t c = 0; c < C; c++) {
            const int32_t k = k0 + c;
            const int32_t s = snn_cur(acc[k], f) > p->thr[c];
            spikes[k] = (int8_t)s;
            count += s;
        }
    }
    return count;
}

/* ---- rate coding ---------------------------------------------------------- */
uint32_t mcu_snn_xorshift32(uint32_t s)
{
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
}

uint32_t mcu_snn_sample_seed(uint32_t seed, uint32_t index)
{
    const uint32_t s = seed ^ (index * 0x9E3779B9u);
    return s ? s : 0x9E3779B9u;
}

void mcu_snn_rate_thresholds(int32_t n, const uint8_t *levels, uint32_t *thr)
{
    for (int32_t j = 0; j < n; j++) {
        thr[j] = ((uint32_t)levels[j] * 65536u + 127u) / 255u;
    }
}

int32_t mcu_snn_rate_encode(int32_t n, const uint32_t *thr, uint32_t *state, int8_t *spikes)
{
    uint32_t s = *state;
    int32_t count = 0;
    for (int32_t j = 0; j < n; j++) {
        s = mcu_snn_xorshift32(s);
        const int32_t spike = (s >> 16) < thr[j];
        spikes[j] = (int8_t)spike;
        count += spike;
    }
    *state = s;
    return count;
}

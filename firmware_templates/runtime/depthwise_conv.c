/* DEPTHWISE_CONV_2D int8 (TFLM reference_integer_ops::DepthwiseConvPerChannel). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* Requantization by a prepared table rq, or else mult/shift at byte offset
 * oc * qstride (see conv.c). */
MCU_INLINE void dw_portable(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                        const int32_t *mult, const int32_t *shift, int32_t qstride, const mcu_dims_t *input_dims, const int8_t *input,
                        const mcu_dims_t *filter_dims, const int8_t *filter,
                        const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t dm = p->depth_multiplier;
    const int32_t in_off = p->input_offset;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t ic = 0; ic < in_c; ic++) {
                    for (int32_t m = 0; m < dm; m++) {
                        const int32_t oc = m + ic * dm;
                        int32_t acc = 0;
                        for (int32_t fy = 0; fy < f_h; fy++) {
                            const int32_t iy = iy0 + p->dilation_h * fy;
                            if (iy < 0 || iy >= in_h) continue;
                            for (int32_t fx = 0; fx < f_w; fx++) {
                                const int32_t ix = ix0 + p->dilation_w * fx;
                                if (ix < 0 || ix >= in_w) continue;
                                acc += (int32_t)filter[(fy * f_w + fx) * out_c + oc] *
                                       ((int32_t)in_b[(iy * in_w + ix) * in_c + ic] + in_off);
                            }
                        }
                        if (bias) acc = mcu_add_wrap(acc, bias[oc]); /* TFLM's wrap-around */
                        output[oc] = rq ? mcu_clamp8(mcu_rqt_apply(acc, rq + oc,
                                                                   p->output_offset),
                                                     p->act_min, p->act_max)
                                        : mcu_requant_clamp(acc, MCU_QAT(mult, oc, qstride),
                                                            MCU_QAT(shift, oc, qstride),
                                                            p->output_offset, p->act_min,
                                                            p->act_max);
                    }
                }
                output += out_c;
            }
        }
    }
}

void mcu_dw_conv2d_s8_portable(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                               const mcu_dims_t *input_dims, const int8_t *input,
                               const mcu_dims_t *filter_dims, const int8_t *filter,
                               const int32_t *bias, const mcu_dims_t *output_dims,
                               int8_t *output)
{
    dw_portable(p, 0, q->multiplier, q->shift, 4, input_dims, input, filter_dims, filter, bias,
                output_dims, output);
}

/* ---- DSP kernels (depth_multiplier == 1) -----------------------------------
 *
 * Two packed weight layouts (mcu_dw_conv2d_s8_pack):
 *  - 3x3, stride 1 or 2, dilation 1, C % 4 == 0 ("3x3 path"): per channel six
 *    words of int16 pairs (w[ky][0], w[ky][1]), (w[ky][1], w[ky][2]) for ky = 0..2;
 *    the input is unpacked per chunk of MCU_DW_CHUNK channels into channel
 *    planes of int16 (input + offset, zero in the padding), three rows in a
 *    ring, so that one SMLAD multiplies two horizontal taps of one channel and
 *    two neighbouring output pixels share their loads;
 *  - otherwise ("generic"): per group of four channels and tap two words
 *    ([c0,c2], [c1,c3]) for SMLABB/SMLATT on SXTAB16-unpacked input words. */
#define MCU_DW_CHUNK 8

static int dw3x3_ok(const mcu_dw_conv_params_t *p, const mcu_dims_t *fd)
{
    return p->depth_multiplier == 1 && fd->h == 3 && fd->w == 3 && p->dilation_h == 1 &&
           p->dilation_w == 1 && p->stride_h == p->stride_w &&
           (p->stride_h == 1 || p->stride_h == 2) && (fd->c & 3) == 0 &&
           p->pad_h >= 0 && p->pad_h <= 2 && p->pad_w >= 0 && p->pad_w <= 2;
}

/* int16 elements per channel plane row */
static inline int32_t dw3x3_wp(const mcu_dw_conv_params_t *p, int32_t in_w, int32_t out_w)
{
    int32_t a = p->pad_w + in_w, b = (out_w + 1) * p->stride_w + 2;
    return ((a > b ? a : b) + 1) & ~1;
}

int32_t mcu_dw_conv2d_s8_planes_ok(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims)
{
    return dw3x3_ok(p, filter_dims);
}

int32_t mcu_dw_conv2d_s8_packed_size(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims)
{
    const int32_t C = filter_dims->c;
    if (dw3x3_ok(p, filter_dims)) return C * 6 * 4;
    return (C / 4) * filter_dims->h * filter_dims->w * 8;
}

void mcu_dw_conv2d_s8_pack(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                           const int8_t *filter, void *packed)
{
    const int32_t C = filter_dims->c, taps = filter_dims->h * filter_dims->w;
    uint32_t *w = (uint32_t *)packed;
    if (dw3x3_ok(p, filter_dims)) {
        for (int32_t c = 0; c < C; c++)
            for (int32_t ky = 0; ky < 3; ky++) {
                const uint32_t a = (uint16_t)(int16_t)filter[(ky * 3 + 0) * C + c];
                const uint32_t b = (uint16_t)(int16_t)filter[(ky * 3 + 1) * C + c];
                const uint32_t d = (uint16_t)(int16_t)filter[(ky * 3 + 2) * C + c];
                w[c * 6 + 2 * ky] = a | (b << 16);
                w[c * 6 + 2 * ky + 1] = b | (d << 16);
            }
        return;
    }
    for (int32_t g = 0; g < C / 4; g++)
        for (int32_t t = 0; t < taps; t++) {
            const int8_t *f = filter + t * C + 4 * g;
            w[(g * taps + t) * 2] = ((uint32_t)(uint16_t)(int16_t)f[0]) |
                                    ((uint32_t)(uint16_t)(int16_t)f[2] << 16);
            w[(g * taps + t) * 2 + 1] = ((uint32_t)(uint16_t)(int16_t)f[1]) |
                                        ((uint32_t)(uint16_t)(int16_t)f[3] << 16);
        }
}

static inline int32_t dw_core_scratch(const mcu_dw_conv_params_t *p, const mcu_dims_t *fd, int32_t wp)
{
    if (!dw3x3_ok(p, fd)) return 0;
    return 3 * MCU_DW_CHUNK * wp * (int32_t)sizeof(int16_t) + MCU_DW_CHUNK * (wp + 2) * (int32_t)sizeof(int32_t);
}

/* without a packed filter the 3x3 path expands one chunk of channels at a time from
 * the int8 filter (mcu_dw_conv2d_s8_pack's layout) after the planes and sums */
#define MCU_DW_CHUNK_W (MCU_DW_CHUNK * 6 * 4)

static inline int32_t align4(int32_t n) { return (n + 3) & ~3; }

int32_t mcu_dw_conv2d_s8_pre_scratch_size(const mcu_dw_conv_params_t *p,
                                          const mcu_dims_t *input_dims,
                                          const mcu_dims_t *filter_dims,
                                          const mcu_dims_t *output_dims, int32_t have_packed)
{
#if MCU_HAVE_DSP
    if (p->depth_multiplier != 1) return 0;
    if (dw3x3_ok(p, filter_dims))
        return (have_packed ? 0 : MCU_DW_CHUNK_W) +
               dw_core_scratch(p, filter_dims, dw3x3_wp(p, input_dims->w, output_dims->w));
    return have_packed ? 0 : align4(mcu_dw_conv2d_s8_packed_size(p, filter_dims));
#else
    (void)p;
    (void)input_dims;
    (void)filter_dims;
    (void)output_dims;
    (void)have_packed;
    return 0;
#endif
}

/* Legacy entry (scratch holds the requantization table and the packed weights
 * too): sized without the params, for either layout; the planes of the 3x3
 * path are at most in_w + 8 elements wide. */
int32_t mcu_dw_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    const int32_t C = filter_dims->c;
    const int32_t generic = (C / 4) * filter_dims->h * filter_dims->w * 8;
    const int32_t fast = (filter_dims->h == 3 && filter_dims->w == 3 && (C & 3) == 0)
                             ? MCU_DW_CHUNK_W + 3 * MCU_DW_CHUNK * (input_dims->w + 8) * 2 +
                                   MCU_DW_CHUNK * (input_dims->w + 10) * 4
                             : 0;
    return C * (int32_t)sizeof(mcu_requant_t) + (generic > fast ? generic : fast);
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

#if MCU_HAVE_DSP
#if defined(MCU_EMULATE_DSP)
/* C models of mcu_dw3x3_acc_s1/_s2 in mcu_mm_arm.S (host tests of the DSP path) */
static void mcu_dw3x3_acc_s1(const uint32_t *x, const uint32_t *w, const int32_t *woff,
                             int32_t *acc, int32_t npairs, int32_t nch, int32_t xstride)
{
    for (; nch > 0; nch--, w += 6, x += xstride / 4) {
        const uint32_t *wk[3] = {w + woff[0] / 4, w + woff[1] / 4, w + woff[2] / 4};
        const uint32_t *xp = x;
        for (int32_t i = 0; i < npairs; i++, xp += 3, acc += 2) {
            int32_t s0 = 0, s1 = 0;
            for (int k = 0; k < 3; k++) {
                s0 = __smlad(xp[k], wk[k][0], s0);
                s1 = __smlatb(xp[k], wk[k][0], s1);
                s0 = __smlabt(xp[3 + k], wk[k][1], s0);
                s1 = __smlad(xp[3 + k], wk[k][1], s1);
            }
            acc[0] = s0;
            acc[1] = s1;
        }
    }
}

static void mcu_dw3x3_acc_s2(const uint32_t *x, const uint32_t *w, const int32_t *woff,
                             int32_t *acc, int32_t n, int32_t nch, int32_t xstride)
{
    for (; nch > 0; nch--, w += 6, x += xstride / 4) {
        const uint32_t *wk[3] = {w + woff[0] / 4, w + woff[1] / 4, w + woff[2] / 4};
        const uint32_t *xp = x;
        for (int32_t i = 0; i < n; i++, xp += 3, acc++) {
            int32_t s0 = 0;
            for (int k = 0; k < 3; k++) {
                s0 = __smlad(xp[k], wk[k][0], s0);
                s0 = __smlabt(xp[3 + k], wk[k][1], s0);
            }
            acc[0] = s0;
        }
    }
}
/* C model of mcu_dw3x3_s1_rq */
static void mcu_dw3x3_s1_rq(const uint32_t *x, const uint32_t *w, const int32_t *woff,
                            int8_t *out, int32_t out_w, int32_t nch, int32_t xstride, int32_t C,
                            const int32_t *bias, const mcu_requant_t *rq)
{
    for (; nch > 0; nch--, w += 6, x += xstride / 4, out++, bias++, rq++) {
        const uint32_t *wk[3] = {w + woff[0] / 4, w + woff[1] / 4, w + woff[2] / 4};
        const uint32_t *xp = x;
        for (int32_t ox = 0; ox < out_w; ox += 2, xp += 3) {
            int32_t s0 = 0, s1 = 0;
            for (int k = 0; k < 3; k++) {
                s0 = __smlad(xp[k], wk[k][0], s0);
                s1 = __smlatb(xp[k], wk[k][0], s1);
                s0 = __smlabt(xp[3 + k], wk[k][1], s0);
                s1 = __smlad(xp[3 + k], wk[k][1], s1);
            }
            out[ox * C] = (int8_t)mcu_ssat8(
                mcu_rqt_fast(mcu_add_wrap(s0, *bias), rq->mult, rq->rlo, rq->rhi, rq->sh));
            if (ox + 1 < out_w)
                out[(ox + 1) * C] = (int8_t)mcu_ssat8(
                    mcu_rqt_fast(mcu_add_wrap(s1, *bias), rq->mult, rq->rlo, rq->rhi, rq->sh));
        }
    }
}
#else
void mcu_dw3x3_s1_rq(const uint32_t *x, const uint32_t *w, const int32_t *woff, int8_t *out,
                     int32_t out_w, int32_t nch, int32_t xstride, int32_t C,
                     const int32_t *bias, const mcu_requant_t *rq);
void mcu_dw3x3_acc_s1(const uint32_t *x, const uint32_t *w, const int32_t *woff, int32_t *acc,
                      int32_t npairs, int32_t nch, int32_t xstride);
void mcu_dw3x3_acc_s2(const uint32_t *x, const uint32_t *w, const int32_t *woff, int32_t *acc,
                      int32_t n, int32_t nch, int32_t xstride);
#endif

/* requantize the raw sums acc[c][0..n) (row pitch ap) of channels c < nch:
 * o[ox * C + c] */
MCU_NOINLINE static void dw_store_rows(const int32_t *acc, int32_t ap, int32_t n,
                                                    int32_t nch, const int32_t *bias,
                                                    const mcu_requant_t *rq, int32_t out_off,
                                                    int32_t act_min, int32_t act_max,
                                                    int8_t *o, int32_t C)
{
    const int full = act_min == -128 && act_max == 127;
    for (int32_t c = 0; c < nch; c++, acc += ap, o++) {
        const mcu_requant_t *t = rq + c;
        const int32_t bs = bias ? bias[c] : 0;
        const int32_t mult = t->mult, sh = t->sh;
        const int32_t *a = acc;
        int8_t *op = o;
        if (sh >= 0 && full) {
            const uint32_t rlo = t->rlo;
            const int32_t rhi = t->rhi;
            for (int32_t i = n; i > 0; i--, op += C)
                *op = (int8_t)mcu_ssat8(mcu_rqt_fast(mcu_add_wrap(*a++, bs), mult, rlo, rhi, sh));
        } else if (sh >= 0) {
            const uint32_t rlo = t->rlo;
            const int32_t rhi = t->rhi;
            for (int32_t i = n; i > 0; i--, op += C) {
                int32_t v = mcu_rqt_fast(mcu_add_wrap(*a++, bs), mult, rlo, rhi, sh);
                v = v < act_min ? act_min : v;
                *op = (int8_t)(v > act_max ? act_max : v);
            }
        } else {
            for (int32_t i = n; i > 0; i--, op += C)
                *op = mcu_clamp8(mcu_rqt_apply(mcu_add_wrap(*a++, bs), t, out_off), act_min,
                                 act_max);
        }
    }
}

/* unpack input row iy (or zeros outside the image) of channels [c0, c0+n)
 * into ring slot k of the interleaved planes (element j of channel c at
 * int16 index c*3*wp + (j/2)*6 + 2k + j%2, j = ix + pad_w) */
static void dw3x3_load_row(int16_t *planes, int32_t k, const int8_t *in_b, int32_t iy,
                           int32_t in_h, int32_t in_w, int32_t C, int32_t c0, int32_t n,
                           int32_t wp, int32_t pad_w, uint32_t off2)
{
    const int32_t cs = 3 * wp;
    if (iy < 0 || iy >= in_h) {
        for (int32_t c = 0; c < n; c++)
            for (int32_t j = pad_w; j < pad_w + in_w; j++)
                planes[c * cs + (j >> 1) * 6 + 2 * k + (j & 1)] = 0;
        return;
    }
    const int8_t *src = in_b + iy * in_w * C + c0;
    for (int32_t q = 0; q < n; q += 4) {
        const int8_t *sp = src + q;
        int16_t *d = planes + q * cs + 2 * k + (pad_w >> 1) * 6;
        int32_t x = 0;
        if (pad_w & 1) { /* first pixel in the odd half of a pair */
            const uint32_t X = mcu_read_u32(sp);
            const uint32_t xe = __sxtab16(off2, X), xo = mcu_sxtab16_ror8(off2, X);
            d[1] = (int16_t)xe;
            d[2 * cs + 1] = (int16_t)(xe >> 16);
            d[cs + 1] = (int16_t)xo;
            d[3 * cs + 1] = (int16_t)(xo >> 16);
            sp += C;
            d += 6;
            x = 1;
        }
        uint32_t *dw = (uint32_t *)(void *)d;
        for (; x + 2 <= in_w; x += 2, sp += 2 * C, dw += 3) {
            const uint32_t X0 = mcu_read_u32(sp), X1 = mcu_read_u32(sp + C);
            const uint32_t e0 = __sxtab16(off2, X0), o0 = mcu_sxtab16_ror8(off2, X0);
            const uint32_t e1 = __sxtab16(off2, X1), o1 = mcu_sxtab16_ror8(off2, X1);
            dw[0] = (e0 & 0xffffu) | (e1 << 16);           /* channel q:     (j, j+1) */
            dw[cs] = (e1 & 0xffff0000u) | (e0 >> 16);      /* channel q + 2 (cs/2 words) */
            dw[cs / 2] = (o0 & 0xffffu) | (o1 << 16);      /* channel q + 1 */
            dw[3 * cs / 2] = (o1 & 0xffff0000u) | (o0 >> 16); /* channel q + 3 */
        }
        if (x < in_w) { /* last pixel in the even half of a pair */
            int16_t *dl = (int16_t *)(void *)dw;
            const uint32_t X = mcu_read_u32(sp);
            const uint32_t xe = __sxtab16(off2, X), xo = mcu_sxtab16_ror8(off2, X);
            dl[0] = (int16_t)xe;
            dl[2 * cs] = (int16_t)(xe >> 16);
            dl[cs] = (int16_t)xo;
            dl[3 * cs] = (int16_t)(xo >> 16);
        }
    }
}

static void dw3x3_dsp(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                      const mcu_dims_t *input_dims, const int8_t *input,
                      const uint32_t *packed, const int8_t *filter, const int32_t *bias,
                      const mcu_dims_t *output_dims, int8_t *output, int16_t *planes)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t S = p->stride_h, pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t wp = dw3x3_wp(p, in_w, out_w);
    const int32_t cs = 3 * wp; /* int16 per channel */
    int32_t *acc = (int32_t *)(void *)(planes + MCU_DW_CHUNK * cs);
    uint32_t *wexp = (uint32_t *)(void *)(acc + MCU_DW_CHUNK * (wp + 2));
    const uint32_t off2 = ((uint32_t)(uint16_t)p->input_offset) * 0x10001u;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t npairs = (out_w + 1) >> 1;
    const int use_asm = bias && act_min == -128 && act_max == 127 && mcu_rqt_all_fast(rq, C);
    {
        uint32_t *z = (uint32_t *)(void *)planes;
        for (int32_t i = 0; i < MCU_DW_CHUNK * cs / 2; i++) z[i] = 0;
    }
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        int8_t *out_b = output + b * out_h * out_w * C;
        for (int32_t c0 = 0; c0 < C; c0 += MCU_DW_CHUNK) {
            const int32_t n = C - c0 < MCU_DW_CHUNK ? C - c0 : MCU_DW_CHUNK;
            const uint32_t *wc = packed ? packed + c0 * 6 : wexp;
            if (!packed) /* this chunk's weights, from the int8 filter (flash stays 9 B/ch) */
                for (int32_t c = 0; c < n; c++)
                    for (int32_t ky = 0; ky < 3; ky++) {
                        const int8_t *f = filter + ky * 3 * C + c0 + c;
                        const uint32_t a = (uint16_t)(int16_t)f[0];
                        const uint32_t bb = (uint16_t)(int16_t)f[C];
                        const uint32_t d = (uint16_t)(int16_t)f[2 * C];
                        wexp[c * 6 + 2 * ky] = a | (bb << 16);
                        wexp[c * 6 + 2 * ky + 1] = bb | (d << 16);
                    }
            int32_t have = -pad_h - 3; /* rows < have are not in the ring */
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t iy0 = oy * S - pad_h;
                int32_t r = have > iy0 ? have : iy0;
                for (; r < iy0 + 3; r++)
                    dw3x3_load_row(planes, (r + 12) % 3, in_b, r, in_h, in_w, C, c0, n, wp,
                                   pad_w, off2);
                have = iy0 + 3;
                int32_t woff[3];
                for (int32_t k = 0; k < 3; k++) woff[k] = 8 * (((k - iy0) % 3 + 3) % 3);
                const uint32_t *x = (const uint32_t *)(const void *)planes;
                if (use_asm && S == 1) { /* requantized in the assembly store */
                    mcu_dw3x3_s1_rq(x, wc, woff, out_b + oy * out_w * C + c0,
                                    out_w, n, cs * 2, C, bias + c0, rq + c0);
                    continue;
                }
                if (S == 1)
                    mcu_dw3x3_acc_s1(x, wc, woff, acc, npairs, n, cs * 2);
                else
                    mcu_dw3x3_acc_s2(x, wc, woff, acc, out_w, n, cs * 2);
                if (use_asm)
                    mcu_rq_store_cols(acc, bias + c0, rq + c0, out_b + oy * out_w * C + c0,
                                      out_w, n, C, 4 * (S == 1 ? 2 * npairs : out_w));
                else
                    dw_store_rows(acc, S == 1 ? 2 * npairs : out_w, out_w, n,
                                  bias ? bias + c0 : 0, rq + c0, out_off, act_min, act_max,
                                  out_b + oy * out_w * C + c0, C);
            }
        }
    }
}

/* generic layout: four channels at a time; SXTAB16 adds the input offset while
 * unpacking, SMLABB/SMLATT accumulate per channel. */
static void dw_generic_dsp(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                           const mcu_dims_t *input_dims, const int8_t *input,
                           const mcu_dims_t *filter_dims, const int8_t *filter,
                           const uint32_t *wrep, const int32_t *bias,
                           const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w, taps = f_h * f_w;
    const int32_t in_off = p->input_offset;
    const uint32_t off2 = ((uint32_t)(uint16_t)in_off) * 0x10001u;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t C4 = C & ~3, G = C >> 2;
    const int32_t dh = p->dilation_h, dw = p->dilation_w;
    const int32_t xstep = dw * C;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t fy0 = 0, fy1 = f_h;
            while (fy0 < f_h && iy0 + dh * fy0 < 0) fy0++;
            while (fy1 > fy0 && iy0 + dh * (fy1 - 1) >= in_h) fy1--;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t fx0 = 0, fx1 = f_w;
                while (fx0 < f_w && ix0 + dw * fx0 < 0) fx0++;
                while (fx1 > fx0 && ix0 + dw * (fx1 - 1) >= in_w) fx1--;
                const int32_t nfx = fx1 - fx0;
                const int8_t *xbase = in_b + ((iy0 + dh * fy0) * in_w + ix0 + dw * fx0) * C;
                const uint32_t *wbase = wrep + 2 * (fy0 * f_w + fx0);
                for (int32_t g = 0; g < G; g++) {
                    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    if (bias) {
                        s0 = bias[4 * g];
                        s1 = bias[4 * g + 1];
                        s2 = bias[4 * g + 2];
                        s3 = bias[4 * g + 3];
                    }
                    const int8_t *xr = xbase + 4 * g;
                    const uint32_t *wr = wbase + 2 * g * taps;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int8_t *xp = xr;
                        const uint32_t *wpp = wr;
                        for (int32_t n = nfx; n > 0; n--) {
                            const uint32_t X = mcu_read_u32(xp);
                            const uint32_t xe = __sxtab16(off2, X);
                            const uint32_t xo = mcu_sxtab16_ror8(off2, X);
                            const uint32_t we = wpp[0], wo = wpp[1];
                            xp += xstep;
                            wpp += 2;
                            s0 = __smlabb(xe, we, s0);
                            s2 = __smlatt(xe, we, s2);
                            s1 = __smlabb(xo, wo, s1);
                            s3 = __smlatt(xo, wo, s3);
                        }
                        xr += dh * in_w * C;
                        wr += 2 * f_w;
                    }
                    int8_t *o = output + 4 * g;
                    const mcu_requant_t *t = rq + 4 * g;
                    o[0] = mcu_clamp8(mcu_rqt_apply(s0, t + 0, out_off), act_min, act_max);
                    o[1] = mcu_clamp8(mcu_rqt_apply(s1, t + 1, out_off), act_min, act_max);
                    o[2] = mcu_clamp8(mcu_rqt_apply(s2, t + 2, out_off), act_min, act_max);
                    o[3] = mcu_clamp8(mcu_rqt_apply(s3, t + 3, out_off), act_min, act_max);
                }
                for (int32_t c = C4; c < C; c++) {
                    /* starts at the bias: modulo 2^32 as TFLM's int32 (mcu_add_wrap) */
                    uint32_t s = bias ? (uint32_t)bias[c] : 0u;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int32_t iy = iy0 + dh * fy;
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int32_t ix = ix0 + dw * fx;
                            s += (uint32_t)((int32_t)filter[(fy * f_w + fx) * C + c] *
                                            ((int32_t)in_b[(iy * in_w + ix) * C + c] + in_off));
                        }
                    }
                    output[c] = mcu_clamp8(mcu_rqt_apply((int32_t)s, rq + c, out_off), act_min,
                                           act_max);
                }
                output += C;
            }
        }
    }
}

static void dw_pre_dsp(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                       const mcu_dims_t *input_dims, const int8_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter, const void *packed,
                       const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output,
                       void *scratch)
{
    char *s = (char *)scratch;
    if (dw3x3_ok(p, filter_dims)) { /* without packed: expanded chunk by chunk */
        dw3x3_dsp(p, rq, input_dims, input, (const uint32_t *)packed, filter, bias, output_dims,
                  output, (int16_t *)(void *)s);
        return;
    }
    if (!packed) {
        mcu_dw_conv2d_s8_pack(p, filter_dims, filter, s);
        packed = s;
    }
    dw_generic_dsp(p, rq, input_dims, input, filter_dims, filter, (const uint32_t *)packed,
                       bias, output_dims, output);
}

void mcu_dw_conv2d_s8_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int8_t *filter,
                          const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output,
                          void *scratch)
{
    if (p->depth_multiplier != 1 ||
        (dw3x3_ok(p, filter_dims) &&
         dw3x3_wp(p, input_dims->w, output_dims->w) > input_dims->w + 8)) {
        mcu_dw_conv2d_s8_portable(p, q, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
        return;
    }
    const int32_t C = filter_dims->c;
    mcu_requant_t *rq = (mcu_requant_t *)scratch;
    mcu_requant_prepare(rq, C, q->multiplier, q->shift, 1, p->output_offset);
    dw_pre_dsp(p, rq, input_dims, input, filter_dims, filter, 0, bias, output_dims, output,
               rq + C);
}
#endif

void mcu_dw_conv2d_s8_pre(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_requant_t *rq, const mcu_dims_t *input_dims,
                          const int8_t *input, const mcu_dims_t *filter_dims,
                          const int8_t *filter, const void *packed, const int32_t *bias,
                          const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
#if MCU_HAVE_DSP
    if (p->depth_multiplier == 1) {
        dw_pre_dsp(p, rq, input_dims, input, filter_dims, filter, packed, bias, output_dims,
                   output, scratch);
        return;
    }
#endif
    (void)q;
    (void)packed;
    (void)scratch;
    dw_portable(p, rq, 0, 0, 0, input_dims, input,
                filter_dims, filter, bias, output_dims, output);
}

/* ---- direct path (DSP builds that are not patchable) ------------------------
 * depth_multiplier 1, dilation 1, C % 4 == 0; any kernel size, stride and padding.
 * Filter packed at build time (mcu_dw_conv2d_s8_pack_direct; exactly the int8
 * filter's size): per group of four channels one word per tap (the four channels'
 * weights), taps column by column (kx outer, ky inner). Bias folded: bias[c] +
 * input_offset * (sum of channel c's taps), mod 2^32 as TFLM's int32 sums, so the
 * kernel multiplies raw input bytes; a padded tap reads the input zero point, whose
 * product cancels its share of the fold (TFLM skips it: the same sum).
 * Per output row, run of up to MCU_DWD_PX pixels and group of four channels, the
 * input columns the run reads are gathered into scratch (column j: kh words, zero
 * point words outside the image); then per pixel its kh * kw taps are contiguous
 * there and in the packed filter (mcu_dwd_px in mcu_mm_arm.S: LDR + two SXTB16 for
 * the weights and for the input, four SMLABB/SMLATT per tap, requantized in the
 * store). No per-call set-up: the same cost per row when the planner calls it row
 * by row (row-delayed in place). */
#define MCU_DWD_PX 16

/* The direct form where it applies, except 3x3 stride 1 with rows of 16 pixels or
 * more: there the int16 channel planes of the 3x3 path (two taps per SMLAD) win
 * (32x32x16: 424 k vs 630 k instructions; 25x5x64 called row by row: 388 k vs 365 k). */
int32_t mcu_dw_conv2d_s8_direct_ok(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                                   const mcu_dims_t *output_dims)
{
    if (dw3x3_ok(p, filter_dims) && p->stride_w == 1 && output_dims->w >= 16) return 0;
    return p->depth_multiplier == 1 && p->dilation_h == 1 && p->dilation_w == 1 &&
           filter_dims->c > 0 && (filter_dims->c & 3) == 0;
}

int32_t mcu_dw_conv2d_s8_direct_scratch_size(const mcu_dw_conv_params_t *p,
                                             const mcu_dims_t *filter_dims,
                                             const mcu_dims_t *output_dims)
{
    const int32_t npx = output_dims->w < MCU_DWD_PX ? output_dims->w : MCU_DWD_PX;
    return ((npx - 1) * p->stride_w + filter_dims->w) * filter_dims->h * 4;
}

void mcu_dw_conv2d_s8_pack_direct(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                                  const int8_t *filter, const int32_t *bias, int8_t *wp,
                                  int32_t *bp)
{
    const int32_t C = filter_dims->c, kh = filter_dims->h, kw = filter_dims->w;
    for (int32_t c = 0; c < C; c++) {
        uint32_t s = bias ? (uint32_t)bias[c] : 0u;
        for (int32_t t = 0; t < kh * kw; t++)
            s += (uint32_t)((int32_t)filter[t * C + c] * p->input_offset);
        bp[c] = (int32_t)s;
    }
    for (int32_t g = 0; g < C; g += 4)
        for (int32_t kx = 0; kx < kw; kx++)
            for (int32_t ky = 0; ky < kh; ky++)
                for (int32_t j = 0; j < 4; j++) *wp++ = filter[(ky * kw + kx) * C + g + j];
}

#if MCU_HAVE_DSP
/* npx pixels of one group: pixel i's taps at buf + i * step bytes (taps words), the
 * group's packed weights at w; sums from bias[0..3], requantized with rq[0..3] and
 * clamped to [lo, hi], stored to out + i * C. The C form of mcu_dwd_px (which needs
 * the full range and the fast form of every entry). */
MCU_NOINLINE static int8_t dwd_rq(int32_t s, const mcu_requant_t *t, int32_t out_off,
                                  int32_t lo, int32_t hi)
{
    return mcu_clamp8(mcu_rqt_apply(s, t, out_off), lo, hi);
}

MCU_NOINLINE static void dwd_px_c(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npx,
                     int32_t step, int8_t *out, int32_t C, const int32_t *bias,
                     const mcu_requant_t *rq, int32_t out_off, int32_t lo, int32_t hi)
{
    for (; npx > 0; npx--, buf += step / 4, out += C) {
        int32_t s0 = bias[0], s1 = bias[1], s2 = bias[2], s3 = bias[3];
        for (int32_t t = 0; t < taps; t++) {
            const uint32_t W = w[t], X = buf[t];
            const uint32_t we = __sxtb16(W), wo = mcu_sxtb16_ror8(W);
            const uint32_t xe = __sxtb16(X), xo = mcu_sxtb16_ror8(X);
            s0 = __smlabb(we, xe, s0);
            s2 = __smlatt(we, xe, s2);
            s1 = __smlabb(wo, xo, s1);
            s3 = __smlatt(wo, xo, s3);
        }
        out[0] = dwd_rq(s0, rq + 0, out_off, lo, hi);
        out[1] = dwd_rq(s1, rq + 1, out_off, lo, hi);
        out[2] = dwd_rq(s2, rq + 2, out_off, lo, hi);
        out[3] = dwd_rq(s3, rq + 3, out_off, lo, hi);
    }
}

#if defined(MCU_EMULATE_DSP)
static void mcu_dwd_px(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npx,
                       int32_t step, int8_t *out, int32_t C, const int32_t *bias,
                       const mcu_requant_t *rq)
{
    dwd_px_c(buf, w, taps, npx, step, out, C, bias, rq, 0, -128, 127);
}
static void mcu_dwd_px2_s1(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npairs,
                           int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq)
{
    dwd_px_c(buf, w, taps, 2 * npairs, 12, out, C, bias, rq, 0, -128, 127);
}
static void mcu_dwd_px2_s2(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npairs,
                           int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq)
{
    dwd_px_c(buf, w, taps, 2 * npairs, 24, out, C, bias, rq, 0, -128, 127);
}
#else
void mcu_dwd_px(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npx, int32_t step,
                int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq);
void mcu_dwd_px2_s1(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npairs,
                    int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq);
void mcu_dwd_px2_s2(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npairs,
                    int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq);
#endif

typedef void (*dwd_px2_fn)(const uint32_t *, const uint32_t *, int32_t, int32_t, int8_t *,
                           int32_t, const int32_t *, const mcu_requant_t *);

/* px2: the two-pixel kernel for this stride (kh == 3), or NULL */
MCU_NOINLINE static void dwd_run(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                                 const mcu_dims_t *input_dims, const int8_t *input,
                                 const mcu_dims_t *filter_dims, const void *wp,
                                 const int32_t *bp, const mcu_dims_t *output_dims,
                                 int8_t *output, void *scratch, dwd_px2_fn px2)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t kh = filter_dims->h, kw = filter_dims->w, taps = kh * kw;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    const int32_t rs = in_w * C; /* bytes per input row */
    const uint32_t zp4 = (uint32_t)(uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    const int fast = p->act_min == -128 && p->act_max == 127 && mcu_rqt_all_fast(rq, C);
    uint32_t *buf = (uint32_t *)scratch;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * rs;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * sh - p->pad_h;
            const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
            const int32_t ky1 = in_h - iy0 < kh ? in_h - iy0 : kh;
            for (int32_t ox0 = 0; ox0 < out_w; ox0 += MCU_DWD_PX) {
                const int32_t npx = out_w - ox0 < MCU_DWD_PX ? out_w - ox0 : MCU_DWD_PX;
                const int32_t ncols = (npx - 1) * sw + kw, ix0 = ox0 * sw - p->pad_w;
                /* columns [j0, j1) and rows [ky0, ky1) are inside the image: the rest of
                 * the buffer holds the zero point for every group */
                const int32_t j0 = ix0 < 0 ? -ix0 : 0;
                const int32_t j1 = in_w - ix0 < ncols ? in_w - ix0 : ncols;
                if (j0 > 0 || j1 < ncols || ky0 > 0 || ky1 < kh)
                    for (int32_t i = 0; i < ncols * kh; i++) buf[i] = zp4;
                int8_t *o = output + ((b * out_h + oy) * out_w + ox0) * C;
                for (int32_t g = 0; g < C; g += 4, o += 4) {
                    const int8_t *row = in_b + (iy0 + ky0) * rs + (ix0 + j0) * C + g;
                    for (int32_t ky = ky0; ky < ky1; ky++, row += rs) {
                        const int8_t *src = row;
                        uint32_t *d = buf + j0 * kh + ky;
                        for (int32_t j = j1 - j0; j > 0; j--, src += C, d += kh)
                            *d = mcu_read_u32(src);
                    }
                    const uint32_t *w = (const uint32_t *)wp + (g >> 2) * taps;
                    if (fast && px2) {
                        const int32_t np = npx >> 1;
                        px2(buf, w, taps, np, o, C, bp + g, rq + g);
                        if (npx & 1)
                            mcu_dwd_px(buf + 2 * np * sw * 3, w, taps, 1, 0, o + 2 * np * C, C,
                                       bp + g, rq + g);
                    } else if (fast)
                        mcu_dwd_px(buf, w, taps, npx, sw * kh * 4, o, C, bp + g, rq + g);
                    else
                        dwd_px_c(buf, w, taps, npx, sw * kh * 4, o, C, bp + g, rq + g,
                                 p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* stride 1 or any other (the two-pixel kernel only at stride 1), and stride 2: two
 * entries so that a firmware links only the two-pixel kernels its layers use */
void mcu_dw_conv2d_s8_direct(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                             const mcu_dims_t *input_dims, const int8_t *input,
                             const mcu_dims_t *filter_dims, const void *wp, const int32_t *bp,
                             const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    dwd_run(p, rq, input_dims, input, filter_dims, wp, bp, output_dims, output, scratch,
            filter_dims->h == 3 && p->stride_w == 1 ? mcu_dwd_px2_s1 : 0);
}

void mcu_dw_conv2d_s8_direct_s2(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                                const mcu_dims_t *input_dims, const int8_t *input,
                                const mcu_dims_t *filter_dims, const void *wp, const int32_t *bp,
                                const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    dwd_run(p, rq, input_dims, input, filter_dims, wp, bp, output_dims, output, scratch,
            filter_dims->h == 3 && p->stride_w == 2 ? mcu_dwd_px2_s2 : 0);
}
#endif

void mcu_dw_conv2d_s8(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                      const mcu_dims_t *input_dims, const int8_t *input,
                      const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                      const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
#if MCU_HAVE_DSP
    mcu_dw_conv2d_s8_dsp(p, q, input_dims, input, filter_dims, filter, bias, output_dims, output,
                         scratch);
#else
    (void)scratch;
    mcu_dw_conv2d_s8_portable(p, q, input_dims, input, filter_dims, filter, bias, output_dims,
                              output);
#endif
}

/* CONV_2D int8 (TFLM reference_integer_ops::ConvPerChannel, bit-exact). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* Requantization: a prepared table rq (the _pre entry points without DSP), or else
 * mult/shift of output channel oc at byte offset oc * qstride (4: the
 * mcu_per_channel_quant_t arrays). Inlined per call site, so the test folds away. */
MCU_INLINE void conv_portable(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                          const int32_t *mult, const int32_t *shift,
                          int32_t qstride, const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int8_t *filter,
                          const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t in_off = p->input_offset;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < out_c; oc++) {
                    const int8_t *f = filter + oc * f_h * f_w * in_c;
                    int32_t acc = 0;
                    for (int32_t fy = 0; fy < f_h; fy++) {
                        const int32_t iy = iy0 + p->dilation_h * fy;
                        if (iy < 0 || iy >= in_h) continue;
                        for (int32_t fx = 0; fx < f_w; fx++) {
                            const int32_t ix = ix0 + p->dilation_w * fx;
                            if (ix < 0 || ix >= in_w) continue;
                            const int8_t *x = in_b + (iy * in_w + ix) * in_c;
                            const int8_t *w = f + (fy * f_w + fx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ic++)
                                acc += (int32_t)w[ic] * ((int32_t)x[ic] + in_off);
                        }
                    }
                    if (bias) acc = mcu_add_wrap(acc, bias[oc]); /* TFLM's wrap-around */
                    *output++ = rq ? mcu_clamp8(mcu_rqt_apply(acc, rq + oc, p->output_offset),
                                                p->act_min, p->act_max)
                                   : mcu_requant_clamp(acc, MCU_QAT(mult, oc, qstride),
                                                       MCU_QAT(shift, oc, qstride),
                                                       p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_conv2d_s8_portable(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                            const mcu_dims_t *input_dims, const int8_t *input,
                            const mcu_dims_t *filter_dims, const int8_t *filter,
                            const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output)
{
    conv_portable(p, 0, q->multiplier, q->shift, 4, input_dims, input, filter_dims, filter, bias,
                  output_dims, output);
}

/* DSP scratch layout (bytes, all word aligned), the larger of
 *   four-pixel path (K % 4 == 0): cols: K/4 groups x 16 int16 (four im2col columns
 *         interleaved per group of four k, MCU_PERM4 order), requantized in the
 *         assembly store (no sums in memory);
 *   two-pixel path (the rest): cols: K4/4 groups x 8 int16 (two columns), then
 *         2 x 4 int16 for the K % 4 tails; acc: 2 * out_c int32 raw sums
 *         (acc[2*oc + column]);
 * and for the legacy entry (mcu_conv2d_s8_dsp) first out_c mcu_requant_t. */
int32_t mcu_conv2d_s8_pre_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    const int32_t K = filter_dims->h * filter_dims->w * input_dims->c;
    const int32_t out_c = filter_dims->n;
    const int32_t two = (2 * (K & ~3) + 8) * (int32_t)sizeof(int16_t) +
                        2 * (out_c + 1) * (int32_t)sizeof(int32_t);
    const int32_t four = (K & 3) ? 0 : 4 * K * (int32_t)sizeof(int16_t);
    /* in_c % 4 != 0: the patch as K bytes after the columns (im2col_s8_s16) */
    const int32_t lin = (input_dims->c & 3) ? (K + 3) & ~3 : 0;
    return (two > four ? two : four) + lin;
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

/* four-pixel entry: the columns (six pixels: 12K bytes) and the gathered patch
 * (in_c % 4 != 0) */
int32_t mcu_conv2d_s8_pre4_scratch_size(const mcu_dims_t *input_dims,
                                        const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    const int32_t K = filter_dims->h * filter_dims->w * input_dims->c;
    const int32_t lin = (input_dims->c & 3) ? (K + 3) & ~3 : 0;
    return 12 * K + lin;
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

int32_t mcu_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    return filter_dims->n * (int32_t)sizeof(mcu_requant_t) +
           mcu_conv2d_s8_pre_scratch_size(input_dims, filter_dims);
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

#if MCU_HAVE_DSP

#if defined(MCU_EMULATE_DSP)
/* C model of mcu_mm_arm.S (host tests of the DSP path). */
static void mcu_mm_s8s16_2col(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_pairs,
                              int32_t *acc)
{
    for (int32_t p = 0; p < n_pairs; p++) {
        const int8_t *w0 = w + 2 * p * K, *w1 = w0 + K;
        const uint32_t *a = (const uint32_t *)cols;
        int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        for (int32_t k = 0; k + 4 <= K; k += 4) {
            const uint32_t W0 = mcu_read_u32(w0 + k), W1 = mcu_read_u32(w1 + k);
            s00 = __smlad(__sxtb16(W0), a[0], s00);
            s00 = __smlad(mcu_sxtb16_ror8(W0), a[1], s00);
            s01 = __smlad(__sxtb16(W0), a[2], s01);
            s01 = __smlad(mcu_sxtb16_ror8(W0), a[3], s01);
            s10 = __smlad(__sxtb16(W1), a[0], s10);
            s10 = __smlad(mcu_sxtb16_ror8(W1), a[1], s10);
            s11 = __smlad(__sxtb16(W1), a[2], s11);
            s11 = __smlad(mcu_sxtb16_ror8(W1), a[3], s11);
            a += 4;
        }
        acc[4 * p + 0] = s00;
        acc[4 * p + 1] = s01;
        acc[4 * p + 2] = s10;
        acc[4 * p + 3] = s11;
    }
}
/* C model of mcu_conv_s8s16_4px (mcu_mm_arm.S) */
static void mcu_conv_s8s16_4px(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_rows,
                               const int32_t *bias, const mcu_requant_t *rq, int8_t *out,
                               int32_t C)
{
    for (int32_t r = 0; r < n_rows; r++, w += K, rq++) {
        const uint32_t *a = (const uint32_t *)(const void *)cols;
        int32_t s[4] = {bias[r], bias[r], bias[r], bias[r]};
        for (int32_t k = 0; k < K; k += 4, a += 8) {
            const uint32_t W = mcu_read_u32(w + k);
            const uint32_t we = __sxtb16(W), wo = mcu_sxtb16_ror8(W);
            for (int j = 0; j < 4; j++) {
                s[j] = __smlad(we, a[2 * j], s[j]);
                s[j] = __smlad(wo, a[2 * j + 1], s[j]);
            }
        }
        for (int j = 0; j < 4; j++)
            out[j * C + r] =
                (int8_t)mcu_ssat8(mcu_rqt_fast(s[j], rq->mult, rq->rlo, rq->rhi, rq->sh));
    }
}
/* C model of mcu_conv_s8s16_6px (mcu_mm_arm.S) */
static void mcu_conv_s8s16_6px(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_rows,
                               const int32_t *bias, const mcu_requant_t *rq, int8_t *out,
                               int32_t C)
{
    for (int32_t r = 0; r < n_rows; r++, w += K, rq++) {
        const uint32_t *a = (const uint32_t *)(const void *)cols;
        int32_t s[6];
        for (int j = 0; j < 6; j++) s[j] = bias[r];
        for (int32_t k = 0; k < K; k += 4, a += 12) {
            const uint32_t W = mcu_read_u32(w + k);
            const uint32_t we = __sxtb16(W), wo = mcu_sxtb16_ror8(W);
            for (int j = 0; j < 6; j++) {
                s[j] = __smlad(we, a[2 * j], s[j]);
                s[j] = __smlad(wo, a[2 * j + 1], s[j]);
            }
        }
        for (int j = 0; j < 6; j++)
            out[j * C + r] =
                (int8_t)mcu_ssat8(mcu_rqt_fast(s[j], rq->mult, rq->rlo, rq->rhi, rq->sh));
    }
}
#else
void mcu_mm_s8s16_2col(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_pairs,
                       int32_t *acc);
void mcu_conv_s8s16_4px(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_rows,
                        const int32_t *bias, const mcu_requant_t *rq, int8_t *out, int32_t C);
void mcu_conv_s8s16_6px(const int8_t *w, const int16_t *cols, int32_t K, int32_t n_rows,
                        const int32_t *bias, const mcu_requant_t *rq, int8_t *out, int32_t C);
#endif

/* im2col of one output pixel into column `col` (< ncols, 2, 4 or 6) of the interleaved
 * buffer: input + offset as int16, 0 in the padding (K % 4 tails: ncols == 2 only). */
static void im2col_s8_s16(const mcu_conv_params_t *p, const int8_t *in_b, int32_t in_h,
                          int32_t in_w, int32_t in_c, int32_t f_h, int32_t f_w, int32_t iy0,
                          int32_t ix0, int16_t *buf, int32_t col, int32_t ncols)
{
    const int32_t gstep = 2 * ncols; /* words per group of four k */
    const int32_t K = f_h * f_w * in_c;
    const int32_t K4 = K & ~3;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->input_offset) * 0x10001u;
    if ((in_c & 3) == 0) {
        uint32_t *dst = (uint32_t *)buf + 2 * col;
        for (int32_t fy = 0; fy < f_h; fy++) {
            const int32_t iy = iy0 + p->dilation_h * fy;
            for (int32_t fx = 0; fx < f_w; fx++) {
                const int32_t ix = ix0 + p->dilation_w * fx;
                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                    for (int32_t i = 0; i < in_c; i += 4) {
                        dst[0] = 0;
                        dst[1] = 0;
                        dst += gstep;
                    }
                } else {
                    const int8_t *x = in_b + (iy * in_w + ix) * in_c;
                    for (int32_t i = 0; i < in_c; i += 4) {
                        const uint32_t v = mcu_read_u32(x + i);
                        dst[0] = __sxtab16(off2, v);
                        dst[1] = mcu_sxtab16_ror8(off2, v);
                        dst += gstep;
                    }
                }
            }
        }
        return;
    }
    /* in_c % 4 != 0: gather the patch as K contiguous bytes (the padding as the
     * input zero point, so that it expands to 0), then expand four k at a time */
    int8_t *lin = (int8_t *)(void *)(buf + (ncols >= 4 ? ncols * K4 : 2 * K4 + 8));
    const int8_t padv = (int8_t)(-p->input_offset);
    const int32_t rowb = f_w * in_c;
    int8_t *d = lin;
    for (int32_t fy = 0; fy < f_h; fy++, d += rowb) {
        const int32_t iy = iy0 + p->dilation_h * fy;
        if (iy < 0 || iy >= in_h) {
            for (int32_t i = 0; i < rowb; i++) d[i] = padv;
        } else if (p->dilation_w == 1 && ix0 >= 0 && ix0 + f_w <= in_w) {
            const int8_t *x = in_b + (iy * in_w + ix0) * in_c;
            for (int32_t i = 0; i < rowb; i++) d[i] = x[i];
        } else {
            for (int32_t fx = 0; fx < f_w; fx++) {
                const int32_t ix = ix0 + p->dilation_w * fx;
                int8_t *dd = d + fx * in_c;
                if (ix < 0 || ix >= in_w) {
                    for (int32_t i = 0; i < in_c; i++) dd[i] = padv;
                } else {
                    const int8_t *x = in_b + (iy * in_w + ix) * in_c;
                    for (int32_t i = 0; i < in_c; i++) dd[i] = x[i];
                }
            }
        }
    }
    uint32_t *dst = (uint32_t *)buf + 2 * col;
    for (int32_t k = 0; k < K4; k += 4, dst += gstep) {
        const uint32_t v = mcu_read_u32(lin + k);
        dst[0] = __sxtab16(off2, v);
        dst[1] = mcu_sxtab16_ror8(off2, v);
    }
    int16_t *tail = buf + 2 * K4 + 4 * col;
    for (int32_t k = K4; k < K; k++) tail[k - K4] = (int16_t)(lin[k] + p->input_offset);
}

/* requantize the raw sums acc[2*oc + col] of one or two output pixels
 * (o1 == NULL: one) */
MCU_NOINLINE static void conv_store(const int32_t *acc, int32_t out_c,
                                                 const int32_t *bias, const mcu_requant_t *rq,
                                                 int8_t *o0, int8_t *o1, int32_t out_off,
                                                 int32_t act_min, int32_t act_max)
{
    const int full = act_min == -128 && act_max == 127;
    int8_t *o1w = o1 ? o1 : o0; /* one pixel: column 1 written to o0 first, then column 0 */
    for (int32_t oc = 0; oc < out_c; oc++, rq++, acc += 2) {
        const int32_t b = bias ? bias[oc] : 0;
        int32_t v0, v1;
        if (rq->sh >= 0) {
            v0 = mcu_rqt_fast(mcu_add_wrap(acc[0], b), rq->mult, rq->rlo, rq->rhi, rq->sh);
            v1 = mcu_rqt_fast(mcu_add_wrap(acc[1], b), rq->mult, rq->rlo, rq->rhi, rq->sh);
        } else {
            v0 = mcu_requantize(mcu_add_wrap(acc[0], b), rq->mult, rq->rhi) + out_off;
            v1 = mcu_requantize(mcu_add_wrap(acc[1], b), rq->mult, rq->rhi) + out_off;
        }
        if (full) {
            o1w[oc] = (int8_t)mcu_ssat8(v1);
            o0[oc] = (int8_t)mcu_ssat8(v0);
        } else {
            o1w[oc] = mcu_clamp8(v1, act_min, act_max);
            o0[oc] = mcu_clamp8(v0, act_min, act_max);
        }
    }
}

static void conv_pre_dsp(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                         const mcu_dims_t *input_dims, const int8_t *input,
                         const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                         const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t K = f_h * f_w * in_c;
    const int32_t K4 = K & ~3;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    int16_t *cols = (int16_t *)scratch;
    int32_t *acc = (int32_t *)(void *)(cols + 2 * K4 + 8);
    const int32_t n_pix = out_h * out_w;
    const int32_t n_pairs = out_c >> 1;
    const int use_asm = bias && act_min == -128 && act_max == 127 && mcu_rqt_all_fast(rq, out_c);
    const int use4 = use_asm && (K & 3) == 0;

    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        int8_t *out_b = output + b * n_pix * out_c;
        int32_t oy = 0, ox = 0, pix = 0;
        if (use4) /* four pixels per pass, requantized in the assembly store */
            for (; pix + 4 <= n_pix; pix += 4) {
                for (int32_t j = 0; j < 4; j++) {
                    im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w,
                                  oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w,
                                  cols, j, 4);
                    if (++ox == out_w) {
                        ox = 0;
                        oy++;
                    }
                }
                mcu_conv_s8s16_4px(filter, cols, K, out_c, bias, rq, out_b + pix * out_c,
                                   out_c);
            }
        for (; pix < n_pix; pix += 2) {
            const int two = pix + 1 < n_pix;
            im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                          ox * p->stride_w - p->pad_w, cols, 0, 2);
            if (++ox == out_w) {
                ox = 0;
                oy++;
            }
            if (two) {
                im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w,
                              oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w, cols,
                              1, 2);
                if (++ox == out_w) {
                    ox = 0;
                    oy++;
                }
            }
            /* raw sums over k < K4 for all channel pairs */
            mcu_mm_s8s16_2col(filter, cols, K, n_pairs, acc);
            if (out_c & 1) { /* last channel */
                const int8_t *w0 = filter + (out_c - 1) * K;
                const uint32_t *a = (const uint32_t *)cols;
                int32_t s0 = 0, s1 = 0;
                for (int32_t k = 0; k < K4; k += 4) {
                    const uint32_t W = mcu_read_u32(w0 + k);
                    const uint32_t we = __sxtb16(W), wo = mcu_sxtb16_ror8(W);
                    s0 = __smlad(we, a[0], s0);
                    s0 = __smlad(wo, a[1], s0);
                    s1 = __smlad(we, a[2], s1);
                    s1 = __smlad(wo, a[3], s1);
                    a += 4;
                }
                acc[2 * (out_c - 1)] = s0;
                acc[2 * (out_c - 1) + 1] = s1;
            }
            if (K4 != K) { /* K % 4 tail */
                const int16_t *t0 = cols + 2 * K4, *t1 = t0 + 4;
                for (int32_t oc = 0; oc < out_c; oc++) {
                    const int8_t *w = filter + oc * K + K4;
                    int32_t s0 = 0, s1 = 0;
                    for (int32_t k = 0; k < K - K4; k++) {
                        s0 += w[k] * t0[k];
                        s1 += w[k] * t1[k];
                    }
                    acc[2 * oc] += s0;
                    acc[2 * oc + 1] += s1;
                }
            }
            int8_t *o0 = out_b + pix * out_c;
            if (use_asm && two)
                mcu_rq_store2(acc, out_c, bias, rq, o0, o0 + out_c);
            else
                conv_store(acc, out_c, bias, rq, o0, two ? o0 + out_c : 0, out_off, act_min,
                           act_max);
        }
    }
}

void mcu_conv2d_s8_dsp(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_dims_t *input_dims, const int8_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    const int32_t out_c = output_dims->c;
    mcu_requant_t *rq = (mcu_requant_t *)scratch;
    mcu_requant_prepare(rq, out_c, q->multiplier, q->shift, 1, p->output_offset);
    conv_pre_dsp(p, rq, input_dims, input, filter_dims, filter, bias, output_dims, output,
                 rq + out_c);
}
#endif /* MCU_HAVE_DSP */

void mcu_conv2d_s8_pre(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_requant_t *rq, const mcu_dims_t *input_dims, const int8_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
#if MCU_HAVE_DSP
    (void)q;
    conv_pre_dsp(p, rq, input_dims, input, filter_dims, filter, bias, output_dims, output,
                 scratch);
#else
    (void)q;
    (void)scratch;
    conv_portable(p, rq, 0, 0, 0, input_dims, input,
                  filter_dims, filter, bias, output_dims, output);
#endif
}

/* Only the four-pixel path (its preconditions hold at build time: K % 4 == 0, bias,
 * the full int8 range, every table entry in the fast form), so a firmware whose
 * convolutions all qualify links neither the two-pixel kernel nor its stores. The
 * last 1-2 pixels: one column each (mcu_fc_s8s16_4row); the last 3: the last four
 * pixels again (one recomputed and stored twice, the same bytes), or with only three
 * pixels in all the last one repeated, 64 channels at a time through a stack buffer.
 * Before those, six pixels per filter pass (mcu_conv_s8s16_6px, 12 instructions per
 * 16 MACs): the columns then take 12 K bytes of scratch. */
#define MCU_CONV4_TMP 64

#if MCU_HAVE_DSP
/* one pixel (column 0 of a one-column im2col, K % 4 == 0) for every output channel
 * (out_c >= 4): four filter rows per mcu_fc_s8s16_4row call, requantized here */
MCU_NOINLINE static void conv_col1(const int8_t *filter, const int16_t *col, int32_t K,
                                   int32_t out_c, const int32_t *bias,
                                   const mcu_requant_t *rq, int8_t *o)
{
    int32_t acc[4];
    for (int32_t r = 0; r < out_c; r += 4) {
        if (r > out_c - 4) r = out_c - 4; /* the last out_c % 4 channels: last four rows again */
        mcu_fc_s8s16_4row(filter + r * K, col, K, K >> 2, 1, acc, bias + r);
        for (int32_t i = 0; i < 4; i++)
            o[r + i] = (int8_t)mcu_ssat8(mcu_rqt_fast(acc[i], rq[r + i].mult, rq[r + i].rlo,
                                                      rq[r + i].rhi, rq[r + i].sh));
    }
}
#endif
void mcu_conv2d_s8_pre4(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                        const mcu_requant_t *rq, const mcu_dims_t *input_dims,
                        const int8_t *input, const mcu_dims_t *filter_dims,
                        const int8_t *filter, const int32_t *bias,
                        const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    (void)q;
#if MCU_HAVE_DSP
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t K = f_h * f_w * in_c;
    const int32_t n_pix = output_dims->h * out_w;
    int16_t *cols = (int16_t *)scratch;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        int8_t *out_b = output + b * n_pix * out_c;
        int32_t pix = 0;
        for (; pix + 6 <= n_pix; pix += 6) { /* six pixels per filter pass */
            for (int32_t j = 0; j < 6; j++) {
                const int32_t t = pix + j, oy = t / out_w, ox = t - oy * out_w;
                im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                              ox * p->stride_w - p->pad_w, cols, j, 6);
            }
            mcu_conv_s8s16_6px(filter, cols, K, out_c, bias, rq, out_b + pix * out_c, out_c);
        }
        for (; pix < n_pix; pix += 4) {
            int32_t p0 = pix, n = 4;
            if (pix + 4 > n_pix) {
                n = n_pix - pix;
                if (n_pix >= 4 && n == 3) { /* the last four again */
                    p0 = n_pix - 4;
                    n = 4;
                }
            }
            /* 1-2 last pixels: one column each (22/16 MACs, not 13/16 for four columns) */
            if (n < 3 && out_c >= 4) {
                for (int32_t j = 0; j < n; j++) {
                    const int32_t t = pix + j, oy = t / out_w, ox = t - oy * out_w;
                    im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w,
                                  oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w, cols,
                                  0, 1);
                    conv_col1(filter, cols, K, out_c, bias, rq, out_b + t * out_c);
                }
                break;
            }
            for (int32_t j = 0; j < 4; j++) {
                const int32_t t = p0 + (j < n ? j : n - 1), oy = t / out_w, ox = t - oy * out_w;
                im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                              ox * p->stride_w - p->pad_w, cols, j, 4);
            }
            int8_t *o = out_b + p0 * out_c;
            if (n == 4) {
                mcu_conv_s8s16_4px(filter, cols, K, out_c, bias, rq, o, out_c);
                continue;
            }
            for (int32_t r0 = 0; r0 < out_c; r0 += MCU_CONV4_TMP) {
                int8_t tmp[4 * MCU_CONV4_TMP];
                const int32_t nr = out_c - r0 < MCU_CONV4_TMP ? out_c - r0 : MCU_CONV4_TMP;
                mcu_conv_s8s16_4px(filter + r0 * K, cols, K, nr, bias + r0, rq + r0, tmp, nr);
                for (int32_t j = 0; j < n; j++)
                    for (int32_t i = 0; i < nr; i++) o[j * out_c + r0 + i] = tmp[j * nr + i];
            }
        }
    }
#else
    (void)scratch;
    conv_portable(p, rq, 0, 0, 0, input_dims, input, filter_dims, filter, bias, output_dims,
                  output);
#endif
}

void mcu_conv2d_s8(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                   const mcu_dims_t *input_dims, const int8_t *input,
                   const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                   const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
#if MCU_HAVE_DSP
    mcu_conv2d_s8_dsp(p, q, input_dims, input, filter_dims, filter, bias, output_dims, output,
                      scratch);
#else
    (void)scratch;
    mcu_conv2d_s8_portable(p, q, input_dims, input, filter_dims, filter, bias, output_dims,
                           output);
#endif
}

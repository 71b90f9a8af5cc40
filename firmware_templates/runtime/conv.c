/* CONV_2D int8 (TFLM reference_integer_ops::ConvPerChannel, bit-exact). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_conv2d_s8_portable(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                            const mcu_dims_t *input_dims, const int8_t *input,
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
                    if (bias) acc += bias[oc];
                    *output++ = mcu_requant_clamp(acc, q->multiplier[oc], q->shift[oc],
                                                  p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

int32_t mcu_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    const int32_t K = filter_dims->h * filter_dims->w * input_dims->c;
    return 2 * ((K + 1) & ~1) * (int32_t)sizeof(int16_t);
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

#if MCU_HAVE_DSP

/* One im2col column: K = f_h*f_w*in_c int16 values (input + offset, 0 in
 * the padding) in MCU_PERM4 order for k < K & ~3, natural order after. */
static void im2col_s8_s16(const mcu_conv_params_t *p, const int8_t *in_b, int32_t in_h,
                          int32_t in_w, int32_t in_c, int32_t f_h, int32_t f_w, int32_t iy0,
                          int32_t ix0, int16_t *col)
{
    const int32_t K = f_h * f_w * in_c;
    const int32_t K4 = K & ~3;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->input_offset) * 0x10001u;
    if ((in_c & 3) == 0) {
        uint32_t *dst = (uint32_t *)col;
        for (int32_t fy = 0; fy < f_h; fy++) {
            const int32_t iy = iy0 + p->dilation_h * fy;
            for (int32_t fx = 0; fx < f_w; fx++) {
                const int32_t ix = ix0 + p->dilation_w * fx;
                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                    for (int32_t i = 0; i < in_c; i += 4) {
                        dst[0] = 0;
                        dst[1] = 0;
                        dst += 2;
                    }
                } else {
                    const int8_t *x = in_b + (iy * in_w + ix) * in_c;
                    for (int32_t i = 0; i < in_c; i += 4) {
                        const uint32_t v = mcu_read_u32(x + i);
                        dst[0] = __sxtab16(off2, v);
                        dst[1] = mcu_sxtab16_ror8(off2, v);
                        dst += 2;
                    }
                }
            }
        }
        return;
    }
    int32_t k = 0;
    for (int32_t fy = 0; fy < f_h; fy++) {
        const int32_t iy = iy0 + p->dilation_h * fy;
        for (int32_t fx = 0; fx < f_w; fx++) {
            const int32_t ix = ix0 + p->dilation_w * fx;
            const int inside = !(iy < 0 || iy >= in_h || ix < 0 || ix >= in_w);
            const int8_t *x = in_b + (iy * in_w + ix) * in_c;
            for (int32_t i = 0; i < in_c; i++, k++) {
                const int16_t v = inside ? (int16_t)(x[i] + p->input_offset) : 0;
                col[k < K4 ? MCU_PERM4(k) : k] = v;
            }
        }
    }
}

/* out[oc] for two columns; returns via the four accumulators. */
void mcu_conv2d_s8_dsp(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
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
    int16_t *col0 = (int16_t *)scratch;
    int16_t *col1 = col0 + ((K + 1) & ~1); /* word aligned */
    const int32_t n_pix = out_h * out_w;

    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        int8_t *out_b = output + b * n_pix * out_c;
        for (int32_t pix = 0; pix < n_pix; pix += 2) {
            const int two = pix + 1 < n_pix;
            {
                const int32_t oy = pix / out_w, ox = pix - oy * out_w;
                im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                              ox * p->stride_w - p->pad_w, col0);
            }
            if (two) {
                const int32_t oy = (pix + 1) / out_w, ox = (pix + 1) - oy * out_w;
                im2col_s8_s16(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                              ox * p->stride_w - p->pad_w, col1);
            }
            int8_t *o0 = out_b + pix * out_c;
            int8_t *o1 = o0 + out_c;
            int32_t oc = 0;
            if (two) {
                for (; oc + 1 < out_c; oc += 2) {
                    const int8_t *w0 = filter + oc * K;
                    const int8_t *w1 = w0 + K;
                    const uint32_t *a = (const uint32_t *)col0;
                    const uint32_t *c = (const uint32_t *)col1;
                    int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0; /* s[oc][col] */
                    for (int32_t k = 0; k < K4; k += 4) {
                        const uint32_t W0 = mcu_read_u32(w0 + k);
                        const uint32_t W1 = mcu_read_u32(w1 + k);
                        const uint32_t a0 = a[0], a1 = a[1], c0 = c[0], c1 = c[1];
                        a += 2;
                        c += 2;
                        const uint32_t w0e = __sxtb16(W0), w0o = mcu_sxtb16_ror8(W0);
                        const uint32_t w1e = __sxtb16(W1), w1o = mcu_sxtb16_ror8(W1);
                        s00 = __smlad(w0e, a0, s00);
                        s01 = __smlad(w0e, c0, s01);
                        s10 = __smlad(w1e, a0, s10);
                        s11 = __smlad(w1e, c0, s11);
                        s00 = __smlad(w0o, a1, s00);
                        s01 = __smlad(w0o, c1, s01);
                        s10 = __smlad(w1o, a1, s10);
                        s11 = __smlad(w1o, c1, s11);
                    }
                    for (int32_t k = K4; k < K; k++) {
                        s00 += w0[k] * col0[k];
                        s01 += w0[k] * col1[k];
                        s10 += w1[k] * col0[k];
                        s11 += w1[k] * col1[k];
                    }
                    if (bias) {
                        s00 += bias[oc];
                        s01 += bias[oc];
                        s10 += bias[oc + 1];
                        s11 += bias[oc + 1];
                    }
                    const int32_t m0 = q->multiplier[oc], sh0 = q->shift[oc];
                    const int32_t m1 = q->multiplier[oc + 1], sh1 = q->shift[oc + 1];
                    o0[oc] = mcu_requant_clamp(s00, m0, sh0, out_off, act_min, act_max);
                    o1[oc] = mcu_requant_clamp(s01, m0, sh0, out_off, act_min, act_max);
                    o0[oc + 1] = mcu_requant_clamp(s10, m1, sh1, out_off, act_min, act_max);
                    o1[oc + 1] = mcu_requant_clamp(s11, m1, sh1, out_off, act_min, act_max);
                }
            }
            /* remaining output channels (odd count) or single last column */
            for (; oc < out_c; oc++) {
                const int8_t *w0 = filter + oc * K;
                for (int ci = 0; ci < 1 + two; ci++) {
                    const int16_t *cc = ci ? col1 : col0;
                    const uint32_t *a = (const uint32_t *)cc;
                    int32_t s = 0;
                    for (int32_t k = 0; k < K4; k += 4) {
                        const uint32_t W0 = mcu_read_u32(w0 + k);
                        s = __smlad(__sxtb16(W0), a[0], s);
                        s = __smlad(mcu_sxtb16_ror8(W0), a[1], s);
                        a += 2;
                    }
                    for (int32_t k = K4; k < K; k++) s += w0[k] * cc[k];
                    if (bias) s += bias[oc];
                    (ci ? o1 : o0)[oc] = mcu_requant_clamp(s, q->multiplier[oc], q->shift[oc],
                                                           out_off, act_min, act_max);
                }
            }
        }
    }
}
#endif /* MCU_HAVE_DSP */

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

/* DEPTHWISE_CONV_2D int8 (TFLM reference_integer_ops::DepthwiseConvPerChannel). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_dw_conv2d_s8_portable(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                               const mcu_dims_t *input_dims, const int8_t *input,
                               const mcu_dims_t *filter_dims, const int8_t *filter,
                               const int32_t *bias, const mcu_dims_t *output_dims,
                               int8_t *output)
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
                        if (bias) acc += bias[oc];
                        output[oc] = mcu_requant_clamp(acc, q->multiplier[oc], q->shift[oc],
                                                       p->output_offset, p->act_min, p->act_max);
                    }
                }
                output += out_c;
            }
        }
    }
}

/* DSP scratch (depth_multiplier == 1): weights of each group of four
 * channels repacked per tap as two words of int16 ([c0,c2], [c1,c3]), i.e.
 * (C/4) * taps * 8 bytes, then C mcu_rqc_t requantization entries. */
int32_t mcu_dw_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    const int32_t C = filter_dims->c;
    (void)input_dims;
    return (C / 4) * filter_dims->h * filter_dims->w * 8 + C * (int32_t)sizeof(mcu_rqc_t);
#else
    (void)input_dims;
    (void)filter_dims;
    return 0;
#endif
}

#if MCU_HAVE_DSP
/* depth_multiplier == 1: four channels at a time; SXTAB16 adds the input
 * offset while unpacking, SMLABB/SMLATT accumulate per channel. */
void mcu_dw_conv2d_s8_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int8_t *filter,
                          const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output,
                          void *scratch)
{
    if (p->depth_multiplier != 1) {
        mcu_dw_conv2d_s8_portable(p, q, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
        return;
    }
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w, taps = f_h * f_w;
    const int32_t in_off = p->input_offset;
    const uint32_t off2 = ((uint32_t)(uint16_t)in_off) * 0x10001u;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t C4 = C & ~3, G = C >> 2;
    const int32_t dh = p->dilation_h, dw = p->dilation_w;
    uint32_t *wrep = (uint32_t *)scratch;
    mcu_rqc_t *rqc = (mcu_rqc_t *)(void *)(wrep + 2 * G * taps);
    mcu_rqc_build(rqc, C, bias, q->multiplier, q->shift, 1);
    for (int32_t g = 0; g < G; g++)
        for (int32_t t = 0; t < taps; t++) {
            const uint32_t W = mcu_read_u32(filter + t * C + 4 * g);
            wrep[(g * taps + t) * 2] = __sxtb16(W);
            wrep[(g * taps + t) * 2 + 1] = mcu_sxtb16_ror8(W);
        }
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
                const mcu_rqc_t *t = rqc;
                for (int32_t g = 0; g < G; g++) {
                    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    const int8_t *xr = xbase + 4 * g;
                    const uint32_t *wr = wbase + 2 * g * taps;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int8_t *xp = xr;
                        const uint32_t *wp = wr;
                        for (int32_t n = nfx; n > 0; n--) {
                            const uint32_t X = mcu_read_u32(xp);
                            const uint32_t xe = __sxtab16(off2, X);
                            const uint32_t xo = mcu_sxtab16_ror8(off2, X);
                            const uint32_t we = wp[0], wo = wp[1];
                            xp += xstep;
                            wp += 2;
                            s0 = __smlabb(xe, we, s0);
                            s2 = __smlatt(xe, we, s2);
                            s1 = __smlabb(xo, wo, s1);
                            s3 = __smlatt(xo, wo, s3);
                        }
                        xr += dh * in_w * C;
                        wr += 2 * f_w;
                    }
                    int8_t *o = output + 4 * g;
                    o[0] = mcu_clamp8(mcu_rqc_apply(s0, t + 0) + out_off, act_min, act_max);
                    o[1] = mcu_clamp8(mcu_rqc_apply(s1, t + 1) + out_off, act_min, act_max);
                    o[2] = mcu_clamp8(mcu_rqc_apply(s2, t + 2) + out_off, act_min, act_max);
                    o[3] = mcu_clamp8(mcu_rqc_apply(s3, t + 3) + out_off, act_min, act_max);
                    t += 4;
                }
                for (int32_t c = C4; c < C; c++) {
                    int32_t s = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int32_t iy = iy0 + dh * fy;
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int32_t ix = ix0 + dw * fx;
                            s += (int32_t)filter[(fy * f_w + fx) * C + c] *
                                 ((int32_t)in_b[(iy * in_w + ix) * C + c] + in_off);
                        }
                    }
                    output[c] = mcu_clamp8(mcu_rqc_apply(s, rqc + c) + out_off, act_min, act_max);
                }
                output += C;
            }
        }
    }
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

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

int32_t mcu_dw_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims)
{
    (void)input_dims;
    (void)filter_dims;
    return 0;
}

#if MCU_HAVE_DSP
/* depth_multiplier == 1: four channels at a time, SXTAB16 adds the input
 * offset while unpacking, SMLABB/SMLATT accumulate per channel. */
void mcu_dw_conv2d_s8_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int8_t *filter,
                          const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output,
                          void *scratch)
{
    (void)scratch;
    if (p->depth_multiplier != 1) {
        mcu_dw_conv2d_s8_portable(p, q, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
        return;
    }
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t in_off = p->input_offset;
    const uint32_t off2 = ((uint32_t)(uint16_t)in_off) * 0x10001u;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t C4 = C & ~3;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t fy0 = 0, fy1 = f_h;
            /* valid filter rows: iy0 + dil*fy in [0, in_h) */
            while (fy0 < f_h && iy0 + p->dilation_h * fy0 < 0) fy0++;
            while (fy1 > fy0 && iy0 + p->dilation_h * (fy1 - 1) >= in_h) fy1--;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t fx0 = 0, fx1 = f_w;
                while (fx0 < f_w && ix0 + p->dilation_w * fx0 < 0) fx0++;
                while (fx1 > fx0 && ix0 + p->dilation_w * (fx1 - 1) >= in_w) fx1--;
                int32_t c = 0;
                for (; c < C4; c += 4) {
                    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int32_t iy = iy0 + p->dilation_h * fy;
                        const int8_t *xr = in_b + (iy * in_w + ix0) * C + c;
                        const int8_t *wr = filter + fy * f_w * C + c;
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const uint32_t X = mcu_read_u32(xr + p->dilation_w * fx * C);
                            const uint32_t W = mcu_read_u32(wr + fx * C);
                            const uint32_t xe = __sxtab16(off2, X);
                            const uint32_t xo = mcu_sxtab16_ror8(off2, X);
                            const uint32_t we = __sxtb16(W);
                            const uint32_t wo = mcu_sxtb16_ror8(W);
                            s0 = __smlabb(xe, we, s0);
                            s2 = __smlatt(xe, we, s2);
                            s1 = __smlabb(xo, wo, s1);
                            s3 = __smlatt(xo, wo, s3);
                        }
                    }
                    if (bias) {
                        s0 += bias[c];
                        s1 += bias[c + 1];
                        s2 += bias[c + 2];
                        s3 += bias[c + 3];
                    }
                    output[c] = mcu_requant_clamp(s0, q->multiplier[c], q->shift[c], out_off,
                                                  act_min, act_max);
                    output[c + 1] = mcu_requant_clamp(s1, q->multiplier[c + 1], q->shift[c + 1],
                                                      out_off, act_min, act_max);
                    output[c + 2] = mcu_requant_clamp(s2, q->multiplier[c + 2], q->shift[c + 2],
                                                      out_off, act_min, act_max);
                    output[c + 3] = mcu_requant_clamp(s3, q->multiplier[c + 3], q->shift[c + 3],
                                                      out_off, act_min, act_max);
                }
                for (; c < C; c++) {
                    int32_t s = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int32_t iy = iy0 + p->dilation_h * fy;
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int32_t ix = ix0 + p->dilation_w * fx;
                            s += (int32_t)filter[(fy * f_w + fx) * C + c] *
                                 ((int32_t)in_b[(iy * in_w + ix) * C + c] + in_off);
                        }
                    }
                    if (bias) s += bias[c];
                    output[c] = mcu_requant_clamp(s, q->multiplier[c], q->shift[c], out_off,
                                                  act_min, act_max);
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

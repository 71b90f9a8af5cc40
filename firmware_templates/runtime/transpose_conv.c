/* TRANSPOSE_CONV int8 (TFLM reference_integer_ops::TransposeConv, bit-exact).
 *
 * TFLM scatters every input pixel into an int32 buffer of the output's size
 * (output pixel in * stride - pad + f gets x[in] * w[f]) and requantizes it
 * afterwards. The sum of a pixel's products does not depend on their order
 * (int32 addition is associative modulo 2^32), so this kernel gathers instead:
 * for each output pixel it visits only the taps that reach it,
 *   f = (o + pad) - stride * in,  0 <= f < K,  0 <= in < H,
 * and keeps the sum in a register. Same bytes, no scratch buffer. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_transpose_conv_s8(const mcu_transpose_conv_params_t *p,
                           const mcu_per_channel_quant_t *q, const mcu_dims_t *input_dims,
                           const int8_t *input, const mcu_dims_t *filter_dims,
                           const int8_t *filter, const int32_t *bias,
                           const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    const int32_t in_off = p->input_offset;
    for (int32_t b = 0; b < output_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t ty = oy + p->pad_h;          /* >= 0: pad_h >= 0 */
            /* first tap row reaching oy from the last input row at most */
            int32_t fy0 = ty % sh;
            if (ty - fy0 > (in_h - 1) * sh) fy0 = ty - (in_h - 1) * sh;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t tx = ox + p->pad_w;
                int32_t fx0 = tx % sw;
                if (tx - fx0 > (in_w - 1) * sw) fx0 = tx - (in_w - 1) * sw;
                for (int32_t oc = 0; oc < out_c; oc++) {
                    const int8_t *f = filter + oc * f_h * f_w * in_c;
                    int32_t acc = 0;
                    for (int32_t fy = fy0; fy < f_h && fy <= ty; fy += sh) {
                        const int8_t *x_row = in_b + ((ty - fy) / sh) * in_w * in_c;
                        for (int32_t fx = fx0; fx < f_w && fx <= tx; fx += sw) {
                            const int8_t *x = x_row + ((tx - fx) / sw) * in_c;
                            const int8_t *w = f + (fy * f_w + fx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ic++)
                                acc += (int32_t)w[ic] * ((int32_t)x[ic] + in_off);
                        }
                    }
                    if (bias) acc = mcu_add_wrap(acc, bias[oc]); /* TFLM's wrap-around */
                    *output++ = mcu_requant_clamp(acc, q->multiplier[oc], q->shift[oc],
                                                  p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

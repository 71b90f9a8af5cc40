/* TRANSPOSE_CONV int8 (TFLM reference_integer_ops::TransposeConv, bit-exact).
 *
 * TFLM scatters every input pixel into an int32 buffer of the output's size
 * (output pixel in * stride - pad + f gets x[in] * w[f]) and requantizes it
 * afterwards. The sum of a pixel's products does not depend on their order
 * (int32 addition is associative modulo 2^32), so this kernel gathers instead:
 * for each output pixel it visits only the taps that reach it,
 *   f = (o + pad) - stride * in,  0 <= f < K,  0 <= in < H,
 * and keeps the sum in a register. Same bytes, no scratch buffer.
 *
 * DSP variant (below): the taps reaching an output pixel are listed once for all
 * channels; two output channels at a time share the activations; four int8
 * activations (one word) become (x0+off, x2+off) / (x1+off, x3+off) with SXTAB16 and
 * SXTAB16 ROR 8, each channel's four weights (w0,w2) / (w1,w3) with SXTB16, and two
 * SMLADs add the four products (13 instructions per 8 MACs; four channels at a
 * time measured slower on the M4: register spills). The int32 sum wraps as
 * TFLM's does (SMLAD wraps the same way). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_transpose_conv_s8_portable(const mcu_transpose_conv_params_t *p,
                                             const mcu_per_channel_quant_t *q,
                                    const mcu_dims_t *input_dims,
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

#if MCU_HAVE_DSP
#define TC_MAX_TAPS 64 /* taps per output pixel (ceil(kh/sh) x ceil(kw/sw)); more: portable */

/* *a += wa . (x + off), *b += wb . (x + off) over n values (int32, wrapping). */
static inline void tc_dot2(const int8_t *x, const int8_t *wa, const int8_t *wb, int32_t n,
                           uint32_t off2, int32_t off, int32_t *a, int32_t *b)
{
    int32_t sa = *a, sb = *b;
    for (; n >= 4; n -= 4) {
        const uint32_t x4 = mcu_read_u32(x);
        const uint32_t x02 = __sxtab16(off2, x4), x13 = mcu_sxtab16_ror8(off2, x4);
        const uint32_t wa4 = mcu_read_u32(wa), wb4 = mcu_read_u32(wb);
        sa = __smlad(__sxtb16(wa4), x02, sa);
        sa = __smlad(mcu_sxtb16_ror8(wa4), x13, sa);
        sb = __smlad(__sxtb16(wb4), x02, sb);
        sb = __smlad(mcu_sxtb16_ror8(wb4), x13, sb);
        x += 4;
        wa += 4;
        wb += 4;
    }
    for (; n > 0; n--) {
        const int32_t xv = (int32_t)*x++ + off;
        sa = mcu_add_wrap(sa, (int32_t)*wa++ * xv);
        sb = mcu_add_wrap(sb, (int32_t)*wb++ * xv);
    }
    *a = sa;
    *b = sb;
}

void mcu_transpose_conv_s8_dsp(const mcu_transpose_conv_params_t *p,
                               const mcu_per_channel_quant_t *q,
                               const mcu_dims_t *input_dims,
                               const int8_t *input, const mcu_dims_t *filter_dims,
                               const int8_t *filter, const int32_t *bias,
                               const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_h = output_dims->h, out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    const int32_t in_off = p->input_offset;
    const uint32_t off2 = ((uint32_t)in_off & 0xffffu) | ((uint32_t)in_off << 16);
    const int32_t fs = f_h * f_w * in_c;
    int32_t tx_off[TC_MAX_TAPS], tw_off[TC_MAX_TAPS];
    if (((f_h + sh - 1) / sh) * ((f_w + sw - 1) / sw) > TC_MAX_TAPS) {
        mcu_transpose_conv_s8_portable(p, q, input_dims, input, filter_dims, filter, bias,
                                       output_dims, output);
        return;
    }
    for (int32_t b = 0; b < output_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t ty = oy + p->pad_h;
            int32_t fy0 = ty % sh;
            if (ty - fy0 > (in_h - 1) * sh) fy0 = ty - (in_h - 1) * sh;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t tx = ox + p->pad_w;
                int32_t fx0 = tx % sw;
                if (tx - fx0 > (in_w - 1) * sw) fx0 = tx - (in_w - 1) * sw;
                /* the taps reaching this pixel: (input offset, filter offset) pairs,
                 * listed once for all channels */
                int32_t nt = 0;
                for (int32_t fy = fy0; fy < f_h && fy <= ty; fy += sh) {
                    const int32_t xr = ((ty - fy) / sh) * in_w;
                    for (int32_t fx = fx0; fx < f_w && fx <= tx; fx += sw) {
                        if (nt == TC_MAX_TAPS) break;
                        tx_off[nt] = (xr + (tx - fx) / sw) * in_c;
                        tw_off[nt] = (fy * f_w + fx) * in_c;
                        nt++;
                    }
                }
                for (int32_t oc = 0; oc < out_c; oc += 2) {
                    const int two = oc + 1 < out_c;
                    const int8_t *fa = filter + oc * fs;
                    const int8_t *fb = two ? fa + fs : fa;   /* odd out_c: twice */
                    int32_t acc_a = 0, acc_b = 0;
                    for (int32_t t = 0; t < nt; t++)
                        tc_dot2(in_b + tx_off[t], fa + tw_off[t], fb + tw_off[t], in_c, off2,
                                in_off, &acc_a, &acc_b);
                    if (bias) acc_a = mcu_add_wrap(acc_a, bias[oc]); /* TFLM's wrap-around */
                    output[oc] = mcu_requant_clamp(acc_a, q->multiplier[oc], q->shift[oc],
                                                   p->output_offset, p->act_min, p->act_max);
                    if (two) {
                        if (bias) acc_b = mcu_add_wrap(acc_b, bias[oc + 1]);
                        output[oc + 1] = mcu_requant_clamp(acc_b, q->multiplier[oc + 1],
                                                           q->shift[oc + 1], p->output_offset,
                                                           p->act_min, p->act_max);
                    }
                }
                output += out_c;
            }
        }
    }
}
#endif

void mcu_transpose_conv_s8(const mcu_transpose_conv_params_t *p,
                           const mcu_per_channel_quant_t *q, const mcu_dims_t *input_dims,
                           const int8_t *input, const mcu_dims_t *filter_dims,
                           const int8_t *filter, const int32_t *bias,
                           const mcu_dims_t *output_dims, int8_t *output)
{
#if MCU_HAVE_DSP
    mcu_transpose_conv_s8_dsp(p, q, input_dims, input, filter_dims, filter, bias, output_dims,
                              output);
#else
    mcu_transpose_conv_s8_portable(p, q, input_dims, input, filter_dims, filter, bias,
                                   output_dims, output);
#endif
}

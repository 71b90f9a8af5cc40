/* CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with int16 activations and int8
 * weights ("16x8"), bit-exact with TFLite Micro's reference_integer_ops int16 paths:
 * zero points 0, int64 accumulators with an int64 bias (or none) requantized by the
 * int64 MultiplyByQuantizedMultiplier; CONV_2D with an int32 bias sums in int32
 * (wrapping, as TFLM's AccumScalar = int32_t does) and uses the int32 one. Portable C. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

/* tflite::MultiplyByQuantizedMultiplier(int64_t x, int32_t m, int shift): the Q31
 * multiplier reduced to Q15 with rounding, one rounding right shift by 15 - shift.
 * x * m15 fits int64 for |x| < 2^47 (TFLM's documented input range). The right shift
 * of a negative value is arithmetic (gcc / clang define it so). */
static inline int32_t mbqm64(int64_t x, int32_t mult, int32_t shift)
{
    const int64_t reduced = mult < 0x7FFF0000 ? (int64_t)((mult + (1 << 15)) >> 16) : 0x7FFF;
    const int32_t total = 15 - shift;
    const int64_t r = (x * reduced + ((int64_t)1 << (total - 1))) >> total;
    return (int32_t)r;
}

void mcu_conv2d_s16(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                    const mcu_dims_t *input_dims, const int16_t *input,
                    const mcu_dims_t *filter_dims, const int8_t *filter,
                    const int64_t *bias64, const int32_t *bias32,
                    const mcu_dims_t *output_dims, int16_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t O = filter_dims->n, kh = filter_dims->h, kw = filter_dims->w;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int16_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t o = 0; o < O; o++) {
                    const int8_t *f = filter + o * kh * kw * C;
                    int64_t acc64 = 0;
                    int32_t acc32 = 0;
                    for (int32_t fy = 0; fy < kh; fy++) {
                        const int32_t iy = iy0 + fy * p->dilation_h;
                        if (iy < 0 || iy >= in_h) continue;
                        for (int32_t fx = 0; fx < kw; fx++) {
                            const int32_t ix = ix0 + fx * p->dilation_w;
                            if (ix < 0 || ix >= in_w) continue;
                            const int16_t *x = in_b + (iy * in_w + ix) * C;
                            const int8_t *w = f + (fy * kw + fx) * C;
                            if (bias32) {
                                for (int32_t c = 0; c < C; c++)
                                    acc32 = mcu_add_wrap(acc32, (int32_t)w[c] * x[c]);
                            } else {
                                for (int32_t c = 0; c < C; c++)
                                    acc64 += (int32_t)w[c] * x[c];
                            }
                        }
                    }
                    int32_t r;
                    if (bias32) {
                        acc32 = mcu_add_wrap(acc32, bias32[o]);
                        r = mcu_mbqm_ref(acc32, q->multiplier[o], q->shift[o]);
                    } else {
                        if (bias64) acc64 += bias64[o];
                        r = mbqm64(acc64, q->multiplier[o], q->shift[o]);
                    }
                    *output++ = (int16_t)mcu_clamp_i32(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_dw_conv2d_s16(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_dims_t *input_dims, const int16_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter,
                       const int64_t *bias64, const mcu_dims_t *output_dims, int16_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t kh = filter_dims->h, kw = filter_dims->w, O = filter_dims->c;
    const int32_t m = p->depth_multiplier;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int16_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t o = 0; o < O; o++) {
                    const int32_t c = o / m;
                    int64_t acc = 0;
                    for (int32_t fy = 0; fy < kh; fy++) {
                        const int32_t iy = iy0 + fy * p->dilation_h;
                        if (iy < 0 || iy >= in_h) continue;
                        for (int32_t fx = 0; fx < kw; fx++) {
                            const int32_t ix = ix0 + fx * p->dilation_w;
                            if (ix < 0 || ix >= in_w) continue;
                            acc += (int32_t)filter[(fy * kw + fx) * O + o] *
                                   in_b[(iy * in_w + ix) * C + c];
                        }
                    }
                    if (bias64) acc += bias64[o];
                    const int32_t r = mbqm64(acc, q->multiplier[o], q->shift[o]);
                    *output++ = (int16_t)mcu_clamp_i32(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_fc_s16(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift, int32_t batches,
                int32_t in_features, int32_t out_features, const int16_t *input,
                const int8_t *filter, const int64_t *bias64, int16_t *output)
{
    for (int32_t b = 0; b < batches; b++) {
        const int16_t *x = input + b * in_features;
        for (int32_t o = 0; o < out_features; o++) {
            const int8_t *w = filter + o * in_features;
            int64_t acc = 0;
            for (int32_t k = 0; k < in_features; k++)
                acc += (int32_t)(w[k] + p->filter_offset) * x[k];
            if (bias64) acc += bias64[o];
            const int32_t r = mbqm64(acc, multiplier, shift);
            *output++ = (int16_t)mcu_clamp_i32(r, p->act_min, p->act_max);
        }
    }
}

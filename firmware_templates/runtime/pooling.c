/* AVERAGE_POOL_2D / MAX_POOL_2D int8 (TFLM reference_integer_ops pooling). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

typedef struct {
    int32_t fy0, fy1, fx0, fx1, iy0, ix0;
} window_t;

static inline window_t pool_window(const mcu_pool_params_t *p, int32_t in_h, int32_t in_w,
                                   int32_t oy, int32_t ox)
{
    window_t w;
    w.iy0 = oy * p->stride_h - p->pad_h;
    w.ix0 = ox * p->stride_w - p->pad_w;
    w.fy0 = mcu_max_i32(0, -w.iy0);
    w.fy1 = mcu_min_i32(p->filter_h, in_h - w.iy0);
    w.fx0 = mcu_max_i32(0, -w.ix0);
    w.fx1 = mcu_min_i32(p->filter_w, in_w - w.ix0);
    return w;
}

/* TFLM's rounding of an average (count > 0) */
static inline int32_t avg_round(int32_t acc, int32_t count)
{
    return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

void mcu_avgpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims, const int8_t *input,
                    const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const window_t w = pool_window(p, in_h, in_w, oy, ox);
                const int32_t count = (w.fy1 - w.fy0) * (w.fx1 - w.fx0);
                int32_t c = 0;
#if MCU_HAVE_DSP
                /* four channels per word: SXTAB16 sums in 16-bit lanes (exact while
                 * count * 128 < 2^15) */
                if (count > 0 && count < 256)
                    for (; c + 3 < C; c += 4) {
                        uint32_t s02 = 0, s13 = 0;
                        for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                            const int8_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C + c;
                            for (int32_t fx = w.fx0; fx < w.fx1; fx++) {
                                const uint32_t v = mcu_read_u32(row + fx * C);
                                s02 = __sxtab16(s02, v);
                                s13 = mcu_sxtab16_ror8(s13, v);
                            }
                        }
                        output[0] = (int8_t)mcu_clamp_i32(avg_round((int16_t)s02, count),
                                                          p->act_min, p->act_max);
                        output[1] = (int8_t)mcu_clamp_i32(avg_round((int16_t)s13, count),
                                                          p->act_min, p->act_max);
                        output[2] = (int8_t)mcu_clamp_i32(
                            avg_round((int16_t)(s02 >> 16), count), p->act_min, p->act_max);
                        output[3] = (int8_t)mcu_clamp_i32(
                            avg_round((int16_t)(s13 >> 16), count), p->act_min, p->act_max);
                        output += 4;
                    }
#endif
                for (; c < C; c++) {
                    int32_t acc = 0;
                    for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                        const int8_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C + c;
                        for (int32_t fx = w.fx0; fx < w.fx1; fx++) acc += row[fx * C];
                    }
                    if (count <= 0) {
                        acc = 0; /* TFLM fails the op; keep the output defined */
                    } else {
                        acc = avg_round(acc, count);
                    }
                    *output++ = (int8_t)mcu_clamp_i32(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* per byte max of four int8 lanes: SSUB8 sets the GE flags, SEL picks */
static inline uint32_t max4(uint32_t a, uint32_t b)
{
#if MCU_HAVE_DSP && !defined(MCU_EMULATE_DSP)
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b));
    return r;
#else
    uint32_t r = 0;
    for (int k = 0; k < 32; k += 8) {
        const int8_t x = (int8_t)(a >> k), y = (int8_t)(b >> k);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << k;
    }
    return r;
#endif
}

/* Channels innermost: the output pixel starts as the window's first tap and takes
 * the max with each further tap, four channels per word; then the activation clamp
 * (skipped for the full range). An empty window gives act_min clamped -128, as the
 * reference loop. */
void mcu_maxpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims, const int8_t *input,
                    const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t C4 = MCU_HAVE_DSP ? C & ~3 : 0; /* words: DSP builds (SSUB8 + SEL) */
    const int full = p->act_min <= -128 && p->act_max >= 127;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            for (int32_t ox = 0; ox < output_dims->w; ox++, output += C) {
                const window_t w = pool_window(p, in_h, in_w, oy, ox);
                int first = 1;
                for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                    const int8_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C;
                    for (int32_t fx = w.fx0; fx < w.fx1; fx++) {
                        const int8_t *x = row + fx * C;
                        int32_t c = 0;
                        if (first) {
                            for (; c < C4; c += 4) mcu_write_u32(output + c, mcu_read_u32(x + c));
                            for (; c < C; c++) output[c] = x[c];
                            first = 0;
                            continue;
                        }
                        for (; c < C4; c += 4)
                            mcu_write_u32(output + c,
                                          max4(mcu_read_u32(output + c), mcu_read_u32(x + c)));
                        for (; c < C; c++) output[c] = x[c] > output[c] ? x[c] : output[c];
                    }
                }
                if (first)
                    for (int32_t c = 0; c < C; c++) output[c] = -128;
                if (!full || first)
                    for (int32_t c = 0; c < C; c++)
                        output[c] = (int8_t)mcu_clamp_i32(output[c], p->act_min, p->act_max);
            }
        }
    }
}

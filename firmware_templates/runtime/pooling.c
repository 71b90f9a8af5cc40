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
                for (int32_t c = 0; c < C; c++) {
                    int32_t acc = 0;
                    for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                        const int8_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C + c;
                        for (int32_t fx = w.fx0; fx < w.fx1; fx++) acc += row[fx * C];
                    }
                    if (count <= 0) {
                        acc = 0; /* TFLM fails the op; keep the output defined */
                    } else {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    *output++ = (int8_t)mcu_clamp_i32(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_maxpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims, const int8_t *input,
                    const mcu_dims_t *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const window_t w = pool_window(p, in_h, in_w, oy, ox);
                for (int32_t c = 0; c < C; c++) {
                    int32_t m = -128;
                    for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                        const int8_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C + c;
                        for (int32_t fx = w.fx0; fx < w.fx1; fx++)
                            m = row[fx * C] > m ? row[fx * C] : m;
                    }
                    *output++ = (int8_t)mcu_clamp_i32(m, p->act_min, p->act_max);
                }
            }
        }
    }
}

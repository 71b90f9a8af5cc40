/* ADD / AVERAGE_POOL_2D / MAX_POOL_2D / SOFTMAX with int16 activations, bit-exact with
 * TFLite Micro's int16 reference kernels (zero points 0). Portable C. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

/* reference_ops::AddElementwise on int16: left_shift 15, SmallerThanOneExp multipliers
 * (shift <= 0: mcu_mbqm_ref), the sum wraps in int32 as TFLM's does. */
static inline int16_t add16_one(const mcu_add_params_t *p, int32_t x1, int32_t x2)
{
    const int32_t ls = p->left_shift;
    const int32_t a = (int32_t)((uint32_t)(p->input1_offset + x1) << ls);
    const int32_t b = (int32_t)((uint32_t)(p->input2_offset + x2) << ls);
    const int32_t sa = mcu_mbqm_ref(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = mcu_mbqm_ref(b, p->input2_multiplier, p->input2_shift);
    const int32_t r = mcu_mbqm_ref(mcu_add_wrap(sa, sb), p->output_multiplier,
                                   p->output_shift) + p->output_offset;
    return (int16_t)mcu_clamp_i32(r, p->act_min, p->act_max);
}

void mcu_add_s16(const mcu_add_params_t *p, const int16_t *input1, const int16_t *input2,
                 int16_t *output, int32_t size)
{
    /* each element is read before it is written: in place over either input */
    for (int32_t i = 0; i < size; i++) output[i] = add16_one(p, input1[i], input2[i]);
}

void mcu_add_s16_broadcast(const mcu_add_params_t *p, const mcu_dims_t *d,
                           const int16_t *input1, const int32_t *s1, const int16_t *input2,
                           const int32_t *s2, int16_t *output)
{
    for (int32_t n = 0; n < d->n; n++)
        for (int32_t h = 0; h < d->h; h++)
            for (int32_t w = 0; w < d->w; w++) {
                const int16_t *a = input1 + n * s1[0] + h * s1[1] + w * s1[2];
                const int16_t *b = input2 + n * s2[0] + h * s2[1] + w * s2[2];
                for (int32_t c = 0; c < d->c; c++)
                    *output++ = add16_one(p, a[c * s1[3]], b[c * s2[3]]);
            }
}

typedef struct {
    int32_t fy0, fy1, fx0, fx1, iy0, ix0;
} window16_t;

static inline window16_t window16(const mcu_pool_params_t *p, int32_t in_h, int32_t in_w,
                                  int32_t oy, int32_t ox)
{
    window16_t w;
    w.iy0 = oy * p->stride_h - p->pad_h;
    w.ix0 = ox * p->stride_w - p->pad_w;
    w.fy0 = mcu_max_i32(0, -w.iy0);
    w.fy1 = mcu_min_i32(p->filter_h, in_h - w.iy0);
    w.fx0 = mcu_max_i32(0, -w.ix0);
    w.fx1 = mcu_min_i32(p->filter_w, in_w - w.ix0);
    return w;
}

static void pool16(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                   const int16_t *input, const mcu_dims_t *output_dims, int16_t *output,
                   int is_max)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int16_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const window16_t w = window16(p, in_h, in_w, oy, ox);
                const int32_t count = (w.fy1 - w.fy0) * (w.fx1 - w.fx0);
                for (int32_t c = 0; c < C; c++) {
                    int32_t acc = is_max ? -32768 : 0;
                    for (int32_t fy = w.fy0; fy < w.fy1; fy++) {
                        const int16_t *row = in_b + ((w.iy0 + fy) * in_w + w.ix0) * C + c;
                        for (int32_t fx = w.fx0; fx < w.fx1; fx++) {
                            const int32_t v = row[fx * C];
                            if (is_max) acc = v > acc ? v : acc;
                            else acc += v;
                        }
                    }
                    if (!is_max) {
                        if (count <= 0) acc = 0; /* TFLM fails the op; keep it defined */
                        else acc = acc > 0 ? (acc + count / 2) / count
                                           : (acc - count / 2) / count;
                    }
                    *output++ = (int16_t)mcu_clamp_i32(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_avgpool_s16(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                     const int16_t *input, const mcu_dims_t *output_dims, int16_t *output)
{
    pool16(p, input_dims, input, output_dims, output, 0);
}

void mcu_maxpool_s16(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                     const int16_t *input, const mcu_dims_t *output_dims, int16_t *output)
{
    pool16(p, input_dims, input, output_dims, output, 1);
}

/* TFLM's int16 LUT lookup: 512 bases + 1, index 256 + (v >> 7), interpolated by the
 * low 7 bits with rounding. */
static inline int32_t lut16(int32_t v, const int16_t *lut)
{
    const int32_t idx = 256 + (v >> 7);
    const int32_t off = v & 0x7f;
    const int32_t base = lut[idx];
    const int32_t slope = lut[idx + 1] - base;
    return base + ((slope * off + 64) >> 7);
}

static inline int32_t clz32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; n++; }
    return n;
}

void mcu_softmax_s16(int32_t input_multiplier, int32_t input_left_shift,
                     const int16_t *exp_lut, const int16_t *one_over_one_plus_x_lut,
                     int32_t rows, int32_t depth, const int16_t *input, int16_t *output)
{
    for (int32_t r = 0; r < rows; r++) {
        const int16_t *x = input + r * depth;
        int16_t *y = output + r * depth;
        int32_t mx = -32768;
        for (int32_t j = 0; j < depth; j++) mx = x[j] > mx ? x[j] : mx;
        int32_t sum = 0;    /* Q16.15; y holds exp values (Q0.15) until the end */
        for (int32_t j = 0; j < depth; j++) {
            const int32_t scaled = mcu_mbqm_ref(x[j] - mx, input_multiplier, input_left_shift);
            const int32_t sym = mcu_clamp_i32(scaled + 32767, -32768, 32767);
            const int32_t e = lut16(sym, exp_lut);
            y[j] = (int16_t)e;
            sum += e;
        }
        const int32_t hp1 = clz32((uint32_t)sum);
        const int32_t shifted = (int32_t)((((int64_t)sum << (hp1 - 1)) + (1 << 13)) >> 14);
        const int32_t sym = mcu_clamp_i32(shifted - ((1 << 15) + (1 << 16)), -32768, 32767);
        const int32_t recip = lut16(sym, one_over_one_plus_x_lut);
        const int32_t rs = 31 - hp1;
        const int64_t round = (int64_t)1 << (rs - 1);
        for (int32_t j = 0; j < depth; j++) {
            const int32_t v = (int32_t)(((int64_t)y[j] * recip + round) >> rs);
            y[j] = (int16_t)mcu_clamp_i32(v, 0, 32767);
        }
    }
}

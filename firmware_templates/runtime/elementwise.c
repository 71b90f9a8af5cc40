/* ADD / MUL / RESHAPE / RELU / RELU6 int8 (TFLM reference kernels). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

static inline int8_t add_one(const mcu_add_params_t *p, int32_t x1, int32_t x2)
{
    const int32_t ls = p->left_shift;
    const int32_t a = (int32_t)((uint32_t)(p->input1_offset + x1) << ls);
    const int32_t b = (int32_t)((uint32_t)(p->input2_offset + x2) << ls);
    const int32_t sa = mcu_requantize(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = mcu_requantize(b, p->input2_multiplier, p->input2_shift);
    const int32_t r = mcu_requantize((int32_t)((uint32_t)sa + (uint32_t)sb), p->output_multiplier,
                                     p->output_shift) + p->output_offset;
    return (int8_t)mcu_clamp_i32(r, p->act_min, p->act_max);
}

static inline int8_t mul_one(const mcu_mul_params_t *p, int32_t x1, int32_t x2)
{
    const int32_t a = p->input1_offset + x1;
    const int32_t b = p->input2_offset + x2;
    const int32_t r = p->output_offset +
                      mcu_requantize(a * b, p->output_multiplier, p->output_shift);
    return (int8_t)mcu_clamp_i32(r, p->act_min, p->act_max);
}

void mcu_add_s8(const mcu_add_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) output[i] = add_one(p, input1[i], input2[i]);
}

void mcu_mul_s8(const mcu_mul_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) output[i] = mul_one(p, input1[i], input2[i]);
}

#define BROADCAST_LOOP(ONE)                                                              \
    for (int32_t n = 0; n < d->n; n++)                                                   \
        for (int32_t h = 0; h < d->h; h++)                                               \
            for (int32_t w = 0; w < d->w; w++) {                                         \
                const int8_t *a = input1 + n * s1[0] + h * s1[1] + w * s1[2];             \
                const int8_t *b = input2 + n * s2[0] + h * s2[1] + w * s2[2];             \
                for (int32_t c = 0; c < d->c; c++)                                       \
                    *output++ = ONE(p, a[c * s1[3]], b[c * s2[3]]);                      \
            }

void mcu_add_s8_broadcast(const mcu_add_params_t *p, const mcu_dims_t *d, const int8_t *input1,
                          const int32_t *s1, const int8_t *input2, const int32_t *s2,
                          int8_t *output)
{
    BROADCAST_LOOP(add_one)
}

void mcu_mul_s8_broadcast(const mcu_mul_params_t *p, const mcu_dims_t *d, const int8_t *input1,
                          const int32_t *s1, const int8_t *input2, const int32_t *s2,
                          int8_t *output)
{
    BROADCAST_LOOP(mul_one)
}

void mcu_reshape_s8(const int8_t *input, int8_t *output, int32_t size)
{
    if (input == output) return;
    for (int32_t i = 0; i < size; i++) output[i] = input[i];
}

void mcu_relu_s8(const int8_t *input, int8_t *output, int32_t size, int32_t input_zero_point,
                 int32_t output_zero_point, int32_t multiplier, int32_t shift,
                 int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++) {
        const int32_t v = output_zero_point +
                          mcu_requantize((int32_t)input[i] - input_zero_point, multiplier, shift);
        output[i] = (int8_t)mcu_clamp_i32(v, act_min, act_max);
    }
}

void mcu_clamp_s8(const int8_t *input, int8_t *output, int32_t size, int32_t lo, int32_t hi)
{
    for (int32_t i = 0; i < size; i++) output[i] = (int8_t)mcu_clamp_i32(input[i], lo, hi);
}

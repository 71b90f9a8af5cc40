/* Elementwise int8 activations (TFLM reference kernels): LOGISTIC, the 256-entry
 * table lookup that any int8 -> int8 elementwise function can use, and PRELU.
 *
 * LOGISTIC (TFLM reference_integer_ops::Logistic, int8): d = x - input_zero_point;
 * d <= -radius -> -128, d >= radius -> 127, else the gemmlowp fixed-point
 * logistic of MultiplyByQuantizedMultiplier(d, multiplier, left_shift) in Q4.27,
 * rounded to 1/256 units minus 128 (output scale 1/256, zero point -128).
 * |d| < radius keeps |d << left_shift| < 15 * 2^27: no int32 overflow.
 *
 * An int8 input has only 256 values, so a model with fixed quantization can
 * precompute the table (quant_math.logistic_table, or mcu_logistic_s8_table at
 * run time) and run mcu_lut_s8: one load per element instead of ~60 multiplies.
 * Both forms give identical bytes. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* gemmlowp::logistic(FixedPoint<int32, 4>) -> FixedPoint<int32, 0> raw */
static int32_t logistic_q4_to_q0(int32_t a)
{
    if (a == 0) return (int32_t)1 << 30; /* 1/2 */
    const int32_t neg_abs = a > 0 ? -a : a;
    const int32_t r = mcu_one_over_one_plus_x_for_x_in_0_1(mcu_exp_on_negative_values(neg_abs, 4));
    return a > 0 ? r : MCU_INT32_MAX - r;
}

static int8_t logistic_one(int32_t x, int32_t input_zero_point, int32_t input_multiplier,
                           int32_t input_left_shift, int32_t input_range_radius)
{
    const int32_t d = x - input_zero_point;
    if (d <= -input_range_radius) return -128;
    if (d >= input_range_radius) return 127;
    /* multiplier in [2^30, 2^31), shift >= 0: mcu_requantize == MultiplyByQuantizedMultiplier */
    const int32_t q4 = mcu_requantize(d, input_multiplier, input_left_shift);
    const int32_t q0 = logistic_q4_to_q0(q4);
    return (int8_t)mcu_clamp_i32(mcu_rdbp(q0, 31 - 8) - 128, -128, 127);
}

void mcu_logistic_s8(const int8_t *input, int8_t *output, int32_t size,
                     int32_t input_zero_point, int32_t input_multiplier,
                     int32_t input_left_shift, int32_t input_range_radius)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = logistic_one(input[i], input_zero_point, input_multiplier, input_left_shift,
                                 input_range_radius);
}

void mcu_logistic_s8_table(int8_t *table, int32_t input_zero_point, int32_t input_multiplier,
                           int32_t input_left_shift, int32_t input_range_radius)
{
    for (int32_t i = 0; i < 256; i++)
        table[i] = logistic_one(i < 128 ? i : i - 256, input_zero_point, input_multiplier,
                                input_left_shift, input_range_radius);
}

void mcu_lut_s8(const int8_t *input, int8_t *output, int32_t size, const int8_t *table)
{
    int32_t i = 0;
    for (; i + 4 <= size; i += 4) {
        const uint8_t a = (uint8_t)input[i], b = (uint8_t)input[i + 1];
        const uint8_t c = (uint8_t)input[i + 2], d = (uint8_t)input[i + 3];
        output[i] = table[a];
        output[i + 1] = table[b];
        output[i + 2] = table[c];
        output[i + 3] = table[d];
    }
    for (; i < size; i++) output[i] = table[(uint8_t)input[i]];
}

/* PRELU (TFLM BroadcastPrelu4DSlow): alpha read through alpha_strides (0 on broadcast
 * dims); x - zi >= 0 -> MBQM(x - zi, m1, s1), else MBQM((x - zi) * (a - za), m2, s2);
 * plus the output offset, clamped to int8. */
void mcu_prelu_s8(const mcu_prelu_params_t *p, const mcu_dims_t *d, const int8_t *input,
                  const int8_t *alpha, const int32_t *alpha_strides, int8_t *output)
{
    const int32_t *s = alpha_strides;
    for (int32_t n = 0; n < d->n; n++)
        for (int32_t h = 0; h < d->h; h++)
            for (int32_t w = 0; w < d->w; w++) {
                const int8_t *a = alpha + n * s[0] + h * s[1] + w * s[2];
                for (int32_t c = 0; c < d->c; c++) {
                    const int32_t x = p->input_offset + *input++;
                    int32_t v;
                    if (x >= 0) {
                        v = mcu_requantize(x, p->output_multiplier_1, p->output_shift_1);
                    } else {
                        const int32_t av = p->alpha_offset + a[c * s[3]];
                        v = mcu_requantize(x * av, p->output_multiplier_2, p->output_shift_2);
                    }
                    *output++ = (int8_t)mcu_clamp_i32(v + p->output_offset, -128, 127);
                }
            }
}

/* SOFTMAX int8 -> int8 (TFLM reference_ops::Softmax, quantized path,
 * kScaledDiffIntegerBits = 5, kAccumulationIntegerBits = 12). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* exp(diff * input scale) in Q0.31 (one copy for both passes: flash) */
MCU_NOINLINE static int32_t sm_exp(const mcu_softmax_params_t *p, int32_t diff)
{
    const int32_t rescaled =
        mcu_mbqm_greater_than_one(diff, p->input_multiplier, p->input_left_shift);
    return mcu_exp_on_negative_values(rescaled, 5); /* kScaledDiffIntegerBits */
}

void mcu_softmax_s8(const mcu_softmax_params_t *p, int32_t rows, int32_t depth,
                    const int8_t *input, int8_t *output)
{
    const int32_t kAccumulationIntegerBits = 12;
    for (int32_t r = 0; r < rows; r++) {
        const int8_t *x = input + r * depth;
        int8_t *y = output + r * depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < depth; c++) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int32_t c = 0; c < depth; c++) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t e = sm_exp(p, diff);
                sum_of_exps += mcu_srmbpot(e, -kAccumulationIntegerBits);
            }
        }
        int32_t num_bits_over_unit;
        const int32_t shifted_scale =
            mcu_get_reciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
        for (int32_t c = 0; c < depth; c++) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t e = sm_exp(p, diff);
                const int32_t unsat =
                    mcu_rdbp(mcu_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
                y[c] = (int8_t)mcu_clamp_i32(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

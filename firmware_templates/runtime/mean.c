/* MEAN int8 (TFLM reduce: integer sum, one requantization with the
 * 1/count factor folded into the multiplier). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_mean_s8(int32_t outer, int32_t reduce, int32_t inner, const int8_t *input,
                 int32_t input_zero_point, int32_t multiplier, int32_t shift,
                 int32_t output_zero_point, int8_t *output)
{
    for (int32_t o = 0; o < outer; o++) {
        const int8_t *in_o = input + o * reduce * inner;
        for (int32_t i = 0; i < inner; i++) {
            int32_t acc = 0;
            for (int32_t r = 0; r < reduce; r++) acc += in_o[r * inner + i];
            acc -= input_zero_point * reduce;
            acc = mcu_requantize(acc, multiplier, shift) + output_zero_point;
            *output++ = (int8_t)mcu_clamp_i32(acc, -128, 127);
        }
    }
}

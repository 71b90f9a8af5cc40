/* Internal helpers of the int16-activation kernels (int16_conv.c, int16_dsp.c). */
#ifndef MCU_INT16_H
#define MCU_INT16_H
#include <stdint.h>

/* tflite::MultiplyByQuantizedMultiplier(int64_t x, int32_t m, int shift): the Q31
 * multiplier reduced to Q15 with rounding, one rounding right shift by 15 - shift.
 * x * m15 fits int64 for |x| < 2^47 (TFLM's documented input range). The right shift
 * of a negative value is arithmetic (gcc / clang define it so). */
static inline int32_t mcu_mbqm64(int64_t x, int32_t mult, int32_t shift)
{
    const int64_t reduced = mult < 0x7FFF0000 ? (int64_t)((mult + (1 << 15)) >> 16) : 0x7FFF;
    const int32_t total = 15 - shift;
    const int64_t r = (x * reduced + ((int64_t)1 << (total - 1))) >> total;
    return (int32_t)r;
}

/* Products of an int8 weight and an int16 activation are at most 2^22 in magnitude
 * (128 * 32768), so a sum of up to 511 of them fits int32: the DSP kernels sum blocks
 * of at most MCU_S16_BLOCK products in int32 (SMLAD / SMLAxy) and widen each block
 * into the int64 accumulator, which gives TFLM's int64 sum exactly. */
#define MCU_S16_BLOCK 508
#endif

/* Requantization tables prepared once for the *_pre kernels (mcu_kernels.h). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_requant_prepare(mcu_requant_t *t, int32_t n, const int32_t *mult, const int32_t *shift,
                         int32_t per_channel, int32_t output_offset)
{
    for (int32_t i = 0; i < n; i++) {
        const int32_t qi = per_channel ? i : 0;
        const int32_t s = shift[qi];
        t[i].mult = mult[qi];
        t[i].sh = -1;
        t[i].rlo = 0;
        t[i].rhi = s; /* slow form: the shift */
        /* fast form for right shifts e = -s in [1, 22]: the high word of
         * x*mult + 2^30 + 2^(30+e) + out_off*2^(31+e) stays within int32 */
        if (s <= -1 && s >= -22 && output_offset >= -256 && output_offset <= 256) {
            const int32_t e = -s;
            const int64_t c = ((int64_t)1 << 30) + ((int64_t)1 << (30 + e)) +
                              (int64_t)output_offset * ((int64_t)1 << (31 + e));
            t[i].rlo = (uint32_t)(uint64_t)c;
            t[i].rhi = (int32_t)(uint32_t)((uint64_t)c >> 32);
            t[i].sh = e - 1;
        }
    }
}

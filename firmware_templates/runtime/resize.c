/* RESIZE_NEAREST_NEIGHBOR int8 (TFLM reference_ops::ResizeNearestNeighbor).
 *
 * The source row of every output row and the source column of every output
 * column (TFLM's GetNearestNeighbor, float32 arithmetic) depend only on the
 * shapes and the align_corners / half_pixel_centers flags: the code generator
 * computes them at build time (toolchain/ir/ops/resize.py) and this kernel
 * copies one channel run per output pixel. Bytes are copied unchanged. */
#include "mcu_kernels.h"

void mcu_resize_nearest_s8(const mcu_dims_t *input_dims, const int8_t *input,
                           const mcu_dims_t *output_dims, const int32_t *rows,
                           const int32_t *cols, int8_t *output)
{
    const int32_t c = input_dims->c;
    const int32_t row_len = input_dims->w * c;
    for (int32_t b = 0; b < output_dims->n; b++) {
        const int8_t *in_b = input + b * input_dims->h * row_len;
        for (int32_t y = 0; y < output_dims->h; y++) {
            const int8_t *in_row = in_b + rows[y] * row_len;
            for (int32_t x = 0; x < output_dims->w; x++) {
                const int8_t *src = in_row + cols[x] * c;
                for (int32_t k = 0; k < c; k++) *output++ = src[k];
            }
        }
    }
}

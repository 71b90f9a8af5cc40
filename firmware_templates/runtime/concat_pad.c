/* CONCATENATION, PAD, TRANSPOSE and STRIDED_SLICE int8 (TFLM reference_ops). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_concat_s8(int32_t num_inputs, const int8_t *const *inputs, const int32_t *inner_sizes,
                   int32_t outer, int8_t *output)
{
    for (int32_t k = 0; k < outer; k++) {
        for (int32_t i = 0; i < num_inputs; i++) {
            const int32_t n = inner_sizes[i];
            const int8_t *src = inputs[i] + k * n;
            for (int32_t j = 0; j < n; j++) *output++ = src[j];
        }
    }
}

void mcu_pad_s8(const mcu_dims_t *d, const int8_t *input, const int32_t *pads, int8_t pad_value,
                int8_t *output)
{
    const int32_t on = d->n + pads[0] + pads[1], oh = d->h + pads[2] + pads[3];
    const int32_t ow = d->w + pads[4] + pads[5], oc = d->c + pads[6] + pads[7];
    for (int32_t b = 0; b < on; b++) {
        const int32_t ib = b - pads[0];
        for (int32_t y = 0; y < oh; y++) {
            const int32_t iy = y - pads[2];
            for (int32_t x = 0; x < ow; x++) {
                const int32_t ix = x - pads[4];
                const int inside = ib >= 0 && ib < d->n && iy >= 0 && iy < d->h && ix >= 0 &&
                                   ix < d->w;
                const int8_t *src = inside ? input + ((ib * d->h + iy) * d->w + ix) * d->c : 0;
                for (int32_t c = 0; c < oc; c++) {
                    const int32_t ic = c - pads[6];
                    *output++ = (inside && ic >= 0 && ic < d->c) ? src[ic] : pad_value;
                }
            }
        }
    }
}

/* TRANSPOSE (TFLM reference_ops::Transpose, 1-D to 5-D padded to 5-D): output element
 * (i0..i4) = input[sum ik * strides[k]], in output order. */
static void strided_copy(const int32_t *output_dims, const int32_t *strides,
                         const int8_t *input, int8_t *output)
{
    const int32_t d0 = output_dims[0], d1 = output_dims[1], d2 = output_dims[2];
    const int32_t d3 = output_dims[3], d4 = output_dims[4];
    const int32_t s4 = strides[4];
    for (int32_t i0 = 0; i0 < d0; i0++)
        for (int32_t i1 = 0; i1 < d1; i1++)
            for (int32_t i2 = 0; i2 < d2; i2++)
                for (int32_t i3 = 0; i3 < d3; i3++) {
                    const int8_t *src = input + i0 * strides[0] + i1 * strides[1] +
                                        i2 * strides[2] + i3 * strides[3];
                    if (s4 == 1) {
                        for (int32_t i4 = 0; i4 < d4; i4++) *output++ = src[i4];
                    } else {
                        for (int32_t i4 = 0; i4 < d4; i4++) *output++ = src[i4 * s4];
                    }
                }
}

void mcu_transpose_s8(const int32_t *output_dims, const int32_t *strides, const int8_t *input,
                      int8_t *output)
{
    strided_copy(output_dims, strides, input, output);
}

/* STRIDED_SLICE (TFLM reference_ops::StridedSlice): the first element of the slice is
 * input[offset]; strides (negative for backward slices) per output dim, 5-D padded. */
void mcu_strided_slice_s8(const int32_t *output_dims, const int32_t *strides, int32_t offset,
                          const int8_t *input, int8_t *output)
{
    strided_copy(output_dims, strides, input + offset, output);
}

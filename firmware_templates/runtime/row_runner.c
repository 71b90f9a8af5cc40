/* Row-delayed in-place execution of a convolution / pooling layer (toolchain/codegen
 * generate.py; the schedule from toolchain/codegen/rows.py): one block of output rows
 * per kernel call into a ring slot, each slot flushed to the shared buffer once no
 * later block reads the input bytes it covers. One loop for every such layer; the
 * generated code gives only the schedule (mcu_rows_t) and a call of its kernel. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

/* word copies when dst, src and n are word aligned (16 bytes per step) */
static void rows_copy(int8_t *dst, const int8_t *src, int32_t n)
{
    if (((uint32_t)(uintptr_t)dst | (uint32_t)(uintptr_t)src | (uint32_t)n) % 4u == 0u)
        for (; n >= 16; n -= 16, dst += 16, src += 16) {
            const uint32_t a = mcu_read_u32(src), b = mcu_read_u32(src + 4);
            const uint32_t c = mcu_read_u32(src + 8), d = mcu_read_u32(src + 12);
            mcu_write_u32(dst, a);
            mcu_write_u32(dst + 4, b);
            mcu_write_u32(dst + 8, c);
            mcu_write_u32(dst + 12, d);
        }
    while (n-- > 0) *dst++ = *src++;
}

void mcu_rows_run(const mcu_rows_t *r, const mcu_dims_t *input_dims,
                  const mcu_dims_t *output_dims, int8_t *buf, int8_t *ring, mcu_row_fn_t fn)
{
    mcu_dims_t id = *input_dims, od = *output_dims;
    const int32_t ho = r->rows_total, blk = r->block, rb = r->out_row / blk;
    int32_t done = 0;
    for (int32_t row = 0; row < r->out_h; row++) {
        const int32_t start = row * r->stride_h - r->pad_h;
        const int32_t i0 = start > 0 ? start : 0;
        id.h = input_dims->h - i0;
        od.h = ho - row * blk < blk ? ho - row * blk : blk;
        fn(start < 0 ? -start : 0, &id, buf + i0 * r->in_row, &od,
           ring + (row % r->depth) * r->out_row);
        while (done < (int32_t)r->flush[row]) {
            const int32_t n = ho - done * blk < blk ? ho - done * blk : blk;
            rows_copy(buf + done * r->out_row, ring + (done % r->depth) * r->out_row, n * rb);
            done++;
        }
    }
}

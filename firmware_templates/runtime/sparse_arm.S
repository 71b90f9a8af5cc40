/* Cortex-M4/M7 row loop of the row-sparse kernels (see sparse.c):
 *
 * typedef struct { const uint8_t *pairs; int32_t row_bytes; const uint32_t *tab;
 *                  int32_t tab_stride; const int32_t *X; int32_t seg_bytes;
 *                  int32_t *acc; int32_t rows; } mcu_sp_pass_t;
 * void mcu_sp_rows4(const mcu_sp_pass_t *a);
 *
 * For every row: the runs of its descriptor list, four words each: byte offset
 * in the row's (column, value) pairs, byte offset in X (segment), entry address
 * into the 16-entry block (mcu_sp_blk + 36 * skipped entries, Thumb bit set),
 * passes through the block | bit 31 = flush the accumulators first; a run with
 * 0 passes ends the row. Each entry
 *     acc_q += value * X[seg * seg_bytes / 4 + 4 * column + q]   (q = 0..3)
 * in four 64-bit accumulators started at 2^22; the two 23-bit fields of each
 * (pixels 2q and 2q + 1) go to acc[(q * rows + r) * 2 + {0, 1}].
 * Per entry LDRSB, LDRB, ADD, 2 x LDRD, 4 x SMLAL = 9 instructions for 8 MACs,
 * in a block of 16 entries entered Duff-style (no end register: all 14 are used). */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
    .syntax unified
    .thumb
    .text

@ exactly 36 bytes (nine 32-bit instructions)
.macro SP_ONE
    ldrsb.w r7, [r0, #1]
    ldrb.w  r3, [r0], #2
    add.w   r3, r2, r3, lsl #4
    ldrd    r4, r5, [r3]
    smlal   r8, r9, r4, r7
    smlal   r10, r11, r5, r7
    ldrd    r4, r5, [r3, #8]
    smlal   r12, lr, r4, r7
    smlal   r1, r6, r5, r7
.endm

@ fields of (lo, hi) -> s0, s1
.macro SP_FIELDS lo, hi, s0, s1
    ubfx    \s0, \lo, #0, #23
    sub     \s0, \s0, #0x400000
    lsr     \s1, \lo, #23
    orr     \s1, \s1, \hi, lsl #9
.endm

@ stack: 0 pairs row, 4 descriptor, 8 row descriptors, 12 rows left, 16 acc slot,
@ 20 rows * 8, 24 mid-flush flag, 28 block count, 32..63 mid-flush sums,
@ 64..95 accumulator start values, 96 struct, 100 X, 104 row bytes, 108 4 * tab_stride
.macro SP_INIT
    add     r3, sp, #64
    ldm     r3, {r1, r6, r8-r12, lr}
.endm

@ mid-row flush of one accumulator into the stack sums at off (r7 = 0: first flush)
.macro SP_FLUSH1 lo, hi, off
    SP_FIELDS \lo, \hi, r2, r3
    cmp     r7, #0
    beq     1\@f
    ldrd    r4, r5, [sp, #\off]
    add     r2, r2, r4
    add     r3, r3, r5
1\@:
    strd    r2, r3, [sp, #\off]
.endm

.macro SP_ADDSUM reg, off
    ldr     r6, [sp, #\off]
    add     \reg, \reg, r6
.endm

    .align  2
    .global mcu_sp_rows4
    .type   mcu_sp_rows4, %function
    .thumb_func
mcu_sp_rows4:
    push    {r4-r11, lr}
    sub     sp, sp, #112
    str     r0, [sp, #96]
    ldr     r1, [r0, #16]
    str     r1, [sp, #100]
    ldr     r1, [r0, #4]
    ldr     r2, [r0, #12]
    lsl     r2, r2, #2
    strd    r1, r2, [sp, #104]
    ldr     r1, [r0, #0]
    str     r1, [sp, #0]
    ldr     r1, [r0, #8]
    str     r1, [sp, #8]
    ldr     r2, [r0, #24]
    str     r2, [sp, #16]
    ldr     r1, [r0, #28]
    str     r1, [sp, #12]
    lsl     r2, r1, #3
    str     r2, [sp, #20]
    mov     r2, #0x400000
    mov     r3, #0
    strd    r2, r3, [sp, #64]
    strd    r2, r3, [sp, #72]
    strd    r2, r3, [sp, #80]
    strd    r2, r3, [sp, #88]
    cmp     r1, #0
    ble     .Lsp_end
.Lsp_row:
    ldr     r1, [sp, #8]
    str     r1, [sp, #4]
    mov     r1, #0
    str     r1, [sp, #24]
    SP_INIT
.Lsp_run:
    ldr     r3, [sp, #4]
    ldm     r3!, {r0, r2, r4, r5}   @ pairs offset, X offset, block entry, passes | flush
    str     r3, [sp, #4]
    cmp     r5, #0
    beq     .Lsp_fin
    bpl     2f
    ldr     r7, [sp, #24]
    SP_FLUSH1 r8, r9, 32
    SP_FLUSH1 r10, r11, 40
    SP_FLUSH1 r12, lr, 48
    SP_FLUSH1 r1, r6, 56
    mov     r7, #1
    str     r7, [sp, #24]
    SP_INIT
    ldr     r3, [sp, #4]
    sub     r3, r3, #16
    ldm     r3, {r0, r2, r4, r5}
    bic     r5, r5, #0x80000000
2:
    str     r5, [sp, #28]           @ passes through the block
    ldr     r3, [sp, #0]
    add     r0, r0, r3              @ p
    ldr     r3, [sp, #92 + 8]       @ X (saved in the frame, see entry)
    add     r2, r2, r3
    bx      r4
    .align  2
    .global mcu_sp_blk
    .type   mcu_sp_blk, %function
mcu_sp_blk:
.Lsp_blk:
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
    SP_ONE
.Lsp_blk_end:
    ldr     r3, [sp, #28]
    subs    r3, r3, #1
    str     r3, [sp, #28]
    bne     .Lsp_blk
    b       .Lsp_run
.Lsp_fin:
    SP_FIELDS r8, r9, r0, r2
    SP_FIELDS r10, r11, r3, r4
    SP_FIELDS r12, lr, r5, r7
    SP_FIELDS r1, r6, r8, r9
    ldr     r6, [sp, #24]
    cmp     r6, #0
    beq     4f
    SP_ADDSUM r0, 32
    SP_ADDSUM r2, 36
    SP_ADDSUM r3, 40
    SP_ADDSUM r4, 44
    SP_ADDSUM r5, 48
    SP_ADDSUM r7, 52
    SP_ADDSUM r8, 56
    SP_ADDSUM r9, 60
4:
    ldr     r6, [sp, #16]
    ldr     r1, [sp, #20]
    strd    r0, r2, [r6]
    add     r10, r6, r1
    strd    r3, r4, [r10]
    add     r10, r10, r1
    strd    r5, r7, [r10]
    add     r10, r10, r1
    strd    r8, r9, [r10]
    add     r6, r6, #8
    str     r6, [sp, #16]
    ldrd    r10, r11, [sp, #104]    @ row bytes, descriptor row bytes
    ldm     sp, {r0, r1, r2, r3}    @ pairs row, -, row descriptors, rows left
    add     r0, r0, r10
    add     r2, r2, r11
    subs    r3, r3, #1
    stm     sp, {r0, r1, r2, r3}
    bne     .Lsp_row
.Lsp_end:
    add     sp, sp, #112
    pop     {r4-r11, pc}
    .if (.Lsp_blk_end - .Lsp_blk) != 16 * 36
    .error "SP_ONE is not 36 bytes"
    .endif
    .size   mcu_sp_rows4, .-mcu_sp_rows4

/* void mcu_sp_pack(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *X);
 * X[4 * c] = x0[c] + x1[c] * 2^23 for c < n (n % 4 == 0, x0 / x1 any alignment) */
    .align  2
    .global mcu_sp_pack
    .type   mcu_sp_pack, %function
    .thumb_func
mcu_sp_pack:
    push    {r4-r7}
    lsrs    r2, r2, #2
    beq     2f
1:
    ldr     r4, [r0], #4
    ldr     r5, [r1], #4
    sxtb    r6, r4
    sxtb    r7, r5
    add     r6, r6, r7, lsl #23
    str     r6, [r3], #16
    sxtb    r6, r4, ror #8
    sxtb    r7, r5, ror #8
    add     r6, r6, r7, lsl #23
    str     r6, [r3], #16
    sxtb    r6, r4, ror #16
    sxtb    r7, r5, ror #16
    add     r6, r6, r7, lsl #23
    str     r6, [r3], #16
    asr     r6, r4, #24
    asr     r7, r5, #24
    add     r6, r6, r7, lsl #23
    str     r6, [r3], #16
    subs    r2, r2, #1
    bne     1b
2:
    pop     {r4-r7}
    bx      lr
    .size   mcu_sp_pack, .-mcu_sp_pack

/* void mcu_sp_pack1(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *Y);
 * Y[c] = x0[c] + x1[c] * 2^23 for c < n (n % 4 == 0): contiguous words */
    .align  2
    .global mcu_sp_pack1
    .type   mcu_sp_pack1, %function
    .thumb_func
mcu_sp_pack1:
    push    {r4-r9}
    lsrs    r2, r2, #2
    beq     2f
1:
    ldr     r4, [r0], #4
    ldr     r5, [r1], #4
    sxtb    r6, r4
    sxtb    r7, r5
    add     r6, r6, r7, lsl #23
    sxtb    r7, r4, ror #8
    sxtb    r8, r5, ror #8
    add     r7, r7, r8, lsl #23
    sxtb    r8, r4, ror #16
    sxtb    r9, r5, ror #16
    add     r8, r8, r9, lsl #23
    asr     r9, r5, #24
    asr     r4, r4, #24
    add     r9, r4, r9, lsl #23
    stmia   r3!, {r6-r9}
    subs    r2, r2, #1
    bne     1b
2:
    pop     {r4-r9}
    bx      lr
    .size   mcu_sp_pack1, .-mcu_sp_pack1

/* void mcu_sp_copy(const int32_t *Y, int32_t n, int32_t *X);
 * X[4 * c] = Y[c] for c < n (n % 4 == 0) */
    .align  2
    .global mcu_sp_copy
    .type   mcu_sp_copy, %function
    .thumb_func
mcu_sp_copy:
    push    {r4-r7}
    lsrs    r1, r1, #2
    beq     2f
1:
    ldmia   r0!, {r4-r7}
    str     r4, [r2], #16
    str     r5, [r2], #16
    str     r6, [r2], #16
    str     r7, [r2], #16
    subs    r1, r1, #1
    bne     1b
2:
    pop     {r4-r7}
    bx      lr
    .size   mcu_sp_copy, .-mcu_sp_copy
#endif

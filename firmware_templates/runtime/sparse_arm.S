/* Cortex-M4/M7 inner loop of the row-sparse kernels (see sparse.c):
 *
 * typedef struct { const uint8_t *p, *end; const int32_t *X; } mcu_sp_run_t;
 * void mcu_sp_acc3(const mcu_sp_run_t *runs, int32_t nr, int64_t *acc);
 *
 * For each run, entries are byte pairs (column, int8 value) in [p, end); the
 * column indexes X in steps of 16 bytes (three packed pixel-pair words + pad):
 *   acc[q] += value * X[4 * column + q]   (q = 0, 1, 2; signed 32x32 -> 64)
 * 7 instructions per entry (6 MACs), loop unrolled twice. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
    .syntax unified
    .thumb
    .text

.macro SP_ONE
    ldrsb   r7, [r0, #1]
    ldrb    r3, [r0], #2
    add     r3, r2, r3, lsl #4
    ldm     r3, {r4, r5, r6}
    smlal   r8, r9, r4, r7
    smlal   r10, r11, r5, r7
    smlal   r12, lr, r6, r7
.endm

    .align  2
    .global mcu_sp_acc3
    .type   mcu_sp_acc3, %function
    .thumb_func
mcu_sp_acc3:
    push    {r4-r11, lr}
    sub     sp, sp, #16
    str     r0, [sp, #0]            @ next run
    str     r1, [sp, #4]            @ runs left
    str     r2, [sp, #8]            @ acc
    ldm     r2, {r8-r12, lr}
.Lsp_run:
    ldr     r3, [sp, #4]
    subs    r3, r3, #1
    bmi     .Lsp_done
    str     r3, [sp, #4]
    ldr     r3, [sp, #0]
    ldm     r3!, {r0, r1, r2}
    str     r3, [sp, #0]
    subs    r3, r1, r0
    beq     .Lsp_run
    tst     r3, #2                  @ odd number of entries: one first
    beq     1f
    SP_ONE
    cmp     r0, r1
    beq     .Lsp_run
1:
    SP_ONE
    SP_ONE
    cmp     r0, r1
    bne     1b
    b       .Lsp_run
.Lsp_done:
    ldr     r2, [sp, #8]
    stm     r2, {r8-r12, lr}
    add     sp, sp, #16
    pop     {r4-r11, pc}
    .size   mcu_sp_acc3, .-mcu_sp_acc3
#endif

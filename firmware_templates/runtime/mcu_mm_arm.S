/* Cortex-M4/M7 DSP inner kernel for CONV_2D (see conv.c):
 *
 * void mcu_mm_s8s16_2col(const int8_t *w, const int16_t *cols, int32_t K,
 *                        int32_t n_pairs, int32_t *acc);
 *
 * For each pair of output channels (filter rows w, w + K, then w + 2K, ...)
 * and the two im2col columns in `cols` (interleaved per group of four k:
 * col0 word0, col0 word1, col1 word0, col1 word1, each word two int16 in the
 * MCU_PERM4 order), writes the four sums over k < (K & ~3):
 *   acc[4p + 0] = row 2p . col0,   acc[4p + 1] = row 2p . col1,
 *   acc[4p + 2] = row 2p+1 . col0, acc[4p + 3] = row 2p+1 . col1.
 * Filter rows may be unaligned (LDR), cols must be word aligned (LDM).
 * 15 instructions per 16 MACs in the loop, unrolled twice. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
    .syntax unified
    .thumb
    .text
    .align  2
    .global mcu_mm_s8s16_2col
    .type   mcu_mm_s8s16_2col, %function
    .thumb_func
mcu_mm_s8s16_2col:
    push    {r4-r11, lr}
    ldr     ip, [sp, #36]           @ acc
    sub     sp, sp, #16
    str     r1, [sp, #0]            @ cols
    str     r2, [sp, #4]            @ K
    str     ip, [sp, #8]            @ acc write pointer
    str     r3, [sp, #12]           @ pairs left
    cmp     r3, #0
    ble     .Ldone

.macro GROUP
    ldmia   r2!, {r4-r7}
    ldr     ip, [r0], #4
    sxtb16  lr, ip
    sxtb16  ip, ip, ror #8
    smlad   r8, lr, r4, r8
    smlad   r9, lr, r6, r9
    smlad   r8, ip, r5, r8
    smlad   r9, ip, r7, r9
    ldr     ip, [r1], #4
    sxtb16  lr, ip
    sxtb16  ip, ip, ror #8
    smlad   r10, lr, r4, r10
    smlad   r11, lr, r6, r11
    smlad   r10, ip, r5, r10
    smlad   r11, ip, r7, r11
.endm

.Lpair:
    ldr     r2, [sp, #0]            @ a = cols
    ldr     ip, [sp, #4]            @ K
    add     r1, r0, ip              @ w1 = w0 + K
    mov     r8, #0
    mov     r9, #0
    mov     r10, #0
    mov     r11, #0
    lsrs    r3, ip, #3              @ K / 8 double groups; C = bit 2 of K
    bcc     1f
    GROUP                           @ odd group first
1:
    cmp     r3, #0
    beq     .Lstore
2:
    GROUP
    GROUP
    subs    r3, r3, #1
    bne     2b
.Lstore:
    ldr     ip, [sp, #8]
    stmia   ip!, {r8-r11}
    str     ip, [sp, #8]
    ldr     ip, [sp, #4]
    and     ip, ip, #3
    add     r0, r1, ip              @ next w0 = w1 start + K
    ldr     r3, [sp, #12]
    subs    r3, r3, #1
    str     r3, [sp, #12]
    bne     .Lpair
.Ldone:
    add     sp, sp, #16
    pop     {r4-r11, pc}
    .size   mcu_mm_s8s16_2col, .-mcu_mm_s8s16_2col
#endif

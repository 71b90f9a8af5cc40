/* Cortex-M4/M7 DSP inner loop of the event-driven SNN synapses (see snn.c):
 *
 * void mcu_snn_add_col_s8(int32_t *acc, const int8_t *col, int32_t n);
 *
 * acc[o] += col[o] for o < (n & ~3): four weights per LDR, four accumulators per
 * LDM/STM, each weight added sign-extended from its byte by one SXTAB (ror 0/8/16/24).
 * acc word aligned, col any alignment. 16 instructions per 8 outputs in the loop
 * (2.0 per synaptic event), unrolled twice.
 *
 * void mcu_snn_mac_col_s8(int32_t *acc, const int8_t *col, int32_t n, int32_t x);
 *
 * acc[o] += x * col[o] for o < (n & ~3), x in [-128, 127] (analog inputs, pooled counts):
 * SXTB16 of the weight word and of it rotated by 8, then SMLABB/SMLATB per weight;
 * 9 instructions per 4 outputs plus the loop branch.
 *
 * The host build (MCU_EMULATE_DSP) has C models of both in snn.c. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
    .syntax unified
    .thumb
    .text
    .align  2
    .global mcu_snn_add_col_s8
    .type   mcu_snn_add_col_s8, %function
    .thumb_func
mcu_snn_add_col_s8:
    push    {r4-r7}
    lsrs    r2, r2, #3              @ r2 = n / 8, carry = bit 2 of n
    bcc     2f
    ldr     r3, [r1], #4
    ldm     r0, {r4-r7}
    sxtab   r4, r4, r3
    sxtab   r5, r5, r3, ror #8
    sxtab   r6, r6, r3, ror #16
    sxtab   r7, r7, r3, ror #24
    stmia   r0!, {r4-r7}
2:  cbz     r2, 3f
1:  ldr     r3, [r1], #4
    ldm     r0, {r4-r7}
    sxtab   r4, r4, r3
    sxtab   r5, r5, r3, ror #8
    sxtab   r6, r6, r3, ror #16
    sxtab   r7, r7, r3, ror #24
    stmia   r0!, {r4-r7}
    ldr     r3, [r1], #4
    ldm     r0, {r4-r7}
    sxtab   r4, r4, r3
    sxtab   r5, r5, r3, ror #8
    sxtab   r6, r6, r3, ror #16
    sxtab   r7, r7, r3, ror #24
    stmia   r0!, {r4-r7}
    subs    r2, r2, #1
    bne     1b
3:  pop     {r4-r7}
    bx      lr
    .size   mcu_snn_add_col_s8, .-mcu_snn_add_col_s8

    .align  2
    .global mcu_snn_mac_col_s8
    .type   mcu_snn_mac_col_s8, %function
    .thumb_func
mcu_snn_mac_col_s8:
    push    {r4-r7, lr}
    lsrs    r2, r2, #2              @ groups of four outputs
    beq     2f
1:  ldr     ip, [r1], #4
    ldm     r0, {r4-r7}
    sxtb16  lr, ip                  @ [w0, w2]
    sxtb16  ip, ip, ror #8          @ [w1, w3]
    smlabb  r4, lr, r3, r4
    smlatb  r6, lr, r3, r6
    smlabb  r5, ip, r3, r5
    smlatb  r7, ip, r3, r7
    stmia   r0!, {r4-r7}
    subs    r2, r2, #1
    bne     1b
2:  pop     {r4-r7, pc}
    .size   mcu_snn_mac_col_s8, .-mcu_snn_mac_col_s8
#endif

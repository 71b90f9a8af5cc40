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
    .section .text.mcu_mm_s8s16_2col, "ax", %progbits
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

/* DEPTHWISE_CONV_2D 3x3 rows (see depthwise_conv.c): raw sums of one output
 * row for nch channels from the interleaved planes x (per channel xstride
 * bytes; per pair of columns jp three words, one per ring slot k, each the
 * int16 pair (j = 2jp, 2jp + 1)). w: six packed weight words per channel;
 * woff[k]: byte offset in a channel's six words of the weight row that ring
 * slot k holds for this output row (8 * ky). acc: [channel][output column].
 *
 * void mcu_dw3x3_acc_s1(const uint32_t *x, const uint32_t *w, const int32_t *woff,
 *                       int32_t *acc, int32_t npairs, int32_t nch, int32_t xstride);
 *     stride 1: two outputs per column pair, 2 * npairs sums per channel
 * void mcu_dw3x3_acc_s2(... same, n instead of npairs):  stride 2, n sums */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro DW_NEXT label
    ldr     r0, [sp, #0]
    ldr     ip, [sp, #60]
    add     r0, r0, ip
    ldr     r1, [sp, #4]
    adds    r1, r1, #24
    ldr     r2, [sp, #8]
    ldr     ip, [sp, #56]
    subs    ip, ip, #1
    str     ip, [sp, #56]
    bne     \label
    add     sp, sp, #16
    pop     {r4-r11, pc}
.endm

    .section .text.mcu_dw3x3_acc_s1, "ax", %progbits
    .align  2
    .global mcu_dw3x3_acc_s1
    .type   mcu_dw3x3_acc_s1, %function
    .thumb_func
mcu_dw3x3_acc_s1:
    push    {r4-r11, lr}
    sub     sp, sp, #16
    str     r2, [sp, #8]
.Lch1:
    str     r0, [sp, #0]
    str     r1, [sp, #4]
    ldm     r2, {r7, r8, r9}
    add     r7, r1, r7
    ldrd    r4, r5, [r7]
    add     r8, r1, r8
    ldrd    r6, r7, [r8]
    add     r9, r1, r9
    ldrd    r8, r9, [r9]
    ldr     lr, [sp, #52]
1:
    ldmia   r0!, {r1, r2, r12}
    smuad   r10, r1, r4
    smultb  r11, r1, r4
    smlad   r10, r2, r6, r10
    smlatb  r11, r2, r6, r11
    smlad   r10, r12, r8, r10
    smlatb  r11, r12, r8, r11
    ldm     r0, {r1, r2, r12}
    smlabt  r10, r1, r5, r10
    smlad   r11, r1, r5, r11
    smlabt  r10, r2, r7, r10
    smlad   r11, r2, r7, r11
    smlabt  r10, r12, r9, r10
    smlad   r11, r12, r9, r11
    stmia   r3!, {r10, r11}
    subs    lr, lr, #1
    bne     1b
    DW_NEXT .Lch1
    .size   mcu_dw3x3_acc_s1, .-mcu_dw3x3_acc_s1

    .section .text.mcu_dw3x3_acc_s2, "ax", %progbits
    .align  2
    .global mcu_dw3x3_acc_s2
    .type   mcu_dw3x3_acc_s2, %function
    .thumb_func
mcu_dw3x3_acc_s2:
    push    {r4-r11, lr}
    sub     sp, sp, #16
    str     r2, [sp, #8]
.Lch2:
    str     r0, [sp, #0]
    str     r1, [sp, #4]
    ldm     r2, {r7, r8, r9}
    add     r7, r1, r7
    ldrd    r4, r5, [r7]
    add     r8, r1, r8
    ldrd    r6, r7, [r8]
    add     r9, r1, r9
    ldrd    r8, r9, [r9]
    ldr     lr, [sp, #52]
1:
    ldmia   r0!, {r1, r2, r12}
    smuad   r10, r1, r4
    smlad   r10, r2, r6, r10
    smlad   r10, r12, r8, r10
    ldm     r0, {r1, r2, r12}
    smlabt  r10, r1, r5, r10
    smlabt  r10, r2, r7, r10
    smlabt  r10, r12, r9, r10
    str     r10, [r3], #4
    subs    lr, lr, #1
    bne     1b
    DW_NEXT .Lch2
    .size   mcu_dw3x3_acc_s2, .-mcu_dw3x3_acc_s2
#endif

/* Requantize and store raw sums, full int8 activation range, every table
 * entry in the fast form (sh >= 0), bias not NULL (see mcu_requant_t):
 *
 * void mcu_rq_store2(const int32_t *acc, int32_t n, const int32_t *bias,
 *                    const mcu_requant_t *rq, int8_t *o0, int8_t *o1);
 *     channels i < n: o0[i] <- acc[2i], o1[i] <- acc[2i + 1]   (CONV_2D)
 * void mcu_rq_store_cols(const int32_t *acc, const int32_t *bias,
 *                        const mcu_requant_t *rq, int8_t *o, int32_t n, int32_t nch,
 *                        int32_t C, int32_t ap);
 *     channels c < nch, i < n: o[i*C + c] <- acc[c*ap/4 + i]  (DEPTHWISE_CONV_2D) */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro RQ_ONE dst
    add     r11, r11, r6
    and     r12, r11, #0x80000000
    adds    r12, r12, r9
    adc     lr, r10, r11, asr #31
    smlal   r12, lr, r11, r7
    asr     lr, lr, r8
    ssat    lr, #8, lr
.endm

    .section .text.mcu_rq_store2, "ax", %progbits
    .align  2
    .global mcu_rq_store2
    .type   mcu_rq_store2, %function
    .thumb_func
mcu_rq_store2:
    push    {r4-r11, lr}
    ldrd    r4, r5, [sp, #36]
    cmp     r1, #0
    ble     2f
1:
    ldr     r6, [r2], #4
    ldmia   r3!, {r7, r8, r9, r10}
    ldr     r11, [r0], #4
    RQ_ONE
    strb    lr, [r4], #1
    ldr     r11, [r0], #4
    RQ_ONE
    strb    lr, [r5], #1
    subs    r1, r1, #1
    bne     1b
2:
    pop     {r4-r11, pc}
    .size   mcu_rq_store2, .-mcu_rq_store2

    .section .text.mcu_rq_store_cols, "ax", %progbits
    .align  2
    .global mcu_rq_store_cols
    .type   mcu_rq_store_cols, %function
    .thumb_func
mcu_rq_store_cols:
    push    {r4-r11, lr}
    sub     sp, sp, #16
    str     r1, [sp, #4]
    str     r2, [sp, #8]
.Lcol:
    str     r0, [sp, #0]
    str     r3, [sp, #12]
    ldr     r1, [sp, #4]
    ldr     r6, [r1], #4
    str     r1, [sp, #4]
    ldr     r2, [sp, #8]
    ldmia   r2!, {r7, r8, r9, r10}
    str     r2, [sp, #8]
    ldr     r1, [sp, #52]
    ldr     r2, [sp, #60]
1:
    ldr     r11, [r0], #4
    RQ_ONE
    strb    lr, [r3]
    add     r3, r3, r2
    subs    r1, r1, #1
    bne     1b
    ldr     r0, [sp, #0]
    ldr     r1, [sp, #64]
    add     r0, r0, r1
    ldr     r3, [sp, #12]
    adds    r3, r3, #1
    ldr     r1, [sp, #56]
    subs    r1, r1, #1
    str     r1, [sp, #56]
    bne     .Lcol
    add     sp, sp, #16
    pop     {r4-r11, pc}
    .size   mcu_rq_store_cols, .-mcu_rq_store_cols
#endif

/* FULLY_CONNECTED four rows at a time (see fully_connected.c):
 *
 * void mcu_fc_s8s16_4row(const int8_t *w, const int16_t *xs, int32_t K, int32_t n4,
 *                        int32_t n_groups, int32_t *acc, const int32_t *init);
 *
 * For each group g of four filter rows (w + (4g + r) * K, r < 4) sets acc[4g + r] to
 * init[4g + r] (the bias, or the partial sums: init == acc) plus the dot product of the row's first 4 * n4 bytes with the int16 input block xs
 * (MCU_PERM4 order, word aligned): each pair of input words is loaded once for the
 * four rows. Rows may be unaligned (LDR). 22 instructions per 16 MACs in the loop. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro FC4
    ldmia   r1!, {r4, r5}
    ldr     ip, [r0, r2]            @ row 1
    ldr     r7, [r0], #4            @ row 0
    sxtb16  lr, r7
    sxtb16  r7, r7, ror #8
    smlad   r8, lr, r4, r8
    smlad   r8, r7, r5, r8
    sxtb16  lr, ip
    sxtb16  ip, ip, ror #8
    smlad   r9, lr, r4, r9
    smlad   r9, ip, r5, r9
    ldr     ip, [r6, r2]            @ row 3
    ldr     r7, [r6], #4            @ row 2
    sxtb16  lr, r7
    sxtb16  r7, r7, ror #8
    smlad   r10, lr, r4, r10
    smlad   r10, r7, r5, r10
    sxtb16  lr, ip
    sxtb16  ip, ip, ror #8
    smlad   r11, lr, r4, r11
    smlad   r11, ip, r5, r11
.endm

    .section .text.mcu_fc_s8s16_4row, "ax", %progbits
    .align  2
    .global mcu_fc_s8s16_4row
    .type   mcu_fc_s8s16_4row, %function
    .thumb_func
mcu_fc_s8s16_4row:
    push    {r4-r11, lr}
    ldr     ip, [sp, #36]           @ n_groups
    cmp     ip, #0
    ble     .Lfc_done
    sub     sp, sp, #24
    str     r0, [sp, #0]            @ this group's row 0
    str     r1, [sp, #4]            @ xs
    str     r3, [sp, #8]            @ n4
    str     ip, [sp, #12]           @ groups left
    ldr     ip, [sp, #64]           @ acc
    str     ip, [sp, #16]
    ldr     ip, [sp, #68]           @ init
    str     ip, [sp, #20]
.Lfc_group:
    ldr     ip, [sp, #20]
    ldmia   ip!, {r8-r11}
    str     ip, [sp, #20]
    add     r6, r0, r2, lsl #1      @ row 2
    ldr     r1, [sp, #4]
    ldr     r3, [sp, #8]
    lsrs    r3, r3, #1              @ pairs of column groups; C = an odd one
    bcc     1f
    FC4
1:
    cmp     r3, #0
    beq     .Lfc_store
2:
    FC4
    FC4
    subs    r3, r3, #1
    bne     2b
.Lfc_store:
    ldr     ip, [sp, #16]
    stmia   ip!, {r8-r11}
    str     ip, [sp, #16]
    ldr     r0, [sp, #0]
    add     r0, r0, r2, lsl #2      @ next group: 4 rows on
    str     r0, [sp, #0]
    ldr     ip, [sp, #12]
    subs    ip, ip, #1
    str     ip, [sp, #12]
    bne     .Lfc_group
    add     sp, sp, #24
.Lfc_done:
    pop     {r4-r11, pc}
    .size   mcu_fc_s8s16_4row, .-mcu_fc_s8s16_4row
#endif

/* FULLY_CONNECTED on the packed filter (fully_connected.c, mcu_fc_s8_pack):
 *
 * void mcu_fc_s8_4row_pk(const int8_t *wp, const int8_t *x, int32_t K, int32_t n_groups,
 *                        int32_t *acc, const int32_t *init);
 *
 * Group g (wp + 4gK, word aligned): acc[4g + r] = init[4g + r] + row r . x over the first
 * K & ~3 columns, the raw int8 input (x may be unaligned: LDR) sign-extended in registers
 * once for the four rows, the four rows' words by one LDM: 20 instructions per 16 MACs,
 * no int16 copy of the input. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro PK4
    ldr     r4, [r1], #4
    ldmia   r0!, {r5-r8}
    sxtb16  r3, r4
    sxtb16  r4, r4, ror #8
    sxtb16  ip, r5
    sxtb16  r5, r5, ror #8
    smlad   r9, ip, r3, r9
    smlad   r9, r5, r4, r9
    sxtb16  ip, r6
    sxtb16  r6, r6, ror #8
    smlad   r10, ip, r3, r10
    smlad   r10, r6, r4, r10
    sxtb16  ip, r7
    sxtb16  r7, r7, ror #8
    smlad   r11, ip, r3, r11
    smlad   r11, r7, r4, r11
    sxtb16  ip, r8
    sxtb16  r8, r8, ror #8
    smlad   lr, ip, r3, lr
    smlad   lr, r8, r4, lr
.endm

    .section .text.mcu_fc_s8_4row_pk, "ax", %progbits
    .align  2
    .global mcu_fc_s8_4row_pk
    .type   mcu_fc_s8_4row_pk, %function
    .thumb_func
mcu_fc_s8_4row_pk:
    push    {r4-r11, lr}
    cmp     r3, #0
    ble     .Lpk_done
    sub     sp, sp, #28
    str     r0, [sp, #0]            @ this group's words
    str     r1, [sp, #4]            @ x
    lsr     ip, r2, #2
    str     ip, [sp, #8]            @ words per row
    str     r3, [sp, #12]           @ groups left
    ldr     ip, [sp, #64]
    str     ip, [sp, #16]           @ acc
    ldr     ip, [sp, #68]
    str     ip, [sp, #20]           @ init
    lsl     ip, r2, #2
    str     ip, [sp, #24]           @ group stride 4K
.Lpk_group:
    ldr     r2, [sp, #20]
    ldmia   r2!, {r9-r11, lr}
    str     r2, [sp, #20]
    ldr     r0, [sp, #0]
    ldr     r1, [sp, #4]
    ldr     r2, [sp, #8]
    lsrs    r2, r2, #1
    bcc     1f
    PK4
1:
    cmp     r2, #0
    beq     3f
2:
    PK4
    PK4
    subs    r2, r2, #1
    bne     2b
3:
    ldr     r2, [sp, #16]
    stmia   r2!, {r9-r11, lr}
    str     r2, [sp, #16]
    ldr     r0, [sp, #0]
    ldr     r2, [sp, #24]
    add     r0, r0, r2
    str     r0, [sp, #0]
    ldr     r2, [sp, #12]
    subs    r2, r2, #1
    str     r2, [sp, #12]
    bne     .Lpk_group
    add     sp, sp, #28
.Lpk_done:
    pop     {r4-r11, pc}
    .size   mcu_fc_s8_4row_pk, .-mcu_fc_s8_4row_pk
#endif

/* CONV_2D, one filter row against four im2col columns with the requantization
 * fused into the store (see conv.c):
 *
 * void mcu_conv_s8s16_4px(const int8_t *w, const int16_t *cols, int32_t K,
 *                         int32_t n_rows, const int32_t *bias, const mcu_requant_t *rq,
 *                         int8_t *out, int32_t C);
 *
 * K % 4 == 0. cols: per group of four k, eight words: pixel j's two words (MCU_PERM4
 * order) at 2j, 2j + 1 (word aligned). For each row r < n_rows (filter rows w + r * K,
 * may be unaligned) the sums s_j = bias[r] + row . col_j (mod 2^32) are requantized with
 * rq[r] (fast form, full int8 range) and stored to out[j * C + r]. Each filter word is
 * loaded and sign-extended once for the four pixels: 13 instructions per 16 MACs. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro G4
    ldr     ip, [r0], #4
    ldmia   r1!, {r4-r7}
    sxtb16  lr, ip
    sxtb16  ip, ip, ror #8
    smlad   r8, lr, r4, r8
    smlad   r8, ip, r5, r8
    smlad   r9, lr, r6, r9
    smlad   r9, ip, r7, r9
    ldmia   r1!, {r4-r7}
    smlad   r10, lr, r4, r10
    smlad   r10, ip, r5, r10
    smlad   r11, lr, r6, r11
    smlad   r11, ip, r7, r11
.endm

@ requantize \x with mult r4, sh r5, rlo r6, rhi r7 into lr (saturated to int8)
.macro RQ4 x
    and     ip, \x, #0x80000000
    adds    ip, ip, r6
    adc     lr, r7, \x, asr #31
    smlal   ip, lr, \x, r4
    asr     lr, lr, r5
    ssat    lr, #8, lr
.endm

    .section .text.mcu_conv_s8s16_4px, "ax", %progbits
    .align  2
    .global mcu_conv_s8s16_4px
    .type   mcu_conv_s8s16_4px, %function
    .thumb_func
mcu_conv_s8s16_4px:
    push    {r4-r11, lr}
    cmp     r3, #0
    ble     .Lc4_ret
    sub     sp, sp, #24
    str     r1, [sp, #0]            @ cols
    lsrs    r2, r2, #2
    str     r2, [sp, #4]            @ K / 4 groups
    str     r3, [sp, #8]            @ rows left
    ldr     ip, [sp, #60]
    str     ip, [sp, #12]           @ bias
    ldr     ip, [sp, #64]
    str     ip, [sp, #16]           @ rq
    ldr     r3, [sp, #68]           @ out (+ row)
    ldr     ip, [sp, #72]
    str     ip, [sp, #20]           @ C
.Lc4_row:
    ldr     ip, [sp, #12]
    ldr     r8, [ip], #4
    str     ip, [sp, #12]
    mov     r9, r8
    mov     r10, r8
    mov     r11, r8
    ldr     r1, [sp, #0]
    ldr     r2, [sp, #4]
    lsrs    r2, r2, #1              @ pairs of groups; C = an odd one
    bcc     1f
    G4
1:
    cbz     r2, 3f
2:
    G4
    G4
    subs    r2, r2, #1
    bne     2b
3:
    ldr     ip, [sp, #16]
    ldmia   ip!, {r4-r7}            @ mult, sh, rlo, rhi
    str     ip, [sp, #16]
    ldr     r2, [sp, #20]           @ C
    RQ4     r8
    strb    lr, [r3]
    RQ4     r9
    strb    lr, [r3, r2]
    add     r1, r3, r2, lsl #1
    RQ4     r10
    strb    lr, [r1]
    RQ4     r11
    strb    lr, [r1, r2]
    adds    r3, r3, #1
    ldr     ip, [sp, #8]
    subs    ip, ip, #1
    str     ip, [sp, #8]
    bne     .Lc4_row
    add     sp, sp, #24
.Lc4_ret:
    pop     {r4-r11, pc}
    .size   mcu_conv_s8s16_4px, .-mcu_conv_s8s16_4px
#endif

/* CONV_2D, one filter row against six im2col columns, requantization fused:
 *
 * void mcu_conv_s8s16_6px(const int8_t *w, const int16_t *cols, int32_t K,
 *                         int32_t n_rows, const int32_t *bias, const mcu_requant_t *rq,
 *                         int8_t *out, int32_t C);
 *
 * As mcu_conv_s8s16_4px with six pixels: cols holds twelve words per group of four k
 * (pixel j's two words at 2j, 2j + 1), out[j * C + r] for j < 6. Each filter word is
 * loaded and sign-extended once for the six pixels, the columns come by three LDMs of
 * four words: 18 instructions per 24 MACs (12 per 16), the loop unrolled four times
 * (entered by a computed jump for K / 4 % 4), its end the end of the columns. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro G6
    ldr     r9, [r0], #4
    ldmia   r1!, {r10-r12, lr}
    sxtb16  r8, r9
    sxtb16  r9, r9, ror #8
    smlad   r2, r8, r10, r2
    smlad   r2, r9, r11, r2
    smlad   r3, r8, r12, r3
    smlad   r3, r9, lr, r3
    ldmia   r1!, {r10-r12, lr}
    smlad   r4, r8, r10, r4
    smlad   r4, r9, r11, r4
    smlad   r5, r8, r12, r5
    smlad   r5, r9, lr, r5
    ldmia   r1!, {r10-r12, lr}
    smlad   r6, r8, r10, r6
    smlad   r6, r9, r11, r6
    smlad   r7, r8, r12, r7
    smlad   r7, r9, lr, r7
.endm

@ requantize \x in place with mult r8, sh r9, rlo r10, rhi r11 (saturated to int8)
.macro RQ6 x
    and     ip, \x, #0x80000000
    adds    ip, ip, r10
    adc     lr, r11, \x, asr #31
    smlal   ip, lr, \x, r8
    asr     lr, lr, r9
    ssat    \x, #8, lr
.endm

    .section .text.mcu_conv_s8s16_6px, "ax", %progbits
    .align  2
    .global mcu_conv_s8s16_6px
    .type   mcu_conv_s8s16_6px, %function
    .thumb_func
mcu_conv_s8s16_6px:
    push    {r4-r11, lr}
    cmp     r3, #0
    ble     .Lc6_ret
    sub     sp, sp, #32
    str     r1, [sp, #0]            @ cols
    add     ip, r2, r2, lsl #1
    add     ip, r1, ip, lsl #2
    str     ip, [sp, #4]            @ end of the columns: cols + 12 K bytes
    ldr     ip, [sp, #68]
    str     ip, [sp, #12]           @ bias
    ldr     ip, [sp, #72]
    str     ip, [sp, #16]           @ rq
    add     ip, ip, r3, lsl #4
    str     ip, [sp, #20]           @ end of rq
    ldr     ip, [sp, #76]
    str     ip, [sp, #24]           @ out (+ row)
    ldr     ip, [sp, #80]
    str     ip, [sp, #28]           @ C
    lsls    r2, r2, #29             @ C = bit 1, N = bit 0 of K / 4
    bcs     1f
    bmi     3f
    adr.w   ip, .Lc6_e0
    b       2f
3:  adr.w   ip, .Lc6_e3
    b       2f
1:  bmi     4f
    adr.w   ip, .Lc6_e2
    b       2f
4:  adr.w   ip, .Lc6_e1
2:  orr     ip, ip, #1
    str     ip, [sp, #8]            @ loop entry (Thumb)
.Lc6_row:
    ldr     ip, [sp, #12]
    ldr     r2, [ip], #4
    str     ip, [sp, #12]
    mov     r3, r2
    mov     r4, r2
    mov     r5, r2
    mov     r6, r2
    mov     r7, r2
    ldr     r1, [sp, #0]
    ldr     pc, [sp, #8]
.Lc6_e0:
    G6
.Lc6_e1:
    G6
.Lc6_e2:
    G6
.Lc6_e3:
    G6
    ldr     r10, [sp, #4]
    cmp     r1, r10
    bne     .Lc6_e0
    ldr     r1, [sp, #16]
    ldmia   r1!, {r8-r11}           @ mult, sh, rlo, rhi
    str     r1, [sp, #16]
    RQ6     r2
    RQ6     r3
    RQ6     r4
    RQ6     r5
    RQ6     r6
    RQ6     r7
    ldr     lr, [sp, #20]
    cmp     r1, lr                  @ flags kept to the bne below
    ldr     r1, [sp, #24]
    ldr     r8, [sp, #28]           @ C
    strb    r2, [r1]
    strb    r3, [r1, r8]
    strb    r4, [r1, r8, lsl #1]
    strb    r6, [r1, r8, lsl #2]
    add     ip, r1, r8
    add     ip, ip, r8, lsl #1
    strb    r5, [ip]
    strb    r7, [ip, r8, lsl #1]
    add.w   r1, r1, #1
    str     r1, [sp, #24]
    bne     .Lc6_row
    add     sp, sp, #32
.Lc6_ret:
    pop     {r4-r11, pc}
    .size   mcu_conv_s8s16_6px, .-mcu_conv_s8s16_6px
#endif

/* DEPTHWISE_CONV_2D 3x3 stride 1 with the requantization fused into the store (see
 * depthwise_conv.c; the layout of mcu_dw3x3_acc_s1):
 *
 * void mcu_dw3x3_s1_rq(const uint32_t *x, const uint32_t *w, const int32_t *woff,
 *                      int8_t *out, int32_t out_w, int32_t nch, int32_t xstride,
 *                      int32_t C, const int32_t *bias, const mcu_requant_t *rq);
 *
 * For channels c < nch: out[ox * C + c] for ox < out_w, requantized with rq[c] (fast
 * form, full int8 range) after adding bias[c]. Per pair of outputs the weights and the
 * channel's parameters come back from the stack frame by LDM. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
@ frame: 0 mult, 4 sh, 8 rlo, 12 bias, 16 rhi, 20 C, 24..44 weights (ring slot order),
@ 48 x, 52 w, 56 out, 60 woff, 64 bias ptr, 68 rq ptr, 72 channels left;
@ arguments from 116: out_w, nch, xstride, C, bias, rq
.macro RQD x
    add     \x, \x, r7
    and     r1, \x, #0x80000000
    adds    r1, r1, r6
    adc     r2, r8, \x, asr #31
    smlal   r1, r2, \x, r4
    asr     r2, r2, r5
    ssat    r2, #8, r2
.endm

    .section .text.mcu_dw3x3_s1_rq, "ax", %progbits
    .align  2
    .global mcu_dw3x3_s1_rq
    .type   mcu_dw3x3_s1_rq, %function
    .thumb_func
mcu_dw3x3_s1_rq:
    push    {r4-r11, lr}
    sub     sp, sp, #80
    str     r0, [sp, #48]
    str     r1, [sp, #52]
    str     r3, [sp, #56]
    str     r2, [sp, #60]
    ldr     ip, [sp, #132]
    str     ip, [sp, #64]
    ldr     ip, [sp, #136]
    str     ip, [sp, #68]
    ldr     ip, [sp, #120]
    str     ip, [sp, #72]
    ldr     ip, [sp, #128]
    str     ip, [sp, #20]
.Ldq_ch:
    ldr     r2, [sp, #60]
    ldm     r2, {r7, r8, r9}
    ldr     r1, [sp, #52]
    add     r7, r1, r7
    ldrd    r4, r5, [r7]
    add     r8, r1, r8
    ldrd    r6, r7, [r8]
    add     r9, r1, r9
    ldrd    r8, r9, [r9]
    adds    r1, r1, #24
    str     r1, [sp, #52]
    add     ip, sp, #24
    stm     ip, {r4-r9}
    ldr     r1, [sp, #64]
    ldr     r10, [r1], #4           @ bias
    str     r1, [sp, #64]
    ldr     r1, [sp, #68]
    ldmia   r1!, {r0, r2, r3, r11}  @ mult, sh, rlo, rhi
    str     r1, [sp, #68]
    stm     sp, {r0, r2, r3, r10, r11}
    ldr     r0, [sp, #48]
    ldr     r3, [sp, #56]
    ldr     lr, [sp, #116]
    lsrs    lr, lr, #1              @ full pairs
    beq     .Ldq_single
.Ldq_pair:
    ldmia   r0!, {r1, r2, r12}
    smuad   r10, r1, r4
    smultb  r11, r1, r4
    smlad   r10, r2, r6, r10
    smlatb  r11, r2, r6, r11
    smlad   r10, r12, r8, r10
    smlatb  r11, r12, r8, r11
    ldm     r0, {r1, r2, r12}
    smlabt  r10, r1, r5, r10
    smlad   r11, r1, r5, r11
    smlabt  r10, r2, r7, r10
    smlad   r11, r2, r7, r11
    smlabt  r10, r12, r9, r10
    smlad   r11, r12, r9, r11
    ldm     sp, {r4-r8, r12}        @ mult, sh, rlo, bias, rhi, C
    RQD     r10
    strb    r2, [r3]
    RQD     r11
    strb    r2, [r3, r12]
    add     r3, r3, r12, lsl #1
    add     r12, sp, #24
    ldm     r12, {r4-r9}
    subs    lr, lr, #1
    bne     .Ldq_pair
.Ldq_single:
    ldr     ip, [sp, #116]
    tst     ip, #1
    beq     .Ldq_next
    ldmia   r0!, {r1, r2, r12}
    smuad   r10, r1, r4
    smlad   r10, r2, r6, r10
    smlad   r10, r12, r8, r10
    ldm     r0, {r1, r2, r12}
    smlabt  r10, r1, r5, r10
    smlabt  r10, r2, r7, r10
    smlabt  r10, r12, r9, r10
    ldm     sp, {r4-r8, r12}
    RQD     r10
    strb    r2, [r3]
.Ldq_next:
    ldr     r0, [sp, #48]
    ldr     ip, [sp, #124]
    add     r0, r0, ip
    str     r0, [sp, #48]
    ldr     r3, [sp, #56]
    adds    r3, r3, #1
    str     r3, [sp, #56]
    ldr     ip, [sp, #72]
    subs    ip, ip, #1
    str     ip, [sp, #72]
    bne     .Ldq_ch
    add     sp, sp, #80
    pop     {r4-r11, pc}
    .size   mcu_dw3x3_s1_rq, .-mcu_dw3x3_s1_rq
#endif

/* DEPTHWISE_CONV_2D direct form (depthwise_conv.c, mcu_dw_conv2d_s8_direct):
 *
 * void mcu_dwd_px(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npx,
 *                 int32_t step, int8_t *out, int32_t C, const int32_t *bias,
 *                 const mcu_requant_t *rq);
 *
 * For pixel i < npx: four channel sums from bias[0..3] over `taps` words at
 * buf + i * step (raw input, four channels each) against w (the group's packed
 * weights), requantized with rq[0..3] (fast form, full int8 range) and stored to
 * out + i * C. 10 instructions per tap (4 MACs). */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro TAPD
    ldr     r4, [r1], #4
    ldr     r3, [r0], #4
    sxtb16  r5, r4
    sxtb16  r4, r4, ror #8
    sxtb16  ip, r3
    sxtb16  r3, r3, ror #8
    smlabb  r6, r5, ip, r6
    smlatt  r8, r5, ip, r8
    smlabb  r7, r4, r3, r7
    smlatt  r9, r4, r3, r9
.endm

@ \x requantized with mult r0, sh r1, rlo r2, rhi r3 into r5 (saturated to int8)
.macro RQX x
    and     r4, \x, #0x80000000
    adds    r4, r4, r2
    adc     r5, r3, \x, asr #31
    smlal   r4, r5, \x, r0
    asr     r5, r5, r1
    ssat    r5, #8, r5
.endm

    .section .text.mcu_dwd_px, "ax", %progbits
    .align  2
    .global mcu_dwd_px
    .type   mcu_dwd_px, %function
    .thumb_func
mcu_dwd_px:
    push    {r4-r11, lr}
    cmp     r3, #0
    ble     .Ldwd_ret
    sub     sp, sp, #36
    str     r0, [sp, #0]            @ this pixel's taps
    str     r1, [sp, #4]            @ weights
    str     r2, [sp, #8]            @ taps
    str     r3, [sp, #12]           @ pixels left
    ldr     ip, [sp, #72]
    str     ip, [sp, #16]           @ step
    ldr     ip, [sp, #76]
    str     ip, [sp, #20]           @ out
    ldr     ip, [sp, #80]
    str     ip, [sp, #24]           @ C
    ldr     ip, [sp, #84]
    str     ip, [sp, #28]           @ bias
    ldr     ip, [sp, #88]
    str     ip, [sp, #32]           @ rq
.Ldwd_px:
    ldr     lr, [sp, #28]
    ldm     lr, {r6-r9}
    ldr     r0, [sp, #0]
    ldr     r1, [sp, #4]
    ldr     r2, [sp, #8]
    subs    r2, r2, #3
    blt     2f
1:
    TAPD
    TAPD
    TAPD
    subs    r2, r2, #3
    bge     1b
2:
    adds    r2, r2, #3
    beq     4f
3:
    TAPD
    subs    r2, r2, #1
    bne     3b
4:
    ldr     lr, [sp, #32]
    ldr     r10, [sp, #20]
    ldmia   lr!, {r0-r3}
    RQX     r6
    strb    r5, [r10, #0]
    ldmia   lr!, {r0-r3}
    RQX     r7
    strb    r5, [r10, #1]
    ldmia   lr!, {r0-r3}
    RQX     r8
    strb    r5, [r10, #2]
    ldmia   lr!, {r0-r3}
    RQX     r9
    strb    r5, [r10, #3]
    ldr     ip, [sp, #24]
    add     r10, r10, ip
    str     r10, [sp, #20]
    ldr     r0, [sp, #0]
    ldr     ip, [sp, #16]
    add     r0, r0, ip
    str     r0, [sp, #0]
    ldr     ip, [sp, #12]
    subs    ip, ip, #1
    str     ip, [sp, #12]
    bne     .Ldwd_px
    add     sp, sp, #36
.Ldwd_ret:
    pop     {r4-r11, pc}
    .size   mcu_dwd_px, .-mcu_dwd_px
#endif

/* Two pixels at once, kh == 3 (pixel columns of three words; stride 1 or 2):
 *
 * void mcu_dwd_px2_s1(const uint32_t *buf, const uint32_t *w, int32_t taps, int32_t npairs,
 *                     int8_t *out, int32_t C, const int32_t *bias, const mcu_requant_t *rq);
 * (and _s2): pixels 2i and 2i + 1 of mcu_dwd_px (step 12 * stride), each weight word
 * loaded and sign-extended once for both: 17 instructions per tap (8 MACs). */
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP) && !defined(MCU_EMULATE_DSP)
.macro TAP2 off
    ldr     r4, [r1], #4
    ldr     r3, [r0], #4
    sxtb16  r5, r4
    sxtb16  r4, r4, ror #8
    sxtb16  r2, r3
    sxtb16  r3, r3, ror #8
    smlabb  r6, r5, r2, r6
    smlatt  r8, r5, r2, r8
    smlabb  r7, r4, r3, r7
    smlatt  r9, r4, r3, r9
    ldr     r3, [r0, #\off]
    sxtb16  r2, r3
    sxtb16  r3, r3, ror #8
    smlabb  r10, r5, r2, r10
    smlatt  ip, r5, r2, ip
    smlabb  r11, r4, r3, r11
    smlatt  lr, r4, r3, lr
.endm

@ channel \c: A's sum in \a, B's in the frame at 32 + 4c; params from r11 (rq)
.macro RQ2 a, c
    ldmia   r11!, {r0-r3}
    RQX     \a
    strb    r5, [r10, #\c]
    ldr     lr, [sp, #(32 + 4 * \c)]
    RQX     lr
    strb    r5, [ip, #\c]
.endm

.macro DWD2 name, off, pairstep
    .section .text.\name, "ax", %progbits
    .align  2
    .global \name
    .type   \name, %function
    .thumb_func
\name:
    push    {r4-r11, lr}
    cmp     r3, #0
    ble     9f
    sub     sp, sp, #48
    str     r0, [sp, #0]            @ this pair's taps
    str     r1, [sp, #4]            @ weights
    add     r2, r1, r2, lsl #2
    str     r2, [sp, #8]            @ end of the weights
    str     r3, [sp, #12]           @ pairs left
    ldr     ip, [sp, #84]
    str     ip, [sp, #16]           @ out
    ldr     ip, [sp, #88]
    str     ip, [sp, #20]           @ C
    ldr     ip, [sp, #92]
    str     ip, [sp, #24]           @ bias
    ldr     ip, [sp, #96]
    str     ip, [sp, #28]           @ rq
1:
    ldr     r0, [sp, #24]
    ldm     r0, {r6-r9}
    mov     r10, r6
    mov     r11, r7
    mov     ip, r8
    mov     lr, r9
    ldr     r0, [sp, #0]
    ldr     r1, [sp, #4]
2:
    TAP2    \off
    TAP2    \off
    TAP2    \off
    ldr     r3, [sp, #8]
    cmp     r1, r3
    bne     2b
    add     r0, sp, #32
    stm     r0, {r10, r11, ip, lr}
    ldr     r11, [sp, #28]
    ldr     r10, [sp, #16]
    ldr     ip, [sp, #20]
    add     ip, r10, ip
    RQ2     r6, 0
    RQ2     r7, 1
    RQ2     r8, 2
    RQ2     r9, 3
    ldr     r0, [sp, #20]
    add     r10, r10, r0, lsl #1
    str     r10, [sp, #16]
    ldr     r0, [sp, #0]
    add     r0, r0, #\pairstep
    str     r0, [sp, #0]
    ldr     r0, [sp, #12]
    subs    r0, r0, #1
    str     r0, [sp, #12]
    bne     1b
    add     sp, sp, #48
9:
    pop     {r4-r11, pc}
    .size   \name, .-\name
.endm

    DWD2    mcu_dwd_px2_s1, 8, 24
    DWD2    mcu_dwd_px2_s2, 20, 48
#endif

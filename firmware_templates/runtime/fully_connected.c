/* FULLY_CONNECTED int8 (TFLM reference_integer_ops::FullyConnected and
 * FullyConnectedPerChannel). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

void mcu_fc_s8_portable(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q,
                        int32_t per_channel, int32_t batches, int32_t in_features,
                        int32_t out_features, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, int8_t *output)
{
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *x = input + b * in_features;
        for (int32_t o = 0; o < out_features; o++) {
            const int8_t *w = filter + o * in_features;
            int32_t acc = 0;
            for (int32_t d = 0; d < in_features; d++)
                acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
            if (bias) acc = mcu_add_wrap(acc, bias[o]); /* TFLM's wrap-around */
            const int32_t qi = per_channel ? o : 0;
            *output++ = mcu_requant_clamp(acc, q->multiplier[qi], q->shift[qi], p->output_offset,
                                          p->act_min, p->act_max);
        }
    }
}

/* DSP scratch layout: the input expanded to int16 one block of B columns at a time,
 * then (only with more than one block) an int32 partial sum per output. One block
 * (2K bytes) unless blocks plus partials (2B + 4O) are smaller. The block count comes
 * from MCU_FC_BLOCK columns, so partial-sum traffic (a load and a store per output and
 * block) stays near 1 % of a block's MACs; B is then the smallest multiple of 4 that
 * covers K in that many blocks (least scratch for that count). */
#if MCU_HAVE_DSP
#define MCU_FC_BLOCK 128

static int32_t fc_block(int32_t K, int32_t O)
{
    const int32_t n = (K + MCU_FC_BLOCK - 1) / MCU_FC_BLOCK;
    if (n <= 1) return K;
    const int32_t B = ((K + n - 1) / n + 3) & ~3;
    return 2 * B + 4 * O < 2 * K ? B : K;
}
#endif

int32_t mcu_fc_s8_scratch_size(int32_t in_features, int32_t out_features)
{
#if MCU_HAVE_DSP
    const int32_t B = fc_block(in_features, out_features);
    return B >= in_features ? 2 * in_features : 2 * B + 4 * out_features;
#else
    (void)in_features;
    (void)out_features;
    return 0;
#endif
}

#if MCU_HAVE_DSP

/* acc[r] = init[r] + row r (w + r*K) . xs over L columns, for n rows (init: the bias,
 * or acc itself): groups of four rows in assembly, the last n % 4 rows in pairs here,
 * then the L % 4 tail columns. */
static void fc_rows(const int16_t *xs, const int8_t *w, int32_t K, int32_t L, int32_t n,
                    int32_t *acc, const int32_t *init)
{
    const int32_t L4 = L & ~3, n4 = n & ~3;
    int32_t r = n4;
    if (n4) mcu_fc_s8s16_4row(w, xs, K, L4 >> 2, n4 >> 2, acc, init);
    for (; r + 1 < n; r += 2) {
        const int8_t *w0 = w + r * K, *w1 = w0 + K;
        const uint32_t *a = (const uint32_t *)xs;
        int32_t s0 = init[r], s1 = init[r + 1];
        for (int32_t k = 0; k < L4; k += 4, a += 2) {
            const uint32_t W0 = mcu_read_u32(w0 + k), W1 = mcu_read_u32(w1 + k);
            const uint32_t a0 = a[0], a1 = a[1];
            s0 = __smlad(__sxtb16(W0), a0, s0);
            s1 = __smlad(__sxtb16(W1), a0, s1);
            s0 = __smlad(mcu_sxtb16_ror8(W0), a1, s0);
            s1 = __smlad(mcu_sxtb16_ror8(W1), a1, s1);
        }
        acc[r] = s0;
        acc[r + 1] = s1;
    }
    if (r < n) {
        const int8_t *w0 = w + r * K;
        const uint32_t *a = (const uint32_t *)xs;
        int32_t s0 = init[r];
        for (int32_t k = 0; k < L4; k += 4, a += 2) {
            const uint32_t W0 = mcu_read_u32(w0 + k);
            s0 = __smlad(__sxtb16(W0), a[0], s0);
            s0 = __smlad(mcu_sxtb16_ror8(W0), a[1], s0);
        }
        acc[r] = s0;
    }
    if (L4 < L)
        for (r = 0; r < n; r++) {
            const int8_t *wr = w + r * K;
            uint32_t s0 = (uint32_t)acc[r]; /* includes the bias: modulo 2^32 (mcu_add_wrap) */
            for (int32_t k = L4; k < L; k++) s0 += (uint32_t)(wr[k] * xs[k]);
            acc[r] = (int32_t)s0;
        }
}

/* sums start at the bias: int32 sums are exact (mod 2^32, as TFLM's) in any order */
static const int32_t *fc_init(int32_t *acc, const int32_t *bias, int32_t n)
{
    if (bias) return bias;
    for (int32_t r = 0; r < n; r++) acc[r] = 0;
    return acc;
}

/* TFLM's requantization of the finished sums of outputs o0 .. o0 + n - 1 (parameters
 * in locals: the int8 stores could alias them) */
static void fc_store(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q,
                     int32_t per_channel, const int32_t *acc, int32_t o0, int32_t n, int8_t *out)
{
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t step = per_channel ? 1 : 0;
    const int32_t *mult = q->multiplier + step * o0, *shift = q->shift + step * o0;
    for (int32_t r = 0; r < n; r++, mult += step, shift += step)
        out[r] = mcu_requant_clamp(acc[r], *mult, *shift, out_off, act_min, act_max);
}

/* outputs per chunk with a single block: their sums live on the stack, not in scratch */
#define MCU_FC_CHUNK 32

void mcu_fc_s8_dsp(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q, int32_t per_channel,
                   int32_t batches, int32_t in_features, int32_t out_features,
                   const int8_t *input, const int8_t *filter, const int32_t *bias,
                   int8_t *output, void *scratch)
{
    if (p->filter_offset != 0) {
        mcu_fc_s8_portable(p, q, per_channel, batches, in_features, out_features, input, filter,
                           bias, output);
        return;
    }
    const int32_t K = in_features, O = out_features, B = fc_block(K, O);
    const uint32_t off2 = ((uint32_t)(uint16_t)p->input_offset) * 0x10001u;
    int16_t *xs = (int16_t *)scratch;
    int32_t *part = (int32_t *)scratch + B / 2;   /* used only if B < K (then B % 4 == 0) */
    for (int32_t b = 0; b < batches; b++, input += K, output += O) {
        for (int32_t kb = 0; kb < K; kb += B) {
            const int32_t L = K - kb < B ? K - kb : B, L4 = L & ~3;
            /* input + offset as int16, MCU_PERM4 order */
            uint32_t *dst = (uint32_t *)xs;
            for (int32_t k = 0; k < L4; k += 4, dst += 2) {
                const uint32_t v = mcu_read_u32(input + kb + k);
                dst[0] = __sxtab16(off2, v);
                dst[1] = mcu_sxtab16_ror8(off2, v);
            }
            for (int32_t k = L4; k < L; k++) xs[k] = (int16_t)(input[kb + k] + p->input_offset);
            if (B < K) {
                const int32_t *init = kb == 0 ? fc_init(part, bias, O) : part;
                fc_rows(xs, filter + kb, K, L, O, part, init);
                if (kb + L == K) fc_store(p, q, per_channel, part, 0, O, output);
                continue;
            }
            for (int32_t o = 0; o < O; o += MCU_FC_CHUNK) {
                int32_t acc[MCU_FC_CHUNK];
                const int32_t n = O - o < MCU_FC_CHUNK ? O - o : MCU_FC_CHUNK;
                const int32_t *init = fc_init(acc, bias ? bias + o : bias, n);
                fc_rows(xs, filter + o * K, K, K, n, acc, init);
                fc_store(p, q, per_channel, acc, o, n, output + o);
            }
        }
    }
}
#endif

/* ---- packed filter (DSP builds that are not patchable; mcu_fc_s8_pack at build time) ----
 * Layout, O * K bytes like the int8 filter: for each group of four rows (4g .. 4g + 3,
 * g < O / 4) K / 4 blocks of 16 bytes (the four rows' bytes k .. k + 3, one word per
 * row), then the K % 4 tail bytes of the four rows (row after row); then the last
 * O % 4 rows as they are. Folded bias: bias[o] + input_offset * sum_k w[o][k]
 * (mod 2^32, as TFLM's int32 sums), so the kernel multiplies the raw input bytes and
 * needs no int16 copy of the input: no scratch. */
void mcu_fc_s8_pack(int32_t K, int32_t O, int32_t input_offset, const int8_t *w,
                    const int32_t *bias, int8_t *wp, int32_t *bp)
{
    const int32_t O4 = O & ~3, K4 = K & ~3, T = K & 3;
    for (int32_t o = 0; o < O; o++) {
        uint32_t s = bias ? (uint32_t)bias[o] : 0u;
        for (int32_t k = 0; k < K; k++) s += (uint32_t)((int32_t)w[o * K + k] * input_offset);
        bp[o] = (int32_t)s;
    }
    for (int32_t g = 0; g < O4; g += 4) {
        int8_t *d = wp + g * K;
        for (int32_t k = 0; k < K4; k += 4)
            for (int32_t r = 0; r < 4; r++)
                for (int32_t j = 0; j < 4; j++) *d++ = w[(g + r) * K + k + j];
        for (int32_t r = 0; r < 4; r++)
            for (int32_t t = 0; t < T; t++) *d++ = w[(g + r) * K + K4 + t];
    }
    for (int32_t i = O4 * K; i < O * K; i++) wp[i] = w[i];
}

#if MCU_HAVE_DSP
#if defined(MCU_EMULATE_DSP)
/* C model of mcu_fc_s8_4row_pk in mcu_mm_arm.S */
static void mcu_fc_s8_4row_pk(const int8_t *wp, const int8_t *x, int32_t K, int32_t n_groups,
                              int32_t *acc, const int32_t *init)
{
    for (int32_t g = 0; g < n_groups; g++, wp += 4 * K, acc += 4, init += 4) {
        const uint32_t *w = (const uint32_t *)wp;
        int32_t s[4] = {init[0], init[1], init[2], init[3]};
        for (int32_t k = 0; k + 3 < K; k += 4, w += 4) {
            const uint32_t X = mcu_read_u32(x + k), x0 = __sxtb16(X), x1 = mcu_sxtb16_ror8(X);
            for (int32_t r = 0; r < 4; r++) {
                s[r] = __smlad(__sxtb16(w[r]), x0, s[r]);
                s[r] = __smlad(mcu_sxtb16_ror8(w[r]), x1, s[r]);
            }
        }
        for (int32_t r = 0; r < 4; r++) acc[r] = s[r];
    }
}
#else
void mcu_fc_s8_4row_pk(const int8_t *wp, const int8_t *x, int32_t K, int32_t n_groups,
                       int32_t *acc, const int32_t *init);
#endif

void mcu_fc_s8_packed(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q,
                      int32_t per_channel, int32_t batches, int32_t K, int32_t O,
                      const int8_t *input, const int8_t *wp, const int32_t *bp, int8_t *output)
{
    const int32_t O4 = O & ~3, K4 = K & ~3, T = K & 3;
    for (int32_t b = 0; b < batches; b++, input += K, output += O) {
        int32_t acc[MCU_FC_CHUNK];
        for (int32_t o = 0; o < O4; o += MCU_FC_CHUNK) {
            const int32_t n = O4 - o < MCU_FC_CHUNK ? O4 - o : MCU_FC_CHUNK;
            mcu_fc_s8_4row_pk(wp + o * K, input, K, n >> 2, acc, bp + o);
            if (T)
                for (int32_t r = 0; r < n; r++) {
                    const int8_t *t = wp + (o + (r & ~3)) * K + 4 * K4 + (r & 3) * T;
                    uint32_t s = (uint32_t)acc[r];
                    for (int32_t j = 0; j < T; j++) s += (uint32_t)(t[j] * input[K4 + j]);
                    acc[r] = (int32_t)s;
                }
            fc_store(p, q, per_channel, acc, o, n, output + o);
        }
        for (int32_t r = O4; r < O; r++) {
            const int8_t *w0 = wp + r * K;
            int32_t s0 = bp[r];
            for (int32_t k = 0; k < K4; k += 4) {
                const uint32_t W = mcu_read_u32(w0 + k), X = mcu_read_u32(input + k);
                s0 = __smlad(__sxtb16(W), __sxtb16(X), s0);
                s0 = __smlad(mcu_sxtb16_ror8(W), mcu_sxtb16_ror8(X), s0);
            }
            uint32_t s = (uint32_t)s0;
            for (int32_t k = K4; k < K; k++) s += (uint32_t)(w0[k] * input[k]);
            acc[0] = (int32_t)s;
            fc_store(p, q, per_channel, acc, r, 1, output + r);
        }
    }
}
#endif

void mcu_fc_s8(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q, int32_t per_channel,
               int32_t batches, int32_t in_features, int32_t out_features,
               const int8_t *input, const int8_t *filter, const int32_t *bias, int8_t *output,
               void *scratch)
{
#if MCU_HAVE_DSP
    mcu_fc_s8_dsp(p, q, per_channel, batches, in_features, out_features, input, filter, bias,
                  output, scratch);
#else
    (void)scratch;
    mcu_fc_s8_portable(p, q, per_channel, batches, in_features, out_features, input, filter,
                       bias, output);
#endif
}

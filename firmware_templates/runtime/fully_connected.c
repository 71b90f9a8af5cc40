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
            if (bias) acc += bias[o];
            const int32_t qi = per_channel ? o : 0;
            *output++ = mcu_requant_clamp(acc, q->multiplier[qi], q->shift[qi], p->output_offset,
                                          p->act_min, p->act_max);
        }
    }
}

int32_t mcu_fc_s8_scratch_size(int32_t in_features)
{
#if MCU_HAVE_DSP
    return in_features * (int32_t)sizeof(int16_t);
#else
    (void)in_features;
    return 0;
#endif
}

#if MCU_HAVE_DSP
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
    const int32_t K = in_features, K4 = K & ~3;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->input_offset) * 0x10001u;
    int16_t *xs = (int16_t *)scratch;
    const int32_t out_off = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *x = input + b * K;
        /* input + offset as int16, MCU_PERM4 order */
        {
            uint32_t *dst = (uint32_t *)xs;
            for (int32_t k = 0; k < K4; k += 4) {
                const uint32_t v = mcu_read_u32(x + k);
                dst[0] = __sxtab16(off2, v);
                dst[1] = mcu_sxtab16_ror8(off2, v);
                dst += 2;
            }
            for (int32_t k = K4; k < K; k++) xs[k] = (int16_t)(x[k] + p->input_offset);
        }
        int32_t o = 0;
        for (; o + 1 < out_features; o += 2) {
            const int8_t *w0 = filter + o * K;
            const int8_t *w1 = w0 + K;
            const uint32_t *a = (const uint32_t *)xs;
            int32_t s0 = 0, s1 = 0;
            for (int32_t k = 0; k < K4; k += 4) {
                const uint32_t W0 = mcu_read_u32(w0 + k);
                const uint32_t W1 = mcu_read_u32(w1 + k);
                const uint32_t a0 = a[0], a1 = a[1];
                a += 2;
                s0 = __smlad(__sxtb16(W0), a0, s0);
                s1 = __smlad(__sxtb16(W1), a0, s1);
                s0 = __smlad(mcu_sxtb16_ror8(W0), a1, s0);
                s1 = __smlad(mcu_sxtb16_ror8(W1), a1, s1);
            }
            for (int32_t k = K4; k < K; k++) {
                s0 += w0[k] * xs[k];
                s1 += w1[k] * xs[k];
            }
            if (bias) {
                s0 += bias[o];
                s1 += bias[o + 1];
            }
            const int32_t q0 = per_channel ? o : 0, q1 = per_channel ? o + 1 : 0;
            output[o] = mcu_requant_clamp(s0, q->multiplier[q0], q->shift[q0], out_off, act_min,
                                          act_max);
            output[o + 1] = mcu_requant_clamp(s1, q->multiplier[q1], q->shift[q1], out_off,
                                              act_min, act_max);
        }
        for (; o < out_features; o++) {
            const int8_t *w0 = filter + o * K;
            const uint32_t *a = (const uint32_t *)xs;
            int32_t s0 = 0;
            for (int32_t k = 0; k < K4; k += 4) {
                const uint32_t W0 = mcu_read_u32(w0 + k);
                s0 = __smlad(__sxtb16(W0), a[0], s0);
                s0 = __smlad(mcu_sxtb16_ror8(W0), a[1], s0);
                a += 2;
            }
            for (int32_t k = K4; k < K; k++) s0 += w0[k] * xs[k];
            if (bias) s0 += bias[o];
            const int32_t q0 = per_channel ? o : 0;
            output[o] = mcu_requant_clamp(s0, q->multiplier[q0], q->shift[q0], out_off, act_min,
                                          act_max);
        }
        output += out_features;
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

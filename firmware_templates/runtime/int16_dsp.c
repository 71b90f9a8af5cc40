/* Cortex-M DSP variants of the int16-activation CONV_2D / DEPTHWISE_CONV_2D /
 * FULLY_CONNECTED kernels ("16x8"), bit-exact with the portable ones in int16_conv.c
 * (and so with TFLite Micro), and the plain names that pick the best available.
 *
 * - CONV_2D / FULLY_CONNECTED: two output channels at a time share the activations
 *   (CONV_2D: and two neighbouring output pixels with the same window share the
 *   expanded weights, 22 instructions per 16 MACs).
 *   Four int16 activations (two words) are repacked once into (x0,x2) / (x1,x3) with
 *   PKHBT / PKHTB; each channel's four int8 weights (one word) expand with SXTB16 and
 *   SXTB16 ROR 8 into (w0,w2) / (w1,w3), and two SMLADs add the four products: 14
 *   instructions per 8 MACs in the inner loop, no scratch buffer.
 * - DEPTHWISE_CONV_2D (depth multiplier 1): four channels at a time, one accumulator
 *   each: per tap two activation words, one weight word, SXTB16 x2 and SMLABB / SMLABT /
 *   SMLATB / SMLATT (9 instructions per 4 MACs).
 * - Sums: int32 blocks of at most MCU_S16_BLOCK products (|product| <= 2^22, so a block
 *   cannot overflow), each widened into TFLM's int64 accumulator; CONV_2D with an int32
 *   bias sums in int32 throughout (TFLM wraps there too, and SMLAD wraps the same way).
 * - Falls back to the portable kernel where the fast form does not apply (depth
 *   multiplier != 1 or more than MCU_S16_BLOCK taps in DEPTHWISE_CONV_2D, a non-zero
 *   FULLY_CONNECTED filter offset). */
#include "mcu_kernels.h"
#include "mcu_dsp.h"
#include "mcu_int16.h"

#if MCU_HAVE_DSP
#if defined(MCU_EMULATE_DSP)
static inline uint32_t s16_pkhbt16(uint32_t a, uint32_t b) /* lo a.lo, hi b.lo */
{
    return (a & 0xffffu) | (b << 16);
}
static inline uint32_t s16_pkhtb16(uint32_t a, uint32_t b) /* hi a.hi, lo b.hi */
{
    return (a & 0xffff0000u) | (b >> 16);
}
#else
static inline uint32_t s16_pkhbt16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t s16_pkhtb16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* *a += wa[0..n) . x[0..n), *b += wb[0..n) . x[0..n) in int32 (n <= MCU_S16_BLOCK for
 * an exact block; the int32-bias CONV_2D path relies on the wrap-around instead). */
static inline void s16_dot2(const int16_t *x, const int8_t *wa, const int8_t *wb, int32_t n,
                            int32_t *a, int32_t *b)
{
    int32_t sa = *a, sb = *b;
    for (; n >= 4; n -= 4) {
        const uint32_t x01 = mcu_read_u32(x), x23 = mcu_read_u32(x + 2);
        const uint32_t x02 = s16_pkhbt16(x01, x23), x13 = s16_pkhtb16(x23, x01);
        const uint32_t wa4 = mcu_read_u32(wa), wb4 = mcu_read_u32(wb);
        sa = __smlad(__sxtb16(wa4), x02, sa);
        sa = __smlad(mcu_sxtb16_ror8(wa4), x13, sa);
        sb = __smlad(__sxtb16(wb4), x02, sb);
        sb = __smlad(mcu_sxtb16_ror8(wb4), x13, sb);
        x += 4;
        wa += 4;
        wb += 4;
    }
    for (; n > 0; n--) {
        sa = mcu_add_wrap(sa, (int32_t)*wa++ * *x);
        sb = mcu_add_wrap(sb, (int32_t)*wb++ * *x);
        x++;
    }
    *a = sa;
    *b = sb;
}

/* Two pixels (x0, x1) x two channels (wa, wb), n values each: acc[0..3] +=
 * wa.x0, wb.x0, wa.x1, wb.x1 (int32; the weights expand once for both pixels). */
static inline void s16_dot2x2(const int16_t *x0, const int16_t *x1, const int8_t *wa,
                              const int8_t *wb, int32_t n, int32_t *acc)
{
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    for (; n >= 4; n -= 4) {
        const uint32_t wa4 = mcu_read_u32(wa), wb4 = mcu_read_u32(wb);
        const uint32_t a02 = __sxtb16(wa4), a13 = mcu_sxtb16_ror8(wa4);
        const uint32_t b02 = __sxtb16(wb4), b13 = mcu_sxtb16_ror8(wb4);
        uint32_t lo = mcu_read_u32(x0), hi = mcu_read_u32(x0 + 2);
        uint32_t e = s16_pkhbt16(lo, hi), o = s16_pkhtb16(hi, lo);
        s0 = __smlad(a13, o, __smlad(a02, e, s0));
        s1 = __smlad(b13, o, __smlad(b02, e, s1));
        lo = mcu_read_u32(x1);
        hi = mcu_read_u32(x1 + 2);
        e = s16_pkhbt16(lo, hi);
        o = s16_pkhtb16(hi, lo);
        s2 = __smlad(a13, o, __smlad(a02, e, s2));
        s3 = __smlad(b13, o, __smlad(b02, e, s3));
        x0 += 4;
        x1 += 4;
        wa += 4;
        wb += 4;
    }
    for (; n > 0; n--) {
        const int32_t va = *wa++, vb = *wb++;
        s0 = mcu_add_wrap(s0, va * *x0);
        s1 = mcu_add_wrap(s1, vb * *x0++);
        s2 = mcu_add_wrap(s2, va * *x1);
        s3 = mcu_add_wrap(s3, vb * *x1++);
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}

static inline int32_t s16_dot1(const int16_t *x, const int8_t *w, int32_t n, int32_t s)
{
    for (; n >= 4; n -= 4) {
        const uint32_t x01 = mcu_read_u32(x), x23 = mcu_read_u32(x + 2);
        const uint32_t w4 = mcu_read_u32(w);
        s = __smlad(__sxtb16(w4), s16_pkhbt16(x01, x23), s);
        s = __smlad(mcu_sxtb16_ror8(w4), s16_pkhtb16(x23, x01), s);
        x += 4;
        w += 4;
    }
    for (; n > 0; n--) s = mcu_add_wrap(s, (int32_t)*w++ * *x++);
    return s;
}

static inline int16_t s16_out64(int64_t acc, const int64_t *bias64, int32_t o, int32_t mult,
                                int32_t shift, int32_t lo, int32_t hi)
{
    if (bias64) acc += bias64[o];
    return (int16_t)mcu_clamp_i32(mcu_mbqm64(acc, mult, shift), lo, hi);
}

/* One output pixel's taps, two channels: the rows of the window that land in the input,
 * each a run of (fx1 - fx0) * C contiguous values when dilation_w = 1. Sums in int32
 * blocks of at most MCU_S16_BLOCK products (blocks = 0: one int32 sum, no widening:
 * the whole window fits a block, or the int32-bias form wraps as TFLM does). */
typedef struct {
    int64_t a64, b64;
    int32_t a, b, cnt;
} s16_acc2_t;

static inline void s16_run2(s16_acc2_t *s, const int16_t *x, const int8_t *wa,
                            const int8_t *wb, int32_t n, int blocks)
{
    if (!blocks) {
        s16_dot2(x, wa, wb, n, &s->a, &s->b);
        return;
    }
    while (n > 0) {
        int32_t k = MCU_S16_BLOCK - s->cnt;
        if (k == 0) {
            s->a64 += s->a;
            s->b64 += s->b;
            s->a = s->b = s->cnt = 0;
            k = MCU_S16_BLOCK;
        }
        if (k > n) k = n;
        s16_dot2(x, wa, wb, k, &s->a, &s->b);
        s->cnt += k;
        x += k;
        wa += k;
        wb += k;
        n -= k;
    }
}

void mcu_conv2d_s16_dsp(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                        const mcu_dims_t *input_dims, const int16_t *input,
                        const mcu_dims_t *filter_dims, const int8_t *filter,
                        const int64_t *bias64, const int32_t *bias32,
                        const mcu_dims_t *output_dims, int16_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t O = filter_dims->n, kh = filter_dims->h, kw = filter_dims->w;
    const int32_t dh = p->dilation_h, dw = p->dilation_w;
    const int32_t fsize = kh * kw * C;
    const int wrap = bias32 != 0;      /* int32 sums (TFLM's int32-bias form) */
    const int blocks = !wrap && fsize > MCU_S16_BLOCK;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int16_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t fy0 = 0, fy1 = kh;
            while (fy0 < kh && iy0 + fy0 * dh < 0) fy0++;
            while (fy1 > fy0 && iy0 + (fy1 - 1) * dh >= in_h) fy1--;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t fx0 = 0, fx1 = kw;
                while (fx0 < kw && ix0 + fx0 * dw < 0) fx0++;
                while (fx1 > fx0 && ix0 + (fx1 - 1) * dw >= in_w) fx1--;
                const int32_t nfx = fx1 - fx0;
                const int16_t *xw = in_b + ((iy0 + fy0 * dh) * in_w + ix0 + fx0 * dw) * C;
                /* the next pixel has the same window (interior): both at once */
                if (!blocks && ox + 1 < output_dims->w && fx0 == 0 && fx1 == kw &&
                    ix0 + p->stride_w + (kw - 1) * dw < in_w) {
                    const int16_t *xw1 = xw + p->stride_w * C;
                    for (int32_t o = 0; o < O; o += 2) {
                        const int two = o + 1 < O;
                        const int8_t *fa = filter + o * fsize + fy0 * kw * C;
                        const int8_t *fb = two ? fa + fsize : fa;
                        int32_t acc[4] = {0, 0, 0, 0};
                        for (int32_t fy = fy0; fy < fy1; fy++) {
                            const int32_t r = (fy - fy0) * dh * in_w * C;
                            if (dw == 1) {
                                s16_dot2x2(xw + r, xw1 + r, fa, fb, kw * C, acc);
                            } else {
                                for (int32_t t = 0; t < kw; t++)
                                    s16_dot2x2(xw + r + t * dw * C, xw1 + r + t * dw * C,
                                               fa + t * C, fb + t * C, C, acc);
                            }
                            fa += kw * C;
                            fb += kw * C;
                        }
                        for (int32_t k = 0; k < 1 + two; k++) {
                            for (int32_t px = 0; px < 2; px++) {
                                const int32_t oc = o + k;
                                const int32_t v = acc[2 * px + k];
                                if (wrap) {
                                    const int32_t rq = mcu_mbqm_ref(mcu_add_wrap(v, bias32[oc]),
                                                                    q->multiplier[oc],
                                                                    q->shift[oc]);
                                    output[px * O + oc] = (int16_t)mcu_clamp_i32(
                                        rq, p->act_min, p->act_max);
                                } else {
                                    output[px * O + oc] = s16_out64(
                                        v, bias64, oc, q->multiplier[oc], q->shift[oc],
                                        p->act_min, p->act_max);
                                }
                            }
                        }
                    }
                    output += 2 * O;
                    ox++;
                    continue;
                }
                for (int32_t o = 0; o < O; o += 2) {
                    const int two = o + 1 < O;
                    const int8_t *fa = filter + o * fsize + (fy0 * kw + fx0) * C;
                    const int8_t *fb = two ? fa + fsize : fa;   /* odd O: computed twice */
                    s16_acc2_t s = {0, 0, 0, 0, 0};
                    const int16_t *xr = xw;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        if (dw == 1) {
                            s16_run2(&s, xr, fa, fb, nfx * C, blocks);
                        } else {
                            for (int32_t t = 0; t < nfx; t++)
                                s16_run2(&s, xr + t * dw * C, fa + t * C, fb + t * C, C,
                                         blocks);
                        }
                        xr += dh * in_w * C;
                        fa += kw * C;
                        fb += kw * C;
                    }
                    for (int32_t k = 0; k < 1 + two; k++) {
                        const int32_t oc = o + k;
                        if (wrap) {
                            const int32_t r = mcu_mbqm_ref(mcu_add_wrap(k ? s.b : s.a,
                                                                        bias32[oc]),
                                                           q->multiplier[oc], q->shift[oc]);
                            output[oc] = (int16_t)mcu_clamp_i32(r, p->act_min, p->act_max);
                        } else {
                            output[oc] = s16_out64(k ? s.b64 + s.b : s.a64 + s.a, bias64, oc,
                                                   q->multiplier[oc], q->shift[oc],
                                                   p->act_min, p->act_max);
                        }
                    }
                }
                output += O;
            }
        }
    }
}

void mcu_dw_conv2d_s16_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                           const mcu_dims_t *input_dims, const int16_t *input,
                           const mcu_dims_t *filter_dims, const int8_t *filter,
                           const int64_t *bias64, const mcu_dims_t *output_dims,
                           int16_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, C = input_dims->c;
    const int32_t kh = filter_dims->h, kw = filter_dims->w, O = filter_dims->c;
    if (p->depth_multiplier != 1 || kh * kw > MCU_S16_BLOCK) {
        mcu_dw_conv2d_s16_portable(p, q, input_dims, input, filter_dims, filter, bias64,
                                   output_dims, output);
        return;
    }
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int16_t *in_b = input + b * in_h * in_w * C;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            /* the taps that land inside the input (rows / columns) */
            int32_t fy0 = 0, fy1 = kh;
            while (fy0 < kh && iy0 + fy0 * p->dilation_h < 0) fy0++;
            while (fy1 > fy0 && iy0 + (fy1 - 1) * p->dilation_h >= in_h) fy1--;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t fx0 = 0, fx1 = kw;
                while (fx0 < kw && ix0 + fx0 * p->dilation_w < 0) fx0++;
                while (fx1 > fx0 && ix0 + (fx1 - 1) * p->dilation_w >= in_w) fx1--;
                const int16_t *xp = in_b + ((iy0 + fy0 * p->dilation_h) * in_w +
                                            ix0 + fx0 * p->dilation_w) * C;
                int32_t c = 0;
                for (; c + 4 <= O; c += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int16_t *xr = xp + (fy - fy0) * p->dilation_h * in_w * C + c;
                        const int8_t *wr = filter + fy * kw * O + c;
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int16_t *x = xr + (fx - fx0) * p->dilation_w * C;
                            const uint32_t x01 = mcu_read_u32(x), x23 = mcu_read_u32(x + 2);
                            const uint32_t w4 = mcu_read_u32(wr + fx * O);
                            const uint32_t w02 = __sxtb16(w4), w13 = mcu_sxtb16_ror8(w4);
                            a0 = __smlabb(w02, x01, a0);
                            a1 = __smlabt(w13, x01, a1);
                            a2 = __smlatb(w02, x23, a2);
                            a3 = __smlatt(w13, x23, a3);
                        }
                    }
                    output[c] = s16_out64(a0, bias64, c, q->multiplier[c], q->shift[c],
                                          p->act_min, p->act_max);
                    output[c + 1] = s16_out64(a1, bias64, c + 1, q->multiplier[c + 1],
                                              q->shift[c + 1], p->act_min, p->act_max);
                    output[c + 2] = s16_out64(a2, bias64, c + 2, q->multiplier[c + 2],
                                              q->shift[c + 2], p->act_min, p->act_max);
                    output[c + 3] = s16_out64(a3, bias64, c + 3, q->multiplier[c + 3],
                                              q->shift[c + 3], p->act_min, p->act_max);
                }
                for (; c < O; c++) {
                    int32_t a = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        const int16_t *xr = xp + (fy - fy0) * p->dilation_h * in_w * C + c;
                        for (int32_t fx = fx0; fx < fx1; fx++)
                            a += (int32_t)filter[(fy * kw + fx) * O + c] *
                                 xr[(fx - fx0) * p->dilation_w * C];
                    }
                    output[c] = s16_out64(a, bias64, c, q->multiplier[c], q->shift[c],
                                          p->act_min, p->act_max);
                }
                output += O;
            }
        }
    }
}

void mcu_fc_s16_dsp(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift,
                    int32_t batches, int32_t in_features, int32_t out_features,
                    const int16_t *input, const int8_t *filter, const int64_t *bias64,
                    int16_t *output)
{
    if (p->filter_offset != 0) {
        mcu_fc_s16_portable(p, multiplier, shift, batches, in_features, out_features, input,
                            filter, bias64, output);
        return;
    }
    for (int32_t b = 0; b < batches; b++) {
        const int16_t *x = input + b * in_features;
        int32_t o = 0;
        for (; o + 2 <= out_features; o += 2) {
            const int8_t *wa = filter + o * in_features, *wb = wa + in_features;
            int64_t a64 = 0, b64 = 0;
            for (int32_t k = 0; k < in_features; k += MCU_S16_BLOCK) {
                const int32_t n = in_features - k < MCU_S16_BLOCK ? in_features - k
                                                                  : MCU_S16_BLOCK;
                int32_t a = 0, bb = 0;
                s16_dot2(x + k, wa + k, wb + k, n, &a, &bb);
                a64 += a;
                b64 += bb;
            }
            *output++ = s16_out64(a64, bias64, o, multiplier, shift, p->act_min, p->act_max);
            *output++ = s16_out64(b64, bias64, o + 1, multiplier, shift, p->act_min,
                                  p->act_max);
        }
        if (o < out_features) {
            const int8_t *w = filter + o * in_features;
            int64_t a64 = 0;
            for (int32_t k = 0; k < in_features; k += MCU_S16_BLOCK) {
                const int32_t n = in_features - k < MCU_S16_BLOCK ? in_features - k
                                                                  : MCU_S16_BLOCK;
                a64 += s16_dot1(x + k, w + k, n, 0);
            }
            *output++ = s16_out64(a64, bias64, o, multiplier, shift, p->act_min, p->act_max);
        }
    }
}
#endif /* MCU_HAVE_DSP */

/* ---- the plain names: the best variant this build has ---- */
void mcu_conv2d_s16(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                    const mcu_dims_t *input_dims, const int16_t *input,
                    const mcu_dims_t *filter_dims, const int8_t *filter,
                    const int64_t *bias64, const int32_t *bias32,
                    const mcu_dims_t *output_dims, int16_t *output)
{
#if MCU_HAVE_DSP
    mcu_conv2d_s16_dsp(p, q, input_dims, input, filter_dims, filter, bias64, bias32,
                       output_dims, output);
#else
    mcu_conv2d_s16_portable(p, q, input_dims, input, filter_dims, filter, bias64, bias32,
                            output_dims, output);
#endif
}

void mcu_dw_conv2d_s16(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_dims_t *input_dims, const int16_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter,
                       const int64_t *bias64, const mcu_dims_t *output_dims, int16_t *output)
{
#if MCU_HAVE_DSP
    mcu_dw_conv2d_s16_dsp(p, q, input_dims, input, filter_dims, filter, bias64, output_dims,
                          output);
#else
    mcu_dw_conv2d_s16_portable(p, q, input_dims, input, filter_dims, filter, bias64,
                               output_dims, output);
#endif
}

void mcu_fc_s16(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift, int32_t batches,
                int32_t in_features, int32_t out_features, const int16_t *input,
                const int8_t *filter, const int64_t *bias64, int16_t *output)
{
#if MCU_HAVE_DSP
    mcu_fc_s16_dsp(p, multiplier, shift, batches, in_features, out_features, input, filter,
                   bias64, output);
#else
    mcu_fc_s16_portable(p, multiplier, shift, batches, in_features, out_features, input,
                        filter, bias64, output);
#endif
}

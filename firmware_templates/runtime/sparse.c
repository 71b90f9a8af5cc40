/* Row-sparse FULLY_CONNECTED and CONV_2D over a nested subnet store (DRESS),
 * bit-exact with TFLM on each level's dense-with-zeros model.
 *
 * Arithmetic (every variant): raw int8 inputs (padded taps = the input zero
 * point), acc = sum(value * x[col]) + bias_eff, bias_eff = bias + input_offset *
 * row sum (mcu_sparse_bias_eff), which equals TFLM's sum(w * (x + input_offset))
 * + bias; then the prepared requantization (mcu_requant_t, == TFLM's double
 * rounding MultiplyByQuantizedMultiplier + output offset) and the clamp.
 *
 * DSP path (CONV_2D, and FULLY_CONNECTED with batches >= 2): two output pixels
 * share one 32-bit operand X = x0 + x1 * 2^23 (im2col built once per pixel pair,
 * reused by every output channel), and one SMLAL per entry accumulates both
 * pixels in a 64-bit register: acc = 2^22 + S0 + S1 * 2^23. With at most 255
 * entries per chunk |S0| <= 255 * 128 * 128 < 2^22, so S0 = low 23 bits - 2^22
 * and S1 = acc >> 23 exactly; chunks are flushed into int32 sums. Four pixel
 * pairs per pass (X: four words per column), so the row loop (mcu_sp_rows4 in
 * sparse_arm.S) costs per entry LDRSB value, LDRB column, ADD, 2 x LDRD, 4 x
 * SMLAL: 9 instructions for eight MACs (a 16-entry block entered Duff-style, no
 * loop test per entry), then requantization as in the dense kernels. FULLY_CONNECTED with one input vector: one MLA per entry. The dense
 * level's implicit group (columns not stored) takes a slower C loop. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

#define MCU_SP_CHUNK 255 /* entries per 64-bit accumulation (fields stay < 2^22) */
#define MCU_SP_NQ 4      /* pixel pairs per pass (DSP) */
#define MCU_SP_XS 4      /* words per im2col column in the DSP buffer (one per pixel pair) */

/* Number of groups a level with n entries per row uses. */
static int32_t sp_groups(const mcu_sparse_store_t *s, int32_t n)
{
    int32_t g = 0;
    while (g < s->n_groups && s->group_end[g] <= n) g++;
    return g;
}

/* The store's explicit groups (all but an implicit dense group). */
MCU_INLINE int32_t sp_ge(const mcu_sparse_store_t *s) { return s->n_groups - s->implicit_last; }

/* Run i of row r's explicit entries at a level using nge explicit groups: *cnt
 * byte pairs from the row's pairs + 2 * *off, columns in segment i. With one
 * segment: one run (groups are contiguous); otherwise one per segment (rows are
 * segment-major, seg_counts cumulative over groups). Returns the number of runs. */
static int32_t sp_row_run(const mcu_sparse_store_t *s, int32_t r, int32_t nge, int32_t i,
                          int32_t *off, int32_t *cnt)
{
    if (s->n_seg == 1) {
        *off = 0;
        *cnt = nge ? s->group_end[nge - 1] : 0;
        return 1;
    }
    const int32_t ge = sp_ge(s);
    const uint8_t *sc = s->seg_counts + r * s->n_seg * ge;
    int32_t o = 0;
    for (int32_t k = 0; k < i; k++) o += sc[k * ge + ge - 1];
    *off = o;
    *cnt = nge ? sc[i * ge + nge - 1] : 0;
    return s->n_seg;
}

void mcu_sparse_bias_eff(const mcu_sparse_store_t *s, int32_t n_entries, const int32_t *bias,
                         int32_t input_offset, int32_t *bias_eff)
{
    const int32_t ng = sp_groups(s, n_entries), ge = sp_ge(s);
    const int32_t nge = ng < ge ? ng : ge;
    for (int32_t r = 0; r < s->rows; r++) {
        const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
        int32_t sum = 0, off, cnt;
        const int32_t nseg = s->n_seg;
        for (int32_t i = 0; i < nseg; i++) {
            sp_row_run(s, r, nge, i, &off, &cnt);
            for (int32_t j = 0; j < cnt; j++) sum += (int8_t)pr[2 * (off + j) + 1];
        }
        if (ng > ge) {
            const int8_t *t = s->tail + r * (s->n_max - s->n_cols);
            for (int32_t j = 0; j < s->n_max - s->n_cols; j++) sum += t[j];
        }
        bias_eff[r] = (int32_t)((uint32_t)(bias ? bias[r] : 0) +
                                (uint32_t)input_offset * (uint32_t)sum);
    }
}

/* used[c] = 1 for the columns of row r's explicit entries (the implicit group
 * then walks the others in ascending order). */
static void sp_mark_used(const mcu_sparse_store_t *s, int32_t r, uint8_t *used)
{
    const int32_t ge = sp_ge(s);
    const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
    for (int32_t c = 0; c < s->row_len; c++) used[c] = 0;
    for (int32_t i = 0; i < s->n_seg; i++) {
        int32_t off, cnt;
        sp_row_run(s, r, ge, i, &off, &cnt);
        uint8_t *u = used + (i << s->seg_shift);
        for (int32_t j = off; j < off + cnt; j++) u[pr[2 * j]] = 1;
    }
}

/* One row's dot product with a raw int8 vector x (portable and single-vector). */
static int32_t sp_dot(const mcu_sparse_store_t *s, int32_t r, int32_t ng, const int8_t *x,
                      uint8_t *used)
{
    const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
    const int32_t ge = sp_ge(s), nge = ng < ge ? ng : ge;
    int32_t acc = 0;
    for (int32_t i = 0; i < s->n_seg; i++) {
        int32_t off, cnt;
        sp_row_run(s, r, nge, i, &off, &cnt);
        const int8_t *xb = x + (i << s->seg_shift);
        const uint8_t *e = pr + 2 * off, *ee = e + 2 * cnt;
        for (; e + 8 <= ee; e += 8)
            acc += (int32_t)(int8_t)e[1] * xb[e[0]] + (int32_t)(int8_t)e[3] * xb[e[2]] +
                   (int32_t)(int8_t)e[5] * xb[e[4]] + (int32_t)(int8_t)e[7] * xb[e[6]];
        for (; e < ee; e += 2) acc += (int32_t)(int8_t)e[1] * xb[e[0]];
    }
    if (ng > ge) {
        const int8_t *t = s->tail + r * (s->n_max - s->n_cols);
        sp_mark_used(s, r, used);
        for (int32_t c = 0; c < s->row_len; c++)
            if (!used[c]) acc += (int32_t)*t++ * x[c];
    }
    return acc;
}

MCU_INLINE int8_t sp_out(int32_t acc, const mcu_requant_t *rq, int32_t out_off, int32_t lo,
                         int32_t hi)
{
    return mcu_clamp8(mcu_rqt_apply(acc, rq, out_off), lo, hi);
}

/* raw im2col of one output pixel (padded taps = zero point) */
static void sp_patch(const mcu_conv_params_t *p, const int8_t *in_b, int32_t in_h, int32_t in_w,
                     int32_t in_c, int32_t f_h, int32_t f_w, int32_t iy0, int32_t ix0,
                     int8_t *patch)
{
    const int8_t zp = (int8_t)(-p->input_offset);
    for (int32_t fy = 0; fy < f_h; fy++) {
        const int32_t iy = iy0 + p->dilation_h * fy;
        for (int32_t fx = 0; fx < f_w; fx++) {
            const int32_t ix = ix0 + p->dilation_w * fx;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (int32_t i = 0; i < in_c; i++) *patch++ = zp;
            } else {
                const int8_t *x = in_b + (iy * in_w + ix) * in_c;
                for (int32_t i = 0; i < in_c; i++) *patch++ = x[i];
            }
        }
    }
}

static int32_t sp_words(int32_t bytes) { return (bytes + 3) & ~3; }

/* ---- portable ------------------------------------------------------------ */
void mcu_sparse_fc_s8_portable(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                               const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                               const int8_t *input, const int32_t *bias_eff, int8_t *output,
                               void *scratch)
{
    const int32_t ng = sp_groups(s, n_entries);
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *x = input + b * s->row_len;
        for (int32_t r = 0; r < s->rows; r++)
            *output++ = sp_out(mcu_add_wrap(sp_dot(s, r, ng, x, (uint8_t *)scratch), bias_eff[r]),
                               rq + r, p->output_offset, p->act_min, p->act_max);
    }
}

void mcu_sparse_conv2d_s8_portable(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                                   const mcu_sparse_store_t *s, int32_t n_entries,
                                   const mcu_dims_t *input_dims, const int8_t *input,
                                   const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                                   const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t ng = sp_groups(s, n_entries);
    int8_t *patch = (int8_t *)scratch;
    uint8_t *used = (uint8_t *)scratch + sp_words(s->row_len);
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < output_dims->h; oy++)
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                sp_patch(p, in_b, in_h, in_w, in_c, f_h, f_w, oy * p->stride_h - p->pad_h,
                         ox * p->stride_w - p->pad_w, patch);
                for (int32_t r = 0; r < s->rows; r++)
                    *output++ = sp_out(mcu_add_wrap(sp_dot(s, r, ng, patch, used), bias_eff[r]),
                                       rq + r, p->output_offset, p->act_min, p->act_max);
            }
    }
}

/* ---- DSP: pixel pairs packed in one word, SMLAL ------------------------------ */
#if MCU_HAVE_DSP
/* One pass (four pixel pairs in X) over every row, explicit entries only:
 * acc[(q * rows + r) * 2 + e] = raw sum of row r for pixel 2q + e. Row r's runs
 * are the descriptors at tab + r * tab_stride words, four words each: byte
 * offset of the run in the row's pairs, byte offset of its segment in X, the
 * entry address into the 16-entry block (MCU_SP_BLK + 36 * skipped entries),
 * passes through the block | bit 31 = flush the 64-bit accumulators first (at
 * most 255 entries between flushes); a run with 0 passes ends the row. */
typedef struct {
    const uint8_t *pairs;  /* row 0 */
    int32_t row_bytes;     /* 2 * n_cols */
    const uint32_t *tab;   /* row 0's descriptors */
    int32_t tab_stride;    /* words per row (0: the same runs for every row) */
    const int32_t *X;
    int32_t seg_bytes;     /* 16 << seg_shift */
    int32_t *acc;          /* [NQ][rows][2] */
    int32_t rows;
} mcu_sp_pass_t;

#if !defined(MCU_EMULATE_DSP)
void mcu_sp_rows4(const mcu_sp_pass_t *a); /* sparse_arm.S */
extern const char mcu_sp_blk[];            /* its 16-entry block */
#define MCU_SP_BLK ((uint32_t)(uintptr_t)mcu_sp_blk | 1u)
#else
#define MCU_SP_BLK 0u
/* C model of mcu_sp_rows4 */
static void mcu_sp_rows4(const mcu_sp_pass_t *a)
{
    for (int32_t r = 0; r < a->rows; r++) {
        const uint8_t *pr = a->pairs + r * a->row_bytes;
        const uint32_t *d = a->tab + r * a->tab_stride;
        int64_t acc[MCU_SP_NQ];
        int32_t sum[2 * MCU_SP_NQ];
        for (int32_t q = 0; q < MCU_SP_NQ; q++) {
            acc[q] = 1 << 22;
            sum[2 * q] = sum[2 * q + 1] = 0;
        }
        for (;; d += 4) {
            if (!d[3]) break;
            if (d[3] >> 31) {
                for (int32_t q = 0; q < MCU_SP_NQ; q++) {
                    sum[2 * q] += (int32_t)((uint32_t)acc[q] & 0x7fffffu) - (1 << 22);
                    sum[2 * q + 1] += (int32_t)(acc[q] >> 23);
                    acc[q] = 1 << 22;
                }
            }
            const int32_t n = 16 * (int32_t)(d[3] & 0x7fffffffu) - (int32_t)(d[2] / 36u);
            const int32_t *X = (const int32_t *)(const void *)((const char *)a->X + d[1]);
            const uint8_t *e = pr + d[0], *end = e + 2 * n;
            for (; e != end; e += 2) {
                const int32_t w = (int8_t)e[1];
                const int32_t *xp = X + MCU_SP_XS * e[0];
                for (int32_t q = 0; q < MCU_SP_NQ; q++) acc[q] += (int64_t)xp[q] * w;
            }
        }
        for (int32_t q = 0; q < MCU_SP_NQ; q++) {
            int32_t *o = a->acc + (q * a->rows + r) * 2;
            o[0] = sum[2 * q] + (int32_t)((uint32_t)acc[q] & 0x7fffffu) - (1 << 22);
            o[1] = sum[2 * q + 1] + (int32_t)(acc[q] >> 23);
        }
    }
}
#endif

/* words per row of the run table (runs of <= 255 entries + the end marker) */
static int32_t sp_tab_words(const mcu_sparse_store_t *s)
{
    return 4 * (s->n_seg == 1 ? 3 : 2 * s->n_seg + 1);
}

MCU_INLINE void sp_tab_add(uint32_t **d, int32_t off, int32_t cnt, int32_t xoff, int32_t *chunk)
{
    while (cnt > 0) {
        uint32_t flush = 0;
        if (*chunk == MCU_SP_CHUNK) {
            flush = 0x80000000u;
            *chunk = 0;
        }
        int32_t m = MCU_SP_CHUNK - *chunk;
        if (m > cnt) m = cnt;
        const int32_t skip = (16 - (m & 15)) & 15;
        uint32_t *w = *d;
        w[0] = (uint32_t)(2 * off);
        w[1] = (uint32_t)xoff;
        w[2] = MCU_SP_BLK + 36u * (uint32_t)skip;
        w[3] = flush | (uint32_t)((m + 15) >> 4);
        *d = w + 4;
        *chunk += m;
        off += m;
        cnt -= m;
    }
}

/* the run table of a level (nge explicit groups); returns the row stride in words */
static int32_t sp_build_tab(const mcu_sparse_store_t *s, int32_t nge, int32_t seg_bytes,
                            uint32_t *tab)
{
    const int32_t stride = s->n_seg == 1 ? 0 : sp_tab_words(s);
    const int32_t nrows = s->n_seg == 1 ? 1 : s->rows;
    for (int32_t r = 0; r < nrows; r++) {
        uint32_t *d = tab + r * stride;
        int32_t chunk = 0;
        for (int32_t i = 0; i < s->n_seg; i++) {
            int32_t off, cnt;
            sp_row_run(s, r, nge, i, &off, &cnt);
            sp_tab_add(&d, off, cnt, i * seg_bytes, &chunk);
        }
        d[3] = 0;
    }
    return stride;
}

/* bits[r * W + c / 32] bit c % 32 = column c is one of row r's explicit entries
 * (W = (K + 31) / 32), built once per call for a level with the implicit group */
static void sp_build_bits(const mcu_sparse_store_t *s, uint32_t *bits)
{
    const int32_t W = (s->row_len + 31) >> 5, ge = sp_ge(s);
    for (int32_t r = 0; r < s->rows; r++, bits += W) {
        const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
        for (int32_t w = 0; w < W; w++) bits[w] = 0;
        for (int32_t i = 0; i < s->n_seg; i++) {
            int32_t off, cnt;
            sp_row_run(s, r, ge, i, &off, &cnt);
            const int32_t base = i << s->seg_shift;
            for (int32_t j = off; j < off + cnt; j++) {
                const int32_t col = base + pr[2 * j];
                bits[col >> 5] |= 1u << (col & 31);
            }
        }
    }
}

MCU_INLINE int32_t sp_ctz(uint32_t m)
{
#if defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int32_t n = 0;
    while (!(m & 1u)) { m >>= 1; n++; }
    return n;
#endif
}

/* implicit dense group of row r (every column whose bit is clear, ascending),
 * added to the pass sums; 64-bit packed accumulation as in the assembly loop,
 * flushed every 255 entries */
static void sp_implicit_add(const mcu_sparse_store_t *s, int32_t r, const int32_t *X,
                            const uint32_t *bits, int32_t *acc)
{
    const int8_t *v = s->tail + r * (s->n_max - s->n_cols);
    const int32_t K = s->row_len, W = (K + 31) >> 5;
    int64_t a0 = 1 << 22, a1 = 1 << 22, a2 = 1 << 22, a3 = 1 << 22;
    int32_t sum[2 * MCU_SP_NQ];
    for (int32_t i = 0; i < 2 * MCU_SP_NQ; i++) sum[i] = 0;
    int32_t chunk = 0;
    for (int32_t w = 0; w < W; w++) {
        uint32_t m = ~bits[w];
        if (w == W - 1 && (K & 31)) m &= (1u << (K & 31)) - 1u;
        const int32_t *Xw = X + 32 * MCU_SP_XS * w;
        while (m) {
            const int32_t *xp = Xw + MCU_SP_XS * sp_ctz(m);
            m &= m - 1u;
            if (chunk == MCU_SP_CHUNK) {
                const int64_t t[4] = {a0, a1, a2, a3};
                for (int32_t q = 0; q < MCU_SP_NQ; q++) {
                    sum[2 * q] += (int32_t)((uint32_t)t[q] & 0x7fffffu) - (1 << 22);
                    sum[2 * q + 1] += (int32_t)(t[q] >> 23);
                }
                a0 = a1 = a2 = a3 = 1 << 22;
                chunk = 0;
            }
            chunk++;
            const int32_t wv = *v++;
            a0 += (int64_t)xp[0] * wv;
            a1 += (int64_t)xp[1] * wv;
            a2 += (int64_t)xp[2] * wv;
            a3 += (int64_t)xp[3] * wv;
        }
    }
    const int64_t t[4] = {a0, a1, a2, a3};
    for (int32_t q = 0; q < MCU_SP_NQ; q++) {
        acc[(q * s->rows + r) * 2] += sum[2 * q] + (int32_t)((uint32_t)t[q] & 0x7fffffu) - (1 << 22);
        acc[(q * s->rows + r) * 2 + 1] += sum[2 * q + 1] + (int32_t)(t[q] >> 23);
    }
}

/* requantize one pixel pair's sums acc[2r + e] (o1 NULL: one pixel) */
static void sp_store_pair(const int32_t *acc, int32_t rows, const int32_t *bias_eff,
                          const mcu_requant_t *rq, int8_t *o0, int8_t *o1, int32_t out_off,
                          int32_t lo, int32_t hi, int use_asm)
{
    if (use_asm && o1) {
        mcu_rq_store2(acc, rows, bias_eff, rq, o0, o1);
        return;
    }
    const int full = lo == -128 && hi == 127;
    for (int32_t r = 0; r < rows; r++) {
        o0[r] = mcu_act8(mcu_rqt_apply(mcu_add_wrap(acc[2 * r], bias_eff[r]), rq + r, out_off),
                         full, lo, hi);
        if (o1)
            o1[r] = mcu_act8(mcu_rqt_apply(mcu_add_wrap(acc[2 * r + 1], bias_eff[r]), rq + r,
                                           out_off), full, lo, hi);
    }
}

/* X[c * XS] = x0[c] + x1[c] * 2^23 for n columns */
#if !defined(MCU_EMULATE_DSP)
void mcu_sp_pack(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *X); /* n % 4 == 0 */
#else
static void mcu_sp_pack(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *X)
{
    for (int32_t c = 0; c < n; c++, X += MCU_SP_XS)
        X[0] = (int32_t)x0[c] + (int32_t)((uint32_t)(int32_t)x1[c] << 23);
}
#endif

#if !defined(MCU_EMULATE_DSP)
void mcu_sp_pack1(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *Y); /* n % 4 == 0 */
void mcu_sp_copy(const int32_t *Y, int32_t n, int32_t *X);                    /* n % 4 == 0 */
#else
static void mcu_sp_pack1(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *Y)
{
    for (int32_t c = 0; c < n; c++) Y[c] = (int32_t)x0[c] + (int32_t)((uint32_t)(int32_t)x1[c] << 23);
}
static void mcu_sp_copy(const int32_t *Y, int32_t n, int32_t *X)
{
    for (int32_t c = 0; c < n; c++) X[MCU_SP_XS * c] = Y[c];
}
#endif

/* Y[c] = x0[c] + x1[c] * 2^23, c < n */
static void sp_pack_row(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *Y)
{
    const int32_t n4 = n & ~3;
    if (n4) mcu_sp_pack1(x0, x1, n4, Y);
    for (int32_t c = n4; c < n; c++)
        Y[c] = (int32_t)x0[c] + (int32_t)((uint32_t)(int32_t)x1[c] << 23);
}

/* X[4c] = Y[c], c < n */
static void sp_copy(const int32_t *Y, int32_t n, int32_t *X)
{
    const int32_t n4 = n & ~3;
    if (n4) mcu_sp_copy(Y, n4, X);
    for (int32_t c = n4; c < n; c++) X[MCU_SP_XS * c] = Y[c];
}

static void sp_pack(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *X)
{
    const int32_t n4 = n & ~3;
    if (n4) mcu_sp_pack(x0, x1, n4, X);
    for (int32_t c = n4; c < n; c++)
        X[c * MCU_SP_XS] = (int32_t)x0[c] + (int32_t)((uint32_t)(int32_t)x1[c] << 23);
}

/* DSP scratch: X (K * XS words) | acc (2 * NQ * rows words) | run table | zero-point row
 * (in_c bytes) | with an implicit group: explicit-column bitmap (rows * ceil(K / 32) words) */
static int32_t sp_dsp_scratch(const mcu_sparse_store_t *s, int32_t in_c)
{
    const int32_t tab = s->n_seg == 1 ? sp_tab_words(s) : sp_tab_words(s) * s->rows;
    const int32_t bits = s->implicit_last ? 4 * s->rows * ((s->row_len + 31) >> 5) : 0;
    return s->row_len * MCU_SP_XS * 4 + 8 * MCU_SP_NQ * s->rows + 4 * tab + sp_words(in_c) +
           bits;
}

/* im2col of the pixel pair (a, b) (b < 0: absent, packed as a copy of a)
 * straight into X column q: per filter row one pack of kw * in_c contiguous
 * bytes when both windows are inside the image (dilation_w 1), else per tap */
MCU_NOINLINE static void sp_pack_pair(const mcu_conv_params_t *p, const int8_t *in_b,
                                      int32_t in_h, int32_t in_w, int32_t in_c, int32_t f_h,
                                      int32_t f_w, int32_t out_w, int32_t a, int32_t b,
                                      const int8_t *zrow, int32_t *X)
{
    const int32_t ay = a / out_w, ax = a - ay * out_w;
    const int32_t by = b >= 0 ? b / out_w : ay, bx = b >= 0 ? b - by * out_w : ax;
    const int32_t ay0 = ay * p->stride_h - p->pad_h, ax0 = ax * p->stride_w - p->pad_w;
    const int32_t by0 = by * p->stride_h - p->pad_h, bx0 = bx * p->stride_w - p->pad_w;
    const int32_t dw = p->dilation_w, span = (f_w - 1) * dw;
    const int whole = dw == 1 && ax0 >= 0 && bx0 >= 0 && ax0 + span < in_w && bx0 + span < in_w;
    const int32_t row = f_w * in_c;
    for (int32_t fy = 0; fy < f_h; fy++, X += row * MCU_SP_XS) {
        const int32_t iya = ay0 + p->dilation_h * fy, iyb = by0 + p->dilation_h * fy;
        const int ina = iya >= 0 && iya < in_h, inb = iyb >= 0 && iyb < in_h;
        if (whole && ina && inb) {
            sp_pack(in_b + (iya * in_w + ax0) * in_c, in_b + (iyb * in_w + bx0) * in_c, row, X);
            continue;
        }
        int32_t *Xt = X;
        for (int32_t fx = 0; fx < f_w; fx++, Xt += in_c * MCU_SP_XS) {
            const int32_t ixa = ax0 + dw * fx, ixb = bx0 + dw * fx;
            const int8_t *xa = (!ina || ixa < 0 || ixa >= in_w) ? zrow
                                                                 : in_b + (iya * in_w + ixa) * in_c;
            const int8_t *xb = (!inb || ixb < 0 || ixb >= in_w) ? zrow
                                                                 : in_b + (iyb * in_w + ixb) * in_c;
            sp_pack(xa, xb, in_c, Xt);
        }
    }
}

/* Packed pixel-pair rows: for output pixel pairs (ox, ox + 1) of one output row
 * the pair's word at tap (fy, fx) is Y_iy[ox * stride_w + fx * dilation_w] with
 * Y_iy[j][ci] = x[iy][j - pad_w][ci] + x[iy][j - pad_w + stride_w][ci] * 2^23
 * (zero point outside the image), iy = oy * stride_h - pad_h + fy * dilation_h.
 * Rows are built once into a cache of (kh - 1) * dilation_h + 1 slots. */
typedef struct {
    int32_t *rows;    /* [slots][wy * in_c] */
    int32_t *tag;     /* [slots]: input row held, or a value below any row */
    int32_t slots, wy;
} sp_ycache_t;

MCU_INLINE int32_t sp_y_slots(const mcu_dims_t *filter_dims, int32_t dilation_h)
{
    return (filter_dims->h - 1) * dilation_h + 1;
}

MCU_INLINE int32_t sp_y_width(const mcu_dims_t *filter_dims, const mcu_dims_t *output_dims,
                              int32_t stride_w, int32_t dilation_w)
{
    return (output_dims->w - 1) * stride_w + (filter_dims->w - 1) * dilation_w + 1;
}

static const int32_t *sp_y_row(sp_ycache_t *yc, const mcu_conv_params_t *p, const int8_t *in_b,
                               int32_t in_h, int32_t in_w, int32_t in_c, const int8_t *zrow,
                               int32_t iy)
{
    const int32_t slot = (int32_t)((uint32_t)(iy + 0x40000000) % (uint32_t)yc->slots);
    int32_t *Y = yc->rows + slot * yc->wy * in_c;
    if (yc->tag[slot] == iy) return Y;
    yc->tag[slot] = iy;
    const int32_t sw = p->stride_w, pw = p->pad_w;
    if (iy < 0 || iy >= in_h) {
        const int32_t z = (int32_t)zrow[0] + (int32_t)((uint32_t)(int32_t)zrow[0] << 23);
        for (int32_t i = 0; i < yc->wy * in_c; i++) Y[i] = z;
        return Y;
    }
    const int8_t *xr = in_b + iy * in_w * in_c;
    int32_t j = 0;
    while (j < yc->wy) {
        const int32_t ix = j - pw;
        if (ix >= 0 && ix + sw < in_w) {      /* both inside: one contiguous run */
            int32_t n = in_w - sw - ix;
            if (n > yc->wy - j) n = yc->wy - j;
            sp_pack_row(xr + ix * in_c, xr + (ix + sw) * in_c, n * in_c, Y + j * in_c);
            j += n;
            continue;
        }
        const int8_t *xa = (ix >= 0 && ix < in_w) ? xr + ix * in_c : zrow;
        const int8_t *xb = (ix + sw >= 0 && ix + sw < in_w) ? xr + (ix + sw) * in_c : zrow;
        sp_pack_row(xa, xb, in_c, Y + j * in_c);
        j++;
    }
    return Y;
}

/* X column q for the pair (ox, ox + 1) of output row oy, copied from the Y rows */
static void sp_pair_from_y(sp_ycache_t *yc, const mcu_conv_params_t *p, const int8_t *in_b,
                           int32_t in_h, int32_t in_w, int32_t in_c, int32_t f_h, int32_t f_w,
                           const int8_t *zrow, int32_t oy, int32_t ox, int32_t *X)
{
    const int32_t row = f_w * in_c;
    for (int32_t fy = 0; fy < f_h; fy++, X += row * MCU_SP_XS) {
        const int32_t iy = oy * p->stride_h - p->pad_h + fy * p->dilation_h;
        const int32_t *Y = sp_y_row(yc, p, in_b, in_h, in_w, in_c, zrow, iy) +
                           ox * p->stride_w * in_c;
        if (p->dilation_w == 1) {
            sp_copy(Y, row, X);
        } else {
            for (int32_t fx = 0; fx < f_w; fx++)
                sp_copy(Y + fx * p->dilation_w * in_c, in_c, X + fx * in_c * MCU_SP_XS);
        }
    }
}

void mcu_sparse_conv2d_s8_dsp(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                              const mcu_sparse_store_t *s, int32_t n_entries,
                              const mcu_dims_t *input_dims, const int8_t *input,
                              const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                              const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int32_t out_w = output_dims->w, out_c = output_dims->c;
    const int32_t f_h = filter_dims->h, f_w = filter_dims->w;
    const int32_t K = s->row_len, R = s->rows, ng = sp_groups(s, n_entries), ge = sp_ge(s);
    int32_t *X = (int32_t *)scratch;
    int32_t *acc = X + K * MCU_SP_XS;
    uint32_t *tab = (uint32_t *)(acc + 2 * MCU_SP_NQ * R);
    int8_t *zrow = (int8_t *)(tab + (s->n_seg == 1 ? sp_tab_words(s) : sp_tab_words(s) * R));
    uint32_t *bits = (uint32_t *)(void *)(zrow + sp_words(in_c));
    sp_ycache_t yc;
    yc.slots = sp_y_slots(filter_dims, p->dilation_h);
    yc.wy = sp_y_width(filter_dims, output_dims, p->stride_w, p->dilation_w);
    yc.tag = (int32_t *)(void *)(bits + (s->implicit_last ? R * ((K + 31) >> 5) : 0));
    yc.rows = yc.tag + yc.slots;
    /* packed rows pay off when taps overlap: new rows per output row x their width
     * (4.5 per word) against re-packing every tap of every pair (5 per word) less
     * the copies (1.75 per word) */
    const int32_t new_rows = f_h < p->stride_h ? f_h : p->stride_h;
    const int use_y = out_w >= 2 && 18 * new_rows * yc.wy < 13 * (out_w / 2) * f_h * f_w;
    const int32_t lo = p->act_min, hi = p->act_max;
    const int use_asm = lo == -128 && hi == 127 && mcu_rqt_all_fast(rq, R);
    mcu_sp_pass_t a;
    a.pairs = s->pairs;
    a.row_bytes = 2 * s->n_cols;
    a.tab = tab;
    a.seg_bytes = (MCU_SP_XS * 4) << s->seg_shift;
    a.tab_stride = sp_build_tab(s, ng < ge ? ng : ge, a.seg_bytes, tab);
    a.X = X;
    a.acc = acc;
    a.rows = R;
    for (int32_t i = 0; i < in_c; i++) zrow[i] = (int8_t)(-p->input_offset);
    if (ng > ge) sp_build_bits(s, bits);
    const int32_t W = (K + 31) >> 5;
    const int32_t n_pix = output_dims->h * out_w;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        int8_t *out_b = output + b * n_pix * out_c;
        for (int32_t i = 0; i < yc.slots; i++) yc.tag[i] = MCU_INT32_MIN;
        for (int32_t pix = 0; pix < n_pix; pix += 2 * MCU_SP_NQ) {
            for (int32_t q = 0; q < MCU_SP_NQ; q++) {
                const int32_t i = pix + 2 * q;
                const int32_t oy = i / out_w, ox = i - oy * out_w;
                if (use_y && i < n_pix && ox + 1 < out_w)
                    sp_pair_from_y(&yc, p, in_b, in_h, in_w, in_c, f_h, f_w, zrow, oy, ox, X + q);
                else if (i < n_pix)
                    sp_pack_pair(p, in_b, in_h, in_w, in_c, f_h, f_w, out_w, i,
                                 i + 1 < n_pix ? i + 1 : -1, zrow, X + q);
                else
                    for (int32_t c = 0; c < K; c++) X[c * MCU_SP_XS + q] = 0;
            }
            mcu_sp_rows4(&a);
            if (ng > ge)
                for (int32_t r = 0; r < R; r++) sp_implicit_add(s, r, X, bits + r * W, acc);
            for (int32_t q = 0; q < MCU_SP_NQ; q++) {
                const int32_t i = pix + 2 * q;
                if (i >= n_pix) break;
                sp_store_pair(acc + q * R * 2, R, bias_eff, rq, out_b + i * out_c,
                              i + 1 < n_pix ? out_b + (i + 1) * out_c : 0, p->output_offset, lo,
                              hi, use_asm);
            }
        }
    }
}

/* one input vector: one MLA per entry */
static void sp_fc_vec(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                      const mcu_sparse_store_t *s, int32_t ng, const int8_t *x,
                      const int32_t *bias_eff, int8_t *output, uint8_t *used)
{
    const int full = p->act_min == -128 && p->act_max == 127;
    for (int32_t r = 0; r < s->rows; r++)
        output[r] = mcu_act8(mcu_rqt_apply(mcu_add_wrap(sp_dot(s, r, ng, x, used), bias_eff[r]),
                                           rq + r, p->output_offset),
                             full, p->act_min, p->act_max);
}

void mcu_sparse_fc_s8_dsp(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                          const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                          const int8_t *input, const int32_t *bias_eff, int8_t *output,
                          void *scratch)
{
    const int32_t K = s->row_len;
    if (batches < 2) {
        const int32_t ng = sp_groups(s, n_entries);
        for (int32_t b = 0; b < batches; b++)
            sp_fc_vec(p, rq, s, ng, input + b * K, bias_eff, output + b * s->rows,
                      (uint8_t *)scratch);
        return;
    }
    /* batches as the pixels of a 1x1 convolution */
    const mcu_conv_params_t cp = {p->input_offset, p->output_offset, 1, 1, 1, 1, 0, 0,
                                  p->act_min, p->act_max};
    const mcu_dims_t id = {1, 1, batches, K}, fd = {s->rows, 1, 1, K},
                     od = {1, 1, batches, s->rows};
    mcu_sparse_conv2d_s8_dsp(&cp, rq, s, n_entries, &id, input, &fd, bias_eff, &od, output,
                             scratch);
}
#endif /* MCU_HAVE_DSP */

int32_t mcu_sparse_conv2d_s8_scratch_size(const mcu_sparse_store_t *s,
                                          const mcu_conv_params_t *p,
                                          const mcu_dims_t *filter_dims,
                                          const mcu_dims_t *output_dims)
{
#if MCU_HAVE_DSP
    return sp_dsp_scratch(s, filter_dims->c) +
           4 * sp_y_slots(filter_dims, p->dilation_h) *
               (1 + sp_y_width(filter_dims, output_dims, p->stride_w, p->dilation_w) *
                        filter_dims->c);
#else
    (void)p;
    (void)filter_dims;
    (void)output_dims;
    return 2 * sp_words(s->row_len);
#endif
}

int32_t mcu_sparse_fc_s8_scratch_size(const mcu_sparse_store_t *s, int32_t batches)
{
#if MCU_HAVE_DSP
    if (batches >= 2) {
        const mcu_conv_params_t cp = {0, 0, 1, 1, 1, 1, 0, 0, -128, 127};
        const mcu_dims_t fd = {s->rows, 1, 1, s->row_len}, od = {1, 1, batches, s->rows};
        return mcu_sparse_conv2d_s8_scratch_size(s, &cp, &fd, &od);
    }
#else
    (void)batches;
#endif
    return sp_words(s->row_len);
}

void mcu_sparse_conv2d_s8(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                          const mcu_sparse_store_t *s, int32_t n_entries,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                          const mcu_dims_t *output_dims, int8_t *output, void *scratch)
{
#if MCU_HAVE_DSP
    mcu_sparse_conv2d_s8_dsp(p, rq, s, n_entries, input_dims, input, filter_dims, bias_eff,
                             output_dims, output, scratch);
#else
    mcu_sparse_conv2d_s8_portable(p, rq, s, n_entries, input_dims, input, filter_dims, bias_eff,
                                  output_dims, output, scratch);
#endif
}

void mcu_sparse_fc_s8(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                      const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                      const int8_t *input, const int32_t *bias_eff, int8_t *output,
                      void *scratch)
{
#if MCU_HAVE_DSP
    mcu_sparse_fc_s8_dsp(p, rq, s, n_entries, batches, input, bias_eff, output, scratch);
#else
    mcu_sparse_fc_s8_portable(p, rq, s, n_entries, batches, input, bias_eff, output, scratch);
#endif
}

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
 * and S1 = acc >> 23 exactly; chunks are flushed into int32 sums. Three pixel
 * pairs per pass (X: four words per column), so the inner loop
 * (mcu_sp_acc3 in sparse_arm.S) costs per entry LDRSB value, LDRB column, ADD,
 * LDM of three words and three SMLAL: 7 instructions (+1 loop per two) for six
 * MACs. FULLY_CONNECTED with one input vector: one MLA per entry. The dense
 * level's implicit group (columns not stored) takes a slower C loop. */
#include "mcu_kernels.h"
#include "mcu_dsp.h"

#define MCU_SP_CHUNK 255 /* entries per 64-bit accumulation (fields stay < 2^22) */
#define MCU_SP_XS 4      /* words per im2col column in the DSP buffer (3 pixel pairs + pad) */
#define MCU_SP_MAXRUNS 16

void mcu_sparse_bias_eff(const mcu_sparse_store_t *s, int32_t n_entries, const int32_t *bias,
                         int32_t input_offset, int32_t *bias_eff)
{
    for (int32_t r = 0; r < s->rows; r++) {
        const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
        const int32_t ne = n_entries < s->n_cols ? n_entries : s->n_cols;
        int32_t sum = 0, j = 0;
        for (; j < ne; j++) sum += (int8_t)pr[2 * j + 1];
        if (s->tail) {
            const int8_t *t = s->tail + r * (s->n_max - s->n_cols) - s->n_cols;
            for (; j < n_entries; j++) sum += t[j];
        }
        bias_eff[r] = (int32_t)((uint32_t)(bias ? bias[r] : 0) +
                                (uint32_t)input_offset * (uint32_t)sum);
    }
}

/* Number of groups a level with n entries per row uses. */
static int32_t sp_groups(const mcu_sparse_store_t *s, int32_t n)
{
    int32_t g = 0;
    while (g < s->n_groups && s->group_end[g] <= n) g++;
    return g;
}

MCU_INLINE int32_t sp_implicit(const mcu_sparse_store_t *s, int32_t g)
{
    return s->implicit_last && g == s->n_groups - 1;
}

/* used[c] = 1 for the columns of row r's explicit groups < g_last (the implicit
 * group then walks the others in ascending order). */
static void sp_mark_used(const mcu_sparse_store_t *s, int32_t r, int32_t g_last, uint8_t *used)
{
    for (int32_t c = 0; c < s->row_len; c++) used[c] = 0;
    const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
    int32_t j = 0;
    for (int32_t g = 0; g < g_last; g++) {
        const int32_t end = s->group_end[g];
        if (s->n_seg == 1) {
            for (; j < end; j++) used[pr[2 * j]] = 1;
        } else {
            const uint8_t *sc = s->seg_counts + (r * s->n_groups + g) * s->n_seg;
            for (int32_t si = 0; si < s->n_seg; si++) {
                uint8_t *u = used + (si << s->seg_shift);
                for (int32_t e = j + sc[si]; j < e; j++) u[pr[2 * j]] = 1;
            }
        }
    }
}

/* One row's dot product with a raw int8 vector x (portable and single-vector). */
static int32_t sp_dot(const mcu_sparse_store_t *s, int32_t r, int32_t ng, const int8_t *x,
                      uint8_t *used)
{
    const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
    int32_t acc = 0, j = 0;
    for (int32_t g = 0; g < ng; g++) {
        const int32_t end = s->group_end[g];
        if (sp_implicit(s, g)) {
            const int8_t *t = s->tail + r * (s->n_max - s->n_cols);
            sp_mark_used(s, r, g, used);
            for (int32_t c = 0; c < s->row_len; c++)
                if (!used[c]) acc += (int32_t)*t++ * x[c];
            break;
        }
        if (s->n_seg == 1) {
            const uint8_t *e = pr + 2 * j, *ee = pr + 2 * end;
            for (; e + 8 <= ee; e += 8)
                acc += (int32_t)(int8_t)e[1] * x[e[0]] + (int32_t)(int8_t)e[3] * x[e[2]] +
                       (int32_t)(int8_t)e[5] * x[e[4]] + (int32_t)(int8_t)e[7] * x[e[6]];
            for (; e < ee; e += 2) acc += (int32_t)(int8_t)e[1] * x[e[0]];
            j = end;
        } else {
            const uint8_t *sc = s->seg_counts + (r * s->n_groups + g) * s->n_seg;
            for (int32_t si = 0; si < s->n_seg; si++) {
                const int8_t *xb = x + (si << s->seg_shift);
                for (int32_t e = j + sc[si]; j < e; j++)
                    acc += (int32_t)(int8_t)pr[2 * j + 1] * xb[pr[2 * j]];
            }
        }
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
            *output++ = sp_out(sp_dot(s, r, ng, x, (uint8_t *)scratch) + bias_eff[r], rq + r,
                               p->output_offset, p->act_min, p->act_max);
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
                    *output++ = sp_out(sp_dot(s, r, ng, patch, used) + bias_eff[r], rq + r,
                                       p->output_offset, p->act_min, p->act_max);
            }
    }
}

/* ---- DSP: pixel pairs packed in one word, SMLAL ------------------------------ */
#if MCU_HAVE_DSP
#define SP_INIT ((int64_t)1 << 22)

/* a run of entry pairs [p, end) whose columns index the im2col buffer X */
typedef struct {
    const uint8_t *p, *end;
    const int32_t *X;
} mcu_sp_run_t;

#if !defined(MCU_EMULATE_DSP)
/* sparse_arm.S: acc[q] += sum over the runs' entries of value * X[4 * col + q], q < 3 */
void mcu_sp_acc3(const mcu_sp_run_t *runs, int32_t nr, int64_t *acc);
#else
/* C model of mcu_sp_acc3 (sparse_arm.S) */
static void mcu_sp_acc3(const mcu_sp_run_t *runs, int32_t nr, int64_t *acc)
{
    int64_t a0 = acc[0], a1 = acc[1], a2 = acc[2];
    for (int32_t i = 0; i < nr; i++) {
        const int32_t *X = runs[i].X;
        for (const uint8_t *e = runs[i].p; e != runs[i].end; e += 2) {
            const int32_t w = (int8_t)e[1];
            const int32_t *xp = X + MCU_SP_XS * e[0];
            a0 += (int64_t)xp[0] * w;
            a1 += (int64_t)xp[1] * w;
            a2 += (int64_t)xp[2] * w;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
}
#endif

typedef struct {
    int64_t a[3];
    int32_t s[6]; /* int32 sums of the six pixels */
    mcu_sp_run_t runs[MCU_SP_MAXRUNS];
    int32_t nr, chunk;
} sp_acc_t;

static void sp_flush(sp_acc_t *t)
{
    if (t->nr) mcu_sp_acc3(t->runs, t->nr, t->a);
    for (int32_t q = 0; q < 3; q++) {
        const int64_t a = t->a[q];
        t->s[2 * q] += (int32_t)((uint32_t)a & 0x7fffffu) - (1 << 22);
        t->s[2 * q + 1] += (int32_t)(a >> 23);
        t->a[q] = SP_INIT;
    }
    t->nr = 0;
    t->chunk = 0;
}

/* queue cnt entry pairs from e against the columns at X */
static void sp_queue(sp_acc_t *t, const uint8_t *e, int32_t cnt, const int32_t *X)
{
    while (cnt > 0) {
        if (t->chunk == MCU_SP_CHUNK || t->nr == MCU_SP_MAXRUNS) sp_flush(t);
        int32_t m = MCU_SP_CHUNK - t->chunk;
        if (m > cnt) m = cnt;
        t->runs[t->nr].p = e;
        t->runs[t->nr].end = e + 2 * m;
        t->runs[t->nr].X = X;
        t->nr++;
        t->chunk += m;
        e += 2 * m;
        cnt -= m;
    }
}

/* implicit dense group: every column with used[c] == 0, ascending */
static void sp_implicit_acc(sp_acc_t *t, const int8_t *v, const uint8_t *used, int32_t K,
                            const int32_t *X)
{
    sp_flush(t);
    for (int32_t c = 0; c < K; c++, X += MCU_SP_XS) {
        if (used[c]) continue;
        if (t->chunk == MCU_SP_CHUNK) sp_flush(t);
        t->chunk++;
        const int32_t w = *v++;
        for (int32_t q = 0; q < 3; q++) t->a[q] += (int64_t)X[q] * w;
    }
}

/* all rows for the three pixel pairs in X; out[i] = output pixel i (NULL: absent) */
static void sp_rows_dsp(const mcu_sparse_store_t *s, int32_t ng, const int32_t *X,
                        uint8_t *used, const int32_t *bias_eff, const mcu_requant_t *rq,
                        int32_t out_off, int32_t lo, int32_t hi, int8_t *const *out, int32_t npix)
{
    const int full = lo == -128 && hi == 127;
    sp_acc_t t;
    for (int32_t r = 0; r < s->rows; r++) {
        const uint8_t *pr = s->pairs + 2 * r * s->n_cols;
        for (int32_t q = 0; q < 3; q++) t.a[q] = SP_INIT;
        for (int32_t i = 0; i < 6; i++) t.s[i] = 0;
        t.nr = 0;
        t.chunk = 0;
        int32_t j = 0;
        for (int32_t g = 0; g < ng; g++) {
            const int32_t end = s->group_end[g];
            if (sp_implicit(s, g)) {
                sp_mark_used(s, r, g, used);
                sp_implicit_acc(&t, s->tail + r * (s->n_max - s->n_cols), used, s->row_len, X);
                break;
            }
            if (s->n_seg == 1) {
                /* groups are contiguous: one run for all explicit groups */
                int32_t g2 = g;
                while (g2 + 1 < ng && !sp_implicit(s, g2 + 1)) g2++;
                const int32_t e2 = s->group_end[g2];
                sp_queue(&t, pr + 2 * j, e2 - j, X);
                j = e2;
                g = g2;
            } else {
                const uint8_t *sc = s->seg_counts + (r * s->n_groups + g) * s->n_seg;
                for (int32_t si = 0; si < s->n_seg; si++) {
                    if (sc[si])
                        sp_queue(&t, pr + 2 * j, sc[si], X + MCU_SP_XS * (si << s->seg_shift));
                    j += sc[si];
                }
                (void)end;
            }
        }
        sp_flush(&t);
        const int32_t be = bias_eff[r];
        const mcu_requant_t *rr = rq + r;
        for (int32_t i = 0; i < npix; i++)
            out[i][r] = mcu_act8(mcu_rqt_apply(t.s[i] + be, rr, out_off), full, lo, hi);
    }
}

/* X[c * XS] = x0[c] + x1[c] * 2^23 for n columns */
static void sp_pack(const int8_t *x0, const int8_t *x1, int32_t n, int32_t *X)
{
    int32_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const uint32_t a = mcu_read_u32(x0 + c), b = mcu_read_u32(x1 + c);
        X[0] = (int32_t)(int8_t)a + (int32_t)((uint32_t)(int32_t)(int8_t)b << 23);
        X[MCU_SP_XS] =
            (int32_t)(int8_t)(a >> 8) + (int32_t)((uint32_t)(int32_t)(int8_t)(b >> 8) << 23);
        X[2 * MCU_SP_XS] =
            (int32_t)(int8_t)(a >> 16) + (int32_t)((uint32_t)(int32_t)(int8_t)(b >> 16) << 23);
        X[3 * MCU_SP_XS] =
            (int32_t)(int8_t)(a >> 24) + (int32_t)((uint32_t)(int32_t)(int8_t)(b >> 24) << 23);
        X += 4 * MCU_SP_XS;
    }
    for (; c < n; c++, X += MCU_SP_XS)
        X[0] = (int32_t)x0[c] + (int32_t)((uint32_t)(int32_t)x1[c] << 23);
}

/* DSP scratch: X (K * XS words) | zero-point row (in_c bytes) | used (K bytes) */
static int32_t sp_dsp_scratch(int32_t K, int32_t in_c)
{
    return K * MCU_SP_XS * 4 + sp_words(in_c) + sp_words(K);
}

/* im2col of the pixel pair (a, b) (b < 0: absent) straight into X column q */
static void sp_pack_pair(const mcu_conv_params_t *p, const int8_t *in_b, int32_t in_h,
                         int32_t in_w, int32_t in_c, int32_t f_h, int32_t f_w, int32_t out_w,
                         int32_t a, int32_t b, const int8_t *zrow, int32_t *X)
{
    const int32_t ay = a / out_w, ax = a - ay * out_w;
    const int32_t by = b >= 0 ? b / out_w : ay, bx = b >= 0 ? b - by * out_w : ax;
    const int32_t ay0 = ay * p->stride_h - p->pad_h, ax0 = ax * p->stride_w - p->pad_w;
    const int32_t by0 = by * p->stride_h - p->pad_h, bx0 = bx * p->stride_w - p->pad_w;
    for (int32_t fy = 0; fy < f_h; fy++) {
        const int32_t iya = ay0 + p->dilation_h * fy, iyb = by0 + p->dilation_h * fy;
        for (int32_t fx = 0; fx < f_w; fx++) {
            const int32_t ixa = ax0 + p->dilation_w * fx, ixb = bx0 + p->dilation_w * fx;
            const int8_t *xa = (iya < 0 || iya >= in_h || ixa < 0 || ixa >= in_w)
                                   ? zrow : in_b + (iya * in_w + ixa) * in_c;
            const int8_t *xb = (iyb < 0 || iyb >= in_h || ixb < 0 || ixb >= in_w)
                                   ? zrow : in_b + (iyb * in_w + ixb) * in_c;
            sp_pack(xa, xb, in_c, X);
            X += in_c * MCU_SP_XS;
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
    const int32_t K = s->row_len, ng = sp_groups(s, n_entries);
    int32_t *X = (int32_t *)scratch;
    int8_t *zrow = (int8_t *)(X + K * MCU_SP_XS);
    uint8_t *used = (uint8_t *)zrow + sp_words(in_c);
    for (int32_t i = 0; i < in_c; i++) zrow[i] = (int8_t)(-p->input_offset);
    const int32_t n_pix = output_dims->h * out_w;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in_b = input + b * in_h * in_w * in_c;
        int8_t *out_b = output + b * n_pix * out_c;
        for (int32_t pix = 0; pix < n_pix; pix += 6) {
            int8_t *outs[6];
            const int32_t np = n_pix - pix < 6 ? n_pix - pix : 6;
            for (int32_t q = 0; q < 3; q++) {
                const int32_t a = pix + 2 * q;
                if (a < n_pix)
                    sp_pack_pair(p, in_b, in_h, in_w, in_c, f_h, f_w, out_w, a,
                                 a + 1 < n_pix ? a + 1 : -1, zrow, X + q);
                else
                    for (int32_t c = 0; c < K; c++) X[c * MCU_SP_XS + q] = 0;
            }
            for (int32_t i = 0; i < np; i++) outs[i] = out_b + (pix + i) * out_c;
            sp_rows_dsp(s, ng, X, used, bias_eff, rq, p->output_offset, p->act_min,
                        p->act_max, outs, np);
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
        output[r] = mcu_act8(mcu_rqt_apply(sp_dot(s, r, ng, x, used) + bias_eff[r], rq + r,
                                           p->output_offset),
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
                                          const mcu_dims_t *filter_dims)
{
#if MCU_HAVE_DSP
    return sp_dsp_scratch(s->row_len, filter_dims->c);
#else
    (void)filter_dims;
    return 2 * sp_words(s->row_len);
#endif
}

int32_t mcu_sparse_fc_s8_scratch_size(const mcu_sparse_store_t *s, int32_t batches)
{
#if MCU_HAVE_DSP
    if (batches >= 2) return sp_dsp_scratch(s->row_len, s->row_len);
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

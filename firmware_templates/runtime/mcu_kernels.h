/* mcu runtime: int8 kernels, bit-exact with TFLite Micro's reference kernels.
 *
 * Conventions (see README.md in this directory for the full contract):
 *  - Activations are NHWC int8. CONV_2D filters OHWI, DEPTHWISE_CONV_2D
 *    filters 1HWO (O = C_in * depth_multiplier), FULLY_CONNECTED [out, in].
 *  - *_offset fields follow TFLM: input_offset = -input_zero_point,
 *    filter_offset = -filter_zero_point, output_offset = +output_zero_point.
 *  - Multipliers/shifts are TFLM's QuantizeMultiplier output: Q31 mantissa
 *    in [2^30, 2^31) (or 0) and shift > 0 = left shift.
 *  - Padding is explicit: pad_h/pad_w = rows/cols of implicit zero-point
 *    padding at the top/left (TFLM's ComputePaddingHeightWidth offsets).
 *  - act_min/act_max: the fused activation range in the quantized domain.
 *  - No allocation: kernels that need scratch take a caller buffer whose byte
 *    size comes from the matching *_scratch_size() (0 = pass NULL).
 *  - Every kernel with DSP code exists three times: name_portable (always),
 *    name_dsp (only when __ARM_FEATURE_DSP), and name (the best available,
 *    chosen at compile time). All give identical bytes.
 */
#ifndef MCU_KERNELS_H
#define MCU_KERNELS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if (defined(__ARM_FEATURE_DSP) && !defined(MCU_NO_DSP)) || defined(MCU_EMULATE_DSP)
#define MCU_HAVE_DSP 1
#else
#define MCU_HAVE_DSP 0
#endif

typedef struct {
    int32_t n, h, w, c;
} mcu_dims_t;

typedef struct {
    const int32_t *multiplier; /* [channels] */
    const int32_t *shift;      /* [channels] */
} mcu_per_channel_quant_t;

typedef struct {
    int32_t input_offset;  /* -input zero point */
    int32_t output_offset; /* +output zero point */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;  /* top / left padding */
    int32_t act_min, act_max;
} mcu_conv_params_t;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;
    int32_t depth_multiplier;
    int32_t act_min, act_max;
} mcu_dw_conv_params_t;

typedef struct {
    int32_t input_offset;  /* -input zero point */
    int32_t filter_offset; /* -filter zero point (0 for TFLite int8 weights) */
    int32_t output_offset; /* +output zero point */
    int32_t act_min, act_max;
} mcu_fc_params_t;

typedef struct {
    int32_t stride_h, stride_w;
    int32_t filter_h, filter_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} mcu_pool_params_t;

typedef struct {
    int32_t input1_offset, input2_offset; /* -zero points */
    int32_t left_shift;                   /* 20 for int8 */
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t output_offset;
    int32_t act_min, act_max;
} mcu_add_params_t;

typedef struct {
    int32_t input1_offset, input2_offset; /* -zero points */
    int32_t output_multiplier, output_shift;
    int32_t output_offset;
    int32_t act_min, act_max;
} mcu_mul_params_t;

/* PRELU (TFLM CalculatePreluParams): offsets and the two QuantizeMultiplier pairs,
 * in_s/out_s (x >= 0) and in_s*alpha_s/out_s (x < 0). */
typedef struct {
    int32_t input_offset, alpha_offset, output_offset;
    int32_t output_multiplier_1, output_shift_1;
    int32_t output_multiplier_2, output_shift_2;
} mcu_prelu_params_t;

typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} mcu_softmax_params_t;

/* Per-channel requantization entry, prepared once (by the code generator at
 * build time, or by mcu_requant_prepare at run time) for the *_pre kernels:
 *   sh >= 0: out = ((x*mult + (rhi:rlo) - [x<0]*2^31) >> 32) >> sh, the output
 *            offset folded into rhi:rlo (5 instructions, == TFLM's double
 *            rounding MultiplyByQuantizedMultiplier + output_offset);
 *   sh <  0: out = mcu_requantize(x, mult, rhi) + output_offset (rhi holds the
 *            TFLM shift, rlo is 0).
 * 16 bytes; depends only on the scales and the output zero point (not on weights). */
typedef struct {
    int32_t mult;
    int32_t sh;
    uint32_t rlo;
    int32_t rhi;
} mcu_requant_t;

/* t[i] for i < n from mult[i]/shift[i] (per_channel) or mult[0]/shift[0]. */
void mcu_requant_prepare(mcu_requant_t *t, int32_t n, const int32_t *mult, const int32_t *shift,
                         int32_t per_channel, int32_t output_offset);

/* ---- conv.c ------------------------------------------------------------ */
/* filter_dims: n = output channels, h, w, c = input channels.
 * bias: int32 [out channels] or NULL. */
int32_t mcu_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims);
void mcu_conv2d_s8(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                   const mcu_dims_t *input_dims, const int8_t *input,
                   const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                   const mcu_dims_t *output_dims, int8_t *output, void *scratch);
void mcu_conv2d_s8_portable(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                            const mcu_dims_t *input_dims, const int8_t *input,
                            const mcu_dims_t *filter_dims, const int8_t *filter,
                            const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output);
#if MCU_HAVE_DSP
void mcu_conv2d_s8_dsp(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_dims_t *input_dims, const int8_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mcu_dims_t *output_dims, int8_t *output, void *scratch);
#endif

/* Prepared form (generated code with DSP kernels): rq = mcu_requant_prepare of the
 * multipliers/shifts; q is not read (may be NULL: every path, the portable fallback
 * without DSP included, takes mult/shift from rq). */
int32_t mcu_conv2d_s8_pre_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims);
void mcu_conv2d_s8_pre(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_requant_t *rq, const mcu_dims_t *input_dims, const int8_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mcu_dims_t *output_dims, int8_t *output, void *scratch);

/* The four-pixel path alone (generated DSP code, where K % 4 == 0, bias, the full
 * int8 range and every rq entry in the fast form hold; not checked here). */
int32_t mcu_conv2d_s8_pre4_scratch_size(const mcu_dims_t *input_dims,
                                        const mcu_dims_t *filter_dims);
void mcu_conv2d_s8_pre4(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                        const mcu_requant_t *rq, const mcu_dims_t *input_dims,
                        const int8_t *input, const mcu_dims_t *filter_dims,
                        const int8_t *filter, const int32_t *bias,
                        const mcu_dims_t *output_dims, int8_t *output, void *scratch);

/* ---- depthwise_conv.c -------------------------------------------------- */
/* filter_dims: n = 1, h, w, c = input channels * depth_multiplier. */
int32_t mcu_dw_conv2d_s8_scratch_size(const mcu_dims_t *input_dims, const mcu_dims_t *filter_dims);
void mcu_dw_conv2d_s8(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                      const mcu_dims_t *input_dims, const int8_t *input,
                      const mcu_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                      const mcu_dims_t *output_dims, int8_t *output, void *scratch);
void mcu_dw_conv2d_s8_portable(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                               const mcu_dims_t *input_dims, const int8_t *input,
                               const mcu_dims_t *filter_dims, const int8_t *filter,
                               const int32_t *bias, const mcu_dims_t *output_dims,
                               int8_t *output);
#if MCU_HAVE_DSP
void mcu_dw_conv2d_s8_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int8_t *filter,
                          const int32_t *bias, const mcu_dims_t *output_dims, int8_t *output,
                          void *scratch);
#endif

/* Prepared form: rq as for conv; packed = the filter repacked by
 * mcu_dw_conv2d_s8_pack (packed_size bytes, word aligned; layout depends on p
 * and filter_dims), or NULL to repack it in the scratch on every call
 * (patchable weights). q is not read (may be NULL). filter may be NULL when packed
 * is given, depth_multiplier == 1, C % 4 == 0 and the build has DSP (the DSP paths
 * then read only packed). Scratch: mcu_dw_conv2d_s8_pre_scratch_size(..., packed
 * != NULL). */
int32_t mcu_dw_conv2d_s8_packed_size(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims);
/* the 3x3 int16-plane path applies (it then reads the int8 filter when packed is NULL,
 * one chunk of channels at a time: no packed copy in flash or scratch needed) */
int32_t mcu_dw_conv2d_s8_planes_ok(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims);
void mcu_dw_conv2d_s8_pack(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                           const int8_t *filter, void *packed);
int32_t mcu_dw_conv2d_s8_pre_scratch_size(const mcu_dw_conv_params_t *p,
                                          const mcu_dims_t *input_dims,
                                          const mcu_dims_t *filter_dims,
                                          const mcu_dims_t *output_dims, int32_t have_packed);
void mcu_dw_conv2d_s8_pre(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                          const mcu_requant_t *rq, const mcu_dims_t *input_dims,
                          const int8_t *input, const mcu_dims_t *filter_dims,
                          const int8_t *filter, const void *packed, const int32_t *bias,
                          const mcu_dims_t *output_dims, int8_t *output, void *scratch);

/* Direct form (DSP builds that are not patchable; mcu_dw_conv2d_s8_direct_ok):
 * wp / bp = the filter and bias from mcu_dw_conv2d_s8_pack_direct (wp: the int8
 * filter's size, word aligned; bp: C int32, always given); scratch:
 * mcu_dw_conv2d_s8_direct_scratch_size bytes. */
int32_t mcu_dw_conv2d_s8_direct_ok(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                                   const mcu_dims_t *output_dims);
int32_t mcu_dw_conv2d_s8_direct_scratch_size(const mcu_dw_conv_params_t *p,
                                             const mcu_dims_t *filter_dims,
                                             const mcu_dims_t *output_dims);
void mcu_dw_conv2d_s8_pack_direct(const mcu_dw_conv_params_t *p, const mcu_dims_t *filter_dims,
                                  const int8_t *filter, const int32_t *bias, int8_t *wp,
                                  int32_t *bp);
#if MCU_HAVE_DSP
void mcu_dw_conv2d_s8_direct(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                             const mcu_dims_t *input_dims, const int8_t *input,
                             const mcu_dims_t *filter_dims, const void *wp, const int32_t *bp,
                             const mcu_dims_t *output_dims, int8_t *output, void *scratch);
/* the same for stride 2 (links the stride-2 two-pixel kernel instead) */
void mcu_dw_conv2d_s8_direct_s2(const mcu_dw_conv_params_t *p, const mcu_requant_t *rq,
                                const mcu_dims_t *input_dims, const int8_t *input,
                                const mcu_dims_t *filter_dims, const void *wp, const int32_t *bp,
                                const mcu_dims_t *output_dims, int8_t *output, void *scratch);
#endif

/* ---- row_runner.c ------------------------------------------------------ */
/* Row-delayed in place (generated code): fn runs the layer's kernel for one block of
 * output rows with the given pad_h, input/output dims and pointers. */
typedef void (*mcu_row_fn_t)(int32_t pad_h, const mcu_dims_t *input_dims, const int8_t *input,
                             const mcu_dims_t *output_dims, int8_t *output);
typedef struct {
    const uint16_t *flush;  /* flush[r]: blocks flushed after call r */
    int32_t out_h;          /* kernel calls */
    int32_t rows_total;     /* output rows (the last block may be partial) */
    int32_t block;          /* output rows per call */
    int32_t stride_h, pad_h;
    int32_t in_row, out_row; /* bytes of one input row, of one block of output rows */
    int32_t depth;          /* ring slots */
} mcu_rows_t;
void mcu_rows_run(const mcu_rows_t *r, const mcu_dims_t *input_dims,
                  const mcu_dims_t *output_dims, int8_t *buf, int8_t *ring, mcu_row_fn_t fn);

/* ---- fully_connected.c ------------------------------------------------- */
/* input: [batches, in_features]; filter: [out_features, in_features];
 * q->multiplier/q->shift: per output feature when per_channel != 0, else
 * only element [0] is used (per-tensor). DSP scratch depends on both sizes
 * (input blocks, int32 partial sums per output when that is smaller). */
int32_t mcu_fc_s8_scratch_size(int32_t in_features, int32_t out_features);
void mcu_fc_s8(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q, int32_t per_channel,
               int32_t batches, int32_t in_features, int32_t out_features,
               const int8_t *input, const int8_t *filter, const int32_t *bias, int8_t *output,
               void *scratch);
void mcu_fc_s8_portable(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q,
                        int32_t per_channel, int32_t batches, int32_t in_features,
                        int32_t out_features, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, int8_t *output);
#if MCU_HAVE_DSP
void mcu_fc_s8_dsp(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q, int32_t per_channel,
                   int32_t batches, int32_t in_features, int32_t out_features,
                   const int8_t *input, const int8_t *filter, const int32_t *bias,
                   int8_t *output, void *scratch);
#endif
/* Packed filter and folded bias (mcu_fc_s8_pack, build time; filter_offset 0):
 * the DSP kernel of non-patchable builds, no scratch. */
void mcu_fc_s8_pack(int32_t K, int32_t O, int32_t input_offset, const int8_t *w,
                    const int32_t *bias, int8_t *wp, int32_t *bp);
#if MCU_HAVE_DSP
void mcu_fc_s8_packed(const mcu_fc_params_t *p, const mcu_per_channel_quant_t *q,
                      int32_t per_channel, int32_t batches, int32_t K, int32_t O,
                      const int8_t *input, const int8_t *wp, const int32_t *bp, int8_t *output);
#endif

/* ---- pooling.c --------------------------------------------------------- */
void mcu_avgpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims, const int8_t *input,
                    const mcu_dims_t *output_dims, int8_t *output);
void mcu_maxpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims, const int8_t *input,
                    const mcu_dims_t *output_dims, int8_t *output);

/* ---- elementwise.c ----------------------------------------------------- */
/* ADD / SUB / MUL on same-shape inputs (size elements each). SUB takes ADD's
 * parameters (TFLM PrepareGeneralSubOp) and computes input1 - input2. */
void mcu_add_s8(const mcu_add_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size);
void mcu_sub_s8(const mcu_add_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size);
void mcu_mul_s8(const mcu_mul_params_t *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t size);
/* Broadcasting forms (up to 4-D, NHWC): element (n,h,w,c) of the output reads
 * input1[n*s1[0] + h*s1[1] + w*s1[2] + c*s1[3]] (stride 0 on broadcast dims),
 * likewise input2 with s2. */
void mcu_add_s8_broadcast(const mcu_add_params_t *p, const mcu_dims_t *output_dims,
                          const int8_t *input1, const int32_t *s1, const int8_t *input2,
                          const int32_t *s2, int8_t *output);
void mcu_sub_s8_broadcast(const mcu_add_params_t *p, const mcu_dims_t *output_dims,
                          const int8_t *input1, const int32_t *s1, const int8_t *input2,
                          const int32_t *s2, int8_t *output);
void mcu_mul_s8_broadcast(const mcu_mul_params_t *p, const mcu_dims_t *output_dims,
                          const int8_t *input1, const int32_t *s1, const int8_t *input2,
                          const int32_t *s2, int8_t *output);
/* MAXIMUM / MINIMUM: the larger / smaller int8 byte (one quantization for inputs and
 * output); broadcasting forms as above. */
void mcu_maximum_s8(const int8_t *input1, const int8_t *input2, int8_t *output, int32_t size);
void mcu_minimum_s8(const int8_t *input1, const int8_t *input2, int8_t *output, int32_t size);
void mcu_maximum_s8_broadcast(const mcu_dims_t *output_dims, const int8_t *input1,
                              const int32_t *s1, const int8_t *input2, const int32_t *s2,
                              int8_t *output);
void mcu_minimum_s8_broadcast(const mcu_dims_t *output_dims, const int8_t *input1,
                              const int32_t *s1, const int8_t *input2, const int32_t *s2,
                              int8_t *output);
/* RESHAPE: copy (no-op when output == input). */
void mcu_reshape_s8(const int8_t *input, int8_t *output, int32_t size);
/* RELU (TFLM ReluQuantized): out = clamp(output_zp + MBQM(x - input_zp, m, s)) */
void mcu_relu_s8(const int8_t *input, int8_t *output, int32_t size, int32_t input_zero_point,
                 int32_t output_zero_point, int32_t multiplier, int32_t shift,
                 int32_t act_min, int32_t act_max);
/* RELU6 (TFLM Relu6Quantized): out = clamp(x, lo, hi), no requantization. */
void mcu_clamp_s8(const int8_t *input, int8_t *output, int32_t size, int32_t lo, int32_t hi);

/* ---- softmax.c --------------------------------------------------------- */
/* rows x depth, softmax over the last axis; output scale 1/256, zp -128. */
void mcu_softmax_s8(const mcu_softmax_params_t *p, int32_t rows, int32_t depth,
                    const int8_t *input, int8_t *output);

/* ---- activations.c ----------------------------------------------------- */
/* LOGISTIC int8 -> int8 (TFLM reference_integer_ops::Logistic); output scale
 * 1/256, zero point -128 (TFLM requires zp -128 and ignores the scale).  Params =
 * TFLM LogisticPrepare (quant_math.logistic_params): frexp(input_scale * 2^27) =
 * (input_multiplier / 2^31, input_left_shift), input_range_radius =
 * floor(15 * 2^27 / 2^input_left_shift).  output may equal input. */
void mcu_logistic_s8(const int8_t *input, int8_t *output, int32_t size,
                     int32_t input_zero_point, int32_t input_multiplier,
                     int32_t input_left_shift, int32_t input_range_radius);
/* The 256-entry mcu_lut_s8 table of the same LOGISTIC (== quant_math.logistic_table). */
void mcu_logistic_s8_table(int8_t *table, int32_t input_zero_point, int32_t input_multiplier,
                           int32_t input_left_shift, int32_t input_range_radius);
/* Any elementwise int8 -> int8 function as a lookup: output[i] =
 * table[(uint8_t)input[i]], i.e. table[0..127] for x = 0..127 and
 * table[128..255] for x = -128..-1 (quant_math.lut_s8_table).  output may equal
 * input. */
void mcu_lut_s8(const int8_t *input, int8_t *output, int32_t size, const int8_t *table);
/* PRELU over a 4-D NHWC input of output_dims; alpha element (n,h,w,c) at
 * alpha[n*s[0] + h*s[1] + w*s[2] + c*s[3]] (stride 0 on broadcast dims). May run in
 * place over the input. */
void mcu_prelu_s8(const mcu_prelu_params_t *p, const mcu_dims_t *output_dims,
                  const int8_t *input, const int8_t *alpha, const int32_t *alpha_strides,
                  int8_t *output);

/* ---- concat_pad.c ------------------------------------------------------ */
/* CONCATENATION: outer = product of dims before the axis; inner_sizes[i] =
 * input i's product of dims from the axis on (bytes per outer step). */
void mcu_concat_s8(int32_t num_inputs, const int8_t *const *inputs, const int32_t *inner_sizes,
                   int32_t outer, int8_t *output);
/* PAD, 4-D NHWC: pads[8] = {n_before, n_after, h_before, h_after, w_before,
 * w_after, c_before, c_after}; fill value = output zero point. */
void mcu_pad_s8(const mcu_dims_t *input_dims, const int8_t *input, const int32_t *pads,
                int8_t pad_value, int8_t *output);

/* TRANSPOSE: output_dims[5] (padded with leading ones) and, per output dimension, the
 * input element stride strides[5]; output written in order (not in place). */
void mcu_transpose_s8(const int32_t *output_dims, const int32_t *strides, const int8_t *input,
                      int8_t *output);
/* STRIDED_SLICE: the same strided copy from input[offset] (strides may be negative). */
void mcu_strided_slice_s8(const int32_t *output_dims, const int32_t *strides, int32_t offset,
                          const int8_t *input, int8_t *output);

/* ---- transpose_conv.c -------------------------------------------------- */
/* TRANSPOSE_CONV (TFLM int8): filter OHWI {out_c, kh, kw, in_c}; pad_h/pad_w are
 * TFLM's ComputePaddingHeightWidth of the OUTPUT size (output pixel
 * in * stride - pad + f receives input pixel in times tap f); bias int32 [out_c]
 * or NULL; per-channel multipliers/shifts [out_c]. No scratch (gathers per output
 * pixel); not in place. name_portable and, with DSP, name_dsp (SMLAD, two output
 * channels at a time); the plain name picks the best. */
typedef struct {
    int32_t input_offset;  /* -input zero point */
    int32_t output_offset; /* +output zero point */
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} mcu_transpose_conv_params_t;

void mcu_transpose_conv_s8(const mcu_transpose_conv_params_t *p,
                           const mcu_per_channel_quant_t *q, const mcu_dims_t *input_dims,
                           const int8_t *input, const mcu_dims_t *filter_dims,
                           const int8_t *filter, const int32_t *bias,
                           const mcu_dims_t *output_dims, int8_t *output);
void mcu_transpose_conv_s8_portable(const mcu_transpose_conv_params_t *p,
                                    const mcu_per_channel_quant_t *q,
                                    const mcu_dims_t *input_dims,
                                    const int8_t *input, const mcu_dims_t *filter_dims,
                                    const int8_t *filter, const int32_t *bias,
                                    const mcu_dims_t *output_dims, int8_t *output);
#if MCU_HAVE_DSP
void mcu_transpose_conv_s8_dsp(const mcu_transpose_conv_params_t *p,
                               const mcu_per_channel_quant_t *q,
                               const mcu_dims_t *input_dims,
                               const int8_t *input, const mcu_dims_t *filter_dims,
                               const int8_t *filter, const int32_t *bias,
                               const mcu_dims_t *output_dims, int8_t *output);
#endif

/* ---- resize.c ---------------------------------------------------------- */
/* RESIZE_NEAREST_NEIGHBOR (TFLM): output pixel (y, x) copies the C bytes of input
 * pixel (rows[y], cols[x]); rows [output h], cols [output w] are TFLM's
 * GetNearestNeighbor indices (computed at build time). Not in place. */
void mcu_resize_nearest_s8(const mcu_dims_t *input_dims, const int8_t *input,
                           const mcu_dims_t *output_dims, const int32_t *rows,
                           const int32_t *cols, int8_t *output);

/* ---- mean.c ------------------------------------------------------------ */
/* MEAN over a contiguous block of axes (TFLM int8 MEAN): the input is viewed
 * as [outer, reduce, inner]; output [outer, inner].  multiplier/shift are
 * QuantizeMultiplier(input_scale / output_scale) with the 1/reduce division
 * folded in (see README / kernel_params.mean_params). */
void mcu_mean_s8(int32_t outer, int32_t reduce, int32_t inner, const int8_t *input,
                 int32_t input_zero_point, int32_t multiplier, int32_t shift,
                 int32_t output_zero_point, int8_t *output);

/* ---- snn.c: spiking networks (docs/snn.md) ------------------------------ */
/* Synapses write int32 accumulators acc = bias + sum w*x (bias may be NULL) and return
 * the number of non-zero inputs (synaptic events = that * fan-out). Inputs equal to 1
 * (spikes) add weight runs without multiplies; zeros cost nothing. */
typedef struct {
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;  /* top / left zero padding */
    int32_t dilation_h, dilation_w;
    int32_t groups;
} mcu_snn_conv_params_t;

/* Fixed-point neuron layer; constants per channel (element k has channel k % channels):
 * beta/alpha Q15 in [0, 32768], thr/vreset/leak in membrane units. frac_bits F: the
 * input current is acc * 2^F (F < 0: (acc + 2^(-F-1)) >> -F). */
typedef struct {
    int32_t channels;
    int32_t frac_bits;
    int32_t reset_subtract; /* 1: v -= thr after a spike, 0: v <- vreset */
    const int32_t *beta, *alpha, *thr, *vreset, *leak;
} mcu_snn_neuron_t;

/* weights_t: column-contiguous [in][out] (weights_t[j*out + o] = W[o][j]). */
int32_t mcu_snn_fc_events_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                             const int8_t *weights_t, const int32_t *bias, int32_t *acc);
void mcu_snn_fc_dense_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                         const int8_t *weights_t, const int32_t *bias, int32_t *acc);
/* weights_g: [groups][kh][kw][in/groups][out/groups]; filter_dims: n = out channels,
 * h = kh, w = kw, c = in channels per group. input/acc NHWC with n = 1. */
int32_t mcu_snn_conv_events_s8(const mcu_snn_conv_params_t *p, const mcu_dims_t *input_dims,
                               const int8_t *input, const mcu_dims_t *filter_dims,
                               const int8_t *weights_g, const int32_t *bias,
                               const mcu_dims_t *output_dims, int32_t *acc);
/* Sum of spikes over each window (zero padding), at most 127 taps; act_min/max unused. */
void mcu_snn_sumpool_s8(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                        const int8_t *input, const mcu_dims_t *output_dims, int8_t *output);
/* Neuron updates over n elements; return the number of spikes. State int32 or int16. */
int32_t mcu_snn_lif_s32(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int32_t *v,
                        int8_t *spikes);
int32_t mcu_snn_lif_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v,
                        int8_t *spikes);
int32_t mcu_snn_cuba_lif_s32(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int32_t *i, int32_t *v, int8_t *spikes);
int32_t mcu_snn_cuba_lif_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *i, int16_t *v, int8_t *spikes);
void mcu_snn_li_s32(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int32_t *v);
void mcu_snn_li_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v);
void mcu_snn_cuba_li_s32(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int32_t *i,
                         int32_t *v);
void mcu_snn_cuba_li_s16(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *i,
                         int16_t *v);
int32_t mcu_snn_threshold(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                          int8_t *spikes);
/* The synapses, sum pooling and the 16-bit neurons also exist as name_portable and, with
 * DSP, name_dsp (same results; the plain name is the best available). */
int32_t mcu_snn_fc_events_s8_portable(int32_t in_features, int32_t out_features,
                                      const int8_t *input, const int8_t *weights_t,
                                      const int32_t *bias, int32_t *acc);
void mcu_snn_fc_dense_s8_portable(int32_t in_features, int32_t out_features,
                                  const int8_t *input, const int8_t *weights_t,
                                  const int32_t *bias, int32_t *acc);
void mcu_snn_sumpool_s8_portable(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                                 const int8_t *input, const mcu_dims_t *output_dims,
                                 int8_t *output);
int32_t mcu_snn_conv_events_s8_portable(const mcu_snn_conv_params_t *p,
                                        const mcu_dims_t *input_dims, const int8_t *input,
                                        const mcu_dims_t *filter_dims, const int8_t *weights_g,
                                        const int32_t *bias, const mcu_dims_t *output_dims,
                                        int32_t *acc);
int32_t mcu_snn_lif_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                                 int16_t *v, int8_t *spikes);
int32_t mcu_snn_cuba_lif_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                                      int16_t *i, int16_t *v, int8_t *spikes);
void mcu_snn_li_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *v);
void mcu_snn_cuba_li_s16_portable(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                                  int16_t *i, int16_t *v);
#if MCU_HAVE_DSP
void mcu_snn_fc_dense_s8_dsp(int32_t in_features, int32_t out_features, const int8_t *input,
                             const int8_t *weights_t, const int32_t *bias, int32_t *acc);
void mcu_snn_sumpool_s8_dsp(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                            const int8_t *input, const mcu_dims_t *output_dims, int8_t *output);
int32_t mcu_snn_fc_events_s8_dsp(int32_t in_features, int32_t out_features,
                                 const int8_t *input, const int8_t *weights_t,
                                 const int32_t *bias, int32_t *acc);
int32_t mcu_snn_conv_events_s8_dsp(const mcu_snn_conv_params_t *p, const mcu_dims_t *input_dims,
                                   const int8_t *input, const mcu_dims_t *filter_dims,
                                   const int8_t *weights_g, const int32_t *bias,
                                   const mcu_dims_t *output_dims, int32_t *acc);
int32_t mcu_snn_lif_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                            int16_t *v, int8_t *spikes);
int32_t mcu_snn_cuba_lif_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                                 int16_t *i, int16_t *v, int8_t *spikes);
void mcu_snn_li_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc, int16_t *v);
void mcu_snn_cuba_li_s16_dsp(const mcu_snn_neuron_t *p, int32_t n, const int32_t *acc,
                             int16_t *i, int16_t *v);
#endif
/* Rate coding: xorshift32 (13, 17, 5); per element s = xorshift32(s), spike iff
 * (s >> 16) < thr, thr = (level * 65536 + 127) / 255. */
uint32_t mcu_snn_xorshift32(uint32_t s);
uint32_t mcu_snn_sample_seed(uint32_t seed, uint32_t index);
void mcu_snn_rate_thresholds(int32_t n, const uint8_t *levels, uint32_t *thr);
int32_t mcu_snn_rate_encode(int32_t n, const uint32_t *thr, uint32_t *state, int8_t *spikes);

/* ---- sparse.c ---------------------------------------------------------- */
/* Nested row-sparse weight store (DRESS subnets; toolchain/subnets/store.py):
 * per row, entries grouped by level increment (group 0 = the sparsest level's
 * entries, group g = what level g adds), each group sorted by column. A level
 * with n entries per row uses the groups with group_end[g] <= n (n must be one
 * of the group_end values). Column of an entry = (segment << seg_shift) + pairs[j][0];
 * with n_seg == 1 the segment is 0 and seg_counts is NULL; otherwise
 * seg_counts[(row * n_groups + g) * n_seg + s] entries of group g lie in segment s.
 * implicit_last: the last group holds every column not in an earlier group, in
 * ascending order (a dense level), its values are in tail (no pairs / seg_counts). CONV_2D rows are
 * output channels over OHWI (column = (ky * kw + kx) * cin + ci). */
typedef struct {
    const uint8_t *pairs;      /* [rows][n_cols][2]: column low seg_shift bits, int8 value */
    const int8_t *tail;        /* [rows][n_max - n_cols]: implicit group values, or NULL */
    const uint8_t *seg_counts; /* [rows][n_groups][n_seg] or NULL */
    const int32_t *group_end;  /* [n_groups] cumulative entries per row */
    int32_t rows, row_len, n_max, n_cols, n_groups, n_seg, seg_shift, implicit_last;
} mcu_sparse_store_t;

/* bias_eff[r] = bias[r] (0 if bias NULL) + input_offset * sum of row r's first
 * n_entries values: what the sparse kernels take instead of the bias (a per-level
 * table, computed once), so the input zero point costs nothing per entry. */
void mcu_sparse_bias_eff(const mcu_sparse_store_t *s, int32_t n_entries, const int32_t *bias,
                         int32_t input_offset, int32_t *bias_eff);

/* Row-sparse CONV_2D at the level with n_entries per row: p as for CONV_2D (the
 * level's offsets and activation range), rq = mcu_requant_prepare of the level's
 * per-channel multipliers (s->rows entries), filter_dims = {out_c, kh, kw, in_c}
 * of the dense filter, bias_eff from mcu_sparse_bias_eff. Scratch (4-byte aligned):
 * mcu_sparse_conv2d_s8_scratch_size bytes (needed by every variant). */
int32_t mcu_sparse_conv2d_s8_scratch_size(const mcu_sparse_store_t *s,
                                          const mcu_conv_params_t *p,
                                          const mcu_dims_t *filter_dims,
                                          const mcu_dims_t *output_dims);
void mcu_sparse_conv2d_s8(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                          const mcu_sparse_store_t *s, int32_t n_entries,
                          const mcu_dims_t *input_dims, const int8_t *input,
                          const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                          const mcu_dims_t *output_dims, int8_t *output, void *scratch);
void mcu_sparse_conv2d_s8_portable(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                                   const mcu_sparse_store_t *s, int32_t n_entries,
                                   const mcu_dims_t *input_dims, const int8_t *input,
                                   const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                                   const mcu_dims_t *output_dims, int8_t *output,
                                   void *scratch);
#if MCU_HAVE_DSP
void mcu_sparse_conv2d_s8_dsp(const mcu_conv_params_t *p, const mcu_requant_t *rq,
                              const mcu_sparse_store_t *s, int32_t n_entries,
                              const mcu_dims_t *input_dims, const int8_t *input,
                              const mcu_dims_t *filter_dims, const int32_t *bias_eff,
                              const mcu_dims_t *output_dims, int8_t *output, void *scratch);
#endif

/* Row-sparse FULLY_CONNECTED: input [batches, s->row_len], output [batches, s->rows];
 * p->filter_offset must be 0; rq has s->rows entries (per-tensor: prepare with
 * per_channel = 0 and n = rows). */
int32_t mcu_sparse_fc_s8_scratch_size(const mcu_sparse_store_t *s, int32_t batches);
void mcu_sparse_fc_s8(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                      const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                      const int8_t *input, const int32_t *bias_eff, int8_t *output,
                      void *scratch);
void mcu_sparse_fc_s8_portable(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                               const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                               const int8_t *input, const int32_t *bias_eff, int8_t *output,
                               void *scratch);
#if MCU_HAVE_DSP
void mcu_sparse_fc_s8_dsp(const mcu_fc_params_t *p, const mcu_requant_t *rq,
                          const mcu_sparse_store_t *s, int32_t n_entries, int32_t batches,
                          const int8_t *input, const int32_t *bias_eff, int8_t *output,
                          void *scratch);
#endif


/* ---- int16 activations, int8 weights ("16x8"; int16_conv.c, int16_ops.c) ----
 * TFLite Micro's int16 reference kernels: zero points 0 (the *_offset fields are 0),
 * act_min/act_max in int16. CONV_2D takes an int64 bias (int64 sums and TFLM's int64
 * MultiplyByQuantizedMultiplier) or an int32 one (int32 sums); the others int64 (or
 * none). */
void mcu_conv2d_s16(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                    const mcu_dims_t *input_dims, const int16_t *input,
                    const mcu_dims_t *filter_dims, const int8_t *filter,
                    const int64_t *bias64, const int32_t *bias32,
                    const mcu_dims_t *output_dims, int16_t *output);
void mcu_dw_conv2d_s16(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                       const mcu_dims_t *input_dims, const int16_t *input,
                       const mcu_dims_t *filter_dims, const int8_t *filter,
                       const int64_t *bias64, const mcu_dims_t *output_dims, int16_t *output);
void mcu_fc_s16(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift, int32_t batches,
                int32_t in_features, int32_t out_features, const int16_t *input,
                const int8_t *filter, const int64_t *bias64, int16_t *output);
/* The same three as name_portable (int16_conv.c) and, with DSP, name_dsp (int16_dsp.c:
 * SMLAD on int16 pairs, int32 blocks widened to int64); the plain names pick the best. */
void mcu_conv2d_s16_portable(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                             const mcu_dims_t *input_dims, const int16_t *input,
                             const mcu_dims_t *filter_dims, const int8_t *filter,
                             const int64_t *bias64, const int32_t *bias32,
                             const mcu_dims_t *output_dims, int16_t *output);
void mcu_dw_conv2d_s16_portable(const mcu_dw_conv_params_t *p,
                                const mcu_per_channel_quant_t *q,
                                const mcu_dims_t *input_dims, const int16_t *input,
                                const mcu_dims_t *filter_dims, const int8_t *filter,
                                const int64_t *bias64, const mcu_dims_t *output_dims,
                                int16_t *output);
void mcu_fc_s16_portable(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift,
                         int32_t batches, int32_t in_features, int32_t out_features,
                         const int16_t *input, const int8_t *filter, const int64_t *bias64,
                         int16_t *output);
#if MCU_HAVE_DSP
void mcu_conv2d_s16_dsp(const mcu_conv_params_t *p, const mcu_per_channel_quant_t *q,
                        const mcu_dims_t *input_dims, const int16_t *input,
                        const mcu_dims_t *filter_dims, const int8_t *filter,
                        const int64_t *bias64, const int32_t *bias32,
                        const mcu_dims_t *output_dims, int16_t *output);
void mcu_dw_conv2d_s16_dsp(const mcu_dw_conv_params_t *p, const mcu_per_channel_quant_t *q,
                           const mcu_dims_t *input_dims, const int16_t *input,
                           const mcu_dims_t *filter_dims, const int8_t *filter,
                           const int64_t *bias64, const mcu_dims_t *output_dims,
                           int16_t *output);
void mcu_fc_s16_dsp(const mcu_fc_params_t *p, int32_t multiplier, int32_t shift,
                    int32_t batches, int32_t in_features, int32_t out_features,
                    const int16_t *input, const int8_t *filter, const int64_t *bias64,
                    int16_t *output);
#endif
/* ADD: left_shift 15; in place over either input of the output's shape. */
void mcu_add_s16(const mcu_add_params_t *p, const int16_t *input1, const int16_t *input2,
                 int16_t *output, int32_t size);
void mcu_add_s16_broadcast(const mcu_add_params_t *p, const mcu_dims_t *output_dims,
                           const int16_t *input1, const int32_t *strides1,
                           const int16_t *input2, const int32_t *strides2, int16_t *output);
void mcu_avgpool_s16(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                     const int16_t *input, const mcu_dims_t *output_dims, int16_t *output);
void mcu_maxpool_s16(const mcu_pool_params_t *p, const mcu_dims_t *input_dims,
                     const int16_t *input, const mcu_dims_t *output_dims, int16_t *output);
/* SOFTMAX (reference_ops::SoftmaxInt16): output scale 1/32768; the two 513-entry LUTs
 * (exp on [-10, 0], 1/(1+x) on [0, 1]) come from the code generator. */
void mcu_softmax_s16(int32_t input_multiplier, int32_t input_left_shift,
                     const int16_t *exp_lut, const int16_t *one_over_one_plus_x_lut,
                     int32_t rows, int32_t depth, const int16_t *input, int16_t *output);

#ifdef __cplusplus
}
#endif
#endif /* MCU_KERNELS_H */

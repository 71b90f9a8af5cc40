"""TRANSPOSE_CONV: x [N,H,W,Cin], weights OHWI [Cout,KH,KW,Cin] (int8, per output
channel or per tensor, axis 0), optional bias int32 [Cout]; output [N,OH,OW,Cout].

IR input order is the IR's usual (x, weights, bias) with the output shape as the
attribute `output_shape` (None: SAME -> H*stride, VALID -> (H-1)*stride+K); TFLite's
order (output_shape int32 tensor, weights, input, bias) is made by the writer and
undone by the reader (converters/tflite_writer.py, tflite_reader.py).

TFLM fidelity (kernels/transpose_conv.cc, reference_integer_ops::TransposeConv):
- padding: ComputePaddingHeightWidth(stride, dilation 1, OUTPUT size, filter size,
  padding) -> pad_before; output pixel (in*stride - pad + f) receives x[in] * w[f];
  pixels outside [0, OH) x [0, OW) are dropped, pixels no input reaches get only bias;
- requantization: PopulateConvolutionQuantizationParams as for CONV_2D (per-channel
  multiplier from in_s * w_s / out_s), MultiplyByQuantizedMultiplier, + output zero
  point, clamped to int8;
- the fused activation (TransposeConvOptions, op version 4) clamps the quantized range
  as for CONV_2D: older TFLM releases passed kTfLiteActNone for int8 and ignored it, the
  installed tflite-micro applies it (tests/test_op_transpose_conv.py checks which);
- TFLM scatters int32 products into an int32 scratch buffer of the output's size and
  requantizes afterwards. Integer sums do not depend on their order (int32 addition
  is associative modulo 2^32), so our C kernel gathers instead: each output pixel sums
  the taps that reach it (about (K/stride)^2 of them) in a register. Same bytes, and no
  scratch at all, where TFLM's arena holds 4 x the output size of it.
Kernel: firmware_templates/runtime/transpose_conv.c (mcu_transpose_conv_s8, portable).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, act_range, bias_i32, bias_input, compute_padding, dims4, i32,
                   qparams, register, requant, wscales)

ATTRS = dict(padding="SAME", stride_h=1, stride_w=1, output_shape=None,
             fused_activation="NONE")
WEIGHT_ROLES = {1: "weight", 2: "bias"}


def _where(op: Op) -> str:
    return f"layer '{op.name}' (TRANSPOSE_CONV)"


def _geometry(g: Graph, op: Op):
    """(n, h, w, cin, cout, kh, kw, sh, sw, oh, ow, pad_h, pad_w), checked."""
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    if len(xt.shape) != 4 or len(wt.shape) != 4:
        raise IRError(f"{_where(op)}: input {tuple(xt.shape)} and weights {tuple(wt.shape)} "
                      "must be 4-D (NHWC, OHWI)")
    n, h, w, cin = (int(d) for d in xt.shape)
    cout, kh, kw, wcin = (int(d) for d in wt.shape)
    if wcin != cin:
        raise IRError(f"{_where(op)}: input has {cin} channels, weights {wcin} "
                      "(grouped transposed convolution is not supported)")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    if sh < 1 or sw < 1:
        raise IRError(f"{_where(op)}: strides must be >= 1, not ({sh}, {sw})")
    padding = op.attr("padding")
    if padding not in ("SAME", "VALID"):
        raise IRError(f"{_where(op)}: padding must be SAME or VALID, not {padding!r}")
    shape = op.attr("output_shape")
    if shape is None:
        oh, ow = ((h * sh, w * sw) if padding == "SAME" else
                  ((h - 1) * sh + kh, (w - 1) * sw + kw))
    else:
        shape = [int(d) for d in shape]
        if len(shape) != 4 or shape[0] != n or shape[3] != cout or min(shape) < 1:
            raise IRError(f"{_where(op)}: output_shape {shape} does not fit batch {n} and "
                          f"{cout} output channels")
        oh, ow = shape[1], shape[2]
    _, pad_h = compute_padding(sh, 1, oh, kh, padding)
    _, pad_w = compute_padding(sw, 1, ow, kw, padding)
    return n, h, w, cin, cout, kh, kw, sh, sw, oh, ow, pad_h, pad_w


def _shape(g: Graph, op: Op):
    geo = _geometry(g, op)
    return (geo[0], geo[9], geo[10], geo[4])


def scatter(x: np.ndarray, w: np.ndarray, sh: int, sw: int, oh: int, ow: int, ph: int,
            pw: int, acc_dtype) -> np.ndarray:
    """sum_f x[i] * w[f] into output pixel i*stride - pad + f (x NHWC, w OHWI), cropped to
    (oh, ow); exact in acc_dtype (int64 for int8 values)."""
    n, h, wd, _ = x.shape
    o, kh, kw, _ = w.shape
    full_h = max((h - 1) * sh + kh, ph + oh)
    full_w = max((wd - 1) * sw + kw, pw + ow)
    full = np.zeros((n, full_h, full_w, o), acc_dtype)
    xf = x.reshape(-1, x.shape[-1]).astype(acc_dtype)
    for fy in range(kh):
        for fx in range(kw):
            contrib = (xf @ w[:, fy, fx, :].T.astype(acc_dtype)).reshape(n, h, wd, o)
            full[:, fy:fy + (h - 1) * sh + 1:sh, fx:fx + (wd - 1) * sw + 1:sw, :] += contrib
    return full[:, ph:ph + oh, pw:pw + ow, :]


def _float(g: Graph, op: Op, inp):
    _, _, _, _, _, _, _, sh, sw, oh, ow, ph, pw = _geometry(g, op)
    x = inp(0)
    y = scatter(x.astype(np.float64), inp(1).astype(np.float64), sh, sw, oh, ow, ph, pw,
                np.float64)
    if inp(2) is not None:
        y = y + inp(2)
    return y.astype(np.float32)


def _quant(g: Graph, op: Op):
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    if wt.quant is None:
        raise IRError(f"{_where(op)}: weights '{wt.name}' have no quantization parameters")
    o = int(wt.shape[0])
    if wt.quant.scale.size not in (1, o) or (wt.quant.scale.size > 1 and wt.quant.axis != 0):
        raise IRError(f"{_where(op)}: weights must be quantized per tensor or per output "
                      "channel (axis 0)")
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, o) / out_s)
    return in_zp, out_zp, mult, shift


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    n, h, w, cin, cout, kh, kw, sh, sw, oh, ow, ph, pw = _geometry(g, op)
    in_zp, out_zp, mult, shift = _quant(g, op)
    lo, hi = act_range(op, *qparams(g.t(op.outputs[0]), op.name))
    x = v[op.inputs[0]].astype(np.int64) - in_zp
    acc = scatter(x, g.t(op.inputs[1]).data.astype(np.int64), sh, sw, oh, ow, ph, pw, np.int64)
    b = bias_input(g, op)
    if b is not None:
        acc = acc + b.data.astype(np.int64).reshape(-1)
    # TFLM accumulates in int32 (wrapping); for int8 data |acc| stays far below 2^31
    acc = acc.astype(np.int32).astype(np.int64)
    return requant(acc.reshape(-1, cout), mult, shift, out_zp, lo, hi).reshape(n, oh, ow, cout)


def _params(g: Graph, op: Op) -> dict:
    n, h, w, cin, cout, kh, kw, sh, sw, oh, ow, ph, pw = _geometry(g, op)
    in_zp, out_zp, mult, shift = _quant(g, op)
    lo, hi = act_range(op, *qparams(g.t(op.outputs[0]), op.name))
    return dict(input_offset=-in_zp, output_offset=out_zp, stride_h=sh, stride_w=sw,
                pad_h=ph, pad_w=pw, act_min=lo, act_max=hi,
                multiplier=i32(mult), shift=i32(shift), bias=bias_i32(g, op),
                filter=np.ascontiguousarray(g.t(op.inputs[1]).data.astype(np.int8)),
                input_dims=dims4((n, h, w, cin)), filter_dims=(cout, kh, kw, cin),
                output_dims=(n, oh, ow, cout))


FIELDS = ["input_offset", "output_offset", "stride_h", "stride_w", "pad_h", "pad_w",
          "act_min", "act_max"]


def _emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_transpose_conv_params_t", p, FIELDS)
    q = em.quant(P, p)
    idm, fdm, odm = (em.dims(P, "id", p["input_dims"]), em.dims(P, "fd", p["filter_dims"]),
                     em.dims(P, "od", p["output_dims"]))
    w = em.const(op.inputs[1], p["filter"], "int8_t")
    b = em.bias(op, p)
    return [f"mcu_transpose_conv_s8({pp}, {q}, {idm}, {em.ptr(op.inputs[0])}, {fdm}, {w}, "
            f"{b}, {odm}, {em.ptr(op.outputs[0])});"]


def _torch(m, op: Op, x, inp):
    import torch.nn.functional as F
    _, _, _, _, _, kh, kw, sh, sw, oh, ow, ph, pw = _geometry(m.graph, op)
    w, b = inp(1), inp(2)
    y = F.conv_transpose2d(x.permute(0, 3, 1, 2), w.permute(3, 0, 1, 2), None, (sh, sw))
    # output rows/cols that no input reaches (past the full result) get only the bias
    y = F.pad(y, (0, max(pw + ow - y.shape[3], 0), 0, max(ph + oh - y.shape[2], 0)))
    y = y[:, :, ph:ph + oh, pw:pw + ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.permute(0, 2, 3, 1)


def _macs(g: Graph, op: Op) -> int:
    wt = g.t(op.inputs[1])
    return g.t(op.inputs[0]).size * int(np.prod(wt.shape[:3]))


register(OpDef(
    "TRANSPOSE_CONV", ATTRS,
    infer_shape=_shape, float_eval=_float, reference=_reference,
    quant=QuantRule(weight_axis=0, fusable=True),
    kernel_params=_params, emit=_emit, weight_roles=WEIGHT_ROLES, torch=_torch, macs=_macs,
    doc="transposed 2-D convolution, int8 per-channel weights (TFLM TRANSPOSE_CONV int8)"))

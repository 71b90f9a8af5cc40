"""DEPTHWISE_CONV_2D: x [N,H,W,C], weights 1HWO (O = C * depth_multiplier, int8 per
channel along axis 3), bias int32 [O].

Kernel: firmware_templates/runtime/depthwise_conv.c (DSP: mcu_dw_conv2d_s8_direct with a
requantization table, the filter repacked at build time by the runtime itself (the int8
filter's size) and the input offset folded into the bias, where depth_multiplier is 1,
dilation 1 and C % 4 == 0, and the build is not patchable; else mcu_dw_conv2d_s8_pre).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, act_range, bias_i32, bias_input, compute_padding, dims4,
                   i32, pad_windows, qparams, register, requant, window_shape, wscales)
from .conv import WEIGHT_ROLES, emit_conv_family, float_conv, torch_conv

ATTRS = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
             depth_multiplier=1, fused_activation="NONE")


def _shape(g: Graph, op: Op):
    _, kh, kw, oc = g.t(op.inputs[1]).shape
    return window_shape(g, op, oc, kh, kw)


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64) - in_zp
    w = wt.data.astype(np.int64)
    _, kh, kw, oc = w.shape
    n, h, wd, c = x.shape
    if oc % c:
        raise IRError(f"layer '{op.name}' (DEPTHWISE_CONV_2D): {oc} output channels is not a "
                      f"multiple of {c} input channels")
    m = oc // c
    if m > 1:
        x = np.repeat(x, m, axis=-1)          # output channel k reads input channel k // m
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    dh, dw = op.attr("dilation_h"), op.attr("dilation_w")
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, wd, kw, op.attr("padding"))
    _, taps = pad_windows(x, kh, kw, sh, sw, dh, dw, oh, ow, ph, pw, 0)
    acc = np.zeros((n, oh, ow, oc), dtype=np.int64)
    k = 0
    for i in range(kh):
        for j in range(kw):
            acc += taps[k] * w[0, i, j, :]
            k += 1
    b = bias_input(g, op)
    if b is not None:
        acc = acc + b.data.astype(np.int64)
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, oc) / out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return requant(acc, mult, shift, out_zp, lo, hi)


def _params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    _, kh, kw, oc = wt.shape
    n, h, w, c = dims4(xt.shape)
    if oc % c:
        raise IRError(f"layer '{op.name}' (DEPTHWISE_CONV_2D): {oc} output channels is not a "
                      f"multiple of {c} input channels")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, oc) / out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return dict(input_offset=-in_zp, output_offset=out_zp, stride_h=sh, stride_w=sw,
                dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw, depth_multiplier=oc // c,
                act_min=lo, act_max=hi, multiplier=i32(mult), shift=i32(shift),
                bias=bias_i32(g, op), filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                input_dims=(n, h, w, c), filter_dims=(1, kh, kw, oc),
                output_dims=(n, oh, ow, oc))


def _scratch(p, variant, patchable, rt) -> int:
    """DSP: the prepared kernel's scratch; patchable builds repack the filter into it."""
    if variant == "portable":
        return 0
    if rt.dw_direct(p, variant, patchable):
        return rt.dw_direct_scratch(p)
    return rt.dw_conv2d_pre_scratch(p, not patchable and not rt.dw_planes(p))


register(OpDef(
    "DEPTHWISE_CONV_2D", ATTRS,
    infer_shape=_shape,
    float_eval=lambda g, op, inp: float_conv(op, inp(0), inp(1), inp(2), depthwise=True),
    reference=_reference, quant=QuantRule(weight_axis=3, fusable=True),
    kernel_params=_params, scratch=_scratch,
    emit=lambda em, k, op, p: emit_conv_family(em, k, op, p, conv=False),
    row_capable=True, weight_roles=WEIGHT_ROLES,
    torch=lambda m, op, x, inp: torch_conv(m, op, x, inp, depthwise=True),
    macs=lambda g, op: g.t(op.outputs[0]).size * (g.t(op.inputs[1]).size // g.t(op.inputs[1]).shape[3]),
    doc="depthwise 2-D convolution with depth multiplier (TFLM DEPTHWISE_CONV_2D int8)"))

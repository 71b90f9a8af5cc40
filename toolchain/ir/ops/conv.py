"""CONV_2D: inputs x [N,H,W,Cin], weights OHWI (int8 per output channel), bias int32 [O].

Kernel: firmware_templates/runtime/conv.c (portable; DSP: the prepared entry point
mcu_conv2d_s8_pre with a requantization table). The emission below is shared with
DEPTHWISE_CONV_2D (depthwise.py), whose kernel call has the same shape.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, act_range, bias_i32, bias_input, compute_padding, dims4,
                   float_pad_amounts, i32, pad_windows, qparams, register, requant,
                   torch_same_pad, window_shape, windows, wscales)

ATTRS = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
             fused_activation="NONE")
WEIGHT_ROLES = {1: "weight", 2: "bias"}


def float_conv(op: Op, x, w, b, depthwise: bool):
    n, h, wd, c = x.shape
    kh, kw = w.shape[1], w.shape[2]
    (pt, pb, pl, pr), (sh, sw), (dh, dw) = float_pad_amounts(op, h, wd, kh, kw)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = windows(np.ascontiguousarray(xp), kh, kw, sh, sw, dh, dw)  # N,OH,OW,KH,KW,C
    if depthwise:
        dm = w.shape[3] // c
        if dm != 1:
            win = np.repeat(win, dm, axis=-1)           # out channel o reads input o // dm
        y = np.einsum("nhwijc,ijc->nhwc", win, w[0], optimize=True)
    else:
        o = w.shape[0]
        cin = w.shape[3]
        if cin != c:
            raise IRError(f"layer '{op.name}': weights expect {cin} input channels, got {c}")
        y = np.tensordot(win, w, axes=([3, 4, 5], [1, 2, 3]))  # N,OH,OW,O
        assert y.shape[-1] == o
    if b is not None:
        y = y + b
    return y


def _shape(g: Graph, op: Op):
    o, kh, kw, _ = g.t(op.inputs[1]).shape
    return window_shape(g, op, o, kh, kw)


def _float(g, op, inp):
    return float_conv(op, inp(0), inp(1), inp(2), depthwise=False)


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64) - in_zp
    w = wt.data.astype(np.int64)
    o, kh, kw, ci = w.shape
    n, h, wd, c = x.shape
    if c != ci:
        raise IRError(f"layer '{op.name}' (CONV_2D): input has {c} channels, weights {ci} "
                      "(grouped convolution is not supported)")
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    dh, dw = op.attr("dilation_h"), op.attr("dilation_w")
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, wd, kw, op.attr("padding"))
    _, taps = pad_windows(x, kh, kw, sh, sw, dh, dw, oh, ow, ph, pw, 0)
    cols = np.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * c)
    # float64 matmul is exact here: |acc| <= K * 255 * 128 << 2^53
    acc = (cols.astype(np.float64) @ w.reshape(o, -1).T.astype(np.float64)).astype(np.int64)
    b = bias_input(g, op)
    if b is not None:
        acc = acc + b.data.astype(np.int64)
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, o) / out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return requant(acc, mult, shift, out_zp, lo, hi).reshape(n, oh, ow, o)


def _params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    o, kh, kw, ci = wt.shape
    n, h, w, c = dims4(xt.shape)
    if c != ci:
        raise IRError(f"layer '{op.name}' (CONV_2D): grouped convolution is not supported")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, o) / out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return dict(input_offset=-in_zp, output_offset=out_zp, stride_h=sh, stride_w=sw,
                dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw, act_min=lo, act_max=hi,
                multiplier=i32(mult), shift=i32(shift), bias=bias_i32(g, op),
                filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                input_dims=(n, h, w, c), filter_dims=(o, kh, kw, ci),
                output_dims=(n, oh, ow, o))


def _scratch(p, variant, patchable, rt) -> int:
    if variant == "portable":
        return 0
    if rt.conv_pre4(p, variant):
        return rt.conv2d_pre4_scratch(p["input_dims"], p["filter_dims"])
    return rt.conv2d_pre_scratch(p["input_dims"], p["filter_dims"])


CONV_FIELDS = ["input_offset", "output_offset", "stride_h", "stride_w", "dilation_h",
               "dilation_w", "pad_h", "pad_w"]


def emit_conv_family(em, k: int, op: Op, p: dict, conv: bool) -> list[str]:
    """Kernel call of CONV_2D (conv=True) or DEPTHWISE_CONV_2D, normal or row-delayed."""
    P = em.layer_prefix(k)
    fields = CONV_FIELDS + ([] if conv else ["depth_multiplier"]) + ["act_min", "act_max"]
    ctype = "mcu_conv_params_t" if conv else "mcu_dw_conv_params_t"
    pp = em.struct(P, ctype, p, fields)
    # DSP builds call the _pre entry points, which read the multipliers/shifts from
    # the requantization table: no per-channel arrays (q = NULL)
    q = "0" if em.variant == "dsp" else em.quant(P, p)
    idm, fdm, odm = (em.dims(P, "id", p["input_dims"]), em.dims(P, "fd", p["filter_dims"]),
                     em.dims(P, "od", p["output_dims"]))
    # the int8 depthwise filter is not read when the repacked one is emitted and
    # the DSP kernel covers every channel (depth_multiplier 1, C % 4 == 0); patchable
    # builds keep it (it is the store tensor the kernel repacks on every call)
    # (the 3x3 plane path reads the int8 filter itself, chunk by chunk)
    planes = not conv and em.variant == "dsp" and em.rt.dw_planes(p)
    dw_packed_only = (not conv and em.variant == "dsp" and not em.patchable
                      and int(p["depth_multiplier"]) == 1 and not planes
                      and int(p["filter_dims"][3]) % 4 == 0)
    direct = not conv and em.rt.dw_direct(p, em.variant, em.patchable)
    w = "0" if dw_packed_only else em.const(op.inputs[1], p["filter"], "int8_t")
    b = "0" if direct else em.bias(op, p)
    scr = em.scratch(op)
    alloc = em.plan.kernel_scratch.get(op.name, 0)
    if em.variant == "dsp":
        # prepared entry points: requantization table (scales only: also in
        # patchable builds) and, for depthwise, the repacked filter (derived from
        # weight values: not in patchable builds, where the kernel repacks it)
        em.requant_table(P, p)
        qa = f"{q}, {P}_rq, "
        if conv:
            # the four-pixel path alone where its preconditions hold (no two-pixel
            # kernel linked for it)
            fn = "mcu_conv2d_s8_pre4" if em.rt.conv_pre4(p, em.variant) else "mcu_conv2d_s8_pre"
            wb = f"{fdm}, {w}, {b}, "
            em.checks.append(f"if ({fn}_scratch_size({idm}, {fdm}) > {alloc}) return 0;")
        elif direct:
            # packed filter (the int8 filter's size) + folded bias replace both
            fn = "mcu_dw_conv2d_s8_direct" + ("_s2" if int(p["stride_w"]) == 2 else "")
            wp, bp = em.rt.dw_direct_weights(p)
            w = em.derived_const(op.inputs[1] + ":dsp_dw_direct", wp, "int8_t")
            bname = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] else ""
            b = em.derived_const(f"{op.inputs[1]}:{bname}:{p['input_offset']}:dsp_dw_bias", bp,
                                 "int32_t")
            qa = f"{P}_rq, "
            wb = f"{fdm}, {w}, {b}, "
            em.checks.append(f"if (mcu_dw_conv2d_s8_direct_scratch_size({pp}, {fdm}, {odm}) > "
                             f"{alloc}) return 0;")
        else:
            fn = "mcu_dw_conv2d_s8_pre"
            packed = None if em.patchable or planes else em.rt.dw_packed_weights(p)
            # nothing to pack (fewer than four channels): no zero-length array, no scratch
            pk = "0" if packed is None or packed.size == 0 else em.derived_const(
                op.inputs[1] + ":dsp_packed", packed, "uint32_t")
            wb = f"{fdm}, {w}, {pk}, {b}, "
            em.checks.append(f"if (mcu_dw_conv2d_s8_pre_scratch_size({pp}, {idm}, "
                             f"{fdm}, {odm}, {int(pk != '0')}) > {alloc}) "
                             "return 0;")
    else:
        fn = "mcu_conv2d_s8" if conv else "mcu_dw_conv2d_s8"
        sfn = "mcu_conv2d_s8_scratch_size" if conv else "mcu_dw_conv2d_s8_scratch_size"
        qa = f"{q}, "
        wb = f"{fdm}, {w}, {b}, "
        em.checks.append(f"if ({sfn}({idm}, {fdm}) > {alloc}) return 0;")
    if em.row_delayed(op):
        return em.rows(op, p, fn, ctype, pp, qa, idm, wb, odm, f", {scr}")
    return [f"{fn}({pp}, {qa}{idm}, {em.ptr(op.inputs[0])}, {wb}"
            f"{odm}, {em.ptr(op.outputs[0])}, {scr});"]


def torch_conv(m, op: Op, x, inp, depthwise: bool):
    import torch.nn.functional as F
    w, b = inp(1), inp(2)
    kh, kw = w.shape[1], w.shape[2]
    c = x.shape[3]
    sh, sw = op.attr("stride_h") or 1, op.attr("stride_w") or 1
    dh, dw = op.attr("dilation_h") or 1, op.attr("dilation_w") or 1
    xc = x.permute(0, 3, 1, 2)
    if op.attr("padding") == "SAME":
        xc = F.pad(xc, torch_same_pad(xc, op, kh, kw))
    if depthwise:
        y = F.conv2d(xc, w.permute(3, 0, 1, 2), b, (sh, sw), 0, (dh, dw), groups=c)
    else:
        y = F.conv2d(xc, w.permute(0, 3, 1, 2), b, (sh, sw), 0, (dh, dw))
    return y.permute(0, 2, 3, 1)


register(OpDef(
    "CONV_2D", ATTRS,
    infer_shape=_shape,
    float_eval=_float, reference=_reference,
    quant=QuantRule(weight_axis=0, fusable=True),
    kernel_params=_params, scratch=_scratch,
    emit=lambda em, k, op, p: emit_conv_family(em, k, op, p, conv=True),
    row_capable=True, weight_roles=WEIGHT_ROLES,
    torch=lambda m, op, x, inp: torch_conv(m, op, x, inp, depthwise=False),
    macs=lambda g, op: g.t(op.outputs[0]).size * (g.t(op.inputs[1]).size // g.t(op.inputs[1]).shape[0]),
    doc="2-D convolution, int8 per-channel weights (TFLM CONV_2D int8)"))

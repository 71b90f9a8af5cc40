"""AVERAGE_POOL_2D and MAX_POOL_2D: x [N,H,W,C] -> [N,OH,OW,C], one quantization for
input and output (TFLM averages or compares int8 values without requantizing).

Averages divide by the count of valid (unpadded) taps, rounding half away from zero
as TFLM's reference kernel does. Kernels: firmware_templates/runtime/pooling.c.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, Op

from .base import (OpDef, QuantRule, act_range, compute_padding, dims4, float_pad_amounts,
                   pad_windows, qparams, register, torch_same_pad, window_shape, windows)
from .synapses import pool_step_float

ATTRS = dict(padding="VALID", stride_h=1, stride_w=1, filter_h=1, filter_w=1,
             fused_activation="NONE")


def _shape(g: Graph, op: Op):
    return window_shape(g, op, g.t(op.inputs[0]).shape[3], int(op.attr("filter_h")),
                        int(op.attr("filter_w")), dilated=False)


def _float(g, op: Op, inp):
    x = inp(0)
    n, h, w, c = x.shape
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    (pt, pb, pl, pr), (sh, sw), _ = float_pad_amounts(op, h, w, kh, kw)
    if op.type == "MAX_POOL_2D":
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
        return windows(np.ascontiguousarray(xp), kh, kw, sh, sw, 1, 1).max(axis=(3, 4))
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ones = np.pad(np.ones((1, h, w, 1), x.dtype), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    s = windows(np.ascontiguousarray(xp), kh, kw, sh, sw, 1, 1).sum(axis=(3, 4))
    cnt = windows(ones, kh, kw, sh, sw, 1, 1).sum(axis=(3, 4))   # padding excluded (TFLite)
    return s / cnt


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = qparams(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64)
    n, h, w, c = x.shape
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    oh, ph = compute_padding(sh, 1, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, 1, w, kw, op.attr("padding"))
    lo, hi = act_range(op, out_s, out_zp)
    if op.type == "MAX_POOL_2D":
        _, taps = pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, np.iinfo(np.int64).min)
        res = np.maximum.reduce(taps)
        return np.clip(res, lo, hi).astype(np.int8)
    _, taps = pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, 0)
    _, mtaps = pad_windows(np.ones((1, h, w, 1), np.int64), kh, kw, sh, sw, 1, 1, oh, ow,
                           ph, pw, 0)
    acc = np.add.reduce(taps)
    cnt = np.add.reduce(mtaps)
    half = cnt // 2
    res = np.where(acc > 0, qm.trunc_div(acc + half, cnt), qm.trunc_div(acc - half, cnt))
    return np.clip(res, lo, hi).astype(np.int8)


def _params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = qparams(ot, op.name)
    n, h, w, c = dims4(xt.shape)
    kh, kw = int(op.attr("filter_h")), int(op.attr("filter_w"))
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    oh, ph = compute_padding(sh, 1, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, 1, w, kw, op.attr("padding"))
    lo, hi = act_range(op, out_s, out_zp)
    return dict(stride_h=sh, stride_w=sw, filter_h=kh, filter_w=kw, pad_h=ph, pad_w=pw,
                act_min=lo, act_max=hi, input_dims=(n, h, w, c), output_dims=(n, oh, ow, c))


def _emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    fn = "mcu_avgpool_s8" if op.type == "AVERAGE_POOL_2D" else "mcu_maxpool_s8"
    pp = em.struct(P, "mcu_pool_params_t", p, ["stride_h", "stride_w", "filter_h", "filter_w",
                                               "pad_h", "pad_w", "act_min", "act_max"])
    idm, odm = em.dims(P, "id", p["input_dims"]), em.dims(P, "od", p["output_dims"])
    if em.row_delayed(op):
        return em.rows(op, p, fn, "mcu_pool_params_t", pp, "", idm, "", odm, "")
    return [f"{fn}({pp}, {idm}, {em.ptr(op.inputs[0])}, {odm}, {em.ptr(op.outputs[0])});"]


def _torch(m, op: Op, x, inp):
    import torch
    import torch.nn.functional as F
    n, h, wd, c = x.shape
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    sh, sw = op.attr("stride_h") or 1, op.attr("stride_w") or 1
    xc = x.permute(0, 3, 1, 2)
    pads = (0, 0, 0, 0)
    if op.attr("padding") == "SAME":
        pads = torch_same_pad(xc, op, kh, kw, dilated=False)
    if op.type == "MAX_POOL_2D":
        y = F.max_pool2d(F.pad(xc, pads, value=-1e30), (kh, kw), (sh, sw))
    else:
        s = F.avg_pool2d(F.pad(xc, pads), (kh, kw), (sh, sw)) * (kh * kw)
        cnt = F.avg_pool2d(F.pad(torch.ones(1, 1, h, wd), pads), (kh, kw), (sh, sw)) * (kh * kw)
        y = s / cnt
    return y.permute(0, 2, 3, 1)


for _name, _doc in (("AVERAGE_POOL_2D", "average over valid taps, round half away from zero"),
                    ("MAX_POOL_2D", "maximum over the window")):
    register(OpDef(_name, dict(ATTRS), infer_shape=_shape, float_eval=_float, reference=_reference,
                   quant=QuantRule(same_quant="first"), kernel_params=_params, emit=_emit,
                   row_capable=True, torch=_torch, doc=_doc,
                   # spiking networks: an average of spikes (fixed point: SUM_POOL_2D)
                   **(dict(snn_role="pool", step_float=pool_step_float)
                      if _name == "AVERAGE_POOL_2D" else {})))

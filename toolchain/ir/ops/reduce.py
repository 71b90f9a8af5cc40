"""MEAN over contiguous axes (inputs: x, axes as an int32 constant).

TFLM's int8 QuantizedMeanOrSum: sum - zp*count, then MultiplyByQuantizedMultiplier
with the multiplier of in_s/out_s divided by count (shifted by min(floor(log2 count),
32, 31 + shift) first). Kernel: runtime/mean.c.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, qparams, register


def _count_multiplier(in_s: float, out_s: float, count: int) -> tuple[int, int]:
    mult, shift = qm.quantize_multiplier(in_s / out_s)
    s = min(count.bit_length() - 1, 32, 31 + shift)      # 63 - clz64(count)
    return int((mult << s) // count), int(shift - s)


def _axes(g: Graph, op: Op, rank: int) -> list[int]:
    return sorted({int(a) % rank for a in np.atleast_1d(g.t(op.inputs[1]).data)})


def _shape(g: Graph, op: Op):
    shape = list(g.t(op.inputs[0]).shape)
    axes = _axes(g, op, len(shape))
    if op.attr("keep_dims"):
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _float(g, op, inp):
    axes = tuple(int(a) for a in np.asarray(g.t(op.inputs[1]).data).reshape(-1))
    return inp(0).mean(axis=axes, keepdims=bool(op.attr("keep_dims")))


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64)
    axes = tuple(_axes(g, op, x.ndim))
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    mult, shift = _count_multiplier(in_s, out_s, count)
    total = x.sum(axis=axes) - in_zp * count
    out = np.clip(qm.multiply_by_quantized_multiplier(qm.wrap_int32(total), mult, shift)
                  + out_zp, -128, 127)
    return out.reshape(ot.shape).astype(np.int8)


def _params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    shape = [int(d) for d in xt.shape]
    axes = _axes(g, op, len(shape))
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise IRError(f"layer '{op.name}' (MEAN): axes {axes} are not contiguous")
    outer = int(np.prod(shape[:axes[0]], dtype=np.int64))
    reduce = int(np.prod(shape[axes[0]:axes[-1] + 1], dtype=np.int64))
    inner = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
    mult, shift = _count_multiplier(in_s, out_s, reduce)
    return dict(outer=outer, reduce=reduce, inner=inner, input_zero_point=in_zp,
                multiplier=mult, shift=shift, output_zero_point=out_zp)


def _emit(em, k, op, p):
    return [f"mcu_mean_s8({p['outer']}, {p['reduce']}, {p['inner']}, "
            f"{em.ptr(op.inputs[0])}, {p['input_zero_point']}, {p['multiplier']}, "
            f"{p['shift']}, {p['output_zero_point']}, {em.ptr(op.outputs[0])});"]


def _torch(m, op, x, inp):
    axes = tuple(int(a) for a in np.asarray(m.graph.t(op.inputs[1]).data).reshape(-1))
    return x.mean(dim=axes, keepdim=bool(op.attr("keep_dims")))


register(OpDef("MEAN", dict(keep_dims=True), infer_shape=_shape, float_eval=_float, reference=_reference,
               kernel_params=_params, emit=_emit, torch=_torch,
               doc="mean over contiguous axes"))

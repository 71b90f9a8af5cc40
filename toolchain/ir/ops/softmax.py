"""SOFTMAX over the last axis. int8: gemmlowp fixed-point exp (Q5.26), Q12.19
accumulation and reciprocal, as TFLM (quant_math.softmax_int8). The int8 output has
scale 1/256 and zero point -128 by the TFLite spec. Kernel: runtime/softmax.c.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, QuantRule, qparams, register, same_as_input

OUTPUT_QUANT = (1.0 / 256.0, -128)


def _check_output(g: Graph, op: Op) -> None:
    out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
    if out_zp != -128 or np.float32(out_s) != np.float32(1.0 / 256):
        raise IRError(f"layer '{op.name}' (SOFTMAX): int8 output must have scale 1/256 and "
                      f"zero point -128 (has {out_s}, {out_zp})")


def _float(g, op, inp):
    x = inp(0)
    z = (x - x.max(axis=-1, keepdims=True)) * float(op.attr("beta"))
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    in_s, _ = qparams(g.t(op.inputs[0]), op.name)
    _check_output(g, op)
    m, s, diff_min = qm.softmax_params(op.attr("beta"), in_s)
    return qm.softmax_int8(v[op.inputs[0]], m, s, diff_min)


def _params(g: Graph, op: Op) -> dict:
    xt = g.t(op.inputs[0])
    in_s, _ = qparams(xt, op.name)
    _check_output(g, op)
    m, s, diff_min = qm.softmax_params(op.attr("beta"), in_s)
    depth = int(xt.shape[-1])
    return dict(input_multiplier=int(m), input_left_shift=int(s), diff_min=int(diff_min),
                rows=xt.size // depth, depth=depth)


def _emit(em, k, op, p):
    pp = em.struct(em.layer_prefix(k), "mcu_softmax_params_t", p,
                   ["input_multiplier", "input_left_shift", "diff_min"])
    return [f"mcu_softmax_s8({pp}, {p['rows']}, {p['depth']}, "
            f"{em.ptr(op.inputs[0])}, {em.ptr(op.outputs[0])});"]


def _torch(m, op, x, inp):
    import torch
    return torch.softmax(x * float(op.attr("beta")), dim=-1)


register(OpDef("SOFTMAX", dict(beta=1.0), infer_shape=same_as_input, float_eval=_float, reference=_reference,
               quant=QuantRule(fixed_output=OUTPUT_QUANT), kernel_params=_params, emit=_emit,
               torch=_torch, doc="softmax over the last axis"))

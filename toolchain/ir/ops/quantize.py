"""QUANTIZE (float32 -> int8, or int8 -> int8 requantize) and DEQUANTIZE (int8 ->
float32): graph boundary ops of TFLite files. The runtime has no kernel for them (its
models are int8 end to end), so the code generator refuses them by name.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, qparams, register, same_as_input


def _quantize_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = qparams(ot, op.name)
    if ot.dtype != "int8":
        raise IRError(f"layer '{op.name}' (QUANTIZE): output must be int8, not {ot.dtype}")
    x = v[op.inputs[0]]
    if xt.dtype == "float32":
        q = qm.round_half_away(np.asarray(x, np.float32) / np.float32(out_s)) + out_zp
        return np.clip(q, -128, 127).astype(np.int8)
    if xt.dtype == "int8":
        in_s, in_zp = qparams(xt, op.name)
        m, s = qm.quantize_multiplier(in_s / out_s)
        q = qm.multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, m, s) + out_zp
        return np.clip(q, -128, 127).astype(np.int8)
    raise IRError(f"layer '{op.name}' (QUANTIZE): input type {xt.dtype} is not supported")


def _dequantize_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    s, zp = qparams(g.t(op.inputs[0]), op.name)
    return (s * (v[op.inputs[0]].astype(np.float64) - zp)).astype(np.float32)


def _identity(g, op, inp):
    return inp(0)                               # values stay real-valued in float graphs


register(OpDef("QUANTIZE", {}, infer_shape=same_as_input, float_eval=_identity, reference=_quantize_ref,
               float_io=("in",), torch=lambda m, op, x, inp: x,
               doc="float32 -> int8, or int8 requantize"))
register(OpDef("DEQUANTIZE", {}, infer_shape=same_as_input, float_eval=_identity, reference=_dequantize_ref,
               float_io=("out",), torch=lambda m, op, x, inp: x, doc="int8 -> float32"))

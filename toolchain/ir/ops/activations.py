"""Standalone activations: RELU (requantizes in_s/out_s) and RELU6 (clamps to
[zp, q(6)] in the input's quantization, as TFLM's Relu6 int8 does).

Kernels: firmware_templates/runtime/elementwise.c (mcu_relu_s8, mcu_clamp_s8); both
run in place. After CONV/DEPTHWISE/FC/ADD the quantizer fuses them instead.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, Op

from .base import OpDef, QuantRule, qparams, register, same_shape_inputs

_INT8_MIN, _INT8_MAX = -128, 127


def _relu_params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    m, s = qm.quantize_multiplier(in_s / out_s)
    lo = max(_INT8_MIN, out_zp + int(qm.round_half_away(np.float32(0.0) / np.float32(out_s))))
    return dict(input_zero_point=in_zp, output_zero_point=out_zp, multiplier=int(m),
                shift=int(s), act_min=lo, act_max=_INT8_MAX, size=xt.size)


def _relu_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _relu_params(g, op)
    x = v[op.inputs[0]].astype(np.int64)
    out = p["output_zero_point"] + qm.multiply_by_quantized_multiplier(
        x - p["input_zero_point"], p["multiplier"], p["shift"])
    return np.clip(out, p["act_min"], _INT8_MAX).astype(np.int8)


def _relu6_params(g: Graph, op: Op) -> dict:
    xt = g.t(op.inputs[0])
    in_s, in_zp = qparams(xt, op.name)
    six = int(np.clip(in_zp + qm.round_half_away(np.float32(6.0) / np.float32(in_s)),
                      _INT8_MIN, _INT8_MAX))
    return dict(lo=in_zp, hi=six, size=xt.size)


def _relu6_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _relu6_params(g, op)
    return np.clip(v[op.inputs[0]].astype(np.int64), p["lo"], p["hi"]).astype(np.int8)


def _relu_emit(em, k, op, p):
    return [f"mcu_relu_s8({em.ptr(op.inputs[0])}, {em.ptr(op.outputs[0])}, {p['size']}, "
            f"{p['input_zero_point']}, {p['output_zero_point']}, {p['multiplier']}, "
            f"{p['shift']}, {p['act_min']}, {p['act_max']});"]


def _relu6_emit(em, k, op, p):
    return [f"mcu_clamp_s8({em.ptr(op.inputs[0])}, {em.ptr(op.outputs[0])}, {p['size']}, "
            f"{p['lo']}, {p['hi']});"]


def _torch_relu(m, op, x, inp):
    import torch
    return torch.relu(x)


def _torch_relu6(m, op, x, inp):
    import torch
    return torch.clamp(x, 0, 6)


register(OpDef("RELU", {}, float_eval=lambda g, op, inp: np.maximum(inp(0), 0),
               reference=_relu_ref, quant=QuantRule(fused_as="RELU"), kernel_params=_relu_params, emit=_relu_emit,
               inplace=same_shape_inputs, torch=_torch_relu, doc="max(x, 0), requantized"))
register(OpDef("RELU6", {}, float_eval=lambda g, op, inp: np.clip(inp(0), 0, 6),
               reference=_relu6_ref, quant=QuantRule(fused_as="RELU6"), kernel_params=_relu6_params, emit=_relu6_emit,
               inplace=same_shape_inputs, torch=_torch_relu6, doc="min(max(x, 0), 6)"))

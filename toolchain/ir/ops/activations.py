"""Activations: RELU (requantizes in_s/out_s), RELU6 (clamps to [zp, q(6)] in the
input's quantization, as TFLM's Relu6 int8 does) and LOGISTIC (TFLM's int8 Logistic,
run on the device as a 256-entry table).

Kernels: firmware_templates/runtime/elementwise.c (mcu_relu_s8, mcu_clamp_s8) and
activations.c (mcu_lut_s8); all run in place. After CONV/DEPTHWISE/FC/ADD the
quantizer fuses RELU/RELU6 instead.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, QuantRule, qparams, register, same_as_input, same_shape_inputs

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


register(OpDef("RELU", {}, infer_shape=same_as_input, float_eval=lambda g, op, inp: np.maximum(inp(0), 0),
               reference=_relu_ref, quant=QuantRule(fused_as="RELU"), kernel_params=_relu_params, emit=_relu_emit,
               inplace=same_shape_inputs, torch=_torch_relu, doc="max(x, 0), requantized"))
register(OpDef("RELU6", {}, infer_shape=same_as_input, float_eval=lambda g, op, inp: np.clip(inp(0), 0, 6),
               reference=_relu6_ref, quant=QuantRule(fused_as="RELU6"), kernel_params=_relu6_params, emit=_relu6_emit,
               inplace=same_shape_inputs, torch=_torch_relu6, doc="min(max(x, 0), 6)"))


# ---------------------------------------------------------------- LOGISTIC
def _logistic_params(g: Graph, op: Op) -> dict:
    """TFLM's int8 Logistic Prepare (quant_math.logistic_params), and the 256-entry
    table it implies: the runtime looks outputs up instead of evaluating gemmlowp's
    fixed-point logistic (bit-exact by construction, about 4 instructions a byte)."""
    xt = g.t(op.inputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
    if (out_s, out_zp) != (float(np.float32(qm.LOGISTIC_QUANT[0])), qm.LOGISTIC_QUANT[1]):
        raise IRError(f"layer '{op.name}' (LOGISTIC): int8 output must have scale 1/256 and "
                      f"zero point -128 (has {out_s}, {out_zp})")
    try:
        zp, mult, shift, radius = qm.logistic_params(in_s, in_zp)
    except ValueError as e:
        raise IRError(f"layer '{op.name}': {e}") from None
    return dict(input_zero_point=zp, input_multiplier=mult, input_left_shift=shift,
                input_range_radius=radius, size=xt.size,
                table=qm.lut_s8_table(lambda x: qm.logistic_int8(x, zp, mult, shift, radius)))


def _logistic_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _logistic_params(g, op)
    return qm.logistic_int8(v[op.inputs[0]], p["input_zero_point"], p["input_multiplier"],
                            p["input_left_shift"], p["input_range_radius"])


def emit_lut(em, k: int, op: Op, p: dict) -> list[str]:
    """Any int8 -> int8 op given by a table of 256 outputs indexed by (uint8_t)x."""
    P = em.layer_prefix(k)
    em.decls.append(f"static const int8_t {P}_lut[256] = {{{em.arr(p['table'])}}};")
    em.table_bytes += 256
    return [f"mcu_lut_s8({em.ptr(op.inputs[0])}, {em.ptr(op.outputs[0])}, {p['size']}, "
            f"{P}_lut);"]


def _torch_logistic(m, op, x, inp):
    import torch
    return torch.sigmoid(x)


register(OpDef("LOGISTIC", {}, infer_shape=same_as_input,
               float_eval=lambda g, op, inp: 0.5 * (1.0 + np.tanh(0.5 * inp(0).astype(np.float64))),
               reference=_logistic_ref, quant=QuantRule(fixed_output=qm.LOGISTIC_QUANT),
               kernel_params=_logistic_params, emit=emit_lut, inplace=same_shape_inputs,
               torch=_torch_logistic, doc="1 / (1 + exp(-x)); int8 output scale 1/256, zp -128"))

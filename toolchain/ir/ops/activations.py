"""Activations: RELU (requantizes in_s/out_s), RELU6 (clamps to [zp, q(6)] in the
input's quantization, as TFLM's Relu6 int8 does), and the table activations LOGISTIC,
TANH, HARD_SWISH and LEAKY_RELU (TFLM's int8 kernels, run on the device as a 256-entry
table).

Kernels: firmware_templates/runtime/elementwise.c (mcu_relu_s8, mcu_clamp_s8) and
activations.c (mcu_lut_s8); all run in place. After CONV/DEPTHWISE/FC/ADD the
quantizer fuses RELU/RELU6 instead.

TFLM fidelity (the arithmetic and its quirks are documented beside the numpy code in
toolchain/ir/quant_math.py):
- LOGISTIC: gemmlowp logistic on Q4.27 (frexp input multiplier, input radius); output
  (1/256, -128) — TFLM checks only the zero point, the bytes always mean 1/256.
- TANH: the same input arithmetic, gemmlowp tanh; TFLM checks no output quantization
  at all and always writes units of 1/128 around 0, so the output must be (1/128, 0).
- HARD_SWISH: reference_ops::HardSwish in int16 fixed point (HardSwishParams from
  scale ratios divided in double, QuantizeMultiplier then
  DownScaleInt32ToInt16Multiplier);
  any output quantization whose scale is at least about input scale / 128 (TFLM's
  Prepare fails otherwise).
- LEAKY_RELU: reference_ops::QuantizeLeakyRelu, identity and alpha multipliers
  (QuantizeMultiplier of in_s/out_s and in_s*alpha/out_s in double, double
  rounding; a negative alpha multiplies by |multiplier| and negates); any output
  quantization, any alpha (negative or > 1 too).
Every table is built from the op's numpy reference (quant_math.lut_s8_table), so
the device is bit-exact with the reference by construction.

PRELU (inputs x and alpha, alpha broadcast into x, e.g. one slope per channel) is
TFLM's int8 Prelu (CalculatePreluParams / BroadcastPrelu4DSlow): two multipliers,
QuantizeMultiplier of in_s/out_s and in_s*alpha_s/out_s in double;
out = clamp(zo + MBQM(x - zi, m1, s1)) where x - zi >= 0, else
clamp(zo + MBQM((x - zi) * (a - za), m2, s2)). alpha is per-tensor quantized (TFLM
reads alpha->params); its output shape is the input's. Kernel: activations.c
mcu_prelu_s8 (not a table: two inputs).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, dims4, qparams, register, same_as_input,
                   same_shape_inputs)

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


# ---------------------------------------------------------------- LOGISTIC, TANH
def _radius_lut(name: str, out_quant, prepare, evaluate):
    """(kernel_params, reference) of a TFLM int8 op with an input-radius Prepare and a
    required output quantization (LOGISTIC, TANH): the Prepare (quant_math) and the
    256-entry table it implies, which the runtime looks outputs up in instead of
    evaluating gemmlowp's fixed point (bit-exact by construction, ~4 instructions a byte)."""
    want = (float(np.float32(out_quant[0])), out_quant[1])

    def params(g: Graph, op: Op) -> dict:
        xt = g.t(op.inputs[0])
        in_s, in_zp = qparams(xt, op.name)
        out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
        if (out_s, out_zp) != want:
            raise IRError(f"layer '{op.name}' ({name}): int8 output must have scale "
                          f"1/{round(1 / out_quant[0])} and zero point {out_quant[1]} "
                          f"(has {out_s}, {out_zp})")
        try:
            zp, mult, shift, radius = prepare(in_s, in_zp)
        except ValueError as e:
            raise IRError(f"layer '{op.name}': {e}") from None
        return dict(input_zero_point=zp, input_multiplier=mult, input_left_shift=shift,
                    input_range_radius=radius, size=xt.size,
                    table=qm.lut_s8_table(lambda x: evaluate(x, zp, mult, shift, radius)))

    def reference(g: Graph, op: Op, v: dict) -> np.ndarray:
        p = params(g, op)
        return evaluate(v[op.inputs[0]], p["input_zero_point"], p["input_multiplier"],
                        p["input_left_shift"], p["input_range_radius"])
    return params, reference


_logistic_params, _logistic_ref = _radius_lut("LOGISTIC", qm.LOGISTIC_QUANT,
                                              qm.logistic_params, qm.logistic_int8)
_tanh_params, _tanh_ref = _radius_lut("TANH", qm.TANH_QUANT, qm.tanh_params, qm.tanh_int8)


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


# ---------------------------------------------------------------- TANH
def _torch_tanh(m, op, x, inp):
    import torch
    return torch.tanh(x)


register(OpDef("TANH", {}, infer_shape=same_as_input,
               float_eval=lambda g, op, inp: np.tanh(inp(0).astype(np.float64)),
               reference=_tanh_ref, quant=QuantRule(fixed_output=qm.TANH_QUANT),
               kernel_params=_tanh_params, emit=emit_lut, inplace=same_shape_inputs,
               torch=_torch_tanh, doc="tanh(x); int8 output scale 1/128, zp 0"))


# ---------------------------------------------------------------- HARD_SWISH
_HS_KEYS = ("input_zero_point", "output_zero_point", "reluish_multiplier_fixedpoint_int16",
            "reluish_multiplier_exponent", "output_multiplier_fixedpoint_int16",
            "output_multiplier_exponent")


def _hard_swish_params(g: Graph, op: Op) -> dict:
    """TFLM's int8 HardSwishPrepare (quant_math.hard_swish_params, the HardSwishParams
    fields) and its 256-entry table."""
    xt = g.t(op.inputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
    try:
        prm = qm.hard_swish_params(in_s, in_zp, out_s, out_zp)
    except ValueError as e:
        raise IRError(f"layer '{op.name}': {e}") from None
    return dict(zip(_HS_KEYS, prm), size=xt.size,
                table=qm.lut_s8_table(lambda x: qm.hard_swish_int8(x, *prm)))


def _hard_swish_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _hard_swish_params(g, op)
    return qm.hard_swish_int8(v[op.inputs[0]], *(p[k] for k in _HS_KEYS))


def _hard_swish_float(g, op, inp):
    x = inp(0).astype(np.float64)
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _torch_hard_swish(m, op, x, inp):
    import torch
    return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


register(OpDef("HARD_SWISH", {}, infer_shape=same_as_input, float_eval=_hard_swish_float,
               reference=_hard_swish_ref, quant=QuantRule(),
               kernel_params=_hard_swish_params, emit=emit_lut, inplace=same_shape_inputs,
               torch=_torch_hard_swish, doc="x * relu6(x + 3) / 6"))


# ---------------------------------------------------------------- LEAKY_RELU
_LR_KEYS = ("input_zero_point", "output_zero_point", "output_multiplier_identity",
            "output_shift_identity", "output_multiplier_alpha", "output_shift_alpha")


def _leaky_relu_params(g: Graph, op: Op) -> dict:
    """TFLM's int8 LeakyReluPrepare (quant_math.leaky_relu_params) and its table."""
    xt = g.t(op.inputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
    alpha = float(np.float32(op.attr("alpha")))
    try:
        prm = qm.leaky_relu_params(in_s, in_zp, out_s, out_zp, alpha)
    except ValueError as e:
        raise IRError(f"layer '{op.name}': {e}") from None
    return dict(zip(_LR_KEYS, prm), alpha=alpha, size=xt.size,
                table=qm.lut_s8_table(lambda x: qm.leaky_relu_int8(x, *prm)))


def _leaky_relu_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _leaky_relu_params(g, op)
    return qm.leaky_relu_int8(v[op.inputs[0]], *(p[k] for k in _LR_KEYS))


def _leaky_relu_float(g, op, inp):
    x = inp(0)
    return np.where(x > 0, x, x * np.float32(op.attr("alpha")))


def _torch_leaky_relu(m, op, x, inp):
    import torch
    return torch.where(x > 0, x, x * float(np.float32(op.attr("alpha"))))


register(OpDef("LEAKY_RELU", {"alpha": 0.2}, infer_shape=same_as_input,
               float_eval=_leaky_relu_float, reference=_leaky_relu_ref, quant=QuantRule(),
               kernel_params=_leaky_relu_params, emit=emit_lut, inplace=same_shape_inputs,
               torch=_torch_leaky_relu, doc="x if x > 0 else alpha * x (LeakyReluOptions.alpha)"))


# ---------------------------------------------------------------- PRELU
PRELU_FIELDS = ["input_offset", "alpha_offset", "output_offset", "output_multiplier_1",
                "output_shift_1", "output_multiplier_2", "output_shift_2"]


def _prelu_shape(g: Graph, op: Op):
    x, a = g.t(op.inputs[0]).shape, g.t(op.inputs[1]).shape
    try:
        out = tuple(np.broadcast_shapes(tuple(x), tuple(a)))
    except ValueError:
        raise IRError(f"layer '{op.name}' (PRELU): alpha {tuple(a)} does not broadcast to "
                      f"the input {tuple(x)}") from None
    if out != tuple(x):
        raise IRError(f"layer '{op.name}' (PRELU): alpha {tuple(a)} is larger than the "
                      f"input {tuple(x)}")
    return out


def _prelu_q(g: Graph, op: Op):
    (si, zi), (sa, za), (so, zo) = (qparams(g.t(n), op.name)
                                    for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    m1, s1 = qm.quantize_multiplier(si / so)
    m2, s2 = qm.quantize_multiplier(si * sa / so)
    return dict(input_offset=-zi, alpha_offset=-za, output_offset=zo,
                output_multiplier_1=int(m1), output_shift_1=int(s1),
                output_multiplier_2=int(m2), output_shift_2=int(s2))


def _prelu_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _prelu_q(g, op)
    x = v[op.inputs[0]].astype(np.int64) + p["input_offset"]
    a = v[op.inputs[1]].astype(np.int64) + p["alpha_offset"]
    pos = qm.multiply_by_quantized_multiplier(x, p["output_multiplier_1"], p["output_shift_1"])
    neg = qm.multiply_by_quantized_multiplier(np.broadcast_to(x * a, x.shape),
                                              p["output_multiplier_2"], p["output_shift_2"])
    out = np.where(x >= 0, pos, neg) + p["output_offset"]
    return np.clip(out, _INT8_MIN, _INT8_MAX).astype(np.int8).reshape(g.t(op.outputs[0]).shape)


def _prelu_params(g: Graph, op: Op) -> dict:
    from .elementwise import broadcast_strides
    _prelu_shape(g, op)
    x, a = g.t(op.inputs[0]), g.t(op.inputs[1])
    if len(x.shape) > 4:
        raise IRError(f"layer '{op.name}' (PRELU): {len(x.shape)}-D input; TFLite Micro's "
                      "Prelu is 4-D at most")
    return dict(_prelu_q(g, op), output_dims=dims4(x.shape), size=x.size,
                alpha_strides=broadcast_strides(a.shape, x.shape))


def _prelu_emit(em, k, op, p):
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_prelu_params_t", p, PRELU_FIELDS)
    odm = em.dims(P, "od", p["output_dims"])
    em.decls.append(f"static const int32_t {P}_as[4] = {{{em.arr(p['alpha_strides'])}}};")
    return [f"mcu_prelu_s8({pp}, {odm}, {em.ptr(op.inputs[0])}, {em.ptr(op.inputs[1])}, "
            f"{P}_as, {em.ptr(op.outputs[0])});"]


def _prelu_torch(m, op, x, inp):
    import torch
    return torch.where(x >= 0, x, x * inp(1))


register(OpDef("PRELU", {}, infer_shape=_prelu_shape,        # inputs: x, alpha
               float_eval=lambda g, op, inp: np.where(inp(0) >= 0, inp(0), inp(0) * inp(1)),
               reference=_prelu_ref, quant=QuantRule(const_inputs=True),
               kernel_params=_prelu_params, emit=_prelu_emit, inplace=same_shape_inputs,
               int8_const_inputs=True, torch=_prelu_torch,
               doc="x for x >= 0, alpha * x below (alpha broadcast, e.g. per channel)"))

"""FULLY_CONNECTED: x [..., K] (flattened to [batches, K]), weights [O, K] int8 (per
tensor, or per channel), bias int32 [O].

Kernel: firmware_templates/runtime/fully_connected.c (DSP, not patchable: the filter
packed by four rows at build time and the input offset folded into the bias, raw input
bytes, no scratch; patchable DSP builds: input expanded to int16 in scratch, in blocks
of columns with int32 partial sums where that needs less scratch).
Multipliers follow the installed tflite-micro: in_s * w_s / out_s in double (of the
float32 scales), per channel or per tensor. Older TFLite sources multiply the two
scales in float32 first; tflite-micro does not (tests/test_quant_formulas.py).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, act_range, bias_i32, bias_input, i32, qparams, register,
                   requant, wscales)
from .synapses import emit_fc, fc_step_fixed, fc_step_float

ATTRS = dict(fused_activation="NONE", keep_num_dims=False)


def _shape(g: Graph, op: Op):
    x, (o, k) = g.t(op.inputs[0]).shape, g.t(op.inputs[1]).shape
    if op.attr("keep_num_dims"):
        return tuple(x[:-1]) + (o,)
    return (int(np.prod(x, dtype=np.int64)) // k, o)


def _float(g, op, inp):
    x, w, b = inp(0), inp(1), inp(2)
    y = x @ w.T if op.attr("keep_num_dims") else x.reshape(-1, w.shape[1]) @ w.T
    return y + b if b is not None else y


def _multipliers(in_s: float, wt, o: int, out_s: float):
    if wt.quant.scale.size > 1:
        return qm.quantize_multiplier(in_s * wscales(wt, o) / out_s)
    return qm.quantize_multiplier(float(in_s) * float(qm.f32(wt.quant.scale[0])) / out_s)


def _reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    w = wt.data.astype(np.int64)
    o, k = w.shape
    w_zp = int(wt.quant.zero_point[0])
    x = v[op.inputs[0]].astype(np.int64).reshape(-1, k) - in_zp
    acc = (x.astype(np.float64) @ (w - w_zp).T.astype(np.float64)).astype(np.int64)
    b = bias_input(g, op)
    if b is not None:
        acc = acc + b.data.astype(np.int64)
    mult, shift = _multipliers(in_s, wt, o, out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return requant(acc, mult, shift, out_zp, lo, hi).reshape(ot.shape)


def _params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    o, k = wt.shape
    if xt.size % k:
        raise IRError(f"layer '{op.name}' (FULLY_CONNECTED): input size {xt.size} is not a "
                      f"multiple of {k}")
    per_channel = wt.quant.scale.size > 1
    mult, shift = _multipliers(in_s, wt, o, out_s)
    lo, hi = act_range(op, out_s, out_zp)
    return dict(input_offset=-in_zp, filter_offset=-int(wt.quant.zero_point[0]),
                output_offset=out_zp, act_min=lo, act_max=hi, per_channel=int(per_channel),
                multiplier=i32(np.atleast_1d(mult)), shift=i32(np.atleast_1d(shift)),
                bias=bias_i32(g, op), filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                batches=xt.size // k, in_features=k, out_features=o)


def _scratch(p, variant, patchable, rt) -> int:
    if variant == "portable" or rt.fc_uses_packed(p, variant, patchable):
        return 0
    return rt.fc_scratch(p["in_features"], p["out_features"])


def _emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_fc_params_t", p, ["input_offset", "filter_offset", "output_offset",
                                             "act_min", "act_max"])
    q = em.quant(P, p)
    args = (f"{pp}, {q}, {p['per_channel']}, {p['batches']}, {p['in_features']}, "
            f"{p['out_features']}, {em.ptr(op.inputs[0])}, ")
    if em.rt.fc_uses_packed(p, em.variant, em.patchable):
        # packed filter + folded bias replace the int8 filter and the bias
        wp, bp = em.rt.fc_packed(p)
        w = em.derived_const(op.inputs[1] + ":dsp_fc_packed", wp, "int8_t")
        bname = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] else ""
        b = em.derived_const(f"{op.inputs[1]}:{bname}:{p['input_offset']}:dsp_fc_bias", bp,
                             "int32_t")
        return [f"mcu_fc_s8_packed({args}{w}, {b}, {em.ptr(op.outputs[0])});"]
    w = em.const(op.inputs[1], p["filter"], "int8_t")
    alloc = em.plan.kernel_scratch.get(op.name, 0)
    em.checks.append(f"if (mcu_fc_s8_scratch_size({p['in_features']}, {p['out_features']}) > "
                     f"{alloc}) return 0;")
    return [f"mcu_fc_s8({pp}, {q}, {p['per_channel']}, {p['batches']}, "
            f"{p['in_features']}, {p['out_features']}, {em.ptr(op.inputs[0])}, {w}, "
            f"{em.bias(op, p)}, {em.ptr(op.outputs[0])}, {em.scratch(op)});"]


def _torch(m, op: Op, x, inp):
    w, b = inp(1), inp(2)
    y = (x if op.attr("keep_num_dims") else x.reshape(-1, w.shape[1])) @ w.T
    return y + b if b is not None else y


register(OpDef(
    "FULLY_CONNECTED", ATTRS, infer_shape=_shape, float_eval=_float, reference=_reference,
    quant=QuantRule(weight_axis="fc", fusable=True), kernel_params=_params, scratch=_scratch,
    emit=_emit, weight_roles={1: "weight", 2: "bias"}, torch=_torch,
    macs=lambda g, op: g.t(op.outputs[0]).size * g.t(op.inputs[1]).shape[1],
    doc="matrix times vector(s), int8 weights per tensor or per channel",
    # spiking networks: the event-driven synapse (synapses.py, docs/snn.md)
    snn_role="synapse", step_float=fc_step_float, step_fixed=fc_step_fixed, emit_snn=emit_fc))

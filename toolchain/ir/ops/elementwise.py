"""ADD, SUB and MUL of two int8 tensors, with NHWC broadcasting (4-D, right-aligned).

ADD follows TFLM exactly: left_shift 20, three SmallerThanOneExp multipliers
(quant_math.add_multipliers, shared with the kernel parameters). SUB is TFLM's
int8 Sub: the same Prepare (PrepareGeneralSubOp: left_shift 20 for int8, inputs
rescaled to twice the larger input scale, SmallerThanOneExp multipliers) and the
same arithmetic with the difference of the rescaled inputs (reference_ops::Sub /
BroadcastQuantSubSlow, int32 wrap-around like ADD). MUL: one multiplier s1*s2/so.

MAXIMUM / MINIMUM are TFLM's int8 MaximumMinimum: the larger / smaller raw int8
byte of the two (broadcast) inputs, no rescaling and no fused activation. TFLM
does not check that the inputs and the output share a quantization; the quantizer
gives them one (same_quant="all") and the reference refuses graphs where they
differ, naming the layer (as CONCATENATION does), instead of a silent byte compare.
Kernels: firmware_templates/runtime/elementwise.c; all run in place over an input
of the output's shape.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (OpDef, QuantRule, act_range, broadcast_shape, dims4, qparams, register,
                   same_shape_inputs)
from .synapses import _FANIN, add_step_float

ATTRS = dict(fused_activation="NONE")


def broadcast_strides(shape, out_shape) -> list[int]:
    """Element strides of a (right-aligned, 4-D) input inside an NHWC output; 0 on
    broadcast dimensions."""
    d = dims4(shape)
    od = dims4(out_shape)
    strides, acc = [0] * 4, 1
    for i in (3, 2, 1, 0):
        if d[i] != od[i] and d[i] != 1:
            raise IRError(f"shape {tuple(shape)} does not broadcast to {tuple(out_shape)}")
        strides[i] = 0 if (d[i] == 1 and od[i] != 1) else acc
        acc *= d[i]
    return strides


def _layout(g: Graph, op: Op) -> dict:
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    same = tuple(t1.shape) == tuple(t2.shape) == tuple(ot.shape)
    return dict(broadcast=not same, size=ot.size, output_dims=dims4(ot.shape),
                strides1=broadcast_strides(t1.shape, ot.shape),
                strides2=broadcast_strides(t2.shape, ot.shape))


def _qp3(g: Graph, op: Op):
    return (qparams(g.t(op.inputs[0]), op.name), qparams(g.t(op.inputs[1]), op.name),
            qparams(g.t(op.outputs[0]), op.name))


# ---------------------------------------------------------------- ADD / SUB
def _add_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    (s1, z1), (s2, z2), (so, zo) = _qp3(g, op)
    left_shift, (m1, sh1), (m2, sh2), (mo, sho) = qm.add_multipliers(s1, s2, so)
    a = (v[op.inputs[0]].astype(np.int64) - z1) * (1 << left_shift)
    b = (v[op.inputs[1]].astype(np.int64) - z2) * (1 << left_shift)
    a = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1, sh1)
    b = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2, sh2)
    raw = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(
        qm.wrap_int32(a - b if op.type == "SUB" else a + b), mo, sho)
    lo, hi = act_range(op, so, zo)
    return np.broadcast_to(np.clip(raw + zo, lo, hi), g.t(op.outputs[0]).shape).astype(np.int8)


def _add_params(g: Graph, op: Op) -> dict:
    (s1, z1), (s2, z2), (so, zo) = _qp3(g, op)
    left_shift, (m1, sh1), (m2, sh2), (mo, sho) = qm.add_multipliers(s1, s2, so)
    lo, hi = act_range(op, so, zo)
    return dict(input1_offset=-z1, input2_offset=-z2, left_shift=left_shift,
                input1_multiplier=int(m1), input1_shift=int(sh1), input2_multiplier=int(m2),
                input2_shift=int(sh2), output_multiplier=int(mo), output_shift=int(sho),
                output_offset=zo, act_min=lo, act_max=hi, **_layout(g, op))


ADD_FIELDS = ["input1_offset", "input2_offset", "left_shift", "input1_multiplier",
              "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier",
              "output_shift", "output_offset", "act_min", "act_max"]


# ---------------------------------------------------------------- MUL
def _mul_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    (s1, z1), (s2, z2), (so, zo) = _qp3(g, op)
    m, sh = qm.quantize_multiplier(s1 * s2 / so)
    prod = (v[op.inputs[0]].astype(np.int64) - z1) * (v[op.inputs[1]].astype(np.int64) - z2)
    lo, hi = act_range(op, so, zo)
    out = np.clip(qm.multiply_by_quantized_multiplier(qm.wrap_int32(prod), m, sh) + zo, lo, hi)
    return np.broadcast_to(out, g.t(op.outputs[0]).shape).astype(np.int8)


def _mul_params(g: Graph, op: Op) -> dict:
    (s1, z1), (s2, z2), (so, zo) = _qp3(g, op)
    m, sh = qm.quantize_multiplier(s1 * s2 / so)
    lo, hi = act_range(op, so, zo)
    return dict(input1_offset=-z1, input2_offset=-z2, output_multiplier=int(m),
                output_shift=int(sh), output_offset=zo, act_min=lo, act_max=hi,
                **_layout(g, op))


MUL_FIELDS = ["input1_offset", "input2_offset", "output_multiplier", "output_shift",
              "output_offset", "act_min", "act_max"]


def _emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    add = op.type in ("ADD", "SUB")
    pp = em.struct(P, "mcu_add_params_t" if add else "mcu_mul_params_t", p,
                   ADD_FIELDS if add else MUL_FIELDS)
    a, b = em.ptr(op.inputs[0]), em.ptr(op.inputs[1])
    fn = {"ADD": "mcu_add_s8", "SUB": "mcu_sub_s8", "MUL": "mcu_mul_s8"}[op.type]
    out = em.ptr(op.outputs[0])
    if p["broadcast"]:
        odm = em.dims(P, "od", p["output_dims"])
        em.decls.append(f"static const int32_t {P}_s1[4] = {{{em.arr(p['strides1'])}}};")
        em.decls.append(f"static const int32_t {P}_s2[4] = {{{em.arr(p['strides2'])}}};")
        return [f"{fn}_broadcast({pp}, {odm}, {a}, {P}_s1, {b}, {P}_s2, {out});"]
    return [f"{fn}({pp}, {a}, {b}, {out}, {p['size']});"]


register(OpDef("ADD", dict(ATTRS), infer_shape=broadcast_shape, float_eval=lambda g, op, inp: inp(0) + inp(1),
               reference=_add_ref, quant=QuantRule(fusable=True, const_inputs=True),
               kernel_params=_add_params, emit=_emit, inplace=same_shape_inputs,
               int8_const_inputs=True, torch=lambda m, op, x, inp: x + inp(1),
               doc="elementwise sum (TFLM int8 ADD arithmetic)",
               # spiking networks: fan-in of several edges (float only for now)
               snn_role="fanin", step_float=add_step_float, float_only=_FANIN))
register(OpDef("SUB", dict(ATTRS), infer_shape=broadcast_shape, float_eval=lambda g, op, inp: inp(0) - inp(1),
               reference=_add_ref, quant=QuantRule(fusable=True, const_inputs=True),
               kernel_params=_add_params, emit=_emit, inplace=same_shape_inputs,
               int8_const_inputs=True, torch=lambda m, op, x, inp: x - inp(1),
               doc="elementwise difference (TFLM int8 SUB: ADD's arithmetic, left_shift 20)"))
register(OpDef("MUL", dict(ATTRS), infer_shape=broadcast_shape, float_eval=lambda g, op, inp: inp(0) * inp(1),
               reference=_mul_ref, quant=QuantRule(const_inputs=True),
               kernel_params=_mul_params, emit=_emit, inplace=same_shape_inputs,
               int8_const_inputs=True, torch=lambda m, op, x, inp: x * inp(1),
               doc="elementwise product"))


# ---------------------------------------------------------------- MAXIMUM / MINIMUM
def _check_same_quant(g: Graph, op: Op) -> None:
    oq = qparams(g.t(op.outputs[0]), op.name)
    for n in op.inputs:
        q = qparams(g.t(n), op.name)
        if q != oq:
            raise IRError(f"layer '{op.name}' ({op.type}): input '{n}' has scale/zero point "
                          f"{q} but the output has {oq}; TFLite Micro compares int8 bytes "
                          "without rescaling, so requantize the input first")


def _maxmin_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    _check_same_quant(g, op)
    f = np.maximum if op.type == "MAXIMUM" else np.minimum
    out = f(v[op.inputs[0]].astype(np.int8), v[op.inputs[1]].astype(np.int8))
    return np.broadcast_to(out, g.t(op.outputs[0]).shape).astype(np.int8)


def _maxmin_params(g: Graph, op: Op) -> dict:
    _check_same_quant(g, op)
    return _layout(g, op)


def _maxmin_emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    fn = "mcu_maximum_s8" if op.type == "MAXIMUM" else "mcu_minimum_s8"
    a, b, out = em.ptr(op.inputs[0]), em.ptr(op.inputs[1]), em.ptr(op.outputs[0])
    if p["broadcast"]:
        odm = em.dims(P, "od", p["output_dims"])
        em.decls.append(f"static const int32_t {P}_s1[4] = {{{em.arr(p['strides1'])}}};")
        em.decls.append(f"static const int32_t {P}_s2[4] = {{{em.arr(p['strides2'])}}};")
        return [f"{fn}_broadcast({odm}, {a}, {P}_s1, {b}, {P}_s2, {out});"]
    return [f"{fn}({a}, {b}, {out}, {p['size']});"]


def _maxmin_torch(m, op, x, inp):
    import torch
    return (torch.maximum if op.type == "MAXIMUM" else torch.minimum)(x, inp(1))


for _name, _f in (("MAXIMUM", np.maximum), ("MINIMUM", np.minimum)):
    register(OpDef(_name, {}, infer_shape=broadcast_shape,
                   float_eval=lambda g, op, inp, f=_f: f(inp(0), inp(1)),
                   reference=_maxmin_ref, quant=QuantRule(same_quant="all"),
                   kernel_params=_maxmin_params, emit=_maxmin_emit, inplace=same_shape_inputs,
                   int8_const_inputs=True, torch=_maxmin_torch,
                   doc=f"elementwise {'larger' if _name == 'MAXIMUM' else 'smaller'} value "
                       "(one quantization for inputs and output)"))

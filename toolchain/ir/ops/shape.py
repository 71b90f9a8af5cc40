"""Ops that move int8 bytes without arithmetic: RESHAPE, CONCATENATION, PAD.

All keep one quantization for data inputs and output (TFLM copies bytes without
rescaling; the quantizer gives them one shared range). CONCATENATION inputs
quantized differently from the output are refused rather than reproducing TFLM's
silent byte copy: insert a QUANTIZE first. Kernels: runtime/concat_pad.c; RESHAPE
runs in place (no code when the planner gives input and output one buffer).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, QuantRule, dims4, i32, qparams, register
from .synapses import emit_reshape, reshape_step_fixed, reshape_step_float


# ---------------------------------------------------------------- RESHAPE
def _reshape_float(g: Graph, op: Op, inp):
    x = inp(0)
    if op.attr("new_shape") is not None:
        shape = [int(d) for d in op.attr("new_shape")]
    elif len(op.inputs) > 1 and op.inputs[1]:
        shape = [int(d) for d in g.tensors[op.inputs[1]].data.reshape(-1)]
    else:
        shape = list(g.tensors[op.outputs[0]].shape)
    declared_in = g.tensors[op.inputs[0]].shape
    if declared_in and x.shape[0] != declared_in[0] and shape and shape[0] == declared_in[0]:
        shape[0] = x.shape[0]                      # keep a feed's batch dimension
    return x.reshape(shape)


def _reshape_emit(em, k, op, p):
    src, out = em.ptr(op.inputs[0]), em.ptr(op.outputs[0])
    return [f"mcu_reshape_s8({src}, {out}, {p['size']});"] if src != out else []


def _reshape_torch(m, op, x, inp):
    return x.reshape(x.shape[0], *m.graph.tensors[op.outputs[0]].shape[1:])


def _reshape_shape(g: Graph, op: Op):
    """The declared output shape, checked to hold the same number of elements."""
    out = tuple(g.t(op.outputs[0]).shape)
    if int(np.prod(out, dtype=np.int64)) != g.t(op.inputs[0]).size:
        raise IRError(f"layer '{op.name}' (RESHAPE): {g.t(op.inputs[0]).shape} has "
                      f"{g.t(op.inputs[0]).size} elements, not {int(np.prod(out))} of {out}")
    return out


register(OpDef("RESHAPE", dict(new_shape=None), infer_shape=_reshape_shape, float_eval=_reshape_float,
               reference=lambda g, op, v: v[op.inputs[0]].reshape(g.t(op.outputs[0]).shape),
               quant=QuantRule(same_quant="first"),
               kernel_params=lambda g, op: dict(size=g.t(op.inputs[0]).size),
               emit=_reshape_emit, inplace=lambda g, op: [0], torch=_reshape_torch,
               doc="new shape, same bytes",
               snn_role="view", step_float=reshape_step_float, step_fixed=reshape_step_fixed,
               emit_snn=emit_reshape))


# ---------------------------------------------------------------- CONCATENATION
def _check_concat(g: Graph, op: Op) -> None:
    oq = qparams(g.t(op.outputs[0]), op.name)
    for n in op.inputs:
        q = qparams(g.t(n), op.name)
        if q != oq:
            raise IRError(f"layer '{op.name}' (CONCATENATION): input '{n}' has scale/zero point "
                          f"{q} but the output has {oq}; TFLite Micro copies int8 bytes without "
                          "rescaling, so requantize the input first")


def _concat_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    _check_concat(g, op)
    if op.attr("fused_activation") not in (None, "NONE"):
        raise IRError(f"layer '{op.name}' (CONCATENATION): fused activation is not supported "
                      "by TFLite Micro")
    return np.concatenate([v[n] for n in op.inputs], axis=int(op.attr("axis")))


def _concat_params(g: Graph, op: Op) -> dict:
    ot = g.t(op.outputs[0])
    axis = int(op.attr("axis")) % len(ot.shape)
    _check_concat(g, op)
    outer = int(np.prod(ot.shape[:axis], dtype=np.int64))
    inner = [int(np.prod(g.t(n).shape[axis:], dtype=np.int64)) for n in op.inputs]
    return dict(outer=outer, inner_sizes=inner, num_inputs=len(op.inputs))


def _concat_emit(em, k, op, p):
    P = em.layer_prefix(k)
    ins = ", ".join(em.ptr(n) for n in op.inputs)
    em.decls.append(f"static const int32_t {P}_inner[] = {{{em.arr(p['inner_sizes'])}}};")
    return [f"const int8_t *const ins[{p['num_inputs']}] = {{{ins}}};",
            f"mcu_concat_s8({p['num_inputs']}, ins, {P}_inner, {p['outer']}, "
            f"{em.ptr(op.outputs[0])});"]


def _concat_torch(m, op, x, inp):
    import torch
    return torch.cat([inp(i) for i in range(len(op.inputs))], dim=int(op.attr("axis")))


def _concat_shape(g: Graph, op: Op):
    shapes = [list(g.t(n).shape) for n in op.inputs]
    axis = int(op.attr("axis")) % len(shapes[0])
    out = shapes[0][:]
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


register(OpDef("CONCATENATION", dict(axis=-1, fused_activation="NONE"), infer_shape=_concat_shape,
               float_eval=lambda g, op, inp: np.concatenate(
                   [inp(i) for i in range(len(op.inputs))], axis=int(op.attr("axis"))),
               reference=_concat_ref, quant=QuantRule(same_quant="all"),
               kernel_params=_concat_params, emit=_concat_emit, int8_const_inputs=True,
               torch=_concat_torch, doc="join along one axis (same quantization)"))


# ---------------------------------------------------------------- PAD
def _pad_value(g: Graph, op: Op) -> int:
    _, out_zp = qparams(g.t(op.outputs[0]), op.name)
    if len(op.inputs) > 2 and op.inputs[2]:
        return int(np.asarray(g.t(op.inputs[2]).data).reshape(-1)[0])
    return out_zp


def _pads(g: Graph, op: Op) -> np.ndarray:
    return g.t(op.inputs[1]).data.astype(np.int64).reshape(-1, 2)


def _pad_ref(g: Graph, op: Op, v: dict) -> np.ndarray:
    fill = _pad_value(g, op)
    return np.pad(v[op.inputs[0]], [tuple(p) for p in _pads(g, op)],
                  constant_values=fill).astype(np.int8)


def _pad_params(g: Graph, op: Op) -> dict:
    fill = _pad_value(g, op)
    pads = _pads(g, op)
    pads = np.concatenate([np.zeros((4 - len(pads), 2), np.int64), pads])
    return dict(input_dims=dims4(g.t(op.inputs[0]).shape), pads=i32(pads.reshape(-1)),
                pad_value=fill)


def _pad_emit(em, k, op, p):
    P = em.layer_prefix(k)
    idm = em.dims(P, "id", p["input_dims"])
    em.decls.append(f"static const int32_t {P}_pads[8] = {{{em.arr(p['pads'])}}};")
    return [f"mcu_pad_s8({idm}, {em.ptr(op.inputs[0])}, {P}_pads, "
            f"(int8_t){int(p['pad_value'])}, {em.ptr(op.outputs[0])});"]


def _pad_torch(m, op, x, inp):
    import torch.nn.functional as F
    p = np.asarray(m.graph.t(op.inputs[1]).data).reshape(-1, 2).astype(int)
    return F.pad(x, [int(v) for pair in p[::-1] for v in pair])


def _pad_shape(g: Graph, op: Op):
    return tuple(int(d + a + b) for d, (a, b) in zip(g.t(op.inputs[0]).shape, _pads(g, op)))


register(OpDef("PAD", {}, infer_shape=_pad_shape,  # inputs: x, paddings (int32 [rank, 2]), [value]
               float_eval=lambda g, op, inp: np.pad(
                   inp(0), [tuple(p) for p in np.asarray(g.tensors[op.inputs[1]].data)
                            .reshape(-1, 2).astype(int)]),
               reference=_pad_ref, quant=QuantRule(same_quant="first"),
               kernel_params=_pad_params, emit=_pad_emit, torch=_pad_torch,
               doc="constant padding with the zero point (or a given value)"))

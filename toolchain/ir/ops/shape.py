"""Ops that move int8 bytes without arithmetic: RESHAPE, CONCATENATION, PAD, TRANSPOSE,
STRIDED_SLICE.

All keep one quantization for data inputs and output (TFLM copies bytes without
rescaling; the quantizer gives them one shared range). CONCATENATION inputs
quantized differently from the output are refused rather than reproducing TFLM's
silent byte copy: insert a QUANTIZE first. Kernels: runtime/concat_pad.c; RESHAPE
runs in place (no code when the planner gives input and output one buffer).

TRANSPOSE is TFLM's int8 Transpose: the permutation is a constant int32 input
(negative entries are not allowed, as in TFLM), inputs of 1 to 5 dimensions
(TFLM's transpose_common.cc refuses 6-D: so do we, naming the layer); bytes are
copied without rescaling, so input and output share one quantization
(same_quant="first"). The C kernel (mcu_transpose_s8) is a strided copy over the
output, padded to 5-D.

STRIDED_SLICE is TFLM's int8 StridedSlice: begin / end / strides are constant int32
inputs of the input's rank (1-D to 4-D: TFLM's strided_slice_common.cc refuses more,
"input dim should not exceed 4"), begin_mask, end_mask and
shrink_axis_mask as TFLM's StartForAxis / StopForAxis (strided_slice_logic.h:
negative indices wrap once, then clamp to [0, n] forward or [-1, n-1] backward; a
shrunk axis takes one element at its start). TFLM's Prepare zeroes ellipsis_mask
and new_axis_mask (it ignores them), so a model that sets them, or `offset`, or
gives an empty output, is refused naming the layer. Kernel: the same strided copy
as TRANSPOSE from the first element (mcu_strided_slice_s8).
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


# ---------------------------------------------------------------- TRANSPOSE
TRANSPOSE_MAX_DIMS = 5          # TFLM transpose_common.cc: "only supports 1D-5D"


def _perm(g: Graph, op: Op) -> list[int]:
    x = g.t(op.inputs[0])
    if len(op.inputs) < 2 or not op.inputs[1] or not g.t(op.inputs[1]).is_const:
        raise IRError(f"layer '{op.name}' (TRANSPOSE): the permutation must be a constant "
                      "int32 input")
    perm = [int(v) for v in np.asarray(g.t(op.inputs[1]).data).reshape(-1)]
    rank = len(x.shape)
    if rank > TRANSPOSE_MAX_DIMS or rank < 1:
        raise IRError(f"layer '{op.name}' (TRANSPOSE): {rank}-D input {tuple(x.shape)}; "
                      f"TFLite Micro transposes 1-D to {TRANSPOSE_MAX_DIMS}-D tensors")
    if sorted(perm) != list(range(rank)):
        raise IRError(f"layer '{op.name}' (TRANSPOSE): {perm} is not a permutation of the "
                      f"{rank} axes of {tuple(x.shape)}")
    return perm


def _transpose_shape(g: Graph, op: Op):
    shape = g.t(op.inputs[0]).shape
    return tuple(int(shape[p]) for p in _perm(g, op))


def _transpose_float(g: Graph, op: Op, inp):
    perm = _perm(g, op)
    x = inp(0)
    declared = g.t(op.inputs[0]).shape
    if perm[0] != 0 and x.shape[0] != declared[0]:
        raise IRError(f"layer '{op.name}' (TRANSPOSE): permutation {perm} moves the batch "
                      f"axis; evaluate it with batch {declared[0]}")
    return np.transpose(x, perm)


def _transpose_params(g: Graph, op: Op) -> dict:
    """Output dims and, per output dim, the input element stride, both padded to 5-D
    (leading ones, stride 0)."""
    perm = _perm(g, op)
    shape = [int(d) for d in g.t(op.inputs[0]).shape]
    strides, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = acc
        acc *= shape[i]
    pad = TRANSPOSE_MAX_DIMS - len(shape)
    return dict(output_dims=i32([1] * pad + [shape[p] for p in perm]),
                strides=i32([0] * pad + [strides[p] for p in perm]),
                size=int(np.prod(shape, dtype=np.int64)))


def _transpose_emit(em, k, op, p):
    P = em.layer_prefix(k)
    em.decls.append(f"static const int32_t {P}_od[5] = {{{em.arr(p['output_dims'])}}};")
    em.decls.append(f"static const int32_t {P}_st[5] = {{{em.arr(p['strides'])}}};")
    return [f"mcu_transpose_s8({P}_od, {P}_st, {em.ptr(op.inputs[0])}, "
            f"{em.ptr(op.outputs[0])});"]


def _transpose_torch(m, op, x, inp):
    return x.permute(*_perm(m.graph, op))


register(OpDef("TRANSPOSE", {}, infer_shape=_transpose_shape,   # inputs: x, perm (int32)
               float_eval=_transpose_float,
               reference=lambda g, op, v: np.transpose(v[op.inputs[0]], _perm(g, op)),
               quant=QuantRule(same_quant="first"), kernel_params=_transpose_params,
               emit=_transpose_emit, torch=_transpose_torch,
               doc="permute the axes (1-D to 5-D), same bytes"))


# ---------------------------------------------------------------- STRIDED_SLICE
SLICE_ATTRS = dict(begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0,
                   shrink_axis_mask=0, offset=False)
_INT_MAX, _INT_LOWEST = 2 ** 31 - 1, -2 ** 31


def _slice_axes(g: Graph, op: Op):
    """[(start, stop, stride, shrink)] per input axis, as TFLM's StartForAxis and
    StopForAxis compute them."""
    where = f"layer '{op.name}' (STRIDED_SLICE)"
    x = g.t(op.inputs[0])
    rank = len(x.shape)
    if rank < 1 or rank > 4:
        raise IRError(f"{where}: {rank}-D input; TFLite Micro slices 1-D to 4-D tensors")
    for a in ("ellipsis_mask", "new_axis_mask"):
        if int(op.attr(a) or 0):
            raise IRError(f"{where}: {a} is not supported (TFLite Micro ignores it)")
    if op.attr("offset"):
        raise IRError(f"{where}: offset=True is not supported")
    vecs = []
    for k, what in ((1, "begin"), (2, "end"), (3, "strides")):
        if len(op.inputs) <= k or not op.inputs[k] or not g.t(op.inputs[k]).is_const:
            raise IRError(f"{where}: {what} must be a constant int32 input")
        v = [int(d) for d in np.asarray(g.t(op.inputs[k]).data).reshape(-1)]
        if len(v) != rank:
            raise IRError(f"{where}: {what} has {len(v)} entries for a {rank}-D input")
        vecs.append(v)
    begin, end, strides = vecs
    bm, em_, sm = (int(op.attr(a) or 0) for a in ("begin_mask", "end_mask", "shrink_axis_mask"))
    out = []
    for ax in range(rank):
        n, st = int(x.shape[ax]), strides[ax]
        if st == 0:
            raise IRError(f"{where}: stride 0 on axis {ax}")
        start = begin[ax]
        if bm & (1 << ax):
            start = _INT_LOWEST if st > 0 else _INT_MAX
        if start < 0:
            start += n
        start = min(max(start, 0), n) if st > 0 else min(max(start, -1), n - 1)
        shrink = bool(sm & (1 << ax))
        if shrink:
            stop = start + 1
        else:
            stop = end[ax]
            if em_ & (1 << ax):
                stop = _INT_MAX if st > 0 else _INT_LOWEST
            if stop < 0:
                stop += n
            stop = min(max(stop, 0), n) if st > 0 else min(max(stop, -1), n - 1)
        out.append((start, stop, st, shrink))
    return out


def _slice_index(g: Graph, op: Op):
    """(per-axis index arrays, output shape)."""
    idx, shape = [], []
    for ax, (start, stop, st, shrink) in enumerate(_slice_axes(g, op)):
        r = np.arange(start, stop, st, dtype=np.int64)
        if r.size == 0 or (shrink and (r[0] < 0 or r[0] >= g.t(op.inputs[0]).shape[ax])):
            raise IRError(f"layer '{op.name}' (STRIDED_SLICE): empty slice on axis {ax}")
        idx.append(r)
        if not shrink:
            shape.append(int(r.size))
    return idx, tuple(shape)


def _slice_apply(g: Graph, op: Op, x: np.ndarray, batch_free: bool = False) -> np.ndarray:
    idx, shape = _slice_index(g, op)
    if batch_free and x.shape[0] != g.t(op.inputs[0]).shape[0]:
        if idx[0].tolist() != list(range(g.t(op.inputs[0]).shape[0])) or len(shape) == 0:
            raise IRError(f"layer '{op.name}' (STRIDED_SLICE): slices the batch axis; "
                          f"evaluate it with batch {g.t(op.inputs[0]).shape[0]}")
        idx[0] = np.arange(x.shape[0])
        shape = (x.shape[0],) + shape[1:]
    return x[np.ix_(*idx)].reshape(shape)


def _slice_params(g: Graph, op: Op) -> dict:
    axes = _slice_axes(g, op)
    _slice_index(g, op)
    shape = [int(d) for d in g.t(op.inputs[0]).shape]
    estr, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        estr[i] = acc
        acc *= shape[i]
    dims = [len(np.arange(a, b, s)) for a, b, s, _ in axes]
    pad = 5 - len(shape)
    return dict(output_dims=i32([1] * pad + dims),
                strides=i32([0] * pad + [s * e for (_, _, s, _), e in zip(axes, estr)]),
                offset=int(sum(a * e for (a, _, _, _), e in zip(axes, estr))),
                size=int(np.prod(dims, dtype=np.int64)))


def _slice_emit(em, k, op, p):
    P = em.layer_prefix(k)
    em.decls.append(f"static const int32_t {P}_od[5] = {{{em.arr(p['output_dims'])}}};")
    em.decls.append(f"static const int32_t {P}_st[5] = {{{em.arr(p['strides'])}}};")
    return [f"mcu_strided_slice_s8({P}_od, {P}_st, {p['offset']}, {em.ptr(op.inputs[0])}, "
            f"{em.ptr(op.outputs[0])});"]


def _slice_torch(m, op, x, inp):
    import torch
    idx, shape = _slice_index(m.graph, op)
    for ax, r in enumerate(idx):
        if ax == 0 and x.shape[0] != m.graph.t(op.inputs[0]).shape[0]:
            continue
        x = torch.index_select(x, ax, torch.as_tensor(r, device=x.device))
    return x.reshape((x.shape[0],) + tuple(shape[1:])) if shape else x.reshape(())


register(OpDef("STRIDED_SLICE", dict(SLICE_ATTRS),   # inputs: x, begin, end, strides (int32)
               infer_shape=lambda g, op: _slice_index(g, op)[1],
               float_eval=lambda g, op, inp: _slice_apply(g, op, inp(0), batch_free=True),
               reference=lambda g, op, v: _slice_apply(g, op, v[op.inputs[0]]),
               quant=QuantRule(same_quant="first"), kernel_params=_slice_params,
               emit=_slice_emit, torch=_slice_torch,
               doc="begin:end:stride per axis with begin/end/shrink masks (1-D to 4-D)"))

"""RESIZE_NEAREST_NEIGHBOR: x [N,H,W,C], size (constant int32 [2]: OH, OW) ->
[N,OH,OW,C]; attributes align_corners, half_pixel_centers (TFLite options).

TFLM fidelity (kernels/resize_nearest_neighbor.cc, reference_ops GetNearestNeighbor):
the source row of output row y is, in float32 arithmetic,
  scale = (align_corners and OH > 1) ? (H - 1) / (float)(OH - 1) : H / (float)OH
  src   = align_corners ? round((y + offset) * scale) : floor((y + offset) * scale)
with offset 0.5 under half_pixel_centers and round = std::round (half away from zero),
then min(src, H - 1) and, with half_pixel_centers, max(src, 0); columns alike. Bytes
are copied: int8 passes values through, so input and output share one quantization
(same_quant="first"); TFLM requires a 4-D input and a constant size (we refuse
others naming the layer).

The row and column source indices depend only on the shapes and the two flags, so they
are computed here once (`source_indices`, numpy float32 arithmetic as above) and the C
kernel (firmware_templates/runtime/resize.c, mcu_resize_nearest_s8) copies channel
runs by two index tables: bit-exact by construction, no float on the device.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph, IRError, Op

from .base import OpDef, QuantRule, i32, register

ATTRS = dict(align_corners=False, half_pixel_centers=False)


def _where(op: Op) -> str:
    return f"layer '{op.name}' (RESIZE_NEAREST_NEIGHBOR)"


def nearest_indices(out_size: int, in_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> np.ndarray:
    """TFLM GetNearestNeighbor for every output index 0..out_size-1 (float32 math)."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    v = ((np.arange(out_size, dtype=np.int64).astype(f32) + offset) * scale).astype(np.float64)
    if align_corners:                     # std::round: half away from zero (v >= 0)
        fl = np.floor(v)
        src = fl + (v - fl >= 0.5)
    else:
        src = np.floor(v)
    src = np.minimum(src.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        src = np.maximum(src, 0)
    return src


def _size(g: Graph, op: Op) -> tuple[int, int]:
    x = g.t(op.inputs[0])
    if len(x.shape) != 4:
        raise IRError(f"{_where(op)}: {len(x.shape)}-D input {tuple(x.shape)}; TFLite Micro "
                      "resizes 4-D (NHWC) tensors")
    if len(op.inputs) < 2 or not op.inputs[1] or not g.t(op.inputs[1]).is_const:
        raise IRError(f"{_where(op)}: the size must be a constant int32 input "
                      "(TFLite Micro: non-constant size is not supported)")
    size = [int(d) for d in np.asarray(g.t(op.inputs[1]).data).reshape(-1)]
    if len(size) != 2 or min(size) < 1:
        raise IRError(f"{_where(op)}: size {size} must be two positive sizes (height, width)")
    return size[0], size[1]


def source_indices(g: Graph, op: Op) -> tuple[np.ndarray, np.ndarray]:
    """(row indices [OH], column indices [OW]) into the input."""
    oh, ow = _size(g, op)
    n, h, w, c = g.t(op.inputs[0]).shape
    ac, hp = bool(op.attr("align_corners")), bool(op.attr("half_pixel_centers"))
    return nearest_indices(oh, h, ac, hp), nearest_indices(ow, w, ac, hp)


def _shape(g: Graph, op: Op):
    oh, ow = _size(g, op)
    n, _, _, c = g.t(op.inputs[0]).shape
    return (int(n), oh, ow, int(c))


def _apply(g: Graph, op: Op, x: np.ndarray) -> np.ndarray:
    ys, xs = source_indices(g, op)
    return x[:, ys][:, :, xs]


def _params(g: Graph, op: Op) -> dict:
    ys, xs = source_indices(g, op)
    n, h, w, c = (int(d) for d in g.t(op.inputs[0]).shape)
    return dict(input_dims=(n, h, w, c), output_dims=(n, len(ys), len(xs), c),
                rows=i32(ys), cols=i32(xs))


def _emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    idm, odm = em.dims(P, "id", p["input_dims"]), em.dims(P, "od", p["output_dims"])
    em.decls.append(f"static const int32_t {P}_rows[] = {{{em.arr(p['rows'])}}};")
    em.decls.append(f"static const int32_t {P}_cols[] = {{{em.arr(p['cols'])}}};")
    return [f"mcu_resize_nearest_s8({idm}, {em.ptr(op.inputs[0])}, {odm}, {P}_rows, "
            f"{P}_cols, {em.ptr(op.outputs[0])});"]


def _torch(m, op: Op, x, inp):
    import torch
    ys, xs = source_indices(m.graph, op)
    x = torch.index_select(x, 1, torch.as_tensor(ys, device=x.device))
    return torch.index_select(x, 2, torch.as_tensor(xs, device=x.device))


register(OpDef(
    "RESIZE_NEAREST_NEIGHBOR", ATTRS,        # inputs: x, size (int32 [2])
    infer_shape=_shape,
    float_eval=lambda g, op, inp: _apply(g, op, inp(0)),
    reference=lambda g, op, v: _apply(g, op, v[op.inputs[0]]),
    quant=QuantRule(same_quant="first"), kernel_params=_params, emit=_emit, torch=_torch,
    macs=lambda g, op: 0,
    doc="nearest-neighbour resize of H and W (align_corners, half_pixel_centers), same bytes"))

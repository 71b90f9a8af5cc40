"""numpy reference of the row-sparse int8 kernels (store + level -> int8 outputs),
bit-exact with tflite-micro on the level's dense-with-zeros model and with the C
kernels in firmware_templates/runtime/sparse.c.

    p = level_params(level_graph, op)           # kernel parameters of that level
    y = sparse_conv2d(store, level, x, p)       # or sparse_fully_connected(...)

The arithmetic is the kernels': raw int8 inputs, acc = sum(value * x[col]) +
bias_eff with bias_eff = bias + input_offset * (row sum of the level's values)
(equal to TFLM's sum(w * (x + input_offset)) + bias, padded taps holding the
input zero point), then TFLM MultiplyByQuantizedMultiplier (per channel),
+ output offset, activation clamp. Columns are decoded from the packed arrays
(pairs / segment counts / implicit dense group: store.decode_level), not
taken from the builder.
"""
from __future__ import annotations

import numpy as np

from toolchain.codegen.kernel_params import kernel_params
from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op
from toolchain.subnets.store import SubnetStore, decode_level


def level_params(graph: Graph, op: Op) -> dict:
    """Kernel parameters of a CONV_2D / FULLY_CONNECTED op of a level's int8 graph
    (toolchain.codegen.kernel_params without the dense filter)."""
    if op.type not in ("CONV_2D", "FULLY_CONNECTED"):
        raise IRError(f"layer '{op.name}' ({op.type}): no row-sparse form")
    p = dict(kernel_params(graph, op))
    p.pop("filter")
    if op.type == "FULLY_CONNECTED" and p["filter_offset"] != 0:
        raise IRError(f"layer '{op.name}': row-sparse FULLY_CONNECTED needs symmetric weights")
    return p


def _entries(st: SubnetStore, level: int):
    return decode_level(st, level)


def _requant(acc: np.ndarray, p: dict, rows: int) -> np.ndarray:
    mult = np.broadcast_to(np.atleast_1d(p["multiplier"]).astype(np.int64), (rows,))
    shift = np.broadcast_to(np.atleast_1d(p["shift"]).astype(np.int64), (rows,))
    v = qm.multiply_by_quantized_multiplier(acc, mult, shift) + int(p["output_offset"])
    return np.clip(v, int(p["act_min"]), int(p["act_max"])).astype(np.int8)


def _acc(st, level, patches, p):
    """patches: int64 [P, K] raw inputs -> int64 [P, R] accumulators (int32 wrap)."""
    cols, vals = _entries(st, level)
    acc = np.einsum("prn,rn->pr", patches[:, cols], vals)
    acc = acc + st.bias_eff(level, p.get("bias"), int(p["input_offset"])).astype(np.int64)
    return qm.wrap_int32(acc)


def sparse_fully_connected(st: SubnetStore, level: int, x: np.ndarray, p: dict) -> np.ndarray:
    """x int8 (any shape, size batches * K) -> int8 [batches, rows]."""
    K = st.row_len
    xr = np.asarray(x).astype(np.int64).reshape(-1, K)
    return _requant(_acc(st, level, xr, p), p, st.rows)


def im2col_raw(x: np.ndarray, kh: int, kw: int, p: dict) -> np.ndarray:
    """int8 NHWC -> int64 [n*oh*ow, kh*kw*c] raw patches, padded taps = input zero
    point (-input_offset), column order (ky, kx, ci) as OHWI rows."""
    n, h, w, c = (int(d) for d in p["input_dims"])
    _, oh, ow, _ = (int(d) for d in p["output_dims"])
    x = np.asarray(x).astype(np.int64).reshape(n, h, w, c)
    zp = -int(p["input_offset"])
    sh, sw, dh, dw = (int(p[k]) for k in ("stride_h", "stride_w", "dilation_h", "dilation_w"))
    ph, pw = int(p["pad_h"]), int(p["pad_w"])
    iy = np.arange(oh)[:, None] * sh - ph + np.arange(kh)[None, :] * dh      # [oh, kh]
    ix = np.arange(ow)[:, None] * sw - pw + np.arange(kw)[None, :] * dw      # [ow, kw]
    vy = (iy >= 0) & (iy < h)
    vx = (ix >= 0) & (ix < w)
    g = x[:, np.clip(iy, 0, h - 1)[:, None, :, None], np.clip(ix, 0, w - 1)[None, :, None, :], :]
    # g: [n, oh, ow, kh, kw, c]
    valid = (vy[:, None, :, None] & vx[None, :, None, :])[None, :, :, :, :, None]
    g = np.where(valid, g, zp)
    return g.reshape(n * oh * ow, kh * kw * c)


def sparse_conv2d(st: SubnetStore, level: int, x: np.ndarray, p: dict) -> np.ndarray:
    """x int8 NHWC -> int8 NHWC output (p = level_params of the CONV_2D op)."""
    o, kh, kw, ci = (int(d) for d in st.shape)
    if int(p["input_dims"][3]) != ci:
        raise IRError("input channels do not match the store's filter")
    patches = im2col_raw(x, kh, kw, p)
    y = _requant(_acc(st, level, patches, p), p, st.rows)
    return y.reshape(tuple(int(d) for d in p["output_dims"]))

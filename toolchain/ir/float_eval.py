"""Float32 execution of an IR graph in numpy (NHWC, TFLite semantics).

`run_float(graph, feeds)` evaluates every op in OP_ATTRS on float data. It is
the float oracle of the converters (checked against onnxruntime on the
original ONNX models) and the quantizer's calibration engine (activation
ranges come from `keep_intermediates=True`).

Batching: feeds may carry any leading batch size N even if the graph declares
batch 1; RESHAPE then keeps the batch dimension (a `new_shape` whose first
entry is 1 becomes N). int8 tensors met here (QUANTIZE/DEQUANTIZE, quantized
constants) are dequantized, so a quantized graph runs as "fake quant"
approximately, never bit-exactly: use toolchain.ir.reference for that.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, IRError, Op


# -- helpers ----------------------------------------------------------------------
def same_padding(in_size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TFLite SAME padding: (out_size, pad_before, pad_after)."""
    eff = (k - 1) * dilation + 1
    out = -(-in_size // stride)
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total - total // 2


def valid_out(in_size: int, k: int, stride: int, dilation: int = 1) -> int:
    eff = (k - 1) * dilation + 1
    return (in_size - eff) // stride + 1


def _pad_amounts(op: Op, h: int, w: int, kh: int, kw: int):
    sh, sw = op.attr("stride_h") or 1, op.attr("stride_w") or 1
    dh, dw = op.attr("dilation_h") or 1, op.attr("dilation_w") or 1
    if op.attr("padding") == "SAME":
        _, pt, pb = same_padding(h, kh, sh, dh)
        _, pl, pr = same_padding(w, kw, sw, dw)
    elif op.attr("padding") == "VALID":
        pt = pb = pl = pr = 0
    else:
        raise IRError(f"layer '{op.name}' ({op.type}): padding must be SAME or VALID, "
                      f"not {op.attr('padding')!r}")
    return (pt, pb, pl, pr), (sh, sw), (dh, dw)


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int) -> np.ndarray:
    """[N,H,W,C] (already padded) -> [N,OH,OW,KH,KW,C] strided view."""
    n, h, w, c = x.shape
    oh = (h - (kh - 1) * dh - 1) // sh + 1
    ow = (w - (kw - 1) * dw - 1) // sw + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, oh, ow, kh, kw, c),
        strides=(s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)


def apply_activation(x: np.ndarray, act: str) -> np.ndarray:
    if act in (None, "NONE"):
        return x
    if act == "RELU":
        return np.maximum(x, 0)
    if act == "RELU6":
        return np.clip(x, 0, 6)
    if act == "RELU_N1_TO_1":
        return np.clip(x, -1, 1)
    raise IRError(f"unsupported fused activation {act}")


def _value(graph: Graph, name: str) -> np.ndarray:
    t = graph.tensors[name]
    d = t.data
    if t.quant is not None and t.dtype in ("int8", "uint8", "int16", "int32"):
        q = t.quant
        shape = [1] * d.ndim
        if q.axis is not None and q.scale.size > 1:
            shape[q.axis] = -1
        return ((d.astype(np.float64) - q.zero_point.reshape(shape)) * q.scale.reshape(shape)
                ).astype(np.float32)
    return d


# -- ops --------------------------------------------------------------------------
def _conv(op, x, w, b, depthwise):
    n, h, wd, c = x.shape
    kh, kw = w.shape[1], w.shape[2]
    (pt, pb, pl, pr), (sh, sw), (dh, dw) = _pad_amounts(op, h, wd, kh, kw)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = _windows(np.ascontiguousarray(xp), kh, kw, sh, sw, dh, dw)  # N,OH,OW,KH,KW,C
    if depthwise:
        dm = w.shape[3] // c
        if dm != 1:
            win = np.repeat(win, dm, axis=-1)           # out channel o reads input o // dm
        y = np.einsum("nhwijc,ijc->nhwc", win, w[0], optimize=True)
    else:
        o = w.shape[0]
        cin = w.shape[3]
        if cin != c:
            raise IRError(f"layer '{op.name}': weights expect {cin} input channels, got {c}")
        y = np.tensordot(win, w, axes=([3, 4, 5], [1, 2, 3]))  # N,OH,OW,O
        assert y.shape[-1] == o
    if b is not None:
        y = y + b
    return y


def _pool(op, x, kind):
    n, h, w, c = x.shape
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    (pt, pb, pl, pr), (sh, sw), _ = _pad_amounts(op, h, w, kh, kw)
    if kind == "max":
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
        return _windows(np.ascontiguousarray(xp), kh, kw, sh, sw, 1, 1).max(axis=(3, 4))
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ones = np.pad(np.ones((1, h, w, 1), x.dtype), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    s = _windows(np.ascontiguousarray(xp), kh, kw, sh, sw, 1, 1).sum(axis=(3, 4))
    cnt = _windows(ones, kh, kw, sh, sw, 1, 1).sum(axis=(3, 4))   # padding excluded (TFLite)
    return s / cnt


def _reshape(graph, op, x):
    if op.attr("new_shape") is not None:
        shape = [int(d) for d in op.attr("new_shape")]
    elif len(op.inputs) > 1 and op.inputs[1]:
        shape = [int(d) for d in graph.tensors[op.inputs[1]].data.reshape(-1)]
    else:
        shape = list(graph.tensors[op.outputs[0]].shape)
    declared_in = graph.tensors[op.inputs[0]].shape
    if declared_in and x.shape[0] != declared_in[0] and shape and shape[0] == declared_in[0]:
        shape[0] = x.shape[0]                      # keep a feed's batch dimension
    return x.reshape(shape)


def eval_op(graph: Graph, op: Op, env: dict[str, np.ndarray]) -> list[np.ndarray]:
    def inp(i):
        if i >= len(op.inputs) or not op.inputs[i]:
            return None
        return env[op.inputs[i]]

    t = op.type
    x = inp(0)
    act = op.attrs.get("fused_activation", "NONE")
    if t == "CONV_2D":
        y = _conv(op, x, inp(1), inp(2), depthwise=False)
    elif t == "DEPTHWISE_CONV_2D":
        y = _conv(op, x, inp(1), inp(2), depthwise=True)
    elif t == "FULLY_CONNECTED":
        w, b = inp(1), inp(2)
        if op.attr("keep_num_dims"):
            y = x @ w.T
        else:
            y = x.reshape(-1, w.shape[1]) @ w.T
        if b is not None:
            y = y + b
    elif t == "AVERAGE_POOL_2D":
        y = _pool(op, x, "avg")
    elif t == "MAX_POOL_2D":
        y = _pool(op, x, "max")
    elif t == "ADD":
        y = x + inp(1)
    elif t == "MUL":
        y = x * inp(1)
    elif t == "RESHAPE":
        y = _reshape(graph, op, x)
    elif t == "SOFTMAX":
        z = (x - x.max(axis=-1, keepdims=True)) * float(op.attr("beta"))
        e = np.exp(z)
        y = e / e.sum(axis=-1, keepdims=True)
    elif t == "CONCATENATION":
        y = np.concatenate([inp(i) for i in range(len(op.inputs))], axis=int(op.attr("axis")))
    elif t == "PAD":
        pads = np.asarray(graph.tensors[op.inputs[1]].data).reshape(-1, 2).astype(int)
        y = np.pad(x, [tuple(p) for p in pads])
    elif t == "MEAN":
        axes = tuple(int(a) for a in np.asarray(graph.tensors[op.inputs[1]].data).reshape(-1))
        y = x.mean(axis=axes, keepdims=bool(op.attr("keep_dims")))
    elif t == "RELU":
        y = np.maximum(x, 0)
    elif t == "RELU6":
        y = np.clip(x, 0, 6)
    elif t == "LOGISTIC":
        y = 0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))   # 1/(1+exp(-x)), no overflow
    elif t in ("QUANTIZE", "DEQUANTIZE"):
        y = x                                      # values stay real-valued here
    else:
        raise IRError(f"unsupported op {t} in layer '{op.name}' for the float evaluator")
    y = apply_activation(y, act)
    return [np.asarray(y, dtype=np.float32)]


def run_float(graph: Graph, feeds: dict[str, np.ndarray] | np.ndarray,
              keep_intermediates: bool = False) -> dict[str, np.ndarray]:
    """Run `graph` on float feeds (NHWC, any batch size). Returns the graph outputs by
    name, or every tensor computed (inputs included) with keep_intermediates=True."""
    if not isinstance(feeds, dict):
        if len(graph.inputs) != 1:
            raise IRError(f"graph has {len(graph.inputs)} inputs; pass feeds as a dict")
        feeds = {graph.inputs[0]: feeds}
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise IRError(f"missing feed for graph input '{name}'")
        x = np.asarray(feeds[name])
        t = graph.tensors[name]
        if t.dtype != "float32" and t.quant is not None and np.issubdtype(x.dtype, np.integer):
            x = (x.astype(np.float64) - t.quant.zero_point[0]) * t.quant.scale[0]
        x = x.astype(np.float32)
        if x.shape[1:] != tuple(t.shape[1:]):
            raise IRError(f"feed for '{name}' has shape {x.shape}, graph expects {t.shape}")
        env[name] = x
    for t in graph.constants():
        env[t.name] = _value(graph, t.name).astype(np.float32) if t.dtype != "int32" \
            or t.quant is not None else t.data
    for op in graph.ops:
        for name, val in zip(op.outputs, eval_op(graph, op, env)):
            env[name] = val
    if keep_intermediates:
        return {k: v for k, v in env.items() if not graph.tensors[k].is_const}
    return {o: env[o] for o in graph.outputs}

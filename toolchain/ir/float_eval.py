"""Float32 execution of an IR graph in numpy (NHWC, TFLite semantics).

`run_float(graph, feeds)` evaluates every op of the registry (toolchain/ir/ops,
`OpDef.float_eval`) on float data. It is
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

from . import ops
from .graph import Graph, IRError, Op
from .ops.base import same_padding, valid_out  # noqa: F401  (re-exported: one definition)


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


def eval_op(graph: Graph, op: Op, env: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One op on float values: its registry entry's float_eval, then the fused activation."""
    def inp(i):
        if i >= len(op.inputs) or not op.inputs[i]:
            return None
        return env[op.inputs[i]]

    d = ops.get(op.type)
    if d is None or d.float_eval is None:
        raise IRError(f"unsupported op {op.type} in layer '{op.name}' for the float evaluator")
    y = d.float_eval(graph, op, inp)
    y = apply_activation(y, op.attrs.get("fused_activation", "NONE"))
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

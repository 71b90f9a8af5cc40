"""Numpy reference interpreter for int8 graphs, bit-exact with TFLite Micro's
reference kernels (the host oracle). Each op's int8 semantics live in its family
module of the op registry (toolchain/ir/ops, `OpDef.reference`); the arithmetic is
in quant_math.py. This module runs a graph through them.

    run(graph, feeds, keep_intermediates=False) -> {name: ndarray}

`feeds` is {input name: array} or one array for a single-input graph.  Returns the
graph outputs, or every activation tensor with keep_intermediates=True.

Fidelity notes (each mirrors TFLM, checked by tests/test_reference_bitexact.py):
- Scales are used as the float32 values a .tflite file carries (quant_math.f32),
  so an IR graph and its written .tflite give the same bytes.
- Per-op fidelity notes (multipliers, padding, rounding) sit in each op's module.
Float tensors are accepted only as QUANTIZE inputs and DEQUANTIZE outputs (float
graphs run in toolchain/ir/float_eval.py).
"""
from __future__ import annotations

import numpy as np

from . import ops
from .graph import Graph, IRError
from .ops.base import compute_padding  # noqa: F401  (re-exported: one definition)
from .validate import validate

# op types with an int8 reference (the registry's `reference` field)
SUPPORTED_OPS = ops.ops_with("reference")


def _check_types(g: Graph) -> None:
    ops.int16.check_int16_graph(g, "the reference interpreter")
    for op in g.ops:
        float_io = ops.get(op.type).float_io
        ok = ("int8", "int16") if ops.get(op.type).int16 else ("int8",)
        for n in op.inputs[:1]:
            t = g.t(n)
            if t.dtype not in ok and "in" not in float_io:
                raise IRError(f"layer '{op.name}' ({op.type}): input '{n}' is {t.dtype}; the "
                              "reference interpreter runs int8 graphs (float graphs: float_eval)")
        for n in op.outputs:
            t = g.t(n)
            if t.dtype not in ok and "out" not in float_io:
                raise IRError(f"layer '{op.name}' ({op.type}): output '{n}' is {t.dtype}; the "
                              "reference interpreter runs int8 graphs (float graphs: float_eval)")


def run(graph: Graph, feeds, keep_intermediates: bool = False) -> dict[str, np.ndarray]:
    """Execute an int8 graph bit-exactly as TFLite Micro's reference kernels do."""
    validate(graph, SUPPORTED_OPS, target="the reference interpreter")
    _check_types(graph)
    if isinstance(feeds, np.ndarray):
        if len(graph.inputs) != 1:
            raise IRError(f"graph has {len(graph.inputs)} inputs; pass a dict of arrays")
        feeds = {graph.inputs[0]: feeds}
    values: dict[str, np.ndarray] = {}
    for n in graph.inputs:
        if n not in feeds:
            raise IRError(f"no value fed for graph input '{n}'")
        t = graph.t(n)
        a = np.asarray(feeds[n])
        if a.size != t.size:
            raise IRError(f"input '{n}': got shape {a.shape}, expected {t.shape}")
        if a.dtype != np.dtype(t.dtype):
            info = np.iinfo(t.dtype) if t.dtype in ("int8", "int16") else None
            if info is not None and (a.min(initial=0) < info.min or a.max(initial=0) > info.max):
                raise IRError(f"input '{n}': values out of {t.dtype} range")
            a = a.astype(t.dtype)
        values[n] = a.reshape(t.shape)
    for st in graph.state:
        t = graph.t(st)
        values.setdefault(st, t.data if t.data is not None else np.zeros(t.shape, t.dtype))
    for c in graph.constants():
        values.setdefault(c.name, c.data)
    for op in graph.ops:
        out = ops.get(op.type).reference(graph, op, values)
        ot = graph.t(op.outputs[0])
        values[op.outputs[0]] = np.ascontiguousarray(out).reshape(ot.shape).astype(ot.dtype)
    if keep_intermediates:
        const = {c.name for c in graph.constants()}
        return {k: a for k, a in values.items() if k not in const}
    return {n: values[n] for n in graph.outputs}

"""Checks that a graph only uses what a back end supports, naming the first offender."""
from __future__ import annotations

from collections.abc import Iterable

from .graph import FUSED_ACTIVATIONS, Graph, IRError, OP_ATTRS


def validate(graph: Graph, supported: Iterable[str] | None = None, target: str = "the IR") -> None:
    """Raise IRError naming the first op (type and layer) not in `supported`.

    `supported` defaults to every op type the IR knows."""
    allowed = set(supported) if supported is not None else set(OP_ATTRS)
    for op in graph.ops:
        if op.type not in allowed:
            raise IRError(f"unsupported op {op.type} in layer '{op.name}' for {target}; "
                          f"supported: {', '.join(sorted(allowed))}")
        fa = op.attrs.get("fused_activation", "NONE")
        if fa not in FUSED_ACTIVATIONS:
            raise IRError(f"layer '{op.name}' ({op.type}): unsupported fused activation {fa}")
        for n in op.inputs + op.outputs:
            if n and n not in graph.tensors:
                raise IRError(f"layer '{op.name}' ({op.type}) refers to unknown tensor '{n}'")
    for n in graph.inputs + graph.outputs:
        if n not in graph.tensors:
            raise IRError(f"graph input/output '{n}' is not a tensor")
        if any(d <= 0 for d in graph.tensors[n].shape):
            raise IRError(f"tensor '{n}' has a dynamic or empty shape {graph.tensors[n].shape}; "
                          "export with fixed input shapes")
    graph.topo_check()

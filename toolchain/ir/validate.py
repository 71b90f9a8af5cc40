"""Checks that a graph only uses what a back end supports, naming the first offender."""
from __future__ import annotations

from collections.abc import Iterable

from . import ops
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
    for t in graph.tensors.values():
        if t.nbytes >= 1 << 31:      # offsets and sizes are 32-bit on the device
            raise IRError(f"tensor '{t.name}' {list(t.shape)} needs {t.nbytes:,} B; no "
                          "microcontroller addresses that (limit 2 GiB)")
    for op in graph.ops:
        check_shape(graph, op)
    for n in graph.inputs + graph.outputs:
        if n not in graph.tensors:
            raise IRError(f"graph input/output '{n}' is not a tensor")
        if any(d <= 0 for d in graph.tensors[n].shape):
            raise IRError(f"tensor '{n}' has a dynamic or empty shape {graph.tensors[n].shape}; "
                          "export with fixed input shapes")
    graph.topo_check()


def check_shape(graph: Graph, op) -> None:
    """The declared output shape must be what the op computes (its module's infer_shape):
    a front end that gets a shape wrong is caught here, not in a kernel."""
    d = ops.get(op.type)
    if d is None or d.infer_shape is None or not op.outputs:
        return
    declared = tuple(graph.tensors[op.outputs[0]].shape)
    try:
        want = tuple(int(v) for v in d.infer_shape(graph, op))
    except IRError:
        raise
    except (ValueError, TypeError, IndexError) as e:
        raise IRError(f"layer '{op.name}' ({op.type}): cannot infer its output shape "
                      f"from its inputs ({e})") from None
    if want != declared:
        raise IRError(f"layer '{op.name}' ({op.type}): output '{op.outputs[0]}' is declared "
                      f"{list(declared)} but the op computes {list(want)}")

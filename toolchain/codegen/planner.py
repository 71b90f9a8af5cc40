"""Liveness-based static memory planner for the activation arena.

Every non-constant tensor gets an (offset, size) inside one arena. Two tensors may
share bytes when their lifetimes do not overlap. On top of that, ops that can run
in place write their output over an input that dies at that op (the two become one
buffer): RESHAPE always (it is a no-op), elementwise ops, and the kernels that the
runtime can run in place with a small scratch (see `default_inplace`).

Placement is greedy-by-size like TFLite Micro's GreedyMemoryPlanner, but tried
under several orderings, keeping the smallest arena; the plan is verified before
it is returned so a planner bug cannot silently corrupt activations.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from toolchain.ir.graph import Graph, Op

ELEMENTWISE = {"ADD", "MUL", "RELU", "RELU6"}


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    """One arena allocation: one or more tensors that share bytes (aliases)."""
    tensors: list[str]
    size: int
    first: int          # op index where it is written (-1: graph input, set before invoke)
    last: int           # op index of its last read (len(ops): graph output, read after)
    offset: int = -1
    kind: str = "tensor"  # "tensor" or "scratch"

    def overlaps_time(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass
class MemoryPlan:
    arena_size: int
    alignment: int
    buffers: list[Buffer]
    offsets: dict[str, int]                  # tensor name -> arena offset
    inplace: dict[str, str] = field(default_factory=dict)  # op name -> input tensor it overwrites
    scratch: dict[str, tuple[int, int]] = field(default_factory=dict)  # op name -> (offset, size)
    naive_size: int = 0                      # sum of all buffers, no sharing

    def usage_timeline(self, num_ops: int) -> list[int]:
        """Bytes of the arena live during each op (for reports)."""
        out = []
        for i in range(num_ops):
            out.append(sum(b.size for b in self.buffers if b.first <= i <= b.last))
        return out

    def table(self) -> list[dict]:
        rows = []
        for b in sorted(self.buffers, key=lambda b: b.offset):
            rows.append(dict(tensors=b.tensors, kind=b.kind, offset=b.offset, size=b.size,
                             first_op=b.first, last_op=b.last))
        return rows

    def to_json(self, num_ops: int) -> dict:
        return dict(arena_size=self.arena_size, alignment=self.alignment,
                    naive_size=self.naive_size, inplace=self.inplace,
                    buffers=self.table(), timeline=self.usage_timeline(num_ops))


InplacePolicy = Callable[[Op, Graph], "int | None"]
ScratchPolicy = Callable[[Op, Graph], int]


def default_inplace(op: Op, graph: Graph) -> int | None:
    """Index of the input whose buffer the op's output may overwrite, or None.

    Only cases where the kernel reads each input element no later than it writes
    the output element at the same address: same byte size and element-aligned."""
    if not op.outputs or not op.inputs:
        return None
    out = graph.tensors[op.outputs[0]]
    if op.type == "RESHAPE":
        return 0
    if op.type in ELEMENTWISE:
        for k, name in enumerate(op.inputs):
            t = graph.tensors.get(name) if name else None
            if t is not None and not t.is_const and t.nbytes == out.nbytes and t.shape == out.shape:
                return k
    return None


def no_scratch(op: Op, graph: Graph) -> int:
    return 0


def _lifetimes(graph: Graph) -> tuple[dict[str, int], dict[str, int]]:
    n = len(graph.ops)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for name in graph.inputs:
        first[name] = -1
        last[name] = -1
    for i, op in enumerate(graph.ops):
        for name in op.inputs:
            if name and not graph.tensors[name].is_const:
                last[name] = max(last.get(name, -1), i)
                first.setdefault(name, i)   # a state tensor read before written
        for name in op.outputs:
            first.setdefault(name, i)
            last[name] = max(last.get(name, i), i)
    for name in graph.outputs:
        last[name] = n
    for name in graph.state:    # state persists across invocations: live throughout
        first[name], last[name] = -1, n
    return first, last


def plan_memory(graph: Graph, alignment: int = 4, inplace: InplacePolicy = default_inplace,
                scratch: ScratchPolicy = no_scratch) -> MemoryPlan:
    first, last = _lifetimes(graph)
    protected = set(graph.outputs) | set(graph.state)
    group: dict[str, Buffer] = {}
    inplace_ops: dict[str, str] = {}

    for name in first:
        t = graph.tensors[name]
        group[name] = Buffer([name], _align(t.nbytes, alignment), first[name], last[name])

    for i, op in enumerate(graph.ops):
        k = inplace(op, graph)
        if k is None:
            continue
        src = op.inputs[k]
        dst = op.outputs[0]
        gs, gd = group[src], group[dst]
        # The input must die here (or alias further along only through this op), and must
        # not be something the caller reads after invoke.
        if gs is gd or gs.last != i or any(n in protected for n in gs.tensors):
            continue
        if any(op.inputs[j] and group.get(op.inputs[j]) is gs for j in range(len(op.inputs)) if j != k):
            continue  # same buffer feeds two inputs (e.g. x + x): still fine, but keep simple
        merged = Buffer(gs.tensors + gd.tensors, max(gs.size, gd.size), gs.first, max(gs.last, gd.last))
        for n in merged.tensors:
            group[n] = merged
        inplace_ops[op.name] = src

    buffers: list[Buffer] = []
    seen = set()
    for b in group.values():
        if id(b) not in seen:
            seen.add(id(b))
            buffers.append(b)
    for i, op in enumerate(graph.ops):
        s = scratch(op, graph)
        if s > 0:
            buffers.append(Buffer([f"{op.name}:scratch"], _align(s, alignment), i, i, kind="scratch"))

    best = None
    orders = [
        lambda b: (-b.size, b.first),
        lambda b: (-(b.last - b.first), -b.size),
        lambda b: (b.first, -b.size),
        lambda b: (-b.size * (b.last - b.first + 1), b.first),
    ]
    for key in orders:
        offs = _place(sorted(buffers, key=key))
        size = max((offs[id(b)] + b.size for b in buffers), default=0)
        if best is None or size < best[0]:
            best = (size, offs)
    size, offs = best
    for b in buffers:
        b.offset = offs[id(b)]
    _verify(buffers)

    offsets = {n: b.offset for b in buffers if b.kind == "tensor" for n in b.tensors}
    scratch_map = {b.tensors[0].split(":")[0]: (b.offset, b.size) for b in buffers if b.kind == "scratch"}
    return MemoryPlan(arena_size=_align(size, alignment), alignment=alignment, buffers=buffers,
                      offsets=offsets, inplace=inplace_ops, scratch=scratch_map,
                      naive_size=sum(b.size for b in buffers))


def _place(order: list[Buffer]) -> dict[int, int]:
    """Greedy: put each buffer at the lowest offset free during its whole lifetime."""
    placed: list[tuple[Buffer, int]] = []
    offs: dict[int, int] = {}
    for b in order:
        busy = sorted((o, o + p.size) for p, o in placed if p.overlaps_time(b))
        cand = 0
        for lo, hi in busy:
            if cand + b.size <= lo:
                break
            cand = max(cand, hi)
        offs[id(b)] = cand
        placed.append((b, cand))
    return offs


def _verify(buffers: list[Buffer]) -> None:
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.overlaps_time(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"memory plan overlap: {a.tensors} and {b.tensors}")

"""Liveness-based static memory planner for the activation arena.

Every non-constant tensor gets an (offset, size) inside one arena. Two tensors may
share bytes when their lifetimes do not overlap. On top of that, ops that can run
in place write their output over an input that dies at that op (the two become one
buffer): RESHAPE always (it is a no-op), elementwise ops, and the kernels that the
runtime can run in place with a small scratch (see `default_inplace`).

Row-delayed in place (`rows=` policy, see toolchain/codegen/rows.py): a
CONV_2D / DEPTHWISE_CONV_2D / pooling op whose input dies at the op writes its
output into the input's buffer (same base), one output row at a time through a
small ring of row slots in the op's scratch. Used when ring + max(in, out) is
smaller than in + out (or always with force_rows, for tests).

Streamed segments (toolchain/codegen/stream.py) reach the planner as one virtual op
each (its external inputs -> its output, scratch = its rings + kernel scratch, in place
over an input when its byte-level simulation allows); the plan then records them
(`segments`, `stream_of`) and their intermediates have no buffer.

Placement is greedy-by-size like TFLite Micro's GreedyMemoryPlanner, but tried
under several orderings, keeping the smallest arena; the plan is verified before
it is returned so a planner bug cannot silently corrupt activations.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from toolchain.ir import ops
from toolchain.ir.graph import Graph, Op


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
    rows: dict = field(default_factory=dict)  # op name -> RowSchedule (row-delayed in place)
    kernel_scratch: dict = field(default_factory=dict)  # op name -> kernel scratch bytes
    # streamed segments (toolchain/codegen/stream.py): virtual op name -> Segment, and
    # the segment of each streamed op (its intermediates have no arena buffer)
    segments: dict = field(default_factory=dict)
    stream_of: dict = field(default_factory=dict)

    def ring(self, op_name: str) -> tuple[int, int] | None:
        """(offset, bytes) of a row-delayed op's ring; its kernel scratch follows it."""
        if op_name not in self.rows:
            return None
        return self.scratch[op_name][0], _align(self.rows[op_name].ring_bytes, self.alignment)

    def kernel_scratch_offset(self, op_name: str) -> int | None:
        if op_name not in self.scratch:
            return None
        off = self.scratch[op_name][0]
        if op_name in self.rows:
            off += _align(self.rows[op_name].ring_bytes, self.alignment)
        return off

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
                    rows={k: v.to_json() for k, v in self.rows.items()},
                    segments={k: v.to_json() for k, v in self.segments.items()},
                    buffers=self.table(), timeline=self.usage_timeline(num_ops))


InplacePolicy = Callable[[Op, Graph], "int | list[int] | None"]
ScratchPolicy = Callable[[Op, Graph], int]
RowPolicy = Callable[[Op, Graph], "object | None"]   # -> rows.RowSchedule | None


def default_inplace(op: Op, graph: Graph) -> list[int] | None:
    """Indices of the inputs whose buffer the op's output may overwrite (tried in
    order: the first that dies at the op is used), or None.

    Only cases where the kernel reads each input element no later than it writes
    the output element at the same address: same byte size and element-aligned.
    Each op module says which (OpDef.inplace, toolchain/ir/ops)."""
    if not op.outputs or not op.inputs:
        return None
    d = ops.get(op.type)
    return d.inplace(graph, op) if d is not None and d.inplace is not None else None


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
                scratch: ScratchPolicy = no_scratch, rows: RowPolicy | None = None,
                force_rows: bool = False) -> MemoryPlan:
    """Plan the arena for graph.ops in their order. `rows` (e.g.
    toolchain.codegen.rows.row_schedule) enables row-delayed in-place execution."""
    first, last = _lifetimes(graph)
    protected = set(graph.outputs) | set(graph.state)
    group: dict[str, Buffer] = {}
    inplace_ops: dict[str, str] = {}
    row_ops: dict = {}

    for name in first:
        t = graph.tensors[name]
        group[name] = Buffer([name], _align(t.nbytes, alignment), first[name], last[name])

    def can_merge(i, op, k):
        src = op.inputs[k]
        gs, gd = group[src], group[op.outputs[0]]
        # The input must die here (or alias further along only through this op), and must
        # not be something the caller reads after invoke.
        if gs is gd or gs.last != i or any(n in protected for n in gs.tensors):
            return False
        # the same buffer feeding two inputs (e.g. x + x): still fine, but keep simple
        return not any(op.inputs[j] and group.get(op.inputs[j]) is gs
                       for j in range(len(op.inputs)) if j != k)

    def merge(op, k):
        gs, gd = group[op.inputs[k]], group[op.outputs[0]]
        merged = Buffer(gs.tensors + gd.tensors, max(gs.size, gd.size), gs.first,
                        max(gs.last, gd.last))
        for n in merged.tensors:
            group[n] = merged
        inplace_ops[op.name] = op.inputs[k]

    for i, op in enumerate(graph.ops):
        ks = inplace(op, graph)
        if ks is not None:
            for k in ([ks] if isinstance(ks, int) else ks):
                if can_merge(i, op, k):
                    merge(op, k)
                    break
            continue
        if rows is None or not op.inputs or not op.outputs or not can_merge(i, op, 0):
            continue
        sched = rows(op, graph)
        if sched is None:
            continue
        gs, gd = group[op.inputs[0]], group[op.outputs[0]]
        ring = _align(sched.ring_bytes, alignment)
        if force_rows or ring + max(gs.size, gd.size) < gs.size + gd.size:
            merge(op, 0)
            row_ops[op.name] = sched

    buffers: list[Buffer] = []
    seen = set()
    for b in group.values():
        if id(b) not in seen:
            seen.add(id(b))
            buffers.append(b)
    kernel_scratch: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        s = scratch(op, graph)
        if s > 0:
            kernel_scratch[op.name] = s
        if op.name in row_ops:
            s = _align(row_ops[op.name].ring_bytes, alignment) + s
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
    scratch_map = {b.tensors[0].rsplit(":", 1)[0]: (b.offset, b.size)
                   for b in buffers if b.kind == "scratch"}
    return MemoryPlan(arena_size=_align(size, alignment), alignment=alignment, buffers=buffers,
                      offsets=offsets, inplace=inplace_ops, scratch=scratch_map,
                      naive_size=sum(b.size for b in buffers), rows=row_ops,
                      kernel_scratch=kernel_scratch)


def largest_layer_live_set(plan: MemoryPlan, graph: Graph) -> dict:
    """The physical floor of the arena for this plan: the largest set of bytes one layer
    needs at once (its activation inputs + its output + its scratch, as the plan sized
    them: a buffer shared in place counts once, a row-delayed op's ring is its scratch).
    No placement of these buffers can go below it; only tiling a layer can.
    -> dict(bytes, layer (op index), type, name, inputs, output, scratch, and
    tensors_bytes/tensors_layer: the same without in-place sharing or row rings, i.e.
    whole input and output tensors + kernel scratch, the floor of a runtime that runs no
    layer in place)."""
    by_tensor = {n: b for b in plan.buffers if b.kind == "tensor" for n in b.tensors}
    best = dict(bytes=0, layer=None, type=None, name=None, inputs=0, output=0, scratch=0)
    tens, tens_layer = 0, None
    for i, op in enumerate(graph.ops):
        names = {n for n in list(op.inputs) + list(op.outputs)
                 if n and n in graph.tensors and not graph.tensors[n].is_const}
        t = (sum(_align(graph.tensors[n].nbytes, plan.alignment) for n in names)
             + plan.kernel_scratch.get(op.name, 0))
        if t > tens:
            tens, tens_layer = t, i
        outs = {id(by_tensor[n]): by_tensor[n] for n in op.outputs if n in by_tensor}
        ins = {id(by_tensor[n]): by_tensor[n] for n in op.inputs
               if n and n in by_tensor and id(by_tensor[n]) not in outs}
        scratch = plan.scratch.get(op.name, (0, 0))[1]
        o, a = sum(b.size for b in outs.values()), sum(b.size for b in ins.values())
        if a + o + scratch > best["bytes"]:
            shared = any(n and n in by_tensor and id(by_tensor[n]) in outs for n in op.inputs)
            best = dict(bytes=a + o + scratch, layer=i, type=op.type, name=op.name,
                        inputs=a, output=o, scratch=scratch, inplace=shared)
    best.update(tensors_bytes=tens, tensors_layer=tens_layer)
    if plan.segments:    # a streamed segment's live set: its inputs, output and rings
        from toolchain.codegen.stream import live_set
        index = {op.name: i for i, op in enumerate(graph.ops)}
        segs = []
        for seg in plan.segments.values():
            ls = live_set(plan, graph, seg)
            segs.append(dict(ls, layers=[index[n] for n in seg.op_names], name=seg.name))
            if ls["bytes"] > best["bytes"]:
                ks = [index[n] for n in seg.op_names]
                best.update(bytes=ls["bytes"], layer=ks[0], type=f"segment {ks[0]}-{ks[-1]}",
                            name=seg.name, inputs=ls["inputs"], output=ls["output"],
                            scratch=ls["scratch"], inplace=ls["inplace"])
        best["segments"] = segs
    return best


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

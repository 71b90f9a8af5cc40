"""Row-delayed in-place execution of sliding-window ops (CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, MAX_POOL_2D; batch 1).

The output shares one buffer with the input (same base). Output rows are computed one
at a time (the kernel is called on a one-row output window) into a ring of `depth`
row slots, and row q is flushed to its final place [q*Ro, (q+1)*Ro) only once every
input row those bytes overlap is dead, i.e. no later output row reads it. Input row i
is last read by output row min(Ho-1, (i + pad_h) // stride_h).

    s = row_schedule(graph, op)     # None when the op cannot run this way
    s.depth, s.ring_bytes, s.flush_after   # flush_after[r]: rows flushed once row r is done

The schedule is simulated here (greedy: flush as soon as allowed) and checked byte
for byte by `check_schedule`.
"""
from __future__ import annotations

from dataclasses import dataclass

from toolchain.ir import ops
from toolchain.ir.graph import Graph, Op

# sliding-window ops whose kernels can be called on an output row window (OpDef.row_capable)
ROW_OPS = tuple(n for n, d in ops.REGISTRY.items() if d.row_capable)


@dataclass
class RowSchedule:
    in_h: int
    in_row: int          # bytes per input row (Wi * Ci)
    out_h: int
    out_row: int         # bytes per output row (Wo * Co)
    stride_h: int
    pad_h: int
    depth: int           # ring slots
    flush_after: list    # cumulative rows flushed after output row r is computed
    block: int = 1       # output rows per kernel call (out_h/out_row/stride_h are per block)
    rows_total: int = 0  # real output rows (the last block may be partial)

    @property
    def ring_bytes(self) -> int:
        return self.depth * self.out_row

    @property
    def in_bytes(self) -> int:
        return self.in_h * self.in_row

    @property
    def out_bytes(self) -> int:
        return self.out_h * self.out_row

    def to_json(self) -> dict:
        return dict(depth=self.depth, ring_bytes=self.ring_bytes, out_row=self.out_row,
                    in_row=self.in_row, block=self.block)


def _geometry(graph: Graph, op: Op):
    from toolchain.codegen.kernel_params import kernel_params
    p = kernel_params(graph, op)
    n, hi, wi, ci = p["input_dims"]
    _, ho, wo, co = p["output_dims"]
    if n != 1:
        return None
    return hi, wi * ci, ho, wo * co, p["stride_h"], p["pad_h"]


def simulate(in_h, in_row, out_h, out_row, stride_h, pad_h, block: int = 1) -> RowSchedule:
    """Greedy flush schedule; with block > 1 a 'row' is `block` output rows computed
    by one kernel call (fewer calls, larger ring)."""
    rows_total = out_h
    if block > 1:
        out_h, out_row, stride_h = -(-out_h // block), out_row * block, stride_h * block
    def last(i):
        return min(out_h - 1, (i + pad_h) // stride_h)

    def can_flush(q, r):
        lo = q * out_row // in_row
        hi = min(((q + 1) * out_row - 1) // in_row, in_h - 1)
        return all(last(i) <= r for i in range(lo, hi + 1))

    flushed, depth, flush_after = 0, 1, []
    for r in range(out_h):
        depth = max(depth, r + 1 - flushed)
        while flushed <= r and can_flush(flushed, r):
            flushed += 1
        flush_after.append(flushed)
    assert flush_after[-1] == out_h
    return RowSchedule(in_h, in_row, out_h, out_row, stride_h, pad_h, depth, flush_after,
                       block, rows_total)


def row_schedule(graph: Graph, op: Op, block: int = 1) -> RowSchedule | None:
    if op.type not in ROW_OPS:
        return None
    x, y = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    if len(x.shape) != 4 or x.is_const or x.dtype != "int8" or y.dtype != "int8":
        return None
    geo = _geometry(graph, op)
    if geo is None:
        return None
    return simulate(*geo, block=block)


def check_schedule(s: RowSchedule, eff_kh: int, dil_h: int = 1) -> None:
    """Replay the schedule on tagged bytes: every input byte an output row reads must
    still hold the input when that row is computed (test helper)."""
    size = max(s.in_bytes, s.out_bytes)
    owner = [("in", i // s.in_row) if i < s.in_bytes else None for i in range(size)]
    done = 0
    for r in range(s.out_h):
        start = r * s.stride_h - s.pad_h
        for i in range(max(0, start), min(s.in_h, start + eff_kh)):
            for b in range(i * s.in_row, (i + 1) * s.in_row):
                assert owner[b] == ("in", i), f"input row {i} clobbered before output row {r}"
        assert r - done < s.depth, "ring overflow"
        while done < s.flush_after[r]:
            for b in range(done * s.out_row, (done + 1) * s.out_row):
                owner[b] = ("out", done)
            done += 1

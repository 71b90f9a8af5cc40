"""Streamed segments: several consecutive ops run row by row, interleaved, so the
tensors between them live only as rings of a few rows (MCUNetV2-style fusion, issue
#14 item 3).

A *segment* is a run of consecutive ops of the execution order (batch 1, int8, 4-D),
each either row-capable (OpDef.row_capable: CONV_2D, DEPTHWISE_CONV_2D, pooling; one
kernel call per output row) or row-wise elementwise (ADD / SUB / MUL / MAXIMUM /
MINIMUM / activations whose activation inputs all have the output's shape: row r
needs row r). Its intermediates are read only inside it and are not graph outputs;
the only tensor that leaves it is the last op's output.

    segs = candidates(graph)                    # valid (first, last) op ranges
    s = build(graph, first, last, ks, inplace=k)  # None when it cannot run that way
    s.steps          # static demand-driven schedule: op position per step (rows in order)
    s.rings          # intermediate -> Ring (slots, mirror tail, row bytes)
    s.scratch_bytes  # rings + output ring + the largest kernel scratch of its ops

Schedule: output row r of the last op is demanded in order; computing a row of an op
first computes (once, in increasing row order) every input row it reads: out row r
of a window op reads input rows [r*s - pad, r*s - pad + (kh-1)*d] clipped to the
tensor, an elementwise row r reads row r.

Rings: an intermediate T with H rows of R bytes gets N slots, N = the largest span
between the row being written and the oldest row still to be read (so writing row j
into slot j % N never overwrites a live row), plus a *mirror tail* of W-1 slots
(W = the most rows one kernel call reads): a row written into slot m < W-1 is also
copied into slot N + m, so any W consecutive live rows are contiguous from slot
lo % N. When N >= H the ring is a plain H-row buffer (no wrap, no mirror).

In place: the segment output may be written over one segment input X (same base)
when X dies there: rows go straight to their final place when every input row they
overlap is dead by then (or is the very row an elementwise op reads at the same
address); otherwise through an output ring of D rows flushed as soon as the X rows
they cover are dead (as toolchain/codegen/rows.py does for one op).

`simulate(s)` replays the schedule on tagged bytes (every byte of every region says
which tensor row it holds): every row a kernel call reads must hold that row, and at
the end the output must be complete. `build` runs it on every segment it returns, so
the planner never uses an unproven schedule.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from toolchain.codegen.kernel_params import kernel_params
from toolchain.ir import ops
from toolchain.ir.graph import Graph, Op

VIRTUAL = "STREAM_SEGMENT"
# elementwise ops whose row r reads row r of every (same-shaped) activation input
ELEMENTWISE = ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "LOGISTIC",
               "TANH", "HARD_SWISH", "LEAKY_RELU")
MAX_OPS = 16


def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) // a * a


def _act_inputs(g: Graph, op: Op) -> list[str]:
    return [n for n in op.inputs if n and not g.t(n).is_const]


def _geo(g: Graph, op: Op):
    """(kind, stride_h, pad_h, eff_kh) of a streamable op, or None."""
    if len(op.outputs) != 1:
        return None
    y = g.t(op.outputs[0])
    if len(y.shape) != 4 or y.shape[0] != 1 or y.dtype != "int8":
        return None
    ins = _act_inputs(g, op)
    if not ins or any(len(g.t(n).shape) != 4 or g.t(n).dtype != "int8" for n in ins):
        return None
    d = ops.get(op.type)
    if d is not None and d.row_capable:
        if ins != [op.inputs[0]] or g.t(op.inputs[0]).shape[0] != 1:
            return None
        p = kernel_params(g, op)
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kh, dil = int(p["filter_dims"][1]), int(p["dilation_h"])
        else:
            kh, dil = int(p["filter_h"]), 1
        return ("window", int(p["stride_h"]), int(p["pad_h"]), (kh - 1) * dil + 1)
    if op.type == "PAD":
        if ins != [op.inputs[0]]:
            return None
        p = kernel_params(g, op)
        pads = [int(v) for v in p["pads"]]
        if pads[0] or pads[1] or tuple(p["input_dims"]) != tuple(g.t(op.inputs[0]).shape):
            return None
        return ("pad", 1, pads[2], 1)        # out row r = input row r - top (or a pad row)
    if op.type in ELEMENTWISE:
        if any(tuple(g.t(n).shape) != tuple(y.shape) for n in op.inputs if n):
            return None       # broadcasting or a constant of another shape
        if any(g.t(n).is_const for n in op.inputs if n):
            return None
        p = kernel_params(g, op)
        if p.get("broadcast") or int(p.get("size", -1)) != y.size:
            return None
        return ("elementwise", 1, 0, 1)
    return None


def candidates(g: Graph, max_ops: int = MAX_OPS) -> list[tuple[int, int]]:
    """(first, last) op index ranges of g.ops (>= 2 ops) that may run as a segment."""
    geo = [_geo(g, op) for op in g.ops]
    consumers: dict[str, list[int]] = {}
    for i, op in enumerate(g.ops):
        for n in op.inputs:
            if n:
                consumers.setdefault(n, []).append(i)
    outs = set(g.outputs) | set(g.state)
    res = []
    for a in range(len(g.ops)):
        if geo[a] is None:
            continue
        for b in range(a + 1, min(len(g.ops), a + max_ops)):
            if geo[b] is None:
                break
            ok = True
            for i in range(a, b):           # intermediates stay inside
                t = g.ops[i].outputs[0]
                if t in outs or any(c > b or c < a for c in consumers.get(t, [])):
                    ok = False
                    break
            last = g.ops[b].outputs[0]
            if ok and (last in outs or consumers.get(last)):
                res.append((a, b))
    return res


@dataclass
class Ring:
    tensor: str
    rows: int           # tensor height
    row_bytes: int
    slots: int          # N
    mirror: int         # W - 1 (0 for a linear ring)
    offset: int = 0     # inside the segment scratch

    @property
    def linear(self) -> bool:
        return self.slots >= self.rows

    @property
    def nbytes(self) -> int:
        return (self.slots + self.mirror) * self.row_bytes


@dataclass
class SegOp:
    op: Op
    kind: str           # "window", "pad" (row r = input row r - top) or "elementwise"
    stride: int
    pad: int
    eff_kh: int
    in_rows: int        # height of inputs[0]
    out_rows: int


@dataclass
class Segment:
    name: str
    ops: list[SegOp]
    inputs: list[str]               # external activation inputs
    output: str
    steps: list[int]                # op position (in ops) per step
    rings: dict[str, Ring]
    inplace: int | None             # index into inputs overwritten by the output
    direct: bool                    # output rows written straight to their place
    out_ring: int                   # output ring slots (0 when direct or not in place)
    flush_after: list = field(default_factory=list)  # per output row: rows flushed after it
    kernel_scratch: int = 0
    out_row: int = 0
    out_rows: int = 0
    rings_bytes: int = 0

    @property
    def scratch_bytes(self) -> int:
        return self.rings_bytes + _align(self.out_ring * self.out_row) + _align(self.kernel_scratch)

    @property
    def kernel_scratch_offset(self) -> int:
        return self.rings_bytes + _align(self.out_ring * self.out_row)

    @property
    def op_names(self) -> list[str]:
        return [s.op.name for s in self.ops]

    def to_json(self) -> dict:
        return dict(ops=self.op_names, inputs=self.inputs, output=self.output,
                    steps=len(self.steps), inplace=self.inplace, direct=self.direct,
                    out_ring=self.out_ring, scratch=self.scratch_bytes,
                    kernel_scratch=self.kernel_scratch,
                    rings={t: dict(slots=r.slots, mirror=r.mirror, row_bytes=r.row_bytes)
                           for t, r in self.rings.items()})


def _row_bytes(g: Graph, name: str) -> int:
    s = g.t(name).shape
    return int(s[2]) * int(s[3])


def need(so: SegOp, r: int) -> tuple[int, int]:
    """Input rows [lo, hi] output row r reads (every activation input: elementwise ops
    read row r of each)."""
    if so.kind == "elementwise":
        return r, r
    start = r * so.stride - so.pad
    return max(0, start), min(so.in_rows - 1, start + so.eff_kh - 1)


def build(g: Graph, a: int, b: int, ks: dict | None = None, inplace: int | None = None,
          check: bool = True, geos: dict | None = None) -> Segment | None:
    """The segment of g.ops[a..b] (see candidates), optionally writing its output over
    external input `inplace` (index into its inputs); None when that is not possible.
    check: prove it by simulate() (the planner checks the segments it keeps)."""
    ks = ks or {}
    sops = []
    for op in g.ops[a:b + 1]:
        geo = geos[op.name] if geos is not None else _geo(g, op)
        if geo is None:
            return None
        sops.append(SegOp(op, geo[0], geo[1], geo[2], geo[3], int(g.t(op.inputs[0]).shape[1]),
                          int(g.t(op.outputs[0]).shape[1])))
    prod = {so.op.outputs[0]: i for i, so in enumerate(sops)}
    acts = [_act_inputs(g, so.op) for so in sops]
    output = sops[-1].op.outputs[0]
    ext: list[str] = []
    for j, so in enumerate(sops):
        for n in acts[j]:
            if n not in prod and n not in ext:
                ext.append(n)
    if inplace is not None and (inplace >= len(ext) or ext[inplace] in g.outputs):
        return None
    # ---- demand-driven schedule
    done = {t: 0 for t in prod}
    steps: list[int] = []
    reads: list[list[tuple[str, int, int]]] = []

    def produce(t: str, r: int) -> None:
        i = prod[t]
        so = sops[i]
        lo, hi = need(so, r)
        for u in acts[i]:
            if u in prod:
                while done[u] <= hi:
                    produce(u, done[u])
        steps.append(i)
        reads.append([(u, lo, hi) for u in acts[i]])
        done[t] = r + 1

    import sys
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10000))
    try:
        for r in range(sops[-1].out_rows):
            produce(output, r)
    finally:
        sys.setrecursionlimit(old)
    # ---- liveness of rows: last step reading (tensor, row)
    last: dict[tuple[str, int], int] = {}
    for s, rd in enumerate(reads):
        for u, lo, hi in rd:
            for i in range(lo, hi + 1):
                last[(u, i)] = s
    # ---- rings
    rings: dict[str, Ring] = {}
    written: dict[str, int] = {t: 0 for t in prod}
    span = {t: 1 for t in prod}
    window = {t: 1 for t in prod}
    oldest = {t: 0 for t in prod}
    for s, i in enumerate(steps):
        for u, lo, hi in reads[s]:
            if u in prod:
                window[u] = max(window[u], hi - lo + 1)
        t = sops[i].op.outputs[0]
        if t == output:
            continue
        j = written[t]
        while oldest[t] < j and last.get((t, oldest[t]), -1) <= s:
            oldest[t] += 1
        span[t] = max(span[t], j - oldest[t] + 1)
        written[t] = j + 1
    off = 0
    for t in prod:
        if t == output:
            continue
        h = int(g.t(t).shape[1])
        n = min(span[t], h)
        ring = Ring(t, h, _row_bytes(g, t), n, 0 if n >= h else window[t] - 1, off)
        rings[t] = ring
        off += _align(ring.nbytes)
    seg = Segment(f"stream:{sops[0].op.name}..{sops[-1].op.name}", sops, ext, output, steps,
                  rings, inplace, True, 0, kernel_scratch=max(
                      [int(ks.get(so.op.name, 0)) for so in sops] + [0]),
                  out_row=_row_bytes(g, output), out_rows=sops[-1].out_rows, rings_bytes=off)
    if inplace is not None:
        x = ext[inplace]
        xr, xh = _row_bytes(g, x), int(g.t(x).shape[1])

        def x_rows(q):      # rows of x that output row q's bytes overlap
            lo = q * seg.out_row // xr
            hi = min(((q + 1) * seg.out_row - 1) // xr, xh - 1)
            return range(lo, hi + 1) if lo < xh else range(0)

        def dead_after(q, s):
            return all(last.get((x, i), -1) <= s for i in x_rows(q))
        direct = True
        q = 0
        for s, i in enumerate(steps):
            if sops[i].op.outputs[0] != output:
                continue
            so = sops[i]
            for xi in x_rows(q):
                ls = last.get((x, xi), -1)
                if ls < s:
                    continue
                if not (ls == s and so.kind == "elementwise" and xi == q and xr == seg.out_row):
                    direct = False
            q += 1
        if not direct:
            flushed, depth, flush_after, q = 0, 1, [], 0
            for s, i in enumerate(steps):
                if sops[i].op.outputs[0] != output:
                    continue
                depth = max(depth, q + 1 - flushed)
                while flushed <= q and dead_after(flushed, s):
                    flushed += 1
                flush_after.append(flushed)
                q += 1
            if flush_after[-1] != seg.out_rows:
                return None
            seg.direct, seg.out_ring, seg.flush_after = False, depth, flush_after
    if check:
        simulate(g, seg)
    return seg


# ---------------------------------------------------------------- byte-level proof
def layout(g: Graph, seg: Segment) -> dict[str, int]:
    """Region bases of a virtual address space for the simulation: the in-place input
    and the output share one base; every other tensor and each ring has its own."""
    base, top = {}, 0
    x = seg.inputs[seg.inplace] if seg.inplace is not None else None
    for n in list(seg.inputs) + ([] if x is not None else [seg.output]):
        base[n] = top
        top += max(g.t(n).nbytes, g.t(seg.output).nbytes if n == x else 0) + 64
    if seg.inplace is not None:
        base[seg.output] = base[seg.inputs[seg.inplace]]
    base[":rings"] = top
    top += seg.rings_bytes + 64
    base[":oring"] = top
    top += seg.out_ring * seg.out_row + 64
    base[":top"] = top
    return base


def simulate(g: Graph, seg: Segment) -> None:
    """Replay the schedule on tagged bytes; AssertionError on any read of a row that is
    not (or no longer) where the schedule says, or an incomplete output."""
    base = layout(g, seg)
    mem = np.zeros(base[":top"], np.int64)          # 0: nothing
    tid = {n: k + 1 for k, n in enumerate(list(seg.inputs) + list(seg.rings) + [seg.output])}

    def tag(n, i):
        return tid[n] * 1_000_000 + i + 1
    for n in seg.inputs:
        rb = _row_bytes(g, n)
        for i in range(int(g.t(n).shape[1])):
            mem[base[n] + i * rb: base[n] + (i + 1) * rb] = tag(n, i)

    def addr(n, i):     # where row i of tensor n is read / written
        if n in seg.rings:
            rg = seg.rings[n]
            return base[":rings"] + rg.offset + (i if rg.linear else i % rg.slots) * rg.row_bytes
        return base[n] + i * _row_bytes(g, n)
    cnt = [0] * len(seg.ops)
    done = 0
    for s, i in enumerate(seg.steps):
        so = seg.ops[i]
        r = cnt[i]
        cnt[i] += 1
        lo, hi = need(so, r)
        read = np.zeros(mem.size, bool)
        for u in _act_inputs(g, so.op):
            rb = _row_bytes(g, u)
            a0 = addr(u, lo)
            for k, row in enumerate(range(lo, hi + 1)):
                sl = slice(a0 + k * rb, a0 + (k + 1) * rb)
                assert (mem[sl] == tag(u, row)).all(), \
                    f"{seg.name}: step {s} ({so.op.name}) reads row {row} of {u}: clobbered"
                read[sl] = True
        t = so.op.outputs[0]
        rb = _row_bytes(g, t)
        if t != seg.output:
            rg = seg.rings[t]
            a = addr(t, r)
            mem[a:a + rb] = tag(t, r)
            slot = r % rg.slots
            if not rg.linear and slot < rg.mirror:
                m = base[":rings"] + rg.offset + (rg.slots + slot) * rb
                mem[m:m + rb] = tag(t, r)
            continue
        if seg.inplace is None or seg.direct:
            a = addr(t, r)
            if read[a:a + rb].any():     # a kernel writing over bytes it reads: only an
                x = seg.inputs[seg.inplace] if seg.inplace is not None else None
                assert (so.kind == "elementwise" and x is not None
                        and addr(x, r) == a and _row_bytes(g, x) == rb), \
                    f"{seg.name}: output row {r} written over bytes its own call reads"
            mem[a:a + rb] = tag(t, r)
            continue
        a = base[":oring"] + (r % seg.out_ring) * rb
        assert r - done < seg.out_ring, f"{seg.name}: output ring overflow"
        mem[a:a + rb] = tag(t, r)
        while done < seg.flush_after[r]:
            src = base[":oring"] + (done % seg.out_ring) * rb
            assert (mem[src:src + rb] == tag(t, done)).all()
            d = addr(t, done)
            mem[d:d + rb] = mem[src:src + rb]
            done += 1
    assert cnt[-1] == seg.out_rows
    rb = seg.out_row
    for r in range(seg.out_rows):
        a = addr(seg.output, r)
        assert (mem[a:a + rb] == tag(seg.output, r)).all(), f"{seg.name}: output row {r} lost"


# ---------------------------------------------------------------- planning
def reduced_graph(g: Graph, segs: list[tuple[int, int, Segment]]) -> Graph:
    """g with each segment's ops replaced by one virtual op (inputs = its external
    inputs, output = its output), at the segment's place in the order."""
    r = copy.copy(g)
    starts = {a: (a, b, s) for a, b, s in segs}
    new, i = [], 0
    while i < len(g.ops):
        if i in starts:
            a, b, s = starts[i]
            new.append(Op(VIRTUAL, list(s.inputs), [s.output], {}, s.name))
            i = b + 1
        else:
            new.append(g.ops[i])
            i += 1
    r.ops = new
    return r


def plan_with(g: Graph, segs: list, alignment: int, scratch, rows_policy, plan_memory,
              default_inplace):
    """plan_memory over g with segments (first, last, Segment) as virtual ops; None when
    an in-place segment cannot get its input's buffer. The plan knows the segments
    (plan.segments, plan.stream_of) and every streamed op's kernel scratch."""
    by_name = {s.name: s for _, _, s in segs}

    def inplace(op, gr):
        if op.type == VIRTUAL:
            s = by_name[op.name]
            return None if s.inplace is None else [s.inplace]
        return default_inplace(op, gr)

    def scr(op, gr):
        if op.type == VIRTUAL:
            return by_name[op.name].scratch_bytes
        return scratch(op, gr)
    rg = reduced_graph(g, segs)
    plan = plan_memory(rg, alignment, inplace=inplace, scratch=scr, rows=rows_policy)
    for s in by_name.values():
        if s.inplace is not None and plan.inplace.get(s.name) != s.inputs[s.inplace]:
            return None
    plan.segments = {s.name: s for s in by_name.values()}
    plan.stream_of = {so.op.name: s.name for s in by_name.values() for so in s.ops}
    for s in by_name.values():
        for so in s.ops:
            k = scratch(so.op, g)
            if k > 0:
                plan.kernel_scratch[so.op.name] = k
    return plan


BEAM = 3      # segment sets kept per round of choose()


def choose(g: Graph, base_plan, plan_fn, ks: dict, max_rounds: int = 6, force: bool = False):
    """Greedy: add the segment (and in-place choice) that lowers the arena most, while
    one does; ties go to fewer streamed ops. plan_fn(segs) -> MemoryPlan | None.
    force (tests): the longest segments that plan, in place where possible, whatever
    the arena. -> (segments, plan)."""
    cands = candidates(g)
    cache: dict = {}
    geos = {op.name: _geo(g, op) for op in g.ops}
    consumers: dict[str, set[int]] = {}
    for i, op in enumerate(g.ops):
        for n in op.inputs:
            if n:
                consumers.setdefault(n, set()).add(i)

    def seg(a, b, k):
        if (a, b, k) not in cache:
            cache[(a, b, k)] = build(g, a, b, ks, k, check=False, geos=geos)
        return cache[(a, b, k)]
    chosen: list = []
    best_plan = base_plan
    if force:
        for a, b in sorted(cands, key=lambda c: (c[0] - c[1], c[0])):
            if any(a <= y and x <= b for x, y, _ in chosen):
                continue
            s0 = seg(a, b, None)
            for s in [seg(a, b, k) for k in range(len(s0.inputs) if s0 else 0)] + [s0]:
                p = plan_fn(chosen + [(a, b, s)]) if s is not None else None
                if p is not None:
                    chosen.append((a, b, s))
                    best_plan = p
                    break
        max_rounds = 0
    # a small beam over the greedy rounds: the segment that lowers the arena most first
    # can block a pair that lowers it more together (mobilenet_v2_32 DSP: 8,428 B greedy)
    beam = [(chosen, best_plan)]
    best_key = (best_plan.arena_size, 0, 0)
    for _ in range(max_rounds):
        nxt: dict = {}
        for ch, pl in beam:
            used = {i for a, b, _ in ch for i in range(a, b + 1)}
            peak = _peak_ops(g, ch, pl)
            for a, b in cands:
                if any(i in used for i in range(a, b + 1)) or \
                        not any(a <= i <= b for i in peak):
                    continue
                s0 = seg(a, b, None)
                if s0 is None:
                    continue
                dying = [k for k, n in enumerate(s0.inputs)   # in place only over an input
                         if n not in g.outputs and n not in g.state   # that dies here
                         and all(a <= c <= b for c in consumers.get(n, ()))]
                for k in [None] + dying:
                    s = s0 if k is None else seg(a, b, k)
                    if s is None:
                        continue
                    sig = frozenset((x, y, s2.inplace) for x, y, s2 in ch) | {(a, b, k)}
                    if sig in nxt:
                        continue
                    p = plan_fn(ch + [(a, b, s)])
                    if p is None or p.arena_size >= pl.arena_size:
                        continue
                    key = (p.arena_size, sum(y - x for x, y, _ in ch) + b - a,
                           sum(len(s2.steps) for _, _, s2 in ch) + len(s.steps))
                    nxt[sig] = (key, ch + [(a, b, s)], p)
        if not nxt:
            break
        ranked = sorted(nxt.values(), key=lambda e: e[0])[:BEAM]
        beam = [(c, p) for _, c, p in ranked]
        if ranked[0][0] < best_key:
            best_key, chosen, best_plan = ranked[0]
    for _, _, s in chosen:       # the byte-level proof of every segment kept
        simulate(g, s)
    return sorted(chosen, key=lambda c: c[0]), best_plan


def _peak_ops(g: Graph, chosen: list, plan) -> set[int]:
    """Op indices of g (original order) live at the plan's peak usage (and the ops
    holding the buffers placed highest): only a segment covering one can lower it."""
    rg_ops = reduced_graph(g, chosen).ops if chosen else g.ops
    idx = {op.name: i for i, op in enumerate(g.ops)}
    seg_span = {s.name: (a, b) for a, b, s in chosen}
    tl = plan.usage_timeline(len(rg_ops))
    top = max(tl) if tl else 0
    hot = {j for j, v in enumerate(tl) if v >= 0.85 * top}
    # the buffers reaching the arena's end, and the ops they are live across
    for buf in plan.buffers:
        if buf.offset + buf.size >= plan.arena_size - 3 * plan.alignment:
            hot |= set(range(max(0, buf.first), min(len(rg_ops) - 1, buf.last) + 1))
    out = set()
    for j in hot:
        op = rg_ops[j]
        if op.name in seg_span:
            out |= set(range(seg_span[op.name][0], seg_span[op.name][1] + 1))
        else:
            out.add(idx[op.name])
    return out


def live_set(plan, graph: Graph, seg: Segment) -> dict:
    """The bytes a segment needs at once: its external inputs, its output (once when in
    place) and its scratch (rings, output ring, kernel scratch)."""
    by_tensor = {n: b for b in plan.buffers if b.kind == "tensor" for n in b.tensors}
    bufs = {id(by_tensor[n]): by_tensor[n] for n in list(seg.inputs) + [seg.output]}
    outb = by_tensor[seg.output]
    scratch = plan.scratch.get(seg.name, (0, 0))[1]
    ins = sum(b.size for k, b in bufs.items() if k != id(outb))
    return dict(bytes=ins + outb.size + scratch, inputs=ins, output=outb.size,
                scratch=scratch, inplace=seg.inplace is not None,
                rings=seg.rings_bytes + _align(seg.out_ring * seg.out_row))


# ---------------------------------------------------------------- C emission
class _RowProxy:
    """What an elementwise op's emit() sees inside a segment: tensor pointers are
    placeholders, replaced per row by the segment loop; the rest is the emitter's."""

    def __init__(self, em, op: Op):
        self._em, self._op = em, op

    def __getattr__(self, k):
        return getattr(self._em, k)

    def ptr(self, name: str, const_ok: bool = True) -> str:
        return f"@ROW:{name}@"


def record(em, k: int, op: Op, p: dict) -> str:
    """Run the op module's emit() for an op inside a segment: a window op's call pieces
    arrive through em.rows (em.stream_calls), an elementwise op's one-row call is kept
    with placeholder pointers. The segment's run functions come from emit_segments."""
    d = ops.get(op.type)
    if op.type == "PAD":            # emit_segments writes its row call
        return ""
    if d.row_capable:
        body = d.emit(em, k, op, p)
        assert not body and op.name in em.stream_calls, op.name
    else:
        y = em.g.t(op.outputs[0])
        body = d.emit(_RowProxy(em, op), k, op, dict(p, size=int(y.shape[2]) * int(y.shape[3])))
        assert len(body) == 1 and "_broadcast" not in body[0], (op.name, body)
        em.stream_calls[op.name] = body[0]
    return ""


def emit_segments(em) -> list[str]:
    out = []
    for seg in em.plan.segments.values():
        out += _emit_segment(em, seg)
    return out


def _emit_segment(em, seg: Segment) -> list[str]:
    g, A = em.g, em.p + "arena"
    kof = {op.name: k for k, op in enumerate(g.ops)}
    ks = [kof[n] for n in seg.op_names]
    P = f"{em.lp}L{ks[0]}"     # the segment runs (and is timed) at its first layer
    soff, _ = em.plan.scratch[seg.name]
    base_of = em.plan.offsets

    def row_ptr(n: str, row: str) -> str:
        if n in seg.rings:
            rg = seg.rings[n]
            idx = row if rg.linear else f"(({row}) % {rg.slots})"
            return f"(rings + {rg.offset} + {idx} * {rg.row_bytes})"
        return f"({A} + {base_of[n]} + ({row}) * {_row_bytes(g, n)})"
    fns = [f"/* layer {k}: {g.ops[k].type} {g.ops[k].name[:60].replace('*/', '*_/')}: "
           f"streamed in layer {ks[0]}'s segment */\nstatic void {em.lp}L{k}_run(void) {{}}\n"
           for k in ks[1:]]
    em.decls.append(f"static const uint8_t {P}_steps[{len(seg.steps)}] = {{{em.arr(seg.steps)}}};")
    ringed = seg.inplace is not None and not seg.direct
    if ringed:
        em.decls.append(f"static const uint16_t {P}_flush[] = {{{em.arr(seg.flush_after)}}};")
    body = [f"int8_t *const rings = {A} + {soff};"]
    if ringed:
        body.append(f"int8_t *const oring = rings + {seg.rings_bytes};")
    body.append("int32_t t" + (", done = 0" if ringed else "") + ";")
    body.append(" ".join(f"int32_t c{j} = 0;" for j in range(len(seg.ops))))
    cases = []
    for j, so in enumerate(seg.ops):
        op = so.op
        t = op.outputs[0]
        rb = _row_bytes(g, t)
        c = [f"case {j}: {{  /* layer {ks[j]}: {op.type} */", f"    const int32_t r = c{j}++;"]
        if t in seg.rings:
            dst = row_ptr(t, "r")
            rg = seg.rings[t]
            post = ([f"    if (r % {rg.slots} < {rg.mirror}) mcu_copy8(rings + {rg.offset} + "
                     f"({rg.slots} + r % {rg.slots}) * {rb}, {dst}, {rb});"]
                    if not rg.linear and rg.mirror else [])
        elif ringed:
            dst = f"(oring + (r % {seg.out_ring}) * {rb})"
            post = [f"    while (done < (int32_t){P}_flush[r]) {{",
                    f"        mcu_copy8({A} + {base_of[t]} + done * {rb}, "
                    f"oring + (done % {seg.out_ring}) * {rb}, {rb});",
                    "        done++;", "    }"]
        else:
            dst = f"({A} + {base_of[t]} + r * {rb})"
            post = []
        if so.kind == "pad":
            p = kernel_params(g, op)
            pads = [int(v) for v in p["pads"]]
            _, hi_, wi_, ci_ = p["input_dims"]
            em.decls.append(f"static const mcu_dims_t {P}_{j}_rowd = {{1, 1, {wi_}, {ci_}}};")
            em.decls.append(f"static const int32_t {P}_{j}_rowpads[8] = "
                            f"{{0, 0, 0, 0, {', '.join(map(str, pads[4:]))}}};")
            v = int(p["pad_value"])
            c += [f"    const int32_t i = r - {so.pad};",
                  f"    if (i >= 0 && i < {hi_}) mcu_pad_s8(&{P}_{j}_rowd, "
                  f"{row_ptr(op.inputs[0], 'i')}, {P}_{j}_rowpads, (int8_t){v}, {dst});",
                  f"    else __builtin_memset({dst}, {v & 0xff}, {rb});"]
        elif so.kind == "window":
            fn, ctype, pp, qa, idm, wb, odm, scr = em.stream_calls[op.name]
            body.append(f"{ctype} prm{j} = *{pp};")
            body.append(f"mcu_dims_t id{j} = *{idm}, od{j} = *{odm};")
            body.append(f"od{j}.h = 1;")
            c += [f"    const int32_t start = r * {so.stride} - {so.pad};",
                  "    const int32_t lo = start > 0 ? start : 0;",
                  f"    const int32_t end = start + {so.eff_kh} < {so.in_rows} ? "
                  f"start + {so.eff_kh} : {so.in_rows};",
                  f"    prm{j}.pad_h = start < 0 ? -start : 0;",
                  f"    id{j}.h = end - lo;",
                  f"    {fn}(&prm{j}, {qa}&id{j}, {row_ptr(op.inputs[0], 'lo')}, {wb}&od{j}, "
                  f"{dst}{scr});"]
        else:
            line = em.stream_calls[op.name]
            for n in op.inputs:
                if n:
                    line = line.replace(f"@ROW:{n}@", row_ptr(n, "r"))
            line = line.replace(f"@ROW:{t}@", dst)
            assert "@ROW:" not in line, line
            c.append("    " + line)
        cases += c + post + ["    break;", "}"]
    body.append(f"for (t = 0; t < {len(seg.steps)}; t++) {{")
    body.append(f"    switch ({P}_steps[t]) {{")
    body += ["    " + x for x in cases]
    body += ["    default: break;", "    }", "}"]
    desc = ", ".join(f"{so.op.type}" for so in seg.ops)
    rings = "; ".join(f"{r.slots}+{r.mirror} x {r.row_bytes} B" for r in seg.rings.values())
    fns.append(f"/* layer {ks[0]}: streamed segment of layers {' '.join(map(str, ks))} "
               f"({desc}), {len(seg.steps)} row steps; rings {rings}; "
               f"{'in place' if seg.inplace is not None else 'own output'}"
               f"{', output ring ' + str(seg.out_ring) if ringed else ''} */\n"
               f"static void {P}_run(void) {{\n    " + "\n    ".join(body) + "\n}\n")
    return fns

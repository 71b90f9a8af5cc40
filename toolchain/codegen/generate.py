"""int8 IR graph -> a directory of C that compiles on its own with the runtime.

    res = generate(graph, "out/model", kernels="dsp")
    res.files        # [model.c, model_weights.c, model_weights.h]
    res.plan         # MemoryPlan (arena offsets, in-place, row-delayed ops)
    res.summary()    # JSON-ready figures

What is generated:
- model_weights.c: every constant the kernels read (filters int8, biases int32) as
  aligned `const` arrays (flash).
- model.c: per-layer precomputed parameters (TFLM-exact multipliers/shifts from
  toolchain.codegen.kernel_params) as `static const` structs, one static arena
  sized by the memory planner, one function per layer calling the runtime kernel,
  the layers in execution order with timing hooks, and the model interface of
  firmware_templates/app/model_iface.h (hash, I/O, invoke, per-layer counts,
  intermediate outputs).

Layers keep the IR graph's op indices ("layer k" everywhere: timing, intermediate
outputs); the execution order may differ (independent branches reordered when that
lowers the arena), see `exec_order`.

Ops are validated before any C is written: an op without a runtime kernel raises
IRError naming the op and the layer.
"""
from __future__ import annotations

import copy
import json
import random
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.codegen.kernel_params import kernel_params
from toolchain.codegen import stream as streaming
from toolchain.codegen.planner import MemoryPlan, default_inplace, plan_memory
from toolchain.codegen.rows import row_schedule
from toolchain.codegen.scratch import RUNTIME_SIZER, kernel_scratch, requant_table
from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op
from toolchain.ir.validate import validate

# op types the runtime runs: those whose op module emits a kernel call (OpDef.emit)
SUPPORTED_OPS = ops.ops_with("emit")
ROW_CAPABLE = tuple(n for n in SUPPORTED_OPS if ops.get(n).row_capable)
VARIANTS = ("portable", "dsp")
# arena growth (bytes) allowed for fewer row-delayed kernel calls (multi-row blocks), see
# plan_model: a few row slots, not a whole tensor; DSP kernels only (their per-call setup
# is what blocks amortize; portable builds keep the smallest arena)
ROW_SLACK = {"portable": 0, "dsp": 768}
DESC_VERSION = 1
DESC_VERSION_INT16 = 2           # a descriptor with int16 I/O tensors
DESC_DTYPES = {"int8": 1, "int16": 2}  # descriptor dtype codes (docs/protocol.md)
UNIT_NAMES = {0: "ticks", 1: "instructions", 2: "cycles", 3: "ns"}


# ---------------------------------------------------------------- validation
def check_graph(graph: Graph) -> None:
    """Raise IRError for anything the runtime cannot run, naming op and layer."""
    validate(graph, SUPPORTED_OPS, target="the mcu runtime")
    # int16 activations ("16x8"): only ops with an int16 form (toolchain/ir/ops/int16.py)
    ops.int16.check_int16_graph(graph, "the mcu runtime")
    act = ("int8", "int16") if ops.int16.graph_is_int16(graph) else ("int8",)
    for op in graph.ops:
        for n in op.outputs:
            t = graph.t(n)
            if t.dtype not in act:
                raise IRError(f"layer '{op.name}' ({op.type}): output '{n}' is {t.dtype}; "
                              "the mcu runtime runs int8 models (convert with mcu convert "
                              "--calib)")
        for k, n in enumerate(op.inputs):
            if not n:
                continue
            t = graph.t(n)
            if not t.is_const and t.dtype not in act:
                raise IRError(f"layer '{op.name}' ({op.type}): input '{n}' is {t.dtype}; "
                              "the mcu runtime runs int8 models")
            if t.is_const and ops.get(op.type).int8_const_inputs and t.dtype != "int8":
                raise IRError(f"layer '{op.name}' ({op.type}): constant input '{n}' is "
                              f"{t.dtype}, expected int8")
        kernel_params(graph, op)   # raises IRError on unsupported parameters
        _check_accumulator(graph, op)
    for n in graph.inputs + graph.outputs:
        if graph.t(n).dtype not in act:
            raise IRError(f"graph input/output '{n}' is {graph.t(n).dtype}; the mcu runtime "
                          "runs int8 models (convert with mcu convert --calib)")


# |w * (x + offset)| <= 128 * 255 (255 * 255 with a weight zero point): this many
# products per output always fit the int32 accumulator before the bias, which the
# kernels add modulo 2^32 as TFLM does (firmware_templates/runtime/README.md,
# "Arithmetic that wraps on purpose")
MAX_PRODUCTS = (2**31 - 1) // (128 * 255)


def _check_accumulator(graph: Graph, op) -> None:
    if op.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
        return
    if ops.int16.is_int16(graph, op):   # int64 sums (or TFLM's wrapping int32 ones)
        return
    w = graph.t(op.inputs[1])
    k = 1
    for d in (w.shape[1:3] if op.type == "DEPTHWISE_CONV_2D" else w.shape[1:]):
        k *= int(d)
    zp = w.quant.zero_point if w.quant is not None else None
    limit = MAX_PRODUCTS if zp is None or not any(int(z) for z in np.ravel(zp)) \
        else (2**31 - 1) // (255 * 255)
    if k > limit:
        raise IRError(f"layer '{op.name}' ({op.type}): {k:,} products per output can overflow "
                      f"the int32 accumulator (at most {limit:,}); split the layer")


# ---------------------------------------------------------------- scheduling
def _with_order(graph: Graph, order: list[int]) -> Graph:
    g = copy.copy(graph)
    g.ops = [graph.ops[i] for i in order]
    return g


def _topo_orders(graph: Graph, n_random: int = 24, seed: int = 0) -> list[list[int]]:
    """The original order plus random and greedy topological orders (independent
    branches interleaved differently)."""
    prod = {o: i for i, op in enumerate(graph.ops) for o in op.outputs}
    deps = [{prod[n] for n in op.inputs if n in prod} for op in graph.ops]
    n = len(graph.ops)
    orders = [list(range(n))]
    rng = random.Random(seed)

    def one(pick):
        done, order = set(), []
        while len(order) < n:
            ready = [i for i in range(n) if i not in done and deps[i] <= done]
            i = pick(ready, done)
            done.add(i)
            order.append(i)
        return order

    # greedy: prefer the op whose inputs then die (frees memory first)
    cons: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        for x in op.inputs:
            if x:
                cons.setdefault(x, []).append(i)

    def frees(i, done):
        return -sum(graph.t(x).nbytes for x in graph.ops[i].inputs
                    if x and not graph.t(x).is_const and x not in graph.outputs
                    and all(c in done or c == i for c in cons[x]))
    orders.append(one(lambda ready, done: min(ready, key=lambda i: (frees(i, done), i))))
    for _ in range(n_random):
        orders.append(one(lambda ready, done: rng.choice(ready)))
    uniq, seen = [], set()
    for o in orders:
        if tuple(o) not in seen:
            seen.add(tuple(o))
            uniq.append(o)
    return uniq


def plan_model(graph: Graph, variant: str = "portable", *, rows: bool = True,
               force_rows: bool = False, reorder: bool = True, alignment: int = 4,
               patchable: bool = False, row_slack: int | None = None,
               levels: list | None = None, stream: bool = True):
    """(execution order, MemoryPlan): the smallest arena over candidate orders.

    stream: run consecutive ops as streamed segments (toolchain/codegen/stream.py)
    where that lowers the arena; "force" (tests): the longest segments, always.

    Row-delayed ops then run normally or in multi-row blocks (fewer kernel calls)
    where the arena stays within the smallest arena + row_slack bytes (default
    ROW_SLACK[variant])."""
    ks = {op.name: kernel_scratch(op.type, kernel_params(graph, op), variant, patchable)
          for op in graph.ops}
    for lg in levels or ():        # subnet levels: the plan fits the largest level
        for op in lg.ops:
            ks[op.name] = max(ks[op.name], kernel_scratch(op.type, kernel_params(lg, op),
                                                          variant, patchable))

    def scratch(op, g):
        return ks[op.name]

    row_cache: dict = {}

    def row_policy(op, g):       # depends on the op and its tensors only, not the order
        if op.name not in row_cache:
            row_cache[op.name] = row_schedule(g, op)
        return row_cache[op.name]

    best = None
    orders = _topo_orders(graph) if reorder else [list(range(len(graph.ops)))]
    for order in orders:
        g = _with_order(graph, order)
        plan = plan_memory(g, alignment, scratch=scratch, rows=row_policy if rows else None,
                           force_rows=force_rows)
        if best is None or plan.arena_size < best[1].arena_size:
            best = (order, plan)
    if stream and rows and not force_rows and levels is None:
        order, plan = best
        g = _with_order(graph, order)
        segs, splan = streaming.choose(g, plan, lambda sg: streaming.plan_with(
            g, sg, alignment, scratch, row_policy, plan_memory, default_inplace), ks,
            force=stream == "force")
        if segs and stream == "force":
            return _row_blocks(g, (order, splan), segs, variant, alignment, scratch, row_slack)
        if segs:   # kept only when the arena is smaller after the multi-row-block pass too
            plain = _row_blocks(g, best, [], variant, alignment, scratch, row_slack)
            streamed = _row_blocks(g, (order, splan), segs, variant, alignment, scratch,
                                   row_slack)
            return streamed if streamed[1].arena_size < plain[1].arena_size else plain
    if not rows or force_rows or not best[1].rows:
        return best
    return _row_blocks(_with_order(graph, best[0]), best, [], variant, alignment, scratch,
                       row_slack)


def _row_blocks(g: Graph, best, segs, variant, alignment, scratch, row_slack):
    """Row-delayed calls cost instructions (one kernel call per row block): where the
    arena allows, run an op normally, else in blocks of several rows per call."""
    order, plan = best
    if not plan.rows:
        return best
    limit = plan.arena_size + (ROW_SLACK.get(variant, 0) if row_slack is None else row_slack)
    choice: dict[str, int] = {}    # op name -> 0 (not row-delayed) or rows per call

    def policy(op, gr):
        b = choice.get(op.name, 1)
        return None if b == 0 else row_schedule(gr, op, b)

    def trial():
        if segs:
            return streaming.plan_with(g, segs, alignment, scratch, policy, plan_memory,
                                       default_inplace)
        return plan_memory(g, alignment, scratch=scratch, rows=policy)
    # the candidates and their heights come from the best plan: a trial plan may no
    # longer row-delay a later op (issue #12: KeyError on MobileNet-style models)
    candidates = {name: s.out_h for name, s in plan.rows.items()}
    for name, ho in candidates.items():
        for b in [0] + [b for b in (16, 12, 8, 6, 5, 4, 3, 2) if b < ho]:
            choice[name] = b
            p2 = trial()
            if p2.arena_size <= limit:
                plan = p2
                break
        else:
            choice[name] = 1
    return order, trial()


# ---------------------------------------------------------------- C emission
def _cname(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", s)


def _cstr(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _arr(vals, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(vals).reshape(-1)]
    if not vals:
        return "0"
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "\n    " + ",\n    ".join(lines) + "\n"


def short_name(op: Op) -> str:
    n = op.name.split(";")[0]
    return n if len(n) <= 48 else "..." + n[-45:]


@dataclass
class GenResult:
    out_dir: Path
    files: list
    graph: Graph
    plan: MemoryPlan
    exec_order: list          # layer indices in execution order
    variant: str
    prefix: str
    model_hash: str
    weights_bytes: int
    layers: list = field(default_factory=list)
    table_bytes: int = 0      # requantization tables (mcu_requant_t, flash)
    num_levels: int = 0       # subnet levels in one firmware (0: an ordinary model)

    @property
    def arena_size(self) -> int:
        return self.plan.arena_size

    def summary(self) -> dict:
        return dict(model_hash=self.model_hash, kernels=self.variant,
                    arena_size=self.plan.arena_size, weights_bytes=self.weights_bytes,
                    table_bytes=self.table_bytes,
                    naive_arena=self.plan.naive_size, num_layers=len(self.graph.ops),
                    exec_order=self.exec_order, reordered=self.exec_order != sorted(self.exec_order),
                    row_inplace=sorted(self.plan.rows), inplace=self.plan.inplace,
                    layers=self.layers, files=[str(f) for f in self.files])


class _Emitter:
    def __init__(self, graph: Graph, plan: MemoryPlan, prefix: str, variant: str = "portable",
                 patchable: bool = False):
        self.g = graph
        self.plan = plan
        self.p = prefix
        self.variant = variant
        self.patchable = patchable
        self.consts: dict[str, tuple[str, str, np.ndarray]] = {}   # tensor -> (sym, ctype, data)
        # arrays derived from weight values (DSP repacked filters): flash, never patchable
        self.derived: dict[str, tuple[str, str, np.ndarray]] = {}
        self.decls: list[str] = []
        self.checks: list[str] = []
        self.table_bytes = 0
        self.lp = prefix           # prefix of layer symbols ({P}S{level} with subnet levels)
        self.level: int | None = None
        self.stream_calls: dict = {}   # streamed op -> its recorded call (stream.record)

    def _key(self, table: dict, name: str, data) -> str:
        """Subnet levels: a constant whose bytes differ from another level's gets its
        own array; equal bytes (the shared store) are emitted once."""
        if self.level is None or name not in table:
            return name
        old = table[name][2]
        d = np.ascontiguousarray(data)
        if old.dtype == d.dtype and old.shape == d.shape and old.tobytes() == d.tobytes():
            return name
        return f"{name}@{self.level}"

    def const(self, name: str, data: np.ndarray, ctype: str) -> str:
        name = self._key(self.consts, name, data)
        if name not in self.consts:
            sym = f"{self.p}w{len(self.consts)}_{_cname(name)[-40:]}"
            self.consts[name] = (sym, ctype, np.ascontiguousarray(data))
        return self.consts[name][0]

    def derived_const(self, key: str, data: np.ndarray, ctype: str) -> str:
        key = self._key(self.derived, key, data)
        if key not in self.derived:
            sym = f"{self.p}d{len(self.derived)}_{_cname(key)[-40:]}"
            self.derived[key] = (sym, ctype, np.ascontiguousarray(data))
        return self.derived[key][0]

    def ptr(self, name: str, const_ok: bool = True) -> str:
        t = self.g.t(name)
        if t.is_const:
            return self.const(name, t.data.astype(np.int8), "int8_t")
        return f"({self.p}arena + {self.plan.offsets[name]})"

    def scratch(self, op: Op) -> str:
        seg = self.plan.segments.get(self.plan.stream_of.get(op.name))
        if seg is not None:        # a segment's ops share one kernel scratch after its rings
            if op.name not in self.plan.kernel_scratch:
                return "0"
            off = self.plan.scratch[seg.name][0] + seg.kernel_scratch_offset
            return f"(void *)({self.p}arena + {off})"
        off = self.plan.kernel_scratch_offset(op.name)
        if off is None or op.name not in self.plan.kernel_scratch:
            return "0"
        return f"(void *)({self.p}arena + {off})"

    # ---- what op modules' emit() use (toolchain/ir/ops, OpDef.emit)
    rt = RUNTIME_SIZER
    arr = staticmethod(_arr)

    def layer_prefix(self, k: int) -> str:
        return f"{self.lp}L{k}"

    def dims(self, P: str, nm: str, v) -> str:
        self.decls.append(f"static const mcu_dims_t {P}_{nm} = {{{', '.join(map(str, v))}}};")
        return f"&{P}_{nm}"

    def quant(self, P: str, p: dict) -> str:
        """Per-channel multiplier/shift arrays and their mcu_per_channel_quant_t."""
        self.decls.append(f"static const int32_t {P}_mult[] = {{{_arr(p['multiplier'])}}};")
        self.decls.append(f"static const int32_t {P}_shift[] = {{{_arr(p['shift'])}}};")
        self.decls.append(f"static const mcu_per_channel_quant_t {P}_q = {{{P}_mult, {P}_shift}};")
        return f"&{P}_q"

    def bias(self, op: Op, p: dict) -> str:
        if p.get("bias") is None:
            return "0"
        return self.const(op.inputs[2], p["bias"], "int32_t")

    def struct(self, P: str, ctype: str, p: dict, fields) -> str:
        vals = ", ".join(str(int(p[f])) for f in fields)
        self.decls.append(f"static const {ctype} {P}_p = {{{vals}}};")
        return f"&{P}_p"

    def requant_table(self, P: str, p: dict) -> str:
        """The DSP kernels' per-channel mcu_requant_t table (flash), as {P}_rq."""
        rq = requant_table(p)
        rows_c = ", ".join(f"{{{r[0]}, {r[1]}, {int(r[2]) & 0xffffffff}u, {r[3]}}}"
                           for r in rq.tolist())
        self.decls.append(f"static const mcu_requant_t {P}_rq[{len(rq)}] = {{{rows_c}}};")
        self.table_bytes += 16 * len(rq)
        return f"{P}_rq"

    def row_delayed(self, op: Op) -> bool:
        return op.name in self.plan.rows or op.name in self.plan.stream_of

    def rows(self, op, p, fn, ctype, pp, q, idm, wb, odm, scr) -> list[str]:
        if op.name in self.plan.stream_of:     # streamed: the segment loop calls it
            self.stream_calls[op.name] = (fn, ctype, pp, q, idm, wb, odm, scr)
            return []
        return self._rows(op, p, fn, ctype, pp, q, idm, wb, odm, scr)

    def layer(self, k: int, op: Op) -> str:
        d = ops.get(op.type)
        if d is None or d.emit is None:  # pragma: no cover - check_graph refuses it first
            raise IRError(f"layer '{op.name}': no runtime kernel for op {op.type}")
        if op.name in self.plan.stream_of:
            return streaming.record(self, k, op, kernel_params(self.g, op))
        body = d.emit(self, k, op, kernel_params(self.g, op))
        fn_body = "\n    ".join(body) if body else "/* in place: nothing to do */"
        return (f"/* layer {k}: {op.type} {short_name(op)} */\n"
                f"static void {self.lp}L{k}_run(void) {{\n    {fn_body}\n}}\n")

    def _rows(self, op, p, fn, ctype, pp, q, idm, wb, odm, scr):
        """Row-delayed in place: one block of output rows per kernel call into a ring
        slot, flushed to the shared buffer once the input rows it overlaps are dead
        (the loop is the runtime's mcu_rows_run; here only the schedule and a call of
        the kernel for one block)."""
        s = self.plan.rows[op.name]
        P = f"{self.lp}L{self.g.ops.index(op)}"
        ring_off, _ = self.plan.ring(op.name)
        base = self.plan.offsets[op.inputs[0]]
        assert base == self.plan.offsets[op.outputs[0]]
        self.decls.append(f"static const uint16_t {P}_flush[] = {{{_arr(s.flush_after)}}};")
        self.decls.append(
            f"static const mcu_rows_t {P}_rows = {{{P}_flush, {s.out_h}, "
            f"{s.rows_total or s.out_h}, {s.block}, {s.stride_h}, {s.pad_h}, {s.in_row}, "
            f"{s.out_row}, {s.depth}}};")
        self.decls.append(
            f"static void {P}_row(int32_t pad_h, const mcu_dims_t *id, const int8_t *in, "
            f"const mcu_dims_t *od, int8_t *out)\n{{\n    {ctype} prm = *{pp};\n"
            f"    prm.pad_h = pad_h;\n    {fn}(&prm, {q}id, in, {wb}od, out{scr});\n}}")
        return [f"mcu_rows_run(&{P}_rows, {idm}, {odm}, {self.p}arena + {base}, "
                f"{self.p}arena + {ring_off}, {P}_row);"]


def _desc_blob(graph: Graph, hash_bytes: bytes, arena: int) -> bytes:
    """MODEL_INFO payload (docs/protocol.md); byte 1 (count unit) is set on the device."""
    io = [graph.t(n) for n in graph.inputs + graph.outputs]
    wide = any(t.dtype == "int16" for t in io)
    # version 1: every I/O tensor int8 (dtype 1); version 2 adds dtype 2 = int16 (16x8
    # models), so a host that only knows version 1 refuses the descriptor instead of
    # reading int16 tensors as int8
    b = struct.pack("<BBHIBBBB", DESC_VERSION_INT16 if wide else DESC_VERSION, 0,
                    len(graph.ops), arena, len(graph.inputs), len(graph.outputs),
                    len(hash_bytes), 0) + hash_bytes
    for t in io:
        s = float(t.quant.scale[0]) if t.quant is not None else 0.0
        z = int(t.quant.zero_point[0]) if t.quant is not None else 0
        b += struct.pack("<BB", DESC_DTYPES.get(t.dtype, 1), len(t.shape)) + struct.pack(f"<{len(t.shape)}I", *t.shape)
        b += struct.pack("<fi", s, z)
    return b


# ---- patchable weights (issue #6): read through the patch weight area -------------------
def _patchable_weights(graph: Graph, em: "_Emitter", wh: list, wc: list, P: str):
    """Each constant the kernels read becomes a pointer into the active weight slot;
    its bytes must be exactly the store tensor's (no array derived from weight values
    may be baked in: a patch could not update it)."""
    from toolchain.codegen.weight_area import area_layout, weight_store
    from toolchain.ir.model_hash import store_order
    st = weight_store(graph)
    lay = area_layout(st)
    index = {n: i for i, n in enumerate(store_order(graph))}
    wh.append('#include "patch_dev.h"  /* mcu_wstore(): the active weight slot */')
    wc.append("/* patchable model: weights and biases live in the weight area "
              "(mcu_patch_cfg.c), store order of toolchain/patch/store.py */")
    wbytes = 0
    for tname, (sym, ctype, data) in em.consts.items():
        i = index.get(tname)
        if i is None or st.tensors[i].tobytes() != np.ascontiguousarray(data).astype(
                st.tensors[i].data.dtype).tobytes() or data.dtype.itemsize != st.tensors[i].elem_size:
            raise IRError(f"patchable build: constant '{tname}' is not read verbatim from the "
                          "weight store (a derived array cannot be patched)")
        wh.append(f"#define {sym} ((const {ctype} *)(mcu_wstore() + {lay.offsets[i]}u))"
                  f"  /* store tensor {i} */")
        wbytes += data.nbytes
    return wh, wc, wbytes


def _dsp_guard(kernels: str) -> str:
    if kernels != "dsp":
        return ""
    return ("#if !MCU_HAVE_DSP\n#error \"generated for the DSP kernels (--kernels dsp): "
            "build with a DSP core or MCU_EMULATE_DSP\"\n#endif\n")


def _hash_fn(P: str, patchable: bool) -> str:
    if not patchable:
        return f"const uint8_t *{P}model_hash(void) {{ return {P}hash; }}"
    return (f"const uint8_t *{P}model_hash(void) {{ (void){P}hash; return mcu_wstore_hash(); }}"
            "  /* store hash of the active slot */")


def _desc_fn(P: str, patchable: bool, hlen: int) -> str:
    if not patchable:
        return f"const uint8_t *{P}model_desc(uint32_t *len) {{ *len = sizeof {P}desc; return {P}desc; }}"
    return (f"const uint8_t *{P}model_desc(uint32_t *len) {{\n"
            f"    const uint8_t *h = mcu_wstore_hash();\n"
            f"    uint32_t i;\n"
            f"    for (i = 0; h && i < {hlen}u; i++) {P}desc[12u + i] = h[i];\n"
            f"    *len = sizeof {P}desc;\n    return {P}desc;\n}}")


def generate(graph: Graph, out_dir, *, kernels: str = "portable", prefix: str = "",
             rows: bool = True, force_rows: bool = False, reorder: bool = True,
             name: str | None = None, alignment: int = 4,
             patchable: bool = False, row_slack: int | None = None,
             levels: list | None = None, stream: bool = True) -> GenResult:
    """Write model.c, model_weights.c/.h for `graph` into out_dir (see module doc).

    kernels: 'portable' or 'dsp' (sizes the DSP kernels' scratch). prefix: prepended
    to every exported symbol (several models in one test library); the firmware
    build uses "" so the symbols implement app/model_iface.h.

    patchable: weights and biases are not emitted as const arrays; the kernels read
    them from the active slot of the patch weight area (firmware_templates/patch:
    mcu_wstore() + the tensor's offset from toolchain.patch.device.area_layout, in the
    weight-store order of toolchain.patch.store), and model_hash() is the store hash
    of that slot (mcu_wstore_hash()). The firmware must be built with the patch
    sources and config (toolchain.patch.device.build_patch_model_firmware).

    levels: switchable subnet levels (issue #10) in ONE model: graphs of the same
    structure as `graph` (levels[0] is normally `graph`), e.g. the row-sparse level
    graphs of toolchain.subnets.graph, whose store tensors have equal bytes in every
    level. Constants with equal bytes are emitted once (the shared store); per level
    the layers' parameters (quantization tables, bias_eff, activation ranges, entry
    counts) and run functions ({P}S{l}L{k}); one memory plan fits every level; the
    active level is chosen at run time (model_set_level, app/model_iface.h)."""
    if kernels not in VARIANTS:
        raise IRError(f"unknown kernel variant '{kernels}'; use portable or dsp")
    check_graph(graph)
    if levels is not None:
        if patchable:
            raise IRError("subnet levels cannot be built patchable")
        _check_levels(graph, levels)
    model_hash = graph.model_hash() if levels is None else levels_hash(levels)
    order, plan = plan_model(graph, kernels, rows=rows, force_rows=force_rows,
                             reorder=reorder, alignment=alignment, patchable=patchable,
                             row_slack=row_slack, levels=levels, stream=stream)
    # The plan's ops are graph.ops permuted; layer k = index in graph.ops.
    em = _Emitter(graph, plan, prefix, kernels, patchable)
    if levels is None:
        layers_c = [em.layer(k, op) for k, op in enumerate(graph.ops)]
        layers_c += streaming.emit_segments(em)
    else:
        layers_c = []
        for lv, lg in enumerate(levels):
            em.g, em.level, em.lp = lg, lv, f"{prefix}S{lv}"
            layers_c += [em.layer(k, op) for k, op in enumerate(lg.ops)]
        em.g, em.level, em.lp = graph, None, prefix
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    P = prefix
    hash_bytes = bytes.fromhex(model_hash)
    desc = _desc_blob(graph, hash_bytes, plan.arena_size)
    if levels is not None:
        descs = [_desc_blob(lg, hash_bytes, plan.arena_size) for lg in levels]
    mname = name or graph.name or "model"

    # ---- weights
    wh = [f"/* Generated by toolchain.codegen: constants of model '{mname}' ({model_hash[:16]}). */",
          f"#ifndef {P.upper()}MODEL_WEIGHTS_H", f"#define {P.upper()}MODEL_WEIGHTS_H",
          "#include <stdint.h>"]
    wc = [f"/* Generated by toolchain.codegen: constants of model '{mname}' (flash). */",
          "#include <stdint.h>", f'#include "{P}model_weights.h"', ""]
    wbytes = 0
    if patchable:
        wh, wc, wbytes = _patchable_weights(graph, em, wh, wc, P)
    for tname, (sym, ctype, data) in ({} if patchable else em.consts).items():
        wh.append(f"extern const {ctype} {sym}[{data.size}];")
        wc.append(f"/* {tname[:100].replace('*/', '*_/')} {list(data.shape)} */")
        wc.append(f"const {ctype} {sym}[{data.size}] __attribute__((aligned(8))) = {{{_arr(data)}}};")
        wbytes += data.nbytes
    for key, (sym, ctype, data) in em.derived.items():
        wh.append(f"extern const {ctype} {sym}[{data.size}];")
        wc.append(f"/* {key[:100].replace('*/', '*_/')}: repacked for the DSP kernels */")
        wc.append(f"const {ctype} {sym}[{data.size}] __attribute__((aligned(8))) = {{{_arr(data)}}};")
        wbytes += data.nbytes
    wh.append("#endif")
    (out_dir / f"{P}model_weights.h").write_text("\n".join(wh) + "\n")
    (out_dir / f"{P}model_weights.c").write_text("\n".join(wc) + "\n")

    # ---- model
    g = graph
    n_l = len(g.ops)
    # a streamed segment's intermediates exist only as rings: no layer output (size 0)
    out_off = [plan.offsets.get(op.outputs[0], 0) for op in g.ops]
    out_sz = [g.t(op.outputs[0]).nbytes if op.outputs[0] in plan.offsets else 0
              for op in g.ops]
    names = ",\n    ".join(_cstr(f"{op.type} {short_name(op)}") for op in g.ops)
    in_offs = [plan.offsets[n] for n in g.inputs]
    in_szs = [g.t(n).nbytes for n in g.inputs]
    o_offs = [plan.offsets[n] for n in g.outputs]
    o_szs = [g.t(n).nbytes for n in g.outputs]
    checks = "\n    ".join(em.checks) or "/* no kernel scratch */"
    src = f"""/* Generated by toolchain.codegen: model '{mname}', {n_l} layers, kernels: {kernels}.
 * model hash {model_hash}
 * arena {plan.arena_size} B (sum of tensors without sharing: {plan.naive_size} B);
 * row-delayed in place: {', '.join(str(g.ops.index(o)) for o in g.ops if o.name in plan.rows) or 'none'};
 * streamed segments: {'; '.join(' '.join(str(g.ops.index(o)) for o in g.ops if plan.stream_of.get(o.name) == sn) for sn in plan.segments) or 'none'};
 * execution order: {' '.join(map(str, order))}
 * Do not edit: regenerate with `mcu build`. */
#include <stdint.h>
#include <stddef.h>
#include "mcu_kernels.h"
#include "board.h"
#include "{P}model_weights.h"
{_dsp_guard(kernels)}
#define MCU_ST_OK_ 0u
#define MCU_ST_BAD_ARG_ 3u
#define MCU_ST_INTERNAL_ 9u

#define {P}ARENA_SIZE {plan.arena_size}u
#define {P}NUM_LAYERS {n_l}u
static int8_t {P}arena[{max(plan.arena_size, 4)}] __attribute__((aligned(16)));

/* row copies of streamed segments: 16 bytes per step when word aligned */
static inline void mcu_copy8(int8_t *dst, const int8_t *src, int32_t n) {{
    if (((uint32_t)(uintptr_t)dst | (uint32_t)(uintptr_t)src | (uint32_t)n) % 4u == 0u) {{
        for (; n >= 16; n -= 16, dst += 16, src += 16) {{
            uint32_t a, b, c, d;
            __builtin_memcpy(&a, src, 4);
            __builtin_memcpy(&b, src + 4, 4);
            __builtin_memcpy(&c, src + 8, 4);
            __builtin_memcpy(&d, src + 12, 4);
            __builtin_memcpy(dst, &a, 4);
            __builtin_memcpy(dst + 4, &b, 4);
            __builtin_memcpy(dst + 8, &c, 4);
            __builtin_memcpy(dst + 12, &d, 4);
        }}
    }}
    while (n-- > 0) *dst++ = *src++;
}}
"""
    src += "\n".join(em.decls) + "\n\n" + "\n".join(layers_c)
    if levels is None:
        exec_c = (f"static const {P}layer_fn {P}exec_fn[{n_l}] = "
                  f"{{{', '.join(f'{P}L{k}_run' for k in order)}}};")
    else:
        exec_c = _levels_c(P, levels, order, descs)
    src += f"""
typedef void (*{P}layer_fn)(void);
{exec_c}
static const uint16_t {P}exec_layer[{n_l}] = {{{', '.join(map(str, order))}}};
static const uint32_t {P}layer_out_off[{n_l}] = {{{_arr(out_off)}}};
static const uint32_t {P}layer_out_size[{n_l}] = {{{_arr(out_sz)}}};
static const char *const {P}layer_names[{n_l}] = {{
    {names}
}};
static const uint32_t {P}in_off[] = {{{_arr(in_offs)}}}, {P}in_size[] = {{{_arr(in_szs)}}};
static const uint32_t {P}out_off[] = {{{_arr(o_offs)}}}, {P}out_size[] = {{{_arr(o_szs)}}};
static const uint8_t {P}hash[{len(hash_bytes)}] = {{{_arr(list(hash_bytes))}}};
{"" if levels is not None else f"static {'' if patchable else 'const '}uint8_t {P}desc[{len(desc)}] = {{{_arr(list(desc))}}};"}
static uint64_t {P}layer_count[{n_l}];
static uint64_t {P}total_count;
static uint8_t {P}init_state; /* 0 not checked, 1 ok, 2 bad */

/* ---- timing: instructions (QEMU -icount: ticks x MCU_INSTR_PER_TICK), cycles (DWT),
 * or the board's ticks (ns on the host board) */
#if defined(MCU_TIMER_DWT)
#define {P}DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define {P}DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define {P}DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define {P}COUNT_UNIT 2u
static uint64_t {P}now(void) {{ return {P}DWT_CYCCNT; }}
static uint64_t {P}delta(uint64_t a, uint64_t b) {{ return (uint32_t)((uint32_t)b - (uint32_t)a); }}
#else
#if defined(MCU_INSTR_PER_TICK) && MCU_INSTR_PER_TICK > 0
#define {P}COUNT_UNIT 1u
#define {P}SCALE ((uint64_t)MCU_INSTR_PER_TICK)
#elif defined(MCU_TICK_HZ) && MCU_TICK_HZ == 1000000000
#define {P}COUNT_UNIT 3u
#define {P}SCALE 1u
#else
#define {P}COUNT_UNIT 0u
#define {P}SCALE 1u
#endif
static uint64_t {P}now(void) {{ return board_ticks(); }}
static uint64_t {P}delta(uint64_t a, uint64_t b) {{ return (b - a) * {P}SCALE; }}
#endif

/* Checks the kernels' scratch needs against the plan (1 = ok). */
static int {P}check_scratch(void) {{
    {checks}
    return 1;
}}

uint8_t {P}model_init(void) {{
    if (!{P}init_state) {{
#if defined(MCU_TIMER_DWT)
        {P}DEMCR |= 1u << 24;
        {P}DWT_CYCCNT = 0;
        {P}DWT_CTRL |= 1u;
#endif
        {P}init_state = {P}check_scratch() ? 1u : 2u;
        if ({P}init_state != 1u) board_log("model: kernel scratch larger than planned");
    }}
    return {P}init_state == 1u ? MCU_ST_OK_ : MCU_ST_INTERNAL_;
}}

/* Run the layers in execution order until layer `layer` has run (-1: all). */
uint8_t {P}model_invoke_until(int32_t layer) {{
    uint64_t t_start, t0, t1;
    uint32_t s;
    uint8_t st = {P}model_init();
    if (st != MCU_ST_OK_) return st;
    if (layer >= (int32_t){P}NUM_LAYERS) return MCU_ST_BAD_ARG_;
    t_start = t0 = {P}now();
    for (s = 0; s < {P}NUM_LAYERS; s++) {{
        {P}exec_fn[s]();
        t1 = {P}now();
        {P}layer_count[{P}exec_layer[s]] = {P}delta(t0, t1);
        t0 = t1;
        if ((int32_t){P}exec_layer[s] == layer) break;
    }}
    {P}total_count = {P}delta(t_start, t0);
    return MCU_ST_OK_;
}}

uint8_t {P}model_invoke(void) {{ return {P}model_invoke_until(-1); }}
{_hash_fn(P, patchable)}
uint32_t {P}model_hash_len(void) {{ return {len(hash_bytes)}u; }}
const char *{P}model_name(void) {{ return {_cstr(mname[:60])}; }}
uint32_t {P}model_num_inputs(void) {{ return {len(g.inputs)}u; }}
uint32_t {P}model_num_outputs(void) {{ return {len(g.outputs)}u; }}
uint8_t *{P}model_input_n(uint32_t i) {{ return i < {len(g.inputs)}u ? (uint8_t *)({P}arena + {P}in_off[i]) : 0; }}
uint32_t {P}model_input_size_n(uint32_t i) {{ return i < {len(g.inputs)}u ? {P}in_size[i] : 0u; }}
const uint8_t *{P}model_output_n(uint32_t i) {{ return i < {len(g.outputs)}u ? (const uint8_t *)({P}arena + {P}out_off[i]) : 0; }}
uint32_t {P}model_output_size_n(uint32_t i) {{ return i < {len(g.outputs)}u ? {P}out_size[i] : 0u; }}
uint8_t *{P}model_input(void) {{ return {P}model_input_n(0); }}
uint32_t {P}model_input_size(void) {{ return {P}in_size[0]; }}
const uint8_t *{P}model_output(void) {{ return {P}model_output_n(0); }}
uint32_t {P}model_output_size(void) {{ return {P}out_size[0]; }}
uint32_t {P}model_arena_size(void) {{ return {P}ARENA_SIZE; }}
uint32_t {P}model_num_layers(void) {{ return {P}NUM_LAYERS; }}
const char *{P}model_layer_name(uint32_t k) {{ return k < {P}NUM_LAYERS ? {P}layer_names[k] : ""; }}
uint64_t {P}model_layer_count(uint32_t k) {{ return k < {P}NUM_LAYERS ? {P}layer_count[k] : 0u; }}
uint64_t {P}model_last_count(void) {{ return {P}total_count; }}
uint8_t {P}model_count_unit(void) {{ return {P}COUNT_UNIT; }}
const uint8_t *{P}model_layer_output(uint32_t k, uint32_t *size) {{
    if (k >= {P}NUM_LAYERS) {{ *size = 0; return 0; }}
    *size = {P}layer_out_size[k];
    return (const uint8_t *)({P}arena + {P}layer_out_off[k]);
}}
{_desc_fn(P, patchable, len(hash_bytes)) if levels is None else _levels_desc_fn(P, len(desc))}
"""
    (out_dir / f"{P}model.c").write_text(src)
    layers = []
    for k, op in enumerate(g.ops):
        layers.append(dict(index=k, name=op.name, type=op.type, exec_pos=order.index(k),
                           output=op.outputs[0], out_bytes=out_sz[k],
                           offset=out_off[k], row_inplace=op.name in plan.rows,
                           streamed=op.name in plan.stream_of,
                           scratch=plan.scratch.get(op.name, (0, 0))[1]))
    extra = {} if levels is None else dict(levels=[_level_sparsity(lg) for lg in levels])
    (out_dir / f"{P}plan.json").write_text(json.dumps(
        dict(plan.to_json(len(g.ops)), exec_order=order, kernels=kernels,
             model_hash=model_hash, layers=layers, **extra), indent=1, default=str) + "\n")
    files = [out_dir / f"{P}model.c", out_dir / f"{P}model_weights.c"]
    return GenResult(out_dir, files, graph, plan, order, kernels, prefix, model_hash, wbytes,
                     layers, em.table_bytes, 0 if levels is None else len(levels))


# ---- switchable subnet levels (issue #10) ------------------------------------------------
def levels_hash(levels: list) -> str:
    """Model hash of a firmware holding several subnet levels: sha256 over a tag and
    each level's model hash, in level order."""
    import hashlib
    h = hashlib.sha256(b"mcu-subnet-levels-v1")
    for lg in levels:
        h.update(bytes.fromhex(lg.model_hash()))
    return h.hexdigest()


def _level_sparsity(g: Graph) -> float:
    return float((g.meta or {}).get("subnet", {}).get("sparsity", 0.0))


def _check_levels(graph: Graph, levels: list) -> None:
    if not levels or len(levels) > 255:
        raise IRError(f"{len(levels or ())} subnet levels: need 1 to 255")
    for lv, lg in enumerate(levels):
        check_graph(lg)
        same = (len(lg.ops) == len(graph.ops) and lg.inputs == graph.inputs
                and lg.outputs == graph.outputs
                and all(a.type == b.type and a.name == b.name and a.outputs == b.outputs
                        for a, b in zip(lg.ops, graph.ops))
                and all(lg.t(n).shape == graph.t(n).shape for op in graph.ops
                        for n in op.outputs))
        if not same:
            raise IRError(f"subnet level {lv} does not have the structure of level 0 "
                          "(same ops, names and tensor shapes needed)")


def _levels_c(P: str, levels: list, order: list, descs: list) -> str:
    """Per-level execution tables and descriptors, and the level switch: selecting a
    level is two pointer stores (no flash write, nothing recomputed)."""
    L, n_l = len(levels), len(order)
    rows = ",\n    ".join("{" + ", ".join(f"{P}S{lv}L{k}_run" for k in order) + "}"
                          for lv in range(L))
    dl = len(descs[0])
    drows = ",\n    ".join("{" + _arr(list(d)) + "}" for d in descs)
    sp = [min(9999, int(round(_level_sparsity(lg) * 10000))) for lg in levels]
    return f"""#define {P}NUM_LEVELS {L}u
static const {P}layer_fn {P}exec_lv[{L}][{n_l}] = {{
    {rows}
}};
static const uint8_t {P}desc_lv[{L}][{dl}] = {{
    {drows}
}};
static const uint16_t {P}level_sparsity[{L}] = {{{_arr(sp)}}};  /* 1/10000 */
static const {P}layer_fn *{P}exec_fn = {P}exec_lv[0];
static const uint8_t *{P}desc = {P}desc_lv[0];
static uint32_t {P}active_level;
uint32_t {P}model_num_levels(void) {{ return {P}NUM_LEVELS; }}
uint32_t {P}model_level(void) {{ return {P}active_level; }}
uint16_t {P}model_level_sparsity(uint32_t k) {{ return k < {P}NUM_LEVELS ? {P}level_sparsity[k] : 0u; }}
uint8_t {P}model_set_level(uint32_t k) {{
    if (k >= {P}NUM_LEVELS) return MCU_ST_BAD_ARG_;
    {P}exec_fn = {P}exec_lv[k];
    {P}desc = {P}desc_lv[k];
    {P}active_level = k;
    return MCU_ST_OK_;
}}"""


def _levels_desc_fn(P: str, n: int) -> str:
    return (f"const uint8_t *{P}model_desc(uint32_t *len) {{ *len = {n}u; return {P}desc; }}")

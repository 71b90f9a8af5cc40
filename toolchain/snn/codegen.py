"""Fixed-point SNN graph -> model.c implementing firmware_templates/app/model_iface.h, so
the existing firmware builds (toolchain.build), devices and link run it.

    gen = generate_snn(q, "build/snn/model", timesteps=T)
    fw = build_firmware("host", "build/snn", extra_sources=gen.files,
                        include_dirs=[gen.out_dir], with_runtime=True)
    out, count = ModelClient(dev.link()).infer(gen.pack_input(x_sample))
    counts, layer_spikes, events = gen.unpack_output(out)

One invoke = one sample = T steps; all neuron state is zeroed first. Device input
(bytes): constant encoding: int8 x_q [n_in] (IR order); rate: uint32 LE seed (the
sample's initial PRNG state) + uint8 levels [n_in]; events: int8 0/1 [T][n_in].
Device output: int32 LE [n_out] spike counts (LI/CUBA_LI readout: final membrane, int32),
then uint32 LE spikes per spiking layer, then uint32 LE input events per synapse layer
(0 for a layer on analog input), both in graph order. Buffers are static (no planner
yet); the synapse on a constant analog input is computed once per sample (dense)."""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError

from .encoding import rate_levels, sample_seed
from .fixed_point import quantize_input
from .float_sim import is_spiking

DESC_VERSION = 1


def _arr(vals, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(vals).ravel()]
    if not vals:
        return "0"
    return ",\n    ".join(", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line))


def _cname(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)


class SnnEmitter:
    """What an op's emit_snn(em, k, op) (toolchain/ir/ops: synapses.py, neurons.py) adds
    to: `consts` (flash), `bufs` (static RAM), `body_once` (statements run once per
    sample, before the steps), `body_step` ((layer k, statement) run every step, timed
    per layer), `cached` (layers computed once), `buf_of` (tensor -> C buffer symbol),
    `synapses` / `spiking` (layer names whose input events / spikes are counted, in
    order: their counter is P + "events[i]" / P + "spikes[i]"), `layer_out` ((buffer,
    bytes) per layer), `state_syms` ((symbol, elements, C type): zeroed per sample),
    `weight_bytes`. `P` prefixes every symbol; layer k's are P + "L<k>_...";
    `analog(tensor)` says whether it is the constant analog model input."""

    def __init__(self, g: Graph, prefix: str, encoding: str):
        self.g, self.P, self.encoding = g, prefix, encoding
        self.consts: list[str] = []
        self.bufs: list[str] = []
        self.body_once: list[str] = []
        self.body_step: list[tuple[int, str]] = []
        self.cached: set[int] = set()
        self.buf_of: dict[str, str] = {}
        self.state_syms: list[tuple[str, int, str]] = []
        self.spiking: list[str] = []
        self.synapses: list[str] = []
        self.layer_out: list[tuple[str, int]] = []
        self.weight_bytes = 0

    @staticmethod
    def arr(vals, per_line: int = 24) -> str:
        return _arr(vals, per_line)

    def analog(self, tensor: str) -> bool:
        return tensor == self.g.inputs[0] and self.encoding == "constant"


@dataclass
class SnnGenResult:
    out_dir: Path
    files: list
    graph: Graph
    timesteps: int
    encoding: str
    prefix: str
    model_hash: str
    input_size: int
    output_size: int
    n_out: int
    spiking_layers: list = field(default_factory=list)
    synapse_layers: list = field(default_factory=list)
    weight_bytes: int = 0
    ram_bytes: int = 0

    def pack_input(self, x_ir: np.ndarray, index: int = 0, seed: int | None = None) -> bytes:
        """One sample in IR layout (no batch) -> device input bytes. index: the sample's
        global index (rate-coding seed)."""
        fx = self.graph.meta["snn"]["fixed"]
        x = np.asarray(x_ir)
        if self.encoding == "constant":
            return quantize_input(x, fx["input_scale"]).astype(np.int8).tobytes()
        if self.encoding == "rate":
            s = sample_seed(fx["seed"] if seed is None else seed, index)
            q = x if x.dtype == np.uint8 else rate_levels(x)
            return struct.pack("<I", int(s)) + q.astype(np.uint8).tobytes()
        return (np.asarray(x[:self.timesteps]) != 0).astype(np.int8).tobytes()

    def unpack_output(self, b: bytes):
        n, ns, ny = self.n_out, len(self.spiking_layers), len(self.synapse_layers)
        v = struct.unpack(f"<{n}i{ns}I{ny}I", b)
        return (np.array(v[:n], np.int64), dict(zip(self.spiking_layers, v[n:n + ns])),
                dict(zip(self.synapse_layers, v[n + ns:])))


def snn_model_hash(q: Graph, timesteps: int) -> str:
    """The model hash the device reports: the fixed-point graph's, T and the encoding."""
    enc = q.meta["snn"]["fixed"]["encoding"]
    return hashlib.sha256(bytes.fromhex(q.model_hash()) +
                          f"snn;T={timesteps};enc={enc}".encode()).hexdigest()


def generate_snn(q: Graph, out_dir, timesteps: int, *, prefix: str = "",
                 name: str | None = None) -> SnnGenResult:
    fx = q.meta.get("snn", {}).get("fixed")
    if fx is None:
        raise IRError("generate_snn needs a fixed-point graph (toolchain.snn.fixed_point."
                      "quantize)")
    if timesteps < 1:
        raise IRError(f"timesteps must be >= 1, got {timesteps}")
    if len(q.inputs) != 1 or len(q.outputs) != 1:
        raise IRError("SNN code generation supports one input and one output")
    enc = fx["encoding"]
    P = prefix
    g = q
    prod = g.producers()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inp = g.inputs[0]
    n_in = g.t(inp).size
    em = SnnEmitter(g, P, enc)
    consts, bufs, body_once, body_step = em.consts, em.bufs, em.body_once, em.body_step
    buf_of, state_syms, spiking, synapses = em.buf_of, em.state_syms, em.spiking, em.synapses
    cached, layer_out = em.cached, em.layer_out
    # input
    if enc == "constant":
        in_size = n_in
        bufs.append(f"static int8_t {P}in_buf[{n_in}];")
        buf_of[inp] = f"{P}in_buf"
        input_ptr = f"(uint8_t *){P}in_buf"
    elif enc == "rate":
        in_size = 4 + n_in
        bufs.append(f"static uint8_t {P}in_buf[{in_size}] __attribute__((aligned(4)));")
        bufs.append(f"static uint32_t {P}rate_thr[{n_in}];")
        bufs.append(f"static int8_t {P}in_spikes[{n_in}];")
        buf_of[inp] = f"{P}in_spikes"
        input_ptr = f"{P}in_buf"
    else:
        in_size = timesteps * n_in
        bufs.append(f"static int8_t {P}in_buf[{in_size}];")
        buf_of[inp] = f"{P}in_step"
        input_ptr = f"(uint8_t *){P}in_buf"
    for k, op in enumerate(g.ops):
        d = ops.get(op.type)
        if d is None or d.emit_snn is None:
            raise IRError(f"layer '{op.name}' ({op.type}): no SNN code generation for this op")
        d.emit_snn(em, k, op)
    weight_bytes = em.weight_bytes
    out = g.outputs[0]
    out_op = prod[out]
    n_out = g.t(out).size
    out_spiking = is_spiking(out_op.type)
    ns, ny = len(spiking), len(synapses)
    out_words = n_out + ns + ny
    out_size = 4 * out_words
    bufs.append(f"static int32_t {P}out_buf[{out_words}];")
    bufs.append(f"static uint32_t {P}spikes[{max(ns, 1)}];")
    bufs.append(f"static uint32_t {P}events[{max(ny, 1)}];")
    n_l = len(g.ops)
    bufs.append(f"static uint64_t {P}layer_count[{n_l}];")
    bufs.append(f"static uint64_t {P}total_count;")
    mname = name or g.name or "snn"
    h = bytes.fromhex(snn_model_hash(g, timesteps))
    # reset of state, counts
    reset = [f"    for (i = 0; i < {n}u; i++) {sym}[i] = 0;" for sym, n, _ in state_syms]
    reset += [f"    for (i = 0; i < {max(ns, 1)}u; i++) {P}spikes[i] = 0;",
              f"    for (i = 0; i < {max(ny, 1)}u; i++) {P}events[i] = 0;",
              f"    for (i = 0; i < {out_words}u; i++) {P}out_buf[i] = 0;",
              f"    for (i = 0; i < {n_l}u; i++) {P}layer_count[i] = 0;"]
    pre = []
    if enc == "rate":
        pre.append(f"    state = (uint32_t){P}in_buf[0] | ((uint32_t){P}in_buf[1] << 8) | "
                   f"((uint32_t){P}in_buf[2] << 16) | ((uint32_t){P}in_buf[3] << 24);")
        pre.append(f"    mcu_snn_rate_thresholds({n_in}, {P}in_buf + 4, {P}rate_thr);")
    step_in = ""
    if enc == "rate":
        step_in = f"        (void)mcu_snn_rate_encode({n_in}, {P}rate_thr, &state, {P}in_spikes);"
    elif enc == "events":
        step_in = f"        {P}in_step = {P}in_buf + t * {n_in}u;"
        bufs.append(f"static const int8_t *{P}in_step;")
    once = "\n".join(f"    {s}" for s in body_once)
    steps = []
    for k, s in body_step:
        steps.append(f"        t0 = {P}now();\n        {s}\n"
                     f"        {P}layer_count[{k}] += {P}delta(t0, {P}now());")
    if out_spiking:
        accum = (f"        for (i = 0; i < {n_out}u; i++) {P}out_buf[i] += "
                 f"{buf_of[out]}[i];")
    else:
        accum = ""
    final = [] if out_spiking else [
        f"    for (i = 0; i < {n_out}u; i++) {P}out_buf[i] = (int32_t){buf_of[out]}[i];"]
    final += [f"    for (i = 0; i < {ns}u; i++) {P}out_buf[{n_out}u + i] = (int32_t){P}spikes[i];",
              f"    for (i = 0; i < {ny}u; i++) {P}out_buf[{n_out + ns}u + i] = "
              f"(int32_t){P}events[i];"]
    desc = struct.pack("<BBHIBBBB", DESC_VERSION, 0, n_l, 0, 1, 1, len(h), 0) + h
    desc += struct.pack("<BBI", 1, 1, in_size) + struct.pack("<fi", 0.0, 0)
    desc += struct.pack("<BBI", 1, 1, out_size) + struct.pack("<fi", 0.0, 0)
    names = ",\n    ".join('"' + f"{op.type} {op.name}"[:60].replace('"', "'") + '"'
                           for op in g.ops)
    lo_ptr = ", ".join(f"(const uint8_t *){s}" for s, _ in layer_out)
    lo_size = ", ".join(str(n) for _, n in layer_out)
    src = f"""/* Generated by toolchain.snn.codegen: spiking model '{mname}', {n_l} layers,
 * {timesteps} steps per invoke, {enc} input; fixed point of toolchain/snn/fixed_point.py.
 * Input {in_size} B, output {out_size} B: int32 [{n_out}] {'spike counts' if out_spiking else 'membrane'},
 * uint32 [{ns}] spikes per spiking layer, uint32 [{ny}] input events per synapse layer.
 * Do not edit. */
#include <stdint.h>
#include <stddef.h>
#include "mcu_kernels.h"
#include "board.h"

#define MCU_ST_OK_ 0u
#define MCU_ST_BAD_ARG_ 3u

{chr(10).join(consts)}

{chr(10).join(bufs)}
static const uint8_t {P}hash[{len(h)}] = {{{_arr(list(h))}}};
static const uint8_t {P}desc[{len(desc)}] = {{{_arr(list(desc))}}};
static const char *const {P}layer_names[{n_l}] = {{
    {names}
}};
static const uint8_t *const {P}layer_ptr[{n_l}] = {{{lo_ptr}}};
static const uint32_t {P}layer_size[{n_l}] = {{{lo_size}}};

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

/* One sample: zero the state, run {timesteps} steps, write the outputs. */
uint8_t {P}model_invoke(void) {{
    uint32_t i, t;
    uint64_t t0, t_start = {P}now();
{"    uint32_t state;" if enc == "rate" else ""}
{chr(10).join(reset)}
{chr(10).join(pre)}
    t0 = {P}now();
{once}
{f"    {P}layer_count[{min(cached)}] += {P}delta(t0, {P}now());" if cached else ""}
    for (t = 0; t < {timesteps}u; t++) {{
{step_in}
{chr(10).join(steps)}
{accum}
    }}
    (void)t;
{chr(10).join(final)}
    {P}total_count = {P}delta(t_start, {P}now());
    return MCU_ST_OK_;
}}

/* Every layer runs in every step, so a partial run is a whole sample. */
uint8_t {P}model_invoke_until(int32_t k) {{
    if (k >= {n_l}) return MCU_ST_BAD_ARG_;
    return {P}model_invoke();
}}
const uint8_t *{P}model_hash(void) {{ return {P}hash; }}
uint32_t {P}model_hash_len(void) {{ return {len(h)}u; }}
const char *{P}model_name(void) {{ return "{_cname(mname)[:60]}"; }}
uint32_t {P}model_input_size(void) {{ return {in_size}u; }}
uint32_t {P}model_output_size(void) {{ return {out_size}u; }}
uint8_t *{P}model_input(void) {{ return {input_ptr}; }}
const uint8_t *{P}model_output(void) {{ return (const uint8_t *){P}out_buf; }}
uint32_t {P}model_num_layers(void) {{ return {n_l}u; }}
const char *{P}model_layer_name(uint32_t k) {{ return k < {n_l}u ? {P}layer_names[k] : ""; }}
uint64_t {P}model_layer_count(uint32_t k) {{ return k < {n_l}u ? {P}layer_count[k] : 0u; }}
uint64_t {P}model_last_count(void) {{ return {P}total_count; }}
uint8_t {P}model_count_unit(void) {{ return {P}COUNT_UNIT; }}
const uint8_t *{P}model_layer_output(uint32_t k, uint32_t *size) {{
    if (k >= {n_l}u) {{ *size = 0; return 0; }}
    *size = {P}layer_size[k];
    return {P}layer_ptr[k];
}}
const uint8_t *{P}model_desc(uint32_t *len) {{ *len = sizeof {P}desc; return {P}desc; }}
uint32_t {P}model_arena_size(void) {{ return 0u; }}
"""
    path = out_dir / f"{P}model.c"
    path.write_text(src)
    ram = sum(n * (4 if tt == "int32_t" else 2) for _, n, tt in state_syms)
    return SnnGenResult(out_dir, [path], g, timesteps, enc, P, h.hex(), in_size, out_size, n_out,
                        spiking, synapses, weight_bytes, ram)

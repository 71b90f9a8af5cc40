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

from converters.nir_frontend import NEURON_ATTRS, SPIKING
from toolchain.ir.graph import Graph, IRError

from .encoding import rate_levels, sample_seed
from .fixed_point import SYNAPSES, quantize_input

DESC_VERSION = 1


def _arr(vals, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(vals).ravel()]
    if not vals:
        return "0"
    return ",\n    ".join(", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line))


def _cname(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)


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
    consts, bufs, body_once, body_step, decl = [], [], [], [], []
    weight_bytes = 0
    buf_of: dict[str, str] = {}      # tensor -> C buffer symbol (int8 activations)
    state_syms: list[tuple[str, int, str]] = []
    spiking, synapses = [], []
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
    cached = set()
    layer_out: list[tuple[str, int]] = []
    for k, op in enumerate(g.ops):
        c = _cname(f"L{k}")
        t = op.type
        x = op.inputs[0]
        o = op.outputs[0]
        oshape = g.t(o).shape
        ev = f"{P}events[{len(synapses)}]" if t in SYNAPSES else ""
        if t == "FULLY_CONNECTED":
            w = np.asarray(g.t(op.inputs[1]).data)
            wt = np.ascontiguousarray(w.T).astype(np.int8)
            consts.append(f"static const int8_t {P}{c}_w[{wt.size}] __attribute__((aligned(4))) "
                          f"= {{{_arr(wt)}}};")
            weight_bytes += wt.size
            bsym = "0"
            if len(op.inputs) > 2 and op.inputs[2]:
                b = np.asarray(g.t(op.inputs[2]).data)
                consts.append(f"static const int32_t {P}{c}_b[{b.size}] = {{{_arr(b)}}};")
                bsym = f"{P}{c}_b"
                weight_bytes += 4 * b.size
            bufs.append(f"static int32_t {P}{c}_acc[{w.shape[0]}];")
            call = (f"mcu_snn_fc_{{}}_s8({w.shape[1]}, {w.shape[0]}, {buf_of[x]}, {P}{c}_w, "
                    f"{bsym}, {P}{c}_acc)")
            if x == inp and enc == "constant":
                body_once.append(call.format("dense") + ";")
                cached.add(k)
            else:
                body_step.append((k, f"{ev} += (uint32_t){call.format('events')};"))
            buf_of[o] = f"{P}{c}_acc"
            synapses.append(op.name)
            layer_out.append((f"{P}{c}_acc", 4 * w.shape[0]))
        elif t == "SYN_CONV_2D":
            w = np.asarray(g.t(op.inputs[1]).data)
            oc, kh, kw, ipg = w.shape
            gr = int(op.attrs.get("groups", 1))
            wg = np.ascontiguousarray(w.reshape(gr, oc // gr, kh, kw, ipg)
                                      .transpose(0, 2, 3, 4, 1)).astype(np.int8)
            consts.append(f"static const int8_t {P}{c}_w[{wg.size}] __attribute__((aligned(4))) "
                          f"= {{{_arr(wg)}}};")
            weight_bytes += wg.size
            bsym = "0"
            if len(op.inputs) > 2 and op.inputs[2]:
                b = np.asarray(g.t(op.inputs[2]).data)
                consts.append(f"static const int32_t {P}{c}_b[{b.size}] = {{{_arr(b)}}};")
                bsym = f"{P}{c}_b"
                weight_bytes += 4 * b.size
            a = op.attrs
            ishape = g.t(x).shape
            consts.append(
                f"static const mcu_snn_conv_params_t {P}{c}_p = {{{a.get('stride_h', 1)}, "
                f"{a.get('stride_w', 1)}, {a.get('pad_h', 0)}, {a.get('pad_w', 0)}, "
                f"{a.get('dilation_h', 1)}, {a.get('dilation_w', 1)}, {gr}}};")
            consts.append(f"static const mcu_dims_t {P}{c}_id = {{1, {ishape[1]}, {ishape[2]}, "
                          f"{ishape[3]}}}, {P}{c}_fd = {{{oc}, {kh}, {kw}, {ipg}}}, "
                          f"{P}{c}_od = {{1, {oshape[1]}, {oshape[2]}, {oshape[3]}}};")
            n_o = int(np.prod(oshape))
            bufs.append(f"static int32_t {P}{c}_acc[{n_o}];")
            call = (f"mcu_snn_conv_events_s8(&{P}{c}_p, &{P}{c}_id, {buf_of[x]}, &{P}{c}_fd, "
                    f"{P}{c}_w, {bsym}, &{P}{c}_od, {P}{c}_acc)")
            if x == inp and enc == "constant":
                body_once.append(f"(void){call};")
                cached.add(k)
            else:
                body_step.append((k, f"{ev} += (uint32_t){call};"))
            buf_of[o] = f"{P}{c}_acc"
            synapses.append(op.name)
            layer_out.append((f"{P}{c}_acc", 4 * n_o))
        elif t == "SUM_POOL_2D":
            a = op.attrs
            ishape = g.t(x).shape
            consts.append(
                f"static const mcu_pool_params_t {P}{c}_p = {{{a['stride_h']}, {a['stride_w']}, "
                f"{a['filter_h']}, {a['filter_w']}, {a.get('pad_h', 0)}, {a.get('pad_w', 0)}, "
                f"-128, 127}};")
            consts.append(f"static const mcu_dims_t {P}{c}_id = {{1, {ishape[1]}, {ishape[2]}, "
                          f"{ishape[3]}}}, {P}{c}_od = {{1, {oshape[1]}, {oshape[2]}, "
                          f"{oshape[3]}}};")
            n_o = int(np.prod(oshape))
            bufs.append(f"static int8_t {P}{c}_out[{n_o}];")
            body_step.append((k, f"mcu_snn_sumpool_s8(&{P}{c}_p, &{P}{c}_id, {buf_of[x]}, "
                                 f"&{P}{c}_od, {P}{c}_out);"))
            buf_of[o] = f"{P}{c}_out"
            layer_out.append((f"{P}{c}_out", n_o))
        elif t == "RESHAPE":
            buf_of[o] = buf_of[x]
            body_step.append((k, "/* reshape: same buffer */"))
            layer_out.append(layer_out[-1] if layer_out else (buf_of[x], g.t(x).size))
        elif t in NEURON_ATTRS:
            p = op.attrs
            bits = int(p["state_bits"])
            st_t = "int32_t" if bits == 32 else "int16_t"
            sfx = "s32" if bits == 32 else "s16"
            ch = oshape[-1]
            n_o = int(np.prod(oshape))

            def carr(key, default=0):
                v = np.broadcast_to(np.asarray(p.get(key, default), np.int64), (ch,))
                consts.append(f"static const int32_t {P}{c}_{key}[{ch}] = {{{_arr(v)}}};")
                return f"{P}{c}_{key}"
            syms = [carr("beta", 32768), carr("alpha"), carr("thr"), carr("vreset"), carr("leak")]
            consts.append(f"static const mcu_snn_neuron_t {P}{c}_n = {{{ch}, {p['frac_bits']}, "
                          f"{int(p.get('reset') == 'subtract')}, {', '.join(syms)}}};")
            sts = []
            for s in op.inputs[1:]:
                sym = f"{P}{c}_{'v' if s.endswith('.v') else 'i'}"
                bufs.append(f"static {st_t} {sym}[{n_o}];")
                state_syms.append((sym, n_o, st_t))
                sts.append(sym)
            acc = buf_of[x]
            if t in SPIKING:
                bufs.append(f"static int8_t {P}{c}_s[{n_o}];")
                fn = {"LIF": f"mcu_snn_lif_{sfx}", "IF": f"mcu_snn_lif_{sfx}",
                      "CUBA_LIF": f"mcu_snn_cuba_lif_{sfx}", "THRESHOLD": "mcu_snn_threshold"}[t]
                args = ", ".join([f"&{P}{c}_n", str(n_o), acc, *sts, f"{P}{c}_s"])
                body_step.append((k, f"{P}spikes[{len(spiking)}] += (uint32_t){fn}({args});"))
                buf_of[o] = f"{P}{c}_s"
                spiking.append(op.name)
                layer_out.append((f"{P}{c}_s", n_o))
            else:
                fn = {"LI": f"mcu_snn_li_{sfx}", "CUBA_LI": f"mcu_snn_cuba_li_{sfx}"}[t]
                body_step.append((k, f"{fn}({', '.join([f'&{P}{c}_n', str(n_o), acc, *sts])});"))
                buf_of[o] = sts[-1]
                layer_out.append((sts[-1], n_o * (bits // 8)))
        else:
            raise IRError(f"layer '{op.name}' ({t}): no SNN code generation for this op")
    out = g.outputs[0]
    out_op = prod[out]
    n_out = g.t(out).size
    out_spiking = out_op.type in SPIKING
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
    h = hashlib.sha256(bytes.fromhex(g.model_hash()) +
                       f"snn;T={timesteps};enc={enc}".encode()).digest()
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

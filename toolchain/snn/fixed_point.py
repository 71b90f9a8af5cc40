"""Fixed-point spiking networks: quantization of a float SNN graph and a numpy
interpreter that is the bit-exact oracle of the C kernels (firmware_templates/runtime/snn.c).

    q = quantize(graph, calib_x, timesteps=T, encoding="constant", state_bits=32)
    res = run_fixed(q, x, T)            # res.counts: spike counts per output neuron

Format (docs/snn.md, "Fixed point"):
- activations between layers are int8: spikes 0/1 (scale 1), sum-pool counts (scale
  1/divisor of an average pool, folded into the next synapse), analog input x_q =
  clamp(rnd(x / s_x), -127, 127) with s_x = max|x| / 127 on the calibration data;
- synapse weights int8 symmetric per output channel, s_w[c] = max|W_eff[c, :]| / 127,
  W_eff = W * gain (* gain_syn for CUBA) / divisor of a preceding average pool; bias int32
  in accumulator units s_w[c]*s_in; the accumulator acc = bias + sum w*x is int32;
- neuron state (membrane v, synaptic current i) int16 or int32 in membrane units
  s_v[c] = s_w[c] * s_in / 2^F, F (frac_bits, per layer, -8..F_MAX) the largest that
  keeps 2x the calibrated max |v|, |i|, |gain*I|, |threshold|, |v_reset| in range;
  the input current is acc << F (F < 0: (acc + 2^(-F-1)) >> -F);
- beta, alpha: Q15 integers b = rnd(beta * 2^15) in [0, 32768]; mulq15(b, v) =
  (b*v + 2^14) >> 15 (round half up, arithmetic shift); thresholds, v_reset, leak:
  rnd(value / s_v[c]); rnd = round half away from zero; every state write saturates to
  the state type; arithmetic in between is exact (int64).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np

from converters.nir_frontend import SNNWarning
from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor
# the integer arithmetic and the per-op fixed steps live in the op registry
from toolchain.ir.ops.neurons import NEURON_ATTRS, mulq15, neuron_step, rnd, sat, shift_acc  # noqa: F401
from toolchain.ir.ops.synapses import conv_acc, fc_acc, sum_pool  # noqa: F401

from . import float_sim
from .encoding import encode, rate_levels
from .float_sim import SimResult, attr, is_spiking, role, to_ir_layout

Q15 = 1 << 15
HEADROOM = 2.0
F_MIN = -8
F_MAX = {16: 12, 32: 24}
SYNAPSES = tuple(n for n, d in ops.REGISTRY.items() if d.snn_role == "synapse")
POOLS = tuple(n for n, d in ops.REGISTRY.items() if d.snn_role == "pool")


def quantize_input(x, scale: float) -> np.ndarray:
    return np.clip(rnd(np.asarray(x, np.float64) / scale), -127, 127).astype(np.int64)


# --------------------------------------------------------------------------- quantize
def _per_channel(op: Op, key: str, shape: tuple) -> np.ndarray:
    """A neuron attribute (float or IR-shaped array) as a per-channel vector [C]."""
    v = np.asarray(attr(op, key), np.float64)
    c = shape[-1]
    full = np.broadcast_to(v, shape[1:]).reshape(-1, c)
    if not np.all(full == full[0]):
        raise IRError(f"layer '{op.name}' ({op.type}): {key} varies within a channel; the "
                      "fixed-point form has one value per channel")
    return np.array(full[0])


def quantize(graph: Graph, calib_x, timesteps: int, encoding: str = "constant",
             state_bits: int = 32, seed: int = 0, layout: str = "nir") -> Graph:
    """Float SNN graph + calibration inputs -> fixed-point graph (a new Graph).

    Raises IRError naming the layer and the reason for anything the fixed-point form
    cannot represent."""
    if state_bits not in (16, 32):
        raise IRError(f"state_bits must be 16 or 32, got {state_bits}")
    probe: dict = {}
    float_sim.simulate(graph, calib_x, timesteps, encoding, seed, layout, probe=probe)
    xin = to_ir_layout(graph, calib_x, steps=encoding == "events") if layout == "nir" \
        else np.asarray(calib_x)
    q = copy.deepcopy(graph)
    prod, cons = q.producers(), q.consumers()
    # activation kinds and scales of int8 tensors
    kind: dict[str, str] = {}
    scale: dict[str, float] = {}
    inp = q.inputs[0]
    if encoding == "constant":
        m = float(np.max(np.abs(xin))) if xin.size else 0.0
        scale[inp], kind[inp] = (m / 127.0 if m > 0 else 1.0), "analog"
    else:
        scale[inp], kind[inp] = 1.0, "spike"
    q.tensors[inp] = Tensor(inp, q.t(inp).shape, "int8", Quant.per_tensor(scale[inp], 0))
    for op in q.ops:
        t = op.type
        x = op.inputs[0]
        r = role(t)
        if r == "pool":
            if kind.get(x) != "spike":
                raise IRError(f"layer '{op.name}' ({t}): fixed point pools only spikes, its "
                              f"input '{x}' is {kind.get(x, 'not an int8 tensor')}")
            d = attr(op, "divisor") if t == "SUM_POOL_2D" else \
                attr(op, "filter_h") * attr(op, "filter_w")
            if attr(op, "filter_h") * attr(op, "filter_w") > 127:
                raise IRError(f"layer '{op.name}' ({t}): a {attr(op, 'filter_h')}x"
                              f"{attr(op, 'filter_w')} window can count more than 127 spikes "
                              "(int8)")
            if t == "AVERAGE_POOL_2D":
                op.type = "SUM_POOL_2D"
                op.attrs = dict(filter_h=attr(op, "filter_h"), filter_w=attr(op, "filter_w"),
                                stride_h=attr(op, "stride_h"), stride_w=attr(op, "stride_w"),
                                pad_h=0, pad_w=0, divisor=d)
            op.attrs["divisor"] = 1        # integer sums; 1/d goes into the next weights
            scale[op.outputs[0]], kind[op.outputs[0]] = scale[x] / d, "count"
        elif r == "view":
            scale[op.outputs[0]], kind[op.outputs[0]] = scale.get(x, 1.0), kind.get(x, "?")
        elif r == "synapse":
            if x not in kind:
                raise IRError(f"layer '{op.name}' ({t}): its input '{x}' is not spikes, "
                              "counts or the model input in fixed point")
            users = cons.get(op.outputs[0], [])
            if len(users) != 1 or role(users[0].type) != "neuron" or \
                    op.outputs[0] in q.outputs:
                raise IRError(f"layer '{op.name}' ({t}): fixed point needs exactly one "
                              "neuron layer reading each synapse")
            kind[op.outputs[0]] = "acc"
        elif r == "neuron":
            src = prod.get(x)
            if src is None or role(src.type) != "synapse":
                raise IRError(f"layer '{op.name}' ({t}): fixed point needs a synapse "
                              "(FULLY_CONNECTED or SYN_CONV_2D) right before each neuron layer")
            _quantize_pair(q, src, op, scale[src.inputs[0]], probe.get(op.name, {}), state_bits)
            o = op.outputs[0]
            if is_spiking(t):
                scale[o], kind[o] = 1.0, "spike"
                q.tensors[o] = Tensor(o, q.t(o).shape, "int8", Quant.per_tensor(1.0, 0))
            else:
                q.tensors[o] = Tensor(o, q.t(o).shape, f"int{state_bits}")
        else:
            d = ops.get(t)
            why = d.float_only if d is not None and d.float_only else "no fixed-point form"
            raise IRError(f"layer '{op.name}' ({t}): not supported in fixed point ({why})")
    q.meta = copy.deepcopy(graph.meta)
    q.meta.setdefault("snn", {})["fixed"] = dict(encoding=encoding, input_scale=scale[inp],
                                                 state_bits=state_bits, timesteps=timesteps,
                                                 seed=seed)
    return q


def _quantize_pair(q: Graph, syn: Op, neu: Op, s_in: float, pr: dict, bits: int) -> None:
    shape = q.t(neu.outputs[0]).shape
    c = shape[-1]
    kind = neu.type
    pc = lambda k: _per_channel(neu, k, shape)  # noqa: E731
    gain = pc("gain") if kind != "THRESHOLD" else np.ones(c)
    if kind in ("CUBA_LIF", "CUBA_LI"):
        gain = gain * pc("gain_syn")
    wt, bt = q.t(syn.inputs[1]), (q.t(syn.inputs[2]) if len(syn.inputs) > 2 and syn.inputs[2]
                                  else None)
    w = np.asarray(wt.data, np.float64) * gain.reshape(-1, *([1] * (wt.data.ndim - 1)))
    b = np.asarray(bt.data, np.float64) * gain if bt is not None else None
    absmax = np.abs(w.reshape(c, -1)).max(axis=1)
    if not np.any(absmax > 0):
        raise IRError(f"layer '{syn.name}' ({syn.type}): all weights are zero")
    absmax = np.where(absmax > 0, absmax, absmax[absmax > 0].max())
    s_w = absmax / 127.0
    wq = np.clip(rnd(w / s_w.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
    q.tensors[wt.name] = Tensor(wt.name, wt.shape, "int8", Quant(s_w, np.zeros(c, np.int64), 0),
                                data=wq.astype(np.int8))
    unit = s_w * s_in                                 # accumulator units per channel
    if bt is not None:
        bq = rnd(b / unit)
        if np.any(np.abs(bq) >= 2 ** 31):
            raise IRError(f"layer '{syn.name}' ({syn.type}): bias does not fit int32")
        q.tensors[bt.name] = Tensor(bt.name, bt.shape, "int32",
                                    Quant(unit, np.zeros(c, np.int64), 0), data=bq.astype(np.int32))
    fan_in = int(np.prod(wt.shape[1:]))
    if fan_in * 127 * 127 + (np.abs(rnd(b / unit)).max() if bt is not None else 0) >= 2 ** 31:
        raise IRError(f"layer '{syn.name}' ({syn.type}): {fan_in} inputs can overflow the "
                      "int32 accumulator")
    # range at F = 0 (accumulator units) -> frac_bits
    cand = [np.abs(gain) * pr.get("in", np.zeros(c))]
    thr = pc("v_threshold") if "v_threshold" in NEURON_ATTRS[kind] else np.zeros(c)
    vres = pc("v_reset") if "v_reset" in NEURON_ATTRS[kind] else np.zeros(c)
    leak = pc("leak") if "leak" in NEURON_ATTRS[kind] else np.zeros(c)
    cand += [pr.get("v", np.zeros(c)), np.abs(thr), np.abs(vres), np.abs(leak)]
    if "i" in pr:
        cand.append(np.abs(gain) * pr["i"])
    m0 = float(np.max(np.max(np.stack(cand), axis=0) / unit))
    limit = (1 << (bits - 1)) - 1
    f = F_MAX[bits] if m0 <= 0 else int(np.floor(np.log2(limit / (HEADROOM * m0))))
    f = min(f, F_MAX[bits])
    if kind == "THRESHOLD":
        f = min(f, 0) if m0 > 0 else 0
    if f < F_MIN:
        need = int(np.ceil(np.log2(HEADROOM * m0 / 2 ** F_MIN))) + 1
        raise IRError(f"layer '{neu.name}' ({kind}): the membrane range needs {need} bits, "
                      f"more than int{bits}; use 32-bit state")
    s_v = unit / 2.0 ** f
    p = dict(kind=kind, state_bits=bits, frac_bits=f, v_scale=s_v)
    if kind in NEURON_ATTRS and "beta" in NEURON_ATTRS[kind]:
        p["beta"] = _q15(neu, "beta", pc("beta"))
    elif kind != "THRESHOLD":
        p["beta"] = np.full(c, Q15, np.int64)           # IF: no leak
    if "alpha" in NEURON_ATTRS[kind]:
        p["alpha"] = _q15(neu, "alpha", pc("alpha"))
    if kind != "THRESHOLD":
        p["leak"] = _fit(neu, "leak", leak, s_v, bits)
    if "v_threshold" in NEURON_ATTRS[kind]:
        p["thr"] = _fit(neu, "v_threshold", thr, s_v, bits)
        bad = (p["thr"] == 0) & (thr != 0)
        if np.any(bad):
            raise IRError(f"layer '{neu.name}' ({kind}): v_threshold {thr[bad][0]:g} rounds "
                          f"to 0 membrane units (scale {s_v[bad][0]:.3g})")
    if "v_reset" in NEURON_ATTRS[kind]:
        p["vreset"] = _fit(neu, "v_reset", vres, s_v, bits)
        p["reset"] = attr(neu, "reset")
    neu.attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    syn.attrs["in_scale"] = float(s_in)


def _q15(op: Op, key: str, v: np.ndarray) -> np.ndarray:
    if np.any(v < 0) or np.any(v > 1):
        raise IRError(f"layer '{op.name}' ({op.type}): {key} = {v.min():g}..{v.max():g} is "
                      "outside [0, 1]; Q15 decay cannot represent it")
    b = rnd(v * Q15)
    if np.any((b == 0) & (v > 0)):
        warnings.warn(f"layer '{op.name}' ({op.type}): {key} {v[v > 0].min():g} rounds to 0 "
                      "in Q15", SNNWarning, stacklevel=4)
    return b


def _fit(op: Op, key: str, v: np.ndarray, s_v: np.ndarray, bits: int) -> np.ndarray:
    qv = rnd(v / s_v)
    lim = 1 << (bits - 1)
    if np.any(qv >= lim) or np.any(qv < -lim):
        raise IRError(f"layer '{op.name}' ({op.type}): {key} = {v[np.argmax(np.abs(qv))]:g} "
                      f"does not fit int{bits} membrane units (scale {s_v.min():.3g})")
    return qv


# --------------------------------------------------------------------------- interpreter
def op_params(graph: Graph, op: Op) -> dict:
    """Integer parameters of a fixed-point op (per-channel lists become int64 arrays)."""
    p = {}
    for k, v in op.attrs.items():
        p[k] = np.asarray(v, np.int64) if isinstance(v, list) and k != "v_scale" else v
    for k in ("stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w", "groups",
              "filter_h", "filter_w"):
        if k not in p and attr(op, k) is not None:
            p[k] = attr(op, k)
    return p


class NumpyKernels:
    """The fixed-point op functions run_fixed calls (tests swap in the C kernels)."""
    fc_acc = staticmethod(fc_acc)
    conv_acc = staticmethod(conv_acc)
    sum_pool = staticmethod(sum_pool)
    neuron_step = staticmethod(neuron_step)


def fixed_input_steps(qgraph: Graph, x, timesteps: int, encoding=None, seed=None,
                      layout: str = "nir", first_index: int = 0):
    """The int input of each step [N, ...] for the fixed-point graph."""
    fx = qgraph.meta["snn"]["fixed"]
    encoding = encoding or fx["encoding"]
    seed = fx["seed"] if seed is None else seed
    if layout == "nir":
        x = to_ir_layout(qgraph, x, steps=encoding == "events")
    x = np.asarray(x)
    if encoding == "constant":
        xq = quantize_input(x, fx["input_scale"])
        for _ in range(timesteps):
            yield xq
    else:
        if encoding == "rate" and x.dtype != np.uint8:
            x = rate_levels(x)
        for s in encode(x, timesteps, encoding, seed, first_index):
            yield s.astype(np.int64)


def run_fixed(qgraph: Graph, x, timesteps: int, encoding: str | None = None,
              seed: int | None = None, layout: str = "nir", kernels=NumpyKernels,
              record: bool = False) -> SimResult:
    """Run the fixed-point graph for `timesteps` steps on each sample of x (as float_sim
    .simulate). Outputs: int64 spike counts, or the final int membrane of an LI readout
    (real value = v * v_scale of that layer)."""
    if timesteps < 1:
        raise IRError(f"timesteps must be >= 1, got {timesteps}")
    g = qgraph
    qenc = g.meta["snn"]["fixed"]["encoding"]
    if encoding is not None and (encoding == "constant") != (qenc == "constant"):
        raise IRError(f"the graph was quantized for {qenc} input, not {encoding} (the input "
                      "scale differs); quantize it again")
    env: dict[str, np.ndarray] = {}
    n = None
    state: dict[str, np.ndarray] = {}
    params = {op.name: op_params(g, op) for op in g.ops}
    defs = {}
    for op in g.ops:
        d = ops.get(op.type)
        if d is None or d.step_fixed is None:
            raise IRError(f"layer '{op.name}': op {op.type} is not a fixed-point op")
        defs[op.name] = d
    consts = {t.name: t.data for t in g.constants()}
    spiking_out = {o: is_spiking(g.producers()[o].type) for o in g.outputs}
    layer: dict[str, np.ndarray] = {}
    events: dict[str, np.ndarray] = {}
    analog = {g.inputs[0]} if (encoding or g.meta["snn"]["fixed"]["encoding"]) == "constant" \
        else set()
    rec = {op.name: [] for op in g.ops if is_spiking(op.type)} if record else None
    acc_out: dict[str, np.ndarray] = {}
    for xt in fixed_input_steps(g, x, timesteps, encoding, seed, layout):
        if n is None:
            n = xt.shape[0]
            state = {s: np.zeros((n, *g.t(s).shape[1:]), np.int64) for s in g.state}
            layer = {op.name: np.zeros(n, np.int64) for op in g.ops if is_spiking(op.type)}
            acc_out = {o: np.zeros((n, *g.t(o).shape[1:]), np.int64) for o in g.outputs}
            events = {op.name: np.zeros(n, np.int64) for op in g.ops if role(op.type) == "synapse"}
        env[g.inputs[0]] = xt.reshape(n, *g.t(g.inputs[0]).shape[1:])
        for op in g.ops:
            d = defs[op.name]
            if role(op.type) == "synapse" and op.inputs[0] not in analog:
                events[op.name] += (env[op.inputs[0]].reshape(n, -1) != 0).sum(axis=1)
            ins = [(state[i] if i in state else env[i] if i in env else consts[i]) if i
                   else None for i in op.inputs]
            y, new_states = d.step_fixed(kernels, params[op.name], ins,
                                         (n, *g.t(op.outputs[0]).shape[1:]))
            for s, v in zip(op.inputs[1:], new_states):
                state[s] = v
            if op.name in layer:
                layer[op.name] += y.reshape(n, -1).sum(axis=1)
                if rec is not None:
                    rec[op.name].append(y.astype(bool))
            env[op.outputs[0]] = y
        for o in g.outputs:
            acc_out[o] = acc_out[o] + env[o] if spiking_out[o] else env[o]
    outs = [acc_out[o].reshape(n, -1) for o in g.outputs]
    res = SimResult(outs, layer, {op.name: g.t(op.outputs[0]).size for op in g.ops
                                  if is_spiking(op.type)},
                    {k: np.stack(v) for k, v in rec.items()} if rec is not None else None)
    res.events = events     # synapse op -> [N] non-zero inputs over all steps (not analog)
    return res


def output_scale(qgraph: Graph, k: int = 0):
    """Real value per unit of output k: 1 for spike counts, v_scale per channel for LI."""
    op = qgraph.producers()[qgraph.outputs[k]]
    return 1.0 if is_spiking(op.type) else np.asarray(op.attrs["v_scale"])


def compare(graph: Graph, qgraph: Graph, x, timesteps: int, y=None, layout: str = "nir") -> dict:
    """Fixed point against the float simulation on the same inputs (the figures
    `mcu convert` is to print): samples with identical output spike counts, argmax
    agreement, accuracies (with labels y) and spike rates per layer."""
    fx = qgraph.meta["snn"]["fixed"]
    f = float_sim.simulate(graph, x, timesteps, fx["encoding"], fx["seed"], layout)
    r = run_fixed(qgraph, x, timesteps, layout=layout)
    n = len(f.counts)
    spiking = is_spiking(qgraph.producers()[qgraph.outputs[0]].type)
    out = dict(samples=n, timesteps=timesteps, encoding=fx["encoding"],
               state_bits=fx["state_bits"],
               argmax_agreement=float((f.counts.argmax(1) == r.counts.argmax(1)).mean()))
    if spiking:
        out["identical_counts"] = int((f.counts == r.counts).all(axis=1).sum())
    if y is not None:
        y = np.asarray(y).reshape(-1)
        out["accuracy_float"] = float((f.counts.argmax(1) == y).mean())
        out["accuracy_fixed"] = float((r.counts.argmax(1) == y).mean())
    out["spike_rate"] = {k: dict(float=float(f.layer_spikes[k].sum()) / (n * timesteps *
                                                                        f.layer_neurons[k]),
                                 fixed=float(r.layer_spikes[k].sum()) / (n * timesteps *
                                                                        r.layer_neurons[k]))
                         for k in r.layer_spikes}
    return out

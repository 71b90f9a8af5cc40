"""Float simulation of a spiking IR graph (from converters.nir_frontend), step by step.

Time-step semantics (docs/snn.md): in every step t = 0..T-1 the ops run in graph order
on a batch of samples, so a spike reaches the next layer in the same step. Neurons
(forward Euler, snnTorch's reset_delay=True order: the reset is decided from the
membrane of the previous step, fired = v[t-1] > v_threshold):

    LIF subtract: v = beta*v + gain*I + leak - fired*v_threshold
    LIF zero:     v = beta*(v_reset if fired else v) + gain*I + leak
    IF:           LIF with beta = 1, leak = 0
    CUBA_LIF:     i = alpha*i + gain_syn*I
                  subtract: v = beta*v + gain*i + leak - fired*v_threshold
                  zero:     v = v_reset if fired else beta*v + gain*i + leak  (snnTorch Synaptic)
    LI / CUBA_LI: as above without spikes; the output is v.
    THRESHOLD:    s = I > v_threshold
    spikes:       s = v > v_threshold (strictly)

Computed in float32 in snnTorch's operation order. The op functions below are plain
functions (one per op type) so an op registry can adopt them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from converters.nir_frontend import NEURON_ATTRS, SPIKING, SYNAPSE_ATTRS
from toolchain.ir.graph import Graph, IRError, Op

from .encoding import encode

F32 = np.float32


def attr(op: Op, key: str):
    if key in op.attrs:
        return op.attrs[key]
    for table in (NEURON_ATTRS, SYNAPSE_ATTRS):
        if op.type in table:
            return table[op.type].get(key)
    return op.attr(key)


def _a(op: Op, key: str) -> np.ndarray:
    return np.asarray(attr(op, key), F32)


# --------------------------------------------------------------------------- layout
def to_ir_layout(graph: Graph, x: np.ndarray, steps: bool = False) -> np.ndarray:
    """[N, (T,) *NIR shape] (channel-first) -> [N, (T,) *IR shape without batch]."""
    nir_shape = tuple(graph.meta.get("snn", {}).get("input_nir_shape", ()))
    x = np.asarray(x)
    lead = 2 if steps else 1
    if tuple(x.shape[lead:]) != nir_shape:
        want = "[N, T, " if steps else "[N, "
        raise IRError(f"input data has shape {x.shape}; the model expects "
                      f"{want}{', '.join(map(str, nir_shape))}]")
    if len(nir_shape) == 3:
        return np.moveaxis(x, lead, -1)
    if len(nir_shape) == 2:                                  # (C, W) -> (1, W, C)
        return np.expand_dims(np.moveaxis(x, lead, -1), lead)
    return x


# --------------------------------------------------------------------------- synapses
def fully_connected(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x.reshape(x.shape[0], -1).astype(F32) @ w.astype(F32).T
    return y + b.astype(F32) if b is not None else y


def _patches(x: np.ndarray, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow) -> np.ndarray:
    """x [N, H, W, C] -> [N, oh, ow, kh, kw, C] with zero padding (top/left ph/pw)."""
    n, h, w, c = x.shape
    hp = max(h + ph, (oh - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + pw, (ow - 1) * sw + dw * (kw - 1) + 1)
    xp = np.zeros((n, hp, wp, c), x.dtype)
    xp[:, ph:ph + h, pw:pw + w] = x
    out = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j] = xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                                    j * dw:j * dw + (ow - 1) * sw + 1:sw]
    return out


def syn_conv_2d(op: Op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                out_shape: tuple) -> np.ndarray:
    """Grouped, dilated, zero-padded convolution; x NHWC, w OHWI (I = C_in/groups)."""
    g = int(attr(op, "groups"))
    o, kh, kw, ipg = w.shape
    _, oh, ow, _ = out_shape
    p = _patches(x.astype(F32), kh, kw, attr(op, "stride_h"), attr(op, "stride_w"),
                 attr(op, "dilation_h"), attr(op, "dilation_w"), attr(op, "pad_h"),
                 attr(op, "pad_w"), oh, ow)
    opg = o // g
    ys = []
    for gi in range(g):
        pg = p[..., gi * ipg:(gi + 1) * ipg].reshape(*p.shape[:3], -1)
        wg = w[gi * opg:(gi + 1) * opg].reshape(opg, -1).astype(F32)
        ys.append(pg @ wg.T)
    y = np.concatenate(ys, axis=-1)
    return y + b.astype(F32) if b is not None else y


def sum_pool_2d(op: Op, x: np.ndarray, out_shape: tuple) -> np.ndarray:
    kh, kw = attr(op, "filter_h"), attr(op, "filter_w")
    _, oh, ow, _ = out_shape
    p = _patches(x.astype(F32), kh, kw, attr(op, "stride_h"), attr(op, "stride_w"), 1, 1,
                 attr(op, "pad_h") or 0, attr(op, "pad_w") or 0, oh, ow)
    s = p.sum(axis=(3, 4), dtype=F32)
    d = attr(op, "divisor") if op.type == "SUM_POOL_2D" else kh * kw
    return s / F32(d) if d != 1 else s


# --------------------------------------------------------------------------- neurons
def lif_step(op: Op, cur: np.ndarray, v: np.ndarray):
    """One LIF (or IF) step: (spikes, new v)."""
    thr = _a(op, "v_threshold")
    beta = F32(1.0) if op.type == "IF" else _a(op, "beta")
    leak = F32(0.0) if op.type == "IF" else _a(op, "leak")
    gain = _a(op, "gain")
    fired = v > thr
    inp = cur if np.all(gain == 1) else gain * cur
    if attr(op, "reset") == "subtract":
        vn = beta * v + inp + leak - fired.astype(F32) * thr
    else:
        vn = beta * np.where(fired, _a(op, "v_reset"), v).astype(F32) + inp + leak
    vn = vn.astype(F32)
    return (vn > thr).astype(F32), vn


def li_step(op: Op, cur: np.ndarray, v: np.ndarray):
    gain = _a(op, "gain")
    inp = cur if np.all(gain == 1) else gain * cur
    vn = (_a(op, "beta") * v + inp + _a(op, "leak")).astype(F32)
    return vn, vn


def cuba_step(op: Op, cur: np.ndarray, i: np.ndarray, v: np.ndarray):
    """One CUBA_LIF / CUBA_LI step: (output, new i, new v)."""
    gs, gain = _a(op, "gain_syn"), _a(op, "gain")
    i_n = (_a(op, "alpha") * i + (cur if np.all(gs == 1) else gs * cur)).astype(F32)
    inp = i_n if np.all(gain == 1) else gain * i_n
    base = (_a(op, "beta") * v + inp + _a(op, "leak")).astype(F32)
    if op.type == "CUBA_LI":
        return base, i_n, base
    thr = _a(op, "v_threshold")
    fired = v > thr
    if attr(op, "reset") == "subtract":
        vn = (base - fired.astype(F32) * thr).astype(F32)
    else:
        vn = np.where(fired, _a(op, "v_reset"), base).astype(F32)
    return (vn > thr).astype(F32), i_n, vn


def threshold_step(op: Op, cur: np.ndarray):
    return (cur > _a(op, "v_threshold")).astype(F32)


# --------------------------------------------------------------------------- simulation
@dataclass
class SimResult:
    outputs: list[np.ndarray]               # per graph output: spike counts or final v
    layer_spikes: dict[str, np.ndarray]     # spiking op name -> [N] spikes over all steps
    layer_neurons: dict[str, int] = field(default_factory=dict)
    record: dict[str, np.ndarray] | None = None   # op name -> [T, N, ...] if recorded
    events: dict[str, np.ndarray] = field(default_factory=dict)  # fixed point: synapse
    # op -> [N] non-zero (event) inputs over all steps; analog input layers are absent

    @property
    def counts(self) -> np.ndarray:
        return self.outputs[0]


def simulate(graph: Graph, x, timesteps: int, encoding: str = "constant", seed: int = 0,
             layout: str = "nir", record: bool = False,
             probe: dict | None = None) -> SimResult:
    """Run the float SNN for `timesteps` steps on every sample of x.

    x: [N, *input] analog values (constant, rate) or [N, T, *input] spikes (events), in
    NIR layout (channel-first, layout="nir") or IR layout (layout="ir"). Outputs are
    spike counts per output neuron (float32 integers), or for an LI / CUBA_LI output
    the membrane after the last step; layer_spikes counts each spiking layer's spikes.
    probe: if a dict, filled with {neuron op name: {"in"|"v"|"i": per-channel max |.|}}
    over all samples and steps (calibration of the fixed-point scales)."""
    if timesteps < 1:
        raise IRError(f"timesteps must be >= 1, got {timesteps}")
    if layout == "nir":
        x = to_ir_layout(graph, x, steps=encoding == "events")
    x = np.asarray(x)
    n = x.shape[0]
    env: dict[str, np.ndarray] = {}
    state = {s: np.zeros((n, *graph.t(s).shape[1:]), F32) for s in graph.state}
    for t in graph.tensors.values():
        if t.is_const:
            env[t.name] = t.data
    spiking_out = {o: graph.producers()[o].type in SPIKING for o in graph.outputs}
    acc = {o: np.zeros((n, *graph.t(o).shape[1:]), F32) for o in graph.outputs}
    layer = {op.name: np.zeros(n, np.int64) for op in graph.ops if op.type in SPIKING}
    neurons = {op.name: graph.t(op.outputs[0]).size for op in graph.ops if op.type in SPIKING}
    rec = {op.name: [] for op in graph.ops if op.type in SPIKING} if record else None
    for xt in encode(x, timesteps, encoding, seed):
        env[graph.inputs[0]] = xt.reshape(n, *graph.t(graph.inputs[0]).shape[1:])
        for op in graph.ops:
            y = run_op(graph, op, env, state)
            env[op.outputs[0]] = y
            if probe is not None and op.type in NEURON_ATTRS:
                _probe(probe, op, env, state)
            if op.name in layer:
                layer[op.name] += y.reshape(n, -1).sum(axis=1).astype(np.int64)
                if rec is not None:
                    rec[op.name].append(y.astype(bool))
        for o in graph.outputs:
            acc[o] = acc[o] + env[o] if spiking_out[o] else env[o]
    outs = [acc[o].reshape(n, -1) for o in graph.outputs]
    return SimResult(outs, layer, neurons,
                     {k: np.stack(v) for k, v in rec.items()} if rec is not None else None)


def _probe(probe: dict, op: Op, env: dict, state: dict) -> None:
    d = probe.setdefault(op.name, {})
    keys = [("in", op.inputs[0], env)] + [(k, n, state) for k, n in
                                          zip(("i", "v") if len(op.inputs) == 3 else ("v",),
                                              op.inputs[1:])]
    for k, n, src in keys:
        a = np.abs(src[n].astype(np.float64))
        m = a.reshape(-1, a.shape[-1]).max(axis=0)
        d[k] = np.maximum(d[k], m) if k in d else m


def run_op(graph: Graph, op: Op, env: dict, state: dict) -> np.ndarray:
    ins = [env.get(i) if i else None for i in op.inputs]
    x = ins[0]
    n = x.shape[0]
    out_shape = (n, *graph.t(op.outputs[0]).shape[1:])
    t = op.type
    if t == "FULLY_CONNECTED":
        return fully_connected(x, ins[1], ins[2] if len(ins) > 2 else None)
    if t == "SYN_CONV_2D":
        return syn_conv_2d(op, x, ins[1], ins[2] if len(ins) > 2 else None, out_shape)
    if t in ("SUM_POOL_2D", "AVERAGE_POOL_2D"):
        return sum_pool_2d(op, x, out_shape)
    if t == "RESHAPE":
        return x.reshape(out_shape)
    if t == "SCALE":
        return (x * ins[1].astype(F32)).astype(F32)
    if t == "ADD":
        return (x + ins[1]).astype(F32)
    if t in ("LIF", "IF"):
        s, state[op.inputs[1]] = lif_step(op, x, state[op.inputs[1]])
        return s
    if t == "LI":
        y, state[op.inputs[1]] = li_step(op, x, state[op.inputs[1]])
        return y
    if t in ("CUBA_LIF", "CUBA_LI"):
        y, state[op.inputs[1]], state[op.inputs[2]] = cuba_step(
            op, x, state[op.inputs[1]], state[op.inputs[2]])
        return y
    if t == "THRESHOLD":
        return threshold_step(op, x)
    raise IRError(f"layer '{op.name}': op {t} has no spiking semantics")

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

Computed in float32 in snnTorch's operation order. The per-op steps live in the op
registry (toolchain/ir/ops/neurons.py, synapses.py: OpDef.step_float); this module runs
them in time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op
from toolchain.ir.ops.neurons import cuba_step, li_step, lif_step, threshold_step  # noqa: F401
from toolchain.ir.ops.synapses import fully_connected, sum_pool_2d, syn_conv_2d  # noqa: F401
from toolchain.ir.ops.synapses import patches as _patches  # noqa: F401

from .encoding import encode

F32 = np.float32


def attr(op: Op, key: str):
    """An op attribute or its registry default."""
    return op.attr(key)


def role(op_type: str) -> str | None:
    """The op's part in a spiking graph (OpDef.snn_role): synapse, neuron, pool, view,
    fanin; None for ops without spiking semantics."""
    d = ops.get(op_type)
    return d.snn_role if d is not None else None


def is_spiking(op_type: str) -> bool:
    d = ops.get(op_type)
    return bool(d is not None and d.spiking)


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
    spiking_out = {o: is_spiking(graph.producers()[o].type) for o in graph.outputs}
    acc = {o: np.zeros((n, *graph.t(o).shape[1:]), F32) for o in graph.outputs}
    layer = {op.name: np.zeros(n, np.int64) for op in graph.ops if is_spiking(op.type)}
    neurons = {op.name: graph.t(op.outputs[0]).size for op in graph.ops if is_spiking(op.type)}
    rec = {op.name: [] for op in graph.ops if is_spiking(op.type)} if record else None
    for xt in encode(x, timesteps, encoding, seed):
        env[graph.inputs[0]] = xt.reshape(n, *graph.t(graph.inputs[0]).shape[1:])
        for op in graph.ops:
            y = run_op(graph, op, env, state)
            env[op.outputs[0]] = y
            if probe is not None and role(op.type) == "neuron":
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
                                          zip(ops.get(op.type).states, op.inputs[1:])]
    for k, n, src in keys:
        a = np.abs(src[n].astype(np.float64))
        m = a.reshape(-1, a.shape[-1]).max(axis=0)
        d[k] = np.maximum(d[k], m) if k in d else m


def run_op(graph: Graph, op: Op, env: dict, state: dict) -> np.ndarray:
    """One float step of one op (its registry step_float); neuron state is updated in
    `state`."""
    d = ops.get(op.type)
    if d is None or d.step_float is None:
        raise IRError(f"layer '{op.name}': op {op.type} has no spiking semantics")
    ins = [(state[i] if i in state else env.get(i)) if i else None for i in op.inputs]
    out_shape = (ins[0].shape[0], *graph.t(op.outputs[0]).shape[1:])
    y, new_states = d.step_float(op, ins, out_shape)
    for s, v in zip(op.inputs[1:], new_states):
        state[s] = v
    return y

"""Spiking-network neurons: LIF, IF, LI, CUBA_LIF, CUBA_LI, THRESHOLD (docs/snn.md).

Inputs: the synaptic current, then the state tensors (`states`: v, or i and v, listed
in graph.state); output: spikes (0/1), or the membrane v for LI / CUBA_LI. Float
attributes (NEURON_ATTRS, from the NIR front end's forward-Euler discretisation; a
float when uniform, else an IR-ordered array) and, after toolchain.snn.fixed_point
.quantize, the integer ones (FIXED_NEURON_ATTRS: kind, state_bits, frac_bits, v_scale
and per-channel beta, alpha, thr, vreset, leak).

Float step (float32, snnTorch's order; reset_delay=True: the reset is decided from the
previous step's membrane, fired = v[t-1] > v_threshold):

    LIF subtract: v = beta*v + gain*I + leak - fired*v_threshold
    LIF zero:     v = beta*(v_reset if fired else v) + gain*I + leak
    IF:           LIF with beta = 1, leak = 0
    CUBA_LIF:     i = alpha*i + gain_syn*I
                  subtract: v = beta*v + gain*i + leak - fired*v_threshold
                  zero:     v = v_reset if fired else beta*v + gain*i + leak
    LI / CUBA_LI: as above without spikes; the output is v.
    THRESHOLD:    s = I > v_threshold;  spikes: s = v > v_threshold (strictly)

Fixed step (bit-exact with firmware_templates/runtime/snn.c mcu_snn_{lif,cuba_lif,li,
cuba_li}_{s16,s32}, mcu_snn_threshold): the current is acc * 2^F (F < 0: rounded shift),
mulq15(b, v) = (b*v + 2^14) >> 15, every state write saturates to int16/int32, the
arithmetic in between is exact (int64 here).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Op

from .base import OpDef, register, same_as_input

F32 = np.float32

# Float attributes of the neuron op types (defaults), as the NIR front end writes them.
NEURON_ATTRS = {
    "LIF": dict(beta=1.0, gain=1.0, leak=0.0, v_threshold=1.0, v_reset=0.0, reset="zero"),
    "IF": dict(gain=1.0, v_threshold=1.0, v_reset=0.0, reset="zero"),
    "LI": dict(beta=1.0, gain=1.0, leak=0.0),
    "CUBA_LIF": dict(alpha=1.0, gain_syn=1.0, beta=1.0, gain=1.0, leak=0.0, v_threshold=1.0,
                     v_reset=0.0, reset="zero"),
    "CUBA_LI": dict(alpha=1.0, gain_syn=1.0, beta=1.0, gain=1.0, leak=0.0),
    "THRESHOLD": dict(v_threshold=0.0),
}
# Integer attributes of the fixed-point graph (toolchain.snn.fixed_point.quantize).
FIXED_NEURON_ATTRS = ("kind", "state_bits", "frac_bits", "v_scale", "beta", "alpha", "thr",
                      "vreset", "leak", "reset")
RESETS = ("zero", "subtract")


# --------------------------------------------------------------------------- integer math
def rnd(x) -> np.ndarray:
    """Round half away from zero, to int64."""
    x = np.asarray(x, np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def mulq15(b, v) -> np.ndarray:
    """(b * v + 2^14) >> 15 on int64 (floor shift): Q15 multiply, round half up."""
    return (np.asarray(b, np.int64) * np.asarray(v, np.int64) + (1 << 14)) >> 15


def shift_acc(acc, f: int) -> np.ndarray:
    acc = np.asarray(acc, np.int64)
    if f >= 0:
        return acc << f
    return (acc + (1 << (-f - 1))) >> (-f)


def sat(v, bits: int) -> np.ndarray:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(v, np.int64), lo, hi)


# --------------------------------------------------------------------------- float steps
def _a(op: Op, key: str) -> np.ndarray:
    return np.asarray(op.attr(key), F32)


def lif_step(op: Op, cur: np.ndarray, v: np.ndarray):
    """One LIF (or IF) step: (spikes, new v)."""
    thr = _a(op, "v_threshold")
    beta = F32(1.0) if op.type == "IF" else _a(op, "beta")
    leak = F32(0.0) if op.type == "IF" else _a(op, "leak")
    gain = _a(op, "gain")
    fired = v > thr
    inp = cur if np.all(gain == 1) else gain * cur
    if op.attr("reset") == "subtract":
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
    if op.attr("reset") == "subtract":
        vn = (base - fired.astype(F32) * thr).astype(F32)
    else:
        vn = np.where(fired, _a(op, "v_reset"), base).astype(F32)
    return (vn > thr).astype(F32), i_n, vn


def threshold_step(op: Op, cur: np.ndarray):
    return (cur > _a(op, "v_threshold")).astype(F32)


def _lif_float(op, ins, out_shape):
    s, v = lif_step(op, ins[0], ins[1])
    return s, [v]


def _li_float(op, ins, out_shape):
    y, v = li_step(op, ins[0], ins[1])
    return y, [v]


def _cuba_float(op, ins, out_shape):
    y, i, v = cuba_step(op, ins[0], ins[1], ins[2])
    return y, [i, v]


def _threshold_float(op, ins, out_shape):
    return threshold_step(op, ins[0]), []


# --------------------------------------------------------------------------- fixed step
def neuron_step(p: dict, acc, state: list):
    """One step of a fixed-point neuron layer. p: the op's integer attributes (per-channel
    arrays broadcast on the last axis); acc: synapse accumulator (int64); state: [v] or
    [i, v] (int64, updated in place). Returns the output (spikes 0/1 or v)."""
    kind, bits, f = p["kind"], p["state_bits"], p["frac_bits"]
    cur = shift_acc(acc, f)
    if kind == "THRESHOLD":
        return (cur > p["thr"]).astype(np.int64)
    if kind in ("CUBA_LIF", "CUBA_LI"):
        i, v = state
        i_n = sat(mulq15(p["alpha"], i) + cur, bits)
        state[0] = i_n
        cur = i_n
    else:
        v = state[0]
    if kind in ("LI", "CUBA_LI"):
        vn = sat(mulq15(p["beta"], v) + cur + p["leak"], bits)
        state[-1] = vn
        return vn
    thr = p["thr"]
    fired = v > thr
    if p["reset"] == "subtract":
        vn = mulq15(p["beta"], v) + cur + p["leak"] - np.where(fired, thr, 0)
    elif kind == "CUBA_LIF":
        vn = np.where(fired, p["vreset"], mulq15(p["beta"], v) + cur + p["leak"])
    else:
        vn = mulq15(p["beta"], np.where(fired, p["vreset"], v)) + cur + p["leak"]
    vn = sat(vn, bits)
    state[-1] = vn
    return (vn > thr).astype(np.int64)


def _step_fixed(kern, p, ins, out_shape):
    st = list(ins[1:])
    y = kern.neuron_step(p, ins[0], st)
    return y, st


# --------------------------------------------------------------------------- C emission
# kernel per op type and state width (16, 32)
_KERNELS = {
    "LIF": ("mcu_snn_lif_s16", "mcu_snn_lif_s32"),
    "IF": ("mcu_snn_lif_s16", "mcu_snn_lif_s32"),
    "CUBA_LIF": ("mcu_snn_cuba_lif_s16", "mcu_snn_cuba_lif_s32"),
    "THRESHOLD": ("mcu_snn_threshold", "mcu_snn_threshold"),
    "LI": ("mcu_snn_li_s16", "mcu_snn_li_s32"),
    "CUBA_LI": ("mcu_snn_cuba_li_s16", "mcu_snn_cuba_li_s32"),
}


def emit_neuron(em, k: int, op: Op) -> None:
    """Per-channel constants in an mcu_snn_neuron_t, state arrays (zeroed per sample),
    and the step call; a spiking layer adds its spike count to the layer's counter."""
    g, P, c, t = em.g, em.P, f"L{k}", op.type
    p = op.attrs
    oshape = g.t(op.outputs[0]).shape
    bits = int(p["state_bits"])
    st_t = "int32_t" if bits == 32 else "int16_t"
    ch = oshape[-1]
    n_o = int(np.prod(oshape))

    def carr(key, default=0):
        v = np.broadcast_to(np.asarray(p.get(key, default), np.int64), (ch,))
        em.consts.append(f"static const int32_t {P}{c}_{key}[{ch}] = {{{em.arr(v)}}};")
        return f"{P}{c}_{key}"
    syms = [carr("beta", 32768), carr("alpha"), carr("thr"), carr("vreset"), carr("leak")]
    em.consts.append(f"static const mcu_snn_neuron_t {P}{c}_n = {{{ch}, {p['frac_bits']}, "
                     f"{int(p.get('reset') == 'subtract')}, {', '.join(syms)}}};")
    sts = []
    for s in op.inputs[1:]:
        sym = f"{P}{c}_{'v' if s.endswith('.v') else 'i'}"
        em.bufs.append(f"static {st_t} {sym}[{n_o}];")
        em.state_syms.append((sym, n_o, st_t))
        sts.append(sym)
    acc = em.buf_of[op.inputs[0]]
    fn = _KERNELS[t][bits == 32]
    if REGISTRY_SPIKING[t]:
        em.bufs.append(f"static int8_t {P}{c}_s[{n_o}];")
        args = ", ".join([f"&{P}{c}_n", str(n_o), acc, *sts, f"{P}{c}_s"])
        em.body_step.append((k, f"{P}spikes[{len(em.spiking)}] += (uint32_t){fn}({args});"))
        em.buf_of[op.outputs[0]] = f"{P}{c}_s"
        em.spiking.append(op.name)
        em.layer_out.append((f"{P}{c}_s", n_o))
    else:
        em.body_step.append((k, f"{fn}({', '.join([f'&{P}{c}_n', str(n_o), acc, *sts])});"))
        em.buf_of[op.outputs[0]] = sts[-1]
        em.layer_out.append((sts[-1], n_o * (bits // 8)))


# --------------------------------------------------------------------------- registry
_FLOAT = {"LIF": _lif_float, "IF": _lif_float, "LI": _li_float, "CUBA_LIF": _cuba_float,
          "CUBA_LI": _cuba_float, "THRESHOLD": _threshold_float}
_STATES = {"LIF": ("v",), "IF": ("v",), "LI": ("v",), "CUBA_LIF": ("i", "v"),
           "CUBA_LI": ("i", "v"), "THRESHOLD": ()}
REGISTRY_SPIKING = {"LIF": True, "IF": True, "CUBA_LIF": True, "THRESHOLD": True,
                    "LI": False, "CUBA_LI": False}
_DOC = {"LIF": "leaky integrate-and-fire neuron", "IF": "integrate-and-fire neuron",
        "LI": "leaky integrator (readout: membrane)",
        "CUBA_LIF": "current-based LIF (synaptic current state)",
        "CUBA_LI": "current-based leaky integrator (readout: membrane)",
        "THRESHOLD": "spike where the input exceeds v_threshold (no state)"}

for _t, _attrs in NEURON_ATTRS.items():
    register(OpDef(_t, dict(_attrs, **{k: None for k in FIXED_NEURON_ATTRS if k not in _attrs}),
                   infer_shape=same_as_input, family="snn", snn_role="neuron",
                   spiking=REGISTRY_SPIKING[_t], states=_STATES[_t], step_float=_FLOAT[_t],
                   step_fixed=_step_fixed, emit_snn=emit_neuron, doc=_DOC[_t]))

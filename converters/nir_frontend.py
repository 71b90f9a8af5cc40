"""NIR front end: a NIR graph (spiking network) -> float IR Graph (NHWC).

    g = from_nir("model.nir", dt=1e-4, reset="subtract")

The graph is walked by its edges (topological order, Kahn), never by node-key order.
NIR has no time step: neuron ODEs are discretised here with forward Euler and `dt`
(docs/snn.md): beta = 1 - dt/tau, input gain = r*dt/tau, leak = dt/tau * v_leak.

Layout: NIR is channel-first (C, H, W) / (C, W) per sample, conv weights OIHW / OIW.
The IR is NHWC with a batch of 1: (C, H, W) -> [1, H, W, C], (C, W) -> [1, 1, W, C],
(N,) -> [1, N]. A Flatten of a (C, H, W) tensor becomes a RESHAPE in NHWC order and
records the permutation, so the Affine/Linear that reads it gets its weight columns
permuted and per-neuron parameters are gathered; graph.meta["snn"]["output_perm"]
gives the NIR index of each IR output element when the output itself is permuted.

Op types this front end emits (semantics in toolchain/snn/float_sim.py, docs/snn.md):
- synapses: FULLY_CONNECTED (x, W [out, in], bias), SYN_CONV_2D (x, W OHWI with
  I = C_in/groups, bias; attrs stride_h/w, pad_h/w = top/left zero padding, dilation_h/w,
  groups), SUM_POOL_2D (filter_h/w, stride_h/w, pad_h/w, divisor: 1 = sum,
  kh*kw = average counting padding), AVERAGE_POOL_2D (TFLite attrs, VALID),
  RESHAPE, SCALE (x, s: elementwise product with a constant), ADD (fan-in);
- neurons (inputs: current, then state tensors; output: spikes or membrane):
  LIF, IF, LI, CUBA_LIF, CUBA_LI, THRESHOLD; attributes in NEURON_ATTRS (op registry:
  toolchain/ir/ops/neurons.py, synapses.py). Per-neuron
  parameters are a float when uniform, else an array of the IR shape without batch.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op, Tensor
from toolchain.ir.ops.neurons import NEURON_ATTRS  # noqa: F401  (re-exported)
from toolchain.ir.ops.synapses import SYNAPSE_ATTRS  # noqa: F401  (re-exported)

# The op types live in the op registry (toolchain/ir/ops/neurons.py, synapses.py); this
# front end only maps NIR nodes onto them.
SPIKING = tuple(n for n, d in ops.REGISTRY.items() if d.spiking)   # output is 0/1 spikes
SNN_OP_TYPES = set(ops.ops_with("step_float"))                      # ops with time-step semantics
RESETS = ("zero", "subtract")
GAIN_SNAP = 1e-5      # |gain - 1| below this is exactly 1 (snnTorch's float32 r = tau/dt)
GAIN_WARN = (0.5, 2.0)


def check_snn_graph(graph: Graph) -> None:
    """toolchain.ir.validate for spiking graphs: names the first op that is not one of
    SNN_OP_TYPES, unknown tensors, order problems."""
    from toolchain.ir.validate import validate
    validate(graph, supported=SNN_OP_TYPES, target="spiking networks")


class SNNWarning(UserWarning):
    """A spiking model converts, but probably not as the user meant (e.g. gain far from 1)."""


@dataclass
class _Val:
    ir: str                 # IR tensor name
    nir_shape: tuple        # per-sample NIR shape
    perm: np.ndarray | None = None   # flat tensors: NIR index of each IR element


def _ir_shape(nir_shape: tuple) -> tuple:
    if len(nir_shape) == 1:
        return (1, nir_shape[0])
    if len(nir_shape) == 2:
        c, w = nir_shape
        return (1, 1, w, c)
    if len(nir_shape) == 3:
        c, h, w = nir_shape
        return (1, h, w, c)
    raise ValueError(nir_shape)


def _per_channel_first(a: np.ndarray, nir_shape: tuple) -> np.ndarray:
    """A (C,) parameter of a channel-first (C, ...) tensor: one value per channel."""
    if len(nir_shape) > 1 and a.ndim == 1 and a.shape[0] == nir_shape[0] != 1:
        return a.reshape(a.shape[0], *([1] * (len(nir_shape) - 1)))
    return a


def _to_ir_order(a: np.ndarray, v: _Val) -> np.ndarray:
    """A per-element array in NIR order (broadcast to v.nir_shape; a (C,) array of a
    (C, H, W) tensor is per channel) -> IR order, no batch."""
    a = np.asarray(a, np.float64)
    a = np.broadcast_to(_per_channel_first(a, v.nir_shape), v.nir_shape)
    if len(v.nir_shape) == 1:
        return a[v.perm] if v.perm is not None else np.array(a)
    if len(v.nir_shape) == 2:
        return np.ascontiguousarray(a.T[None])          # (1, W, C)
    return np.ascontiguousarray(a.transpose(1, 2, 0))   # (H, W, C)


def _compress(a: np.ndarray):
    """Uniform arrays become a float attribute, others stay arrays (IR order)."""
    a = np.asarray(a, np.float64)
    flat = a.ravel()
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0])
    return a


def _pair(v, name: str, key: str) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise IRError(f"NIR node '{key}': {name} {v!r} is not an int or a pair")


def _arr(v) -> np.ndarray:
    if hasattr(v, "detach"):          # torch tensors left in a graph built in memory
        v = v.detach().cpu().numpy()
    return np.asarray(v, np.float64)


def _topo_order(nodes: dict, edges: list[tuple[str, str]]) -> list[str]:
    keys = list(nodes)
    succ: dict[str, list[str]] = {k: [] for k in keys}
    indeg = {k: 0 for k in keys}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    pos = {k: i for i, k in enumerate(keys)}
    ready = sorted([k for k in keys if indeg[k] == 0], key=pos.get)
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for b in succ[k]:
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
                ready.sort(key=pos.get)
    if len(order) != len(keys):
        rest = [k for k in keys if k not in set(order)]
        raise IRError(f"NIR graph has a cycle through node '{rest[0]}' "
                      f"({type(nodes[rest[0]]).__name__}): recurrent connections are not "
                      "supported")
    return order


def _edge_key(e: str, nodes: dict) -> str:
    if e in nodes:
        return e
    base = e.rsplit(".", 1)[0]       # "node.output" port notation
    if base in nodes:
        return base
    raise IRError(f"NIR edge refers to unknown node '{e}'")


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(key))


def from_nir(path_or_graph, dt: float = 1e-4, reset: str | dict | None = None,
             name: str | None = None) -> Graph:
    """NIR file (or nir.NIRGraph) -> float IR Graph.

    dt: the Euler time step (NIR has none; snnTorch's exporter assumes 1e-4).
    reset: reset mechanism of spiking neurons: None = the graph's (NIR: v <- v_reset),
    "zero" (to v_reset), "subtract" (v <- v - v_threshold, v_reset ignored), or a dict
    {node key: mechanism} (missing keys: "zero"). snnTorch's exporter writes every Leaky
    with v_reset = 0 whatever its reset_mechanism, so pass reset="subtract" for snnTorch's
    default."""
    import nir
    if isinstance(path_or_graph, (str, os.PathLike)):
        p = os.fspath(path_or_graph)
        if not os.path.exists(p):
            raise IRError(f"cannot read {p}: no such file")
        try:
            ng = nir.read(p)
        except Exception as e:  # noqa: BLE001 - h5py/format errors
            raise IRError(f"cannot read {p} as NIR: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:80] if str(e) else ''}") from None
        name = name or os.path.splitext(os.path.basename(p))[0]
    else:
        ng = path_or_graph
    if not (dt > 0 and np.isfinite(dt)):
        raise IRError(f"dt must be a positive time step, got {dt}")
    if isinstance(reset, str) and reset not in RESETS:
        raise IRError(f"unknown reset mechanism '{reset}'; expected one of {', '.join(RESETS)}")
    return _Builder(ng, float(dt), reset, name or "snn").build()


class _Builder:
    def __init__(self, ng, dt, reset, name):
        self.ng, self.dt, self.reset, self.name = ng, dt, reset, name
        self.g = Graph(name=name)
        self.vals: dict[str, _Val] = {}
        self.gains: dict[str, float] = {}

    # -- helpers --------------------------------------------------------------
    def tensor(self, base: str, shape, data=None) -> str:
        n = self.g.unique_name(base)
        self.g.add_tensor(Tensor(n, shape, "float32",
                                 data=None if data is None else np.asarray(data, np.float32)))
        return n

    def op(self, typ, key, inputs, out_shape, attrs=None, suffix="out") -> str:
        out = self.tensor(f"{_safe(key)}.{suffix}", out_shape)
        self.g.add_op(Op(typ, inputs, [out], dict(attrs or {}), name=str(key)))
        return out

    def reset_for(self, key):
        r = self.reset
        if isinstance(r, dict):
            r = r.get(key, "zero")
            if r not in RESETS:
                raise IRError(f"NIR node '{key}': unknown reset mechanism '{r}'")
        return r or "zero"

    def gain(self, key, typ, g):
        g = np.asarray(g, np.float64)
        g = np.where(np.abs(g - 1.0) < GAIN_SNAP, 1.0, g)
        lo, hi = GAIN_WARN
        if np.any(g < lo) or np.any(g > hi):
            worst = float(g.ravel()[np.argmax(np.abs(np.log(np.maximum(g.ravel(), 1e-300))))])
            warnings.warn(f"NIR node '{key}' ({typ}): input gain r*dt/tau = {worst:.4g} is far "
                          f"from 1 for dt = {self.dt:g}; check --dt", SNNWarning, stacklevel=4)
        return g

    def decay(self, key, typ, tau, what="tau"):
        """beta = 1 - dt/tau (forward Euler); tau = inf -> 1."""
        tau = _arr(tau)
        if np.any(~(tau > 0)):
            raise IRError(f"NIR node '{key}' ({typ}): {what} must be > 0 (got {tau.min():g})")
        ratio = np.where(np.isinf(tau), 0.0, self.dt / np.where(np.isinf(tau), 1.0, tau))
        if np.any(ratio > 1):
            raise IRError(f"NIR node '{key}' ({typ}): dt/{what} = {ratio.max():.4g} > 1, the "
                          f"Euler step is unstable (beta < 0); choose a smaller dt than "
                          f"{self.dt:g}")
        return 1.0 - ratio, ratio, tau

    # -- main ---------------------------------------------------------------
    def build(self) -> Graph:
        import nir
        nodes = dict(self.ng.nodes)
        edges = [(_edge_key(a, nodes), _edge_key(b, nodes)) for a, b in self.ng.edges]
        for k, n in nodes.items():
            if isinstance(n, nir.NIRGraph):
                raise IRError(f"NIR node '{k}' (NIRGraph) is a nested or recurrent subgraph "
                              "(e.g. snnTorch RLeaky/RSynaptic): not supported")
        order = _topo_order(nodes, edges)
        preds: dict[str, list[str]] = {k: [] for k in nodes}
        for a, b in edges:
            preds[b].append(a)
        outputs = []
        for k in order:
            node = nodes[k]
            typ = type(node).__name__
            if typ == "Input":
                shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).ravel())
                if len(shape) not in (1, 2, 3):
                    raise IRError(f"NIR node '{k}' (Input): shape {shape} not supported; "
                                  "expected (N,), (C, W) or (C, H, W) per sample")
                t = self.tensor(_safe(k) if k != "input" else "input", _ir_shape(shape))
                self.g.inputs.append(t)
                self.vals[k] = _Val(t, shape)
                continue
            if not preds[k]:
                raise IRError(f"NIR node '{k}' ({typ}) has no input edge")
            x = self.merge(k, preds[k])
            if typ == "Output":
                outputs.append((k, x))
                continue
            fn = getattr(self, "n_" + typ, None)
            if fn is None:
                raise IRError(f"NIR node '{k}' ({typ}) is not supported; supported: Input, "
                              "Output, Affine, Linear, Scale, Conv2d, Conv1d, SumPool2d, "
                              "AvgPool2d, Flatten, LIF, IF, LI, CubaLIF, CubaLI, Threshold")
            self.vals[k] = fn(k, node, x)
        if not self.g.inputs:
            raise IRError("NIR graph has no Input node")
        if not outputs:
            raise IRError("NIR graph has no Output node")
        meta_perm = {}
        for k, v in outputs:
            self.g.outputs.append(v.ir)
            if v.perm is not None:
                meta_perm[v.ir] = v.perm.tolist()
        in_val = self.vals[next(k for k in order if type(nodes[k]).__name__ == "Input")]
        self.g.meta["snn"] = dict(dt=self.dt, input_nir_shape=list(in_val.nir_shape),
                                  output_perm=meta_perm,
                                  reset=self.reset if not isinstance(self.reset, dict)
                                  else dict(self.reset))
        check_snn_graph(self.g)
        return self.g

    def merge(self, key, preds: list[str]) -> _Val:
        vs = [self.vals[p] for p in preds]
        if len(vs) == 1:
            return vs[0]
        v0 = vs[0]
        for v in vs[1:]:
            if v.nir_shape != v0.nir_shape or (v.perm is None) != (v0.perm is None) or (
                    v.perm is not None and not np.array_equal(v.perm, v0.perm)):
                raise IRError(f"NIR node '{key}': inputs of shapes {v0.nir_shape} and "
                              f"{v.nir_shape} cannot be summed")
        acc = v0.ir
        for i, v in enumerate(vs[1:]):
            acc = self.op("ADD", f"{key}.sum{i}", [acc, v.ir], _ir_shape(v0.nir_shape))
        return _Val(acc, v0.nir_shape, v0.perm)

    def need(self, key, typ, x: _Val, rank: int, what: str):
        if len(x.nir_shape) != rank:
            raise IRError(f"NIR node '{key}' ({typ}): expects a {what} input, got shape "
                          f"{x.nir_shape}")

    # -- layers -------------------------------------------------------------
    def _dense(self, key, typ, node, x, bias):
        w = _arr(node.weight)
        if w.ndim != 2 or x.nir_shape != (w.shape[1],):
            hint = ("; is the batch dimension in the NIR input? export with ignore_dims=[0]"
                    if len(x.nir_shape) > 1 and x.nir_shape[0] == 1 else "")
            raise IRError(f"NIR node '{key}' ({typ}): weight {w.shape} does not match input "
                          f"shape {x.nir_shape}{hint}")
        if x.perm is not None:
            w = w[:, x.perm]
        wn = self.tensor(f"{_safe(key)}.weight", w.shape, w)
        b = _arr(bias) if bias is not None else None
        bn = self.tensor(f"{_safe(key)}.bias", (w.shape[0],), b.reshape(-1)) if b is not None else ""
        out = self.op("FULLY_CONNECTED", key, [x.ir, wn, bn], (1, w.shape[0]))
        return _Val(out, (w.shape[0],))

    def n_Affine(self, key, node, x):
        return self._dense(key, "Affine", node, x, node.bias)

    def n_Linear(self, key, node, x):
        return self._dense(key, "Linear", node, x, None)

    def n_Scale(self, key, node, x):
        s = _to_ir_order(_arr(node.scale), x)
        sn = self.tensor(f"{_safe(key)}.scale", (1, *s.shape), s[None])
        out = self.op("SCALE", key, [x.ir, sn], _ir_shape(x.nir_shape))
        return _Val(out, x.nir_shape, x.perm)

    def _conv(self, key, typ, node, x, w4, stride, pad, dil, groups, in_hw, in_c):
        o, ipg, kh, kw = w4.shape
        if in_c != ipg * groups:
            raise IRError(f"NIR node '{key}' ({typ}): weight {w4.shape} with groups {groups} "
                          f"needs {ipg * groups} input channels, input has {in_c}")
        if o % groups:
            raise IRError(f"NIR node '{key}' ({typ}): {o} output channels not divisible by "
                          f"groups {groups}")
        (sh, sw), (dh, dw) = stride, dil
        h, wd = in_hw
        if isinstance(pad, str):
            if pad.lower() == "valid":
                ph = pw = 0
            elif pad.lower() == "same":
                if (sh, sw) != (1, 1):
                    raise IRError(f"NIR node '{key}' ({typ}): padding 'same' needs stride 1")
                ph, pw = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
            else:
                raise IRError(f"NIR node '{key}' ({typ}): padding '{pad}' not supported")
            same = pad.lower() == "same"
            ph_end, pw_end = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        else:
            ph, pw = pad
            same = False
        if same:
            oh, ow = h, wd
        else:
            oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise IRError(f"NIR node '{key}' ({typ}): output would be empty ({oh}x{ow})")
        wn = self.tensor(f"{_safe(key)}.weight", (o, kh, kw, ipg), w4.transpose(0, 2, 3, 1))
        b = node.bias if getattr(node, "bias", None) is not None else None
        bn = ""
        if b is not None:
            b = np.broadcast_to(_arr(b).ravel(), (o,)) if _arr(b).size in (1, o) else None
            if b is None:
                raise IRError(f"NIR node '{key}' ({typ}): bias shape does not match {o} channels")
            bn = self.tensor(f"{_safe(key)}.bias", (o,), b)
        attrs = dict(stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dilation_h=dh,
                     dilation_w=dw, groups=int(groups))
        if same and (ph_end, pw_end) != (ph, pw):    # 'same' with an even kernel
            attrs.update(pad_h_end=ph_end, pad_w_end=pw_end)
        out = self.op("SYN_CONV_2D", key, [x.ir, wn, bn], (1, oh, ow, o), attrs)
        return out, oh, ow, o

    def n_Conv2d(self, key, node, x):
        self.need(key, "Conv2d", x, 3, "(C, H, W)")
        w = _arr(node.weight)
        if w.ndim != 4:
            raise IRError(f"NIR node '{key}' (Conv2d): weight shape {w.shape} is not OIHW")
        pad = node.padding if isinstance(node.padding, str) else _pair(node.padding, "padding", key)
        out, oh, ow, o = self._conv(key, "Conv2d", node, x, w, _pair(node.stride, "stride", key),
                                    pad, _pair(node.dilation, "dilation", key),
                                    int(node.groups), x.nir_shape[1:], x.nir_shape[0])
        return _Val(out, (o, oh, ow))

    def n_Conv1d(self, key, node, x):
        self.need(key, "Conv1d", x, 2, "(C, W)")
        w = _arr(node.weight)
        if w.ndim != 3:
            raise IRError(f"NIR node '{key}' (Conv1d): weight shape {w.shape} is not OIW")
        s = _pair(node.stride, "stride", key)[0]
        d = _pair(node.dilation, "dilation", key)[0]
        pad = (node.padding if isinstance(node.padding, str)
               else (0, _pair(node.padding, "padding", key)[0]))
        out, oh, ow, o = self._conv(key, "Conv1d", node, x, w[:, :, None, :], (1, s), pad, (1, d),
                                    int(node.groups), (1, x.nir_shape[1]), x.nir_shape[0])
        return _Val(out, (o, ow))

    def _pool(self, key, typ, node, x, avg):
        self.need(key, typ, x, 3, "(C, H, W)")
        kh, kw = _pair(node.kernel_size, "kernel_size", key)
        stride = node.stride if node.stride is not None else node.kernel_size
        sh, sw = _pair(stride, "stride", key)
        ph, pw = _pair(node.padding if node.padding is not None else 0, "padding", key)
        c, h, w = x.nir_shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if oh <= 0 or ow <= 0:
            raise IRError(f"NIR node '{key}' ({typ}): output would be empty ({oh}x{ow})")
        if avg and ph == 0 and pw == 0:
            attrs = dict(padding="VALID", stride_h=sh, stride_w=sw, filter_h=kh, filter_w=kw)
            out = self.op("AVERAGE_POOL_2D", key, [x.ir], (1, oh, ow, c), attrs)
        else:
            attrs = dict(filter_h=kh, filter_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                         divisor=kh * kw if avg else 1)
            out = self.op("SUM_POOL_2D", key, [x.ir], (1, oh, ow, c), attrs)
        return _Val(out, (c, oh, ow))

    def n_SumPool2d(self, key, node, x):
        return self._pool(key, "SumPool2d", node, x, False)

    def n_AvgPool2d(self, key, node, x):
        return self._pool(key, "AvgPool2d", node, x, True)

    def n_Flatten(self, key, node, x):
        nd = len(x.nir_shape)
        start = node.start_dim % nd if nd else 0
        end = node.end_dim % nd if nd else 0
        if not (start == 0 and end == nd - 1):
            if start >= end:          # flattening nothing
                return x
            raise IRError(f"NIR node '{key}' (Flatten): only flattening a whole sample is "
                          f"supported (start_dim {node.start_dim}, end_dim {node.end_dim} of "
                          f"shape {x.nir_shape})")
        n = int(np.prod(x.nir_shape))
        if nd == 1:
            return x
        idx = np.arange(n).reshape(x.nir_shape)
        perm = idx.T.ravel() if nd == 2 else idx.transpose(1, 2, 0).ravel()
        out = self.op("RESHAPE", key, [x.ir], (1, n), dict(new_shape=[1, n]))
        return _Val(out, (n,), perm)

    # -- neurons ------------------------------------------------------------
    def neuron(self, key, typ, ir_typ, x, attrs, states):
        ir_attrs = {}
        for a, v in attrs.items():
            ir_attrs[a] = _compress(_to_ir_order(v, x)) if isinstance(v, np.ndarray) else v
        shape = _ir_shape(x.nir_shape)
        st = []
        for s in states:
            n = self.tensor(f"{_safe(key)}.{s}", shape)
            self.g.state.append(n)
            st.append(n)
        out = self.op(ir_typ, key, [x.ir, *st], shape, ir_attrs)
        return _Val(out, x.nir_shape, x.perm)

    def _check_shape(self, key, typ, x, *params):
        for p in params:
            p = _arr(p)
            try:
                np.broadcast_to(_per_channel_first(p, x.nir_shape), x.nir_shape)
            except ValueError:
                raise IRError(f"NIR node '{key}' ({typ}): parameter shape {p.shape} does not "
                              f"match its input {x.nir_shape}") from None

    def _gain(self, key, typ, r, ratio, tau):
        r = _arr(r)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = r * ratio
            # tau = inf (beta = 1): snnTorch writes r = tau/dt = inf, gain -> 1
            g = np.where(np.isinf(tau) & np.isinf(r), 1.0, g)
        if not np.all(np.isfinite(g)):
            raise IRError(f"NIR node '{key}' ({typ}): input gain r*dt/tau is not finite")
        return self.gain(key, typ, g)

    def n_LIF(self, key, node, x):
        self._check_shape(key, "LIF", x, node.tau, node.r, node.v_leak, node.v_threshold)
        beta, ratio, tau = self.decay(key, "LIF", node.tau)
        vr = node.v_reset if node.v_reset is not None else 0.0
        attrs = dict(beta=beta, gain=self._gain(key, "LIF", node.r, ratio, tau),
                     leak=ratio * _arr(node.v_leak), v_threshold=_arr(node.v_threshold),
                     v_reset=_arr(vr), reset=self.reset_for(key))
        return self.neuron(key, "LIF", "LIF", x, attrs, ["v"])

    def n_IF(self, key, node, x):
        self._check_shape(key, "IF", x, node.r, node.v_threshold)
        vr = node.v_reset if node.v_reset is not None else 0.0
        attrs = dict(gain=self.gain(key, "IF", _arr(node.r) * self.dt),
                     v_threshold=_arr(node.v_threshold), v_reset=_arr(vr),
                     reset=self.reset_for(key))
        return self.neuron(key, "IF", "IF", x, attrs, ["v"])

    def n_LI(self, key, node, x):
        self._check_shape(key, "LI", x, node.tau, node.r, node.v_leak)
        beta, ratio, tau = self.decay(key, "LI", node.tau)
        attrs = dict(beta=beta, gain=self._gain(key, "LI", node.r, ratio, tau),
                     leak=ratio * _arr(node.v_leak))
        return self.neuron(key, "LI", "LI", x, attrs, ["v"])

    def _cuba(self, key, typ, node, x):
        self._check_shape(key, typ, x, node.tau_syn, node.tau_mem, node.r, node.v_leak, node.w_in)
        alpha, rs, taus = self.decay(key, typ, node.tau_syn, "tau_syn")
        beta, rm, taum = self.decay(key, typ, node.tau_mem, "tau_mem")
        w_in = _arr(node.w_in)
        with np.errstate(invalid="ignore"):
            gs = np.where(np.isinf(taus) & np.isinf(w_in), 1.0, w_in * rs)
        return dict(alpha=alpha, gain_syn=self.gain(key, typ, gs), beta=beta,
                    gain=self._gain(key, typ, node.r, rm, taum), leak=rm * _arr(node.v_leak))

    def n_CubaLIF(self, key, node, x):
        attrs = self._cuba(key, "CubaLIF", node, x)
        vr = node.v_reset if node.v_reset is not None else 0.0
        attrs.update(v_threshold=_arr(node.v_threshold), v_reset=_arr(vr),
                     reset=self.reset_for(key))
        return self.neuron(key, "CubaLIF", "CUBA_LIF", x, attrs, ["i", "v"])

    def n_CubaLI(self, key, node, x):
        return self.neuron(key, "CubaLI", "CUBA_LI", x, self._cuba(key, "CubaLI", node, x),
                           ["i", "v"])

    def n_Threshold(self, key, node, x):
        self._check_shape(key, "Threshold", x, node.threshold)
        return self.neuron(key, "Threshold", "THRESHOLD", x,
                           dict(v_threshold=_arr(node.threshold)), [])


def from_snntorch(module, input_shape, dt: float = 1e-4, name: str | None = None) -> Graph:
    """An snnTorch module -> float IR Graph, through snntorch.export_to_nir.

    input_shape: one sample's shape, channel-first (e.g. (1, 8, 8) or (64,)). Works
    around the exporter's known problems: scalar beta/alpha/threshold are expanded to
    per-neuron tensors on a copy of the module (the exporter needs them), the batch
    dimension is ignored, and each Leaky/Synaptic's reset_mechanism is taken from the
    module (the exporter writes v_reset = 0 for all). Refused with the layer named:
    reset_mechanism "none", reset_delay=False, inhibition, graded spikes, state_quant,
    and modules other than those snnTorch exports."""
    import copy as _copy

    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    try:
        import snntorch.utils as sutils
    except ImportError:  # pragma: no cover
        sutils = None
    net = _copy.deepcopy(module).eval()
    neurons = {n: m for n, m in net.named_modules() if isinstance(m, (snn.Leaky, snn.Synaptic))}
    for n, m in neurons.items():
        kind = type(m).__name__
        if isinstance(m, (snn.RLeaky, snn.RSynaptic)):
            raise IRError(f"snnTorch layer '{n}' ({kind}) is recurrent: not supported")
        if m.reset_mechanism not in RESETS:
            raise IRError(f"snnTorch layer '{n}' ({kind}): reset_mechanism "
                          f"'{m.reset_mechanism}' is not supported (zero or subtract)")
        if not getattr(m, "reset_delay", True):
            raise IRError(f"snnTorch layer '{n}' ({kind}): reset_delay=False is not supported")
        if getattr(m, "inhibition", False) or getattr(m, "state_quant", False):
            raise IRError(f"snnTorch layer '{n}' ({kind}): inhibition / state_quant are not "
                          "supported")
        if float(getattr(m, "graded_spikes_factor", 1.0)) != 1.0:
            raise IRError(f"snnTorch layer '{n}' ({kind}): graded spikes are not supported")
        if not getattr(m, "init_hidden", False):
            raise IRError(f"snnTorch layer '{n}' ({kind}): export needs init_hidden=True")
    shapes: dict[str, tuple] = {}

    def hook(n):
        def f(mod, args):
            shapes.setdefault(n, tuple(args[0].shape[1:]))     # returns None: args unchanged
        return f
    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in neurons.items()]
    if sutils is not None:
        sutils.reset(net)
    with torch.no_grad():
        net(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    for n, m in neurons.items():
        for attr in ("beta", "alpha", "threshold"):
            v = getattr(m, attr, None)
            if isinstance(v, torch.Tensor) and v.numel() == 1 and n in shapes:
                full = torch.full(shapes[n], float(v.detach().reshape(-1)[0]))
                store = m._parameters if attr in m._parameters else m._buffers
                store[attr] = torch.nn.Parameter(full) if attr in m._parameters else full
    if sutils is not None:
        sutils.reset(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ng = export_to_nir(net, torch.zeros(1, *input_shape), ignore_dims=[0])
    if sutils is not None:
        sutils.reset(module)
    import nir
    reset = {}
    for k, node in ng.nodes.items():
        if isinstance(node, (nir.LIF, nir.CubaLIF)):
            m = neurons.get(k)
            if m is None:
                raise IRError(f"NIR node '{k}' ({type(node).__name__}) matches no snnTorch "
                              "module; use from_nir with an explicit reset")
            reset[k] = m.reset_mechanism
    return from_nir(ng, dt=dt, reset=reset, name=name or type(module).__name__.lower())

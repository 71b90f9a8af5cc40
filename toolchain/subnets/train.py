"""Train nested row-sparse subnets (DRESS, REFERENCE.md §5; issue #10 part 1).

    res = train_subnets(module_or_graph, (x, y) or (x, y, x_val, y_val), [0.5, 0.75, 0.9],
                        dense=False, alpha=None, epochs=10, lr=3e-3, rerank="magnitude",
                        seed=0, progress=True)

The model is a `torch.nn.Module` (inputs in its own layout, e.g. NCHW) or an IR
`Graph`, float or int8 (inputs NHWC, or NCHW for a graph read from ONNX/PyTorch).
A graph is rebuilt as a torch module with `toolchain.patch.torch_graph.GraphModule`
(the module `mcu patch train` trains), in float: an int8 graph is dequantized first
(`float_graph`). The input model is not modified.

Levels are sparsities (fraction of zeros per row), strictly increasing in [0, 1);
`dense=True` adds the dense backbone (sparsity 0) as level 0. Level k keeps
count_k = max(1, round((1 - s_k)·L)) entries in every row of length L of every
sparsified layer (a row is an output neuron of FC, or an output channel of CONV_2D
over kh·kw·cin). One importance order per row (|w|, largest first) is shared by all
levels, so a sparser level's non-zeros are a prefix of a denser one's. With
rerank="magnitude" the order is recomputed from the trained weights at the start of
every epoch but the first and the last quarter (which keep the masks fixed so the
weights settle); rerank="none" keeps the initial order.

Joint training: every batch runs every level and minimises Σ_k α_k · CE(f(x; W ⊙ m_k))
(α normalised to sum 1, uniform by default; `distill=β` optionally adds in-place
distillation from the densest level). Weights are shared; per level are
- every conv/FC bias (the IR path: every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
  bias, a zero one is added where a layer has none; BN is already folded there),
- every BatchNorm's affine parameters and running statistics (switchable BN: the
  functional call swaps them in per level), so each level folds into its own graph,
- one scale per row of every sparsified layer (row_scale=True), which folds into the
  level's weights like a BN factor (and is all a folded graph has to re-normalise).

Layers left dense (listed in `res.layers` with the reason, and printed): depthwise and
grouped convolutions, rows shorter than `min_row` (16: with 8-bit column indices a
short row saves little and the per-row overhead dominates), weights shared by several
layers, layers whose exported weights cannot be traced back to the module's.

The result (`SubnetResult`) has one float IR graph per level (masked weights, that
level's biases; the torch path exports each level through `converters.from_torch`,
which folds that level's BN), the per-layer shared importance order, counts, masks
and shared values in IR layout, and the per-level accuracy after every epoch (epoch 0:
magnitude pruning, before any training). For a shared store (one int8 value per
weight): every conv/FC layer found in the graph has `values` (IR shape, shared by all
levels) and `row_scale[k]` (per output channel) with, in `res.graphs[k]`,
    sparsified layer:  weights = values ⊙ mask_k ⊙ row_scale[k][row]
    dense layer:       weights = values ⊙ row_scale[k][channel]   (DW: channel = axis 3)
checked on export; row_scale folds into level k's per-channel weight scales. `order`
[rows, row_len] lists IR column indices (the row flattened in C order of the IR shape:
kh, kw, cin for OHWI) most important first; level k uses its first counts[k].
`res.net(x, k)` runs level k in torch (inputs in the module's layout; NHWC for graphs).
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from toolchain.errors import McuError
from toolchain.ir.graph import Graph, IRError, Quant, Tensor

MIN_ROW = 16
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class SubnetTrainError(McuError):
    """Bad levels, α, data or options for subnet training (one line)."""


# -- levels ----------------------------------------------------------------------------------
def parse_levels(levels, dense: bool = False) -> list[float]:
    """Validate sparsity levels (a sequence or "0.5,0.75,0.9"); with dense, prepend 0.0.
    Strictly increasing, each in [0, 1)."""
    if isinstance(levels, str):
        try:
            vals = [float(v) for v in levels.split(",") if v.strip()]
        except ValueError:
            raise SubnetTrainError(f"levels '{levels}': expected comma-separated sparsities "
                                   "such as 0.5,0.75,0.9") from None
    else:
        try:
            vals = [float(v) for v in levels]
        except (TypeError, ValueError):
            raise SubnetTrainError(f"levels {levels!r}: expected a list of sparsities such as "
                                   "[0.5, 0.75, 0.9]") from None
    shown = ",".join(f"{v:g}" for v in vals)
    if not vals:
        raise SubnetTrainError("no levels given; expected sparsities such as 0.5,0.75,0.9")
    bad = [v for v in vals if not (0.0 <= v < 1.0) or math.isnan(v)]
    if bad:
        raise SubnetTrainError(f"levels {shown}: {bad[0]:g} is outside [0, 1) (a level is the "
                               "fraction of zeros per row, e.g. 0.5,0.75,0.9)")
    for a, b in zip(vals, vals[1:]):
        if not b > a:
            raise SubnetTrainError(f"levels {shown}: not strictly increasing ({a:g} then {b:g}); "
                                   "give sparsities from densest to sparsest, e.g. 0.5,0.75,0.9")
    if dense:
        if vals[0] == 0.0:
            raise SubnetTrainError(f"levels {shown} already start with the dense level 0; "
                                   "drop it or drop dense")
        vals = [0.0] + vals
    return vals


def row_count(row_len: int, sparsity: float) -> int:
    """Entries kept per row of length row_len at a sparsity."""
    return int(min(row_len, max(1, round((1.0 - sparsity) * row_len))))


def _alphas(alpha, k: int) -> list[float]:
    if alpha is None:
        return [1.0 / k] * k
    if isinstance(alpha, str):
        try:
            alpha = [float(v) for v in alpha.split(",") if v.strip()]
        except ValueError:
            raise SubnetTrainError(f"alpha '{alpha}': expected comma-separated weights") from None
    a = [float(v) for v in alpha]
    if len(a) != k:
        raise SubnetTrainError(f"alpha has {len(a)} weights for {k} levels (dense counts as a "
                               "level)")
    if any(not (v >= 0) for v in a) or sum(a) <= 0:
        raise SubnetTrainError(f"alpha {','.join(f'{v:g}' for v in a)}: weights must be ≥ 0 "
                               "with a positive sum")
    s = sum(a)
    return [v / s for v in a]


# -- result ----------------------------------------------------------------------------------
@dataclass
class SubnetLayer:
    name: str                        # torch module name, or IR layer name
    op_type: str                     # CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / module type
    sparse: bool
    reason: str = ""                 # why it was left dense
    ir_layer: str | None = None      # IR op name in every level's graph
    weight: str | None = None        # IR weight tensor name in every level's graph
    shape: tuple[int, ...] = ()      # IR weight shape
    rows: int = 0
    row_len: int = 0
    counts: list[int] = field(default_factory=list)   # entries per row, per level
    order: np.ndarray | None = None  # [rows, row_len] IR column indices, most important first
    values: np.ndarray | None = None # shared float weights, IR shape (unmasked)
    row_scale: np.ndarray | None = None   # [levels, rows]: level weights = values·mask·scale
    #   (dense layers too, when found in the graph: per output channel, with mask = 1)
    weights: int = 0                 # number of weights of the layer
    param: str = ""                  # the weight's name in the trained module (res.net.base)
    probe_index: int = -1            # torch path: ordinal among the exported conv/FC ops

    def summary(self) -> dict:
        d = dict(name=self.name, op=self.op_type, sparse=self.sparse)
        if self.sparse:
            d.update(ir_layer=self.ir_layer, weight=self.weight, shape=list(self.shape),
                     rows=self.rows, row_len=self.row_len, counts=list(self.counts))
        else:
            d.update(reason=self.reason)
        d.update(weights=self.weights)
        return d


@dataclass
class SubnetResult:
    levels: list[float]                       # sparsity of each level (0.0 = dense)
    graphs: list[Graph]                       # float IR graph per level
    layers: list[SubnetLayer]
    masks: list[dict[str, np.ndarray]]        # per level: IR weight name -> bool, IR shape
    history: list[dict]                       # per epoch: epoch, loss, accuracy per level
    alpha: list[float]
    net: Any = None                           # the trained NestedNet (torch)
    stats: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> list[float]:
        return list(self.history[-1]["accuracy"]) if self.history else []

    @property
    def sparse_layers(self) -> list[SubnetLayer]:
        return [l for l in self.layers if l.sparse]

    @property
    def dense_layers(self) -> list[tuple[str, str]]:
        return [(l.name, l.reason) for l in self.layers if not l.sparse]

    def nonzeros(self) -> list[int]:
        """Conv/FC weights used per level (sparsified layers' kept entries + dense layers)."""
        dense = sum(l.weights for l in self.layers if not l.sparse)
        return [dense + sum(l.rows * l.counts[k] for l in self.sparse_layers)
                for k in range(len(self.levels))]

    def summary(self) -> dict:
        return dict(levels=list(self.levels), alpha=list(self.alpha),
                    accuracy=self.accuracy, nonzeros=self.nonzeros(),
                    layers=[l.summary() for l in self.layers], history=self.history,
                    **self.stats)


# -- the trainable nested module ------------------------------------------------------------
def _nested_net_cls():
    import torch
    from torch import nn
    from torch.func import functional_call

    class NestedNet(nn.Module):
        """`base` with shared weights, per-level masks on the sparsified weights and
        per-level copies of the biases / BN parameters and buffers. forward(x, level)."""

        def __init__(self, base, sparse: dict[str, tuple[int, int]], per_level: list[str],
                     levels: list[float], row_scale: bool = True):
            super().__init__()
            self.base = base
            self.levels = list(levels)
            self.sparse = dict(sparse)                        # param -> (rows, row_len)
            self.counts = {p: [row_count(L, s) for s in levels] for p, (_, L) in sparse.items()}
            own = dict(base.named_parameters())
            own.update(dict(base.named_buffers()))
            self.per_level_names = list(per_level)
            self.lvl_params = nn.ModuleList()
            self.lvl_buffers: list[dict[str, torch.Tensor]] = []
            self._pnames: list[str] = []
            for _ in levels:
                pl = nn.ParameterList()
                bufs = {}
                names = []
                for n in per_level:
                    t = own[n].detach().clone()
                    if isinstance(own[n], nn.Parameter):
                        pl.append(nn.Parameter(t))
                        names.append(n)
                    else:
                        bufs[n] = t
                self.lvl_params.append(pl)
                self.lvl_buffers.append(bufs)
                self._pnames = names
            # per level, per sparsified layer: one learned scale per row (what a folded BN
            # gives a conv; for FC and for graphs whose BN is already folded it lets each
            # level re-normalise its rows). It folds into the level's weights.
            self.row_scales = nn.ModuleList(
                nn.ParameterList(nn.Parameter(torch.ones(r)) for r, _ in self.sparse.values())
                if row_scale else nn.ParameterList() for _ in levels)
            self.order: dict[str, torch.Tensor] = {}
            self.masks: list[dict[str, torch.Tensor]] = [{} for _ in levels]
            self.rerank()

        def weight(self, p):
            return self.base.get_parameter(p)

        @torch.no_grad()
        def rerank(self):
            """Importance order per row from |w| (stable: ties keep column order), then the
            nested masks: level k keeps the first counts[k] entries of every row."""
            for p, (rows, L) in self.sparse.items():
                w = self.weight(p).detach().reshape(rows, L).abs()
                order = torch.from_numpy(np.argsort(-w.numpy(), axis=1, kind="stable"))
                self.order[p] = order
                for k, c in enumerate(self.counts[p]):
                    m = torch.zeros(rows, L)
                    m.scatter_(1, order[:, :c], 1.0)
                    self.masks[k][p] = m.reshape(self.weight(p).shape)

        def state_for(self, level: int) -> dict:
            """Tensors that replace the base module's for one level."""
            d = {}
            rs = list(self.row_scales[level])
            for i, p in enumerate(self.sparse):
                w = self.weight(p) * self.masks[level][p]
                if rs:
                    w = w * rs[i].reshape((-1,) + (1,) * (w.dim() - 1))
                d[p] = w
            d.update(zip(self._pnames, self.lvl_params[level]))
            d.update(self.lvl_buffers[level])
            return d

        def forward(self, x, level: int = 0):
            return functional_call(self.base, self.state_for(level), (x,), strict=False)

        def shared_parameters(self):
            skip = set(self.per_level_names)
            return [p for n, p in self.base.named_parameters() if n not in skip]

        @torch.no_grad()
        def module_for(self, level: int):
            """A copy of the base module carrying one level's masked weights, biases and
            BN state (eval mode): the plain module the level's graph is exported from."""
            m = copy.deepcopy(self.base).eval()
            own = dict(m.named_parameters())
            own.update(dict(m.named_buffers()))
            for n, t in self.state_for(level).items():
                own[n].copy_(t.detach())
            return m

    return NestedNet


# -- data ------------------------------------------------------------------------------------
def _split_data(data):
    if isinstance(data, dict):
        parts = [data.get("x"), data.get("y"), data.get("x_val"), data.get("y_val")]
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
        parts = list(data) + [None] * (4 - len(data))
    else:
        raise SubnetTrainError("data: expected (x, y) or (x, y, x_val, y_val) arrays, or a dict "
                               "with x, y[, x_val, y_val]")
    x, y, xv, yv = parts
    if x is None or y is None:
        raise SubnetTrainError("data: training needs inputs x and integer labels y")
    out = []
    for a, b, what in ((x, y, "training"), (xv, yv, "validation")):
        if a is None and b is None:
            out += [None, None]
            continue
        if a is None or b is None:
            raise SubnetTrainError(f"data: {what} set needs both inputs and labels")
        a = np.ascontiguousarray(np.asarray(a, np.float32))
        b = np.asarray(b)
        if b.ndim != 1 or not np.issubdtype(b.dtype, np.integer):
            raise SubnetTrainError(f"data: {what} labels must be a 1-D integer array, got "
                                   f"{b.dtype}{list(b.shape)}")
        if len(a) != len(b) or len(a) == 0:
            raise SubnetTrainError(f"data: {what} set has {len(a)} inputs and {len(b)} labels")
        out += [a, b.astype(np.int64)]
    return out


def _graph_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """x in the graph's IR layout (NHWC); NCHW accepted for a graph read from ONNX."""
    name = graph.inputs[0]
    ir = tuple(graph.t(name).shape[1:])
    if tuple(x.shape[1:]) == ir:
        return x
    if graph.meta.get("input_layouts", {}).get(name) == "NCHW" and x.ndim == 4:
        user = tuple(graph.meta.get("onnx_input_shapes", {}).get(name, (0,) * 4)[1:])
        if tuple(x.shape[1:]) == user:
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    raise SubnetTrainError(f"data: inputs have shape {list(x.shape[1:])} per sample; model input "
                           f"'{name}' is {list(ir)} (NHWC)")


# -- the IR path -----------------------------------------------------------------------------
def float_graph(graph: Graph) -> Graph:
    """A float copy of an IR graph: constants dequantized, int8/int32 activations float32,
    QUANTIZE/DEQUANTIZE ops removed. A float graph is copied unchanged."""
    g = copy.deepcopy(graph)
    rename: dict[str, str] = {}
    ops = []
    for op in g.ops:
        op.inputs = [rename.get(n, n) for n in op.inputs]
        if op.type in ("QUANTIZE", "DEQUANTIZE"):
            rename[op.outputs[0]] = op.inputs[0]
            continue
        ops.append(op)
    g.ops = ops
    g.outputs = [rename.get(n, n) for n in g.outputs]
    for n in rename:
        if n not in g.outputs:
            g.tensors.pop(n, None)
    for t in g.tensors.values():
        if t.quant is None:
            continue
        if t.data is not None:
            shape = [1] * t.data.ndim
            if t.quant.per_channel:
                shape[t.quant.axis] = -1
            d = t.data.astype(np.float64) - t.quant.zero_point.reshape(shape)
            t.data = (d * t.quant.scale.reshape(shape)).astype(np.float32)
        t.dtype = "float32"
        t.quant = None
    return g


def _with_biases(g: Graph) -> Graph:
    """Every CONV/DW/FC gets a bias tensor of its own (zeros where it had none or shared
    one), so each level can carry its own biases."""
    used: set[str] = set()
    for op in g.ops:
        if op.type not in WEIGHT_OPS:
            continue
        w = g.t(op.inputs[1])
        oc = w.shape[3] if op.type == "DEPTHWISE_CONV_2D" else w.shape[0]
        b = op.inputs[2] if len(op.inputs) > 2 else ""
        if b and b not in used:
            used.add(b)
            continue
        data = g.t(b).data.astype(np.float32).copy() if b else np.zeros(oc, np.float32)
        nb = g.add_tensor(Tensor(g.unique_name(f"{op.name or 'layer'}.bias"), (oc,), "float32",
                                 data=data))
        op.inputs = list(op.inputs[:2]) + [nb.name] + list(op.inputs[3:])
        used.add(nb.name)
    return g


def _graph_setup(graph: Graph, min_row: int):
    from toolchain.patch.store import store_order
    from toolchain.patch.torch_graph import GraphModule
    if len(graph.inputs) != 1:
        raise SubnetTrainError(f"{graph.name}: subnet training supports single-input models only")
    fg = _with_biases(float_graph(graph))
    view = copy.deepcopy(fg)
    for op in view.ops:                     # GraphModule reads store tensors through a Quant
        if op.type in WEIGHT_OPS:
            for n in op.inputs[1:3]:
                view.t(n).quant = Quant.per_tensor(1.0, 0)
    base = GraphModule(view, fake_quant=False, weight_fake_quant=False)
    index = {n: i for i, n in enumerate(store_order(view))}
    readers: dict[str, int] = {}
    for op in fg.ops:
        for n in op.inputs:
            if n:
                readers[n] = readers.get(n, 0) + 1
    cands, per_level = [], []
    for op in fg.ops:
        if op.type not in WEIGHT_OPS:
            continue
        wn, bn = op.inputs[1], op.inputs[2]
        per_level.append(f"params.{index[bn]}")
        w = fg.t(wn)
        lay = SubnetLayer(op.name, op.type, False, ir_layer=op.name, weight=wn,
                          shape=tuple(w.shape), weights=w.size)
        if op.type == "DEPTHWISE_CONV_2D":
            lay.reason = (f"depthwise: each output channel reads only its own "
                          f"{w.shape[1]}x{w.shape[2]} window")
        else:
            lay.rows, lay.row_len = w.shape[0], int(np.prod(w.shape[1:]))
            if readers.get(wn, 0) > 1:
                lay.reason = "weights shared by several layers"
            elif lay.row_len < min_row:
                lay.reason = (f"row length {lay.row_len} < {min_row}: indices would cost "
                              "more than the zeros save")
            else:
                lay.sparse = True
        lay.param = f"params.{index[wn]}"
        lay.probe_index = len(cands)
        cands.append((lay, lay.param, np.arange(w.size)))

    def export(net, level: int) -> Graph:
        g = copy.deepcopy(fg)
        st = net.state_for(level)
        for op in g.ops:
            if op.type not in WEIGHT_OPS:
                continue
            for n in op.inputs[1:3]:
                key = f"params.{index[n]}"
                if key in st:
                    g.t(n).data = st[key].detach().numpy().astype(np.float32).reshape(g.t(n).shape)
                else:
                    g.t(n).data = base.params[str(index[n])].detach().numpy().astype(
                        np.float32).reshape(g.t(n).shape)
        return g

    return base, cands, per_level, export, "logits", fg.name


# -- the torch path --------------------------------------------------------------------------
def _torch_setup(module, x_example: np.ndarray, min_row: int):
    import torch
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from converters.torch_frontend import from_torch
    base = copy.deepcopy(module)
    cands, per_level = [], []
    for name, mod in base.named_modules():
        if isinstance(mod, _BatchNorm):
            per_level += [f"{name}.{n}" for n, _ in mod.named_parameters(recurse=False)]
            per_level += [f"{name}.{n}" for n, b in mod.named_buffers(recurse=False)
                          if b is not None]
            continue
        if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
            if getattr(mod, "bias", None) is not None:
                per_level.append(f"{name}.bias")
            w = mod.weight
            lay = SubnetLayer(name, type(mod).__name__, False, weights=w.numel())
            if isinstance(mod, nn.Linear):
                lay.rows, lay.row_len = w.shape[0], w.shape[1]
            elif isinstance(mod, nn.Conv2d) and mod.groups == 1:
                lay.rows, lay.row_len = w.shape[0], int(np.prod(w.shape[1:]))
            elif isinstance(mod, nn.Conv2d) and mod.groups == mod.in_channels:
                lay.reason = (f"depthwise: each output channel reads only its own "
                              f"{w.shape[2]}x{w.shape[3]} window")
            elif isinstance(mod, nn.Conv2d):
                lay.reason = f"grouped convolution (groups={mod.groups})"
            else:
                lay.reason = f"{type(mod).__name__} (only Conv2d and Linear are sparsified)"
            if lay.rows and not lay.reason:
                if lay.row_len < min_row:
                    lay.reason = (f"row length {lay.row_len} < {min_row}: indices would cost "
                                  "more than the zeros save")
                else:
                    lay.sparse = True
            lay.param = f"{name}.weight"
            cands.append([lay, lay.param, None])
    probed = [c for c in cands if c[0].sparse or isinstance(base.get_submodule(c[1][:-7]),
                                                              (nn.Conv2d, nn.Linear))]
    if any(c[0].sparse for c in probed):
        _probe(base, probed, x_example, from_torch)
    cands = [tuple(c) for c in cands]
    example = x_example[:1]

    def export(net, level: int) -> Graph:
        return from_torch(net.module_for(level), example)

    return base, cands, per_level, export, "auto", type(module).__name__.lower()


def _probe(base, probed, x_example, from_torch) -> None:
    """Find each sparsified torch weight in the exported IR graph and the position of every
    element there (front ends transpose to OHWI and permute FC columns after a flatten):
    export a copy whose probed weights are 1..N (distinct, exact in float32) with every BN
    an identity, and read the values back. Fills ir_layer, weight, shape and pos (torch
    flat index -> IR flat index); a weight that cannot be traced is left dense."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm
    m = copy.deepcopy(base).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, _BatchNorm):
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
                if mod.running_var is not None:
                    mod.running_mean.zero_()
                    mod.running_var.fill_(1.0 - mod.eps)
        offs, off = [], 0
        for c in probed:
            p = m.get_parameter(c[1])
            offs.append(off)
            p.copy_(torch.arange(off + 1, off + 1 + p.numel(), dtype=torch.float32).reshape(p.shape))
            off += p.numel()
    if off >= 2 ** 24:
        raise SubnetTrainError(f"model has {off} weights to sparsify; the layer probe handles "
                               "up to 16,777,215")
    g = from_torch(m, x_example[:1])
    offs = np.array(offs + [off])
    found: dict[int, tuple] = {}
    for j, op in enumerate([o for o in g.ops if o.type in WEIGHT_OPS]):
        v = g.t(op.inputs[1]).data.astype(np.float64).reshape(-1)
        r = np.round(v)
        if not len(v) or np.abs(v - r).max() > 0.25 or r.min() < 1 or r.max() > off:
            continue
        idx = r.astype(np.int64) - 1
        li = int(np.searchsorted(offs, idx.min(), side="right") - 1)
        if idx.max() >= offs[li + 1]:
            continue
        if li in found:                      # the module runs more than once
            found[li] = None
            continue
        local = idx - offs[li]
        n = offs[li + 1] - offs[li]
        if len(local) != n or len(np.unique(local)) != n:
            continue
        pos = np.empty(n, np.int64)
        pos[local] = np.arange(n)
        found[li] = (j, op, pos)
    for li, c in enumerate(probed):
        lay = c[0]
        if found.get(li) is None:            # dense layers simply get no IR details
            if lay.sparse:
                lay.sparse = False
                lay.reason = ("weights shared by several layers" if li in found else
                              "its weights cannot be traced in the exported graph")
            continue
        j, op, pos = found[li]
        L = lay.row_len
        if lay.sparse and (op.type not in ("CONV_2D", "FULLY_CONNECTED") or
                           not np.array_equal(pos // L, np.arange(len(pos)) // L)):
            lay.sparse = False
            lay.reason = f"exported as {op.type} with its rows rearranged"
            continue
        lay.op_type = op.type
        lay.ir_layer, lay.weight = op.name, op.inputs[1]
        lay.shape = tuple(g.t(op.inputs[1]).shape)
        lay.probe_index = j
        c[2] = pos


# -- training --------------------------------------------------------------------------------
def train_subnets(module_or_graph, data, levels, *, dense: bool = False, alpha=None,
                  epochs: int = 10, lr: float = 3e-3, rerank: str = "magnitude", seed: int = 0,
                  progress: bool = True, batch: int = 64, min_row: int = MIN_ROW,
                  row_scale: bool = True, distill: float = 0.0,
                  output: str = "auto") -> SubnetResult:
    """Jointly train nested row-sparse subnets; see the module docstring.
    output: "logits", "probs" (the model ends in a softmax) or "auto" (graphs: logits,
    the trailing SOFTMAX is dropped; modules: probabilities if every output row is ≥ 0
    and sums to 1 on the first batch). distill: in-place distillation weight β: every level
    but the densest minimises (1−β)·CE + β·KL(densest level's prediction ‖ its own);
    0 (default) is the plain weighted loss Σ_k α_k·CE_k."""
    import torch
    from tqdm.auto import tqdm
    lv = parse_levels(levels, dense)
    K = len(lv)
    al = _alphas(alpha, K)
    if rerank not in ("magnitude", "none"):
        raise SubnetTrainError(f"rerank '{rerank}': expected magnitude or none")
    if int(epochs) != epochs or epochs < 0:
        raise SubnetTrainError(f"epochs {epochs}: expected an integer ≥ 0")
    if not 0.0 <= float(distill) <= 1.0:
        raise SubnetTrainError(f"distill {distill}: expected a weight in [0, 1]")
    if output not in ("auto", "logits", "probs"):
        raise SubnetTrainError(f"output '{output}': expected auto, logits or probs")
    x, y, xv, yv = _split_data(data)
    is_graph = isinstance(module_or_graph, Graph)
    if is_graph:
        x = _graph_inputs(module_or_graph, x)
        if xv is not None:
            xv = _graph_inputs(module_or_graph, xv)
    elif not isinstance(module_or_graph, torch.nn.Module):
        raise SubnetTrainError(f"model: expected a torch.nn.Module or an IR Graph, got "
                               f"{type(module_or_graph).__name__}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if is_graph:
        base, cands, per_level, export, out_kind, mname = _graph_setup(module_or_graph, min_row)
    else:
        base, cands, per_level, export, out_kind, mname = _torch_setup(module_or_graph, x, min_row)
    layers = [c[0] for c in cands]
    sparse = [c for c in cands if c[0].sparse]
    if not sparse:
        left = "; ".join(f"{l.name} ({l.reason})" for l in layers) or "no conv or FC layers"
        raise IRError(f"{mname}: nothing to sparsify: no CONV_2D or FULLY_CONNECTED layer with "
                      f"rows of ≥ {min_row} weights (left dense: {left})")
    NestedNet = _nested_net_cls()
    net = NestedNet(base, {c[1]: (c[0].rows, c[0].row_len) for c in sparse}, per_level, lv,
                    row_scale)
    for c in sparse:
        c[0].counts = list(net.counts[c[1]])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xe, ye = (torch.from_numpy(xv), torch.from_numpy(yv)) if xv is not None else (xt, yt)
    if output != "auto":
        out_kind = output
    elif out_kind == "auto":
        base.eval()
        with torch.no_grad():
            o = net(xt[:min(len(xt), 64)], 0)
        probs = bool((o >= 0).all()) and bool(torch.allclose(o.sum(-1), torch.ones(len(o)),
                                                                atol=1e-3))
        out_kind = "probs" if probs else "logits"

    def logp(o):
        if out_kind == "probs":
            return torch.log(o.clamp_min(1e-30))
        return torch.log_softmax(o, -1)

    def lossf(o, t):
        return torch.nn.functional.nll_loss(logp(o), t)

    def evaluate():
        base.eval()
        accs = []
        with torch.no_grad():
            for k in range(K):
                hit = 0
                for i in range(0, len(xe), 512):
                    hit += int((net(xe[i:i + 512], k).argmax(-1) == ye[i:i + 512]).sum())
                accs.append(hit / len(xe))
        return accs

    dense_note = "; ".join(f"{l.name} ({l.reason})" for l in layers if not l.sparse)
    def log(s):
        if progress:
            tqdm.write(s, file=sys.stderr)

    log(f"subnets: levels {', '.join(f'{s:.0%}' for s in lv)}; sparsified "
        f"{', '.join(c[0].name for c in sparse)}" + (f"; left dense: {dense_note}" if dense_note
                                                    else ""))
    history = [dict(epoch=0, loss=None, accuracy=evaluate())]

    def fmt(accs):
        return "  ".join(f"{s:.0%}: {a:.2%}" for s, a in zip(lv, accs))

    log(f"epoch 0 (magnitude pruning): {fmt(history[0]['accuracy'])}")
    params = net.shared_parameters() + [p for pl in net.lvl_params for p in pl] + \
        [p for pl in net.row_scales for p in pl]
    if epochs:
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        nb = -(-len(xt) // batch)
        freeze = epochs // 4
        bar = tqdm(total=epochs * nb, disable=not progress, unit="batch", desc="subnets",
                   mininterval=1.0,
                   leave=False)
        try:
            for ep in range(1, epochs + 1):
                if rerank == "magnitude" and 1 < ep <= epochs - freeze:
                    net.rerank()
                base.train()
                tot, cnt = 0.0, 0
                perm = torch.randperm(len(xt), generator=gen)
                for i in range(0, len(perm), batch):
                    b = perm[i:i + batch]
                    opt.zero_grad()
                    loss = 0.0
                    teacher = None
                    for k in range(K):
                        if not al[k] and not (distill and k == 0):
                            continue
                        o = net(xt[b], k)
                        lk = lossf(o, yt[b])
                        if distill and k == 0:
                            teacher = logp(o).detach()
                        elif distill:
                            kl = torch.nn.functional.kl_div(logp(o), teacher, log_target=True,
                                                            reduction="batchmean")
                            lk = (1 - distill) * lk + distill * kl
                        loss = loss + al[k] * lk
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(b)
                    cnt += len(b)
                    bar.update(1)
                sched.step()
                accs = evaluate()
                history.append(dict(epoch=ep, loss=tot / cnt, accuracy=accs))
                bar.set_postfix(loss=f"{tot / cnt:.3f}")
                log(f"epoch {ep}/{epochs}: loss {tot / cnt:.4f}  {fmt(accs)}")
        finally:
            bar.close()
    base.eval()
    graphs, masks = _finish(net, cands, export, lv, is_graph)
    for k, g in enumerate(graphs):
        g.meta = dict(g.meta)
        g.meta["subnet"] = dict(level=k, sparsity=lv[k], of=len(lv))
    stats = dict(epochs=int(epochs), lr=lr, rerank=rerank, seed=seed, batch=batch,
                 row_scale=bool(row_scale), distill=float(distill),
                 min_row=min_row, source="graph" if is_graph else "torch",
                 eval_set="validation" if xv is not None else "training", output=out_kind)
    return SubnetResult(lv, graphs, layers, masks, history, al, net, stats)


def _channel_scales(G: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares s per row of [rows, n] arrays with G ≈ s·V; returns (s, max error)."""
    den = (V * V).sum(1)
    s = np.where(den > 0, (G * V).sum(1) / np.where(den > 0, den, 1.0), 1.0)
    err = float(np.abs(G - s[:, None] * V).max()) if G.size else 0.0
    return s, err


def _finish(net, cands, export, lv, is_graph):
    """Export every level; fill each sparsified layer's IR-layout order, values, masks and
    per-level row scales (checked: level weights = values · mask · row scale), and each
    dense layer found in the graph its values and per-level output-channel scales."""
    K = len(lv)
    graphs = [export(net, k) for k in range(K)]
    masks: list[dict[str, np.ndarray]] = [{} for _ in range(K)]
    for lay, pname, pos in cands:
        if pos is None or lay.weight is None:
            continue
        if not is_graph:
            for g in graphs:
                wops = [o for o in g.ops if o.type in WEIGHT_OPS]
                if len(wops) <= lay.probe_index or wops[lay.probe_index].inputs[1] != lay.weight:
                    raise IRError(f"layer {lay.name}: the exported level graphs differ in "
                                  "structure from the probe export")
        w = net.base.get_parameter(pname).detach().numpy().astype(np.float32).reshape(-1)
        vals = np.empty(w.size, np.float32)
        vals[pos] = w
        tol = 1e-5
        if not lay.sparse:
            axis = 3 if lay.op_type == "DEPTHWISE_CONV_2D" else 0
            V = np.moveaxis(vals.reshape(lay.shape), axis, 0)
            V = V.reshape(V.shape[0], -1).astype(np.float64)
            rs = np.ones((K, V.shape[0]))
            for k, g in enumerate(graphs):
                G = np.moveaxis(g.t(lay.weight).data.astype(np.float64), axis, 0)
                rs[k], err = _channel_scales(G.reshape(V.shape), V)
                if err > tol * max(float(np.abs(G).max()), 1e-30) + 1e-12:
                    raise IRError(f"layer {lay.name}: level {k} weights in the exported graph "
                                  f"are not a per-channel scaling of the trained weights "
                                  f"(error {err:.3g})")
            lay.values, lay.row_scale = vals.reshape(lay.shape), rs
            continue
        rows, L = lay.rows, lay.row_len
        vals = vals.reshape(rows, L)
        r = np.arange(rows)[:, None]
        order = pos.reshape(rows, L)[r, net.order[pname].numpy()] - r * L
        lay.order = order.astype(np.int32)
        lay.values = vals.reshape(lay.shape)
        rs = np.ones((K, rows))
        for k, g in enumerate(graphs):
            G = g.t(lay.weight).data.astype(np.float64).reshape(rows, L)
            M = np.zeros((rows, L), bool)
            M[r, order[:, :lay.counts[k]]] = True
            rs[k], err = _channel_scales(G, np.where(M, vals.astype(np.float64), 0.0))
            if (G[~M] != 0).any() or err > tol * max(float(np.abs(G).max()), 1e-30) + 1e-12:
                raise IRError(f"layer {lay.name}: level {k} weights in the exported graph are not "
                              f"a per-row scaling of the masked trained weights (error {err:.3g})")
            masks[k][lay.weight] = M.reshape(lay.shape)
        lay.row_scale = rs
    return graphs, masks

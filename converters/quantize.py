"""Post-training int8 quantization of a float IR graph, to the TFLite int8 spec.

What comes out is what TensorFlow's TFLite converter produces with
`optimizations=[DEFAULT]`, a representative dataset, and int8 input/output:
- weights int8 symmetric (zero point 0), per output channel for CONV_2D (axis 0
  of OHWI) and DEPTHWISE_CONV_2D (axis 3 of 1HWO); FULLY_CONNECTED per tensor
  (per channel with per_channel_fc=True);
- activations int8 asymmetric per tensor, range widened to include 0, scale =
  (max - min) / 255, zero point = round(-128 - min / scale) clamped to int8
  (TFLite's GetAsymmetricQuantizationParams); scales rounded to float32 as the
  flatbuffer stores them;
- bias int32, scale = input_scale * weight_scale, zero point 0;
- ReLU/ReLU6 after CONV/DEPTHWISE/FC/ADD fused (the output range is then the
  clipped one, since calibration runs the fused float graph);
- SOFTMAX output scale 1/256, zero point -128;
- MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, PAD and CONCATENATION keep one
  quantization for inputs and output (TFLM copies or averages int8 values
  without requantizing): their tensors share one range (the union);
- int8 graph inputs and outputs (no QUANTIZE/DEQUANTIZE ops).

int16 activations (`activations="int16"`, TFLite's 16x8 mode): activations int16
symmetric (zero point 0, scale = max|range| / 32767), weights int8 as above (FULLY_CONNECTED
per tensor), biases int64 (scale input_scale * weight_scale), SOFTMAX output 1/32768 with
zero point 0; only ops with an int16 form (toolchain/ir/ops/int16.py) are accepted, any
other is refused naming op and layer before anything is quantized.

Calibration methods: "minmax" (observed range), "percentile" (the
[100-p, p] percentiles of each tensor, p=99.99 by default), "mse" (the clipping
range minimising the quantization mean squared error on the observed values).
"""
from __future__ import annotations

import copy

import numpy as np

from toolchain.ir.float_eval import run_float
from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Quant

# How each op is treated comes from its module in the op registry (OpDef.quant,
# toolchain/ir/ops): weight axis, fusable activation, shared or fixed quantization.
FUSABLE = tuple(n for n, d in ops.REGISTRY.items() if d.quant.fusable)
SAME_QUANT = tuple(n for n, d in ops.REGISTRY.items() if d.quant.same_quant)
METHODS = ("minmax", "percentile", "mse")
ACTIVATIONS = ("int8", "int16")


def _f32(x):
    return np.asarray(x, np.float32).astype(np.float64)


# -- graph transforms --------------------------------------------------------------
def fuse_activations(graph: Graph) -> Graph:
    """Fold RELU/RELU6 ops into a preceding CONV/DEPTHWISE/FC/ADD whose output only
    feeds them. Returns a new graph."""
    g = copy.deepcopy(graph)
    changed = True
    while changed:
        changed = False
        prod, cons = g.producers(), g.consumers()
        for op in g.ops:
            d = ops.get(op.type)
            if d is None or d.quant.fused_as is None:
                continue
            src = op.inputs[0]
            p = prod.get(src)
            if (p is None or p.type not in FUSABLE
                    or p.attrs.get("fused_activation", "NONE") != "NONE"
                    or len(cons.get(src, [])) != 1 or src in g.outputs):
                continue
            p.attrs["fused_activation"] = d.quant.fused_as
            # the fused op now writes the activation's output tensor
            p.outputs = [op.outputs[0] if o == src else o for o in p.outputs]
            g.ops.remove(op)
            del g.tensors[src]
            changed = True
            break
    return g


# -- calibration ---------------------------------------------------------------------
def _feeds(graph: Graph, calib) -> dict[str, np.ndarray]:
    if isinstance(calib, dict):
        feeds = {k: np.asarray(v, np.float32) for k, v in calib.items()}
    else:
        if len(graph.inputs) != 1:
            raise IRError(f"graph has {len(graph.inputs)} inputs; pass calibration data as a "
                          "dict {input name: array}")
        feeds = {graph.inputs[0]: np.asarray(calib, np.float32)}
    for name in graph.inputs:
        if name not in feeds:
            raise IRError(f"no calibration data for input '{name}'")
        want = tuple(graph.t(name).shape[1:])
        x = feeds[name]
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise IRError(f"calibration data for input '{name}' has shape {tuple(x.shape)}; "
                          f"expected (N, {', '.join(map(str, want))})")
        if not np.isfinite(x).all():
            raise IRError(f"calibration data for input '{name}' contains NaN or inf")
    return feeds


class _Stats:
    def __init__(self, keep_samples: bool, cap: int = 1 << 20, seed: int = 0):
        self.lo, self.hi, self.samples = {}, {}, {}
        self.keep, self.cap = keep_samples, cap
        self.rng = np.random.default_rng(seed)

    def update(self, name, v, frac):
        v = v.reshape(-1)
        lo, hi = float(v.min()), float(v.max())
        self.lo[name] = min(lo, self.lo.get(name, lo))
        self.hi[name] = max(hi, self.hi.get(name, hi))
        if self.keep:
            k = max(1, int(self.cap * frac))
            if v.size > k:
                v = v[self.rng.choice(v.size, k, replace=False)]
            self.samples.setdefault(name, []).append(v.astype(np.float32))


def _mse_range(v: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return lo, hi
    if v.size > 1 << 15:
        v = v[np.random.default_rng(0).choice(v.size, 1 << 15, replace=False)]
    best, best_err = (lo, hi), np.inf
    for a in np.linspace(0.2, 1.0, 41):
        for b in (np.linspace(0.2, 1.0, 9) if lo < 0 and hi > 0 else [a]):
            clo, chi = lo * (b if lo < 0 and hi > 0 else a), hi * a
            s, zp = asymmetric_params(clo, chi)
            q = np.clip(np.round(v / s) + zp, -128, 127)
            err = float(np.mean(((q - zp) * s - v) ** 2))
            if err < best_err:
                best, best_err = (clo, chi), err
    return best


def calibrate(graph: Graph, calib, method: str = "minmax", percentile: float = 99.99,
              batch: int = 256) -> dict[str, tuple[float, float]]:
    """Run the float graph on the calibration data; return (lo, hi) per activation."""
    if method not in METHODS:
        raise IRError(f"unknown calibration method '{method}'; choose from {', '.join(METHODS)}")
    feeds = _feeds(graph, calib)
    n = len(next(iter(feeds.values())))
    if n == 0:
        raise IRError("calibration data is empty")
    st = _Stats(keep_samples=method != "minmax")
    for s in range(0, n, batch):
        part = {k: v[s:s + batch] for k, v in feeds.items()}
        for name, val in run_float(graph, part, keep_intermediates=True).items():
            st.update(name, val, len(next(iter(part.values()))) / n)
    ranges = {}
    for name in st.lo:
        lo, hi = st.lo[name], st.hi[name]
        if method == "percentile":
            v = np.concatenate(st.samples[name])
            lo, hi = (float(np.percentile(v, 100 - percentile)),
                      float(np.percentile(v, percentile)))
        elif method == "mse":
            lo, hi = _mse_range(np.concatenate(st.samples[name]), lo, hi)
        ranges[name] = (lo, hi)
    return ranges


# -- parameters ----------------------------------------------------------------------
def asymmetric_params(lo: float, hi: float) -> tuple[float, int]:
    """TFLite GetAsymmetricQuantizationParams for int8: (scale, zero_point); the zero
    point rounds half away from zero (std::round)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return 1.0, 0 if lo == 0 else -128
    scale = float(_f32((hi - lo) / 255.0))
    zp_from_min = -128 - lo / scale
    zp = int(np.clip(np.sign(zp_from_min) * np.floor(abs(zp_from_min) + 0.5), -128, 127))
    return scale, zp


def symmetric_int16_params(lo: float, hi: float) -> tuple[float, int]:
    """int16 activation parameters (16x8): symmetric, zero point 0, max|x| -> 32767."""
    m = max(abs(float(lo)), abs(float(hi)))
    if m < 1e-12:
        return 1.0, 0
    return float(_f32(m / 32767.0)), 0


def _qrange(dtype: str) -> tuple[int, int]:
    return (-32768, 32767) if dtype == "int16" else (-128, 127)


def symmetric_weights(w: np.ndarray, axis: int | None):
    """Per-channel (axis) or per-tensor (None) symmetric int8: (q, scales)."""
    if axis is None:
        m = np.array([np.abs(w).max()])
    else:
        m = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = _f32(np.where(m > 0, m / 127.0, 1.0))
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


class _UnionFind:
    def __init__(self):
        self.p = {}

    def find(self, a):
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        self.p[self.find(a)] = self.find(b)


# -- the pass --------------------------------------------------------------------------
def quantize(graph: Graph, calib, method: str = "minmax", percentile: float = 99.99,
             per_channel_fc: bool = False, batch: int = 256, activations: str = "int8") -> Graph:
    """Float IR graph + calibration inputs (N, ...) in the graph's input layout (NHWC) ->
    int8 IR graph (TFLite int8 spec), or with activations="int16" the 16x8 graph (int16
    activations, int8 weights, int64 biases). The float graph is not modified."""
    if graph.is_quantized:
        raise IRError("graph is already quantized")
    if activations not in ACTIVATIONS:
        raise IRError(f"unknown activation type '{activations}'; choose from "
                      f"{', '.join(ACTIVATIONS)}")
    a16 = activations == "int16"
    if a16 and per_channel_fc:
        raise IRError("int16 activations take per-tensor FULLY_CONNECTED weights (TFLite "
                      "Micro's int16 FULLY_CONNECTED has one multiplier)")
    act_dtype = activations
    qlo, qhi = _qrange(act_dtype)
    act_params = symmetric_int16_params if a16 else asymmetric_params
    for t in graph.tensors.values():
        if not t.is_const and t.dtype != "float32":
            raise IRError(f"tensor '{t.name}' has dtype {t.dtype}; quantize needs a float32 graph")
    g = fuse_activations(graph)
    if a16:
        ops.int16.check_int16_graph(_as_int16_probe(g), "the quantizer")
    ranges = calibrate(g, calib, method, percentile, batch)
    cons = g.consumers()

    # activation tensors that must share one quantization
    uf = _UnionFind()
    fixed: dict[str, tuple[float, int]] = {}
    for op in g.ops:
        rule = ops.require(op.type, op.name, "the quantizer").quant
        if rule.same_quant:
            data_ins = op.inputs if rule.same_quant == "all" else op.inputs[:1]
            for i in data_ins:
                if i:
                    uf.union(i, op.outputs[0])
        if rule.fixed_output is not None:
            fixed[op.outputs[0]] = (ops.int16.SOFTMAX_OUTPUT_QUANT
                                    if a16 and op.type == "SOFTMAX" else rule.fixed_output)
    groups: dict[str, list[str]] = {}
    for name in ranges:
        groups.setdefault(uf.find(name), []).append(name)
    for op in g.ops:      # constants inside a same-quant group (e.g. concat with a constant)
        if ops.get(op.type).quant.same_quant == "all":
            for i in op.inputs:
                t = g.t(i)
                if t.is_const:
                    groups.setdefault(uf.find(i), []).append(i)
                    ranges[i] = (float(t.data.min()), float(t.data.max()))
    params: dict[str, tuple[float, int]] = {}
    for root, members in groups.items():
        fx = [fixed[m] for m in members if m in fixed]
        if fx:
            p = fx[0]
        else:
            lo = min(ranges[m][0] for m in members)
            hi = max(ranges[m][1] for m in members)
            p = act_params(lo, hi)
        for m in members:
            params[m] = p

    q = copy.deepcopy(g)
    for name, (s, zp) in params.items():
        t = q.t(name)
        t.quant = Quant.per_tensor(s, zp)
        if t.is_const:
            t.data = np.clip(np.round(t.data / s) + zp, qlo, qhi).astype(act_dtype)
        t.dtype = act_dtype

    for op in q.ops:
        rule = ops.get(op.type).quant
        if rule.weight_axis is not None:
            wt = q.t(op.inputs[1])
            if not wt.is_const:
                raise IRError(f"layer '{op.name}' ({op.type}): weights must be constant")
            if len(cons.get(op.inputs[1], [])) > 1:
                raise IRError(f"layer '{op.name}': weights shared between layers are not "
                              "supported")
            axis = rule.weight_axis if rule.weight_axis != "fc" else (0 if per_channel_fc
                                                                      else None)
            wq, ws = symmetric_weights(wt.data.astype(np.float64), axis)
            wt.data, wt.dtype = wq, "int8"
            wt.quant = Quant(ws, np.zeros(ws.shape, np.int64), axis)
            if len(op.inputs) > 2 and op.inputs[2]:
                bt = q.t(op.inputs[2])
                in_s = q.t(op.inputs[0]).quant.scale[0]
                bs = _f32(in_s * ws)
                n_out = bt.data.shape[0]
                bs_full = np.broadcast_to(bs, (n_out,)) if bs.size == 1 else bs
                bq = np.round(bt.data.astype(np.float64) / bs_full)
                if a16:                   # 16x8: int64 bias (TF's converter)
                    bt.data = np.clip(bq, -2**47, 2**47 - 1).astype(np.int64)
                    bt.dtype = "int64"
                else:
                    bt.data = np.clip(bq, -2**31, 2**31 - 1).astype(np.int32)
                    bt.dtype = "int32"
                bt.quant = Quant(bs, np.zeros(bs.shape, np.int64), 0 if bs.size > 1 else None)
        elif rule.const_inputs:
            for i in op.inputs:
                t = q.t(i)
                if t.is_const and t.dtype == "float32":
                    s, zp = act_params(float(t.data.min()), float(t.data.max()))
                    t.data = np.clip(np.round(t.data / s) + zp, qlo, qhi).astype(act_dtype)
                    t.dtype, t.quant = act_dtype, Quant.per_tensor(s, zp)
    for t in q.tensors.values():
        if t.dtype == "float32":
            raise IRError(f"tensor '{t.name}' was left unquantized (not reached by calibration)")
    q.meta = dict(g.meta)
    q.meta["quantization"] = dict(
        method=method, percentile=percentile if method == "percentile" else None,
        calibration_samples=int(len(next(iter(_feeds(g, calib).values())))),
        per_channel_fc=per_channel_fc, activations=activations,
        inputs={n: dict(scale=float(q.t(n).quant.scale[0]),
                        zero_point=int(q.t(n).quant.zero_point[0])) for n in q.inputs},
        outputs={n: dict(scale=float(q.t(n).quant.scale[0]),
                         zero_point=int(q.t(n).quant.zero_point[0])) for n in q.outputs})
    return q


def _as_int16_probe(g: Graph) -> Graph:
    """A shallow copy of float graph g whose activations claim int16 (the op check of
    check_int16_graph looks at dtypes only)."""
    probe = copy.copy(g)
    probe.tensors = {n: copy.copy(t) for n, t in g.tensors.items()}
    for t in probe.tensors.values():
        if not t.is_const:
            t.dtype = "int16"
    return probe


# -- checking --------------------------------------------------------------------------
def quantize_input(qgraph: Graph, x: np.ndarray, name: str | None = None) -> np.ndarray:
    t = qgraph.t(name or qgraph.inputs[0])
    s, zp = t.quant.scale[0], t.quant.zero_point[0]
    lo, hi = _qrange(t.dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / s) + zp, lo, hi).astype(t.dtype)


def dequantize_output(qgraph: Graph, y: np.ndarray, name: str | None = None) -> np.ndarray:
    t = qgraph.t(name or qgraph.outputs[0])
    return ((y.astype(np.float64) - t.quant.zero_point[0]) * t.quant.scale[0]).astype(np.float32)


def run_int8(qgraph: Graph, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Run the int8 graph in the reference interpreter (bit-exact with TFLM) on float
    inputs (quantized with the input parameters); returns raw int8 outputs of output 0."""
    from toolchain.ir import reference
    xq = quantize_input(qgraph, x)
    outs = []
    for s in range(0, len(xq), batch):
        part = xq[s:s + batch]
        try:
            y = reference.run(qgraph, {qgraph.inputs[0]: part})[qgraph.outputs[0]]
            if len(y) != len(part):
                raise ValueError("batch")
        except (ValueError, IRError, AssertionError):
            y = np.concatenate([reference.run(qgraph, {qgraph.inputs[0]: part[i:i + 1]})
                                [qgraph.outputs[0]] for i in range(len(part))])
        outs.append(np.asarray(y))
    return np.concatenate(outs)


def compare(float_graph: Graph, qgraph: Graph, x: np.ndarray, y: np.ndarray | None = None
            ) -> dict:
    """Float vs int8 on inputs x (NHWC floats): top-1 agreement, max abs error of the
    dequantized output and, when labels y are given, both accuracies."""
    yf = run_float(float_graph, x)[float_graph.outputs[0]]
    yq = dequantize_output(qgraph, run_int8(qgraph, x))
    yf2, yq2 = yf.reshape(len(x), -1), yq.reshape(len(x), -1)
    res = dict(samples=int(len(x)), max_abs_error=float(np.abs(yf2 - yq2).max()),
               mean_abs_error=float(np.abs(yf2 - yq2).mean()),
               output_range=float(yf2.max() - yf2.min()))
    if yf2.shape[1] > 1:
        res["top1_agreement"] = float((yf2.argmax(1) == yq2.argmax(1)).mean())
        if y is not None:
            y = np.asarray(y).reshape(-1)
            res["float_accuracy"] = float((yf2.argmax(1) == y).mean())
            res["int8_accuracy"] = float((yq2.argmax(1) == y).mean())
    return res

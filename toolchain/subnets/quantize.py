"""int8 quantization of nested subnets with weights shared across levels.

Input: per level an int8 IR graph of the same float model with that level's
masked weights, each quantized on calibration data run through that level
(`converters.quantize.quantize(level_float_graph, calib)`), and the per-row
importance order of every sparsified weight. Output: per level a
dense-with-zeros int8 graph whose sparsified weights are exactly the SHARED
int8 values masked, plus one packed store per weight:

- shared across levels: one int8 value per weight and one (per-channel) weight
  scale: the densest level's (its scale covers every level's entries, since the
  entries of a sparser level are a subset);
- per level: activation scales / zero points (as calibrated), the bias
  requantized to int32 in that level's input scale x the shared weight scale,
  and hence the level's multipliers (derived by kernel_params / TFLM from the
  scales).

    levels = share_levels(qgraphs, orders, sparsities, float_graphs)
    levels.graphs[k]        # int8 Graph of level k (dense with zeros)
    levels.tflite(k)        # its .tflite bytes (converters.tflite_writer)
    levels.stores[name]     # SubnetStore of weight tensor `name`
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import Graph, IRError, Quant
from toolchain.subnets.store import SubnetStore, build_store, check_levels, nested_masks

SPARSE_OPS = ("CONV_2D", "FULLY_CONNECTED")


def _f32(x):
    return np.asarray(x, np.float32).astype(np.float64)


def mask_float_graph(graph: Graph, orders: dict, sparsities, level: int) -> Graph:
    """Copy of a float graph with each weight in `orders` masked to level `level`."""
    g = copy.deepcopy(graph)
    for name, order in orders.items():
        t = g.t(name)
        m = nested_masks(order, sparsities)[level].reshape(t.shape)
        t.data = np.where(m, t.data, 0).astype(t.data.dtype)
    return g


def sparse_layers(graph: Graph, orders: dict) -> list:
    """[(op, weight name)] of the CONV_2D / FULLY_CONNECTED ops whose weight is in orders."""
    out = []
    for op in graph.ops:
        if op.type in SPARSE_OPS and op.inputs[1] in orders:
            out.append((op, op.inputs[1]))
    missing = set(orders) - {n for _, n in out}
    if missing:
        raise IRError(f"weights {sorted(missing)} are not CONV_2D / FULLY_CONNECTED weights "
                      "of the graph")
    return out


@dataclass
class SharedLevels:
    sparsities: tuple[float, ...]
    graphs: list[Graph]                       # per level, int8, dense with zeros
    stores: dict[str, SubnetStore]            # per sparsified weight tensor
    layers: dict[str, str] = field(default_factory=dict)   # weight name -> layer name

    def tflite(self, level: int) -> bytes:
        from converters.tflite_writer import write_tflite
        return write_tflite(self.graphs[level],
                            description=f"mcu subnet level {level} "
                                        f"(sparsity {self.sparsities[level]})")


def share_levels(qgraphs: list[Graph], orders: dict, sparsities,
                 float_graphs: list[Graph] | None = None,
                 implicit_dense: bool = True) -> SharedLevels:
    """Make the int8 weights of `orders`' tensors shared across the levels.

    qgraphs[k]: level k's int8 graph (converters.quantize.quantize of the level's
    masked float graph); orders[name]: int [R, K] per-row importance order of
    weight `name` (the one the masks were made from); float_graphs[k] (optional):
    level k's float graph, for biases requantized from their float values
    (otherwise the level's int32 bias is rescaled, a second rounding).
    implicit_dense: a dense level (sparsity 0) stores no column indices (1.5x dense
    bytes for {0, .5, .75, .9}); False stores them (2x) for a faster dense level."""
    s = check_levels(sparsities)
    if len(qgraphs) != len(s):
        raise IRError(f"{len(qgraphs)} quantized graphs for {len(s)} levels")
    if float_graphs is not None and len(float_graphs) != len(s):
        raise IRError(f"{len(float_graphs)} float graphs for {len(s)} levels")
    dense_k = 0                                   # densest level = lowest sparsity
    ref = qgraphs[dense_k]
    layers = sparse_layers(ref, orders)
    out = [copy.deepcopy(g) for g in qgraphs]
    stores, names = {}, {}
    for op, wname in layers:
        wt = ref.t(wname)
        if wt.dtype != "int8" or wt.quant is None:
            raise IRError(f"layer '{op.name}': weight '{wname}' is not int8")
        if np.any(wt.quant.zero_point != 0):
            raise IRError(f"layer '{op.name}': weight '{wname}' is not symmetric")
        masks = nested_masks(orders[wname], s)
        shared = np.where(masks[dense_k].reshape(wt.shape), wt.data, 0).astype(np.int8)
        wq = copy.deepcopy(wt.quant)
        stores[wname] = build_store(shared, orders[wname], s, implicit_dense=implicit_dense)
        names[wname] = op.name
        for k, g in enumerate(out):
            lop = next((o for o in g.ops if o.type == op.type and o.inputs[1] == wname), None)
            if lop is None:
                raise IRError(f"level {k}: layer of weight '{wname}' not found")
            lw = g.t(wname)
            lw.data = np.where(masks[k].reshape(wt.shape), shared, 0).astype(np.int8)
            old_ws = _f32(lw.quant.scale)
            lw.quant = copy.deepcopy(wq)
            if len(lop.inputs) > 2 and lop.inputs[2]:
                bt = g.t(lop.inputs[2])
                in_s = float(_f32(g.t(lop.inputs[0]).quant.scale[0]))
                bs = _f32(in_s * _f32(wq.scale))
                n = bt.shape[0]
                bs_full = np.broadcast_to(bs, (n,))
                if float_graphs is not None:
                    fb = float_graphs[k].t(lop.inputs[2]).data.astype(np.float64)
                else:
                    old_bs = np.broadcast_to(_f32(in_s * old_ws), (n,))
                    fb = bt.data.astype(np.float64) * old_bs
                bq = np.round(fb / bs_full)
                bt.data = np.clip(bq, -2**31, 2**31 - 1).astype(np.int32)
                bt.quant = Quant(bs, np.zeros(bs.shape, np.int64), 0 if bs.size > 1 else None)
        for k, g in enumerate(out):
            g.meta = dict(g.meta)
            g.meta["subnet"] = dict(level=k, sparsity=s[k], levels=list(s))
    return SharedLevels(sparsities=s, graphs=out, stores=stores, layers=names)


def quantize_levels(float_graph: Graph, orders: dict, sparsities, calib,
                    implicit_dense: bool = True, **quant_kw) -> SharedLevels:
    """Convenience: mask the float graph per level, quantize each level on `calib`
    with converters.quantize.quantize (keyword options passed on), then share."""
    from converters.quantize import quantize
    s = check_levels(sparsities)
    fgs = [mask_float_graph(float_graph, orders, s, k) for k in range(len(s))]
    qgs = [quantize(fg, calib, **quant_kw) for fg in fgs]
    return share_levels(qgs, orders, s, fgs, implicit_dense=implicit_dense)

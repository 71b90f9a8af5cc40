"""`mcu subnets train` as a function: train jointly (toolchain.subnets.train), quantize
every level with ONE int8 value per weight, export (toolchain.subnets.export).

    man = run_train("model.onnx", "train.npz", "0.5,0.75,0.9", epochs=10, out_dir="OUT")

Shared quantization of a trained store: train_subnets gives per sparsified layer the
shared float values V, the nested order and a per-level row scale r_k (level k's
weights are V ⊙ m_k ⊙ r_k[row]). The int8 values are q = round(V / s) with one scale
per row s = max|V ⊙ m_densest| / 127 (shared: the store holds q once); level k's
weight scale is s ⊙ r_k (float32) so its dequantized weights are level k's, its bias is
requantized in in_scale_k × s ⊙ r_k, and its activations are calibrated on level k.
"""
from __future__ import annotations

import copy
import os

import numpy as np

from toolchain.ir.graph import Quant
from toolchain.subnets.export import SubnetError, export_levels, parse_levels
from toolchain.subnets.quantize import SharedLevels
from toolchain.subnets.store import build_store, level_counts, nested_masks


def _f32(x):
    return np.asarray(x, np.float32).astype(np.float64)


def share_trained(res, calib, *, implicit_dense: bool = True) -> SharedLevels:
    """SubnetResult (train_subnets) + calibration inputs (NHWC) -> SharedLevels."""
    from converters.quantize import quantize
    s = tuple(float(v) for v in res.levels)
    qgs = [quantize(g, calib, per_channel_fc=True) for g in res.graphs]
    out = [copy.deepcopy(q) for q in qgs]
    stores, names = {}, {}
    for lay in res.sparse_layers:
        w, shape = lay.weight, tuple(lay.shape)
        rows, K = lay.rows, lay.row_len
        order = np.asarray(lay.order, np.int64)
        if [int(c) for c in level_counts(K, s)] != [int(c) for c in lay.counts]:
            raise SubnetError(f"layer {lay.name}: trained entries per row {list(lay.counts)} "
                              f"differ from the store's {list(level_counts(K, s))}")
        rs = np.asarray(lay.row_scale, np.float64)
        if (rs <= 0).any():
            raise SubnetError(f"layer {lay.name}: a per-level row scale is not positive; the "
                              "levels cannot share int8 values")
        masks = nested_masks(order, s)
        V = np.asarray(lay.values, np.float64).reshape(rows, K)
        amax = np.abs(np.where(masks[0], V, 0.0)).max(axis=1)
        sc = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.round(V / _f32(sc)[:, None]), -127, 127)
        q = np.where(masks[0], q, 0).astype(np.int8)
        stores[w] = build_store(q.reshape(shape), order, s, implicit_dense=implicit_dense)
        for k, g in enumerate(out):
            op = next((o for o in g.ops if len(o.inputs) > 1 and o.inputs[1] == w
                       and o.type in ("CONV_2D", "FULLY_CONNECTED")), None)
            if op is None:
                raise SubnetError(f"level {k}: no CONV_2D / FULLY_CONNECTED reads '{w}' after "
                                  "quantization")
            names[w] = op.name
            wt = g.t(w)
            wsc = (sc.astype(np.float64) * rs[k]).astype(np.float32)
            wt.data = np.where(masks[k], q, 0).astype(np.int8).reshape(shape)
            wt.quant = Quant(wsc.astype(np.float64), np.zeros(rows, np.int64), 0)
            if len(op.inputs) > 2 and op.inputs[2]:
                bt = g.t(op.inputs[2])
                in_s = float(_f32(g.t(op.inputs[0]).quant.scale[0]))
                bs = _f32(in_s * _f32(wsc))
                fb = res.graphs[k].t(op.inputs[2]).data.astype(np.float64).reshape(-1)
                bt.data = np.clip(np.round(fb / bs), -2**31, 2**31 - 1).astype(np.int32)
                bt.quant = Quant(bs, np.zeros(rows, np.int64), 0)
    for k, g in enumerate(out):
        g.meta = dict(g.meta or {})
        g.meta["subnet"] = dict(level=k, sparsity=s[k], levels=list(s))
    return SharedLevels(sparsities=s, graphs=out, stores=stores, layers=names)


def run_train(model, data_path, levels, *, dense: bool = False, alpha=None, epochs: int = 10,
              out_dir="OUT", progress: bool = True, log=None, **train_kw) -> dict:
    from converters import load_model
    from converters.convert import load_calibration
    from converters.npz import read_xy_npz
    from toolchain.subnets.train import train_subnets
    lv = parse_levels(levels, dense=dense)
    x, y = read_xy_npz(data_path, "training data", SubnetError,
                       hint="; save it with np.savez(path, x=inputs, y=labels)")
    if y is None:
        raise SubnetError(f"training data {data_path} has no labels 'y'")
    g = load_model(model)
    if isinstance(alpha, str):
        try:
            alpha = [float(v) for v in alpha.split(",")]
        except ValueError:
            raise SubnetError(f"--alpha '{alpha}': give one weight per level, e.g. "
                              "1,1,2") from None
    res = train_subnets(g, (x, y), list(lv), alpha=alpha, epochs=epochs, progress=progress,
                        **train_kw)
    if not res.sparse_layers:
        why = "; ".join(f"{n}: {r}" for n, r in res.dense_layers) or "no conv/FC layer"
        raise SubnetError(f"nothing to sparsify in {os.path.basename(os.fspath(model))} ({why})")
    xc, _, _ = load_calibration(data_path, res.graphs[0])
    xc = xc[:256]
    shared = share_trained(res, xc)
    layers = []
    for lay in res.layers:
        r = dict(layer=lay.ir_layer or lay.name, op=lay.op_type, weight=lay.weight or "",
                 sparse=bool(lay.sparse), reason=lay.reason)
        if lay.sparse:
            r.update(rows=lay.rows, row_len=lay.row_len)
        layers.append(r)
    man = export_levels(shared, out_dir, layers=layers, name=g.name or "model", check=xc[:8],
                        source=f"{model} (joint training, {epochs} epochs)",
                        extra=dict(train=dict(accuracy=res.accuracy, alpha=list(res.alpha),
                                              epochs=epochs)))
    return man

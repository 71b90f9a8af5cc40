"""Subnet levels as IR graphs with the row-sparse op family (toolchain/ir/ops/sparse.py).

    gs = sparse_graphs(shared)        # SharedLevels -> per level an int8 Graph whose
                                      # sparsified CONV_2D / FULLY_CONNECTED are
                                      # SPARSE_CONV_2D / SPARSE_FULLY_CONNECTED
    write_tflite(gs[k])               # == shared.tflite(k): dense-with-zeros form

Every level graph holds the same store tensors (`<weight>/pairs`, `/tail`, `/segc`:
same names, same bytes), so code generation emits one store shared by the levels;
what differs per level is the entry count (`n_entries`), biases and every
activation's quantization.
"""
from __future__ import annotations

import copy

import numpy as np

from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor
from toolchain.subnets.quantize import SharedLevels
from toolchain.subnets.store import SubnetStore

SPARSE_OF = {"CONV_2D": "SPARSE_CONV_2D", "FULLY_CONNECTED": "SPARSE_FULLY_CONNECTED"}


def store_tensors(name: str, st: SubnetStore, wquant: Quant) -> dict[str, Tensor]:
    """The flash arrays of a store as constant tensors (pairs carries the weight scale)."""
    a = st.c_arrays()
    q = copy.deepcopy(wquant)
    out = {"pairs": Tensor(f"{name}/pairs", tuple(a["pairs"].shape), "uint8", q, a["pairs"])}
    if a["tail"] is not None:
        out["tail"] = Tensor(f"{name}/tail", tuple(a["tail"].shape), "int8", None, a["tail"])
    if a["seg_counts"] is not None:
        out["segc"] = Tensor(f"{name}/segc", tuple(a["seg_counts"].shape), "uint8", None,
                             a["seg_counts"])
    return out


def store_meta(st: SubnetStore) -> dict:
    """What a row-sparse op needs besides the flash arrays (manifest layer record)."""
    a = st.c_arrays()
    return dict(filter_shape=[int(d) for d in st.shape],
                group_end=[int(v) for v in st.group_end], counts=[int(c) for c in st.counts],
                seg_shift=int(a["seg_shift"]), implicit_last=bool(st.implicit_last))


def sparse_op_arrays(g: Graph, op: Op, arrays: dict, meta: dict, level: int) -> Op:
    """Replace dense op `op` of level graph g (in place) by its row-sparse form over the
    store arrays (`arrays`: tensor name -> array, names `<weight>/pairs|tail|segc`) and
    `meta` (store_meta) at level `level`."""
    if op.type not in SPARSE_OF:
        raise IRError(f"layer '{op.name}' ({op.type}): no row-sparse form")
    wname = op.inputs[1]
    wq = copy.deepcopy(g.t(wname).quant)
    names = {}
    for part, dt, q in (("pairs", "uint8", wq), ("tail", "int8", None), ("segc", "uint8", None)):
        n = f"{wname}/{part}"
        if n not in arrays:
            continue
        a = np.asarray(arrays[n]).astype(dt)
        if n in g.tensors:
            g.tensors[n].data, g.tensors[n].quant = a, q
        else:
            g.add_tensor(Tensor(n, tuple(a.shape), dt, q, a))
        names[part] = n
    if "pairs" not in names:
        raise IRError(f"store arrays of weight '{wname}' are missing")
    attrs = dict(op.attrs, filter_shape=tuple(int(d) for d in meta["filter_shape"]),
                 group_end=tuple(int(v) for v in meta["group_end"]),
                 n_entries=int(meta["counts"][level]), seg_shift=int(meta["seg_shift"]),
                 implicit_last=bool(meta["implicit_last"]))
    bias = op.inputs[2] if len(op.inputs) > 2 else ""
    op.type = SPARSE_OF[op.type]
    op.inputs = [op.inputs[0], names["pairs"], bias, names.get("tail", ""),
                 names.get("segc", "")]
    op.attrs = attrs
    if not any(wname in o.inputs for o in g.ops):
        del g.tensors[wname]
    return op


def sparse_op(g: Graph, op: Op, st: SubnetStore, level: int) -> Op:
    """Replace dense op `op` of level graph g (in place) by its row-sparse form."""
    ts = store_tensors(op.inputs[1], st, g.t(op.inputs[1]).quant)
    return sparse_op_arrays(g, op, {t.name: t.data for t in ts.values()}, store_meta(st),
                            level)


def sparse_graphs(shared: SharedLevels) -> list[Graph]:
    """Per level, a copy of the level's int8 graph with the row-sparse op family."""
    out = []
    for k, lg in enumerate(shared.graphs):
        g = copy.deepcopy(lg)
        for wname, st in shared.stores.items():
            op = next((o for o in g.ops if o.type in SPARSE_OF and len(o.inputs) > 1
                       and o.inputs[1] == wname), None)
            if op is None:
                raise IRError(f"level {k}: no CONV_2D / FULLY_CONNECTED reads weight '{wname}'")
            sparse_op(g, op, st, k)
        g.meta = dict(g.meta)
        g.meta["subnet"] = dict(level=k, sparsity=shared.sparsities[k],
                                levels=list(shared.sparsities))
        out.append(g)
    return out


def levels_hash(graphs: list[Graph]) -> str:
    """One hash of every level: the firmware's model hash (the code generator's)."""
    from toolchain.codegen.generate import levels_hash as h
    return h(graphs)


def store_report(graphs: list[Graph]) -> dict:
    """Bytes: the shared store (flash arrays) vs the dense int8 weights, per level the
    entries used (values + column bytes)."""
    g0 = graphs[0]
    store = dense = 0
    per_level = [0] * len(graphs)
    for op in g0.ops:
        if not op.type.startswith("SPARSE_"):
            continue
        fs = op.attr("filter_shape")
        rows, K = int(fs[0]), int(np.prod(fs[1:]))
        dense += rows * K
        for n in op.inputs[1:]:
            if n and g0.t(n).is_const and n != (op.inputs[2] if len(op.inputs) > 2 else None):
                store += g0.t(n).nbytes
        store += 4 * len(op.attr("group_end"))
        for k, g in enumerate(graphs):
            lop = next(o for o in g.ops if o.name == op.name)
            per_level[k] += rows * int(lop.attr("n_entries")) * 2
    return dict(store_bytes=int(store), dense_int8_bytes=int(dense),
                store_vs_dense=(store / dense) if dense else 0.0,
                level_entry_bytes=per_level)

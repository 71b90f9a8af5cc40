"""Build patches on the host: re-quantize new weights in the deployed scales, select
which weights change (top-k by a score), encode DELTA or FULL patches.

The deployed model's quantization (weight scales, activation scales, bias scales =
in_scale × w_scale) is never changed by a patch: it is part of the structure hash.
New float weights are re-quantized with the *old* scales (int8 symmetric, clipped to
[-127, 127]; bias int32), which costs some accuracy; bench.py measures it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import Graph

from .errors import PatchModelError
from .format import (COMP_NONE, TYPE_DELTA, TYPE_FULL, Group, Patch, encode_patch)
from .store import WeightStore, store_to_graph, weight_store


# -- quantization in the deployed scales --------------------------------------------------
def _scale_view(graph: Graph, name: str) -> tuple[np.ndarray, np.ndarray]:
    t = graph.tensors[name]
    q = t.quant
    if q is None:
        raise PatchModelError(f"tensor '{name}' has no quantization; patches need an int8 model")
    shape = [1] * len(t.shape)
    if q.per_channel:
        shape[q.axis] = -1
    return q.scale.reshape(shape), q.zero_point.reshape(shape)


def dequantize_store(graph: Graph) -> dict[int, np.ndarray]:
    """Float values (IR shape) of the patchable store tensors, by store index."""
    st = weight_store(graph)
    out = {}
    for i, t in enumerate(st.tensors):
        if not t.patchable:
            continue
        s, zp = _scale_view(graph, t.name)
        out[i] = (t.data.reshape(t.shape).astype(np.float64) - zp) * s
    return out


def quantize_in_scales(graph: Graph, floats: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Float tensors (by store index, IR shape) -> integers in `graph`'s (deployed) scales:
    weights int8 in [-127, 127], biases int32. Returns flat int64 arrays."""
    st = weight_store(graph)
    out = {}
    for i, f in floats.items():
        t = st.tensors[i]
        if not t.patchable:
            raise PatchModelError(f"store tensor {i} '{t.name}' is not a weight or bias")
        f = np.asarray(f, np.float64).reshape(t.shape)
        s, zp = _scale_view(graph, t.name)
        q = np.round(f / s) + zp
        if t.role == "weight":
            q = np.clip(q, -127, 127)
        else:
            q = np.clip(q, -2**31, 2**31 - 1)
        out[i] = q.astype(np.int64).reshape(-1)
    return out


def check_same_layout(a: WeightStore, b: WeightStore, what=("old", "new")) -> None:
    if len(a.tensors) != len(b.tensors):
        raise PatchModelError(f"{what[0]} model has {len(a.tensors)} weight-store tensors, "
                              f"{what[1]} has {len(b.tensors)}")
    for i, (x, y) in enumerate(zip(a.tensors, b.tensors)):
        if (x.dtype, x.shape, x.role) != (y.dtype, y.shape, y.role):
            raise PatchModelError(f"weight-store tensor {i} differs: {what[0]} '{x.name}' "
                                  f"{x.dtype}{list(x.shape)} vs {what[1]} '{y.name}' "
                                  f"{y.dtype}{list(y.shape)}")


# -- selection --------------------------------------------------------------------------
def select_topk(scores: dict[int, np.ndarray], budget: float) -> dict[int, np.ndarray]:
    """Global top-k over all tensors: exactly round(budget × I) elements are selected
    (I = total elements), ties broken by store order then element order. Returns
    boolean masks (flat) by the same keys."""
    keys = sorted(scores)
    flat = np.concatenate([np.asarray(scores[k], np.float64).reshape(-1) for k in keys])
    n = int(round(budget * flat.size))
    n = min(max(n, 0), flat.size)
    order = np.argsort(-flat, kind="stable")
    sel = np.zeros(flat.size, bool)
    sel[order[:n]] = True
    out, pos = {}, 0
    for k in keys:
        m = np.asarray(scores[k]).size
        out[k] = sel[pos:pos + m]
        pos += m
    return out


def random_masks(sizes: dict[int, int], budget: float, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return select_topk({k: rng.random(n) for k, n in sizes.items()}, budget)


def weight_indices(store: WeightStore) -> list[int]:
    """Store indices of conv/fc weight tensors (the I weights a budget counts)."""
    return [i for i, t in enumerate(store.tensors) if t.role == "weight"]


# -- building patches ---------------------------------------------------------------------
@dataclass
class PatchResult:
    data: bytes
    patch: Patch
    graph: Graph                 # the model the device will hold afterwards
    info: dict = field(default_factory=dict)


def _group(i: int, t, new: np.ndarray, with_old: bool) -> Group | None:
    old = t.data.astype(np.int64)
    changed = np.flatnonzero(new != old)
    if changed.size == 0:
        return None
    sparse = Group(i, t.elem_size, changed, new[changed], old[changed] if with_old else None)
    dense = Group(i, t.elem_size, np.arange(t.size), new.copy(), old.copy() if with_old else None,
                  dense=True)
    return dense if dense.encoded_size(with_old) < sparse.encoded_size(with_old) else sparse


def build_patch(old: Graph, new_q: dict[int, np.ndarray], key: bytes, seq: int,
                patch_type: str = "delta", compression: int = COMP_NONE,
                with_old: bool = True) -> PatchResult:
    """Patch from `old` to the store where tensors `new_q` (store index -> flat ints in
    the old scales) replace the old ones. DELTA: only changed elements, per tensor the
    cheaper of sparse records and a dense block; with_old=False leaves out the old
    values (roll-forward only, like FULL: ~1/3 fewer bytes for int8 records). FULL:
    every weight and bias tensor, dense, new values only."""
    st = weight_store(old)
    new_st = st.copy()
    for i, q in new_q.items():
        t = new_st.tensors[i]
        q = np.asarray(q, np.int64).reshape(-1)
        if q.size != t.size:
            raise PatchModelError(f"tensor {i} '{t.name}': {q.size} values for {t.size} elements")
        new_st.tensors[i].data = q.astype(t.data.dtype)
    groups = []
    if patch_type == "delta":
        for i, t in enumerate(st.tensors):
            if i in new_q:
                g = _group(i, t, new_st.tensors[i].data.astype(np.int64), with_old)
                if g is not None:
                    groups.append(g)
        ptype = TYPE_DELTA
    elif patch_type == "full":
        for i, t in enumerate(new_st.tensors):
            if t.patchable:
                groups.append(Group(i, t.elem_size, np.arange(t.size),
                                    t.data.astype(np.int64), None, dense=True))
        ptype = TYPE_FULL
    else:
        raise PatchModelError(f"unknown patch type '{patch_type}' (delta or full)")
    p = Patch(ptype, int(seq), st.hash(), new_st.hash(), groups, compression,
              with_old=with_old)
    data = encode_patch(p, key)
    new_st.seq = int(seq)
    g = store_to_graph(new_st, old)
    w_idx = weight_indices(st)
    changed_w = sum(int((new_st.tensors[i].data != st.tensors[i].data).sum()) for i in w_idx)
    info = dict(type=patch_type, seq=int(seq), bytes=len(data), entries=p.entries,
                old_values=p.has_old,
                groups=len(groups), weights_total=sum(st.tensors[i].size for i in w_idx),
                weights_changed=changed_w,
                model_bytes=st.patchable_bytes(),
                base=st.hexhash(), target=new_st.hexhash())
    return PatchResult(data, p, g, info)


def diff_patch(old: Graph, new: Graph, key: bytes, seq: int, budget: float | None = None,
               patch_type: str = "delta", compression: int = COMP_NONE,
               with_old: bool = True) -> PatchResult:
    """Patch taking the deployed `old` towards `new` (same structure, any quantization).
    New weights are dequantized with new's scales and re-quantized in old's. With a
    budget (fraction of conv/fc weights), only the top budget·I weights by the global
    score (w_new − w_old)² change; biases always change in full."""
    st_old, st_new = weight_store(old), weight_store(new)
    check_same_layout(st_old, st_new)
    f_old, f_new = dequantize_store(old), dequantize_store(new)
    new_q = quantize_in_scales(old, f_new)
    info_sel = {}
    if budget is not None and patch_type == "delta":
        w_idx = weight_indices(st_old)
        scores = {i: ((f_new[i] - f_old[i]) ** 2).reshape(-1) for i in w_idx}
        masks = select_topk(scores, budget)
        for i in w_idx:
            oldq = st_old.tensors[i].data.astype(np.int64)
            new_q[i] = np.where(masks[i], new_q[i], oldq)
        info_sel = dict(budget=budget, selected=int(sum(m.sum() for m in masks.values())))
    res = build_patch(old, new_q, key, seq, patch_type, compression, with_old)
    res.info.update(info_sel)
    return res


def full_patch(old: Graph, new: Graph, key: bytes, seq: int) -> PatchResult:
    return diff_patch(old, new, key, seq, None, "full")

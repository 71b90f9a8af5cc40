"""The weight store as patches see it: what the device holds and hashes.

The definitions live below the patch layer (docs/patch-format.md §2): store order,
roles, the canonical structure descriptor and the model/store hash in
toolchain.ir.model_hash; the StoreTensor / WeightStore objects and weight_store(graph)
in toolchain.codegen.weight_area (patchable builds lay the weights out from them).
They are re-exported here, the patch side's one place to import them from; this module
adds what only patches need (a store's data back into a graph, hashing either form).
"""
from __future__ import annotations

import copy

from toolchain.codegen.weight_area import StoreTensor, WeightStore, weight_store  # noqa: F401
from toolchain.ir.graph import Graph
from toolchain.ir.model_hash import (STRUCTURE_VERSION, model_hash, weight_ops,  # noqa: F401
                                     store_order, store_roles, structure_descriptor,
                                     structure_hash)

from .errors import PatchModelError


def store_to_graph(store: WeightStore, graph: Graph) -> Graph:
    """A copy of `graph` whose constants carry `store`'s data (graph must have the same
    structure). The sequence number goes to graph.meta['patch_seq']."""
    names = store_order(graph)
    if len(names) != len(store.tensors):
        raise PatchModelError(f"store has {len(store.tensors)} tensors, model has {len(names)}")
    if structure_hash(graph) != store.structure:
        raise PatchModelError("model structure differs from the weight store's")
    g = copy.deepcopy(graph)
    for n, st in zip(names, store.tensors):
        t = g.tensors[n]
        t.data = st.data.astype(t.data.dtype).reshape(t.shape).copy()
    g.meta = dict(g.meta)
    g.meta["patch_seq"] = int(store.seq)
    return g


def store_hash(graph_or_store) -> str:
    """Hex SHA-256 identifying the deployed model: over the structure hash and every
    weight-store byte, in store order. The device recomputes it after a patch."""
    if isinstance(graph_or_store, WeightStore):
        return graph_or_store.hexhash()
    return model_hash(graph_or_store)

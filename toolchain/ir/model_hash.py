"""The model hash: a model's identity, shared by host, firmware, HIL and patches.

Defined over the weight store, the constant tensors as the firmware lays them out
(docs/patch-format.md §2, the device relies on it):
- Order: walk the ops in execution order; for each op walk its inputs in order
  (for CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED that is weights, then bias);
  every constant tensor is appended the first time it is met. Constants no op
  reads are not in the store.
- Bytes: each tensor is one flat byte range, its data in C order of the IR shape
  (OHWI, 1HWO, [out, in]) as little-endian values of its dtype (int8: 1 byte,
  int32: 4 bytes). Alignment padding between tensors is the firmware's business
  and is not part of anything hashed.
- Role: "weight" (the filter input, index 1, of CONV_2D / DEPTHWISE_CONV_2D /
  FULLY_CONNECTED), "bias" (input 2 of those ops), "other" (shape tensors,
  paddings, constant operands). Patches may only touch weight and bias tensors.
- structure_hash(graph): SHA-256 of a canonical descriptor of everything that is
  not weight-store bytes: op types and semantic attributes, tensor wiring,
  shapes, dtypes, quantization parameters (scales rounded to float32 as a .tflite
  stores them, zero points, axes) and the
  store order. Tensor and layer names are not part of it.
- model hash = store hash = SHA-256(structure_hash ‖ bytes of store tensor 0 ‖ tensor 1 ‖ …).
  The firmware embeds the 32-byte structure hash at build time and recomputes
  the store hash from flash alone.

It lives in the IR (the bottom layer) so that Graph.model_hash() needs nothing above
it; the weight store object (toolchain.codegen.weight_area) and patches
(toolchain.patch.store) build on these definitions.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
import json

import numpy as np

from .op_tables import OP_ATTRS, WEIGHT_ROLES

if TYPE_CHECKING:
    from .graph import Graph


def weight_ops() -> tuple[str, ...]:
    """Op types whose constant inputs are weights / biases (OpDef.weight_roles)."""
    return tuple(n for n, r in WEIGHT_ROLES.items() if r)
STRUCTURE_VERSION = "mcu-structure-v1"


def store_order(graph: Graph) -> list[str]:
    """Names of the weight-store tensors in store order (first read by an op, in op order)."""
    seen: list[str] = []
    s = set()
    for op in graph.ops:
        for n in op.inputs:
            if n and n not in s and graph.tensors[n].is_const:
                s.add(n)
                seen.append(n)
    return seen


def store_roles(graph: Graph) -> dict[str, tuple[str, str]]:
    """Store tensor name -> (role, type of the op that first reads it)."""
    roles: dict[str, tuple[str, str]] = {}
    for op in graph.ops:
        for i, n in enumerate(op.inputs):
            if not n or n in roles or not graph.tensors[n].is_const:
                continue
            role = WEIGHT_ROLES.get(op.type, {}).get(i, "other")
            roles[n] = (role, op.type)
    return roles


def store_data(data: np.ndarray) -> np.ndarray:
    """A constant's store bytes as an owned flat array: C order, little-endian."""
    d = np.ascontiguousarray(data).reshape(-1)
    return d.astype(d.dtype.newbyteorder("<"), copy=True)


def _canon(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v).hex()
    if v is None or isinstance(v, str):
        return v
    return repr(v)


def structure_descriptor(graph: Graph) -> bytes:
    """Canonical bytes of the model structure (everything but weight-store bytes)."""
    index: dict[str, int] = {}

    def ix(n: str) -> int:
        if not n:
            return -1
        if n not in index:
            index[n] = len(index)
        return index[n]

    for n in graph.inputs:
        ix(n)
    ops = []
    for op in graph.ops:
        known = OP_ATTRS.get(op.type)
        if known is None:
            attrs = dict(op.attrs)
        else:
            attrs = {k: op.attrs.get(k, d) for k, d in known.items()}
        if op.type == "RESHAPE":
            attrs.pop("new_shape", None)     # the output tensor's shape is authoritative
        ops.append([op.type, sorted((k, _canon(v)) for k, v in attrs.items()),
                    [ix(n) for n in op.inputs], [ix(n) for n in op.outputs]])
    outs = [ix(n) for n in graph.outputs]
    state = [ix(n) for n in graph.state]
    order = store_order(graph)
    spos = {n: i for i, n in enumerate(order)}
    roles = store_roles(graph)
    tensors = []
    for n, _ in sorted(index.items(), key=lambda kv: kv[1]):
        if not n:
            continue
        t = graph.tensors[n]
        q = None
        if t.quant is not None:
            q = [_canon(t.quant.scale.astype(np.float32).astype(np.float64)), _canon(t.quant.zero_point),
                 t.quant.axis if t.quant.per_channel else None]
        tensors.append([list(t.shape), t.dtype, q, spos.get(n, -1),
                        roles.get(n, ("", ""))[0]])
    desc = dict(v=STRUCTURE_VERSION, ops=ops, tensors=tensors, inputs=[ix(n) for n in graph.inputs],
                outputs=outs, state=state)
    return json.dumps(desc, sort_keys=True, separators=(",", ":")).encode()


def structure_hash(graph: Graph) -> bytes:
    return hashlib.sha256(structure_descriptor(graph)).digest()


def model_hash(graph: Graph) -> str:
    """Hex SHA-256 over the structure hash and every weight-store byte, in store order
    (equals the store hash of weight_store(graph), which the device recomputes)."""
    h = hashlib.sha256(structure_hash(graph))
    for n in store_order(graph):
        h.update(store_data(graph.tensors[n].data).tobytes())
    return h.hexdigest()

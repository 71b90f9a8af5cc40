"""The weight store: the constant tensors of an int8 graph as the firmware lays them out.

Definition (docs/patch-format.md §2, the device relies on it):
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
- store_hash = SHA-256(structure_hash ‖ bytes of store tensor 0 ‖ tensor 1 ‖ …).
  The firmware embeds the 32-byte structure hash at build time and recomputes
  the store hash from flash alone.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import OP_ATTRS, Graph

from .errors import PatchModelError

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
STRUCTURE_VERSION = "mcu-structure-v1"


@dataclass
class StoreTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    role: str                      # "weight" | "bias" | "other"
    data: np.ndarray               # flat, little-endian dtype, owned copy
    op_type: str = ""              # the op that first reads it

    @property
    def elem_size(self) -> int:
        return self.data.dtype.itemsize

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def patchable(self) -> bool:
        return self.role in ("weight", "bias")

    def tobytes(self) -> bytes:
        return self.data.tobytes()


@dataclass
class WeightStore:
    """What the device holds: the store tensors plus the 32-byte structure hash, the
    last committed patch sequence number and an in-progress (journaled) patch, if any."""
    tensors: list[StoreTensor]
    structure: bytes
    seq: int = 0
    pending: dict | None = None    # {"seq", "base", "target"} while a patch is being applied
    meta: dict = field(default_factory=dict)

    def hash(self) -> bytes:
        h = hashlib.sha256(self.structure)
        for t in self.tensors:
            h.update(t.tobytes())
        return h.digest()

    def hexhash(self) -> str:
        return self.hash().hex()

    def copy(self) -> "WeightStore":
        return WeightStore([StoreTensor(t.name, t.dtype, t.shape, t.role, t.data.copy(), t.op_type)
                            for t in self.tensors], self.structure, self.seq,
                           copy.deepcopy(self.pending), dict(self.meta))

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def patchable_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.patchable)

    def layout(self) -> list[tuple[str, tuple[int, ...], str]]:
        return [(t.dtype, t.shape, t.role) for t in self.tensors]

    def to_graph(self, graph: Graph) -> Graph:
        """A copy of `graph` whose constants carry this store's data (graph must have the
        same structure). The sequence number goes to graph.meta['patch_seq']."""
        names = store_order(graph)
        if len(names) != len(self.tensors):
            raise PatchModelError(f"store has {len(self.tensors)} tensors, model has {len(names)}")
        if structure_hash(graph) != self.structure:
            raise PatchModelError("model structure differs from the weight store's")
        g = copy.deepcopy(graph)
        for n, st in zip(names, self.tensors):
            t = g.tensors[n]
            t.data = st.data.astype(t.data.dtype).reshape(t.shape).copy()
        g.meta = dict(g.meta)
        g.meta["patch_seq"] = int(self.seq)
        return g


# -- definitions ------------------------------------------------------------------------
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


def _roles(graph: Graph) -> dict[str, tuple[str, str]]:
    roles: dict[str, tuple[str, str]] = {}
    for op in graph.ops:
        for i, n in enumerate(op.inputs):
            if not n or n in roles or not graph.tensors[n].is_const:
                continue
            role = "other"
            if op.type in WEIGHT_OPS and i == 1:
                role = "weight"
            elif op.type in WEIGHT_OPS and i == 2:
                role = "bias"
            roles[n] = (role, op.type)
    return roles


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
    roles = _roles(graph)
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


def weight_store(graph: Graph, seq: int | None = None) -> WeightStore:
    """The weight store of an int8 graph (copies the data)."""
    roles = _roles(graph)
    tensors = []
    for n in store_order(graph):
        t = graph.tensors[n]
        d = np.ascontiguousarray(t.data).reshape(-1)
        d = d.astype(d.dtype.newbyteorder("<"), copy=True)
        role, op_type = roles[n]
        tensors.append(StoreTensor(n, t.dtype, tuple(t.shape), role, d, op_type))
    if seq is None:
        seq = int(graph.meta.get("patch_seq", 0))
    return WeightStore(tensors, structure_hash(graph), seq)


def store_hash(graph_or_store) -> str:
    """Hex SHA-256 identifying the deployed model: over the structure hash and every
    weight-store byte, in store order. The device recomputes it after a patch."""
    if isinstance(graph_or_store, WeightStore):
        return graph_or_store.hexhash()
    return weight_store(graph_or_store).hexhash()

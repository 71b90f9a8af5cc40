"""The weight store and the patch weight area's layout, shared by the code generator
(patchable builds read tensor i at mcu_wstore() + offsets[i]) and the patch device code
(toolchain.patch.device writes the area). Here, below both, so neither imports the other.

    st = weight_store(graph)       # the constant tensors as the firmware lays them out
    lay = area_layout(st)          # offsets of every store tensor in a slot

The weight area is one page-aligned array (on-flash format: docs/patch-device.md):

    meta page 0 | meta page 1 | slot A | slot B | staging header page | staged patch

Store order, bytes, roles and hashes: toolchain.ir.model_hash (docs/patch-format.md §2).
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import Graph
from toolchain.ir.model_hash import store_data, store_order, store_roles, structure_hash

PAGE = 4096
ALIGN = 16                  # tensor alignment inside a slot (SIMD-friendly, ≥ element size)
# A patch's fixed header and tag (docs/patch-format.md), which the staging area must hold;
# toolchain.patch.format takes them from here.
HEADER_SIZE = 128
TAG_SIZE = 32


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


def weight_store(graph: Graph, seq: int | None = None) -> WeightStore:
    """The weight store of an int8 graph (copies the data)."""
    roles = store_roles(graph)
    tensors = []
    for n in store_order(graph):
        t = graph.tensors[n]
        role, op_type = roles[n]
        tensors.append(StoreTensor(n, t.dtype, tuple(t.shape), role, store_data(t.data), op_type))
    if seq is None:
        seq = int(graph.meta.get("patch_seq", 0))
    return WeightStore(tensors, structure_hash(graph), seq)


@dataclass
class AreaLayout:
    page: int
    offsets: list[int]          # per store tensor, byte offset in a slot
    slot_size: int
    stage_size: int             # header page + capacity
    meta_off: int = 0
    slot_off: tuple = (0, 0)
    stage_off: int = 0
    area_size: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def stage_capacity(self) -> int:
        return self.stage_size - self.page


def max_patch_size(store: WeightStore) -> int:
    """An upper bound of any DELTA or FULL patch for this store (dense groups with old
    values: 2 bytes per byte, plus group headers, header and tag)."""
    body = sum(12 + 2 * t.nbytes for t in store.tensors if t.patchable)
    return HEADER_SIZE + TAG_SIZE + body


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def area_layout(store: WeightStore, *, page: int = PAGE, align: int = ALIGN,
                stage_capacity: int | None = None) -> AreaLayout:
    offs, pos = [], 0
    for t in store.tensors:
        pos = _up(pos, max(align, t.elem_size))
        offs.append(pos)
        pos += t.nbytes
    slot = max(page, _up(pos, page))
    cap = _up(stage_capacity or max_patch_size(store), page)
    lay = AreaLayout(page, offs, slot, page + cap)
    lay.meta_off = 0
    lay.slot_off = (2 * page, 2 * page + slot)
    lay.stage_off = 2 * page + 2 * slot
    lay.area_size = lay.stage_off + lay.stage_size
    return lay

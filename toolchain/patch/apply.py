"""Host reference of the device apply: every check the firmware must make, in its order.

    apply_patch(graph_or_store, data, key) -> new graph / store

Checks, in order (docs/patch-format.md §4): length and header, tag (HMAC-SHA256 with
the device key), payload digest, payload structure, sequence number above the last
committed one, base hash equal to the current store hash, every group addressing a
patchable store tensor with the right element size and in-range offsets, every old
value (when the patch carries them) equal to the current one. Only then is anything written ("begin" is
journaled), records are written as absolute values (idempotent), and the store hash
is recomputed and must equal the target hash ("commit"); otherwise the old values
are written back and the patch is rejected.

A store with `pending` set models a device that lost power mid-apply: the same
patch resumes (each element must then hold its old or its new value), any other
patch is refused until it does.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from toolchain.ir.graph import Graph

from .errors import (PatchApplyError, PatchBaseError, PatchError, PatchReplayError)
from .format import Patch, decode_patch
from .store import WeightStore, store_to_graph, weight_store


def _hx(b: bytes) -> str:
    return b.hex()[:16]


def check_layout(store: WeightStore, p: Patch) -> None:
    n = len(store.tensors)
    for g in p.groups:
        if g.tensor >= n:
            raise PatchBaseError(f"patch addresses weight-store tensor {g.tensor}; the model "
                                 f"has {n}")
        t = store.tensors[g.tensor]
        if not t.patchable:
            raise PatchBaseError(f"patch writes tensor {g.tensor} '{t.name}' ({t.role}); only "
                                 "weights and biases may be patched")
        if g.elem_size != t.elem_size:
            raise PatchBaseError(f"patch writes {g.elem_size}-byte elements to tensor {g.tensor} "
                                 f"'{t.name}' of {t.elem_size}-byte {t.dtype}")
        if g.dense and g.count != t.size:
            raise PatchBaseError(f"dense group for tensor {g.tensor} '{t.name}' has {g.count} "
                                 f"elements, the tensor {t.size}")
        if g.count and int(g.offsets[-1]) >= t.size:
            raise PatchBaseError(f"patch writes element {int(g.offsets[-1])} of tensor "
                                 f"{g.tensor} '{t.name}' which has {t.size}")


def _check_values(store: WeightStore, p: Patch, resume: bool) -> None:
    for g in p.groups:
        t = store.tensors[g.tensor]
        cur = t.data[g.offsets].astype(np.int64)
        if g.old is None:        # FULL / DELTA without old values: the base hash decides
            continue
        ok = (cur == g.old) | (resume & (cur == g.new))
        if not ok.all():
            i = int(np.argmin(ok))
            raise PatchBaseError(
                f"old value mismatch at tensor {g.tensor} '{t.name}' element "
                f"{int(g.offsets[i])}: device holds {int(cur[i])}, patch expects "
                f"{int(g.old[i])}" + (f" or {int(g.new[i])}" if resume else ""))


def verify_against(store: WeightStore, p: Patch) -> bool:
    """State checks of an authenticated, well-formed patch. Returns True when the patch
    resumes an interrupted apply of itself."""
    if store.pending is not None:
        if store.pending["seq"] != p.seq or store.pending["target"] != p.target_hash:
            raise PatchError(f"patch {store.pending['seq']} was interrupted mid-apply; resume "
                             f"it before applying patch {p.seq}")
        check_layout(store, p)
        _check_values(store, p, resume=True)
        return True
    if p.seq <= store.seq:
        raise PatchReplayError(f"patch sequence {p.seq} is not above the last applied "
                               f"{store.seq} (replayed or stale patch)")
    cur = store.hash()
    if p.base_hash != cur:
        raise PatchBaseError(f"patch is for model {_hx(p.base_hash)}, device holds "
                             f"{_hx(cur)} (wrong base)")
    check_layout(store, p)
    _check_values(store, p, resume=False)
    return False


def records(p: Patch) -> Iterator[tuple[int, int, int, int | None]]:
    """(tensor, offset, new, old) in payload order: the order the device writes them."""
    for g in p.groups:
        for i in range(g.count):
            yield g.tensor, int(g.offsets[i]), int(g.new[i]), (None if g.old is None
                                                                else int(g.old[i]))


def write_records(store: WeightStore, p: Patch, start: int = 0, stop: int | None = None,
                  which: str = "new") -> int:
    """Write records [start, stop) (absolute values: idempotent). Returns records written."""
    n = 0
    for k, (t, off, new, old) in enumerate(records(p)):
        if k < start:
            continue
        if stop is not None and k >= stop:
            break
        store.tensors[t].data[off] = new if which == "new" else old
        n += 1
    return n


def begin(store: WeightStore, p: Patch) -> None:
    store.pending = dict(seq=p.seq, base=p.base_hash, target=p.target_hash)


def commit(store: WeightStore, p: Patch) -> None:
    got = store.hash()
    if got != p.target_hash:
        if p.has_old:
            write_records(store, p, which="old")
            store.pending = None
        raise PatchApplyError(f"applied patch {p.seq} gives model {_hx(got)}, patch promises "
                              f"{_hx(p.target_hash)}; " + ("rolled back" if p.has_old else
                                                            "model left invalid"))
    store.seq = p.seq
    store.pending = None


def apply_in_place(store: WeightStore, data: bytes, key: bytes, *,
                   stop_after: int | None = None) -> Patch:
    """Verify and apply to `store` itself. stop_after=n simulates a power loss after n
    records were written: the store is left pending (call again with the same patch to
    resume)."""
    p = decode_patch(data, key)
    resumed = verify_against(store, p)
    if not resumed:
        begin(store, p)
    if stop_after is not None:
        write_records(store, p, 0, stop_after)
        return p
    write_records(store, p)
    commit(store, p)
    return p


def apply_patch(target, data: bytes, key: bytes, *, last_seq: int | None = None):
    """Verify `data` with `key` and apply it to a copy of `target` (a Graph or a
    WeightStore); returns the new Graph (meta['patch_seq'] = patch seq) or WeightStore.
    `last_seq` overrides the last committed sequence number held by the target.
    Raises a PatchError subclass (one-line message) on any failed check."""
    if isinstance(target, Graph):
        store = weight_store(target)
    elif isinstance(target, WeightStore):
        store = target.copy()
    else:
        raise TypeError("apply_patch needs a Graph or a WeightStore")
    if last_seq is not None:
        store.seq = int(last_seq)
    apply_in_place(store, data, key)
    return store_to_graph(store, target) if isinstance(target, Graph) else store


def rollback_patch(target, data: bytes, key: bytes):
    """Undo a committed DELTA patch (writes its old values back; the hash must return to
    the base). The sequence number stays: the undone patch cannot be replayed."""
    store = weight_store(target) if isinstance(target, Graph) else target.copy()
    p = decode_patch(data, key)
    if not p.has_old:
        raise PatchError(f"a {p.type_name} patch without old values cannot be rolled back; "
                         "build a patch back to the base model instead")
    if store.hash() != p.target_hash:
        raise PatchBaseError(f"model {_hx(store.hash())} is not patch {p.seq}'s result "
                             f"{_hx(p.target_hash)}; nothing to roll back")
    check_layout(store, p)
    write_records(store, p, which="old")
    if store.hash() != p.base_hash:
        raise PatchApplyError("rollback did not restore the base model")
    return store_to_graph(store, target) if isinstance(target, Graph) else store

"""Partial weight patches (issue #6, host side). Format spec: docs/patch-format.md.

    weight_store(graph) / store_hash(graph_or_store)      what the device holds and hashes
    diff_patch(old, new, key, seq, budget=...)            patch from two int8 models
    build_patch(old, new_q, key, seq, patch_type)         patch from integers in old scales
    apply_patch(graph_or_store, data, key)                host reference of the device apply
    decode_patch(data, key=None) / encode_patch(p, key)   the file format
    dpu_update(...) (toolchain.patch.dpu)                 deep partial updating (torch)

Light imports only (no torch) at package level."""
from .apply import apply_in_place, apply_patch, rollback_patch  # noqa: F401
from .errors import (PatchApplyError, PatchAuthError, PatchBaseError,  # noqa: F401
                     PatchDigestError, PatchError, PatchFormatError, PatchModelError,
                     PatchReplayError, PatchTruncated)
from .format import Patch, decode_patch, encode_patch, load_key  # noqa: F401
from .make import build_patch, diff_patch, full_patch, select_topk  # noqa: F401
from .store import WeightStore, store_hash, structure_hash, weight_store  # noqa: F401

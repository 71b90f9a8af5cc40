"""Weight store, host apply reference: checks, idempotence, interruption, rollback."""
import copy

import numpy as np
import pytest

from toolchain.ir import reference
from toolchain.patch import (PatchAuthError, PatchBaseError, PatchError, PatchReplayError,
                             PatchTruncated, apply_in_place, apply_patch, decode_patch,
                             diff_patch, full_patch, rollback_patch, store_hash, weight_store)
from toolchain.patch import format as F
from toolchain.patch.make import build_patch, quantize_in_scales, select_topk
from toolchain.patch.store import store_order, structure_hash
from toolchain.patch.toy import toy_int8_graph

KEY = bytes(range(32))


def _changed(g, seed=5, frac=0.1):
    n = copy.deepcopy(g)
    rng = np.random.default_rng(seed)
    for name in ("conv.w", "fc.w"):
        w = n.t(name)
        d = w.data.astype(int)
        m = rng.random(d.shape) < frac
        d[m] = rng.integers(-127, 128, m.sum())
        w.data = d.astype(np.int8)
    n.t("fc.b").data = (n.t("fc.b").data + rng.integers(-50, 50, n.t("fc.b").shape)).astype(np.int32)
    return n


def test_store_order_and_roles():
    g = toy_int8_graph()
    st = weight_store(g)
    assert store_order(g) == ["conv.w", "conv.b", "dw.w", "dw.b", "fc.w", "fc.b"]
    assert [t.role for t in st.tensors] == ["weight", "bias"] * 3
    assert [t.elem_size for t in st.tensors] == [1, 4] * 3
    # store hash = sha256(structure hash || bytes in store order)
    import hashlib
    h = hashlib.sha256(structure_hash(g) + b"".join(g.t(n).data.astype(g.t(n).data.dtype.newbyteorder("<")).tobytes()
                                                    for n in store_order(g))).hexdigest()
    assert store_hash(g) == h == store_hash(st)


def test_structure_hash_ignores_names_but_not_scales():
    g = toy_int8_graph()
    h = store_hash(g)
    g2 = copy.deepcopy(g)
    for op in g2.ops:
        op.name = "renamed_" + op.name
    assert store_hash(g2) == h
    g3 = copy.deepcopy(g)
    g3.t("a1").quant.scale = g3.t("a1").quant.scale * 1.01
    assert store_hash(g3) != h
    g4 = copy.deepcopy(g)
    g4.t("dw.w").data[0, 0, 0, 0] ^= 1
    assert store_hash(g4) != h


def test_tflite_round_trip_keeps_store_hash():
    pytest.importorskip("converters.tflite_writer")
    from converters.tflite_reader import read_tflite
    from converters.tflite_writer import write_tflite
    g = toy_int8_graph()
    assert store_hash(read_tflite(write_tflite(g))) == store_hash(g)


def test_apply_equals_new_and_runs():
    g = toy_int8_graph()
    n = _changed(g)
    r = diff_patch(g, n, KEY, seq=1)
    out = apply_patch(g, r.data, KEY)
    assert store_hash(out) == store_hash(n) == r.info["target"]
    assert out.meta["patch_seq"] == 1
    x = np.random.default_rng(0).integers(-128, 128, (1, 6, 6, 1)).astype(np.int8)
    assert np.array_equal(reference.run(out, {"x": x})["probs"], reference.run(n, {"x": x})["probs"])
    # the store path gives the same
    st = apply_patch(weight_store(g), r.data, KEY)
    assert st.hexhash() == store_hash(n) and st.seq == 1


def test_rejections():
    g = toy_int8_graph()
    n = _changed(g)
    r = diff_patch(g, n, KEY, seq=3)
    with pytest.raises(PatchAuthError):
        apply_patch(g, r.data, bytes(32))
    with pytest.raises(PatchTruncated):
        apply_patch(g, r.data[:-1], KEY)
    with pytest.raises(PatchReplayError, match="not above"):
        apply_patch(g, r.data, KEY, last_seq=3)
    with pytest.raises(PatchBaseError, match="wrong base"):
        apply_patch(toy_int8_graph(seed=1), r.data, KEY)
    out = apply_patch(g, r.data, KEY)
    with pytest.raises(PatchReplayError):       # applying the same patch twice = replay
        apply_patch(out, r.data, KEY)
    # a patch built for the same hash but with wrong old values (host bug) is caught
    p = decode_patch(r.data, KEY)
    p.groups[0].old = p.groups[0].old + 1
    bad = F.encode_patch(p, KEY)
    with pytest.raises(PatchBaseError, match="old value mismatch"):
        apply_patch(g, bad, KEY)
    # wrong target promise: rejected after writing, and rolled back
    p = decode_patch(r.data, KEY)
    p.target_hash = bytes(32)
    st = weight_store(g)
    from toolchain.patch.errors import PatchApplyError
    with pytest.raises(PatchApplyError, match="rolled back"):
        apply_in_place(st, F.encode_patch(p, KEY), KEY)
    assert st.hexhash() == store_hash(g) and st.pending is None and st.seq == 0


def test_errors_are_one_line():
    g = toy_int8_graph()
    r = diff_patch(g, _changed(g), KEY, seq=1)
    for fn in (lambda: apply_patch(g, r.data, bytes(32)), lambda: apply_patch(g, r.data[:10], KEY),
               lambda: apply_patch(toy_int8_graph(1), r.data, KEY)):
        with pytest.raises(PatchError) as e:
            fn()
        assert "\n" not in str(e.value) and str(e.value)


def test_idempotent_records_and_interruption_at_every_record():
    g = toy_int8_graph()
    n = _changed(g)
    r = diff_patch(g, n, KEY, seq=1)
    want = store_hash(n)
    total = r.patch.entries
    assert total > 50
    for cut in range(total + 1):
        st = weight_store(g)
        apply_in_place(st, r.data, KEY, stop_after=cut)       # power lost after `cut` records
        assert st.pending is not None and st.pending["seq"] == 1
        if 0 < cut:
            # another patch may not run over a half-applied one
            with pytest.raises(PatchError, match="interrupted"):
                apply_in_place(st.copy(), diff_patch(g, n, KEY, seq=2).data, KEY)
        if cut % 7 == 3:                                      # interrupted twice
            apply_in_place(st, r.data, KEY, stop_after=cut // 2)
        apply_in_place(st, r.data, KEY)                       # resume
        assert st.hexhash() == want and st.pending is None and st.seq == 1
    # writing every record twice changes nothing (absolute values)
    from toolchain.patch.apply import write_records
    st = weight_store(g)
    write_records(st, r.patch)
    write_records(st, r.patch)
    assert st.hexhash() == want


def test_full_patch_and_rollback():
    g = toy_int8_graph()
    n = _changed(g)
    rf = full_patch(g, n, KEY, seq=1)
    assert decode_patch(rf.data, KEY).type == F.TYPE_FULL
    assert store_hash(apply_patch(g, rf.data, KEY)) == store_hash(n)
    with pytest.raises(PatchError, match="cannot be rolled back"):
        rollback_patch(apply_patch(g, rf.data, KEY), rf.data, KEY)
    rd = diff_patch(g, n, KEY, seq=1)
    assert rd.info["bytes"] < rf.info["bytes"]
    back = rollback_patch(apply_patch(g, rd.data, KEY), rd.data, KEY)
    assert store_hash(back) == store_hash(g)


def test_chain_of_patches():
    g = toy_int8_graph()
    cur = g
    for seq in (1, 2, 5):
        n = _changed(cur, seed=seq)
        r = diff_patch(cur, n, KEY, seq=seq)
        cur = apply_patch(cur, r.data, KEY)
        assert store_hash(cur) == store_hash(n)


def test_budget_selects_exactly_k():
    g = toy_int8_graph()
    n = _changed(g, frac=0.5)
    st = weight_store(g)
    I = sum(t.size for t in st.tensors if t.role == "weight")
    for k in (0.01, 0.05, 0.1):
        r = diff_patch(g, n, KEY, seq=1, budget=k)
        assert r.info["selected"] == round(k * I)
        assert r.info["weights_changed"] <= round(k * I)
    scores = {0: np.array([0.0, 3, 3, 1]), 1: np.array([3.0, 2])}
    m = select_topk(scores, 0.5)
    assert [list(m[0]), list(m[1])] == [[False, True, True, False], [True, False]]


def test_requantize_in_old_scales():
    g = toy_int8_graph()
    # new model: same floats but quantized with doubled weight scales -> re-quantized back
    n = copy.deepcopy(g)
    w = n.t("conv.w")
    f = w.data.astype(np.float64) * w.quant.scale.reshape(-1, 1, 1, 1)
    w.quant.scale = w.quant.scale * 2
    w.data = np.round(f / w.quant.scale.reshape(-1, 1, 1, 1)).astype(np.int8)
    r = diff_patch(g, n, KEY, seq=1)
    out = apply_patch(g, r.data, KEY)
    assert structure_hash(out) == structure_hash(g)           # deployed scales kept
    assert np.array_equal(out.t("conv.w").quant.scale, g.t("conv.w").quant.scale)
    err = np.abs(out.t("conv.w").data.astype(int) - g.t("conv.w").data.astype(int))
    assert err.max() <= 1                                      # only rounding of the coarser grid
    # explicit: floats -> ints in old scales, clipped to [-127, 127] and int32
    st = weight_store(g)
    q = quantize_in_scales(g, {0: np.full(st.tensors[0].shape, 1e6), 1: np.full((4,), 0.5)})
    assert q[0].max() == 127
    s_b = g.t("conv.b").quant.scale
    assert np.array_equal(q[1], np.round(0.5 / s_b).astype(np.int64))


def test_build_patch_unchanged_is_empty():
    g = toy_int8_graph()
    r = build_patch(g, {}, KEY, seq=1)
    assert r.patch.entries == 0 and r.info["target"] == r.info["base"]
    assert store_hash(apply_patch(g, r.data, KEY)) == store_hash(g)


def test_delta_without_old_values():
    """HAS_OLD clear: the base is verified by its store hash alone; same result, fewer
    bytes, interruption-safe (absolute values), not undoable from the patch."""
    g = toy_int8_graph()
    n = _changed(g)
    r_old = diff_patch(g, n, KEY, seq=1)
    r = diff_patch(g, n, KEY, seq=1, with_old=False)
    p = decode_patch(r.data, KEY)
    assert p.type == F.TYPE_DELTA and not p.has_old and r.info["old_values"] is False
    assert r.patch.entries == r_old.patch.entries
    int8_entries = sum(gr.count for gr in p.groups if gr.elem_size == 1)
    int32_entries = p.entries - int8_entries
    assert len(r_old.data) - len(r.data) == int8_entries + 4 * int32_entries
    out = apply_patch(g, r.data, KEY)
    assert store_hash(out) == store_hash(n) == r.info["target"]
    with pytest.raises(PatchBaseError, match="wrong base"):
        apply_patch(toy_int8_graph(seed=1), r.data, KEY)
    with pytest.raises(PatchError, match="cannot be rolled back"):
        rollback_patch(out, r.data, KEY)
    # rollback = a patch from the result back to the base, built on the host
    back = apply_patch(out, diff_patch(out, g, KEY, seq=2, with_old=False).data, KEY)
    assert store_hash(back) == store_hash(g) and back.meta["patch_seq"] == 2
    for cut in range(0, r.patch.entries + 1, 7):               # power loss, resume
        st = weight_store(g)
        apply_in_place(st, r.data, KEY, stop_after=cut)
        apply_in_place(st, r.data, KEY, stop_after=cut // 3)
        apply_in_place(st, r.data, KEY)
        assert st.hexhash() == store_hash(n) and st.pending is None and st.seq == 1
    # a wrong target promise cannot be rolled back from the patch: reported, left pending
    p.target_hash = bytes(32)
    from toolchain.patch.errors import PatchApplyError
    st = weight_store(g)
    with pytest.raises(PatchApplyError, match="model left invalid"):
        apply_in_place(st, F.encode_patch(p, KEY), KEY)

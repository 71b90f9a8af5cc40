"""Nested row-sparse store (toolchain.subnets.store), shared-weight quantization
across levels (toolchain.subnets.quantize) and the numpy reference of the
row-sparse ops (toolchain.subnets.reference) == tflite-micro on each level's
dense-with-zeros .tflite, byte for byte."""
import numpy as np
import pytest

from subnets_cases import LEVEL_SETS, make_case, random_case
from toolchain.ir.graph import IRError
from toolchain.tflm_oracle import run_tflite
from toolchain.subnets import reference as R
from toolchain.subnets.store import (build_store, byte_report, check_levels, decode_columns,
                                     decode_level, importance_order, level_counts,
                                     nested_masks)

SHAPES = [(8, 64), (16, 3, 3, 16), (7, 576), (5, 3, 3, 70), (3, 256), (4, 1, 1, 5), (2, 1)]


@pytest.mark.parametrize("bad", [(), (0.5, 0.5), (0.75, 0.5), (-0.1,), (1.0,), (0.5, 1.2)])
def test_bad_levels(bad):
    with pytest.raises(IRError):
        check_levels(bad)


def test_counts_rounding():
    assert list(level_counts(64, (0, 0.5, 0.75, 0.9))) == [64, 32, 16, 6]
    assert list(level_counts(3, (0.9,))) == [1]          # at least one entry per row


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("levels", LEVEL_SETS + [(0.0,), (0.1, 0.2)])
def test_store_roundtrip_and_nesting(shape, levels):
    rng = np.random.default_rng(abs(hash((shape, levels))) % 2**32)
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    order = importance_order(w)
    st = build_store(w, order, levels)
    masks = nested_masks(order, levels)
    assert (decode_columns(st) == st.columns).all()
    R_, K = st.rows, st.row_len
    for k in range(len(levels)):
        m = st.level_mask(k)
        assert (m == masks[k]).all()
        assert (m.sum(axis=1) == st.counts[k]).all()            # same count in every row
        cols, vals = decode_level(st, k)                        # from the flash layout only
        d = np.zeros((R_, K), np.int64)
        d[np.arange(R_)[:, None], cols] = vals
        assert (d == np.where(m, w.reshape(R_, K), 0)).all()
        assert (st.dense(k) == np.where(m.reshape(shape), w, 0)).all()
        if k:                                                   # sparser level nested
            assert not (masks[k] & ~masks[k - 1]).any()
        # the level keeps the most important entries of each row
        top = np.take_along_axis(m, order[:, :st.counts[k]], axis=1)
        assert top.all()
    a = st.c_arrays()
    assert a["pairs"].shape == (R_, a["n_cols"], 2)
    if K > 256:
        assert a["seg_counts"] is not None and a["seg_counts"].max() <= 255


def test_bad_order():
    w = np.zeros((2, 4), np.int8)
    with pytest.raises(IRError):
        build_store(w, np.zeros((2, 4), np.int64), (0.5,))
    with pytest.raises(IRError):
        build_store(w.astype(np.float32), np.tile(np.arange(4), (2, 1)), (0.5,))


@pytest.mark.parametrize("shape", [(64, 3, 3, 16), (64, 3, 3, 64), (64, 64), (32, 3, 3, 32),
                                   (12, 64), (64, 10, 4, 1)])
def test_byte_targets(shape):
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    o = importance_order(w)
    r = byte_report(build_store(w, o, (0.5, 0.75, 0.9)))
    assert r["store_vs_dense"] <= 1.05, r
    assert r["store_vs_k_dense"] <= 0.6, r
    rd = byte_report(build_store(w, o, (0.0, 0.5, 0.75, 0.9)))
    assert rd["store_vs_dense"] <= 1.6, rd
    assert rd["store_vs_k_dense"] <= 0.6, rd


@pytest.mark.parametrize("op_type", ["CONV_2D", "FULLY_CONNECTED"])
def test_shared_quantization(op_type):
    rng = np.random.default_rng(7)
    case = make_case(rng, op_type, levels=(0.0, 0.5, 0.75, 0.9))
    st, gs = case.store, case.shared.graphs
    s0 = gs[0].t("w").quant.scale
    for k, g in enumerate(gs):
        w = g.t("w")
        assert w.dtype == "int8" and (w.quant.scale == s0).all()       # one scale
        assert (w.data == st.dense(k)).all()                            # shared values, masked
        assert (w.data.reshape(st.rows, -1) != 0).sum(axis=1).max() <= st.counts[k]
        b = g.t("b")
        bs = np.asarray(b.quant.scale)
        want = np.float32(g.t("x").quant.scale[0]) * np.broadcast_to(s0, bs.shape).astype(np.float32)
        assert np.allclose(bs, want.astype(np.float64), rtol=1e-6)     # bias in the level's scales
    # each level has its own activation quantization (calibrated through that level)
    outs = {(float(g.t("y").quant.scale[0]), int(g.t("y").quant.zero_point[0])) for g in gs}
    assert len(outs) > 1


@pytest.mark.parametrize("op_type", ["CONV_2D", "FULLY_CONNECTED"])
def test_reference_equals_tflm(op_type):
    rng = np.random.default_rng(11 if op_type == "CONV_2D" else 12)
    fixed = ([make_case(rng, op_type, h=5, w=5, cin=40, cout=4, kh=3, kw=3, levels=(0, 0.5, 0.9)),
              make_case(rng, op_type, h=6, w=7, cin=3, cout=5, kh=3, kw=3, stride=2,
                        padding="VALID", levels=(0.25, 0.5))]
             if op_type == "CONV_2D" else
             [make_case(rng, op_type, batch=2, k=600, out=3, levels=(0, 0.5, 0.75, 0.9)),
              make_case(rng, op_type, batch=1, k=7, out=5, levels=(0.5,))])
    cases = fixed + [random_case(rng, op_type) for _ in range(24)]
    fn = R.sparse_conv2d if op_type == "CONV_2D" else R.sparse_fully_connected
    for c in cases:
        for k, g in enumerate(c.shared.graphs):
            p = R.level_params(g, g.ops[0])
            got = fn(c.store, k, c.x[k], p)
            want = run_tflite(c.shared.tflite(k), c.x[k])[0].reshape(got.shape)
            assert got.tobytes() == want.tobytes(), (c.levels, k, c.store.shape)


def test_level_params_rejects_other_ops():
    rng = np.random.default_rng(0)
    c = make_case(rng, "FULLY_CONNECTED")
    g = c.shared.graphs[0]
    op = g.ops[0]
    op2 = type(op)("SOFTMAX", op.inputs[:1], op.outputs, {})
    with pytest.raises(IRError):
        R.level_params(g, op2)


def test_share_levels_without_float_graphs_and_errors():
    from subnets_cases import float_conv
    from converters.quantize import quantize
    from toolchain.subnets.quantize import mask_float_graph, share_levels
    rng = np.random.default_rng(3)
    fg = float_conv(rng, h=6, w=6, cin=4, cout=5)
    levels = (0.0, 0.5, 0.8)
    orders = {"w": importance_order(fg.t("w").data)}
    calib = rng.normal(0, 1, (8,) + fg.t("x").shape[1:]).astype(np.float32)
    fgs = [mask_float_graph(fg, orders, levels, k) for k in range(3)]
    qgs = [quantize(g, calib) for g in fgs]
    a = share_levels(qgs, orders, levels, fgs)
    b = share_levels(qgs, orders, levels)           # bias rescaled from the level's int32
    for k in range(3):
        assert (a.graphs[k].t("w").data == b.graphs[k].t("w").data).all()
        assert np.abs(a.graphs[k].t("b").data.astype(np.int64)
                      - b.graphs[k].t("b").data.astype(np.int64)).max() <= 1
        x = rng.integers(-128, 128, fg.t("x").shape).astype(np.int8)
        p = R.level_params(b.graphs[k], b.graphs[k].ops[0])
        got = R.sparse_conv2d(b.stores["w"], k, x, p)
        assert got.tobytes() == run_tflite(b.tflite(k), x)[0].reshape(got.shape).tobytes()
    with pytest.raises(IRError):
        share_levels(qgs[:2], orders, levels)
    with pytest.raises(IRError):
        share_levels(qgs, {"nope": orders["w"]}, levels)
    with pytest.raises(IRError):
        share_levels(qgs, orders, (0.5, 0.2, 0.1))

"""Fixed-point SNNs: the arithmetic definitions, accuracy against the float simulation on
a trained digits MLP, and every refusal (which parameter, why)."""
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from converters.nir_frontend import SNNWarning, from_nir  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402
from toolchain.snn import fixed_point as fp  # noqa: E402
from toolchain.snn.float_sim import simulate  # noqa: E402

T = 8


def test_rounding_definitions():
    np.testing.assert_array_equal(fp.rnd([0.5, 1.5, -0.5, -1.5, 2.4999]), [1, 2, -1, -2, 2])
    # mulq15: (b*v + 2^14) >> 15, round half up
    np.testing.assert_array_equal(fp.mulq15(16384, [1, 3, -1, -3, 5]), [1, 2, 0, -1, 3])
    np.testing.assert_array_equal(fp.mulq15(32768, [7, -7]), [7, -7])   # beta = 1 exact
    np.testing.assert_array_equal(fp.shift_acc([3, -3, 5, -5], -1), [2, -1, 3, -2])
    np.testing.assert_array_equal(fp.shift_acc([3, -3], 2), [12, -12])
    np.testing.assert_array_equal(fp.sat([40000, -40000, 5], 16), [32767, -32768, 5])


@pytest.fixture(scope="module")
def trained():
    from snn_common import export, snntorch_counts, train_digits_mlp
    net, data = train_digits_mlp(timesteps=T)
    g = from_nir(export(net, (64,)), reset="subtract")
    # the trained module too: float spike counts identical to snnTorch's
    np.testing.assert_array_equal(simulate(g, data[2], T).counts,
                                  snntorch_counts(net, data[2], T))
    return g, data


@pytest.mark.parametrize("bits", [32, 16])
def test_trained_mlp_fixed_vs_float(trained, bits):
    g, (xtr, ytr, xte, yte) = trained
    ref = simulate(g, xte, T)
    q = fp.quantize(g, xtr[:300], T, state_bits=bits)
    res = fp.run_fixed(q, xte, T)
    acc_f = (ref.counts.argmax(1) == yte).mean()
    acc_q = (res.counts.argmax(1) == yte).mean()
    assert acc_f > 0.8
    assert abs(acc_q - acc_f) <= 0.015, (acc_f, acc_q)
    assert (res.counts.argmax(1) == ref.counts.argmax(1)).mean() > 0.95
    assert q.t(q.ops[0].inputs[1]).dtype == "int8"
    assert q.t(q.ops[0].inputs[1]).quant.axis == 0               # per output channel
    assert set(q.ops[1].attrs) >= {"beta", "thr", "frac_bits", "v_scale", "reset"}
    assert q.ops[1].attrs["beta"] == [round(0.9 * 32768)] * q.t(q.ops[1].outputs[0]).shape[-1]


def test_compare_report(trained):
    g, (xtr, ytr, xte, yte) = trained
    q = fp.quantize(g, xtr[:300], T, state_bits=16)
    rep = fp.compare(g, q, xte, T, y=yte)
    assert rep["samples"] == len(xte) and rep["encoding"] == "constant"
    assert 0 < rep["identical_counts"] <= len(xte) and rep["argmax_agreement"] > 0.95
    assert abs(rep["accuracy_fixed"] - rep["accuracy_float"]) <= 0.015
    assert set(rep["spike_rate"]) == {"1", "3"}
    assert all(0 < v["fixed"] < 1 and abs(v["fixed"] - v["float"]) < 0.05
               for v in rep["spike_rate"].values())


def test_rate_coded_fixed_vs_float(trained):
    g, (xtr, ytr, xte, yte) = trained
    ref = simulate(g, xte, 16, encoding="rate", seed=3)
    q = fp.quantize(g, xtr[:300], 16, encoding="rate", seed=3)
    res = fp.run_fixed(q, xte, 16)
    assert (res.counts.argmax(1) == ref.counts.argmax(1)).mean() > 0.9


def _chain(in_shape, *layers):
    nodes = {"input": nir.Input(np.array(in_shape))}
    keys = ["input"]
    for i, l in enumerate(layers):
        nodes[f"l{i}"] = l
        keys.append(f"l{i}")
    nodes["output"] = nir.Output(np.array([1]))
    keys.append("output")
    return nir.NIRGraph(nodes, list(zip(keys, keys[1:])), type_check=False)


def _lif(n, thr=1.0, tau=1e-3):
    shape = n if isinstance(n, tuple) else (n,)
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / 1e-4),
                   v_leak=np.zeros(shape), v_threshold=np.broadcast_to(thr, shape).copy(),
                   v_reset=np.zeros(shape))


def test_li_readout_dequantizes():
    rng = np.random.default_rng(0)
    li = nir.LI(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3))
    g = from_nir(_chain([5], nir.Affine(rng.normal(size=(4, 5)), np.zeros(4)), _lif(4, 0.3),
                        nir.Affine(rng.normal(size=(3, 4)), rng.normal(size=3)), li))
    x = rng.random((20, 5))
    q = fp.quantize(g, x, T)
    got = fp.run_fixed(q, x, T).counts * fp.output_scale(q)
    want = simulate(g, x, T).counts
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_refusals():
    rng = np.random.default_rng(1)
    x = rng.random((4, 6))
    # per-neuron threshold varying across space in a conv layer
    thr = np.ones((2, 4, 4))
    thr[0, 0, 0] = 0.5
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(size=(2, 1, 3, 3)), stride=1,
                      padding=1, dilation=1, groups=1, bias=np.zeros(2))
    g = from_nir(_chain([1, 4, 4], conv, _lif((2, 4, 4), thr)))
    with pytest.raises(IRError, match=r"layer 'l1' \(LIF\): v_threshold varies within a channel"):
        fp.quantize(g, rng.random((2, 1, 4, 4)), T)
    # threshold tiny compared with the weights
    g = from_nir(_chain([6], nir.Affine(rng.normal(size=(3, 6)) * 1e3, np.zeros(3)),
                        _lif(3, 1e-9)))
    with pytest.raises(IRError, match=r"'l1' \(LIF\): v_threshold 1e-09 rounds to 0"):
        fp.quantize(g, x, T, state_bits=16)
    # membrane range beyond int16 (huge threshold), fine in int32
    g = from_nir(_chain([6], nir.Affine(rng.normal(size=(3, 6)) * 1e-3, np.zeros(3)),
                        _lif(3, 1e4)))
    with pytest.raises(IRError, match=r"'l1' \(LIF\): the membrane range needs \d+ bits, more "
                                      r"than int16"):
        fp.quantize(g, x, T, state_bits=16)
    fp.quantize(g, x, T, state_bits=32)
    # beta outside [0, 1]
    g = from_nir(_chain([6], nir.Affine(rng.normal(size=(3, 6)), np.zeros(3)), _lif(3)))
    g.ops[1].attrs["beta"] = 1.2
    with pytest.raises(IRError, match=r"'l1' \(LIF\): beta = 1.2..1.2 is outside \[0, 1\]"):
        fp.quantize(g, x, T)
    # a neuron layer not fed by a synapse; pooling of analog input
    g = from_nir(_chain([6], _lif(6)))
    with pytest.raises(IRError, match=r"'l0' \(LIF\): fixed point needs a synapse"):
        fp.quantize(g, x, T)
    pool = nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
    g = from_nir(_chain([1, 4, 4], pool, nir.Flatten(np.array([1, 2, 2]), 0, -1),
                        nir.Affine(np.ones((2, 4)), np.zeros(2)), _lif(2)))
    with pytest.raises(IRError, match=r"'l0' \(SUM_POOL_2D\): fixed point pools only spikes"):
        fp.quantize(g, rng.random((2, 1, 4, 4)), T)
    fp.quantize(g, rng.random((2, T, 1, 4, 4)) < 0.5, T, encoding="events")
    q = fp.quantize(g, rng.random((2, T, 1, 4, 4)) < 0.5, T, encoding="events")
    with pytest.raises(IRError, match="quantized for events input, not constant"):
        fp.run_fixed(q, rng.random((2, 1, 4, 4)), T, encoding="constant")
    with pytest.raises(IRError, match="state_bits must be 16 or 32"):
        fp.quantize(g, x, T, state_bits=8)


def test_gain_far_from_one_warns():
    rng = np.random.default_rng(2)
    lif = nir.LIF(tau=np.full(3, 1e-3), r=np.full(3, 100.0), v_leak=np.zeros(3),
                  v_threshold=np.ones(3), v_reset=np.zeros(3))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        g = from_nir(_chain([6], nir.Affine(rng.normal(size=(3, 6)), np.zeros(3)), lif))
    assert any(issubclass(w.category, SNNWarning) and "gain r*dt/tau = 10" in str(w.message)
               for w in rec)
    x = rng.random((10, 6))
    q = fp.quantize(g, x, T)              # the gain is folded into the int8 weights
    assert (fp.run_fixed(q, x, T).counts == simulate(g, x, T).counts).mean() > 0.9

"""Input encodings: rate coding (xorshift32, defined thresholds and seeds), event files
(dense and triples) and their one-line errors."""
import numpy as np
import pytest

from toolchain.ir.graph import IRError
from toolchain.snn.encoding import (encode, rate_levels, rate_thresholds, read_events,
                                    sample_seed, xorshift32)


def test_rate_definitions():
    np.testing.assert_array_equal(rate_levels([-1, 0, 0.5, 0.998, 1, 2]), [0, 0, 128, 254, 255, 255])
    np.testing.assert_array_equal(rate_thresholds([0, 1, 128, 255]), [0, 257, 32897, 65536])
    assert sample_seed(0, 0) == 0x9E3779B9                 # 0 is never a state
    assert sample_seed(5, 1) == 5 ^ 0x9E3779B9
    assert int(sample_seed(1, 2 ** 32 + 3)) == int(sample_seed(1, 3))
    s = np.uint32(0x9E3779B9)
    seq = []
    for _ in range(3):
        s = xorshift32(s)
        seq.append(int(s))
    # the same stream by plain Python integers
    t, ref = 0x9E3779B9, []
    for _ in range(3):
        t ^= (t << 13) & 0xFFFFFFFF
        t ^= t >> 17
        t ^= (t << 5) & 0xFFFFFFFF
        ref.append(t)
    assert seq == ref


def test_rate_encode_is_seeded_and_per_sample():
    x = np.full((3, 50), 0.3)
    a = np.stack(list(encode(x, 6, "rate", seed=1)))
    b = np.stack(list(encode(x, 6, "rate", seed=1)))
    c = np.stack(list(encode(x, 6, "rate", seed=2)))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any() and (a[:, 0] != a[:, 1]).any()
    # sample i of a batch equals sample i encoded alone with first_index=i
    one = np.stack(list(encode(x[2:3], 6, "rate", seed=1, first_index=2)))
    np.testing.assert_array_equal(one[:, 0], a[:, 2])
    assert set(np.unique(a)) <= {0.0, 1.0}


def test_constant_and_events_and_errors():
    x = np.random.default_rng(0).random((2, 4))
    steps = list(encode(x, 3, "constant"))
    assert len(steps) == 3 and all(np.array_equal(s, x.astype(np.float32)) for s in steps)
    ev = np.random.default_rng(0).random((2, 5, 4)) < 0.5
    np.testing.assert_array_equal(np.stack(list(encode(ev, 5, "events")), 1), ev)
    with pytest.raises(IRError, match="unknown input encoding 'poisson'"):
        list(encode(x, 3, "poisson"))
    with pytest.raises(IRError, match=r"need \[N, T >= 6"):
        list(encode(ev, 6, "events"))


def test_read_events(tmp_path):
    dense = np.random.default_rng(1).random((3, 4, 2, 3, 3)) < 0.2
    p = tmp_path / "d.npz"
    np.savez(p, spikes=dense, y=np.arange(3))
    s, y = read_events(p, shape=(2, 3, 3))
    np.testing.assert_array_equal(s, dense)
    np.testing.assert_array_equal(y, [0, 1, 2])
    idx = np.argwhere(dense.reshape(3, 4, -1))
    p2 = tmp_path / "t.npz"
    np.savez(p2, events=idx, shape=np.array([2, 3, 3]), n=3, timesteps=4)
    s2, y2 = read_events(p2)
    np.testing.assert_array_equal(s2, dense)
    assert y2 is None
    bad = [(dict(spikes=dense), dict(shape=(2, 9)), "spikes per step have shape"),
           (dict(spikes=dense.astype(int) * 2), {}, "values other than 0 and 1"),
           (dict(events=idx), {}, "needs 'shape'"),
           (dict(events=idx.astype(float), shape=[2, 3, 3]), {}, "expected integer"),
           (dict(events=idx, shape=[2, 3, 3], n=2), {}, "outside 2 samples"),
           (dict(x=np.zeros(3)), {}, "neither 'spikes' nor 'events'")]
    for i, (arrays, kw, msg) in enumerate(bad):
        f = tmp_path / f"b{i}.npz"
        np.savez(f, **arrays)
        with pytest.raises(IRError, match=msg):
            read_events(f, **kw)
    with pytest.raises(IRError, match="no such file"):
        read_events(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(IRError, match="not a valid .npz"):
        read_events(tmp_path / "junk.npz")


def test_wrong_data_shape_is_one_line():
    nir = pytest.importorskip("nir")
    from converters.nir_frontend import from_nir
    from toolchain.snn.float_sim import simulate
    g = from_nir(nir.NIRGraph({"input": nir.Input(np.array([4])), "a": nir.Linear(np.eye(4)),
                               "t": nir.Threshold(np.zeros(4)),
                               "output": nir.Output(np.array([4]))},
                              [("input", "a"), ("a", "t"), ("t", "output")], type_check=False))
    with pytest.raises(IRError, match=r"input data has shape \(2, 5\); the model expects \[N, 4\]"):
        simulate(g, np.zeros((2, 5)), 3)

"""NIR front end: each node type on its own (against hand-written Euler / layer maths),
graph walking by edges, layouts, and refusals."""
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from converters.nir_frontend import SNNWarning, from_nir  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402
from toolchain.snn.float_sim import simulate  # noqa: E402

DT = 1e-4
rng = np.random.default_rng(0)


def graph(nodes: dict, edges, order=None):
    if order is not None:
        nodes = {k: nodes[k] for k in order}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def chain(in_shape, *layers, out=(1,)):
    """Input -> layers... -> Output, nodes listed in REVERSE order (walk must use edges)."""
    nodes = {"input": nir.Input(np.array(in_shape))}
    keys = ["input"]
    for i, l in enumerate(layers):
        nodes[f"l{i}"] = l
        keys.append(f"l{i}")
    nodes["output"] = nir.Output(np.array(out))
    keys.append("output")
    edges = list(zip(keys, keys[1:]))
    return graph(nodes, edges, order=list(reversed(list(nodes))))


def lif_ref(cur, beta, gain, thr, vreset=0.0, subtract=False):
    """Hand-written Euler LIF over [T, N, ...] currents (delayed reset) -> counts."""
    v = np.zeros_like(cur[0], np.float64)
    cnt = np.zeros_like(v)
    for c in cur:
        fired = v > thr
        if subtract:
            v = beta * v + gain * c - fired * thr
        else:
            v = beta * np.where(fired, vreset, v) + gain * c
        cnt += v > thr
    return cnt


def test_affine_lif_tau_and_gain():
    w, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    tau, r = 2e-3, 25.0          # beta = 0.95, gain = r*dt/tau = 1.25
    g = from_nir(chain([6], nir.Affine(w, b), nir.LIF(tau=np.full(4, tau), r=np.full(4, r),
                                                        v_leak=np.zeros(4),
                                                        v_threshold=np.full(4, 0.8),
                                                        v_reset=np.full(4, 0.1))))
    op = g.ops[1]
    assert op.type == "LIF" and op.attrs["beta"] == pytest.approx(0.95)
    assert op.attrs["gain"] == pytest.approx(1.25) and op.attrs["v_reset"] == pytest.approx(0.1)
    assert g.state == ["l1.v"]
    x = rng.random((8, 6))
    cur = np.repeat((x @ w.T + b)[None], 15, 0)
    np.testing.assert_array_equal(simulate(g, x, 15).counts,
                                  lif_ref(cur, 0.95, 1.25, 0.8, 0.1))


def test_linear_scale_threshold():
    w, s = rng.normal(size=(3, 5)), np.array([0.5, 2.0, -1.0])
    g = from_nir(chain([5], nir.Linear(w), nir.Scale(s), nir.Threshold(np.full(3, 0.2))))
    assert [o.type for o in g.ops] == ["FULLY_CONNECTED", "SCALE", "THRESHOLD"]
    x = rng.random((10, 5))
    np.testing.assert_array_equal(simulate(g, x, 4).counts, 4 * ((x @ w.T) * s > 0.2))


def test_if_li_cubali():
    w = rng.normal(size=(3, 4))
    g = from_nir(chain([4], nir.Linear(w), nir.IF(r=np.full(3, 1e4), v_threshold=np.ones(3))))
    x = rng.random((6, 4))
    cur = np.repeat((x @ w.T)[None], 12, 0)
    np.testing.assert_array_equal(simulate(g, x, 12).counts, lif_ref(cur, 1.0, 1.0, 1.0))
    li = nir.LI(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.full(3, 0.5))
    g = from_nir(chain([4], nir.Linear(w), li))
    v = np.zeros((6, 3))
    for _ in range(7):
        v = 0.9 * v + (x @ w.T) + 0.1 * 0.5
    np.testing.assert_allclose(simulate(g, x, 7).counts, v, rtol=1e-5, atol=1e-5)
    cli = nir.CubaLI(tau_syn=np.full(3, 5e-4), tau_mem=np.full(3, 1e-3), r=np.full(3, 10.0),
                     v_leak=np.zeros(3), w_in=np.full(3, 5.0))
    g = from_nir(chain([4], nir.Linear(w), cli))
    assert g.ops[1].type == "CUBA_LI" and g.state == ["l1.i", "l1.v"]
    i, v = np.zeros((6, 3)), np.zeros((6, 3))
    for _ in range(7):
        i = 0.8 * i + (x @ w.T)
        v = 0.9 * v + i
    np.testing.assert_allclose(simulate(g, x, 7).counts, v, rtol=1e-5, atol=1e-5)


def _conv_ref(x, w, b, stride, pad, dil, groups):
    """NCHW reference convolution (plain loops)."""
    n, c, h, wd = x.shape
    o, ipg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    opg = o // groups
    for oc in range(o):
        gi = oc // opg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, gi * ipg:(gi + 1) * ipg, i * dil[0]:i * dil[0] + (oh - 1) * stride[0] + 1:stride[0],
                           j * dil[1]:j * dil[1] + (ow - 1) * stride[1] + 1:stride[1]]
                y[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j])
        y[:, oc] += b[oc]
    return y


@pytest.mark.parametrize("stride,pad,dil,groups,k", [
    ((1, 1), (1, 1), (1, 1), 1, (3, 3)), ((2, 1), (0, 2), (1, 2), 2, (3, 3)),
    ((1, 1), (0, 1), (1, 1), 4, (1, 3))])
def test_conv2d_then_threshold(stride, pad, dil, groups, k):
    c, o = 4, 8
    w, b = rng.normal(size=(o, c // groups, *k)), rng.normal(size=o)
    x = rng.random((3, c, 7, 9))
    ref = _conv_ref(x, w, b, stride, pad, dil, groups)
    conv = nir.Conv2d(input_shape=(7, 9), weight=w, stride=stride, padding=pad, dilation=dil,
                      groups=groups, bias=b)
    g = from_nir(chain([c, 7, 9], conv, nir.Threshold(np.zeros(ref.shape[1:]))))
    assert g.t(g.outputs[0]).shape == (1, *ref.shape[2:], o)     # own shape inference
    out = simulate(g, x, 1).counts.reshape(3, *ref.shape[2:], o).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, ref > 0)


def test_conv1d_sumpool_flatten_affine():
    w1, b1 = rng.normal(size=(3, 2, 3)), rng.normal(size=3)
    x = rng.random((4, 2, 10))
    conv = nir.Conv1d(input_shape=10, weight=w1, stride=1, padding=1, dilation=1, groups=1,
                      bias=b1)
    ref = _conv_ref(x[:, :, None], w1[:, :, None], b1, (1, 1), (0, 1), (1, 1), 1)[:, :, 0]
    w2 = rng.normal(size=(2, 30))
    g = from_nir(chain([2, 10], conv, nir.Flatten(np.array([3, 10]), 0, -1),
                       nir.Affine(w2, np.zeros(2)), nir.Threshold(np.zeros(2))))
    np.testing.assert_array_equal(simulate(g, x, 1).counts, (ref.reshape(4, -1) @ w2.T) > 0)
    # sum pooling with padding on (C, H, W) spikes, then flatten (NCHW order) and affine
    s = (rng.random((5, 3, 6, 6)) < 0.5).astype(np.float64)
    pooled = np.pad(s, ((0, 0), (0, 0), (1, 1), (1, 1))).reshape(5, 3, 4, 2, 4, 2).sum((3, 5))
    w3 = rng.normal(size=(4, 48))
    g = from_nir(chain([3, 6, 6], nir.SumPool2d(np.array([2, 2]), np.array([2, 2]),
                                                np.array([1, 1])),
                       nir.Flatten(np.array([3, 4, 4]), 0, -1), nir.Linear(w3),
                       nir.Threshold(np.full(4, 0.5))))
    assert "SUM_POOL_2D" in [o.type for o in g.ops]
    np.testing.assert_array_equal(simulate(g, s, 1).counts, (pooled.reshape(5, -1) @ w3.T) > 0.5)


def test_many_nodes_walked_by_edges():
    """12 nodes with numeric keys ("10" sorts before "2"), listed in scrambled order."""
    nodes = {"input": nir.Input(np.array([3]))}
    keys = ["input"]
    ws = []
    for i in range(5):
        ws.append(rng.normal(size=(3, 3)))
        nodes[str(2 * i + 1)] = nir.Linear(ws[-1])
        nodes[str(2 * i + 2)] = nir.Threshold(np.zeros(3)) if i == 4 else nir.Scale(np.ones(3))
        keys += [str(2 * i + 1), str(2 * i + 2)]
    nodes["output"] = nir.Output(np.array([3]))
    keys.append("output")
    order = sorted(nodes, key=lambda k: hash(k) % 97)
    g = from_nir(graph(nodes, list(zip(keys, keys[1:])), order=order))
    assert [o.name for o in g.ops] == keys[1:-1]
    x = rng.random((4, 3))
    y = x
    for w in ws:
        y = y @ w.T
    np.testing.assert_array_equal(simulate(g, x, 1).counts, y > 0)


def test_fan_in_is_summed():
    w1, w2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    nodes = {"input": nir.Input(np.array([3])), "a": nir.Linear(w1), "b": nir.Linear(w2),
             "t": nir.Threshold(np.zeros(2)), "output": nir.Output(np.array([2]))}
    edges = [("input", "a"), ("input", "b"), ("a", "t"), ("b", "t"), ("t", "output")]
    g = from_nir(graph(nodes, edges))
    x = rng.random((5, 3))
    np.testing.assert_array_equal(simulate(g, x, 1).counts, x @ (w1 + w2).T > 0)


def test_refusals(tmp_path):
    lif = nir.LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2),
                  v_threshold=np.ones(2), v_reset=np.zeros(2))
    with pytest.raises(IRError, match=r"'l1' \(I\) is not supported"):
        from_nir(chain([2], nir.Linear(np.eye(2)), nir.I(r=np.ones(2))))
    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "lif": lif,
                              "w_rec": nir.Linear(np.eye(2)), "output": nir.Output(np.array([2]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")], type_check=False)
    with pytest.raises(IRError, match=r"'l1' \(NIRGraph\).*recurrent"):
        from_nir(chain([2], nir.Linear(np.eye(2)), sub))
    nodes = {"input": nir.Input(np.array([2])), "a": nir.Linear(np.eye(2)), "b": lif,
             "output": nir.Output(np.array([2]))}
    with pytest.raises(IRError, match=r"cycle through node 'a' \(Linear\)"):
        from_nir(graph(nodes, [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")]))
    fast = nir.LIF(tau=np.full(2, 5e-5), r=np.ones(2), v_leak=np.zeros(2),
                   v_threshold=np.ones(2), v_reset=np.zeros(2))
    with pytest.raises(IRError, match=r"'l1' \(LIF\): dt/tau = 2 > 1"):
        from_nir(chain([2], nir.Linear(np.eye(2)), fast))
    with pytest.raises(IRError, match="no such file"):
        from_nir(tmp_path / "missing.nir")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        from_nir(chain([2], nir.Linear(np.eye(2)), nir.IF(r=np.ones(2), v_threshold=np.ones(2))))
    assert any(issubclass(w.category, SNNWarning) and "gain r*dt/tau = 0.0001" in str(w.message)
               for w in rec)


def test_file_round_trip(tmp_path):
    w = rng.normal(size=(3, 4))
    p = tmp_path / "m.nir"
    nir.write(p, chain([4], nir.Affine(w, np.zeros(3)), nir.Threshold(np.zeros(3)), out=(3,)))
    g = from_nir(p)
    assert g.name == "m"
    x = rng.random((3, 4))
    np.testing.assert_array_equal(simulate(g, x, 2).counts, 2 * (x @ w.T > 0))


def test_per_channel_parameters_of_a_conv_layer():
    """(C,) neuron parameters on a (C, H, W) input are one value per channel."""
    w = rng.normal(size=(3, 1, 3, 3))
    conv = nir.Conv2d(input_shape=(5, 5), weight=w, stride=1, padding=1, dilation=1, groups=1,
                      bias=np.zeros(3))
    thr = np.array([0.1, 0.5, 2.0])
    g = from_nir(chain([1, 5, 5], conv, nir.Threshold(thr)))
    x = rng.random((2, 1, 5, 5))
    ref = _conv_ref(x, w, np.zeros(3), (1, 1), (1, 1), (1, 1), 1)
    out = simulate(g, x, 1).counts.reshape(2, 5, 5, 3).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, ref > thr[None, :, None, None])
    with pytest.raises(IRError, match=r"'l1' \(Threshold\): parameter shape \(4,\)"):
        from_nir(chain([1, 5, 5], conv, nir.Threshold(np.ones(4))))


def test_graph_passes_the_validator():
    from converters.nir_frontend import check_snn_graph
    g = from_nir(chain([4], nir.Linear(np.eye(4)), nir.Threshold(np.zeros(4))))
    check_snn_graph(g)
    g.ops[0].type = "SOFTMAX"
    with pytest.raises(IRError, match="unsupported op SOFTMAX in layer 'l0' for spiking networks"):
        check_snn_graph(g)

"""Nested row-sparse subnet training (issue #10 part 1): masks nest with equal counts per
row, levels are validated, each level's graph computes what the module with that level's
masked weights computes, joint training beats magnitude pruning, dense layers are named
with a reason, and IR graphs (float from ONNX, int8) train too."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from torch import nn  # noqa: E402

from converters.onnx_frontend import from_onnx  # noqa: E402
from converters.torch_frontend import torch_to_onnx  # noqa: E402
from toolchain.errors import McuError  # noqa: E402
from toolchain.examples.digits import digits_data  # noqa: E402
from toolchain.ir.float_eval import run_float  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402
from toolchain.patch.toy import toy_int8_graph  # noqa: E402
from toolchain.subnets.train import (parse_levels, row_count,  # noqa: E402
                                     train_subnets)

LEVELS = [0.5, 0.75, 0.9]


class Tiny(nn.Module):
    """conv 1->8 (rows of 9: dense), depthwise (dense), conv 8->16 (rows of 72),
    fc 64->32, fc 32->10; BN after every conv; ends in a softmax."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        x = torch.relu(self.bn3(self.conv2(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = nn.functional.avg_pool2d(x, 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return torch.softmax(self.fc2(x), dim=1)


@pytest.fixture(scope="module")
def data():
    return digits_data(0)


@pytest.fixture(scope="module")
def dense(data):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = Tiny()
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        for b in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.nll_loss(torch.log(m(x[b]) + 1e-9), y[b]).backward()
            opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def trained(dense, data):
    torch.set_num_threads(1)
    return train_subnets(dense, data, LEVELS, epochs=6, lr=3e-3, progress=False)


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("levels, msg", [
    ([0.75, 0.5], "not strictly increasing"),
    ([0.5, 0.5], "not strictly increasing"),
    ([0.5, 1.0], "outside [0, 1)"),
    ([-0.1, 0.5], "outside [0, 1)"),
    ("0.5,x", "comma-separated"),
    ([], "no levels"),
])
def test_levels_validated(levels, msg, dense, data):
    with pytest.raises(McuError) as e:
        train_subnets(dense, data, levels, epochs=1, progress=False)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_levels_parse_and_dense():
    assert parse_levels("0.5,0.75,0.9") == LEVELS
    assert parse_levels(LEVELS, dense=True) == [0.0] + LEVELS
    with pytest.raises(McuError, match="already start with the dense level"):
        parse_levels([0.0, 0.5], dense=True)
    assert [row_count(16, s) for s in [0.0] + LEVELS] == [16, 8, 4, 2]
    assert row_count(9, 0.95) == 1                              # never an empty row


def test_alpha_and_options_validated(dense, data):
    with pytest.raises(McuError, match="alpha has 2 weights for 3 levels"):
        train_subnets(dense, data, LEVELS, alpha=[1, 1], epochs=1, progress=False)
    with pytest.raises(McuError, match="weights must be ≥ 0"):
        train_subnets(dense, data, LEVELS, alpha="1,-1,1", epochs=1, progress=False)
    with pytest.raises(McuError, match="rerank 'taylor'"):
        train_subnets(dense, data, LEVELS, rerank="taylor", epochs=1, progress=False)
    with pytest.raises(McuError, match="labels must be a 1-D integer array"):
        train_subnets(dense, (data[0], data[1].astype(float)), LEVELS, progress=False)


def test_alpha_distill_and_summary(dense, data):
    before = {n: p.detach().clone() for n, p in dense.state_dict().items()}
    res = train_subnets(dense, data[:2], [0.5, 0.9], alpha="3,1", distill=0.5, epochs=1,
                        progress=False)
    assert res.alpha == [0.75, 0.25] and res.stats["distill"] == 0.5
    assert res.stats["eval_set"] == "training"
    assert all(torch.equal(before[n], p) for n, p in dense.state_dict().items())  # untouched
    s = json.loads(json.dumps(res.summary()))
    assert s["levels"] == [0.5, 0.9] and len(s["history"]) == 2
    conv2 = next(l for l in s["layers"] if l["name"] == "conv2")
    assert conv2["counts"] == [36, 7] and conv2["weights"] == 16 * 72
    # nonzeros: dense layers in full + kept entries of the sparse ones
    assert res.nonzeros()[0] == 72 + 72 + 16 * 36 + 32 * 32 + 10 * 16


def test_nothing_to_sparsify(data):
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Flatten())
    with pytest.raises(IRError) as e:
        train_subnets(m, data, LEVELS, epochs=1, progress=False)
    s = str(e.value)
    assert "nothing to sparsify" in s and "\n" not in s
    assert "0 (row length 9 < 16" in s and "2 (depthwise" in s


# -- masks and layers -------------------------------------------------------------------------
def test_dense_layers_reported(trained):
    assert {l.name for l in trained.sparse_layers} == {"conv2", "fc1", "fc2"}
    reasons = dict(trained.dense_layers)
    assert set(reasons) == {"conv1", "dw"}
    assert "row length 9 < 16" in reasons["conv1"]
    assert "depthwise" in reasons["dw"]
    s = trained.summary()
    assert [l["sparse"] for l in s["layers"]] == [False, False, True, True, True]


def test_masks_nest_with_equal_row_counts(trained):
    assert trained.levels == LEVELS and len(trained.graphs) == len(LEVELS)
    for lay in trained.sparse_layers:
        assert lay.counts == [row_count(lay.row_len, s) for s in LEVELS]
        assert lay.counts[0] > lay.counts[1] > lay.counts[2] >= 1
        order = lay.order
        assert order.shape == (lay.rows, lay.row_len)
        assert (np.sort(order, axis=1) == np.arange(lay.row_len)).all()    # a permutation
        prev = None
        for k, c in enumerate(lay.counts):
            m = trained.masks[k][lay.weight].reshape(lay.rows, lay.row_len)
            assert (m.sum(1) == c).all()                                 # same count per row
            assert m[np.arange(lay.rows)[:, None], order[:, :c]].all()   # a prefix of the order
            if prev is not None:
                assert not (m & ~prev).any()                             # sparser ⊆ denser
            prev = m
            w = trained.graphs[k].t(lay.weight).data.reshape(lay.rows, lay.row_len)
            assert (w[~m] == 0).all()
            # the store's view: level weights = shared values · mask · per-row scale
            v = lay.values.reshape(lay.rows, lay.row_len)
            assert np.allclose(w, v * m * lay.row_scale[k][:, None], rtol=1e-5, atol=1e-7)


def test_dense_layers_share_values_up_to_channel_scales(trained):
    """Per-level BN folds into per-level channel scales: a store can still share one set
    of values for the dense layers (depthwise: channels on the last IR axis)."""
    for name, axis in (("conv1", 0), ("dw", 3)):
        lay = next(l for l in trained.layers if l.name == name)
        assert lay.op_type == ("CONV_2D" if name == "conv1" else "DEPTHWISE_CONV_2D")
        for k, g in enumerate(trained.graphs):
            shape = [1] * 4
            shape[axis] = -1
            w = g.t(lay.weight).data
            assert np.allclose(w, lay.values * lay.row_scale[k].reshape(shape), rtol=1e-5,
                               atol=1e-7)
        assert not np.allclose(lay.row_scale[0], lay.row_scale[2])      # BN differs per level


def test_level_forward_equals_masked_module(trained, data):
    x = torch.from_numpy(data[2][:64])
    net = trained.net
    for k in range(len(LEVELS)):
        plain = net.module_for(k)                 # an ordinary copy of the module
        for lay in trained.sparse_layers:         # ... whose weights are masked per row
            w = plain.get_parameter(f"{lay.name}.weight").detach().numpy()
            assert ((w.reshape(w.shape[0], -1) != 0).sum(1) <= lay.counts[k]).all()
        with torch.no_grad():
            a = net(x, k).numpy()
            b = plain(x).numpy()
        assert np.allclose(a, b, atol=1e-6)
        g = trained.graphs[k]
        out = run_float(g, {g.inputs[0]: data[2][:64].transpose(0, 2, 3, 1)})
        c = out[g.outputs[0]] if isinstance(out, dict) else out
        assert np.abs(np.asarray(c).reshape(a.shape) - a).max() < 1e-4
        assert g.meta["subnet"] == dict(level=k, sparsity=LEVELS[k], of=len(LEVELS))


def test_joint_training_beats_magnitude_pruning(trained):
    before, after = trained.history[0]["accuracy"], trained.accuracy
    assert len(trained.history) == 7 and trained.history[0]["loss"] is None
    for k in (1, 2):                              # the sparse levels
        assert after[k] > before[k] + 0.2, (before, after)
    assert after[2] > 0.8 and after[0] > 0.9, after


def test_progress_prints_levels_and_dense(dense, data, capsys):
    train_subnets(dense, data, [0.5, 0.9], epochs=1, progress=True)
    err = capsys.readouterr().err
    assert "left dense: conv1 (row length 9 < 16" in err
    assert "epoch 0 (magnitude pruning): 50%:" in err and "epoch 1/1:" in err and "90%:" in err


# -- IR graphs --------------------------------------------------------------------------------
def test_float_graph_from_onnx(dense, data):
    torch.set_num_threads(1)
    g = from_onnx(torch_to_onnx(dense, data[0][:1]))
    res = train_subnets(g, data, [0.5, 0.9], dense=True, epochs=3, lr=3e-3, progress=False)
    assert res.levels == [0.0, 0.5, 0.9]
    names = {l.name: l for l in res.layers}
    assert not names["/conv1/Conv"].sparse and "depthwise" in names["/dw/Conv"].reason
    assert {l.name for l in res.sparse_layers} == {"/conv2/Conv", "/fc1/Gemm", "/fc2/Gemm"}
    for n in ("/conv1/Conv", "/dw/Conv"):       # dense layers: shared as they are (BN folded)
        assert (names[n].row_scale == 1).all()
        assert all(np.array_equal(gk.t(names[n].weight).data, names[n].values)
                   for gk in res.graphs)
    xn = data[2][:64].transpose(0, 2, 3, 1)
    for k, gk in enumerate(res.graphs):
        for lay in res.sparse_layers:
            m = res.masks[k][lay.weight].reshape(lay.rows, -1)
            assert (m.sum(1) == lay.counts[k]).all()
            assert (gk.t(lay.weight).data.reshape(lay.rows, -1)[~m] == 0).all()
        with torch.no_grad():
            a = torch.softmax(res.net(torch.from_numpy(xn), k), -1).numpy()   # graphs: NHWC
        out = run_float(gk, {gk.inputs[0]: xn})
        c = out[gk.outputs[0]] if isinstance(out, dict) else out
        assert np.abs(np.asarray(c).reshape(a.shape) - a).max() < 1e-4
    assert res.history[-1]["accuracy"][2] > res.history[0]["accuracy"][2] + 0.2, res.history


def test_int8_graph(data):
    g = toy_int8_graph(0)                        # conv (rows of 9), depthwise, fc (rows of 144)
    rng = np.random.default_rng(0)
    x = rng.random((128, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3].sum((1, 2, 3)) > x[:, 3:].sum((1, 2, 3))).astype(np.int64)
    res = train_subnets(g, (x, y), [0.5, 0.75], epochs=1, progress=False)
    assert [l.name for l in res.sparse_layers] == [g.ops[3].name]
    assert res.sparse_layers[0].counts == [72, 36]
    for gk in res.graphs:
        assert all(t.dtype == "float32" for t in gk.tensors.values() if t.data is None)
        assert all(t.quant is None for t in gk.tensors.values())
        assert not any(op.type in ("QUANTIZE", "DEQUANTIZE") for op in gk.ops)
    with pytest.raises(IRError, match="nothing to sparsify"):
        train_subnets(g, (x, y), [0.5], min_row=1000, epochs=0, progress=False)


def test_module_used_twice_left_dense(data):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            x = torch.flatten(x, 1)
            return self.b(torch.relu(self.a(torch.relu(self.a(x)))))

    res = train_subnets(Twice(), data, [0.5], epochs=0, progress=False)
    assert res.dense_layers == [("a", "weights shared by several layers")]
    assert [l.name for l in res.sparse_layers] == ["b"]
    a = next(o for o in res.graphs[0].ops if o.type == "FULLY_CONNECTED")  # `a`, kept whole
    assert (res.graphs[0].t(a.inputs[1]).data != 0).all()

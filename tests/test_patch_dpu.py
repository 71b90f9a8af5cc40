"""DPU selection on the toy int8 graph: exact k·I, beats random, masks respected."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from toolchain.ir import reference  # noqa: E402
from toolchain.patch.dpu import dpu_scores, dpu_update  # noqa: E402
from toolchain.patch.make import build_patch  # noqa: E402
from toolchain.patch.store import weight_store  # noqa: E402
from toolchain.patch.torch_graph import GraphModule  # noqa: E402
from toolchain.patch.toy import toy_fc_graph, toy_int8_graph  # noqa: E402

KEY = bytes(range(32))


def _int8_predict(g, x):
    t = g.t(g.inputs[0])
    xq = np.clip(np.round(x / t.quant.scale[0]) + t.quant.zero_point[0], -128, 127).astype(np.int8)
    return np.concatenate([reference.run(g, {"x": xq[i:i + 1]})["probs"] for i in range(len(x))]
                          ).argmax(1)


def _pred(g, x):
    with torch.no_grad():
        return GraphModule(g)(torch.from_numpy(x)).argmax(1).numpy()


@pytest.fixture(scope="module")
def problem():
    """Only 6 of 64 input features carry signal, and the teacher moved exactly their
    weights: a good metric spends the budget there, random selection mostly elsewhere."""
    g = toy_fc_graph(0)
    teacher = copy.deepcopy(g)
    rng = np.random.default_rng(1)
    active = rng.choice(64, 6, replace=False)
    w = teacher.t("fc.w").data.astype(int)
    w[:, active] = rng.integers(-127, 128, (4, 6))
    teacher.t("fc.w").data = w.astype(np.int8)
    x = np.zeros((300, 64), np.float32)
    x[:, active] = rng.uniform(-1, 1, (300, 6))
    return g, x, _pred(teacher, x)


def test_graph_module_matches_reference():
    g = toy_int8_graph(0)
    x = np.random.default_rng(1).random((32, 6, 6, 1)).astype(np.float32)
    with torch.no_grad():
        lg = GraphModule(g)(torch.from_numpy(x)).numpy()
    t = g.t(g.inputs[0])
    xq = np.clip(np.round(x / t.quant.scale[0]) + t.quant.zero_point[0], -128, 127).astype(np.int8)
    ref = np.concatenate([reference.run(g, {"x": xq[i:i + 1]}, keep_intermediates=True)["logits"]
                          for i in range(len(x))]).astype(float) * g.t("logits").quant.scale[0]
    assert np.abs(lg - ref).max() <= 3 * g.t("logits").quant.scale[0] + 1e-6   # a few LSB
    assert lg.std() > 0.5                                                     # not saturated


def test_scores_normalised():
    s = dpu_scores({0: np.array([1.0, 3.0]), 1: np.array([4.0])},
                   {0: np.array([0.0, 2.0]), 1: np.array([2.0])}, lam=0.5)
    assert np.allclose(s[0], [0.5 * 0 + 0.5 * 1 / 8, 0.5 * 0.5 + 0.5 * 3 / 8])
    assert np.isclose(sum(v.sum() for v in s.values()), 1.0)


def test_selects_exactly_k_and_beats_random(problem):
    g, x, y = problem
    st = weight_store(g)
    I = sum(t.size for t in st.tensors if t.role == "weight")
    k = 0.1
    accs = {}
    for sel in ("dpu", "random"):
        r = dpu_update(g, x, y, budget=k, epochs=10, finetune_epochs=10, selection=sel, seed=0,
                       lr=1e-2)
        assert r.selected == round(k * I)
        # only selected weights differ from the deployed ones
        for i, m in r.masks.items():
            changed = r.new_q[i] != st.tensors[i].data.astype(np.int64)
            assert not (changed & ~m).any()
        res = build_patch(g, r.new_q, KEY, 1)
        assert res.info["weights_changed"] <= round(k * I)
        accs[sel] = (_pred(res.graph, x) == y).mean()
    base = (_pred(g, x) == y).mean()
    assert accs["dpu"] > accs["random"] + 0.15 and accs["dpu"] > base + 0.2, (accs, base)

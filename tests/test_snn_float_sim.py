"""Float time-step semantics: spike counts identical to snnTorch's own simulation of the
same module, exported with snntorch.export_to_nir and converted by from_nir."""
import numpy as np
import pytest

from snn_common import conv_net, export, mlp, snntorch_counts

from converters.nir_frontend import from_nir
from toolchain.snn.encoding import encode, rate_levels
from toolchain.snn.float_sim import simulate, to_ir_layout

T = 20


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_mlp_matches_snntorch(reset, neuron):
    net = mlp(reset, sizes=(10, 24, 16, 5), neuron=neuron, seed=1)
    x = np.random.default_rng(1).random((64, 10)).astype(np.float32)
    g = from_nir(export(net, (10,)), reset=reset)
    want = snntorch_counts(net, x, T)
    res = simulate(g, x, T)
    assert want.sum() > 50                      # the test exercises spiking
    np.testing.assert_array_equal(res.counts, want)
    assert set(res.layer_spikes) == {"1", "3", "5"}


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_conv_pool_net_matches_snntorch(reset):
    net = conv_net(reset, seed=2)
    x = np.random.default_rng(2).random((32, 1, 8, 8)).astype(np.float32)
    g = from_nir(export(net, (1, 8, 8)), reset=reset)
    assert [op.type for op in g.ops] == ["SYN_CONV_2D", "LIF", "AVERAGE_POOL_2D", "RESHAPE",
                                         "FULLY_CONNECTED", "LIF"]
    want = snntorch_counts(net, x, T)
    res = simulate(g, x, T)
    assert want.sum() > 50
    np.testing.assert_array_equal(res.counts, want)


def test_rate_coded_input_matches_snntorch():
    net = mlp("subtract", sizes=(10, 16, 5), seed=3)
    x = np.random.default_rng(3).random((32, 10)).astype(np.float32)
    g = from_nir(export(net, (10,)), reset="subtract")
    steps = list(encode(rate_levels(x), T, "rate", seed=7))
    want = snntorch_counts(net, x, T, inputs=steps)
    res = simulate(g, x, T, encoding="rate", seed=7)
    np.testing.assert_array_equal(res.counts, want)


def test_events_input_matches_snntorch():
    net = conv_net("zero", seed=4)
    spikes = np.random.default_rng(4).random((16, T, 1, 8, 8)) < 0.3
    g = from_nir(export(net, (1, 8, 8)))
    want = snntorch_counts(net, None, T, inputs=[spikes[:, t] for t in range(T)])
    res = simulate(g, spikes, T, encoding="events")
    np.testing.assert_array_equal(res.counts, want)


def test_default_reset_is_the_graphs():
    """snnTorch exports every Leaky with v_reset = 0: without reset="subtract" a
    subtract-reset module simulates as reset to zero (and differs)."""
    net = mlp("subtract", sizes=(10, 16, 5), seed=5)
    x = np.random.default_rng(5).random((64, 10)).astype(np.float32)
    nir_g = export(net, (10,))
    want = snntorch_counts(net, x, T)
    assert (simulate(from_nir(nir_g), x, T).counts != want).any()
    np.testing.assert_array_equal(simulate(from_nir(nir_g, reset="subtract"), x, T).counts, want)


def test_layout_nchw_to_nhwc():
    net = conv_net("zero", seed=6, in_shape=(2, 6, 4), ch=3)
    g = from_nir(export(net, (2, 6, 4)))
    assert g.t(g.inputs[0]).shape == (1, 6, 4, 2)
    x = np.arange(2 * 2 * 6 * 4).reshape(2, 2, 6, 4)
    np.testing.assert_array_equal(to_ir_layout(g, x), x.transpose(0, 2, 3, 1))
    xs = np.random.default_rng(6).random((8, 2, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(simulate(g, xs, 10).counts, snntorch_counts(net, xs, 10))


def test_from_snntorch_scalar_params_and_module_resets():
    """from_snntorch: scalar beta/alpha/threshold (the exporter alone fails on them) and
    each layer's own reset_mechanism."""
    import snntorch as snn
    import torch
    from converters.nir_frontend import from_snntorch
    torch.manual_seed(8)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), snn.Leaky(beta=0.85, init_hidden=True),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(48, 12),
        snn.Leaky(beta=0.9, threshold=0.7, init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(12, 4),
        snn.Synaptic(alpha=0.6, beta=0.8, threshold=0.5, init_hidden=True, output=True))
    with torch.no_grad():
        for m in net:
            if hasattr(m, "weight"):
                m.weight.mul_(3)
    g = from_snntorch(net, (1, 8, 8))
    assert [o.attrs.get("reset") for o in g.ops if "reset" in o.attrs] == \
        ["subtract", "zero", "subtract"]
    x = np.random.default_rng(8).random((24, 1, 8, 8)).astype(np.float32)
    want = snntorch_counts(net, x, T)
    assert want.sum() > 20
    np.testing.assert_array_equal(simulate(g, x, T).counts, want)


def test_from_snntorch_refusals():
    import snntorch as snn
    import torch
    from converters.nir_frontend import from_snntorch
    from toolchain.ir.graph import IRError
    for kw, msg in [(dict(reset_mechanism="none"), "reset_mechanism 'none'"),
                    (dict(reset_delay=False), "reset_delay=False")]:
        net = torch.nn.Sequential(torch.nn.Linear(4, 3),
                                  snn.Leaky(beta=0.9, init_hidden=True, output=True, **kw))
        with pytest.raises(IRError, match=rf"snnTorch layer '1' \(Leaky\): {msg}"):
            from_snntorch(net, (4,))

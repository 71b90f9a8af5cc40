"""Conformance of each spiking op of the registry (toolchain/ir/ops: neurons.py,
synapses.py, and the spiking forms of FULLY_CONNECTED / RESHAPE): for a small random
graph around the op, its infer_shape agrees with the front end and catches a wrong
declaration, the float step runs in time, the fixed step in numpy equals the C kernels
(snn.c through ctypes), and the op's generated C (emit_snn, compiled natively) equals the
fixed step on every sample. tests/test_op_registry.py requires a case here for every op
of the "snn" family (SNN_OP_BUILDERS)."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
nir = pytest.importorskip("nir")

from converters.nir_frontend import from_nir  # noqa: E402
from toolchain.ir import ops  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402
from toolchain.ir.validate import validate  # noqa: E402
from toolchain.snn import fixed_point as fp  # noqa: E402
from toolchain.snn.float_sim import simulate, to_ir_layout  # noqa: E402

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
T = 8
DT = 1e-4


def _tau(rng, n, lo=0.75, hi=0.95):
    return DT / (1 - rng.uniform(lo, hi, n))


def _lif(rng, n, thr=None):
    tau = _tau(rng, n)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n),
                   v_threshold=thr if thr is not None else rng.uniform(0.5, 1.0, n),
                   v_reset=np.zeros(n))


def _affine(rng, a, b, gain=2.5):
    return nir.Affine(rng.normal(size=(b, a)) * gain / np.sqrt(a), rng.normal(size=b) * 0.1)


def _chain(nodes: list, in_shape, out_shape, reset="subtract"):
    d = {"input": nir.Input(np.array(in_shape))}
    keys = ["input"]
    for i, n in enumerate(nodes):
        d[f"n{i}_{type(n).__name__.lower()}"] = n
        keys.append(f"n{i}_{type(n).__name__.lower()}")
    d["output"] = nir.Output(np.array(out_shape))
    keys.append("output")
    return from_nir(nir.NIRGraph(d, list(zip(keys, keys[1:])), type_check=False), dt=DT,
                    reset=reset)


def _mlp(rng, neuron):
    return _chain([_affine(rng, 12, 16), neuron(16)], (12,), (16,))


def _conv(rng, pool=False):
    c, h, w, o = 2, 7, 6, 4
    groups = int(rng.choice([1, 2]))
    k = int(rng.choice([2, 3]))
    pad = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
    conv = nir.Conv2d(input_shape=(h, w), weight=rng.normal(size=(o, c // groups, k, k)) * 1.5,
                      stride=(1, int(rng.choice([1, 2]))), padding=pad, dilation=1,
                      groups=groups, bias=rng.normal(size=o) * 0.1)
    oh = h + 2 * pad[0] - k + 1
    ow = (w + 2 * pad[1] - k) // conv.stride[1] + 1
    nodes = [conv, _lif(rng, o, thr=np.full(o, 0.7))]          # per channel
    if pool:
        nodes.append(nir.SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)))
        oh, ow = (oh - 2) // 2 + 1, (ow - 2) // 2 + 1
    n = o * oh * ow
    nodes += [nir.Flatten(input_type={"input": np.array([o, oh, ow])}, start_dim=0, end_dim=-1),
              _affine(rng, n, 5), _lif(rng, 5)]
    return _chain(nodes, (c, h, w), (5,))


def _cuba(n, rng, li=False):
    ts, tm = _tau(rng, n, 0.5, 0.9), _tau(rng, n)
    if li:
        return nir.CubaLI(tau_syn=ts, tau_mem=tm, r=tm / DT, v_leak=np.zeros(n), w_in=ts / DT)
    return nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / DT, v_leak=np.zeros(n),
                       v_threshold=np.full(n, 0.5), v_reset=np.zeros(n), w_in=ts / DT)


def _readout(rng, last):
    return _chain([_affine(rng, 12, 16), _lif(rng, 16), _affine(rng, 16, 6), last(6)],
                  (12,), (6,))


# op type -> builder(rng) of a float IR graph that contains it (tests/test_op_registry.py
# reads the keys)
SNN_OP_BUILDERS = {
    "LIF": lambda rng: _mlp(rng, lambda n: _lif(rng, n)),
    "IF": lambda rng: _mlp(rng, lambda n: nir.IF(r=np.full(n, 1 / DT), v_threshold=np.full(n, 0.8),
                                                v_reset=np.zeros(n))),
    "LI": lambda rng: _readout(rng, lambda n: nir.LI(tau=_tau(rng, n), r=_tau(rng, n) * 0 + 1,
                                                     v_leak=np.zeros(n))),
    "CUBA_LIF": lambda rng: _mlp(rng, lambda n: _cuba(n, rng)),
    "CUBA_LI": lambda rng: _readout(rng, lambda n: _cuba(n, rng, li=True)),
    "THRESHOLD": lambda rng: _mlp(rng, lambda n: nir.Threshold(threshold=np.full(n, 0.3))),
    "SYN_CONV_2D": lambda rng: _conv(rng),
    "SUM_POOL_2D": lambda rng: _conv(rng, pool=True),
    "SCALE": lambda rng: _chain([nir.Scale(scale=rng.uniform(0.5, 2, 12)), _affine(rng, 12, 16),
                                 _lif(rng, 16)], (12,), (16,)),
    "FULLY_CONNECTED": lambda rng: _mlp(rng, lambda n: _lif(rng, n)),
    "RESHAPE": lambda rng: _conv(rng),
}


def _graph(name, seed):
    import warnings
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # gains of the LI cases
        g = SNN_OP_BUILDERS[name](rng)
    assert any(op.type == name for op in g.ops), f"the {name} case has no {name} op"
    x = rng.random((6, *g.meta["snn"]["input_nir_shape"])).astype(np.float32)
    return g, x


@pytest.mark.parametrize("name", sorted(SNN_OP_BUILDERS))
def test_infer_shape_and_float_step(name):
    for seed in range(4):
        g, x = _graph(name, seed)
        validate(g)
        res = simulate(g, x, T)
        assert res.counts.shape[0] == len(x)
    op = next(o for o in g.ops if o.type == name)
    out = g.t(op.outputs[0])
    out.shape = out.shape[:-1] + (out.shape[-1] + 1,)
    with pytest.raises(IRError, match=r"is declared .* but the op computes|elements, not"):
        validate(g)


def test_scale_is_float_only():
    g, x = _graph("SCALE", 0)
    op = next(o for o in g.ops if o.type == "SCALE")
    s = g.t(op.inputs[1]).data
    y, st = ops.get("SCALE").step_float(op, [x, s], x.shape)
    np.testing.assert_allclose(y, x * s, rtol=1e-6)
    assert st == []
    with pytest.raises(IRError, match=r"\(SCALE\): not supported in fixed point \(float only"):
        fp.quantize(g, x, T)


FIXED = sorted(n for n in SNN_OP_BUILDERS if ops.get(n).step_fixed is not None)


@pytest.fixture(scope="module")
def ck():
    from snn_host import CKernels
    return CKernels()


@needs_cc
@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("name", FIXED)
def test_fixed_step_equals_c_kernels(name, bits, ck):
    for seed, enc in ((1, "constant"), (2, "rate")):
        g, x = _graph(name, seed)
        q = fp.quantize(g, x, T, encoding=enc, state_bits=bits, seed=seed)
        want = fp.run_fixed(q, x, T)
        got = fp.run_fixed(q, x, T, kernels=ck)
        assert sum(int(v.sum()) for v in want.layer_spikes.values()) > 0, "no spikes at all"
        np.testing.assert_array_equal(got.counts, want.counts)
        for k in want.layer_spikes:
            np.testing.assert_array_equal(got.layer_spikes[k], want.layer_spikes[k])


@needs_cc
@pytest.mark.parametrize("name", FIXED)
def test_generated_c_equals_fixed_step(name, tmp_path):
    from test_snn_codegen import NativeModel
    from toolchain.snn.codegen import generate_snn
    g, x = _graph(name, 3)
    q = fp.quantize(g, x, T, encoding="rate", state_bits=16, seed=4)
    gen = generate_snn(q, tmp_path / "model", T)
    lib = NativeModel(gen, tmp_path)
    want = fp.run_fixed(q, x, T)
    xir = to_ir_layout(q, x)
    for i in range(len(x)):
        counts, spikes, events = gen.unpack_output(lib.infer(gen.pack_input(xir[i], index=i)))
        np.testing.assert_array_equal(counts, want.counts[i], err_msg=f"sample {i}")
        assert spikes == {k: int(v[i]) for k, v in want.layer_spikes.items()}
        assert events == {k: int(v[i]) for k, v in want.events.items()}

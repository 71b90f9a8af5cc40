"""C SNN kernels (firmware_templates/runtime/snn.c) bit-exact with the numpy fixed-point
interpreter: random shapes, rates and parameters (seeded), kernel by kernel and whole
networks through run_fixed(kernels=CKernels)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from snn_host import CKernels, host_lib  # noqa: E402

from toolchain.snn import fixed_point as fp  # noqa: E402
from toolchain.snn.encoding import encode, xorshift32  # noqa: E402


@pytest.fixture(scope="module", params=["portable", "dsp"])
def ck(request):
    """Both variants: portable C and the DSP paths with emulated intrinsics (host build
    with MCU_EMULATE_DSP); the DSP assembly itself runs in the QEMU tests."""
    return CKernels(host_lib(request.param))


def _inputs(rng, shape, kind):
    if kind == "spike":
        return (rng.random(shape) < rng.uniform(0.02, 0.6)).astype(np.int64)
    if kind == "count":
        return rng.integers(0, 5, shape) * (rng.random(shape) < 0.5)
    return rng.integers(-127, 128, shape)


@pytest.mark.parametrize("seed", range(16))
def test_fc(ck, seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(1, 80), rng.integers(1, 40)
    if seed % 4 == 1:                     # every tail of the 8- and 4-wide column loops
        n_out = 8 + seed % 8
    kind = ["spike", "count", "analog"][seed % 3]
    x = _inputs(rng, (3, n_in), kind)
    w = rng.integers(-127, 128, (n_out, n_in))
    b = rng.integers(-5000, 5000, n_out) if seed % 2 else None
    want = fp.fc_acc(x, w, b)
    np.testing.assert_array_equal(ck.fc_acc(x, w, b), want)
    np.testing.assert_array_equal(ck.fc_acc(x, w, b, dense=True), want)


@pytest.mark.parametrize("seed", range(16))
def test_conv(ck, seed):
    rng = np.random.default_rng(100 + seed)
    groups = int(rng.choice([1, 1, 2, 3]))
    ipg, opg = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    p = dict(stride_h=int(rng.integers(1, 3)), stride_w=int(rng.integers(1, 3)),
             pad_h=int(rng.integers(0, kh)), pad_w=int(rng.integers(0, kw)),
             dilation_h=int(rng.integers(1, 3)), dilation_w=int(rng.integers(1, 3)),
             groups=groups)
    h, w = int(rng.integers(kh * 2, 10)), int(rng.integers(kw * 2, 10))
    oh = (h + 2 * p["pad_h"] - p["dilation_h"] * (kh - 1) - 1) // p["stride_h"] + 1
    ow = (w + 2 * p["pad_w"] - p["dilation_w"] * (kw - 1) - 1) // p["stride_w"] + 1
    if seed % 4 == 3:                     # 'same'-style asymmetric: output larger than the
        oh, ow = oh + 1, ow + 1           # symmetric formula (implicit zeros bottom/right)
    x = _inputs(rng, (2, h, w, groups * ipg), ["spike", "count", "analog"][seed % 3])
    wt = rng.integers(-127, 128, (groups * opg, kh, kw, ipg))
    b = rng.integers(-999, 999, groups * opg)
    np.testing.assert_array_equal(ck.conv_acc(p, x, wt, b, (oh, ow)),
                                  fp.conv_acc(p, x, wt, b, (oh, ow)))


@pytest.mark.parametrize("seed", range(8))
def test_sum_pool(ck, seed):
    rng = np.random.default_rng(200 + seed)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    p = dict(filter_h=kh, filter_w=kw, stride_h=int(rng.integers(1, 3)),
             stride_w=int(rng.integers(1, 3)), pad_h=int(rng.integers(0, kh)),
             pad_w=int(rng.integers(0, kw)))
    h, w, c = int(rng.integers(kh, 9)), int(rng.integers(kw, 9)), int(rng.integers(1, 6))
    if seed % 2:                          # the DSP form adds four channels per word
        c = 4 * int(rng.integers(1, 3)) + seed % 4 // 2 * 3
    oh = (h + 2 * p["pad_h"] - kh) // p["stride_h"] + 1
    ow = (w + 2 * p["pad_w"] - kw) // p["stride_w"] + 1
    x = _inputs(rng, (2, h, w, c), "spike")
    np.testing.assert_array_equal(ck.sum_pool(p, x, (oh, ow)), fp.sum_pool(p, x, (oh, ow)))


def _neuron_params(rng, kind, bits, ch):
    lim = (1 << (bits - 1)) - 1
    big = lim // 4
    # 16-bit state: [-8, 12] takes the 32-bit fast path, others the 64-bit form
    p = dict(kind=kind, state_bits=bits,
             frac_bits=int(rng.choice([-12, -8, -5, -1, 0, 1, 4, 8, 12, 14, 20])),
             reset=str(rng.choice(["zero", "subtract"])))
    b = rng.integers(0, 32769, ch)
    b[: ch // 4] = rng.choice([0, 32768, 32767, 1], ch // 4)
    p["beta"] = b
    p["alpha"] = rng.integers(0, 32769, ch)
    p["thr"] = rng.integers(1, big, ch) if kind != "THRESHOLD" else rng.integers(-big, big, ch)
    p["vreset"] = rng.integers(-big // 8, big // 8, ch)
    p["leak"] = rng.integers(-big // 64, big // 64, ch)
    return p


@pytest.mark.parametrize("kind", ["LIF", "IF", "CUBA_LIF", "LI", "CUBA_LI", "THRESHOLD"])
@pytest.mark.parametrize("bits", [16, 32])
def test_neurons_many_steps(ck, kind, bits):
    rng = np.random.default_rng(hash((kind, bits)) % 2 ** 32)
    for trial in range(10):
        ch = int(rng.integers(1, 9))
        shape = (3, int(rng.integers(1, 4)), ch)
        p = _neuron_params(rng, kind, bits, ch)
        if kind == "IF":
            p["beta"] = np.full(ch, 32768)
        nst = {"CUBA_LIF": 2, "CUBA_LI": 2, "THRESHOLD": 0}.get(kind, 1)
        lim = 1 << (bits - 1)
        st_np = [rng.integers(-lim // 2, lim // 2, shape) for _ in range(nst)]
        st_c = [s.copy() for s in st_np]
        scale = max(((1 << (bits - 1)) >> max(p["frac_bits"], 0)) >> 2, 4)
        for step in range(12):
            # currents big enough to saturate sometimes
            acc = rng.integers(-scale, scale, shape) * (1 + (step % 5 == 4) * 8)
            acc = np.clip(acc, -2 ** 31 >> 8, 2 ** 31 >> 8)
            if step % 4 == 3:            # extremes of the int32 accumulator
                acc.flat[::3] = rng.choice([-2 ** 31, 2 ** 31 - 1, -2 ** 29 - 1, 2 ** 20 + 1],
                                           acc.flat[::3].shape)
            y_np = fp.neuron_step(p, acc, st_np)
            y_c = ck.neuron_step(p, acc, st_c)
            np.testing.assert_array_equal(y_c, y_np, err_msg=f"{kind} step {step} {p}")
            for a, b in zip(st_c, st_np):
                np.testing.assert_array_equal(a, b)


def test_xorshift_and_rate_coding(ck):
    assert int(xorshift32(np.uint32(1))) == 270369
    assert ck.lib.mcu_snn_xorshift32(1) == 270369
    rng = np.random.default_rng(7)
    lv = rng.integers(0, 256, (5, 37)).astype(np.uint8)
    lv[0, :3] = [0, 255, 128]
    want = np.stack(list(encode(lv, 9, "rate", seed=12345, first_index=3)))
    got = ck.rate_spikes(lv, 9, 12345, first_index=3)
    np.testing.assert_array_equal(got, want)
    assert not want[:, 0, 0].any() and want[:, 0, 1].all()
    # the rate follows the level
    many = np.stack(list(encode(np.full((1, 2000), 64, np.uint8), 4, "rate", seed=1)))
    assert abs(many.mean() - 64 / 255) < 0.02


# ----------------------------------------------------------------- whole networks
def _rand_mlp(rng, sizes, reset, cuba=False):
    import nir
    from converters.nir_frontend import from_nir
    nodes = {"input": nir.Input(np.array([sizes[0]]))}
    keys = ["input"]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        nodes[f"fc{i}"] = nir.Affine(rng.normal(size=(b, a)) * 2 / np.sqrt(a),
                                     rng.normal(size=b) * 0.1)
        tau = 1e-4 / (1 - rng.uniform(0.7, 0.95, b))
        if cuba and i == len(sizes) - 2:
            ts = 1e-4 / (1 - rng.uniform(0.5, 0.9, b))
            nodes[f"n{i}"] = nir.CubaLIF(tau_syn=ts, tau_mem=tau, r=tau / 1e-4,
                                         v_leak=np.zeros(b), v_threshold=np.full(b, 0.5),
                                         v_reset=np.zeros(b), w_in=ts / 1e-4)
        else:
            nodes[f"n{i}"] = nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(b),
                                     v_threshold=rng.uniform(0.5, 1.0, b), v_reset=np.zeros(b))
        keys += [f"fc{i}", f"n{i}"]
    nodes["output"] = nir.Output(np.array([sizes[-1]]))
    keys.append("output")
    return from_nir(nir.NIRGraph(nodes, list(zip(keys, keys[1:])), type_check=False),
                    reset=reset)


@pytest.mark.parametrize("case", [
    dict(reset="zero", bits=32, enc="constant"), dict(reset="subtract", bits=16, enc="rate"),
    dict(reset="subtract", bits=32, enc="rate", cuba=True),
    dict(reset="zero", bits=16, enc="constant", cuba=True)])
def test_whole_mlp_c_equals_numpy(ck, case):
    rng = np.random.default_rng(11)
    g = _rand_mlp(rng, (12, 20, 7), case["reset"], case.get("cuba", False))
    x = rng.random((16, 12)).astype(np.float32)
    q = fp.quantize(g, x, 15, encoding=case["enc"], state_bits=case["bits"], seed=5)
    want = fp.run_fixed(q, x, 15)
    ck.events = 0
    got = fp.run_fixed(q, x, 15, kernels=ck)
    assert want.counts.sum() > 20
    np.testing.assert_array_equal(got.counts, want.counts)
    for k in want.layer_spikes:
        np.testing.assert_array_equal(got.layer_spikes[k], want.layer_spikes[k])


@pytest.mark.parametrize("bits", [16, 32])
def test_whole_conv_net_c_equals_numpy(ck, bits):
    from snn_common import conv_net, export
    from converters.nir_frontend import from_nir
    net = conv_net("subtract", seed=3, in_shape=(2, 8, 8), ch=6)
    g = from_nir(export(net, (2, 8, 8)), reset="subtract")
    x = np.random.default_rng(3).random((6, 2, 8, 8)).astype(np.float32)
    q = fp.quantize(g, x, 12, state_bits=bits)
    want = fp.run_fixed(q, x, 12)
    got = fp.run_fixed(q, x, 12, kernels=ck)
    assert want.counts.sum() > 10
    np.testing.assert_array_equal(got.counts, want.counts)

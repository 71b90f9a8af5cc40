"""TANH, HARD_SWISH, LEAKY_RELU int8: the numpy references (quant_math.tanh_int8,
hard_swish_int8, leaky_relu_int8 with their *_params Prepare) equal TFLite Micro
byte for byte on single-op graphs written by our writer, over all 256 input values
and many seeded random quantizations (and alphas), including the edge cases where
TFLM's arithmetic has quirks; the 256-entry tables the device runs (mcu_lut_s8)
are those functions; ONNX Tanh / HardSwish / LeakyRelu convert, quantize and run in
TFLM equal to our reference; a model with all three is bit-exact on QEMU M4
(portable and DSP)."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from qemu_model import assert_bit_exact_on_qemu, needs_qemu  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from kernel_host import host_lib, run_op  # noqa: E402

from converters.tflite_reader import read_tflite  # noqa: E402
from converters.tflite_schema import schema  # noqa: E402
from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.ir import quant_math as qm  # noqa: E402
from toolchain.ir import reference  # noqa: E402
from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor  # noqa: E402
from toolchain.ir.ops import get as get_op  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402
from onnx_export import export_onnx  # noqa: E402

ALL_INT8 = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
X256 = ALL_INT8.reshape(1, 256)


def _f32(x) -> float:
    return float(np.float32(x))


def act_graph(op_type, in_q, out_q, alpha=None, shape=(1, 256)) -> Graph:
    g = Graph(name=op_type.lower())
    g.add_tensor(Tensor("x", tuple(shape), "int8", Quant.per_tensor(_f32(in_q[0]), int(in_q[1]))))
    g.add_tensor(Tensor("y", tuple(shape), "int8",
                        Quant.per_tensor(_f32(out_q[0]), int(out_q[1]))))
    attrs = {} if alpha is None else dict(alpha=_f32(alpha))
    g.add_op(Op(op_type, ["x"], ["y"], attrs, name="y"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def ours(g: Graph, x) -> np.ndarray:
    return reference.run(g, {"x": x})["y"]


def assert_same_as_tflm(g: Graph, x=X256, what=""):
    want = run_graph(g, {"x": x})["y"]
    got = ours(g, x)
    assert got.dtype == np.int8 and got.shape == want.shape
    if not np.array_equal(got, want):
        bad = np.nonzero(got.reshape(-1) != want.reshape(-1))[0]
        op = g.ops[0]
        raise AssertionError(
            f"{op.type} {what} in {g.t('x').quant.scale[0]!r}/{g.t('x').quant.zero_point[0]} "
            f"out {g.t('y').quant.scale[0]!r}/{g.t('y').quant.zero_point[0]} attrs {op.attrs}: "
            f"{bad.size} of {want.size} differ, e.g. x={x.reshape(-1)[bad[:4]].tolist()} "
            f"ours {got.reshape(-1)[bad[:4]].tolist()} tflm {want.reshape(-1)[bad[:4]].tolist()}")


# --------------------------------------------------------------------------- TANH
TANH_EDGE_SCALES = [2.0 ** -28, 2.0 ** -12, 2.0 ** -9, 1 / 256, 1 / 255, 0.0078125, 0.05, 0.1,
                    0.5, 1.0, 2.0, 4.0, 7.99, 8.0, 16.0, 100.0]


def tanh_quants(seed: int, n: int):
    rng = np.random.default_rng(seed)
    out = [(_f32(np.exp2(rng.uniform(-12, 4))), int(rng.integers(-128, 128))) for _ in range(n)]
    out += [(_f32(s), int(rng.integers(-128, 128))) for s in TANH_EDGE_SCALES]
    out += [(_f32(s), zp) for s in (0.05, 0.1) for zp in (-128, 0, 127)]
    return out


def test_tanh_params_are_logistics_input_arithmetic():
    for s, zp in tanh_quants(1, 30):
        assert qm.tanh_params(s, zp) == qm.logistic_params(s, zp)
    with pytest.raises(ValueError, match="TANH: input scale"):
        qm.tanh_params(1e-9, 0)
    assert qm.TANH_QUANT == (1 / 128, 0)
    assert get_op("TANH").quant.fixed_output == qm.TANH_QUANT


def test_tanh_bitexact_with_tflm_all_inputs():
    """200 random input quantizations + edge scales, each on all 256 int8 values."""
    for s, zp in tanh_quants(20261201, 200):
        assert_same_as_tflm(act_graph("TANH", (s, zp), qm.TANH_QUANT))


def test_tanh_bitexact_4d_random_inputs():
    rng = np.random.default_rng(3)
    for _ in range(10):
        s, zp = _f32(np.exp2(rng.uniform(-9, 2))), int(rng.integers(-128, 128))
        x = rng.integers(-128, 128, size=(1, 5, 7, 3)).astype(np.int8)
        assert_same_as_tflm(act_graph("TANH", (s, zp), qm.TANH_QUANT, shape=(1, 5, 7, 3)), x)


def test_tanh_numpy_matches_float_roughly():
    for s, zp in [(0.05, 3), (0.02, -100), (0.1, 0)]:
        y = qm.tanh_int8(ALL_INT8, *qm.tanh_params(s, zp)).astype(np.float64)
        want = 128.0 * np.tanh((ALL_INT8.astype(np.float64) - zp) * _f32(s))
        assert np.max(np.abs(y - np.clip(want, -128, 127))) <= 1.0


def test_tanh_output_quantization_tflm_ignores_and_we_require():
    """TFLM's TANH Prepare checks no output quantization: the bytes are always units
    of 1/128 around 0.  A TANH whose output says otherwise is refused, naming it."""
    want = qm.tanh_int8(X256, *qm.tanh_params(0.05, 3))
    for out_q in [(0.01, 0), (1 / 128, 5), (1 / 256, -128)]:
        g = act_graph("TANH", (0.05, 3), out_q)
        assert np.array_equal(run_graph(g, {"x": X256})["y"], want)
        with pytest.raises(IRError, match=r"layer 'y' \(TANH\): int8 output must have scale "
                                          r"1/128 and zero point 0"):
            ours(g, X256)


# --------------------------------------------------------------------------- HARD_SWISH
def hard_swish_quants(seed: int, n: int):
    """Input scales 2^-12..16, output scale 2^-6..2^6 times it (kept where TFLM's
    Prepare accepts it), any zero points."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s = _f32(np.exp2(rng.uniform(-12, 4)))
        so = _f32(s * np.exp2(rng.uniform(-6, 6)))
        try:
            qm.hard_swish_params(s, 0, so, 0)
        except ValueError:
            continue
        out.append(((s, int(rng.integers(-128, 128))), (so, int(rng.integers(-128, 128)))))
    return out


def test_hard_swish_prepare():
    zi, zo, rm, re, om, oe = qm.hard_swish_params(0.05, 3, 0.04, -7)
    assert (zi, zo) == (3, -7)
    # output multiplier 0.05 / 128 / 0.04 = 0.009765625 = 0.625 * 2^-6; Q15 of 0.625
    assert (om, oe) == (20480, -6)
    # reluish multiplier 0.05 / 128 * 32768 / 3 = 4.2666 = 0.5333 * 2^3
    assert re == 3 and rm == (qm.quantize_multiplier(float(np.float32(0.05)) * 256 / 3)[0]
                              + (1 << 15)) >> 16
    assert qm.downscale_int32_to_int16_multiplier((1 << 31) - 1) == 32767
    assert qm.downscale_int32_to_int16_multiplier((1 << 31) - (1 << 15)) == 32767
    assert qm.downscale_int32_to_int16_multiplier((1 << 30) + (1 << 15) - 1) == 16384
    assert qm.downscale_int32_to_int16_multiplier((1 << 30) + (1 << 15)) == 16385


def test_hard_swish_bitexact_with_tflm_all_inputs():
    for qi, qo in hard_swish_quants(20261202, 250):
        assert_same_as_tflm(act_graph("HARD_SWISH", qi, qo))


def test_hard_swish_int16_quirks_bitexact():
    """Output exponent <= -16 (output scale > 512 x input) and reluish exponent <= -16
    (input scale < ~2^-22): gemmlowp's int16 RoundingDivideByPOT then returns +-1;
    large input scales saturate the reluish left shifts."""
    cases = [((0.01, 0), (6.0, 3)), ((0.01, 5), (100.0, -100)), ((0.01, -20), (5.2, 0)),
             ((1e-8, 0), (1e-7, 0)), ((2 ** -24, 3), (2 ** -24, 0)), ((1e-7, -50), (1e-7, 9)),
             ((100.0, -5), (100.0, 7)), ((1000.0, -5), (10.0, 7)), ((1e6, 0), (1e5, 0)),
             ((0.5, 0), (0.5 / 127, 0))]
    quirk = False
    for qi, qo in cases:
        g = act_graph("HARD_SWISH", qi, qo)
        assert_same_as_tflm(g)
        p = get_op("HARD_SWISH").kernel_params(g, g.ops[0])
        if p["output_multiplier_exponent"] <= -16:
            quirk = True      # the rounding shift returns +1 for every x >= input zp
            y = ours(g, X256).astype(int).reshape(-1)
            assert set(y[ALL_INT8 >= qi[1]]) == {qo[1] + 1}
    assert quirk


def test_hard_swish_prepare_divides_in_double():
    """Scales where a float32 quotient (older TFLM sources) gives other int16
    multipliers and other bytes than the double quotient: TFLM agrees with ours."""
    cases = [(0.0020316129084676504, 0.0009499142761342227),
             (0.5119786262512207, 0.7376400232315063),
             (0.0023249024525284767, 0.003979336470365524),
             (1.6085822582244873, 0.8345343470573425),
             (6.010547637939453, 7.129414081573486),
             (0.026528598740696907, 0.0006205378449521959)]
    for s, so in cases:
        i, o = np.float32(s), np.float32(so)
        hires = np.float32(1 / 128) * i
        om32, oe = qm.quantize_multiplier(float(np.float32(hires / o)))
        rm32, re = qm.quantize_multiplier(float(np.float32(hires / (np.float32(3) /
                                                                    np.float32(32768)))))
        d = qm.downscale_int32_to_int16_multiplier
        as_f32 = qm.hard_swish_int8(ALL_INT8, 0, 0, d(rm32), re, d(om32), oe)
        assert not np.array_equal(as_f32, qm.hard_swish_int8(ALL_INT8,
                                                             *qm.hard_swish_params(s, 0, so, 0)))
        assert_same_as_tflm(act_graph("HARD_SWISH", (s, 0), (so, 0)), what="(double quotient)")


def test_hard_swish_refuses_what_tflm_refuses():
    """TFLM's HardSwishPrepare fails when the output multiplier exponent is > 0
    (output scale below about input scale / 128); we refuse the layer by name."""
    for qo in [(0.5 / 128, 0), (0.5 / 129, 0), (0.001, 3)]:
        g = act_graph("HARD_SWISH", (0.5, 0), qo)
        with pytest.raises(RuntimeError):
            run_graph(g, {"x": X256})
        with pytest.raises(IRError, match=r"layer 'y': HARD_SWISH: output scale .* too small"):
            ours(g, X256)
    assert_same_as_tflm(act_graph("HARD_SWISH", (0.5, 0), (0.5 / 127, 0)))


def test_hard_swish_numpy_matches_float_roughly():
    for (s, zp), (so, zo) in [((0.05, 3), (0.03, -100)), ((0.1, 0), (0.08, -90)),
                              ((0.02, -50), (0.02, -110))]:
        y = qm.hard_swish_int8(ALL_INT8, *qm.hard_swish_params(s, zp, so, zo))
        x = (ALL_INT8.astype(np.float64) - zp) * _f32(s)
        want = np.clip(np.round(x * np.clip(x + 3, 0, 6) / 6 / _f32(so)) + zo, -128, 127)
        assert np.max(np.abs(y - want)) <= 1.0


# --------------------------------------------------------------------------- LEAKY_RELU
def leaky_quants(seed: int, n: int):
    """Random scales and alphas (usual, negative, > 1, 0), then tie-heavy ones
    (simple binary fractions: the double quotient and the negative-alpha rounding
    show there)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = _f32(np.exp2(rng.uniform(-12, 4)))
        so = _f32(s * np.exp2(rng.uniform(-3, 3)))
        a = [0.01, 0.1, 0.2, 0.3, 0.0, 1.0, -0.5, 2.0][i % 8] if i % 2 else rng.uniform(-3, 3)
        out.append(((s, int(rng.integers(-128, 128))), (so, int(rng.integers(-128, 128))), _f32(a)))
    for _ in range(n):
        s = _f32(rng.choice([0.1, 0.3, 0.7, 0.05, 1 / 3, 0.2, 0.9]) * np.exp2(rng.integers(-6, 2)))
        so = _f32(s / rng.choice([1.5, 1.25, 0.75, 3, 0.625, 2.5, 1.75, 0.3, 1.0, 0.5]))
        a = _f32(rng.choice([1, 0.5, 2, 0.25, -0.5, -1, -2, 0.125, 4, 0.3, -0.3, 1.5, -1.5, 0.1,
                             0.01, 0.2, 0.75, -0.75]))
        out.append(((s, int(rng.integers(-128, 128))), (so, int(rng.integers(-128, 128))), a))
    return out


def test_leaky_relu_prepare():
    zi, zo, mi, si, ma, sa = qm.leaky_relu_params(0.05, 10, 0.04, -20, 0.2)
    assert (zi, zo) == (10, -20)
    assert (mi, si) == qm.quantize_multiplier(_f32(0.05) / _f32(0.04))
    assert (ma, sa) == qm.quantize_multiplier(_f32(0.05) * _f32(0.2) / _f32(0.04))
    assert qm.leaky_relu_params(0.05, 0, 0.04, 0, 0.0)[4:] == (0, 0)
    assert qm.leaky_relu_params(0.05, 0, 0.04, 0, -0.5)[4] < 0
    assert get_op("LEAKY_RELU").attrs == {"alpha": 0.2}


def test_leaky_relu_bitexact_with_tflm_all_inputs():
    for qi, qo, a in leaky_quants(20261203, 150):
        assert_same_as_tflm(act_graph("LEAKY_RELU", qi, qo, alpha=a))


def test_leaky_relu_ties_need_double_quotient_and_negated_alpha():
    """On tie-heavy quantizations the older arithmetic (float32 quotients, the negative
    alpha multiplier used directly) differs from TFLM; ours does not."""
    differs = 0
    for qi, qo, a in leaky_quants(7, 60)[60:]:
        i, o, al = np.float32(qi[0]), np.float32(qo[0]), np.float32(a)
        mi, si = qm.quantize_multiplier(float(np.float32(i / o)))
        ma, sa = qm.quantize_multiplier(float(np.float32(np.float32(i * al) / o)))
        v = ALL_INT8.astype(np.int64) - qi[1]
        old = np.clip(qo[1] + np.where(v >= 0, qm.multiply_by_quantized_multiplier(v, mi, si),
                                       qm.multiply_by_quantized_multiplier(v, ma, sa)),
                      -128, 127)
        g = act_graph("LEAKY_RELU", qi, qo, alpha=a)
        differs += not np.array_equal(old, ours(g, ALL_INT8.reshape(1, 256)).reshape(-1))
        assert_same_as_tflm(g, what="(tie-heavy)")
    assert differs >= 10


def test_leaky_relu_numpy_matches_float_roughly():
    for (s, zp), (so, zo), a in [((0.05, 3), (0.04, -20), 0.2), ((0.1, 0), (0.08, 5), -0.5),
                                 ((0.02, -50), (0.03, 0), 1.5)]:
        y = qm.leaky_relu_int8(ALL_INT8, *qm.leaky_relu_params(s, zp, so, zo, a))
        x = (ALL_INT8.astype(np.float64) - zp) * _f32(s)
        want = np.clip(np.round(np.where(x > 0, x, _f32(a) * x) / _f32(so)) + zo, -128, 127)
        assert np.max(np.abs(y - want)) <= 1.0


# --------------------------------------------------------------------------- all three
def _graphs(seed=5, n=8):
    for s, zp in tanh_quants(seed, n)[:n]:
        yield act_graph("TANH", (s, zp), qm.TANH_QUANT)
    for qi, qo in hard_swish_quants(seed, n):
        yield act_graph("HARD_SWISH", qi, qo)
    for qi, qo, a in leaky_quants(seed, n)[:n]:
        yield act_graph("LEAKY_RELU", qi, qo, alpha=a)


def test_tables_are_the_reference_and_the_kernel_runs_them():
    """kernel_params' table is the reference in mcu_lut_s8's order, and the C lookup
    (host build, portable and DSP) gives the reference on every input, in place too."""
    libs = [host_lib("portable"), host_lib("dsp")]
    for g in _graphs():
        op = g.ops[0]
        p = get_op(op.type).kernel_params(g, op)
        t = p["table"]
        assert t.shape == (256,) and t.dtype == np.int8 and p["size"] == 256
        want = ours(g, X256)
        assert np.array_equal(t[ALL_INT8.view(np.uint8)], want.reshape(-1))
        for lib in libs:
            y = run_op(lib, g, op, {"x": X256}, "")
            assert np.array_equal(np.asarray(y).reshape(want.shape), want), op.type
        assert get_op(op.type).inplace(g, op) == [0]


def test_tflite_roundtrip_options_and_versions():
    for g in _graphs(n=2):
        raw = write_tflite(g)
        back = read_tflite(raw)
        op = g.ops[0]
        assert [(o.type, o.attrs) for o in back.ops] == [(op.type, op.attrs)]
        m = schema.Model.GetRootAsModel(raw, 0)
        want = {"TANH": 2, "HARD_SWISH": 1, "LEAKY_RELU": 1}[op.type]   # op_version.cc, int8
        assert m.OperatorCodes(0).Version() == want
    g = act_graph("LEAKY_RELU", (0.05, 0), (0.05, 0), alpha=0.1)
    a = read_tflite(write_tflite(g)).ops[0].attr("alpha")
    assert a == _f32(0.1) and isinstance(a, float)


def test_leaky_relu_without_options_reads_alpha_zero():
    g = act_graph("LEAKY_RELU", (0.05, 0), (0.05, 0), alpha=0.1)
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(write_tflite(g), 0))
    m.subgraphs[0].operators[0].builtinOptionsType = schema.BuiltinOptions.NONE
    m.subgraphs[0].operators[0].builtinOptions = None
    import flatbuffers
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    raw = bytes(b.Output())
    back = read_tflite(raw)
    assert back.ops[0].attr("alpha") == 0.0
    assert np.array_equal(reference.run(back, {back.inputs[0]: X256})[back.outputs[0]],
                          TflmRunner(raw).run(X256)[0])


# --------------------------------------------------------------------------- ONNX

def _act_net():
    from torch import nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Hardswish(),
                         nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(6 * 3 * 3, 7), nn.LeakyReLU(0.1), nn.Linear(7, 4),
                         nn.LeakyReLU()).eval()


def test_onnx_activations_convert_quantize_and_run_in_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float

    torch.manual_seed(0)
    net = _act_net()
    g = from_onnx(export_onnx(net, (1, 3, 6, 5)))
    acts = ("TANH", "HARD_SWISH", "LEAKY_RELU")
    assert [op.type for op in g.ops if op.type in acts] == ["HARD_SWISH", "TANH", "LEAKY_RELU",
                                                            "LEAKY_RELU"]
    assert [op.attr("alpha") for op in g.ops if op.type == "LEAKY_RELU"] == [_f32(0.1),
                                                                              _f32(0.01)]
    rng = np.random.default_rng(0)
    calib = (rng.standard_normal((64, 6, 5, 3)) * 2).astype(np.float32)
    want_f = net(torch.from_numpy(calib.transpose(0, 3, 1, 2).copy())).detach().numpy()
    np.testing.assert_allclose(run_float(g, calib)[g.outputs[0]], want_f, atol=1e-5)

    q = quantize(g, calib)
    for op in q.ops:
        if op.type == "TANH":
            oq = q.t(op.outputs[0]).quant
            assert (float(oq.scale[0]), int(oq.zero_point[0])) == qm.TANH_QUANT
    model = write_tflite(q)
    back = read_tflite(model)
    runner = TflmRunner(model, preserve_all_tensors=True)
    xq = q.t(q.inputs[0]).quant
    seen = set()
    for i in range(16):
        x = np.clip(np.round(calib[i:i + 1] / xq.scale[0]) + xq.zero_point[0], -128,
                    127).astype(np.int8)
        y = runner.run(x)[0]
        assert np.array_equal(reference.run(q, x)[q.outputs[0]].reshape(-1), y.reshape(-1))
        # every activation layer inside TFLM equals our reference on its TFLM input
        for op in back.ops:
            if op.type not in ("TANH", "HARD_SWISH", "LEAKY_RELU"):
                continue
            xin, xout = back.t(op.inputs[0]), back.t(op.outputs[0])
            a = runner.tensor(xin.meta["tflite_index"]).reshape(xin.shape)
            b = runner.tensor(xout.meta["tflite_index"]).reshape(xout.shape)
            one = Graph(name="one")
            one.add_tensor(Tensor("x", xin.shape, "int8", xin.quant))
            one.add_tensor(Tensor("y", xout.shape, "int8", xout.quant))
            one.add_op(Op(op.type, ["x"], ["y"], dict(op.attrs), name=op.name))
            one.inputs, one.outputs = ["x"], ["y"]
            assert np.array_equal(ours(one, a), b), op.name
            seen.add(op.type)
    assert seen == {"TANH", "HARD_SWISH", "LEAKY_RELU"}


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_activation_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    """The ONNX model with Hardswish, Tanh and LeakyReLU through `mcu build`'s path on
    mps2-an386: every output byte equal to tflite-micro's on the written .tflite."""
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize

    torch.manual_seed(1)
    g = from_onnx(export_onnx(_act_net(), (1, 3, 6, 5)))
    assert {"TANH", "HARD_SWISH", "LEAKY_RELU"} <= {op.type for op in g.ops}
    rng = np.random.default_rng(3)
    q = quantize(g, rng.standard_normal((32, 6, 5, 3)).astype(np.float32) * 2)
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

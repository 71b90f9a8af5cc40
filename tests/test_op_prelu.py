"""PRELU int8: the reference (TFLM CalculatePreluParams + BroadcastPrelu4DSlow: two
QuantizeMultiplier pairs in double, per-tensor quantized alpha broadcast into the
input) and the C kernel (host, portable and DSP builds) equal TFLite Micro byte for
byte on every int8 input value for many quantizations and slopes, and on random
shapes with per-channel / per-tensor / spatial alpha; TFLite round trip (version 1);
ONNX PRelu (nn.PReLU per channel and shared, on NCHW, (N, C, L) and flat tensors)
converts, equals PyTorch in float and runs in TFLM equal to our reference; bit-exact
on QEMU M4 (portable and DSP)."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from qemu_model import assert_bit_exact_on_qemu, needs_qemu  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import opgen  # noqa: E402
from kernel_host import host_lib, run_op  # noqa: E402

from converters.tflite_reader import read_tflite  # noqa: E402
from converters.tflite_schema import schema  # noqa: E402
from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.ir import IRError, reference  # noqa: E402
from toolchain.ir.graph import Graph, Op, Quant, Tensor  # noqa: E402
from toolchain.ir.validate import validate  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402
from onnx_export import export_onnx  # noqa: E402


def _all_inputs_graph(rng, in_q, out_q, alpha_q, alpha):
    """x = every int8 value in each of len(alpha) channels."""
    c = len(alpha)
    g = Graph(name="prelu256")
    g.add_tensor(Tensor("x", (1, 256, c), "int8", Quant.per_tensor(*in_q)))
    g.add_tensor(Tensor("alpha", (c,), "int8", Quant.per_tensor(*alpha_q),
                        np.asarray(alpha, np.int8)))
    g.add_tensor(Tensor("y", (1, 256, c), "int8", Quant.per_tensor(*out_q)))
    g.add_op(Op("PRELU", ["x", "alpha"], ["y"], {}, name="y"))
    g.inputs, g.outputs = ["x"], ["y"]
    x = np.repeat(np.arange(-128, 128, dtype=np.int64), c).reshape(1, 256, c).astype(np.int8)
    return g, {"x": x}


def test_all_inputs_many_quantizations_bitexact():
    libs = [host_lib("portable"), host_lib("dsp")]
    rng = np.random.default_rng(0)
    f32 = opgen._f32
    edge = [((0.05, 0), (0.05, 0), (0.01, 0)), ((0.02, -128), (0.1, 127), (0.004, -128)),
            ((0.1, 127), (0.003, -128), (0.02, 127))]
    cases = edge + [((opgen.rand_scale(rng), opgen.rand_zp(rng)),
                     (f32(opgen.rand_scale(rng) * rng.uniform(0.2, 3)), opgen.rand_zp(rng)),
                     (opgen.rand_scale(rng, 0.001, 0.03), opgen.rand_zp(rng)))
                    for _ in range(17)]
    for in_q, out_q, a_q in cases:
        alpha = rng.integers(-128, 128, size=8)
        alpha[:3] = (-128, 127, a_q[1])                 # extremes and slope 0
        g, feeds = _all_inputs_graph(rng, in_q, out_q, a_q, alpha)
        want = run_graph(g, feeds)["y"]
        assert np.array_equal(reference.run(g, feeds)["y"], want), (in_q, out_q, a_q)
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), (in_q, out_q, a_q)


def test_random_shapes_and_alpha_broadcasts_bitexact():
    libs = [host_lib("portable"), host_lib("dsp")]
    for seed in range(60):
        rng = np.random.default_rng([11, seed])
        g = opgen.make_prelu(rng)
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)["y"]
        assert np.array_equal(reference.run(g, feeds)["y"], want), g.t("alpha").shape
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want)


def test_alpha_larger_than_the_input_is_refused():
    g = opgen.make_prelu(np.random.default_rng(1), shape=(1, 2, 2, 3), alpha_shape=(2, 1, 1, 3))
    g.ops[0].name = "pr"
    with pytest.raises(IRError, match=r"layer 'pr' \(PRELU\): alpha \(2, 1, 1, 3\) is larger"):
        validate(g)


def test_tflite_roundtrip_and_version():
    g = opgen.make_prelu(np.random.default_rng(2), shape=(1, 3, 4, 5), alpha_shape=(1, 1, 5))
    raw = write_tflite(g)
    oc = schema.Model.GetRootAsModel(raw, 0).OperatorCodes(0)
    assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == schema.BuiltinOperator.PRELU
    assert oc.Version() == 1
    back = read_tflite(raw)
    assert [(o.type, o.attrs) for o in back.ops] == [("PRELU", {})]
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 3, 4, 5)).astype(np.int8)
    assert np.array_equal(reference.run(back, x)[back.outputs[0]], TflmRunner(raw).run(x)[0])


# --------------------------------------------------------------------------- ONNX

def _nets():
    import torch
    from torch import nn

    def slopes(m):
        with torch.no_grad():
            m.weight.uniform_(-0.5, 0.8)
        return m
    image = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), slopes(nn.PReLU(6)),
                          nn.Conv2d(6, 4, 3, stride=2, padding=1), nn.PReLU(), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 7), slopes(nn.PReLU(7)), nn.Linear(7, 3))
    audio = nn.Sequential(nn.Conv1d(4, 5, 3), slopes(nn.PReLU(5)), nn.Conv1d(5, 3, 1))
    return [("image", image.eval(), (1, 3, 6, 5)), ("audio", audio.eval(), (1, 4, 10))]


def _ir(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x.transpose(0, 2, 1)[:, None]


def _onnx(y, like):
    if like.ndim == 4:
        return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
    return y[:, 0].transpose(0, 2, 1)


def test_onnx_prelu_converts_quantizes_and_runs_in_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, net, shape in _nets():
        g = from_onnx(export_onnx(net, shape))
        assert "PRELU" in {op.type for op in g.ops}, name
        x = rng.standard_normal((32,) + shape[1:]).astype(np.float32)
        want = net(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(_onnx(run_float(g, _ir(x))[g.outputs[0]], x), want,
                                   atol=1e-5, err_msg=name)
        q = quantize(g, _ir(x))
        tf = TflmRunner(write_tflite(q))
        xq = q.t(q.inputs[0]).quant
        for i in range(8):
            xi = np.clip(np.round(_ir(x[i:i + 1]) / xq.scale[0]) + xq.zero_point[0], -128,
                         127).astype(np.int8)
            assert np.array_equal(reference.run(q, xi)[q.outputs[0]].reshape(-1),
                                  tf.run(xi)[0].reshape(-1)), name


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_prelu_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    torch.manual_seed(1)
    _, net, shape = _nets()[0]
    g = from_onnx(export_onnx(net, shape))
    rng = np.random.default_rng(3)
    q = quantize(g, _ir(rng.standard_normal((32,) + shape[1:]).astype(np.float32)))
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

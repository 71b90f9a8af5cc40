"""MAXIMUM / MINIMUM int8: TFLM compares the raw int8 bytes of the two (broadcast)
inputs; the reference and the C kernels (host portable and DSP builds) equal TFLite
Micro byte for byte on every int8 pair and on broadcast shapes (either input); the
quantizer gives inputs, constants and output one quantization (same_quant="all");
graphs whose quantizations differ (TFLM would compare bytes silently) are refused
naming the layer; TFLite round trip (int8 version 2); ONNX Max / Min (two or more
inputs, constants) convert and run in TFLM equal to our reference; a model with both
is bit-exact on QEMU M4 (portable and DSP)."""
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
from toolchain.ir.graph import Quant  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402
from onnx_export import export_onnx  # noqa: E402

OPS = ("MAXIMUM", "MINIMUM")


def pairs_graph(op_type, q):
    g, feeds = opgen.add_all_pairs(q, q, q)
    g.ops[0].type = op_type
    g.ops[0].attrs = {}
    return g, feeds


@pytest.mark.parametrize("op_type", OPS)
def test_all_pairs_bitexact(op_type):
    libs = [host_lib("portable"), host_lib("dsp")]
    for q in ((0.05, 0), (0.01, -128), (0.3, 127)):
        g, feeds = pairs_graph(op_type, q)
        want = run_graph(g, feeds)["y"]
        f = np.maximum if op_type == "MAXIMUM" else np.minimum
        assert np.array_equal(want, f(feeds["a"], feeds["b"]))     # TFLM: raw bytes
        assert np.array_equal(reference.run(g, feeds)["y"], want)
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want)


@pytest.mark.parametrize("op_type", OPS)
@pytest.mark.parametrize("first", [False, True])
def test_broadcast_either_input(op_type, first):
    libs = [host_lib("portable"), host_lib("dsp")]
    for seed in range(24):
        rng = np.random.default_rng([3, seed, first])
        g = opgen._maxmin(rng, op_type, broadcast=("channel", "scalar", "spatial")[seed % 3],
                          first=first)
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)["y"]
        assert np.array_equal(reference.run(g, feeds)["y"], want)
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want)


@pytest.mark.parametrize("op_type", OPS)
def test_different_quantizations_are_refused_naming_the_layer(op_type):
    g, feeds = pairs_graph(op_type, (0.05, 0))
    g.ops[0].name = "mx"
    g.t("b").quant = Quant.per_tensor(0.1, 3)
    with pytest.raises(IRError, match=r"layer 'mx' \(" + op_type + r"\).*'b'.*requantize"):
        reference.run(g, feeds)
    from toolchain.codegen.kernel_params import kernel_params
    with pytest.raises(IRError, match="layer 'mx'"):
        kernel_params(g, g.ops[0])


def test_tflite_roundtrip_and_versions():
    for op_type in OPS:
        g, _ = pairs_graph(op_type, (0.05, 0))
        raw = write_tflite(g)
        oc = schema.Model.GetRootAsModel(raw, 0).OperatorCodes(0)
        assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == \
            getattr(schema.BuiltinOperator, op_type)
        assert oc.Version() == 2                        # op_version.cc: int8
        back = read_tflite(raw)
        assert [(o.type, o.attrs) for o in back.ops] == [(op_type, {})]


# --------------------------------------------------------------------------- ONNX
def _net():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 6, 3, padding=1)
            self.b = nn.Conv2d(3, 6, 1)
            self.c = nn.Conv2d(6, 4, 3, stride=2, padding=1)
            self.register_buffer("floor", torch.linspace(-0.4, 0.3, 6).reshape(1, 6, 1, 1))

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            y = torch.maximum(a, b)                          # tensor, tensor
            y = torch.minimum(y, torch.tensor(0.8))          # tensor, scalar constant
            y = torch.maximum(y, self.floor)                 # per-channel constant
            z = self.c(y)
            return torch.minimum(z, z.mean(dim=(2, 3), keepdim=True))   # broadcast
    return Net().eval()



def _quantized(seed):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    torch.manual_seed(seed)
    net = _net()
    g = from_onnx(export_onnx(net, (1, 3, 6, 5)))
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((48, 6, 5, 3)).astype(np.float32)
    return net, g, calib, quantize(g, calib)


def test_onnx_max_min_convert_quantize_and_run_in_tflm():
    torch = pytest.importorskip("torch")
    from toolchain.ir.float_eval import run_float
    net, g, calib, q = _quantized(0)
    assert [op.type for op in g.ops if op.type in OPS] == ["MAXIMUM", "MINIMUM", "MAXIMUM",
                                                            "MINIMUM"]
    want_f = net(torch.from_numpy(calib.transpose(0, 3, 1, 2).copy())).detach().numpy()
    np.testing.assert_allclose(run_float(g, calib)[g.outputs[0]].transpose(0, 3, 1, 2), want_f,
                               atol=1e-5)
    for op in q.ops:                  # one quantization for inputs (constants too) and output
        if op.type in OPS:
            qs = {(float(q.t(n).quant.scale[0]), int(q.t(n).quant.zero_point[0]))
                  for n in op.inputs + op.outputs}
            assert len(qs) == 1, op.name
    model = write_tflite(q)
    runner = TflmRunner(model)
    xq = q.t(q.inputs[0]).quant
    for i in range(12):
        x = np.clip(np.round(calib[i:i + 1] / xq.scale[0]) + xq.zero_point[0], -128,
                    127).astype(np.int8)
        assert np.array_equal(reference.run(q, x)[q.outputs[0]].reshape(-1),
                              runner.run(x)[0].reshape(-1))


def test_onnx_variadic_max_and_single_input_min():
    import onnx  # noqa: F401
    from onnx import TensorProto, helper
    from converters import from_onnx
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8]) for n in "abc"]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    nodes = [helper.make_node("Max", ["a", "b", "c"], ["m"]),
             helper.make_node("Min", ["m"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "mm", vi, [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    g = from_onnx(m.SerializeToString())
    assert [op.type for op in g.ops] == ["MAXIMUM", "MAXIMUM"]
    from converters.quantize import quantize
    rng = np.random.default_rng(1)
    q = quantize(g, {n: rng.standard_normal((16, 4, 8)).astype(np.float32) for n in "abc"})
    feeds = opgen.random_feeds(rng, q)
    out = reference.run(q, feeds)[q.outputs[0]]
    assert np.array_equal(out, np.maximum(np.maximum(feeds["a"], feeds["b"]), feeds["c"]))
    assert np.array_equal(out, run_graph(q, feeds)[q.outputs[0]])


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_max_min_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    _, _, _, q = _quantized(1)
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

"""SUB int8: the numpy reference (ADD's Prepare, left_shift 20, the difference of the
rescaled inputs) equals TFLite Micro byte for byte on every int8 input pair over
edge and random quantizations, with broadcasting on either input and fused
activations; the C kernel (host, portable and DSP builds; fast and literal paths)
equals the reference; TFLite round trip (SubOptions, int8 version 2); ONNX Sub of two
tensors and of a constant first operand lowers to SUB (Sub of a constant second
operand stays an ADD of the negated constant) and runs in TFLM equal to our
reference; an ONNX model with Sub is bit-exact on QEMU M4 (portable and DSP)."""
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
from toolchain.ir import reference  # noqa: E402
from toolchain.ir.graph import Graph, Op, Quant, Tensor  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402
from onnx_export import export_onnx  # noqa: E402


def pairs_graph(q1, q2, qo, act="NONE"):
    g, feeds = opgen.add_all_pairs(q1, q2, qo, act)
    g.ops[0].type = "SUB"
    return g, feeds


@pytest.mark.parametrize("act", ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
def test_sub_bitexact_all_pairs(act):
    """All 65,536 (x1, x2) pairs per quantization: equal scales, extreme zero points,
    wide scale ratios (large input shifts), random ones."""
    quants = opgen.add_pair_quants(seed=23, n=10 if act == "NONE" else 3)
    libs = [host_lib("portable"), host_lib("dsp")]
    for q1, q2, qo in quants:
        g, feeds = pairs_graph(q1, q2, qo, act)
        want = run_graph(g, feeds)["y"]
        got = reference.run(g, feeds)["y"]
        assert np.array_equal(got, want), (q1, q2, qo, act)
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), (q1, q2, qo, act)


def test_sub_params_are_adds():
    """TFLM's Sub Prepare is ADD's (PrepareGeneralSubOp): left_shift 20 for int8 and
    the same three multipliers."""
    from toolchain.codegen.kernel_params import kernel_params
    g, _ = pairs_graph((0.02, 3), (0.05, -7), (0.04, 1))
    p_sub = kernel_params(g, g.ops[0])
    g.ops[0].type = "ADD"
    p_add = kernel_params(g, g.ops[0])
    assert p_sub["left_shift"] == 20 and p_sub == p_add


@pytest.mark.parametrize("first", [False, True])
def test_sub_broadcast_either_input(first):
    """TFLM broadcasts either operand (BroadcastQuantSubSlow); so do the reference
    and the C kernel."""
    libs = [host_lib("portable"), host_lib("dsp")]
    for seed in range(30):
        rng = np.random.default_rng([7, seed, first])
        shape = opgen._rand_shape4(rng)
        kind = ("channel", "scalar", "spatial", "row")[seed % 4]
        small = {"channel": (1, 1, 1, shape[3]), "scalar": (1,),
                 "spatial": (shape[0], shape[1], shape[2], 1),
                 "row": (1, shape[1], 1, shape[3])}[kind]
        g = Graph(name="sub_bc")
        sa, sb = (small, shape) if first else (shape, small)
        q1, q2 = opgen.act_quant(rng), opgen.act_quant(rng)
        qo = opgen.act_quant(rng, opgen._f32(max(q1.scale[0], q2.scale[0]) *
                                             rng.uniform(0.5, 2.5)))
        g.add_tensor(Tensor("a", sa, "int8", q1))
        g.add_tensor(Tensor("b", sb, "int8", q2))
        g.add_tensor(Tensor("y", shape, "int8", qo))
        g.add_op(Op("SUB", ["a", "b"], ["y"], dict(fused_activation="NONE")))
        g.inputs, g.outputs = ["a", "b"], ["y"]
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)["y"]
        assert np.array_equal(reference.run(g, feeds)["y"], want), (sa, sb)
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), (sa, sb)


def test_sub_tflite_roundtrip_options_and_version():
    g, _ = pairs_graph((0.02, 3), (0.05, -7), (0.04, 1), "RELU6")
    raw = write_tflite(g)
    m = schema.Model.GetRootAsModel(raw, 0)
    oc = m.OperatorCodes(0)
    assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == schema.BuiltinOperator.SUB
    assert oc.Version() == 2                      # op_version.cc: SUB int8
    back = read_tflite(raw)
    assert [(o.type, o.attrs) for o in back.ops] == [("SUB", dict(fused_activation="RELU6"))]


# --------------------------------------------------------------------------- ONNX
class _SubNet:
    @staticmethod
    def make():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 6, 3, padding=1)
                self.b = nn.Conv2d(3, 6, 1)
                self.c = nn.Conv2d(6, 4, 3, stride=2, padding=1)

            def forward(self, x):
                y = torch.relu(self.a(x) - self.b(x))       # tensor - tensor, fused ReLU
                y = 0.75 - y                                  # constant - tensor
                y = self.c(y) - 0.5                           # tensor - constant -> ADD
                return y - y.mean(dim=(2, 3), keepdim=True)   # broadcast over H, W
        return Net().eval()



def _quantized_sub_model(seed):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    torch.manual_seed(seed)
    net = _SubNet.make()
    g = from_onnx(export_onnx(net, (1, 3, 6, 5)))
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((48, 6, 5, 3)).astype(np.float32)
    return net, g, calib, quantize(g, calib)


def test_onnx_sub_converts_quantizes_and_runs_in_tflm():
    torch = pytest.importorskip("torch")
    from toolchain.ir.float_eval import run_float
    net, g, calib, q = _quantized_sub_model(0)
    types = [op.type for op in g.ops]
    assert types.count("SUB") == 3 and "ADD" in types, types
    subs = [op for op in g.ops if op.type == "SUB"]
    assert subs[0].attr("fused_activation") == "RELU"
    assert g.t(subs[1].inputs[0]).is_const                 # 0.75 - y
    want_f = net(torch.from_numpy(calib.transpose(0, 3, 1, 2).copy())).detach().numpy()
    got_f = run_float(g, calib)[g.outputs[0]].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got_f, want_f, atol=1e-4)
    model = write_tflite(q)
    runner = TflmRunner(model)
    xq = q.t(q.inputs[0]).quant
    for i in range(12):
        x = np.clip(np.round(calib[i:i + 1] / xq.scale[0]) + xq.zero_point[0], -128,
                    127).astype(np.int8)
        assert np.array_equal(reference.run(q, x)[q.outputs[0]].reshape(-1),
                              runner.run(x)[0].reshape(-1))


def test_onnx_sub_of_two_graph_inputs():
    """A bare two-input Sub (rank 3, kept in ONNX order) with broadcasting."""
    import onnx
    from onnx import TensorProto, helper
    from converters import from_onnx
    from converters.quantize import quantize
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 8])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    m = helper.make_model(helper.make_graph([helper.make_node("Sub", ["a", "b"], ["y"])],
                                            "sub", [a, b], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    g = from_onnx(m.SerializeToString())
    assert [op.type for op in g.ops] == ["SUB"]
    rng = np.random.default_rng(2)
    calib = [rng.standard_normal((32, 4, 8)).astype(np.float32),
             rng.standard_normal((32, 1, 8)).astype(np.float32)]
    q = quantize(g, {"a": calib[0], "b": calib[1]})
    feeds = opgen.random_feeds(rng, q)
    assert np.array_equal(reference.run(q, feeds)[q.outputs[0]],
                          run_graph(q, feeds)[q.outputs[0]])


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_sub_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    _, _, _, q = _quantized_sub_model(1)
    assert sum(op.type == "SUB" for op in q.ops) == 3
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

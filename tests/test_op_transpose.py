"""TRANSPOSE int8: the reference and the C kernel (host, portable and DSP builds; a
strided copy padded to 5-D) equal TFLite Micro byte for byte on every permutation of
1-D to 4-D tensors and on 5-D ones; 6-D (TFLM: "only supports 1D-5D") and
non-constant or invalid permutations are refused naming the layer; TFLite round
trip (perm input kept, int8 version 2, 4 for 5-D); ONNX Transpose mapped in IR
axes: on NCHW values (composed with the NHWC relabelling), on values kept in ONNX
order, and the audio pattern (N, T, F) -> transpose(1, 2) -> Conv1d ->
transpose(1, 2) -> Linear (no data movement: RESHAPEs); float equal to PyTorch,
quantized models equal in TFLM and our reference; bit-exact on QEMU M4 (portable
and DSP)."""
import itertools
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
from toolchain.ir.validate import validate  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402
from onnx_export import export_onnx  # noqa: E402


def _check(g, libs, rng):
    feeds = opgen.random_feeds(rng, g)
    want = run_graph(g, feeds)["y"]
    assert np.array_equal(want, np.transpose(feeds["x"], g.t("perm").data))
    assert np.array_equal(reference.run(g, feeds)["y"], want)
    for lib in libs:
        assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), g.t("perm").data


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_every_permutation_bitexact(rank):
    libs = [host_lib("portable"), host_lib("dsp")]
    rng = np.random.default_rng(rank)
    shape = (2, 3, 4, 5)[:rank]
    for perm in itertools.permutations(range(rank)):
        _check(opgen.make_transpose(rng, shape=shape, perm=perm), libs, rng)


def test_5d_bitexact():
    libs = [host_lib("portable"), host_lib("dsp")]
    rng = np.random.default_rng(5)
    for _ in range(12):
        shape = tuple(int(d) for d in rng.integers(1, 5, size=5))
        _check(opgen.make_transpose(rng, shape=shape), libs, rng)


def test_refused_naming_the_layer():
    rng = np.random.default_rng(0)
    g = opgen.make_transpose(rng, shape=(2, 1, 2, 1, 2, 3), perm=[5, 4, 3, 2, 1, 0])
    g.ops[0].name = "tr"
    with pytest.raises(IRError, match=r"layer 'tr' \(TRANSPOSE\): 6-D input .*1-D to 5-D"):
        validate(g)
    g = opgen.make_transpose(rng, shape=(2, 3), perm=[1, 0])
    g.ops[0].name = "tr"
    g.t("perm").data = np.asarray([1, 1], np.int32)
    with pytest.raises(IRError, match=r"layer 'tr' \(TRANSPOSE\): \[1, 1\] is not a permutation"):
        validate(g)
    g.t("perm").data = None
    with pytest.raises(IRError, match=r"layer 'tr' \(TRANSPOSE\): the permutation must be a "
                                      "constant"):
        validate(g)


def test_tflite_roundtrip_and_versions():
    rng = np.random.default_rng(1)
    for shape, perm, version in (((2, 3, 4, 5), (0, 3, 1, 2), 2), ((2, 3), (1, 0), 2),
                                 ((2, 3, 1, 2, 2), (4, 0, 3, 1, 2), 4)):
        g = opgen.make_transpose(rng, shape=shape, perm=perm)
        raw = write_tflite(g)
        oc = schema.Model.GetRootAsModel(raw, 0).OperatorCodes(0)
        assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == schema.BuiltinOperator.TRANSPOSE
        assert oc.Version() == version                  # op_version.cc
        back = read_tflite(raw)
        op = back.ops[0]
        assert op.type == "TRANSPOSE" and len(op.inputs) == 2
        assert back.t(op.inputs[1]).data.tolist() == list(perm)
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        assert np.array_equal(reference.run(back, x)[back.outputs[0]], TflmRunner(raw).run(x)[0])


# --------------------------------------------------------------------------- ONNX

def _nets():
    import torch
    from torch import nn

    class Audio(nn.Module):          # (N, T, F) -> (N, F, T) -> Conv1d -> (N, T, C) -> Linear
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(10, 8, 3, padding=1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = torch.relu(self.c(x.transpose(1, 2)))
            return self.fc(y.transpose(1, 2))

    class Image(nn.Module):          # NCHW permutes between convolutions
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(5, 4, 1)

        def forward(self, x):
            y = self.c(x).permute(0, 1, 3, 2)             # N, 4, W, H
            return self.c2(torch.relu(y.permute(0, 2, 1, 3)))  # N, W(=5), 4, H

    class Same(nn.Module):           # a rank-3 tensor in ONNX order, transposed twice
        def forward(self, x):
            y = torch.relu(x.transpose(1, 2) * 2.0)
            return y.transpose(2, 1) - 0.25

    return [("audio", Audio().eval(), (1, 12, 10)), ("image", Image().eval(), (1, 3, 6, 5)),
            ("same", Same().eval(), (1, 4, 7))]


def _ir_in(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _ir_out_to_onnx(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def test_onnx_transpose_mapped_in_ir_axes_float_and_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, net, shape in _nets():
        g = from_onnx(export_onnx(net, shape))
        types = [op.type for op in g.ops]
        if name == "audio":            # no data movement at all
            assert "TRANSPOSE" not in types and types.count("CONV_2D") == 1, types
        else:
            assert "TRANSPOSE" in types, types
        x = rng.standard_normal((32,) + shape[1:]).astype(np.float32)
        want = net(torch.from_numpy(x)).detach().numpy()
        got = _ir_out_to_onnx(run_float(g, _ir_in(x))[g.outputs[0]])
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        q = quantize(g, _ir_in(x))
        tf = TflmRunner(write_tflite(q))
        xq = q.t(q.inputs[0]).quant
        for i in range(8):
            xi = np.clip(np.round(_ir_in(x[i:i + 1]) / xq.scale[0]) + xq.zero_point[0], -128,
                         127).astype(np.int8)
            assert np.array_equal(reference.run(q, xi)[q.outputs[0]].reshape(-1),
                                  tf.run(xi)[0].reshape(-1)), name


def test_onnx_transpose_of_a_flattened_tensor_is_refused():
    import onnx  # noqa: F401
    from onnx import TensorProto, helper
    from converters import from_onnx
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [24, 1])
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Transpose", ["f"], ["y"], name="tr", perm=[1, 0])]
    m = helper.make_model(helper.make_graph(nodes, "t", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(IRError, match=r"Transpose node 'tr': transposing a flattened NCHW"):
        from_onnx(m.SerializeToString())


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_transpose_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    torch.manual_seed(1)
    _, net, shape = _nets()[1]
    g = from_onnx(export_onnx(net, shape))
    rng = np.random.default_rng(3)
    q = quantize(g, _ir_in(rng.standard_normal((32,) + shape[1:]).astype(np.float32)))
    assert "TRANSPOSE" in {op.type for op in q.ops}
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

"""TRANSPOSE_CONV int8: the reference and the C kernel (host, portable and DSP builds;
a gather over the taps that reach each output pixel, no scratch) equal TFLite Micro
byte for byte on random geometries (strides 1-3, unequal strides, kernels smaller and
larger than the stride, SAME/VALID, output shapes other than the inferred one, per-tensor
weights, no bias) and with every fused activation (the installed tflite-micro applies
it to int8); bad geometry refused naming the layer; TFLite round trip (TFLite input order,
output_shape constant, int8 versions 2 / 3 with bias / 4 with activation); ONNX
ConvTranspose (2-D and 1-D, with and without a crop) float equal to PyTorch, quantized
equal in TFLM and our reference, groups and dilation refused by name; the PyTorch form
(patch training) equal to the float evaluator; a decoder with ConvTranspose2d and
nn.Upsample (TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR) bit-exact on QEMU M4 (portable and
DSP)."""
import sys
import zlib
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
    assert np.array_equal(reference.run(g, feeds)["y"], want), g.ops[0].attrs
    for lib in libs:
        assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), g.ops[0].attrs
    return want


def test_random_geometries_bitexact():
    libs = [host_lib("portable"), host_lib("dsp")]
    for seed in range(60):
        rng = np.random.default_rng([zlib.crc32(b"tconv"), seed])
        _check(opgen.make_transpose_conv(rng), libs, rng)


@pytest.mark.parametrize("kw", [
    dict(kh=1, kw=1, stride=3),                      # gaps: pixels only the bias reaches
    dict(kh=5, kw=5, stride=1, padding="SAME"), dict(kh=4, kw=4, stride=2, padding="SAME"),
    dict(kh=3, kw=3, stride=2, padding="VALID"), dict(h=1, w=1, kh=3, kw=2, stride=2),
    dict(per_channel=False, bias=False), dict(output_shape=[1, 3, 2, 5], cout=5, n=1),
    dict(output_shape=[1, 13, 11, 4], cout=4, n=1, h=4, w=4, stride=2, kh=3, kw=3),
])
def test_edge_geometry_bitexact(kw):
    libs = [host_lib("portable"), host_lib("dsp")]
    rng = np.random.default_rng(3)
    for _ in range(3):
        _check(opgen.make_transpose_conv(rng, **kw), libs, rng)


@pytest.mark.parametrize("act", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_fused_activation_applied_as_tflm(act):
    libs = [host_lib("portable")]
    rng = np.random.default_rng(4)
    clamped = False
    for _ in range(4):
        g = opgen.make_transpose_conv(rng, act=act)
        want = _check(g, libs, rng)
        zp = int(g.t("y").quant.zero_point[0])
        clamped |= bool(want.min() >= zp > -128)   # RELU-like: nothing below zero point
    assert clamped or act != "RELU"


def test_refused_naming_the_layer():
    rng = np.random.default_rng(0)
    g = opgen.make_transpose_conv(rng, cin=4)
    g.ops[0].name = "up"
    g.t("w").data = g.t("w").data[..., :2]
    g.t("w").shape = g.t("w").data.shape
    with pytest.raises(IRError, match=r"layer 'up' \(TRANSPOSE_CONV\): input has 4 channels, "
                                      r"weights 2 \(grouped"):
        validate(g)
    g = opgen.make_transpose_conv(rng, cout=3, n=1)
    g.ops[0].name = "up"
    g.ops[0].attrs["output_shape"] = [1, 4, 4, 7]
    with pytest.raises(IRError, match=r"layer 'up' \(TRANSPOSE_CONV\): output_shape .* does "
                                      "not fit"):
        validate(g)


def test_tflite_roundtrip_and_versions():
    rng = np.random.default_rng(1)
    for kw, version in ((dict(bias=False, act="NONE"), 2), (dict(bias=True, act="NONE"), 3),
                        (dict(bias=True, act="RELU"), 4)):
        g = opgen.make_transpose_conv(rng, **kw)
        raw = write_tflite(g)
        m = schema.Model.GetRootAsModel(raw, 0)
        oc = m.OperatorCodes(0)
        assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == \
            schema.BuiltinOperator.TRANSPOSE_CONV
        assert oc.Version() == version                  # op_version.cc
        sg = m.Subgraphs(0)
        op = sg.Operators(0)
        assert op.InputsLength() == (4 if kw["bias"] else 3)
        shape_t = sg.Tensors(op.Inputs(0))
        assert shape_t.Type() == schema.TensorType.INT32
        back = read_tflite(raw)
        bop = back.ops[0]
        assert bop.type == "TRANSPOSE_CONV" and len(bop.inputs) == (3 if kw["bias"] else 2)
        assert back.t(bop.inputs[0]).dtype == "int8" and back.t(bop.inputs[1]).is_const
        assert list(bop.attr("output_shape")) == list(g.t("y").shape)
        x = rng.integers(-128, 128, size=g.t("x").shape).astype(np.int8)
        assert np.array_equal(reference.run(back, x)[back.outputs[0]], TflmRunner(raw).run(x)[0])


# --------------------------------------------------------------------------- ONNX

def _nets():
    from torch import nn

    class Decoder(nn.Module):        # conv -> ReLU -> k4 s2 p1 up (fused ReLU) -> k3 s2 p1 op1 up
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 6, 3, padding=1)
            self.up1 = nn.ConvTranspose2d(6, 5, 4, 2, 1)
            self.up2 = nn.ConvTranspose2d(5, 2, 3, 2, 1, output_padding=1)

        def forward(self, x):
            return self.up2(nn.functional.relu(self.up1(nn.functional.relu(self.c(x)))))

    class Audio(nn.Module):          # Conv1d -> ConvTranspose1d (H = 1)
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(4, 6, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose1d(6, 4, 4, 2, 1)

        def forward(self, x):
            return self.up(nn.functional.relu(self.c(x)))

    return [("decoder", Decoder().eval(), (1, 3, 5, 6), ["CONV_2D", "TRANSPOSE_CONV",
                                                         "TRANSPOSE_CONV", "STRIDED_SLICE"]),
            ("audio", Audio().eval(), (1, 4, 16), ["PAD", "CONV_2D", "TRANSPOSE_CONV"]),
            ("plain", nn.ConvTranspose2d(3, 4, (3, 2), (2, 3), (1, 0)).eval(), (1, 3, 4, 5),
             ["TRANSPOSE_CONV"])]


def _ir_in(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x.transpose(0, 2, 1)[:, None]


def _ir_out(y, nd):
    return y.transpose(0, 3, 1, 2) if nd == 4 else y[:, 0].transpose(0, 2, 1)


def test_onnx_convtranspose_float_quantized_and_torch_form():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    from toolchain.patch.torch_graph import GraphModule
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, net, shape, types in _nets():
        g = from_onnx(export_onnx(net, shape))
        assert [op.type for op in g.ops] == types, name
        if name == "decoder":
            assert g.ops[1].attr("fused_activation") == "RELU"
        x = rng.standard_normal((16,) + shape[1:]).astype(np.float32)
        want = net(torch.from_numpy(x)).detach().numpy()
        got = run_float(g, _ir_in(x))[g.outputs[0]]
        np.testing.assert_allclose(_ir_out(got, len(shape)), want, atol=2e-5, err_msg=name)
        q = quantize(g, _ir_in(x))
        # patch training's module (dequantized int8 weights, no activation fake-quant)
        tm = GraphModule(q, fake_quant=False, weight_fake_quant=False)
        y = tm(torch.from_numpy(_ir_in(x))).detach().numpy()
        assert y.shape == got.shape and np.abs(y - got).max() < 0.03 * np.abs(got).max(), name
        tf = TflmRunner(write_tflite(q))
        xq = q.t(q.inputs[0]).quant
        for i in range(4):
            xi = np.clip(np.round(_ir_in(x[i:i + 1]) / xq.scale[0]) + xq.zero_point[0], -128,
                         127).astype(np.int8)
            assert np.array_equal(reference.run(q, xi)[q.outputs[0]], tf.run(xi)[0]), name


@pytest.mark.parametrize("kw,msg", [
    (dict(groups=2), r"ConvTranspose node .*: group=2 is not supported"),
    (dict(dilation=2), r"ConvTranspose node .*: dilations \[2, 2\] are not supported"),
])
def test_onnx_convtranspose_refused_by_name(kw, msg):
    pytest.importorskip("torch")
    from torch import nn
    from converters import from_onnx
    net = nn.ConvTranspose2d(4, 4, 3, 2, 1, **kw).eval()
    with pytest.raises(IRError, match=msg):
        from_onnx(export_onnx(net, (1, 4, 5, 5)))


# --------------------------------------------------------------------------- end to end
@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_decoder_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from torch import nn
    torch.manual_seed(1)
    _, dec, shape, _ = _nets()[0]
    net = nn.Sequential(dec, nn.Upsample(scale_factor=2, mode="nearest")).eval()
    g = from_onnx(export_onnx(net, shape))
    rng = np.random.default_rng(3)
    q = quantize(g, _ir_in(rng.standard_normal((32,) + shape[1:]).astype(np.float32)))
    assert {"TRANSPOSE_CONV", "RESIZE_NEAREST_NEIGHBOR"} <= {op.type for op in q.ops}
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

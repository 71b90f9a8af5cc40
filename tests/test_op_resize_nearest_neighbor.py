"""RESIZE_NEAREST_NEIGHBOR int8: the reference and the C kernel (host, portable and DSP
builds; copies by build-time row/column tables) equal TFLite Micro byte for byte for
every align_corners / half_pixel_centers combination, up- and downsampling by integer
and fractional factors; 3-D inputs and non-constant sizes refused naming the layer;
TFLite round trip (int8 versions 2, 3 with a flag); ONNX Resize over a grid of
coordinate_transformation_mode x nearest_mode x scales/sizes: each accepted case equals
onnxruntime, each refused one names the node (and the plain modes are accepted:
asymmetric+floor, half_pixel+round_prefer_ceil, tf_half_pixel_for_nn+floor,
align_corners+round_prefer_ceil); Upsample (opset 9); PyTorch nn.Upsample through
converters.from_torch, quantized bit-exact in TFLM. On QEMU M4 (portable, DSP) the op runs
in tests/test_op_transpose_conv.py's decoder model (one firmware for both new ops)."""
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import opgen  # noqa: E402
from kernel_host import host_lib, run_op  # noqa: E402

from converters.tflite_reader import read_tflite  # noqa: E402
from converters.tflite_schema import schema  # noqa: E402
from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.ir import IRError, reference  # noqa: E402
from toolchain.ir.validate import validate  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402


@pytest.mark.parametrize("ac,hp", list(itertools.product([False, True], repeat=2)))
def test_every_mode_bitexact(ac, hp):
    libs = [host_lib("portable"), host_lib("dsp")]
    rng = np.random.default_rng([int(ac), int(hp)])
    for _ in range(25):
        g = opgen.make_resize_nearest_neighbor(rng, align_corners=ac, half_pixel_centers=hp)
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)["y"]
        assert np.array_equal(reference.run(g, feeds)["y"], want), g.t("size").data
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want)


def test_refused_naming_the_layer():
    rng = np.random.default_rng(0)
    g = opgen.make_resize_nearest_neighbor(rng, shape=(1, 3, 4, 2), size=[6, 8])
    g.ops[0].name = "up"
    g.t("size").data = None
    with pytest.raises(IRError, match=r"layer 'up' \(RESIZE_NEAREST_NEIGHBOR\): the size must "
                                      "be a constant"):
        validate(g)
    g = opgen.make_resize_nearest_neighbor(rng, shape=(1, 3, 4, 2), size=[6, 8])
    g.ops[0].name = "up"
    g.t("x").shape = (3, 4, 2)
    with pytest.raises(IRError, match=r"layer 'up' \(RESIZE_NEAREST_NEIGHBOR\): 3-D input"):
        validate(g)


def test_tflite_roundtrip_and_versions():
    rng = np.random.default_rng(1)
    for ac, hp, version in ((False, False, 2), (True, False, 3), (False, True, 3)):
        g = opgen.make_resize_nearest_neighbor(rng, align_corners=ac, half_pixel_centers=hp)
        raw = write_tflite(g)
        oc = schema.Model.GetRootAsModel(raw, 0).OperatorCodes(0)
        assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == \
            schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR
        assert oc.Version() == version
        back = read_tflite(raw)
        assert back.ops[0].attrs == dict(align_corners=ac, half_pixel_centers=hp)
        x = rng.integers(-128, 128, size=g.t("x").shape).astype(np.int8)
        assert np.array_equal(reference.run(back, x)[back.outputs[0]], TflmRunner(raw).run(x)[0])


# --------------------------------------------------------------------------- ONNX
CTMS = ["asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
        "align_corners"]
NEAREST = ["floor", "round_prefer_ceil", "round_prefer_floor", "ceil"]
# (input H, W) -> (output H, W): integer up, fractional up, down
GEOMS = [((3, 4), (6, 8)), ((3, 4), (7, 5)), ((8, 6), (4, 3)), ((5, 7), (3, 2))]
# each plain mode maps exactly everywhere
ALWAYS = {("asymmetric", "floor"), ("half_pixel", "round_prefer_ceil"),
          ("pytorch_half_pixel", "round_prefer_ceil"), ("tf_half_pixel_for_nn", "floor"),
          ("align_corners", "round_prefer_ceil")}


def _resize_model(hw, ohw, ctm, nearest, use_scales, opset=13):
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, *hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    if use_scales:
        sc = np.array([1, 1, ohw[0] / hw[0], ohw[1] / hw[1]], np.float32)
        inits.append(numpy_helper.from_array(sc, "scales"))
        ins = ["x", "roi", "scales"]
    else:
        inits.append(numpy_helper.from_array(np.zeros(0, np.float32), "scales"))
        inits.append(numpy_helper.from_array(np.array([1, 2, *ohw], np.int64), "sizes"))
        ins = ["x", "roi", "scales", "sizes"]
    node = helper.make_node("Resize", ins, ["y"], name="rs", mode="nearest",
                            coordinate_transformation_mode=ctm, nearest_mode=nearest)
    m = helper.make_model(helper.make_graph([node], "r", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return m.SerializeToString()


def test_onnx_resize_grid_equals_onnxruntime_or_is_refused_by_name():
    ort = pytest.importorskip("onnxruntime")
    from converters import from_onnx
    from toolchain.ir.float_eval import run_float
    rng = np.random.default_rng(0)
    accepted = set()
    for ctm, nearest, (hw, ohw), use_scales in itertools.product(CTMS, NEAREST, GEOMS,
                                                                  [False, True]):
        if use_scales and any(o % i for o, i in zip(ohw, hw)) and ohw[0] > hw[0]:
            continue         # non-integer up-scales: ONNX floor(in * scale) may differ
        raw = _resize_model(hw, ohw, ctm, nearest, use_scales)
        x = rng.standard_normal((1, 2, *hw)).astype(np.float32)
        want = ort.InferenceSession(raw).run(None, {"x": x})[0]
        try:
            g = from_onnx(raw)
        except IRError as e:
            assert "Resize node 'rs'" in str(e) and "no TFLite" in str(e), str(e)
            assert (ctm, nearest) not in ALWAYS, (ctm, nearest, hw, ohw, str(e))
            continue
        accepted.add((ctm, nearest))
        assert [op.type for op in g.ops] == ["RESIZE_NEAREST_NEIGHBOR"]
        got = run_float(g, x.transpose(0, 2, 3, 1))[g.outputs[0]].transpose(0, 3, 1, 2)
        assert np.array_equal(got, want), (ctm, nearest, hw, ohw, use_scales)
    assert ALWAYS <= accepted


@pytest.mark.parametrize("attrs,msg", [
    (dict(mode="linear"), r"Resize node 'rs': mode=linear is not supported"),
    (dict(mode="nearest", coordinate_transformation_mode="tf_crop_and_resize"),
     r"Resize node 'rs': coordinate_transformation_mode=tf_crop_and_resize has no TFLite"),
])
def test_onnx_resize_refusals(attrs, msg):
    from onnx import TensorProto, helper, numpy_helper
    from converters import from_onnx
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="rs", **attrs)
    m = helper.make_model(helper.make_graph([node], "r", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(IRError, match=msg):
        from_onnx(m.SerializeToString())


def test_onnx_upsample_opset9():
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from converters import from_onnx
    from toolchain.ir.float_eval import run_float
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sc = numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "scales")
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="nearest")
    m = helper.make_model(helper.make_graph([node], "u", [x], [y], [sc]),
                          opset_imports=[helper.make_opsetid("", 9)], ir_version=8)
    raw = m.SerializeToString()
    xv = np.random.default_rng(1).standard_normal((1, 3, 3, 5)).astype(np.float32)
    g = from_onnx(raw)
    got = run_float(g, xv.transpose(0, 2, 3, 1))[g.outputs[0]].transpose(0, 3, 1, 2)
    assert np.array_equal(got, ort.InferenceSession(raw).run(None, {"x": xv})[0])


def _unet_like():
    import torch
    from torch import nn

    class Net(nn.Module):     # encoder conv, nearest upsample x2, skip concat, conv
        def __init__(self):
            super().__init__()
            self.enc = nn.Conv2d(2, 4, 3, stride=2, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.dec = nn.Conv2d(6, 3, 3, padding=1)

        def forward(self, x):
            return self.dec(torch.cat([self.up(torch.relu(self.enc(x))), x], 1))

    return Net().eval()


def test_torch_upsample_through_from_torch_bit_exact_in_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_torch
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    net = _unet_like()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 2, 8, 10)).astype(np.float32)
    g = from_torch(net, x[:1])
    assert "RESIZE_NEAREST_NEIGHBOR" in [op.type for op in g.ops]
    got = run_float(g, x.transpose(0, 2, 3, 1))[g.outputs[0]].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, net(torch.from_numpy(x)).detach().numpy(), atol=2e-5)
    q = quantize(g, x.transpose(0, 2, 3, 1))
    tf = TflmRunner(write_tflite(q))
    for i in range(4):
        xi = rng.integers(-128, 128, size=q.t(q.inputs[0]).shape).astype(np.int8)
        assert np.array_equal(reference.run(q, xi)[q.outputs[0]], tf.run(xi)[0])

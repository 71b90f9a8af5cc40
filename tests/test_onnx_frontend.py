"""ONNX front end + float evaluator: per-op tiny models from torch, float IR vs onnxruntime."""
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from converters import from_onnx, from_torch  # noqa: E402
from toolchain.errors import ConvertError  # noqa: E402
from toolchain.ir.float_eval import run_float  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402


def export(module, shape, fold=True, **kw) -> bytes:
    module.eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), f, dynamo=False, opset_version=17,
                          do_constant_folding=fold, **kw)
    return f.getvalue()


def to_ir_layout(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def check(module, shape, fold=True, n=3, tol=1e-4, seed=0):
    torch.manual_seed(seed)
    for m in module.modules():     # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    data = export(module, shape, fold)
    g = from_onnx(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((n,) + tuple(shape[1:])).astype(np.float32)
    ys = [sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(n)]
    want = np.concatenate([to_ir_layout(y) for y in ys])
    got = run_float(g, to_ir_layout(x))[g.outputs[0]]          # batched run
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
    return g


class Seq(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.fn = fn

    def forward(self, x):
        return self.fn(x, *self.mods)


def ops(g):
    return [o.type for o in g.ops]


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 8, 3, padding=1),                         # SAME
    nn.Conv2d(3, 8, 3, stride=2, padding=1),                # explicit pad -> PAD + VALID
    nn.Conv2d(3, 8, 3),                                     # VALID
    nn.Conv2d(3, 8, 3, padding=2, dilation=2, bias=False),
    nn.Conv2d(3, 8, (1, 3), padding=(0, 1)),
    nn.Conv2d(3, 3, 3, padding=1, groups=3),                # depthwise
    nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3),      # depthwise, multiplier 2
    nn.Conv2d(4, 6, 3, padding=1, groups=2),                # grouped -> block-diagonal conv
], ids=["same", "stride2", "valid", "dilated", "1x3", "dw", "dw_mult2", "grouped"])
def test_conv(conv):
    cin = conv.in_channels
    g = check(nn.Sequential(conv), (1, cin, 9, 9))
    want = "DEPTHWISE_CONV_2D" if conv.groups == cin and conv.groups > 1 else "CONV_2D"
    assert want in ops(g)


def test_conv_bn_relu_folded_and_fused():
    g = check(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
              (1, 2, 6, 6), fold=False)
    assert ops(g) == ["CONV_2D"] and g.ops[0].attrs["fused_activation"] == "RELU"


def test_standalone_bn_and_relu6():
    g = check(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU6()), (1, 3, 5, 5), fold=False)
    assert "MUL" in ops(g) and "ADD" in ops(g)
    assert g.ops[-1].attrs.get("fused_activation") == "RELU6"


def test_hardtanh_clip_relu6():
    g = check(Seq(lambda x, c: torch.clamp(c(x), 0, 6), nn.Conv2d(1, 2, 3)), (1, 1, 5, 5))
    assert g.ops[0].attrs["fused_activation"] == "RELU6"


def test_flatten_fc_permutes_weights():
    # C, H, W all > 1: NHWC flatten order differs from NCHW; the FC weights absorb it
    g = check(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 4 * 5, 7)),
              (1, 2, 4, 5))
    assert ops(g) == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_view_shape_chain_folded():
    # x.view(x.size(0), -1) without constant folding: Shape/Gather/Unsqueeze/Concat chain
    g = check(Seq(lambda x, c, l: l(F.relu(c(x)).view(x.size(0), -1)),
                  nn.Conv2d(1, 2, 3), nn.Linear(2 * 3 * 3, 4)), (1, 1, 5, 5), fold=False)
    assert ops(g) == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_linear_and_matmul():
    w = torch.randn(6, 5)
    check(Seq(lambda x, l: F.relu(l(x)) @ w, nn.Linear(8, 6)), (1, 8))
    g = check(Seq(lambda x: x @ w + torch.arange(5.0)), (1, 6))
    assert ops(g) == ["FULLY_CONNECTED"]          # MatMul + Add folded into one FC with bias


def test_add_mul_sub_div():
    check(Seq(lambda x, c: F.relu(c(x) + x) * 0.5 - 1.0, nn.Conv2d(3, 3, 3, padding=1)),
          (1, 3, 5, 5))
    check(Seq(lambda x: x / torch.tensor([1.0, 2.0, 4.0]).reshape(1, 3, 1, 1) + 2), (1, 3, 4, 4))


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(2), nn.MaxPool2d(3, 2), nn.AvgPool2d(2), nn.AvgPool2d(3, 1, padding=1),
    nn.AvgPool2d(3, 2, padding=1, count_include_pad=True), nn.AdaptiveAvgPool2d(1),
], ids=["max2", "max3s2", "avg2", "avg3pad_incl", "avg3s2pad_incl", "global"])
def test_pools(pool):
    check(nn.Sequential(pool), (1, 3, 7, 7))


def test_maxpool_padding_after_relu():
    g = check(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1)),
              (1, 1, 10, 10))     # 8x8 -> pads (1, 1) are not TFLite SAME (0, 1)
    assert "PAD" in ops(g)


def test_avgpool_exclude_pad_rejected():
    with pytest.raises(IRError, match="count_include_pad"):
        from_onnx(export(nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (1, 2, 6, 6)))


def test_mean_softmax_concat_pad():
    check(Seq(lambda x: x.mean(dim=(2, 3))), (1, 4, 3, 3))
    check(Seq(lambda x, l: torch.softmax(l(x), -1), nn.Linear(5, 4)), (1, 5))
    check(Seq(lambda x, c: torch.cat([c(x), x], 1), nn.Conv2d(2, 3, 1)), (1, 2, 4, 4))
    check(Seq(lambda x: F.pad(x, (1, 2, 0, 1))), (1, 2, 3, 3))
    check(Seq(lambda x: torch.softmax(x, 1)), (1, 4, 2, 2))


def test_identity_dropout_removed():
    g = check(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Identity(), nn.ReLU()), (1, 4))
    assert ops(g) == ["FULLY_CONNECTED"]


def test_from_torch_and_layout_meta():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    g = from_torch(m, torch.randn(1, 1, 6, 6))
    assert g.t(g.inputs[0]).shape == (1, 6, 6, 1)
    assert g.meta["input_layouts"][g.inputs[0]] == "NCHW"
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_float(g, x.transpose(0, 2, 3, 1))[g.outputs[0]],
                               m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


# -- errors --------------------------------------------------------------------------
def test_unsupported_op_names_op_and_node():
    data = export(nn.Sequential(nn.Linear(3, 3), nn.Softplus()), (1, 3))
    with pytest.raises(IRError) as e:
        from_onnx(data)
    msg = str(e.value)
    assert "Softplus" in msg and "node '" in msg and "supported:" in msg and "\n" not in msg


def test_dynamic_shape_names_input():
    data = export(nn.Linear(3, 3), (1, 3), input_names=["features"],
                  dynamic_axes={"features": {0: "batch"}})
    with pytest.raises(IRError, match="input 'features' has a dynamic shape"):
        from_onnx(data)


def test_wrong_dtype_input():
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [1, 3])])
    with pytest.raises(IRError, match="dtype int64"):
        from_onnx(onnx.helper.make_model(g))


def test_corrupt_and_truncated_files(tmp_path):
    good = export(nn.Linear(3, 3), (1, 3))
    for name, data in [("trunc.onnx", good[: len(good) // 2]), ("junk.onnx", b"\x00garbage" * 9)]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ConvertError) as e:
            from_onnx(str(p))
        assert "not a valid ONNX model" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConvertError, match="cannot read"):
        from_onnx(str(tmp_path / "missing.onnx"))

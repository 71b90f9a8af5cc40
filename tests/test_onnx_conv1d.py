"""1-D conv audio nets through the ONNX front end: nn.Conv1d / BatchNorm1d / MaxPool1d /
AvgPool1d / AdaptiveAvg|MaxPool1d(1) / Flatten / Linear, lowered as CONV_2D / pooling with
H = 1 (ONNX (N, C, L) <-> IR (N, 1, L, C)).

Seeded random nets: float IR == onnxruntime and PyTorch (1e-4); int8 (our PTQ, our
.tflite writer): reference interpreter == tflite-micro byte for byte; one net through the
code generator on the host board, bit-exact with tflite-micro; the (N, C, L) input path of
`mcu convert` and HIL data; refusals naming node and op."""
from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from converters import from_onnx  # noqa: E402
from toolchain.ir.float_eval import run_float  # noqa: E402
from toolchain.ir.graph import IRError  # noqa: E402

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")


class Fn(nn.Module):
    def __init__(self, fn, **mods):
        super().__init__()
        self.m = nn.ModuleDict(mods)
        self.fn = fn

    def forward(self, x):
        return self.fn(x, self.m)


def _ncl_block(cin, cout, k, s=1, d=1, pad=None, groups=1):
    pad = d * (k // 2) if pad is None else pad
    return [nn.Conv1d(cin, cout, k, s, padding=pad, dilation=d, groups=groups, bias=False),
            nn.BatchNorm1d(cout), nn.ReLU()]


def _residual(x, m):
    y = m["a"](x)
    return m["head"](torch.relu(y + m["b"](y)))


def _two_branch(x, m):
    y = torch.cat([m["p"](x), m["q"](x)], 1)
    return m["head"](y.mean(-1))


def _waveform(x, m):        # raw (N, L) audio: unsqueeze to (N, 1, L), as torchaudio nets do
    return m["f"](x.unsqueeze(1))


# name -> (module factory, ONNX input shape); each factory is called after manual_seed
NETS = {
    # kernel 3, stride 1, SAME, BN folded, MaxPool1d, global average pool, Linear head
    "k3_same_bn_maxpool_gap": (lambda: nn.Sequential(
        *_ncl_block(10, 16, 3), nn.MaxPool1d(2), *_ncl_block(16, 24, 3),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(24, 6)), (1, 10, 64)),
    # kernel 5, stride 2 (explicit pads -> PAD + VALID), AvgPool1d padded, global max pool
    "k5_s2_avgpool_gmp": (lambda: nn.Sequential(
        nn.Conv1d(8, 12, 5, 2, padding=2), nn.ReLU(), nn.AvgPool1d(3, 2, padding=1),
        nn.Conv1d(12, 12, 5, 2), nn.ReLU6(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
        nn.Linear(12, 4)), (1, 8, 50)),
    # kernel 8 dilated 2 (SAME by its pads), even kernel with padding="same" (auto_pad
    # SAME_UPPER), AdaptiveAvgPool1d(8) (an AveragePool), flatten with C, L > 1 -> FC columns
    # permuted
    "k8_dilated_same_flatten": (lambda: nn.Sequential(
        nn.Conv1d(6, 8, 8, dilation=2, padding=7), nn.ReLU(),
        nn.Conv1d(8, 8, 4, padding="same"), nn.ReLU(), nn.AdaptiveAvgPool1d(8),
        nn.Conv1d(8, 5, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 3, 3)), (1, 6, 32)),
    # depthwise (groups = C, multiplier 1 and 2), VALID, pointwise, BN folded
    "depthwise_separable": (lambda: nn.Sequential(
        nn.Conv1d(12, 12, 5, groups=12), nn.BatchNorm1d(12), nn.ReLU(),
        nn.Conv1d(12, 24, 1), nn.ReLU(), nn.Conv1d(24, 48, 3, 2, 1, groups=24), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(48, 5)), (1, 12, 40)),
    # asymmetric zero padding (causal-like), standalone BatchNorm1d on the input, MaxPool1d
    # with padding after ReLU
    "asym_pad_input_bn": (lambda: nn.Sequential(
        nn.BatchNorm1d(4), nn.ConstantPad1d((3, 1), 0.0), nn.Conv1d(4, 8, 4), nn.ReLU(),
        nn.MaxPool1d(3, 2, padding=1), nn.Conv1d(8, 8, 3, padding=1), nn.Flatten(),
        nn.Linear(8 * 13, 4)), (1, 4, 25)),
    # residual ADD of two NCL tensors, grouped conv, AvgPool1d VALID
    "residual_grouped": (lambda: Fn(
        _residual, a=nn.Sequential(*_ncl_block(6, 8, 3), nn.AvgPool1d(2)),
        b=nn.Sequential(nn.Conv1d(8, 8, 3, padding=1, groups=2), nn.BatchNorm1d(8)),
        head=nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))),
        (1, 6, 36)),
    # two branches concatenated on channels, ReduceMean over L (x.mean(-1)), softmax head
    "concat_mean": (lambda: Fn(
        _two_branch, p=nn.Sequential(*_ncl_block(5, 6, 3)),
        q=nn.Sequential(*_ncl_block(5, 4, 7, d=2)),
        head=nn.Sequential(nn.Linear(10, 4), nn.Softmax(-1))), (1, 5, 30)),
    # raw waveform (N, L): unsqueeze(1) gives C = 1, then strided Conv1d front end
    "waveform_unsqueeze": (lambda: Fn(
        _waveform, f=nn.Sequential(nn.Conv1d(1, 8, 8, 4), nn.ReLU(), nn.MaxPool1d(4),
                                   *_ncl_block(8, 8, 3), nn.AdaptiveAvgPool1d(1),
                                   nn.Flatten(), nn.Linear(8, 3))), (1, 256)),
}
NAMES = sorted(NETS)


def randomize_bn(module, seed):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)


def export(module, shape, **kw) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(*shape),), f, dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          **kw)
    return f.getvalue()


def to_ir(x):
    """ONNX/PyTorch layout -> the IR's: (N, C, L) -> (N, 1, L, C); others as they are."""
    return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None]) if x.ndim == 3 else x


def net(name, seed=0):
    fac, shape = NETS[name]
    torch.manual_seed(seed)
    m = fac().eval()
    randomize_bn(m, seed)
    return m, shape


@pytest.fixture(scope="module")
def converted():
    """name -> (module, onnx bytes, float IR graph, NCL inputs, IR-layout inputs)."""
    out = {}
    for i, name in enumerate(NAMES):
        m, shape = net(name, seed=i)
        data = export(m, shape)
        g = from_onnx(data)
        x = np.random.default_rng(i).standard_normal((32,) + shape[1:]).astype(np.float32)
        out[name] = (m, data, g, x, to_ir(x))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_float_ir_equals_onnxruntime_and_torch(name, converted):
    m, data, g, x, xin = converted[name]
    if len(NETS[name][1]) == 3:
        assert g.meta["input_layouts"][g.inputs[0]] == "NCL"
        n, c, length = NETS[name][1]
        assert g.t(g.inputs[0]).shape == (n, 1, length, c)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(8)])
    got = run_float(g, xin[:8])[g.outputs[0]]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(got, m(torch.from_numpy(x[:8])).numpy(), atol=1e-4,
                                   rtol=1e-4)


def test_lowering_uses_2d_ops_with_h_1(converted):
    kinds = set()
    for name in NAMES:
        g = converted[name][2]
        kinds |= {op.type for op in g.ops}
        for op in g.ops:
            if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                assert g.t(op.inputs[1]).shape[1] == 1, (name, op.name)    # 1 x K kernel
                assert op.attrs["stride_h"] == 1 and op.attrs["dilation_h"] == 1
            if op.type in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
                assert op.attrs["filter_h"] == 1 and op.attrs["stride_h"] == 1
            for t in op.outputs:
                if len(g.t(t).shape) == 4:
                    assert g.t(t).shape[1] == 1, (name, op.name)
        if name == "k3_same_bn_maxpool_gap":       # BN folded, ReLU fused
            assert [o.type for o in g.ops] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D",
                                               "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD",
            "FULLY_CONNECTED", "ADD", "MUL", "CONCATENATION", "SOFTMAX"} <= kinds
    dw = [op for op in converted["depthwise_separable"][2].ops if op.type == "DEPTHWISE_CONV_2D"]
    assert [op.attrs["depth_multiplier"] for op in dw] == [1, 2]
    assert dw[1].attrs["stride_w"] == 2


@pytest.fixture(scope="module")
def quantized(converted):
    from converters.quantize import quantize
    from converters.tflite_writer import write_tflite
    out = {}
    for name in NAMES:
        g, xin = converted[name][2], converted[name][4]
        q = quantize(g, xin)
        out[name] = (q, write_tflite(q))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_int8_reference_bit_exact_with_tflm(name, converted, quantized):
    from converters.quantize import quantize_input
    from toolchain.ir import reference
    from toolchain.tflm_oracle import TflmRunner
    q, tfl = quantized[name]
    tf = TflmRunner(tfl)
    xin = converted[name][4]
    rng = np.random.default_rng(7)
    shape = q.t(q.inputs[0]).shape
    inputs = [quantize_input(q, xin[i:i + 1]) for i in range(3)] + \
        [rng.integers(-128, 128, size=shape).astype(np.int8) for _ in range(2)]
    for x in inputs:
        want = tf.run(x)[0].reshape(-1)
        got = reference.run(q, {q.inputs[0]: x})[q.outputs[0]].reshape(-1)
        assert got.dtype == np.int8 and got.tolist() == want.tolist(), name


def test_int8_close_to_float(converted, quantized):
    from converters.quantize import compare
    for name in ("k3_same_bn_maxpool_gap", "depthwise_separable"):
        g, xin = converted[name][2], converted[name][4]
        r = compare(g, quantized[name][0], xin)
        ref = float(np.abs(run_float(g, xin)[g.outputs[0]]).max())
        assert r["max_abs_error"] < 0.1 * ref, (name, r)


@needs_cc
def test_codegen_host_bit_exact_with_tflm(converted, quantized, tmp_path):
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    from toolchain.tflm_oracle import TflmRunner
    names = ["depthwise_separable", "asym_pad_input_bn"]
    gens = {n: generate(quantized[n][0], tmp_path / n, kernels="portable", prefix=f"c1d{i}_")
            for i, n in enumerate(names)}
    lib = HostModels(list(gens.values()), "portable", tmp_path)
    rng = np.random.default_rng(3)
    for n in names:
        q, tfl = quantized[n]
        tf = TflmRunner(tfl)
        for _ in range(3):
            x = rng.integers(-128, 128, size=q.t(q.inputs[0]).shape).astype(np.int8)
            got = lib.run(gens[n], [x])[0].reshape(-1)
            assert got.tolist() == tf.run(x)[0].reshape(-1).tolist(), n


# -- the (N, C, L) input path of mcu convert and HIL data ----------------------------------
def test_convert_takes_ncl_calibration(converted, tmp_path):
    from converters.convert import convert
    m, data, g, x, xin = converted["k3_same_bn_maxpool_gap"]
    (tmp_path / "audio.onnx").write_bytes(data)
    np.savez(tmp_path / "calib.npz", x=x)
    r = convert(tmp_path / "audio.onnx", tmp_path / "calib.npz", out_dir=tmp_path / "out",
                log=lambda *a: None)
    assert r["calibration"]["layout"] == "NCL (transposed to N,1,L,C)"
    assert r["inputs"][0]["shape"] == [1, 1, 64, 10]
    assert r["tflm_check"]["bit_exact"] and r["tflm_check"]["checked"] > 0
    from toolchain.errors import ConvertError
    np.savez(tmp_path / "bad.npz", x=xin)            # already (N, 1, L, C): refused, one line
    with pytest.raises(ConvertError, match=r"expected \(N, 10, 64\) \(NCL"):
        convert(tmp_path / "audio.onnx", tmp_path / "bad.npz", out_dir=tmp_path / "o2",
                log=lambda *a: None)


def test_hil_data_takes_ncl(quantized, converted):
    from toolchain.hil.data import DataError, prepare
    q = quantized["k3_same_bn_maxpool_gap"][0]
    t = q.t(q.inputs[0])
    x = converted["k3_same_bn_maxpool_gap"][3][:4]
    s, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    for layout in ("auto", "nchw", "ncl"):
        d = prepare(x, None, t.shape[1:], s, zp, layout=layout)
        assert d.xq.shape == (4, 1, 64, 10) and d.layout_note.startswith("NCL")
        from converters.quantize import quantize_input
        assert np.array_equal(d.xq, quantize_input(q, to_ir(x)))
    d = prepare(to_ir(x), None, t.shape[1:], s, zp)          # NHWC as it is
    assert d.layout_note == "NHWC (as the model's input)"
    with pytest.raises(DataError, match=r"\(N, 10, 64\) \(NCL\)"):
        prepare(x[:, :5], None, t.shape[1:], s, zp)
    with pytest.raises(DataError, match="NHWC"):
        prepare(x, None, t.shape[1:], s, zp, layout="nhwc")


# -- refusals: one line, naming node and op --------------------------------------------------
@pytest.mark.parametrize("module,shape,words", [
    (nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"), (1, 4, 16),
     ["Pad node", "mode reflect"]),
    (nn.Conv1d(4, 4, 3, padding=1, padding_mode="replicate"), (1, 4, 16),
     ["Pad node", "mode edge"]),
    (nn.Sequential(nn.Conv1d(4, 6, 3), nn.Linear(14, 3)), (1, 4, 16),
     ["MatMul node", "(N, C, L)", "flatten first"]),
    (Fn(lambda x, m: m["c"](x.reshape(1, 4, 8)), c=nn.Conv1d(4, 4, 3)), (1, 32),
     ["Conv node", "transpose"]),
    (nn.MaxPool1d(3, 2, padding=1), (1, 4, 16), ["MaxPool node", "may be negative"]),
    (nn.AvgPool1d(3, 2, padding=1, count_include_pad=False), (1, 4, 16),
     ["AveragePool node", "count_include_pad"]),
    (nn.MaxPool1d(3, 2, ceil_mode=True), (1, 4, 16), ["MaxPool node", "ceil_mode"]),
    (nn.MaxPool1d(3, 1, dilation=2), (1, 4, 16), ["MaxPool node", "dilated pooling"]),
    (Fn(lambda x, m: x.amax(-1)), (1, 4, 16), ["unsupported op ReduceMax"]),
], ids=["reflect", "replicate", "linear_on_ncl", "reshape_then_conv",
        "maxpool_pad_signed", "avgpool_exclude_pad", "ceil_mode", "dilated_pool",
        "reducemax"])
def test_refusals_name_node_and_op(module, shape, words):
    with pytest.raises(IRError) as e:
        from_onnx(export(module, shape))
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_ncl_graph_output_and_softmax_over_channels():
    m = Fn(lambda x, m: torch.softmax(m["c"](x), 1), c=nn.Conv1d(3, 5, 3, padding=1))
    torch.manual_seed(0)
    data = export(m, (1, 3, 12))
    g = from_onnx(data)
    assert g.meta["output_layouts"][g.outputs[0]] == "N,1,L,C (ONNX NCL)"
    x = np.random.default_rng(0).standard_normal((2, 3, 12)).astype(np.float32)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(2)])
    np.testing.assert_allclose(run_float(g, to_ir(x))[g.outputs[0]], to_ir(want), atol=1e-5)


def test_conv1d_written_as_conv2d_unsqueeze_roundtrip():
    """x.unsqueeze(2) -> Conv2d (1 x K) -> squeeze(2): NCL and NCHW with H = 1 share the IR."""
    m = Fn(lambda x, m: m["d"](m["c"](x.unsqueeze(2)).squeeze(2)),
           c=nn.Conv2d(4, 6, (1, 3), padding=(0, 1)), d=nn.Conv1d(6, 2, 3))
    torch.manual_seed(1)
    data = export(m, (1, 4, 10))
    g = from_onnx(data)
    x = np.random.default_rng(1).standard_normal((2, 4, 10)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(g, to_ir(x))[g.outputs[0]], to_ir(want), atol=1e-5)


@pytest.mark.parametrize("group", [1, 6], ids=["conv", "depthwise"])
def test_batchnorm_node_folded_into_conv1d(group):
    """An ONNX graph that keeps BatchNormalization after a 1-D Conv (as exporters without
    constant folding do): folded into the conv weights, the ReLU fused."""
    import onnx
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(5)
    c, o, k, length = 6, 6, 3, 20
    w = rng.standard_normal((o, c // group, k)).astype(np.float32)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", w), ("b", rng.standard_normal(o)), ("gamma", rng.random(o) + 0.5),
        ("beta", rng.standard_normal(o)), ("mean", rng.standard_normal(o) * 0.3),
        ("var", rng.random(o) + 0.5)]]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], "conv1d", kernel_shape=[k],
                              pads=[1, 1], strides=[1], group=group),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"],
                              ["bn"], "bn1d", epsilon=1e-5),
             helper.make_node("Relu", ["bn"], ["y"], "relu")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, c, length])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, o, length])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    g = from_onnx(model)
    assert [op.type for op in g.ops] == ["DEPTHWISE_CONV_2D" if group > 1 else "CONV_2D"]
    assert g.ops[0].attrs["fused_activation"] == "RELU"
    x = rng.standard_normal((3, c, length)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(run_float(g, to_ir(x))[g.outputs[0]], to_ir(want), atol=1e-4,
                               rtol=1e-4)

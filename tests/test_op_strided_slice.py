"""STRIDED_SLICE int8: the reference (TFLM's StartForAxis / StopForAxis: negative and
out-of-range bounds, negative strides, begin / end / shrink-axis masks) and the C
kernel (host, portable and DSP builds: a strided copy from the first element) equal
TFLite Micro byte for byte on random 1-D to 4-D slices; ellipsis / new-axis masks
(TFLM ignores them), offset, 5-D (TFLM: "input dim should not exceed 4"), empty
slices and non-constant bounds are refused naming the layer; TFLite round trip
(StridedSliceOptions, int8 version 2); ONNX Slice (channel, time, spatial, steps,
torch.flip's backward slice, INT64_MAX ends) maps onto IR axes, equals PyTorch in
float and runs in TFLM equal to our reference; bit-exact on QEMU M4 (portable, DSP)."""
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
    got = reference.run(g, feeds)["y"]
    assert got.shape == want.shape and np.array_equal(got, want), g.ops[0].attrs
    for lib in libs:
        assert np.array_equal(run_op(lib, g, g.ops[0], feeds).reshape(want.shape), want)


def test_random_slices_bitexact():
    libs = [host_lib("portable"), host_lib("dsp")]
    for seed in range(150):
        _check(opgen.make_strided_slice(np.random.default_rng([9, seed])), libs,
               np.random.default_rng(seed))


@pytest.mark.parametrize("case", [
    dict(begin=[0, 5, 0, 0], end=[1, 0, 6, 4], strides=[1, -1, 1, 1], masks=dict(end_mask=2)),
    dict(begin=[0, -1, 0, 0], end=[1, 0, 6, 4], strides=[1, 1, 1, 1],
         masks=dict(shrink_axis_mask=2)),                      # shrink with a negative index
    dict(begin=[0, 0, -100, 1], end=[1, 6, 100, 4], strides=[1, 2, 3, 2], masks={}),
    dict(begin=[0, 3, 5, 3], end=[1, -7, -100, 0], strides=[1, -2, -2, -1],
         masks=dict(begin_mask=4)),
    dict(begin=[0, 0, 0, 0], end=[0, 0, 0, 0], strides=[1, 1, 1, 1],
         masks=dict(begin_mask=15, end_mask=15)),             # everything
])
def test_edge_slices_bitexact(case):
    rng = np.random.default_rng(4)
    g = opgen.make_strided_slice(rng, shape=(1, 6, 6, 4), **case)
    _check(g, [host_lib("portable"), host_lib("dsp")], rng)


def test_refused_naming_the_layer():
    rng = np.random.default_rng(0)
    g = opgen.make_strided_slice(rng, shape=(2, 3), begin=[0, 0], end=[2, 3], strides=[1, 1],
                                 masks={})
    g.ops[0].name = "sl"
    for attr, pat in (("ellipsis_mask", "ellipsis_mask is not supported"),
                      ("new_axis_mask", "new_axis_mask is not supported"),
                      ("offset", "offset=True")):
        g.ops[0].attrs[attr] = 1
        with pytest.raises(IRError, match=r"layer 'sl' \(STRIDED_SLICE\): " + pat):
            validate(g)
        g.ops[0].attrs[attr] = 0
    g.t("end").data = np.asarray([2, 0], np.int32)
    with pytest.raises(IRError, match=r"layer 'sl' \(STRIDED_SLICE\): empty slice on axis 1"):
        validate(g)
    g.t("end").data = None
    with pytest.raises(IRError, match=r"layer 'sl' \(STRIDED_SLICE\): end must be a constant"):
        validate(g)
    g5 = opgen.make_transpose(rng, shape=(1, 2, 1, 2, 2), perm=[0, 1, 2, 3, 4])
    from toolchain.ir.graph import Op, Tensor
    for n in ("b5", "e5", "s5"):
        g5.add_tensor(Tensor(n, (5,), "int32", data=np.asarray([0, 0, 0, 0, 0] if n == "b5"
                                                               else [1, 2, 1, 2, 2] if n == "e5"
                                                               else [1] * 5, np.int32)))
    g5.ops[0] = Op("STRIDED_SLICE", ["x", "b5", "e5", "s5"], ["y"], {}, name="s5d")
    with pytest.raises(IRError, match=r"layer 's5d' \(STRIDED_SLICE\): 5-D input"):
        validate(g5)


def test_tflite_roundtrip_options_and_version():
    rng = np.random.default_rng(2)
    g = opgen.make_strided_slice(rng, shape=(1, 6, 6, 4), begin=[0, -1, 0, 1],
                                 end=[1, 0, 6, 4], strides=[1, 1, 2, 1],
                                 masks=dict(shrink_axis_mask=2, begin_mask=4, end_mask=8))
    raw = write_tflite(g)
    oc = schema.Model.GetRootAsModel(raw, 0).OperatorCodes(0)
    assert max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == \
        schema.BuiltinOperator.STRIDED_SLICE
    assert oc.Version() == 2                            # op_version.cc: int8
    back = read_tflite(raw)
    assert [(o.type, o.attrs) for o in back.ops] == [("STRIDED_SLICE", g.ops[0].attrs)]
    assert len(back.ops[0].inputs) == 4
    x = rng.integers(-128, 128, size=(1, 6, 6, 4)).astype(np.int8)
    assert np.array_equal(reference.run(back, x)[back.outputs[0]].reshape(-1),
                          TflmRunner(raw).run(x)[0].reshape(-1))


# --------------------------------------------------------------------------- ONNX

def _nets():
    import torch
    from torch import nn

    class Image(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(6, 4, 1)

        def forward(self, x):
            y = self.c(x)
            a = y[:, 2:5]                                  # channels (IR axis 3)
            b = torch.flip(y[:, 5:], dims=[3])             # backward slice on W
            z = torch.cat([a, b], dim=1)[:, :, 1::2, :-1]  # H step 2, W up to -1
            return self.c2(torch.relu(z))

    class Audio(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(4, 6, 3)

        def forward(self, x):                              # (N, C, L)
            return self.c(x)[:, 1:, 2:-1]

    class Same(nn.Module):
        def forward(self, x):                              # (N, A, B) in ONNX order
            return x[:, 1:3, ::3] * 2.0

    return [("image", Image().eval(), (1, 3, 7, 6)), ("audio", Audio().eval(), (1, 4, 12)),
            ("same", Same().eval(), (1, 4, 9))]


def _ir(x, ncl=False):
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1)
    return x.transpose(0, 2, 1)[:, None] if ncl else x


def _onnx(y, ncl=False):
    if y.ndim == 4 and ncl:
        return y[:, 0].transpose(0, 2, 1)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def test_onnx_slice_maps_onto_ir_axes_float_and_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, net, shape in _nets():
        g = from_onnx(export_onnx(net, shape))
        assert "STRIDED_SLICE" in {op.type for op in g.ops}, name
        ncl = name == "audio"
        x = rng.standard_normal((32,) + shape[1:]).astype(np.float32)
        want = net(torch.from_numpy(x)).detach().numpy()
        got = _onnx(run_float(g, _ir(x, ncl))[g.outputs[0]], ncl)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        q = quantize(g, _ir(x, ncl))
        tf = TflmRunner(write_tflite(q))
        xq = q.t(q.inputs[0]).quant
        for i in range(8):
            xi = np.clip(np.round(_ir(x[i:i + 1], ncl) / xq.scale[0]) + xq.zero_point[0], -128,
                         127).astype(np.int8)
            assert np.array_equal(reference.run(q, xi)[q.outputs[0]].reshape(-1),
                                  tf.run(xi)[0].reshape(-1)), name


def test_onnx_circular_conv1d_now_converts():
    """Circular padding exports as Slice + Concat: it used to be refused ("unsupported
    op Slice", tests/test_onnx_conv1d.py); now it runs, equal to PyTorch."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from converters import from_onnx
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    net = nn.Conv1d(4, 4, 3, padding=1, padding_mode="circular").eval()
    g = from_onnx(export_onnx(net, (1, 4, 16)))
    assert {"STRIDED_SLICE", "CONCATENATION", "CONV_2D"} <= {op.type for op in g.ops}
    x = np.random.default_rng(0).standard_normal((8, 4, 16)).astype(np.float32)
    np.testing.assert_allclose(_onnx(run_float(g, _ir(x, True))[g.outputs[0]], True),
                               net(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_slice_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    torch.manual_seed(1)
    _, net, shape = _nets()[0]
    g = from_onnx(export_onnx(net, shape))
    rng = np.random.default_rng(3)
    q = quantize(g, _ir(rng.standard_normal((32,) + shape[1:]).astype(np.float32)))
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

"""Post-training int8 quantization: TFLite int8 spec, accuracy vs float, bit-exact with TFLM."""
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from converters import from_torch  # noqa: E402
from converters.quantize import (asymmetric_params, compare, dequantize_output,  # noqa: E402
                                 fuse_activations, quantize, quantize_input,
                                 symmetric_weights)
from toolchain.ir import reference  # noqa: E402
from toolchain.ir.graph import Graph, IRError, Op, Tensor  # noqa: E402


@functools.lru_cache(maxsize=1)
def digits():
    from toolchain.examples.digits import train_digits_cnn
    model, data = train_digits_cnn(seed=0)
    x_tr, y_tr, x_te, y_te = data
    g = from_torch(model, torch.from_numpy(x_tr[:1]))
    nhwc = (x_tr.transpose(0, 2, 3, 1), y_tr, x_te.transpose(0, 2, 3, 1), y_te)
    return model, g, nhwc


@functools.lru_cache(maxsize=4)
def digits_q(method):
    _, g, (x_tr, _, _, _) = digits()
    return quantize(g, x_tr[:500], method=method)


def tflm_outputs(qg, xq):
    from toolchain.tflm_oracle import TflmRunner
    from converters.tflite_writer import write_tflite
    r = TflmRunner(write_tflite(qg))
    return np.concatenate([np.asarray(r.run([xq[i:i + 1]])[0]).reshape(1, -1)
                           for i in range(len(xq))])


def ref_outputs(qg, xq):
    return np.concatenate([reference.run(qg, {qg.inputs[0]: xq[i:i + 1]})[qg.outputs[0]]
                           .reshape(1, -1) for i in range(len(xq))])


# -- parameters -------------------------------------------------------------------------
def test_asymmetric_params_tflite_rule():
    s, zp = asymmetric_params(0.0, 6.0)                       # ReLU6-like: zp at the bottom
    assert zp == -128 and np.isclose(s, np.float32(6 / 255))
    s, zp = asymmetric_params(-1.0, 1.0)
    assert np.isclose(s, np.float32(2 / 255)) and zp == -1    # std::round(-128 + 127.4999)
    s, zp = asymmetric_params(0.5, 2.0)                        # range widened to include 0
    assert zp == -128 and np.isclose(s, np.float32(2 / 255))
    s, zp = asymmetric_params(-3.0, -1.0)
    assert zp == 127
    assert asymmetric_params(0.0, 0.0) == (1.0, 0)


def test_symmetric_weights_per_channel():
    w = np.array([[[[1.0, -2.0]]], [[[0.0, 0.0]]], [[[0.5, 0.25]]]])    # OHWI, O=3
    q, s = symmetric_weights(w, 0)
    assert q.dtype == np.int8 and s.shape == (3,)
    assert q[0, 0, 0, 1] == -127 and q[2, 0, 0, 0] == 127 and s[1] == 1.0
    assert np.abs(q).max() <= 127


# -- the digits CNN ---------------------------------------------------------------------
def test_digits_spec():
    _, g, _ = digits()
    q = digits_q("minmax")
    assert q.is_quantized and g.tensors[g.inputs[0]].dtype == "float32"   # float graph intact
    for op in q.ops:
        ins = [q.t(i) for i in op.inputs if i]
        out = q.t(op.outputs[0])
        assert out.dtype == "int8" and out.quant.scale.size == 1
        assert -128 <= out.quant.zero_point[0] <= 127
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, b = ins[1], ins[2]
            assert w.dtype == "int8" and not w.quant.zero_point.any()
            axis = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}.get(op.type)
            assert w.quant.axis == axis
            if axis is not None:
                assert w.quant.scale.size == w.shape[axis]
            assert b.dtype == "int32" and not b.quant.zero_point.any()
            np.testing.assert_allclose(b.quant.scale, ins[0].quant.scale[0] * w.quant.scale,
                                       rtol=1e-6)
        if op.type in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE"):
            assert ins[0].quant.scale[0] == out.quant.scale[0]
            assert ins[0].quant.zero_point[0] == out.quant.zero_point[0]
        if op.type == "SOFTMAX":
            assert out.quant.scale[0] == 1 / 256 and out.quant.zero_point[0] == -128
        if op.attrs.get("fused_activation") in ("RELU", "RELU6"):
            assert out.quant.zero_point[0] == -128          # range [0, max] after the clamp
        if op.attrs.get("fused_activation") == "RELU6":
            assert out.quant.scale[0] * 255 <= 6 + 1e-6
    meta = q.meta["quantization"]
    assert meta["method"] == "minmax" and set(meta["inputs"]) == set(q.inputs)


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_digits_int8_accuracy_reference(method):
    model, g, (_, _, x_te, y_te) = digits()
    q = digits_q(method)
    r = compare(g, q, x_te, y_te)
    assert r["float_accuracy"] > 0.95
    tol = 0.01 if method == "minmax" else 0.02
    assert r["int8_accuracy"] >= r["float_accuracy"] - tol, r
    assert r["top1_agreement"] >= 0.98, r


def test_digits_tflm_bit_exact_and_accuracy():
    _, g, (_, _, x_te, y_te) = digits()
    q = digits_q("minmax")
    xq = quantize_input(q, x_te)
    yt = tflm_outputs(q, xq)
    yr = ref_outputs(q, xq)
    assert yt.dtype == np.int8 and np.array_equal(yt, yr)       # bytes equal
    from toolchain.ir.float_eval import run_float
    acc_f = (run_float(g, x_te)[g.outputs[0]].argmax(1) == y_te).mean()
    acc_t = (dequantize_output(q, yt).argmax(1) == y_te).mean()
    assert acc_t >= acc_f - 0.01, (acc_f, acc_t)


# -- other op families ----------------------------------------------------------------
class Mixed(nn.Module):
    """Residual ADD, constant MUL, CONCAT, PAD, explicit-pad stride-2 conv, global pool."""
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(16, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a) + a)
        c = torch.cat([b, a * 0.5], 1)
        d = nn.functional.relu6(self.c3(nn.functional.pad(c, (1, 1, 1, 1))))
        return self.fc(nn.functional.adaptive_avg_pool2d(d, 1).flatten(1))


def test_mixed_model_tflm_bit_exact():
    torch.manual_seed(0)
    m = Mixed().eval()
    g = from_torch(m, torch.randn(1, 3, 8, 8))
    types = {o.type for o in g.ops}
    assert {"ADD", "MUL", "CONCATENATION", "PAD", "AVERAGE_POOL_2D"} <= types
    x = np.random.default_rng(0).standard_normal((64, 8, 8, 3)).astype(np.float32)
    for method in ("minmax", "mse"):
        q = quantize(g, x, method=method)
        for op in q.ops:        # same quantization through CONCATENATION inputs/outputs
            if op.type == "CONCATENATION":
                scales = {float(q.t(n).quant.scale[0]) for n in op.inputs + op.outputs}
                assert len(scales) == 1
        xq = quantize_input(q, x[:12])
        assert np.array_equal(tflm_outputs(q, xq), ref_outputs(q, xq))
        r = compare(g, q, x)
        assert r["max_abs_error"] < 0.1 * r["output_range"], r


def test_fuse_activations_transform():
    g = Graph()
    g.add_tensor(Tensor("x", (1, 4)))
    g.add_tensor(Tensor("w", (3, 4), data=np.ones((3, 4), np.float32)))
    g.add_tensor(Tensor("h", (1, 3)))
    g.add_tensor(Tensor("y", (1, 3)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_op(Op("FULLY_CONNECTED", ["x", "w"], ["h"]))
    g.add_op(Op("RELU6", ["h"], ["y"]))
    f = fuse_activations(g)
    assert [o.type for o in f.ops] == ["FULLY_CONNECTED"] and f.ops[0].outputs == ["y"]
    assert f.ops[0].attrs["fused_activation"] == "RELU6" and len(g.ops) == 2


def test_bad_calibration():
    _, g, _ = digits()
    with pytest.raises(IRError, match=r"expected \(N, 8, 8, 1\)"):
        quantize(g, np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(IRError, match="unknown calibration method"):
        quantize(g, np.zeros((4, 8, 8, 1), np.float32), method="kl")
    with pytest.raises(IRError, match="NaN"):
        quantize(g, np.full((4, 8, 8, 1), np.nan, np.float32))

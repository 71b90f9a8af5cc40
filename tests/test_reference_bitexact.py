"""The numpy reference interpreter equals TFLite Micro byte for byte: every
supported op on randomized single-op graphs (written by our writer, run in
tflite-micro) and both MLPerf Tiny models on random inputs, intermediates included."""
import zlib
from pathlib import Path

import numpy as np
import pytest

import opgen
from converters.tflite_reader import read_tflite
from toolchain.ir import IRError, reference
from toolchain.ir.graph import Quant
from toolchain.tflm_oracle import TflmRunner, run_graph

MODELS = Path("/work/shared/models/mlperf-tiny")
CASES_PER_OP = 100


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("op_type", sorted(opgen.OP_BUILDERS))
def test_single_op_bitexact(op_type):
    for seed in range(CASES_PER_OP):
        rng = np.random.default_rng([zlib.crc32(op_type.encode()), seed])
        g = opgen.make_random(rng, op_type)
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)
        got = reference.run(g, feeds)
        for n in g.outputs:
            assert _same(got[n], want[n].astype(got[n].dtype).reshape(got[n].shape)) and \
                got[n].dtype == want[n].dtype, \
                f"{op_type} seed {seed}: {g.ops[0].attrs} shapes {[g.t(i).shape for i in g.inputs]}"


@pytest.mark.parametrize("op_type", ["CONV_2D", "DEPTHWISE_CONV_2D"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_edge_geometry(op_type, padding):
    """Strides larger than the kernel, dilation 2, 1x1 images, channel counts not a
    multiple of 4, per-tensor weights."""
    rng = np.random.default_rng(7)
    combos = [dict(stride=3, kh=1, kw=2), dict(dilation=2, kh=3, kw=3, h=7, w=5),
              dict(h=1, w=1, kh=1, kw=1), dict(per_channel=False), dict(stride=2, kh=4, kw=4)]
    for kw in combos:
        if op_type == "CONV_2D":
            g = opgen.make_conv2d(rng, padding=padding, cin=5, cout=7, **kw)
        else:
            g = opgen.make_depthwise_conv2d(rng, padding=padding, cin=5, multiplier=2, **kw)
        feeds = opgen.random_feeds(rng, g)
        assert _same(reference.run(g, feeds)["y"], run_graph(g, feeds)["y"]), kw


@pytest.mark.parametrize("fname", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_mlperf_models_bitexact_with_intermediates(fname):
    path = MODELS / fname
    g = read_tflite(path)
    tflm = TflmRunner(path.read_bytes(), preserve_all_tensors=True)
    rng = np.random.default_rng(11)
    shape = g.t(g.inputs[0]).shape
    for k in range(24):
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        if k == 0:
            x[:] = -128
        ours = reference.run(g, x, keep_intermediates=True)
        outs = tflm.run(x)              # sets the input before every invoke
        assert _same(ours[g.outputs[0]], outs[0].reshape(shape[:0] + ours[g.outputs[0]].shape))
        for op in g.ops:
            n = op.outputs[0]
            want = tflm.tensor(g.t(n).meta["tflite_index"]).reshape(ours[n].shape)
            assert _same(ours[n], want), f"{fname} input {k}: layer {op.name} ({op.type})"


def test_run_api_and_errors():
    rng = np.random.default_rng(5)
    g = opgen.make_conv2d(rng)
    x = opgen.random_feeds(rng, g)["x"]
    a = reference.run(g, x)
    b = reference.run(g, {"x": x}, keep_intermediates=True)
    assert set(a) == {"y"} and set(b) == {"x", "y"} and _same(a["y"], b["y"])
    with pytest.raises(IRError, match="no value fed"):
        reference.run(g, {})
    with pytest.raises(IRError, match="expected"):
        reference.run(g, np.zeros((1, 1, 1, 1, 99), np.int8))
    assert "CONV_2D" in reference.SUPPORTED_OPS and "MEAN" in reference.SUPPORTED_OPS
    g.ops[0].type = "LOG_SOFTMAX"
    with pytest.raises(IRError, match="unsupported op LOG_SOFTMAX in layer"):
        reference.run(g, x)


def test_concatenation_with_different_scales_is_rejected():
    rng = np.random.default_rng(6)
    g = opgen.make_concatenation(rng, n_inputs=2)
    g.t("x1").quant = Quant.per_tensor(0.5, 3)
    with pytest.raises(IRError, match="CONCATENATION.*requantize"):
        reference.run(g, opgen.random_feeds(rng, g))


def test_mlperf_reference_speed():
    import time
    g = read_tflite(MODELS / "pretrainedResnet_quant.tflite")
    x = np.zeros(g.t(g.inputs[0]).shape, np.int8)
    t = time.perf_counter()
    for _ in range(5):
        reference.run(g, x)
    assert (time.perf_counter() - t) / 5 < 0.5

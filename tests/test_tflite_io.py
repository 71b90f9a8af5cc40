"""TFLite reader and writer: MLPerf round trip, float graphs, errors."""
from pathlib import Path

import numpy as np
import pytest

import opgen
from converters.tflite_reader import read_tflite
from converters.tflite_schema import schema
from converters.tflite_writer import write_tflite
from toolchain.errors import ConvertError
from toolchain.ir import IRError, ops, validate
from toolchain.ir.graph import Graph, Op, Quant, Tensor
from toolchain.tflm_oracle import TflmRunner

MODELS = Path("/work/shared/models/mlperf-tiny")
FILES = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"]


@pytest.mark.parametrize("fname", FILES)
def test_read_mlperf(fname):
    g = read_tflite(MODELS / fname)
    validate(g)
    assert g.is_quantized
    conv = next(op for op in g.ops if op.type == "CONV_2D")
    w = g.t(conv.inputs[1])
    assert w.dtype == "int8" and w.quant.axis == 0 and w.quant.scale.size == w.shape[0]
    assert g.t(conv.inputs[2]).dtype == "int32"
    rs = next(op for op in g.ops if op.type == "RESHAPE")
    assert len(rs.inputs) == 1 and rs.attrs["new_shape"] == [1, 64]
    sm = g.t(g.outputs[0])
    assert sm.quant.zero_point[0] == -128 and np.float32(sm.quant.scale[0]) == np.float32(1 / 256)


@pytest.mark.parametrize("fname", FILES)
def test_round_trip_mlperf_identical_outputs(fname):
    raw = (MODELS / fname).read_bytes()
    g = read_tflite(raw)
    out = write_tflite(g)
    g2 = read_tflite(out)
    assert g2.model_hash() == g.model_hash()
    r1, r2 = TflmRunner(raw), TflmRunner(out)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(-128, 128, size=g.t(g.inputs[0]).shape).astype(np.int8)
        assert r1.run(x)[0].tobytes() == r2.run(x)[0].tobytes()


def test_single_op_graphs_round_trip_through_reader():
    for op_type in sorted(opgen.OP_BUILDERS):
        g = opgen.make_random(np.random.default_rng(1), op_type)
        g2 = read_tflite(write_tflite(g))
        d = ops.get(op_type)
        if d.dense_form is not None:     # written as its dense form (row-sparse family)
            t, attrs, w = d.dense_form(g, g.ops[0])
            assert [o.type for o in g2.ops] == [t]
            assert np.array_equal(g2.t(g2.ops[0].inputs[1]).data, w.data)
        else:
            assert [o.type for o in g2.ops] == [op_type]
            attrs = g.ops[0].attrs
        for k, v in attrs.items():
            assert g2.ops[0].attr(k) == v, (op_type, k)
        for n in g.inputs + g.outputs:
            assert g2.t(n).shape == g.t(n).shape and g2.t(n).dtype == g.t(n).dtype


def _float_graph():
    rng = np.random.default_rng(4)
    g = Graph(name="float_net")
    g.add_tensor(Tensor("x", (1, 6, 6, 3), "float32"))
    g.add_tensor(Tensor("w", (4, 3, 3, 3), "float32", data=rng.normal(size=(4, 3, 3, 3)).astype(np.float32)))
    g.add_tensor(Tensor("b", (4,), "float32", data=rng.normal(size=4).astype(np.float32)))
    g.add_tensor(Tensor("c", (1, 6, 6, 4), "float32"))
    g.add_tensor(Tensor("p", (1, 3, 3, 4), "float32"))
    g.add_tensor(Tensor("r", (1, 36), "float32"))
    g.add_tensor(Tensor("fw", (5, 36), "float32", data=rng.normal(size=(5, 36)).astype(np.float32)))
    g.add_tensor(Tensor("f", (1, 5), "float32"))
    g.add_tensor(Tensor("y", (1, 5), "float32"))
    g.add_op(Op("CONV_2D", ["x", "w", "b"], ["c"], dict(padding="SAME", fused_activation="RELU")))
    g.add_op(Op("MAX_POOL_2D", ["c"], ["p"], dict(filter_h=2, filter_w=2, stride_h=2, stride_w=2)))
    g.add_op(Op("RESHAPE", ["p"], ["r"], dict(new_shape=[1, 36])))
    g.add_op(Op("FULLY_CONNECTED", ["r", "fw"], ["f"], {}))
    g.add_op(Op("SOFTMAX", ["f"], ["y"], dict(beta=1.0)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_float_graph_written_runs_in_tflm():
    g = _float_graph()
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 3)).astype(np.float32)
    out = TflmRunner(write_tflite(g)).run(x)[0].reshape(1, 5)
    from toolchain.ir.float_eval import run_float
    ref = run_float(g, x)["y"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_corrupt_and_truncated_files_raise_convert_error(tmp_path):
    raw = (MODELS / FILES[0]).read_bytes()
    with pytest.raises(ConvertError, match="not a TFLite model"):
        read_tflite(b"hello world, not a model")
    with pytest.raises(ConvertError, match="not a TFLite model"):
        read_tflite(b"")
    for cut in (9, 100, len(raw) // 3, len(raw) // 2, len(raw) - 1000):
        with pytest.raises(ConvertError):
            read_tflite(raw[:cut])
    rng = np.random.default_rng(0)
    flipped = 0
    for _ in range(30):                      # random garbage inside: never a raw traceback
        b = bytearray(raw)
        for pos in rng.integers(8, 2000, 16):
            b[int(pos)] = int(rng.integers(0, 256))
        try:
            read_tflite(bytes(b))
        except (ConvertError, IRError):
            flipped += 1
    with pytest.raises(ConvertError, match="cannot read"):
        read_tflite(tmp_path / "missing.tflite")


def _patched_opcode(raw: bytes, old: int, new_builtin: int, new_deprecated: int) -> bytes:
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == old:
            oc.builtinCode, oc.deprecatedBuiltinCode = new_builtin, new_deprecated
    import flatbuffers
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_names_op_layer_and_list():
    raw = (MODELS / FILES[0]).read_bytes()
    bad = _patched_opcode(raw, schema.BuiltinOperator.SOFTMAX, schema.BuiltinOperator.LOG_SOFTMAX,
                          schema.BuiltinOperator.LOG_SOFTMAX)
    with pytest.raises(IRError, match=r"unsupported op LOG_SOFTMAX in layer 'Identity'; "
                                      r"supported: .*CONV_2D"):
        read_tflite(bad)


def test_builtin_code_vs_deprecated_code():
    raw = (MODELS / FILES[0]).read_bytes()
    # new-style file: deprecated_builtin_code 0, builtin_code set (the KWS file is like this)
    g = read_tflite(_patched_opcode(raw, schema.BuiltinOperator.SOFTMAX,
                                    schema.BuiltinOperator.SOFTMAX, 0))
    assert g.ops[-1].type == "SOFTMAX"
    # old-style file: builtin_code 0 (ADD), only deprecated_builtin_code set
    g = read_tflite(_patched_opcode(raw, schema.BuiltinOperator.SOFTMAX, 0,
                                    schema.BuiltinOperator.SOFTMAX))
    assert g.ops[-1].type == "SOFTMAX"
    # our writer fills both
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(write_tflite(read_tflite(raw)), 0))
    assert all(oc.builtinCode == oc.deprecatedBuiltinCode for oc in m.operatorCodes)


def test_writer_rejects_unknown_op():
    g = opgen.make_relu(np.random.default_rng(0))
    g.ops[0].type = "LOG_SOFTMAX"
    with pytest.raises(IRError, match="unsupported op LOG_SOFTMAX"):
        write_tflite(g)


def test_writer_buffers_aligned_and_quant_preserved():
    g = opgen.make_conv2d(np.random.default_rng(3), per_channel=True, bias=True)
    out = write_tflite(g)
    m = schema.Model.GetRootAsModel(out, 0)
    for i in range(1, m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength():
            assert b.DataAsNumpy().ctypes.data % 16 == np.frombuffer(out, np.uint8).ctypes.data % 16
    g2 = read_tflite(out)
    wq = g2.t("w").quant
    np.testing.assert_array_equal(wq.scale, np.float32(g.t("w").quant.scale))
    assert wq.axis == 0

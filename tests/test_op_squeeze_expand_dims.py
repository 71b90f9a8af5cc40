"""SQUEEZE / EXPAND_DIMS: aliases of RESHAPE. The TFLite reader maps both onto RESHAPE
to their output shape (EXPAND_DIMS' axis input dropped), the writer writes RESHAPE,
and the model runs equal to tflite-micro on the original file (reference, generated
C on QEMU M4 portable and DSP); ONNX Squeeze / Unsqueeze (already lowered to
RESHAPE) on 'same'-layout and (N, C, L) tensors convert, equal PyTorch in float and
run in TFLM equal to our reference."""
import shutil
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from converters.tflite_reader import read_tflite  # noqa: E402
from converters.tflite_schema import BUILTIN_CODE, schema  # noqa: E402
from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.ir import IRError, reference  # noqa: E402
from toolchain.ir.graph import Graph, Op, Quant, Tensor  # noqa: E402
from toolchain.tflm_oracle import TflmRunner  # noqa: E402
from onnx_export import export_onnx  # noqa: E402


def _reshape_chain(shapes):
    """RESHAPEs through `shapes` (one quantization), then an ADD so that a kernel
    consumes the last tensor."""
    g = Graph(name="chain")
    q = Quant.per_tensor(0.05, 3)
    g.add_tensor(Tensor("x", shapes[0], "int8", q))
    prev = "x"
    for k, s in enumerate(shapes[1:]):
        n = f"r{k}"
        g.add_tensor(Tensor(n, s, "int8", Quant(q.scale.copy(), q.zero_point.copy())))
        g.add_op(Op("RESHAPE", [prev], [n], dict(new_shape=list(s)), name=n))
        prev = n
    g.add_tensor(Tensor("y", shapes[-1], "int8", Quant.per_tensor(0.08, -5)))
    g.add_op(Op("ADD", [prev, prev], ["y"], dict(fused_activation="NONE"), name="y"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def _as_squeeze_expand(raw: bytes, kinds: list) -> bytes:
    """Rewrite the RESHAPE operators of `raw` (in order) as SQUEEZE (squeeze_dims) or
    EXPAND_DIMS (an int32 axis input tensor), as TF's converter writes them."""
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    sg = m.subgraphs[0]
    codes = {}
    for kind in {k[0] for k in kinds}:
        oc = schema.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = BUILTIN_CODE[kind]
        oc.version = 1
        m.operatorCodes.append(oc)
        codes[kind] = len(m.operatorCodes) - 1
    reshapes = [o for o in sg.operators
                if m.operatorCodes[o.opcodeIndex].builtinCode == BUILTIN_CODE["RESHAPE"]]
    assert len(reshapes) == len(kinds)
    for o, (kind, arg) in zip(reshapes, kinds):
        o.opcodeIndex = codes[kind]
        if kind == "SQUEEZE":
            opts = schema.SqueezeOptionsT()
            opts.squeezeDims = list(arg)
            o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.SqueezeOptions, opts
            o.inputs = np.asarray(o.inputs[:1], np.int32)
        else:
            b = schema.BufferT()
            b.data = np.asarray([arg], "<i4").view(np.uint8)
            m.buffers.append(b)
            t = schema.TensorT()
            t.name, t.shape, t.type = f"axis{len(sg.tensors)}", np.asarray([1], np.int32), \
                schema.TensorType.INT32
            t.buffer = len(m.buffers) - 1
            sg.tensors.append(t)
            o.inputs = np.asarray([o.inputs[0], len(sg.tensors) - 1], np.int32)
            o.builtinOptionsType = schema.BuiltinOptions.ExpandDimsOptions
            o.builtinOptions = schema.ExpandDimsOptionsT()
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


CHAINS = [
    ([(1, 1, 6, 4), (1, 6, 4), (1, 6, 1, 4), (1, 1, 6, 1, 4), (1, 6, 4)],
     [("SQUEEZE", [1]), ("EXPAND_DIMS", 2), ("EXPAND_DIMS", 1), ("SQUEEZE", [1, 3])]),
    ([(2, 1, 5), (2, 5), (2, 5, 1), (2, 1, 5, 1), (2, 5)],
     [("SQUEEZE", []), ("EXPAND_DIMS", -1), ("EXPAND_DIMS", 1), ("SQUEEZE", [-1, 1])]),
]


def _models():
    for shapes, kinds in CHAINS:
        g = _reshape_chain(shapes)
        yield g, _as_squeeze_expand(write_tflite(g), kinds)


def test_tflm_runs_the_squeeze_expand_file_and_our_reader_makes_reshapes():
    rng = np.random.default_rng(0)
    for g, raw in _models():
        ops = schema.Model.GetRootAsModel(raw, 0)
        names = {ops.OperatorCodes(i).BuiltinCode() for i in range(ops.OperatorCodesLength())}
        assert {BUILTIN_CODE["SQUEEZE"], BUILTIN_CODE["EXPAND_DIMS"]} <= names
        back = read_tflite(raw)
        assert [o.type for o in back.ops] == ["RESHAPE"] * (len(back.ops) - 1) + ["ADD"]
        for o in back.ops[:-1]:
            assert len(o.inputs) == 1 and o.attr("new_shape") == list(back.t(o.outputs[0]).shape)
        tf = TflmRunner(raw)
        for _ in range(4):
            x = rng.integers(-128, 128, size=g.t("x").shape).astype(np.int8)
            want = tf.run(x)[0]
            got = reference.run(back, x)[back.outputs[0]]
            assert np.array_equal(got.reshape(-1), want.reshape(-1))
            # the writer writes RESHAPE: the rewritten file runs the same in TFLM
            raw2 = write_tflite(back)
            m2 = schema.Model.GetRootAsModel(raw2, 0)
            assert {m2.OperatorCodes(i).BuiltinCode() for i in range(m2.OperatorCodesLength())} \
                == {BUILTIN_CODE["RESHAPE"], BUILTIN_CODE["ADD"]}
            assert np.array_equal(TflmRunner(raw2).run(x)[0].reshape(-1), want.reshape(-1))


def test_unknown_builtin_still_refused_naming_op_and_layer():
    g = _reshape_chain([(1, 4), (1, 4)])
    raw = write_tflite(g)
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    for oc in m.operatorCodes:
        if oc.builtinCode == BUILTIN_CODE["RESHAPE"]:
            oc.builtinCode = oc.deprecatedBuiltinCode = BUILTIN_CODE["REVERSE_V2"]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(IRError, match=r"unsupported op REVERSE_V2 in layer 'r0'"):
        read_tflite(bytes(b.Output()))


# --------------------------------------------------------------------------- ONNX

def _nets():
    import torch
    from torch import nn

    class Audio(nn.Module):            # (N, C, L) -> unsqueeze(2) -> Conv2d 1xK -> squeeze(2)
        def __init__(self):
            super().__init__()
            self.c2 = nn.Conv2d(4, 6, (1, 3), padding=(0, 1))
            self.c1 = nn.Conv1d(6, 5, 3)

        def forward(self, x):
            return self.c1(torch.relu(self.c2(x.unsqueeze(2)).squeeze(2)))

    class Head(nn.Module):             # (N, F) -> unsqueeze(1) -> ... -> squeeze(1)
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 8)

        def forward(self, x):
            y = self.fc(x).unsqueeze(1)
            return torch.tanh(y).squeeze(1)
    return [(Audio().eval(), (1, 4, 9)), (Head().eval(), (1, 12))]


def test_onnx_squeeze_unsqueeze_become_reshape_and_run_in_tflm():
    torch = pytest.importorskip("torch")
    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    for net, shape in _nets():
        g = from_onnx(export_onnx(net, shape))
        assert "RESHAPE" in {o.type for o in g.ops} or len(shape) == 3
        calib_onnx = rng.standard_normal((32,) + shape[1:]).astype(np.float32)
        want = net(torch.from_numpy(calib_onnx)).detach().numpy()
        if len(shape) == 3:            # IR input (N, 1, L, C), output (N, 1, L', C')
            calib = calib_onnx.transpose(0, 2, 1)[:, None]
            got = run_float(g, calib)[g.outputs[0]][:, 0].transpose(0, 2, 1)
        else:
            calib = calib_onnx
            got = run_float(g, calib)[g.outputs[0]]
        np.testing.assert_allclose(got, want, atol=1e-5)
        q = quantize(g, calib)
        tf = TflmRunner(write_tflite(q))
        xq = q.t(q.inputs[0]).quant
        for i in range(8):
            x = np.clip(np.round(calib[i:i + 1] / xq.scale[0]) + xq.zero_point[0], -128,
                        127).astype(np.int8)
            assert np.array_equal(reference.run(q, x)[q.outputs[0]].reshape(-1),
                                  tf.run(x)[0].reshape(-1))


# --------------------------------------------------------------------------- end to end
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_squeeze_expand_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    """`mcu build`'s path on a .tflite with SQUEEZE and EXPAND_DIMS operators."""
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    g, raw = next(iter(_models()))
    model = tmp_path / "squeeze.tflite"
    model.write_bytes(raw)
    rep = build_model(model, "mps2-an386", tmp_path / "build", kernels=kernels,
                      measure_tflm=False)
    tf = TflmRunner(raw)
    rng = np.random.default_rng(3)
    with start_device("mps2-an386", load_build(rep["build_dir"])) as dev:
        client = ModelClient(dev.link())
        assert client.info().model_hash == read_tflite(raw).model_hash()
        for _ in range(4):
            x = rng.integers(-128, 128, size=g.t("x").shape).astype(np.int8)
            got, _ = client.infer(x.tobytes())
            assert np.frombuffer(got, np.int8).tolist() == tf.run(x)[0].reshape(-1).tolist()

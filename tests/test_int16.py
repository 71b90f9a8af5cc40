"""int16 activations with int8 weights ("16x8", toolchain/ir/ops/int16.py), end to end.

- the int16 reference of every supported op equals tflite-micro bit for bit on many
  seeded random single-op graphs (tests/int16gen.py), SOFTMAX on edge rows too;
- the int16 C kernels (runtime/int16_conv.c, int16_ops.c), through the code generator
  and compiled natively, equal tflite-micro (both kernel builds);
- small whole models quantized by our PTQ with activations="int16" are bit-exact in
  the reference, on the host (generated C), on the host board and on QEMU M4 firmware;
- the .tflite writer's int16 op versions and the reader's round trip;
- refusals: ops without an int16 form (naming op and layer, before any C), non-zero
  zero points, per-channel FULLY_CONNECTED; mcu convert --activations int16 and its
  errors;
- accuracy smoke: int16 activations give a lower error than int8 on a regression task
  (the figures: tests/bench_int16_accuracy.py).
"""
from __future__ import annotations

import shutil
import zlib

import numpy as np
import pytest

import int16gen
from qemu_model import assert_bit_exact_on_qemu, needs_qemu
from toolchain.ir import IRError, reference
from toolchain.ir.graph import Graph, Op, Quant, Tensor
from toolchain.tflm_oracle import run_graph

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
CASES_PER_OP = 60


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _rng(op_type: str, seed: int):
    return np.random.default_rng([zlib.crc32(op_type.encode()), seed])


# ---------------------------------------------------------------- reference == tflite-micro
@pytest.mark.parametrize("op_type", int16gen.OPS16)
def test_int16_reference_bitexact_with_tflm(op_type):
    biases = set()
    for seed in range(CASES_PER_OP):
        rng = _rng(op_type, seed)
        g = int16gen.make_random16(rng, op_type)
        feeds = int16gen.random_feeds16(rng, g)
        want = run_graph(g, feeds)
        got = reference.run(g, feeds)
        op = g.ops[0]
        if len(op.inputs) > 2 and op.inputs[2]:
            biases.add(g.t(op.inputs[2]).dtype)
        for n in g.outputs:
            assert got[n].dtype == np.int16
            assert _same(got[n], want[n].reshape(got[n].shape)), \
                f"{op_type} seed {seed}: {op.attrs} shapes {[g.t(i).shape for i in g.inputs]}"
    if op_type == "CONV_2D":
        assert biases == {"int32", "int64"}      # both bias types TFLM accepts there


def _softmax16(shape, beta=1.0, in_scale=0.001):
    g = Graph(name="softmax16")
    g.add_tensor(Tensor("x", shape, "int16", Quant.per_tensor(in_scale, 0)))
    g.add_tensor(Tensor("y", shape, "int16", Quant.per_tensor(1.0 / 32768, 0)))
    g.add_op(Op("SOFTMAX", ["x"], ["y"], dict(beta=beta), name="sm"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


@pytest.mark.parametrize("in_scale,beta", [(0.001, 1.0), (0.0003, 2.0), (0.01, 0.5)])
def test_int16_softmax_edge_rows(in_scale, beta):
    """Rows all equal, one huge winner, full-range extremes, long rows (sum headroom)."""
    g = _softmax16((6, 300), beta, in_scale)
    x = np.zeros((6, 300), np.int16)
    x[1, 7] = 32767
    x[2] = np.where(np.arange(300) % 2, 32767, -32768)
    x[3] = np.arange(300) * 100 - 15000
    x[4] = -32768
    x[5] = np.random.default_rng(0).integers(-32768, 32768, 300)
    assert _same(reference.run(g, x)["y"], run_graph(g, {"x": x})["y"])


# ---------------------------------------------------------------- C kernels on the host
@needs_cc
@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_int16_kernels_host_bitexact_with_tflm(variant, tmp_path):
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    cases = []
    for op_type in int16gen.OPS16:
        # int16 kernels are portable C in both builds: the DSP build checks the generator
        for s in range(3 if variant == "portable" else 1):
            rng = _rng(op_type, 1000 + s)
            cases.append((op_type, rng, int16gen.make_random16(rng, op_type)))
    gens = [generate(g, tmp_path / f"m{i}", kernels=variant, prefix=f"m{i}_")
            for i, (_, _, g) in enumerate(cases)]
    lib = HostModels(gens, variant, tmp_path)
    for (op_type, rng, g), gen in zip(cases, gens):
        # int16 tensors take 2 bytes per element in the arena
        assert gen.plan.arena_size >= g.t(g.outputs[0]).size * 2
        for _ in range(2):
            feeds = int16gen.random_feeds16(rng, g)
            want = run_graph(g, feeds)
            got = lib.run(gen, [feeds[n] for n in g.inputs])
            for n, o in zip(g.outputs, got):
                assert _same(o, want[n].reshape(o.shape)), f"{variant} {op_type}"


# ---------------------------------------------------------------- whole models
def _models():
    import torch
    torch.manual_seed(3)
    nn = torch.nn
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 3 * 3, 10), nn.Softmax(-1)).eval()

    class Res1d(nn.Module):                 # 1-D audio-style net with a residual ADD
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(2, 8, 5, padding=2)
            self.b = nn.Conv1d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 16, 3)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = torch.relu(self.b(h) + h)
            return self.fc(torch.flatten(h, 1))
    return [("cnn", cnn, (1, 3, 12, 12)), ("res1d", Res1d().eval(), (1, 2, 16))]


@pytest.fixture(scope="module")
def models16():
    pytest.importorskip("torch")
    import torch
    from converters import from_torch
    from converters.quantize import quantize
    out = []
    for name, m, shape in _models():
        g = from_torch(m, torch.zeros(shape))
        calib = np.random.default_rng(1).standard_normal(
            (32,) + tuple(g.t(g.inputs[0]).shape[1:])).astype(np.float32)
        out.append((name, quantize(g, calib, activations="int16")))
    return out


def test_int16_models_quantized_as_16x8(models16):
    for name, q in models16:
        acts = [t for t in q.tensors.values() if not t.is_const]
        assert all(t.dtype == "int16" and int(t.quant.zero_point[0]) == 0 for t in acts), name
        for op in q.ops:
            if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                assert q.t(op.inputs[1]).dtype == "int8"
                assert q.t(op.inputs[2]).dtype == "int64"
            if op.type == "SOFTMAX":
                assert np.float32(q.t(op.outputs[0]).quant.scale[0]) == np.float32(1 / 32768)
        assert q.meta["quantization"]["activations"] == "int16"


@needs_cc
def test_int16_models_bitexact_reference_and_host(models16, tmp_path):
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    gens = [generate(q, tmp_path / name, prefix=f"{name}_") for name, q in models16]
    lib = HostModels(gens, "portable", tmp_path)
    rng = np.random.default_rng(5)
    for (name, q), gen in zip(models16, gens):
        for _ in range(4):
            x = rng.integers(-32768, 32768, size=q.t(q.inputs[0]).shape).astype(np.int16)
            want = run_graph(q, {q.inputs[0]: x})[q.outputs[0]]
            assert _same(reference.run(q, x)[q.outputs[0]], want), name
            assert _same(lib.run(gen, [x])[0], want.reshape(q.t(q.outputs[0]).shape)), name


def test_int16_model_on_the_host_board(models16, tmp_path):
    """mcu build's path (build_model) for the host board, run over its link."""
    name, q = models16[1]
    assert_bit_exact_on_qemu(q, tmp_path, "portable", n=4, board="host")


@needs_qemu
def test_int16_model_on_qemu_m4(models16, tmp_path):
    name, q = models16[0]
    assert_bit_exact_on_qemu(q, tmp_path, "dsp", n=4)


# ---------------------------------------------------------------- writer / reader
def test_int16_tflite_versions_and_round_trip():
    from converters.tflite_reader import read_tflite
    from converters.tflite_schema import BUILTIN_NAME, schema
    from converters.tflite_writer import write_tflite
    from toolchain.ir.ops.int16 import INT16_VERSION
    for op_type in int16gen.OPS16:
        rng = _rng(op_type, 77)
        g = int16gen.make_random16(rng, op_type)
        tfl = write_tflite(g)
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tfl, 0))
        codes = {BUILTIN_NAME[c.builtinCode]: c.version for c in m.operatorCodes}
        assert codes[op_type] == INT16_VERSION[op_type], op_type
        if op_type == "ADD":
            assert m.subgraphs[0].operators[0].builtinOptions.potScaleInt16 is False
        back = read_tflite(tfl)
        for n, t in g.tensors.items():
            if n in back.tensors:
                assert back.t(n).dtype == t.dtype, (op_type, n)
        feeds = int16gen.random_feeds16(rng, g)
        a, b = reference.run(g, feeds), reference.run(back, feeds)
        assert all(_same(a[n], b[n]) for n in g.outputs), op_type


def test_int16_quantize_dequantize_boundaries():
    rng = np.random.default_rng(2)
    g = Graph(name="qdq")
    g.add_tensor(Tensor("x", (1, 40), "float32"))
    g.add_tensor(Tensor("q", (1, 40), "int16", Quant.per_tensor(0.0007, 0)))
    g.add_tensor(Tensor("r", (1, 40), "int16", Quant.per_tensor(0.0011, 0)))
    g.add_tensor(Tensor("y", (1, 40), "float32"))
    g.add_op(Op("QUANTIZE", ["x"], ["q"], name="quant"))
    g.add_op(Op("QUANTIZE", ["q"], ["r"], name="requant"))
    g.add_op(Op("DEQUANTIZE", ["r"], ["y"], name="dequant"))
    g.inputs, g.outputs = ["x"], ["y"]
    x = rng.uniform(-30, 30, (1, 40)).astype(np.float32)
    x[0, :5] = (np.arange(5) + 0.5).astype(np.float32) * np.float32(0.0007)
    assert _same(reference.run(g, x)["y"], run_graph(g, {"x": x})["y"])


# ---------------------------------------------------------------- refusals
def _mul16():
    rng = np.random.default_rng(0)
    g = int16gen.to_int16(rng, __import__("opgen").make_mul(rng))
    g.ops[0].name = "the_mul"
    return g


def test_int16_unsupported_op_is_refused_before_any_c(tmp_path):
    from toolchain.codegen.generate import generate
    g = _mul16()
    with pytest.raises(IRError, match=r"MUL in layer 'the_mul'.*int16"):
        generate(g, tmp_path / "out")
    assert not (tmp_path / "out" / "model.c").exists()
    with pytest.raises(IRError, match=r"MUL in layer 'the_mul'"):
        reference.run(g, int16gen.random_feeds16(np.random.default_rng(1), g))


def test_int16_quantizer_refuses_unsupported_ops_and_per_channel_fc():
    torch = pytest.importorskip("torch")
    from converters import from_torch
    from converters.quantize import quantize
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid()).eval()
    g = from_torch(m, torch.zeros(1, 4))
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(IRError, match=r"LOGISTIC in layer '.*' for int16"):
        quantize(g, x, activations="int16")
    with pytest.raises(IRError, match="per-tensor"):
        quantize(g, x, activations="int16", per_channel_fc=True)
    with pytest.raises(IRError, match="unknown activation type"):
        quantize(g, x, activations="int4")


def test_int16_nonzero_zero_point_is_refused():
    rng = np.random.default_rng(4)
    g = int16gen.make_random16(rng, "CONV_2D")
    g.t("x").quant = Quant.per_tensor(float(g.t("x").quant.scale[0]), 3)
    with pytest.raises(IRError, match="zero point 0"):
        reference.run(g, int16gen.random_feeds16(rng, g))


def test_cli_convert_and_build_int16(tmp_path):
    torch = pytest.importorskip("torch")
    from click.testing import CliRunner
    from toolchain.cli import main
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()
    onnx_path = tmp_path / "m.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(1, 1, 6, 6),), str(onnx_path), dynamo=False)
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).random((16, 1, 6, 6),
                                                                       dtype=np.float32))
    r = CliRunner().invoke(main, ["convert", str(onnx_path), "--calib", str(tmp_path / "cal.npz"),
                                  "--activations", "int16", "-o", str(tmp_path / "o16")])
    assert r.exit_code == 0, r.output
    assert "int16[1, 6, 6, 1]" in r.output and "float vs int16" in r.output
    assert "16/16 outputs byte-identical" in r.output
    r = CliRunner().invoke(main, ["build", str(tmp_path / "o16" / "model.tflite"), "-b", "host",
                                  "-o", str(tmp_path / "b"), "--no-tflm"])
    assert r.exit_code == 0, r.output
    # an already-int8 model cannot become int16 without its float weights: one line
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "o16" / "model.tflite"),
                                  "--activations", "int16", "-o", str(tmp_path / "x")])
    assert r.exit_code == 0      # int16 .tflite passes through
    r8 = CliRunner().invoke(main, ["convert", str(onnx_path), "--calib",
                                   str(tmp_path / "cal.npz"), "-o", str(tmp_path / "o8")])
    assert r8.exit_code == 0, r8.output
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "o8" / "model.tflite"),
                                  "--activations", "int16", "-o", str(tmp_path / "y")])
    assert r.exit_code != 0 and "needs a float model" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- accuracy smoke
def test_int16_accuracy_beats_int8_on_regression():
    pytest.importorskip("torch")
    from bench_int16_accuracy import run_task
    r = run_task("conv1d", seed=0, steps=250, n_train=512, check_tflm=1)
    assert r["int16"]["tflm_bit_exact"] and r["int8"]["tflm_bit_exact"]
    assert r["int16"]["rmse_vs_float"] < r["int8"]["rmse_vs_float"]
    assert r["int16"]["rel_rmse_vs_float"] < 0.5 * r["int8"]["rel_rmse_vs_float"]

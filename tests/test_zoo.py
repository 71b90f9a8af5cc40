"""The model zoo (tests/zoo.py): 23 architectures nobody tuned for, from PyTorch through
our ONNX front end and PTQ to generated C on the host board, every output byte equal
to tflite-micro's on the written .tflite, in both kernel variants; and an arena no
larger than TFLite Micro's smallest on the emulated Cortex-M4 (../shared/tflm-m4,
CMSIS-NN build, bisected), measured in the same run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
import zlib

import numpy as np
import pytest

from zoo import ZOO, zoo_int8

pytest.importorskip("torch")
KIT = Path(__file__).resolve().parents[2] / "shared" / "tflm-m4" / "measure.py"
needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
NAMES = sorted(ZOO)
N_INPUTS = 3


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from converters.tflite_writer import write_tflite
    d = tmp_path_factory.mktemp("zoo")
    out = {}
    for name in NAMES:
        _, q, _ = zoo_int8(name)
        p = d / f"{name}.tflite"
        p.write_bytes(write_tflite(q))
        out[name] = (q, p)
    return out


@pytest.fixture(scope="module", params=["portable", "dsp"])
def built(request, written, tmp_path_factory):
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    variant = request.param
    d = tmp_path_factory.mktemp(f"zoo_{variant}")
    gens = {name: generate(written[name][0], d / name, kernels=variant, prefix=f"z{i}_")
            for i, name in enumerate(NAMES)}
    return variant, gens, HostModels(list(gens.values()), variant, d)


def test_zoo_is_large_and_varied():
    assert len(ZOO) >= 20
    kinds = set()
    for name in NAMES:
        _, q, _ = zoo_int8(name)
        kinds |= {op.type for op in q.ops}
        strides = {op.attr("stride_h") for op in q.ops if op.type == "DEPTHWISE_CONV_2D"}
        if name.startswith("mobilenet"):
            assert 2 in strides, name
        if name.startswith("conv1d"):              # (N, C, L) -> (N, 1, L, C), H = 1 ops
            assert q.t(q.inputs[0]).shape[1] == 1 and "CONV_2D" in {o.type for o in q.ops}
            assert all(op.attr("filter_h") in (None, 1) for op in q.ops), name
    assert sum(name.startswith("conv1d") for name in NAMES) >= 2
    assert "DEPTHWISE_CONV_2D" in {o.type for o in zoo_int8("conv1d_dw_long_400")[1].ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "CONCATENATION",
            "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "LOGISTIC", "SOFTMAX", "TRANSPOSE_CONV",
            "RESIZE_NEAREST_NEIGHBOR"} <= kinds


@needs_cc
def test_zoo_generated_c_is_warning_free(built):
    """Every zoo model's generated C and the runtime compile without a warning
    (-Wall -Wextra), in both kernel variants."""
    variant, _, lib = built
    warn = [w for w in lib.warnings.splitlines() if "warning" in w]
    assert not warn, f"{variant}:\n" + "\n".join(warn)[:2000]


@needs_cc
@pytest.mark.parametrize("name", NAMES)
def test_zoo_bit_exact_with_tflm_on_the_host_board(name, built, written):
    from toolchain.tflm_oracle import TflmRunner
    variant, gens, lib = built
    q, path = written[name]
    tf = TflmRunner(path.read_bytes())
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    shape = q.t(q.inputs[0]).shape
    for _ in range(N_INPUTS):
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        got = lib.run(gens[name], [x])[0].reshape(-1)
        assert got.tolist() == tf.run(x)[0].reshape(-1).tolist(), \
            f"{name} ({variant}): output differs from tflite-micro"


HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
@pytest.mark.parametrize("name", ["mobilenet_v2_32", "squeeze_excite"])
def test_zoo_subset_on_qemu_m4(name, kernels, written, tmp_path):
    """A subset of the zoo as firmware on the emulated Cortex-M4 (mcu build's path)."""
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    from toolchain.tflm_oracle import TflmRunner
    q, path = written[name]
    rep = build_model(path, "mps2-an386", tmp_path / "b", kernels=kernels, measure_tflm=False)
    tf = TflmRunner(path.read_bytes())
    rng = np.random.default_rng(9)
    xs = rng.integers(-128, 128, size=(3,) + tuple(q.t(q.inputs[0]).shape)).astype(np.int8)
    with start_device("mps2-an386", load_build(rep["build_dir"])) as dev:
        client = ModelClient(dev.link())
        assert client.info().model_hash == q.model_hash()
        for x in xs:
            got, _ = client.infer(x.tobytes())
            assert np.frombuffer(got, np.int8).tolist() == tf.run(x)[0].reshape(-1).tolist(), \
                f"{name} ({kernels}) on mps2-an386 differs from tflite-micro"


def _keras_style_graph():
    """What a Keras model converted by TensorFlow's TFLiteConverter looks like: int8 I/O,
    fused activations on CONV/FC/ADD, RESHAPE chains whose shape is an int32 tensor input
    (not an attribute), a Flatten as RESHAPE to [1, -1] resolved, and a dense head."""
    from converters.quantize import quantize
    from toolchain.ir.graph import Graph, Op, Tensor
    rng = np.random.default_rng(21)
    g = Graph(name="keras_style")

    def t(name, shape, data=None, dtype="float32"):
        g.add_tensor(Tensor(name, shape, dtype, data=None if data is None else
                            np.asarray(data).astype(dtype)))
        return name
    t("in", (1, 10, 8, 1))
    t("w1", (6, 3, 3, 1), rng.standard_normal((6, 3, 3, 1)) / 3)
    t("b1", (6,), rng.standard_normal(6) * 0.1)
    t("c1", (1, 10, 8, 6))
    g.add_op(Op("CONV_2D", ["in", "w1", "b1"], ["c1"], dict(padding="SAME",
                                                          fused_activation="RELU6")))
    t("s1", (3,), [1, 80, 6], "int32")
    t("r1", (1, 80, 6))
    g.add_op(Op("RESHAPE", ["c1", "s1"], ["r1"], {}))
    t("s2", (4,), [1, 10, 8, 6], "int32")
    t("r2", (1, 10, 8, 6))
    g.add_op(Op("RESHAPE", ["r1", "s2"], ["r2"], {}))
    t("w2", (1, 3, 3, 6), rng.standard_normal((1, 3, 3, 6)) / 3)
    t("b2", (6,), rng.standard_normal(6) * 0.1)
    t("c2", (1, 5, 4, 6))
    g.add_op(Op("DEPTHWISE_CONV_2D", ["r2", "w2", "b2"], ["c2"],
                dict(padding="SAME", stride_h=2, stride_w=2, fused_activation="RELU")))
    t("s3", (2,), [1, 120], "int32")
    t("f", (1, 120))
    g.add_op(Op("RESHAPE", ["c2", "s3"], ["f"], {}))
    t("w3", (16, 120), rng.standard_normal((16, 120)) / 11)
    t("b3", (16,), rng.standard_normal(16) * 0.1)
    t("h", (1, 16))
    g.add_op(Op("FULLY_CONNECTED", ["f", "w3", "b3"], ["h"], dict(fused_activation="RELU")))
    t("w4", (16, 16), rng.standard_normal((16, 16)) / 4)
    t("b4", (16,), rng.standard_normal(16) * 0.1)
    t("h2", (1, 16))
    g.add_op(Op("FULLY_CONNECTED", ["h", "w4", "b4"], ["h2"], {}))
    t("sum", (1, 16))
    g.add_op(Op("ADD", ["h", "h2"], ["sum"], dict(fused_activation="RELU")))
    t("w5", (4, 16), rng.standard_normal((4, 16)) / 4)
    t("b5", (4,), rng.standard_normal(4) * 0.1)
    t("logits", (1, 4))
    g.add_op(Op("FULLY_CONNECTED", ["sum", "w5", "b5"], ["logits"], {}))
    t("probs", (1, 4))
    g.add_op(Op("SOFTMAX", ["logits"], ["probs"], dict(beta=1.0)))
    g.inputs, g.outputs = ["in"], ["probs"]
    return quantize(g, rng.standard_normal((32, 10, 8, 1)).astype(np.float32))


@needs_cc
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_keras_style_tflite_round_trip_bit_exact(kernels, tmp_path):
    from converters.tflite_reader import read_tflite
    from converters.tflite_writer import write_tflite
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    from toolchain.tflm_oracle import TflmRunner
    q = _keras_style_graph()
    tfl = write_tflite(q)
    back = read_tflite(tfl)
    assert [op.type for op in back.ops].count("RESHAPE") == 3
    assert {op.attr("fused_activation") for op in back.ops} >= {"RELU", "RELU6"}
    # the reader turns shape inputs into new_shape attributes (one canonical form)
    assert all(len(op.inputs) == 1 for op in back.ops if op.type == "RESHAPE")
    gen = generate(back, tmp_path / "k", kernels=kernels, prefix="k_")
    lib = HostModels([gen], kernels, tmp_path)
    tf = TflmRunner(tfl)
    rng = np.random.default_rng(4)
    for _ in range(4):
        x = rng.integers(-128, 128, size=(1, 10, 8, 1)).astype(np.int8)
        assert lib.run(gen, [x])[0].reshape(-1).tolist() == tf.run(x)[0].reshape(-1).tolist()


def _tflm_arena(path: Path, variant: str = "cmsis") -> int:
    r = subprocess.run([sys.executable, str(KIT), str(path), "--variant", variant,
                        "--no-reference", "--json", str(path.with_suffix(".json"))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    v = json.loads(path.with_suffix(".json").read_text())["variants"][0]
    assert v["ok"], v
    return int(v["smallest_arena_bytes"])


@pytest.mark.qemu
@pytest.mark.skipif(not (KIT.exists() and shutil.which("qemu-system-arm")),
                    reason="needs ../shared/tflm-m4 and qemu-system-arm")
def test_zoo_arena_at_most_tflite_micro(written):
    """Our planned arena (DSP build: the larger, with kernel scratch) against TFLite
    Micro's smallest working arena for the same model on the same emulated M4.

    Models with TRANSPOSE_CONV are measured with the kit's reference kernels: its
    CMSIS-NN TRANSPOSE_CONV (int8-only registration) gives outputs that differ from
    tflite-micro's where the padding is not 0 and change with the arena size, so the
    kit finds no smallest working arena for them (measure.py: "output at arena N
    differs from the output at the full arena")."""
    from toolchain.codegen.generate import plan_model
    worse = []
    for name in NAMES:
        q, path = written[name]
        ours = plan_model(q, "dsp")[1].arena_size
        variant = "ref" if any(op.type == "TRANSPOSE_CONV" for op in q.ops) else "cmsis"
        theirs = _tflm_arena(path, variant)
        if ours > theirs:
            worse.append(f"{name}: {ours} B > TFLM {theirs} B")
    assert not worse, "; ".join(worse)

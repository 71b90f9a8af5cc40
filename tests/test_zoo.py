"""The model zoo (tests/zoo.py): 22 architectures nobody tuned for, from PyTorch through
our ONNX front end and PTQ to generated C on the host board, every output byte equal
to tflite-micro's on the written .tflite, in both kernel variants."""
from __future__ import annotations

import shutil
import numpy as np
import pytest

from zoo import ZOO, zoo_int8

pytest.importorskip("torch")
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
            "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "LOGISTIC", "SOFTMAX"} <= kinds


@needs_cc
@pytest.mark.parametrize("name", NAMES)
def test_zoo_bit_exact_with_tflm_on_the_host_board(name, built, written):
    from toolchain.tflm_oracle import TflmRunner
    variant, gens, lib = built
    q, path = written[name]
    tf = TflmRunner(path.read_bytes())
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
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

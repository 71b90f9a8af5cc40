"""Generated firmware on the emulated Cortex-M4 (mps2-an386) and M7 (mps2-an500): both
MLPerf Tiny models and a PyTorch-converted digits CNN, portable and DSP kernels; every
output byte equal to tflite-micro on 50 random inputs per build (one QEMU boot each),
plus the model messages (info, per-layer counts, an intermediate output, the host board)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hil_common import digits_model

MODELS = Path("/work/shared/models/mlperf-tiny")
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and "
                                 "arm-none-eabi-gcc (apt-get install --no-install-recommends "
                                 "qemu-system-arm gcc-arm-none-eabi)")]
N_INPUTS = 50

# (board, kernels): M4 both variants, M7 DSP (+ portable for the small models)
CONFIGS = [("mps2-an386", "portable"), ("mps2-an386", "dsp"), ("mps2-an500", "dsp"),
           ("mps2-an500", "portable")]


def _model(name):
    if name == "digits":
        return digits_model()[0]
    p = MODELS / name
    if not p.exists():
        pytest.skip(f"{p} not present")
    return p


@pytest.mark.parametrize("board,kernels", CONFIGS)
@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
                                  "digits"])
def test_bit_exact_on_qemu(name, board, kernels, tmp_path_factory):
    if name.startswith("pretrained") and (board, kernels) == ("mps2-an500", "portable"):
        pytest.skip("ResNet-8 portable runs on the M4 already (test time)")
    from converters import load_model
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    from toolchain.link.model import ModelClient
    path = _model(name)
    out = Path("build") / "test-codegen" / f"{board}-{Path(name).stem}-{kernels}"
    rep = build_model(path, board, out, kernels=kernels, measure_tflm=False)
    assert rep["kernels"] == kernels
    g = load_model(path)
    tf = TflmRunner(Path(path).read_bytes())
    rng = np.random.default_rng(11)
    shape = g.t(g.inputs[0]).shape
    xs = rng.integers(-128, 128, size=(N_INPUTS,) + tuple(shape)).astype(np.int8)
    with start_device(board, load_build(rep["build_dir"])) as dev:
        client = ModelClient(dev.link())
        info = client.info()
        assert info.model_hash == g.model_hash()
        assert info.count_unit == "instructions"
        assert info.arena_size == rep["ram"]["arena"]
        assert [list(t.shape) for t in info.inputs] == [list(shape)]
        counts = set()
        for i, x in enumerate(xs):
            out_b, count = client.infer(x.tobytes())
            want = tf.run(x)[0].reshape(-1)
            assert np.frombuffer(out_b, np.int8).tolist() == want.tolist(), \
                f"{name} on {board} ({kernels}): input {i} differs from tflite-micro"
            counts.add(count)
        lt = client.layer_times()
        assert len(lt) == len(g.ops) and all(c > 0 for c in lt[:1])
        assert abs(sum(lt) - count) <= 200 * len(lt)
        if (board, kernels) == ("mps2-an386", "dsp"):
            from toolchain.ir import reference
            # a layer whose output the arena keeps (not inside a streamed segment)
            k = next(k for k in range(min(3, len(g.ops) - 1), len(g.ops))
                     if k not in rep["plan"]["streamed"])
            want = reference.run(g, {g.inputs[0]: xs[-1]}, keep_intermediates=True)
            got = client.layer_output(k)
            assert got == np.asarray(want[g.ops[k].outputs[0]]).astype(np.int8).tobytes()


def test_host_board_model_messages(tmp_path):
    """The firmware compiled natively: same messages, counts in ns."""
    if not shutil.which("cc"):
        pytest.skip("needs a host C compiler")
    from converters import load_model
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    from toolchain.link.model import ModelClient
    path = _model("kws_ref_model.tflite")
    rep = build_model(path, "host", tmp_path / "b", kernels="dsp", measure_tflm=False)
    g = load_model(path)
    tf = TflmRunner(path.read_bytes())
    x = np.random.default_rng(0).integers(-128, 128, size=g.t(g.inputs[0]).shape).astype(np.int8)
    with start_device("host", load_build(rep["build_dir"])) as dev:
        c = ModelClient(dev.link())
        assert c.info().count_unit == "ns"
        out, ns = c.infer(x.tobytes())
        assert np.frombuffer(out, np.int8).tolist() == tf.run(x)[0].reshape(-1).tolist()
        assert ns > 0
        name, size = c.layer_info(0)
        assert name.startswith("CONV_2D") and size == g.t(g.ops[0].outputs[0]).nbytes
        assert len(c.layer_output(len(g.ops) - 1)) == 12


def test_model_too_big_is_refused_with_needs(tmp_path, monkeypatch):
    """A board with 32 KiB RAM cannot hold ResNet-8's arena: one line, needed vs available."""
    from toolchain.build_model import build_model
    from toolchain.errors import BuildError
    src = Path(__file__).resolve().parent.parent / "hw" / "boards" / "mps2-an386.toml"
    text = src.read_text().replace('name = "mps2-an386"', 'name = "tiny-m4"')
    text = text.replace("ram_size = 0x40000", "ram_size = 0x8000").replace("default = true",
                                                                             "default = false")
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "tiny-m4.toml").write_text(text)
    monkeypatch.setenv("MCU_BOARDS_PATH", str(tmp_path / "boards"))
    with pytest.raises(BuildError, match=r"RAM needs [\d,]+ B, has 32,768 B"):
        build_model(_model("pretrainedResnet_quant.tflite"), "tiny-m4", tmp_path / "b",
                    measure_tflm=False)
    assert not (tmp_path / "b").exists(), "a failed build left its build directory"

"""int16 ("16x8") models in `mcu hil` and `mcu infer`: the wire carries int16 inputs and
outputs as 2 bytes per element, little endian; the model descriptor is version 2 with
dtype 2 for them (version 1, int8 only, is unchanged); outputs byte-exact with
tflite-micro; regression figures on the dequantized outputs.

- unit (no device): descriptor versions and the refusals of old firmware / unknown
  versions, data preparation (int16 / float / refused int8), the runner and the
  divergence finder with the fake client (a corrupted int16 layer is found);
- the CLI end to end on the host board (`mcu hil` with regression targets, `mcu infer`
  --check) and on QEMU mps2-an386 (`mcu hil` with class labels)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import HAVE_CC, HAVE_QEMU, ROOT  # noqa: E402

MCU = [sys.executable, "-c", "from toolchain.cli import main; main()"]
CACHE = ROOT / "build" / "hil-test"


def _mcu(*args, timeout=300):
    return subprocess.run([*MCU, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _models16():
    """(name, int16 graph, float torch module, NCHW input shape): test_int16.py's two."""
    pytest.importorskip("torch")
    from int16gen import int16_models
    return int16_models()


@pytest.fixture(scope="module")
def models16():
    return _models16()


def _write(q, path: Path) -> Path:
    from converters.tflite_writer import write_tflite
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(write_tflite(q))
    return path


# ---------------------------------------------------------------- unit
def test_descriptor_v2_for_int16_io_and_refusals(models16):
    from toolchain.codegen.generate import _desc_blob
    from toolchain.errors import LinkError
    from toolchain.hil.errors import ModelMismatch
    from toolchain.hil.session import check_model_hash, load_int8_model
    from toolchain.link.link import DeviceInfo
    from toolchain.link.model import ModelDeviceInfo
    name, q, _, _ = models16[1]
    blob = _desc_blob(q, b"\x01\x02", 1000)
    assert blob[0] == 2
    base = DeviceInfo(model_hash=q.model_hash(), board="host")
    info = ModelDeviceInfo.parse_desc(base, blob)
    assert [t.dtype for t in info.inputs + info.outputs] == ["int16", "int16"]
    assert info.inputs[0].nbytes == 2 * q.t(q.inputs[0]).size
    m = load_int8_model(q)
    assert m.in_dtype == np.dtype("<i2") and m.out_dtype == np.dtype("<i2")
    check_model_hash(info, m, "x")                     # passes
    # firmware generated before int16 I/O: version 1 with dtype 1 for int16 tensors
    old = bytearray(blob)
    old[0] = 1
    off = 12 + 2
    old[off] = 1                                      # input dtype byte
    for _ in range(1):
        rank = old[off + 1]
        off += 2 + 4 * rank + 8
    old[off] = 1                                      # output dtype byte
    info1 = ModelDeviceInfo.parse_desc(base, bytes(old))
    with pytest.raises(ModelMismatch, match="predates int16 I/O; rebuild"):
        check_model_hash(info1, m, "x")
    # a version this host does not know; version 1 with an int16 dtype
    with pytest.raises(LinkError, match="unknown model descriptor version 3"):
        ModelDeviceInfo.parse_desc(base, bytes([3]) + blob[1:])
    with pytest.raises(LinkError, match="version 1 with tensor dtype 2"):
        ModelDeviceInfo.parse_desc(base, bytes([1]) + blob[1:])
    # int8 models keep descriptor version 1
    from toolchain.ir import Graph  # noqa: F401  (layering: only the IR)
    from hil_common import digits_model
    from converters import load_model
    g8 = load_model(digits_model()[0])
    assert _desc_blob(g8, b"", 0)[0] == 1


def test_int16_data_preparation(models16):
    from toolchain.hil.data import prepare
    from toolchain.hil.errors import DataError
    _, q, _, _ = models16[0]
    t = q.t(q.inputs[0])
    s = float(t.quant.scale[0])
    shape = tuple(t.shape[1:])
    xf = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    d = prepare(xf, None, shape, s, 0, dtype=np.int16)
    assert d.xq.dtype == np.int16 and np.array_equal(d.xq, np.clip(np.round(xf.astype(np.float64) / s), -32768,
                                                                     32767))
    d = prepare(d.xq, np.array([1, 2, 3]), shape, s, 0, 10, dtype=np.int16)
    assert d.source_dtype == "int16" and d.y.tolist() == [1, 2, 3] and d.targets is None
    with pytest.raises(DataError, match="give float32 .* or int16"):
        prepare(xf.astype(np.int8), None, shape, s, 0, dtype=np.int16)
    # regression targets: (N, output size) floats
    d = prepare(xf, np.zeros((3, 10)), shape, s, 0, 10, dtype=np.int16, out_size=10)
    assert d.y is None and d.targets.shape == (3, 10)


def test_runner_and_divergence_finder_int16_fake(models16):
    from toolchain.hil.data import prepare
    from toolchain.hil.debug import find_divergence
    from toolchain.hil.fake import FakeModelClient
    from toolchain.hil.reference import HostReference
    from toolchain.hil.runner import HilConfig, format_summary, run_samples
    _, q, _, _ = models16[1]
    t, o = q.t(q.inputs[0]), q.t(q.outputs[0])
    rng = np.random.default_rng(2)
    x = rng.integers(-32768, 32768, size=(4,) + tuple(t.shape[1:])).astype(np.int16)
    ref = HostReference(q)
    assert ref.name == "tflite-micro" and ref.out_dtype == np.int16
    ys = np.stack([ref(xi) for xi in x]).astype(np.float64) * float(o.quant.scale[0]) + 0.01
    data = prepare(x, ys, tuple(t.shape[1:]), float(t.quant.scale[0]), 0, 3,
                   dtype=np.int16, out_size=o.size)
    oq = (float(o.quant.scale[0]), 0)
    res = run_samples(FakeModelClient(q), data, ref, HilConfig(progress=False), out_quant=oq)
    s = res.summary()
    assert s["passed"] and s["agree_exact"] == 4 and s["output_dtype"] == "int16"
    assert abs(s["regression"]["device_rmse"] - 0.01) < 1e-9
    assert "regression:" in format_summary(res)
    bad = FakeModelClient(q, corrupt_layer=1, corrupt_positions=(5,), corrupt_xor=0x100)
    res = run_samples(bad, data, ref, HilConfig(progress=False), out_quant=oq)
    assert not res.passed
    dv = find_divergence(bad, q, ref, x[0], 0)
    assert dv["first_layer"]["index"] == 1 and dv["flat_positions"] == [5]
    assert dv["max_abs_diff"] == 256


# ---------------------------------------------------------------- on firmware
def _regression_data(q, m, shape, path: Path, n: int = 6):
    """Float inputs (NCL as PyTorch feeds Conv1d) and the float model's outputs as y."""
    import torch
    x = np.random.default_rng(7).standard_normal((n,) + tuple(shape[1:])).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    np.savez(path, x=x, y=y)
    return path


@pytest.mark.skipif(not HAVE_CC, reason="needs cc")
def test_hil_and_infer_int16_on_the_host_board(models16, tmp_path):
    name, q, m, shape = models16[1]                       # res1d: 3 regression outputs
    model = _write(q, tmp_path / "res1d16.tflite")
    data = _regression_data(q, m, shape, tmp_path / "reg.npz")
    js = tmp_path / "hil.json"
    r = _mcu("hil", model, "--board", "host", "--data", data, "--json", js)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "6/6 outputs identical to tflite-micro" in r.stdout and "PASS" in r.stdout
    assert "regression:" in r.stdout and "NCL" in r.stdout
    s = json.loads(js.read_text())["summary"]
    assert s["output_dtype"] == "int16" and s["max_abs_diff"] == 0
    reg = s["regression"]
    assert reg["device_rmse"] == reg["host_rmse"] and reg["samples"] == 6
    # mcu infer: int16 .npy as is, checked against tflite-micro
    x16 = np.random.default_rng(3).integers(-32768, 32768, size=(2,) + tuple(
        q.t(q.inputs[0]).shape[1:])).astype(np.int16)
    np.save(tmp_path / "x16.npy", x16)
    ji = tmp_path / "infer.json"
    r = _mcu("infer", model, "--board", "host", "--input", tmp_path / "x16.npy", "--json", ji)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "bit-exact with tflite-micro: 2/2" in r.stdout
    from toolchain.tflm_oracle import TflmRunner
    want = TflmRunner(model.read_bytes()).run(x16[0])[0].reshape(-1)
    assert json.loads(ji.read_text())["results"][0]["output"] == want.tolist()
    # int8 data for an int16 model: one line, exit 2 (bad data)
    np.savez(tmp_path / "bad.npz", x=x16.astype(np.int8))
    r = _mcu("hil", model, "--board", "host", "--data", tmp_path / "bad.npz")
    assert r.returncode != 0 and "or int16 (already quantized)" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_hil_int16_on_qemu_m4(models16, tmp_path):
    name, q, m, shape = models16[0]                       # cnn: softmax over 10 classes
    model = _write(q, tmp_path / "cnn16.tflite")
    x = np.random.default_rng(4).standard_normal((5,) + tuple(shape[1:])).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5) % 10)
    js = tmp_path / "hil.json"
    r = _mcu("hil", model, "--board", "mps2-an386", "--data", tmp_path / "d.npz", "--json", js)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "5/5 outputs identical to tflite-micro" in r.stdout
    j = json.loads(js.read_text())
    assert j["summary"]["output_dtype"] == "int16" and j["summary"]["latency"]["min"] > 0
    assert j["device"]["inputs"][0]["dtype"] == "int16"
    assert j["summary"]["device_accuracy"] == j["summary"]["host_accuracy"]

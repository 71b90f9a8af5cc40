"""`mcu build MODEL.onnx --calib` quantizes first (the `mcu convert` path), and the firmware it
builds runs the same model: same model hash as `mcu convert`, outputs equal to tflite-micro."""
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def mcu(*args, cwd):
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from toolchain.examples.digits import train_digits_cnn
    d = tmp_path_factory.mktemp("onnx_build")
    model, (x_train, _, x_test, _) = train_digits_cnn(seed=0, epochs=3)
    torch.onnx.export(model, (torch.from_numpy(x_train[:1]),), d / "digits.onnx", dynamo=False,
                      input_names=["input"], output_names=["probs"])
    np.savez(d / "calib.npz", x=x_train[:200])
    np.save(d / "x.npy", x_test[:6])
    return d


def test_build_onnx_with_calib_on_host_board(onnx_model):
    d = onnx_model
    r = mcu("build", "digits.onnx", "--calib", "calib.npz", "--board", "host", "-o", "b",
            "--json", "b.json", "--no-tflm", cwd=d)
    assert r.returncode == 0, r.stderr
    rep = json.loads((d / "b.json").read_text())
    c = mcu("convert", "digits.onnx", "--calib", "calib.npz", "-o", "conv", "--json", "c.json", cwd=d)
    assert c.returncode == 0, c.stderr
    conv = json.loads((d / "c.json").read_text())
    assert rep["model_hash"] == conv["model_hash"]

    # The quantized model the build used is kept beside the firmware; run it on the device.
    tfl = d / "b" / "converted" / "model.tflite"
    assert tfl.exists()
    r = mcu("infer", tfl, "--board", "host", "--input", "x.npy", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "bit-exact with tflite-micro: 6/6" in r.stdout


def test_build_float_model_without_calib_is_one_line(onnx_model):
    r = mcu("build", "digits.onnx", "--board", "host", "-o", "b2", cwd=onnx_model)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--calib" in r.stderr
    assert not (onnx_model / "b2" / "firmware").exists()

"""`mcu convert` end to end, its error cases, and the C array writer."""
import io
import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from converters.c_array import c_array_sources, write_c_array  # noqa: E402
from toolchain.cli import main  # noqa: E402


def export(module, shape, path, **kw):
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), str(path), dynamo=False,
                          opset_version=17, **kw)
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """An (untrained) digits CNN as ONNX + NCHW calibration data with labels."""
    from toolchain.examples.digits import make_digits_cnn
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("cnn")
    onnx_path = export(make_digits_cnn(), (1, 1, 8, 8), d / "cnn.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32),
             y=rng.integers(0, 10, 40))
    return d, onnx_path, d / "calib.npz"


def mcu(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(r, out_dir, *words):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for w in words:
        assert w in lines[0], lines[0]
    assert not os.path.exists(out_dir)
    leftovers = [f for f in os.listdir(os.path.dirname(out_dir)) if f.startswith(".mcu-convert")]
    assert not leftovers


def test_convert_onnx(cnn):
    d, model, calib = cnn
    out = d / "out"
    r = mcu("convert", model, "--calib", calib, "-o", out, "--json", d / "s.json")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["model.tflite", "model_data.c", "model_data.h"]
    for word in ("CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "parameters", "scale=",
                 "zero_point=", "model hash", "top-1 agreement", "NCHW (transposed to NHWC)",
                 "byte-identical"):
        assert word in r.output, word
    s = json.loads((d / "s.json").read_text())
    assert s["float_vs_int8"]["samples"] == 40 and s["tflm_check"]["bit_exact"]
    assert s["outputs"][0]["scale"] == 1 / 256 and s["inputs"][0]["dtype"] == "int8"
    tfl = (out / "model.tflite").read_bytes()
    assert s["tflite_sha256"] in (out / "model_data.h").read_text()

    # an int8 .tflite passes through unchanged
    out2 = d / "out2"
    r = mcu("convert", out / "model.tflite", "-o", out2)
    assert r.exit_code == 0, r.output
    assert (out2 / "model.tflite").read_bytes() == tfl


def test_convert_pt2_and_float_tflite(cnn, tmp_path):
    from converters import from_onnx
    from converters.tflite_writer import write_tflite
    from toolchain.examples.digits import make_digits_cnn
    _, model, calib = cnn
    torch.manual_seed(1)
    ep = torch.export.export(make_digits_cnn().eval(), (torch.randn(1, 1, 8, 8),))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    r = mcu("convert", tmp_path / "m.pt2", "--calib", calib, "-o", tmp_path / "o1",
            "--method", "percentile")
    assert r.exit_code == 0, r.output
    assert "percentile" in r.output
    # a float .tflite is quantized; its calibration data is NHWC
    try:
        float_tfl = write_tflite(from_onnx(str(model)))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"tflite writer does not write float graphs: {e}")
    (tmp_path / "f.tflite").write_bytes(float_tfl)
    np.savez(tmp_path / "nhwc.npz", x=np.load(calib)["x"].transpose(0, 2, 3, 1))
    r = mcu("convert", tmp_path / "f.tflite", "--calib", tmp_path / "nhwc.npz", "-o",
            tmp_path / "o2", "--method", "mse")
    assert r.exit_code == 0, r.output


def test_errors(cnn, tmp_path):
    d, model, calib = cnn
    out = tmp_path / "out"
    # missing --calib for a float model
    assert_clean_error(mcu("convert", model, "-o", out), out, "--calib")
    # calibration data of the wrong shape
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 8, 8, 1), np.float32))
    assert_clean_error(mcu("convert", model, "--calib", tmp_path / "bad.npz", "-o", out), out,
                       "(3, 8, 8, 1)", "(N, 1, 8, 8)")
    np.savez(tmp_path / "nox.npz", inputs=np.zeros((3, 1, 8, 8), np.float32))
    assert_clean_error(mcu("convert", model, "--calib", tmp_path / "nox.npz", "-o", out), out,
                       "no array 'x'")
    # unsupported op
    sig = export(nn.Sequential(nn.Linear(4, 4), nn.Softplus()), (1, 4), tmp_path / "sig.onnx")
    assert_clean_error(mcu("convert", sig, "--calib", calib, "-o", out), out, "Softplus", "node")
    # dynamic shapes
    dyn = export(nn.Linear(4, 4), (1, 4), tmp_path / "dyn.onnx", input_names=["feat"],
                 dynamic_axes={"feat": {0: "batch"}})
    assert_clean_error(mcu("convert", dyn, "--calib", calib, "-o", out), out, "'feat'",
                       "dynamic")
    # corrupt / truncated / unknown files
    data = open(model, "rb").read()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 3])
    assert_clean_error(mcu("convert", tmp_path / "trunc.onnx", "--calib", calib, "-o", out),
                       out, "not a valid ONNX model")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    assert_clean_error(mcu("convert", tmp_path / "junk.tflite", "-o", out), out)
    (tmp_path / "junk.pt2").write_bytes(b"PK\x03\x04garbage")
    assert_clean_error(mcu("convert", tmp_path / "junk.pt2", "--calib", calib, "-o", out), out,
                       ".pt2")
    (tmp_path / "m.h5").write_bytes(b"x")
    assert_clean_error(mcu("convert", tmp_path / "m.h5", "-o", out), out, "unknown model format")
    assert_clean_error(mcu("convert", tmp_path / "nope.onnx", "-o", out), out, "no such file")


# -- C arrays ------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_array_compiles_and_matches(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 1001, dtype=np.uint8))
    (tmp_path / "ref.bin").write_bytes(data)
    write_c_array(data, tmp_path, "model_data")
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include <string.h>\n#include "model_data.h"\n'
        "int main(void) {\n"
        "  if (((uintptr_t)model_data) % 16) return 2;\n"
        "  if (model_data_len != MODEL_DATA_LEN) return 3;\n"
        "  if (strcmp(model_data_sha256, MODEL_DATA_SHA256)) return 4;\n"
        "  fwrite(model_data, 1, model_data_len, stdout);\n  return 0;\n}\n")
    builds = [["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
              ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"]]
    if shutil.which("c++"):
        builds.append(["c++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"])
    for cmd in builds:
        exe = tmp_path / "prog"
        subprocess.run(cmd + ["main.c", "model_data.c", "-o", str(exe)], cwd=tmp_path, check=True)
        got = subprocess.run([str(exe)], capture_output=True, check=True).stdout
        assert got == data, cmd


def test_c_array_header_contents():
    import hashlib
    h, c = c_array_sources(b"\x01\x02\x03", "kws_model")
    assert "#ifndef KWS_MODEL_H_" in h and 'extern "C"' in h
    digest = hashlib.sha256(bytes([1, 2, 3])).hexdigest()
    assert f'#define KWS_MODEL_SHA256 "{digest}"' in h
    assert "KWS_MODEL_ALIGN const unsigned char kws_model[]" in c and "0x01, 0x02, 0x03" in c
    with pytest.raises(ValueError):
        c_array_sources(b"", "bad-name")


MLPERF = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models", "mlperf-tiny",
                      "kws_ref_model.tflite")


@pytest.mark.skipif(not os.path.exists(MLPERF), reason="MLPerf Tiny models not available")
def test_mlperf_kws_passthrough(tmp_path):
    r = mcu("convert", MLPERF, "-o", tmp_path / "kws", "--json", tmp_path / "k.json")
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "k.json").read_text())
    assert s["tflm_check"]["bit_exact"] and s["ops"]["DEPTHWISE_CONV_2D"] == 4

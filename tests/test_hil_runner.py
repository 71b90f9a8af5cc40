"""HIL runner, data checks, reports and divergence finder against a fake model client
(no device): fast, and covers the error paths one line each."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import digits_model  # noqa: E402
from toolchain.hil.api import run_hil
from toolchain.hil.data import prepare
from toolchain.hil.errors import DataError, ModelMismatch
from toolchain.hil.fake import FakeModelClient
from toolchain.hil.runner import HilConfig, format_summary
from toolchain.hil.session import HilDevice, load_int8_model


@pytest.fixture(scope="module")
def digits():
    model, data = digits_model()
    return load_int8_model(model), data


def _dev(m, **kw):
    return HilDevice(m, "host", client=FakeModelClient(m.graph, **kw))


def test_clean_run_agrees_and_reports(digits, tmp_path):
    m, data = digits
    res = run_hil(m, data, device=_dev(m), config=HilConfig(limit=40, progress=False,
                                                            min_accuracy=0.8),
                  json_path=tmp_path / "r.json", html_path=tmp_path / "r.html")
    assert res.passed and res.complete and res.agree == 40 and res.max_abs_diff == 0
    assert res.oracle == "tflite-micro"
    assert res.device_accuracy == res.host_accuracy >= 0.8
    j = json.loads((tmp_path / "r.json").read_text())
    assert j["summary"]["agree_exact"] == 40 and j["summary"]["passed"]
    assert len(j["samples"]) == 40 and j["samples"][0]["device_out"] == j["samples"][0]["host_out"]
    assert len(j["layers"]) == len(m.graph.ops) and j["memory_plan"]["buffers"]
    assert sum(map(sum, j["confusion"])) == 40
    assert "NCHW" in j["meta"]["layout"]
    text = format_summary(res)
    assert "40/40 outputs identical to tflite-micro" in text and "PASS" in text
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "Confusion" in html


def test_int8_and_nhwc_input_give_the_same_bytes(digits, tmp_path):
    m, data = digits
    z = np.load(data)
    q = m.in_tensor.quant
    x_nhwc = z["x"][:10].transpose(0, 2, 3, 1)
    xq = np.clip(np.round(x_nhwc / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)
    np.savez(tmp_path / "q.npz", x=xq, y=z["y"][:10])
    a = run_hil(m, data, device=_dev(m), config=HilConfig(limit=10, progress=False))
    b = run_hil(m, tmp_path / "q.npz", device=_dev(m), config=HilConfig(progress=False))
    assert [s.device_out for s in a.samples] == [s.device_out for s in b.samples]
    assert "NHWC" in b.meta["layout"] and b.meta["data_dtype"] == "int8"


def test_divergence_finder_names_the_corrupted_layer(digits):
    m, data = digits
    # A large error in FULLY_CONNECTED (layer 6) reaches the output.
    res = run_hil(m, data, device=_dev(m, corrupt_layer=6, corrupt_positions=(2, 7),
                                       corrupt_xor=0x40),
                  config=HilConfig(limit=8, progress=False))
    assert not res.passed and res.agree < 8
    d = res.divergence
    assert d["first_layer"]["index"] == 6 and d["first_layer"]["type"] == "FULLY_CONNECTED"
    assert d["count"] == 2 and d["positions"] == [[0, 2], [0, 7]]
    assert "first differing layer: 6" in d["message"]
    # A 1-LSB error early on is absorbed by pooling/softmax: outputs agree, but
    # --debug-layer still finds it.
    res = run_hil(m, data, device=_dev(m, corrupt_layer=2, corrupt_positions=(5,)),
                  config=HilConfig(limit=3, progress=False, debug_layer=True))
    assert res.divergence["first_layer"]["index"] == 2
    assert res.divergence["positions"] == [[0, 0, 0, 5]]


def test_tolerance_and_min_accuracy(digits):
    m, data = digits
    dev = _dev(m, corrupt_layer=7, corrupt_positions=(0,), corrupt_xor=0x01)
    res = run_hil(m, data, device=dev, config=HilConfig(limit=10, progress=False, tolerance=1))
    assert res.max_abs_diff <= 1 and res.passed
    res = run_hil(m, data, device=_dev(m), config=HilConfig(limit=10, progress=False,
                                                            min_accuracy=1.01))
    assert any("below --min-accuracy" in f for f in res.failures())


def test_device_stopping_keeps_partial_results(digits, tmp_path):
    m, data = digits
    res = run_hil(m, data, device=_dev(m, die_after=5), json_path=tmp_path / "p.json",
                  config=HilConfig(limit=20, progress=False))
    assert res.stopped["at"] == 5 and res.done == 5 and not res.passed
    j = json.loads((tmp_path / "p.json").read_text())
    assert j["summary"]["complete"] is False and j["summary"]["samples_done"] == 5
    assert len(j["samples"]) == 5 and "did not answer" in j["summary"]["stopped"]["error"]


def test_wrong_model_hash_is_refused(digits):
    m, _ = digits
    with pytest.raises(ModelMismatch, match="runs model .* not .*flash the firmware"):
        _dev(m, model_hash="ab" * 32)


@pytest.mark.parametrize("x,y,msg", [
    (np.zeros((4, 8, 8), np.float32), None, r"shape \(4, 8, 8\); the model's input is \(N, 8, 8, 1\)"),
    (np.zeros((4, 1, 8, 8), np.int32), None, "dtype int32; give float32"),
    (np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 2, 10]), r"label y\[3\] = 10 is out of range"),
    (np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1]), "2 entries for 4 samples"),
    (np.full((2, 1, 8, 8), np.nan, np.float32), None, "NaN"),
    (np.zeros((0, 1, 8, 8), np.float32), None, "empty"),
])
def test_bad_data(digits, x, y, msg):
    m, _ = digits
    q = m.in_tensor.quant
    with pytest.raises(DataError, match=msg):
        prepare(x, y, m.in_tensor.shape[1:], q.scale[0], q.zero_point[0], m.num_classes)


@pytest.mark.parametrize("kind", ["shape", "labels", "nofile", "nox", "float_model"])
def test_cli_bad_input_one_line(digits, tmp_path, kind):
    from toolchain.cli import main
    m, data = digits
    model = m.path
    p = tmp_path / "d.npz"
    if kind == "shape":
        np.savez(p, x=np.zeros((3, 7, 7), np.float32))
    elif kind == "labels":
        np.savez(p, x=np.zeros((3, 1, 8, 8), np.float32), y=np.array([1, -1, 3]))
    elif kind == "nox":
        np.savez(p, images=np.zeros((3, 1, 8, 8), np.float32))
    elif kind == "float_model":
        model = tmp_path / "f.onnx"
        model.write_bytes(b"not onnx")
        np.savez(p, x=np.zeros((3, 1, 8, 8), np.float32))
    else:
        p = tmp_path / "missing.npz"
    r = CliRunner().invoke(main, ["hil", str(model), "--board", "host", "--data", str(p), "-q"])
    assert r.exit_code != 0
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in r.output

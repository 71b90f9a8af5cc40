"""TFLite Micro measured side by side through the tflm-m4 kit (issue #14, item 1):
the wrapper (toolchain.tflm_kit), `mcu bench MODEL.tflite --json` through the CLI, and
the labelled host-interpreter fallback when the kit is absent."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain import tflm_kit

HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
ok, _why = tflm_kit.available()
needs_kit = pytest.mark.skipif(not (ok and HAVE_QEMU),
                               reason="needs ../shared/tflm-m4, qemu-system-arm, arm-none-eabi-gcc")


def _digits():
    kit = tflm_kit.find_kit()
    return kit / "examples" / "digits_cnn_int8.tflite", (kit / "examples" / "digit0.bin")


@pytest.mark.qemu
@needs_kit
def test_kit_measures_one_variant_with_our_input():
    from toolchain.tflm_oracle import TflmRunner
    model, _ = _digits()
    x = np.random.default_rng(3).integers(-128, 128, (1, 8, 8, 1)).astype(np.int8)
    res = tflm_kit.measure(model, ("cmsis",), x.tobytes())
    assert list(res) == ["cmsis"]
    r = res["cmsis"]
    assert r.ok, r.error
    assert r.instructions > 10_000 and r.instructions % 40 == 0       # ticks x 40
    assert r.smallest_arena % 16 == 0 and r.smallest_arena >= r.arena_used > 0
    assert r.code_flash > r.tflm_library_flash > 10_000               # model's ops only
    assert "CONV_2D" in r.ops
    # our input went in: the output equals the host interpreter's for the same bytes
    host = TflmRunner(model.read_bytes()).run(x)[0].astype(np.int8).tobytes()
    assert r.output == host and len(r.output) == 10
    assert r.to_json()["output"] == host.hex()


@pytest.mark.qemu
@needs_kit
def test_mcu_bench_user_model_side_by_side(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from toolchain.bench import zoo_tflite
    from toolchain.cli import main
    monkeypatch.chdir(tmp_path)             # build/bench/... lands here
    model = zoo_tflite("tiny_8x8", tmp_path)
    js = tmp_path / "b.json"
    r = CliRunner().invoke(main, ["bench", str(model), "--kernels", "dsp", "--json", str(js)])
    assert r.exit_code == 0, r.output
    assert "TFLite Micro" in r.output and "physical floor" in r.output
    doc = json.loads(js.read_text())
    (res,) = doc["results"]
    assert res["tflm"]["source"] == "tflm-m4"
    ours = res["dsp"]
    vs = ours["vs_tflm"]
    assert vs["counterpart"] == "cmsis"
    for v in ("ref", "cmsis"):
        assert vs[v]["ok"] and vs[v]["output_equal"], vs[v]
        assert vs[v]["ratio"] == pytest.approx(ours["instructions"] / vs[v]["instructions"])
        assert 0 < vs[v]["arena_ratio"] and vs[v]["code_flash"] > 0
    assert ours["bit_exact_host"] == "3/3"
    fl = ours["floor"]
    assert 0 < fl["bytes"] <= ours["arena"] and fl["type"]
    assert "yes" in r.output                 # the output = TFLM column


def test_kit_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(tflm_kit.ENV, str(tmp_path / "nokit"))
    with pytest.raises(tflm_kit.KitMissing) as e:
        tflm_kit.find_kit()
    assert "\n" not in str(e.value) and "nokit" in str(e.value) and tflm_kit.ENV in str(e.value)
    assert tflm_kit.available()[0] is False


def test_qemu_missing_is_one_line(monkeypatch):
    try:
        tflm_kit.find_kit()
    except tflm_kit.KitMissing:
        pytest.skip("no kit")
    monkeypatch.setenv("QEMU_SYSTEM_ARM", "qemu-system-nope")
    with pytest.raises(tflm_kit.KitMissing, match="qemu-system-nope not found"):
        tflm_kit.measure(_digits()[0], ("ref",))


def test_fallback_is_labelled_when_the_kit_is_absent(tmp_path, monkeypatch):
    pytest.importorskip("tflite_micro")
    from toolchain.build_model import tflm_arena_lines, tflm_measure
    try:
        model = _digits()[0]                 # the kit's example model, before hiding the kit
    except tflm_kit.KitMissing:
        pytest.skip("no kit example model")
    monkeypatch.setenv(tflm_kit.ENV, str(tmp_path / "nokit"))
    t = tflm_measure(model, ("cmsis",))
    assert t["source"] == "host" and "not found" in t["fallback"]
    assert t["arena_min_host"] > 0
    (line,) = tflm_arena_lines(3000, t)
    assert "64-bit host interpreter, a fallback" in line and "Cortex-M4 needs less" in line


@pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
def test_mcu_build_vs_tflm_without_the_kit_says_fallback(tmp_path, monkeypatch):
    """`mcu build --vs-tflm` with the kit absent: the build goes on, TFLite Micro's arena
    is the host interpreter's, labelled as a fallback, and no M4 figure is claimed."""
    pytest.importorskip("tflite_micro")
    from converters.tflite_writer import write_tflite
    from toolchain.cli import main
    from toolchain.patch.toy import toy_int8_graph
    monkeypatch.setenv(tflm_kit.ENV, str(tmp_path / "nokit"))
    model = tmp_path / "toy.tflite"
    model.write_bytes(write_tflite(toy_int8_graph()))
    js = tmp_path / "b.json"
    r = CliRunner().invoke(main, ["build", str(model), "--board", "host", "--vs-tflm",
                                  "-o", str(tmp_path / "b"), "--json", str(js)])
    assert r.exit_code == 0, r.output
    assert "64-bit host interpreter, a fallback" in r.output
    assert "not measured on the Cortex-M4" in r.output and "physical floor" in r.output
    rep = json.loads(js.read_text())
    assert rep["tflm"]["source"] == "host" and rep["tflm"]["arena_min_host"] > 0
    assert rep["plan"]["floor"]["bytes"] <= rep["ram"]["arena"]

"""Smoke run of the SNN benchmark (toolchain/bench_snn.py, `make bench-snn`): a tiny MLP
(T = 4, trained one epoch on 200 samples), its float and fixed-point accuracy, and the
rate sweep on QEMU mps2-an386 with DSP kernels (one firmware build): JSON and tables
complete, the device spike-exact, the event-driven cost growing with the input rate."""
import json
import shutil

import pytest

pytest.importorskip("snntorch")
pytest.importorskip("nir")
pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc")]


def test_bench_smoke(tmp_path):
    from toolchain.bench_snn import run
    res = run(T=4, epochs=1, n_dev=0, n_sweep=3, intensities=(0.2, 1.0), n_train=200,
              json_path=tmp_path / "snn_bench.json", out=tmp_path / "b", with_cnn=False,
              models=("mlp",), kernels=("dsp",), echo=lambda m: None)
    saved = json.loads((tmp_path / "snn_bench.json").read_text())
    assert saved["table"] == res["table"]
    r = res["snn"][0]
    assert 0 <= r["fixed_acc"] <= 1 and 0 <= r["float_acc"] <= 1 and "dsp" not in r
    sw = res["rate_sweep"]
    assert sw["exact"]["dsp"] == "6/6"
    assert sw["flash"] > sw["model_flash"] > 0 and sw["ram"] > sw["model_ram"] > 0
    lo, hi = sw["rows"]
    assert lo["input_spike_rate"] < hi["input_spike_rate"]
    assert lo["instr_per_sample_dsp"] < hi["instr_per_sample_dsp"]
    assert 1 < sw["instr_per_synaptic_event"]["dsp"] < 4
    assert "| SNN mlp (T=4) |" in res["table"] and "instructions per synaptic event" in res["table"]

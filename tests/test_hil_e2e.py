"""`mcu hil` end to end on real firmware: the host board (the firmware compiled natively)
and QEMU mps2-an386, a few samples of the digits CNN; a device killed mid-run; a device
running another model; a deliberately corrupted build found by the divergence finder."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import HAVE_CC, HAVE_QEMU, ROOT, digits_model  # noqa: E402


def _need_model_builds():
    try:
        from toolchain.hil.session import _model_client_class
        _model_client_class()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"model builds not available yet: {e}")


BOARDS = [pytest.param("host", marks=pytest.mark.skipif(not HAVE_CC, reason="needs cc")),
          pytest.param("mps2-an386", marks=[pytest.mark.qemu, pytest.mark.skipif(
              not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")])]


MCU = [sys.executable, "-c", "from toolchain.cli import main; main()"]


def _mcu(*args, timeout=240):
    return subprocess.run([*MCU, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("board", BOARDS)
def test_hil_cli_end_to_end(board, tmp_path):
    _need_model_builds()
    model, data = digits_model()
    js, ht = tmp_path / "hil.json", tmp_path / "hil.html"
    r = _mcu("hil", model, "--board", board, "--data", data, "--limit", 12, "--min-accuracy",
             0.5, "--json", js, "--html", ht)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "12/12 outputs identical to tflite-micro" in r.stdout
    assert re.search(r"device accuracy:\s+\d+\.\d\d %", r.stdout)
    assert "NCHW" in r.stdout and "PASS" in r.stdout
    j = json.loads(js.read_text())
    s = j["summary"]
    assert s["passed"] and s["agree_exact"] == 12 and s["max_abs_diff"] == 0
    assert s["device_accuracy"] == s["host_accuracy"]
    lat = s["latency"]
    assert lat["n"] == 12 and lat["min"] > 0
    if board == "mps2-an386":   # -icount: instructions, deterministic per input
        assert lat["unit"] == "instructions" and lat["max"] - lat["min"] < lat["min"] // 50
    assert len(j["layers"]) == 8 and all("latency" in x for x in j["layers"])
    assert j["meta"]["flash_used"] > 0 and j["meta"]["ram_used"] > 0
    assert "<svg" in ht.read_text()
    # the second run reuses the firmware build
    r2 = _mcu("hil", model, "--board", board, "--data", data, "--limit", 2, "-q", "--json", js)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert json.loads(js.read_text())["meta"]["firmware_reused"] is True


@pytest.mark.parametrize("board", BOARDS)
def test_device_killed_mid_run_keeps_partial_results(board, tmp_path):
    """A device that dies mid-run: one clear line, exit 4, partial results in the JSON."""
    _need_model_builds()
    from toolchain.hil.api import run_hil
    from toolchain.hil.runner import HilConfig
    from toolchain.hil.session import HilDevice
    model, data = digits_model()
    with HilDevice(model, board) as dev:
        real = dev.client

        class KillAfter:
            def __init__(self):
                self.n = 0

            def __getattr__(self, k):
                return getattr(real, k)

            def infer(self, b):
                self.n += 1
                if self.n == 6:
                    os.killpg(os.getpgid(dev.device.proc.pid), signal.SIGKILL)
                    dev.device.proc.wait(5)
                return real.infer(b)

        dev.client = KillAfter()
        dev.device.link(timeout=0.5, retries=1)
        js = tmp_path / "p.json"
        res = run_hil(model, data, device=dev, json_path=js,
                      config=HilConfig(limit=20, progress=False))
    assert res.stopped is not None and res.stopped["at"] == 5 and res.done == 5
    assert not res.passed and "device stopped answering at sample 5 (5/20 done)" in \
        res.failures()[0]
    j = json.loads(js.read_text())
    assert j["summary"]["complete"] is False and len(j["samples"]) == 5


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cli_device_stops_answering(tmp_path):
    """`mcu hil --port` on a QEMU board that is killed while the CLI runs."""
    _need_model_builds()
    from toolchain.devices import start_device
    from toolchain.hil.session import build_for_model
    model, data = digits_model()
    fw = build_for_model(model, "mps2-an386")
    js = tmp_path / "p.json"
    z = np.load(data)   # many samples: the run must outlast the kill below
    data = tmp_path / "many.npz"
    np.savez(data, x=np.concatenate([z["x"]] * 10), y=np.concatenate([z["y"]] * 10))
    with start_device("mps2-an386", fw) as dev:
        dev.link().info()
        dev.release()
        p = subprocess.Popen([*MCU, "hil", str(model), "--board",
                              "mps2-an386", "--port", dev.url, "--data", str(data), "-q",
                              "--json", str(js)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            if js.exists() and json.loads(js.read_text())["summary"]["samples_done"] > 0:
                break
            time.sleep(0.05)
        os.killpg(os.getpgid(dev.proc.pid), signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 4, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and lines[0].startswith("error: device stopped answering at sample")
    assert err.rstrip().endswith(lines[0]) and "partial results in" in lines[0]
    assert "Traceback" not in err
    j = json.loads(js.read_text())
    assert j["summary"]["complete"] is False and j["summary"]["samples_done"] == len(j["samples"]) > 0


@pytest.mark.skipif(not HAVE_CC, reason="needs cc")
def test_firmware_for_another_model_is_refused(tmp_path):
    _need_model_builds()
    from toolchain.devices import start_device
    from toolchain.hil.session import build_for_model
    model, data = digits_model()
    other, _ = digits_model(epochs=3)
    fw = build_for_model(other, "host")
    with start_device("host", fw) as dev:
        dev.link().info()
        dev.release()
        r = _mcu("hil", model, "--board", "host", "--port", dev.url, "--data", data, "-q")
    assert r.returncode == 3
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and "runs model" in lines[0] and "not " in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not HAVE_CC, reason="needs cc")
def test_divergence_finder_on_a_corrupted_build(tmp_path):
    """Patch one weight in the generated C of a test build: the finder names that layer."""
    _need_model_builds()
    from toolchain.hil.api import run_hil
    from toolchain.hil.runner import HilConfig
    from toolchain.hil.session import HilDevice, load_int8_model
    model, data = digits_model()
    m = load_int8_model(model)
    target = 6   # FULLY_CONNECTED: its weights feed the output directly
    w = m.graph.t(m.graph.ops[target].inputs[1]).data
    corrupt = _weight_patcher(w)
    with HilDevice(m, "host", patch_c=corrupt, build_dir=tmp_path / "bad") as dev:
        res = run_hil(m, data, device=dev, config=HilConfig(limit=10, progress=False))
    d = res.divergence
    assert d is not None and d["first_layer"] is not None, d
    assert d["first_layer"]["index"] == target and d["first_layer"]["type"] == "FULLY_CONNECTED"
    assert d["count"] >= 1


def _weight_patcher(w: np.ndarray):
    """A patch_c(gen_dir) that finds the C array holding `w` (int8, in order) in the
    generated sources and flips one value."""
    flat = [int(v) for v in np.asarray(w, np.int8).reshape(-1)]
    probe = flat[:12]

    def patch(gen_dir: Path):
        for f in sorted(Path(gen_dir).rglob("*.c")):
            text = f.read_text()
            for mt in re.finditer(r"\{([-\d,\s]+)\}", text):
                nums = [int(v) for v in re.findall(r"-?\d+", mt.group(1))]
                if len(nums) >= len(flat) and nums[:12] == probe and nums[:len(flat)] == flat:
                    nums[0] = nums[0] ^ 0x40 if nums[0] >= 0 else -((-nums[0]) ^ 0x20)
                    new = "{" + ",".join(map(str, nums)) + "}"
                    f.write_text(text[:mt.start()] + new + text[mt.end():])
                    return
        raise AssertionError(f"weights of the target layer not found in {gen_dir}")
    patch.__name__ = "corrupt_weight"
    return patch

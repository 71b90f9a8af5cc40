"""HIL on a labgrid board farm, for real on 127.0.0.1 (issue #13): a coordinator, an
exporter exporting two emulated boards (QEMU mps2-an386 running the digits CNN's
firmware, TCP serial as NetworkSerialPort) and a place without a serial port; `mcu hil
--place` on one place and sharded over two; two runs contending for one place; a client
killed with SIGKILL (the lock stays: `labgrid-client release --kick`) and with
SIGTERM/SIGINT (released); bad places; `pytest -n 2 --mcu-place`; `--jobs N` locally."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import HAVE_CC, HAVE_QEMU, ROOT, digits_model  # noqa: E402

try:
    import labgrid  # noqa: F401
    HAVE_LABGRID = True
except ImportError:
    HAVE_LABGRID = False

needs_farm = [pytest.mark.skipif(not HAVE_LABGRID, reason="needs labgrid (pip install labgrid)"),
              pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and "
                                                       "arm-none-eabi-gcc")]
MCU = [sys.executable, "-m", "toolchain.cli"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _mcu(*args, coordinator=None, timeout=120):
    extra = ["--coordinator", coordinator] if coordinator else []
    return subprocess.run([*MCU, *map(str, args), *extra], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(r):
    assert r.returncode not in (0, 70), (r.returncode, r.stderr[-600:])
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1, r.stderr[-600:]
    return errs[0]


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    if not (HAVE_LABGRID and HAVE_QEMU):
        pytest.skip("needs labgrid and qemu-system-arm")
    from toolchain.bench_farm import LocalFarm
    model, _ = digits_model()
    f = LocalFarm.emulated(model, 2, workdir=tmp_path_factory.mktemp("farm"),
                           extra={"noserial": {"NetworkService": {"address": "127.0.0.1",
                                                                  "username": "nobody"}}},
                           extra_places={"noser": ("mcu-farm/noserial/*", {})})
    with f:
        yield f


def _free(farm):
    from toolchain.farm import place_holder
    return {p: place_holder(p, farm.coordinator) for p in farm.places + ["noser"]}


def _wait_held(farm, place, proc, timeout=60):
    from toolchain.farm import place_holder
    t = time.monotonic() + timeout
    while place_holder(place, farm.coordinator) is None:
        assert proc.poll() is None, proc.communicate()[1][-800:]
        assert time.monotonic() < t, "the run never acquired the place"
        time.sleep(0.1)


def _popen(farm, *args):
    return subprocess.Popen([*MCU, *map(str, args), "--coordinator", farm.coordinator],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.qemu
def test_hil_on_places_merged_equals_single(farm, tmp_path):
    model, data = digits_model()
    j1, j2 = tmp_path / "one.json", tmp_path / "two.json"
    r = _mcu("hil", model, "--data", data, "--limit", 120, "-q", "--place", "mcu-0",
             "--json", j1, coordinator=farm.coordinator)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "acquired place mcu-0 (socket://127.0.0.1:" in r.stderr
    assert "120/120 outputs identical to tflite-micro" in r.stdout
    r = _mcu("hil", model, "--data", data, "--limit", 120, "-q", "--place", "mcu-0",
             "--place", "mcu-1", "--json", j2, coordinator=farm.coordinator)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "2 in parallel, shards of 60/60" in r.stdout
    a, b = json.loads(j1.read_text()), json.loads(j2.read_text())
    assert b["meta"]["places"] == ["mcu-0", "mcu-1"] and a["meta"]["places"] == ["mcu-0"]
    for k in ("device_accuracy", "host_accuracy", "agree_exact", "samples_done", "differ"):
        assert a["summary"][k] == b["summary"][k], k
    assert [s["device_out"] for s in a["samples"]] == [s["device_out"] for s in b["samples"]]
    assert [s["index"] for s in b["samples"]] == list(range(120))
    assert not any(_free(farm).values())          # every place released


@pytest.mark.qemu
def test_contending_runs_wait_or_time_out(farm, tmp_path):
    import numpy as np

    from toolchain.farm import acquire_place
    model, data = digits_model()
    d = np.load(data)
    big = tmp_path / "x3.npz"        # the first run holds the place while the second starts
    np.savez(big, x=np.concatenate([d["x"]] * 3), y=np.concatenate([d["y"]] * 3))
    with acquire_place("mcu-1", coordinator=farm.coordinator):      # someone holds it
        t0 = time.monotonic()
        r = _mcu("hil", model, "--data", data, "--limit", 4, "-q", "--place", "mcu-1",
                 "--place-timeout", 1, coordinator=farm.coordinator)
        line = _one_error_line(r)
        assert r.returncode == 1 and time.monotonic() - t0 < 30
        assert "timed out after 1 s waiting: place mcu-1 is locked by" in line
        assert "release --kick" in line and "waiting:" in r.stderr
    # two real runs: the second waits (with a message) until the first releases
    first = _popen(farm, "hil", model, "--data", big, "-q", "--place", "mcu-1")
    _wait_held(farm, "mcu-1", first)
    second = _mcu("hil", model, "--data", data, "--limit", 8, "-q", "--place", "mcu-1",
                  "--place-timeout", 90, coordinator=farm.coordinator)
    out, err = first.communicate(timeout=90)
    assert "1347/1347 outputs identical" in out
    assert first.returncode == 0, err[-1500:]
    assert second.returncode == 0, second.stderr[-1500:]
    assert "waiting: place mcu-1 is locked by" in second.stderr
    assert "8/8 outputs identical" in second.stdout
    assert not any(_free(farm).values())


@pytest.mark.qemu
def test_killed_client(farm):
    """SIGTERM / SIGINT: our client releases the place. SIGKILL: nothing can run, the
    lock stays with the dead client's host/user until `labgrid-client release --kick`."""
    from toolchain.farm import place_holder
    model, data = digits_model()
    for sig, code in ((signal.SIGTERM, 130), (signal.SIGINT, 130)):
        p = _popen(farm, "hil", model, "--data", data, "-q", "--place", "mcu-0")
        _wait_held(farm, "mcu-0", p)
        time.sleep(0.3)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == code, (sig, p.returncode, err[-800:])
        assert "Traceback" not in err and "error: interrupted" in err
        assert place_holder("mcu-0", farm.coordinator) is None, sig
    p = _popen(farm, "hil", model, "--data", data, "-q", "--place", "mcu-0")
    _wait_held(farm, "mcu-0", p)
    time.sleep(0.3)
    p.kill()
    p.communicate(timeout=30)
    holder = place_holder("mcu-0", farm.coordinator)
    assert holder                                   # left locked by the dead client
    r = _mcu("hil", model, "--data", data, "--limit", 4, "-q", "--place", "mcu-0",
             "--place-timeout", 0.5, coordinator=farm.coordinator)
    line = _one_error_line(r)
    assert f"locked by {holder}" in line and "labgrid-client -p mcu-0 release --kick" in line
    # what the message tells the user to do
    k = subprocess.run([sys.executable, "-m", "labgrid.remote.client", "-x", farm.coordinator,
                        "-p", "mcu-0", "release", "--kick"], capture_output=True, text=True,
                       timeout=60)
    assert k.returncode == 0, k.stderr
    assert place_holder("mcu-0", farm.coordinator) is None
    # the board itself survived the killed connection
    r = _mcu("hil", model, "--data", data, "--limit", 4, "-q", "--place", "mcu-0",
             coordinator=farm.coordinator)
    assert r.returncode == 0 and "4/4 outputs identical" in r.stdout, r.stderr[-1500:]


@pytest.mark.qemu
def test_bad_places_one_line_never_locked(farm, tmp_path):
    model, data = digits_model()
    np_in = tmp_path / "x.npy"
    import numpy as np
    np.save(np_in, np.zeros((1, 8, 8, 1), np.float32))
    c = farm.coordinator
    cases = [
        (["hil", model, "--data", data, "--place", "nope"], "unknown place 'nope'", c),
        (["hil", model, "--data", data, "--place", "noser"], "has no serial port", c),
        (["hil", model, "--data", data, "--place", "mcu-0", "--place", "noser"],
         "has no serial port", c),
        (["hil", model, "--data", data, "--place", "mcu-*", "--jobs", 3], "3 places wanted", c),
        (["hil", model, "--data", data, "--place", "mcu-0"], "cannot reach the labgrid "
         "coordinator at 127.0.0.1:1", "127.0.0.1:1"),
        (["infer", model, "--input", np_in, "--place", "noser"], "has no serial port", c),
        (["infer", model, "--input", np_in, "--place", "nope"], "unknown place", c),
        (["patch", "status", "--place", "noser"], "has no serial port", c),
    ]
    # a place whose board runs another model: exit 3, released
    other = tmp_path / "other.tflite"
    from converters.tflite_writer import write_tflite
    from toolchain.patch.toy import toy_int8_graph
    g = toy_int8_graph()
    other.write_bytes(write_tflite(g))
    np.savez(tmp_path / "o.npz", x=np.zeros((2,) + tuple(g.t(g.inputs[0]).shape[1:]),
                                            np.float32))
    cases.append((["hil", other, "--data", tmp_path / "o.npz", "--place", "mcu-1"],
                  "runs model", c))
    from click.testing import CliRunner

    from toolchain.cli import main
    for args, want, coord in cases:          # in-process: no interpreter start per case
        r = CliRunner().invoke(main, [*map(str, args), "--coordinator", coord])
        assert r.exit_code not in (0, 70) and isinstance(r.exception, (SystemExit, type(None)))
        assert "Traceback" not in r.output, r.output[-1500:]
        errs = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert len(errs) == 1 and want in errs[0], (args, r.output[-600:])
        if want == "runs model":
            assert r.exit_code == 3
        assert not any(_free(farm).values()), args
    # the good path of `mcu infer --place` (board from the place's tag)
    r = CliRunner().invoke(main, ["infer", str(model), "--input", str(np_in), "--place", "mcu-0",
                                  "--coordinator", c])
    assert r.exit_code == 0 and "tflite-micro" in r.output, r.output[-800:]
    assert not any(_free(farm).values())
    # a board whose TOML flashes through OpenOCDDriver, on a place without a USBDebugger
    from toolchain.boards import load_board
    from toolchain.farm import PlaceError, acquire_place
    with acquire_place("mcu-0", coordinator=c) as lease:
        with pytest.raises(PlaceError, match="place mcu-0 has no resource for OpenOCDDriver"):
            lease.flash(model, load_board("nucleo-f446re"))
        with pytest.raises(PlaceError, match="no \\[labgrid\\] flash_driver"):
            lease.flash(model, load_board("mps2-an386"))
    assert not any(_free(farm).values())


@pytest.mark.qemu
def test_pytest_xdist_workers_get_their_own_place(farm, tmp_path):
    pytest.importorskip("xdist")
    model, data = digits_model()
    (tmp_path / "test_inner.py").write_text(f"""
import json, os
import numpy as np
import pytest

@pytest.mark.parametrize("k", range(4))
def test_on_device(mcu_device, mcu_place, mcu_worker, k):
    dev = mcu_device(model={str(model)!r})
    x = np.load({str(data)!r})["x"][k:k + 1].transpose(0, 2, 3, 1)
    assert dev.infer(x).shape[-1] == 10
    with open(os.path.join({str(tmp_path)!r}, mcu_worker + ".txt"), "a") as f:
        f.write(json.dumps([mcu_place.place, dev.url]) + "\\n")
""")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        "--mcu-place", "mcu-*", "--mcu-place-timeout", "60",
                        str(tmp_path / "test_inner.py")], cwd=tmp_path,
                       env=dict(ENV, LG_COORDINATOR=farm.coordinator), capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-1000:]
    used = {}
    for f in tmp_path.glob("gw*.txt"):
        used[f.stem] = {tuple(json.loads(line)) for line in f.read_text().splitlines()}
    assert set(used) == {"gw0", "gw1"}, used
    places = [next(iter(v))[0] for v in used.values()]
    assert all(len(v) == 1 for v in used.values()) and sorted(places) == ["mcu-0", "mcu-1"]
    assert not any(_free(farm).values())


@pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler (cc)")
def test_local_jobs_merge_equals_single_run(tmp_path):
    """--jobs 3 on host boards started here: the merged report equals one device's."""
    model, data = digits_model()
    j1, j3 = tmp_path / "one.json", tmp_path / "three.json"
    r = _mcu("hil", model, "--board", "host", "--data", data, "--limit", 90, "-q", "--json", j1)
    assert r.returncode == 0, r.stderr[-1500:]
    r = _mcu("hil", model, "--board", "host", "--data", data, "--limit", 90, "-q",
             "--jobs", 3, "--json", j3)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "3 in parallel, shards of 30/30/30" in r.stdout
    a, b = json.loads(j1.read_text()), json.loads(j3.read_text())
    for k in ("device_accuracy", "host_accuracy", "agree_exact", "samples_done", "differ",
              "max_abs_diff", "passed"):
        assert a["summary"][k] == b["summary"][k], k
    assert [s["device_out"] for s in a["samples"]] == [s["device_out"] for s in b["samples"]]
    assert len({s["device"] for s in b["meta"]["shards"]}) == 3


def test_shards_and_merge_keep_global_indices():
    import numpy as np

    from toolchain.hil.parallel import merge_results, shard_indices
    from toolchain.hil.runner import HilConfig, HilResult, SampleResult
    sh = shard_indices(10, 4)
    assert [len(s) for s in sh] == [3, 3, 2, 2] and np.concatenate(sh).tolist() == list(range(10))
    assert len(shard_indices(2, 4)) == 2
    parts = []
    for k, idx in enumerate(sh):
        r = HilResult(samples=[SampleResult(index=i, exact=True, max_abs_diff=0, latency=1,
                                            label=0, device_pred=0, host_pred=0)
                               for i in range(len(idx) - (k == 2))],
                      planned=len(idx), config=HilConfig(), oracle="o", latency_unit="ns",
                      num_classes=2,
                      stopped=dict(at=len(idx) - 1, error="gone") if k == 2 else None)
        parts.append((idx, r))
    m = merge_results(parts, 10, HilConfig(), {})
    assert [s.index for s in m.samples] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert m.stopped["at"] == 7 and not m.complete


def test_serial_url_from_place_resources():
    from types import SimpleNamespace as NS

    from toolchain.farm import PlaceError, _serial_url

    def res(cls, **args):
        return NS(cls=cls, args=args)
    assert _serial_url("p", {("NetworkSerialPort", "NetworkSerialPort"): res(
        "NetworkSerialPort", host="h", port=4001, protocol="raw")}) == "socket://h:4001"
    assert _serial_url("p", {("NetworkSerialPort", "NetworkSerialPort"): res(
        "NetworkSerialPort", host="h", port=4002)}) == "rfc2217://h:4002"   # ser2net's
    assert _serial_url("p", {("RawSerialPort", "RawSerialPort"): res(
        "RawSerialPort", port="/dev/ttyACM0")}) == "/dev/ttyACM0"
    two = {("debug", "NetworkSerialPort"): res("NetworkSerialPort", host="h", port=1,
                                               protocol="raw"),
           ("console", "NetworkSerialPort"): res("NetworkSerialPort", host="h", port=2,
                                                 protocol="raw")}
    assert _serial_url("p", two) == "socket://h:2"
    with pytest.raises(PlaceError, match="protocol 'ssh' is not supported"):
        _serial_url("p", {("n", "NetworkSerialPort"): res("NetworkSerialPort", host="h",
                                                           port=1, protocol="ssh")})
    with pytest.raises(PlaceError, match="place p has no serial port .*it has USBDebugger"):
        _serial_url("p", {("d", "USBDebugger"): res("USBDebugger")})

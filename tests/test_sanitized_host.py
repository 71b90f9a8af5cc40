"""The device firmware under AddressSanitizer + UndefinedBehaviorSanitizer (issue #15):
the `host-asan` board (hw/boards/host-asan.toml) is the host board compiled with
-fsanitize=address,undefined -fno-sanitize-recover=undefined, so any out-of-bounds
access, NULL memcpy, signed overflow, bad shift or misaligned load aborts the process
with a report on its stderr (the device log), and the host sees the device die.

A representative set of the suite's device tests runs against it: protocol round trips
and model messages on firmware without a model (incl. 0-byte stream reads), fuzzed
frames, MLPerf Tiny KWS (DSP code paths, emulated intrinsics) and a zoo model (portable
kernels) against tflite-micro, and a patchable model whose authenticated patch sets
biases to the int32 extremes, with power cuts during streaming and apply. Every device
log must be free of sanitizer reports. The host kernels run the extreme-bias cases of
tests/test_kernels_wrap.py with UBSan in a subprocess.

Skips (with the reason) when the C compiler has no sanitizer runtimes."""
from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from toolchain.link.frame import Frame
from toolchain.link.protocol import Msg, Status

BOARD = "host-asan"
ROOT = Path(__file__).resolve().parent.parent
KWS = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")
KEY = bytes(range(32))
I32_MAX, I32_MIN = 2**31 - 1, -2**31
REPORT = re.compile(r"runtime error:|AddressSanitizer|LeakSanitizer|"
                    r"UndefinedBehaviorSanitizer|SUMMARY: \w+Sanitizer")


def _sanitizer_missing() -> str | None:
    """None if cc builds and runs an ASan+UBSan program that reports a signed overflow."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no host C compiler (cc)"
    from toolchain.boards import load_board
    flags = [f for f in load_board(BOARD).cflags if f.startswith("-f")]
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "ub.c", Path(d) / "ub"
        src.write_text("#include <stdlib.h>\nint main(int c, char **v) {\n"
                       "  int x = 2147483647 - 1 + atoi(v[1]);\n  return x + c > 0;\n}\n")
        r = subprocess.run([cc, *flags, str(src), "-o", str(exe)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["failed"])[-1]
            return f"{cc} cannot build with {' '.join(flags)} (no libasan/libubsan?): {last}"
        r = subprocess.run([str(exe), "1"], capture_output=True, text=True)
        if r.returncode == 0 or "runtime error" not in r.stderr:
            return f"{cc}'s sanitizer runtime did not report a signed overflow"
    return None


@pytest.fixture(scope="module")
def sanitizer():
    why = _sanitizer_missing()
    if why:
        pytest.skip(f"sanitizer build of the host board unavailable: {why}")


@pytest.fixture(autouse=True)
def device_logs(sanitizer, tmp_path, monkeypatch):
    """Every device started in the test logs (stderr) into its own directory; after the
    test no log may hold a sanitizer report."""
    logs = tmp_path / "device-logs"
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(logs))
    monkeypatch.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # no LeakSanitizer: the firmware never allocates, and LSan fails where ptrace is barred
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0:strict_string_checks=1")
    yield logs
    reports = []
    for p in sorted(logs.glob("mcu-*.log")):
        text = p.read_text(errors="replace")
        if REPORT.search(text):
            reports.append(f"{p.name}:\n{text[-3000:]}")
    assert not reports, "sanitizer report from the device:\n" + "\n".join(reports[:2])


def _clean(dev) -> None:
    """The device is still running and its log has no report (checked at once, so a
    failure names the step that caused it)."""
    log = dev.log()
    assert not REPORT.search(log), f"sanitizer report:\n{log[-3000:]}"
    assert dev.alive, f"device died:\n{log[-2000:]}"


@pytest.fixture(scope="module")
def plain_fw(sanitizer, tmp_path_factory):
    from toolchain.build import build_firmware
    return build_firmware(BOARD, tmp_path_factory.mktemp("asan-fw"), werror=True)


def _start(fw, flash=None):
    from toolchain.devices import start_device
    return start_device(BOARD, fw, extra_args=["--flash", str(flash)] if flash else [])


# ---- protocol ---------------------------------------------------------------------------
def test_protocol_round_trips_without_model(plain_fw):
    with _start(plain_fw) as dev:
        lk = dev.link()
        info = lk.info()
        assert info.board == BOARD and not info.has_model
        for n in (0, 1, 7, 255, 256, info.max_payload):
            data = random.Random(n).randbytes(n)
            assert lk.echo(data) == data
        lk.device_stats()
        assert lk.ticks()[0] > 0
        # model messages and model streams on firmware without a model: NO_MODEL, or an
        # empty stream (0-byte reads: memcpy from model_input() == NULL before issue #15)
        for t in range(0x20, 0x29):
            for payload in (b"", b"\x00\x00", b"\xff\xff", bytes(9)):
                r = lk.transact(t, payload)
                assert r.status in (Status.NO_MODEL, Status.BAD_LENGTH,
                                    Status.UNKNOWN_TYPE), (t, r)
        for stream in (0x21, 0x23, 0x28):
            r = lk.transact(Msg.XFER_SIZE, bytes([stream]))
            assert r.status == Status.OK and r.payload[:4] == bytes(4)
            for off, n in ((0, 0), (0, 10), (0, 0xFFFF), (1, 1), (0xFFFFFFFF, 5)):
                r = lk.transact(Msg.XFER_READ, struct.pack("<BIH", stream, off, n))
                assert r.status in (Status.OK, Status.BAD_ARG, Status.BAD_STATE), (stream, r)
                assert r.payload == b""
            r = lk.transact(Msg.XFER_BEGIN, struct.pack("<BII", stream, 10, 0))
            assert r.status in (Status.NO_MODEL, Status.UNSUPPORTED)
        assert lk.transact(0x9A, b"x").status == Status.UNKNOWN_TYPE
        _clean(dev)
        lk.exit(0)
        assert dev.wait_exit(10) == 0    # a clean exit: atexit handlers, no report


def _fuzz(lk, rng: random.Random, n_frames: int, types) -> int:
    """Random garbage, mutated frames with valid CRCs and boundary payloads; an ECHO is
    answered correctly after every batch of 100. Returns the frames sent."""
    sent = 0
    boundary = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    while sent < n_frames:
        wire = bytearray()
        for _ in range(100):
            kind = rng.random()
            if kind < 0.2:                         # garbage bytes, with delimiters
                wire += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + b"\0"
            else:
                t = rng.choice(types)
                if kind < 0.6:                     # structured: u8 stream/u32/u16 fields
                    fields = [rng.choice([0x21, 0x23, 0x28, 0x60, 0, 0xFF])]
                    fields += [rng.choice(boundary) for _ in range(rng.randrange(0, 3))]
                    payload = bytes([fields[0]]) + b"".join(
                        struct.pack("<I", v & 0xFFFFFFFF) for v in fields[1:])
                    payload = payload[:rng.choice([len(payload), 1, 5, 7, 9])]
                else:
                    payload = rng.randbytes(rng.choice([0, 1, 2, 4, 7, 9, 13, 64, 300]))
                f = Frame(t, rng.randrange(1, 0x10000), payload)
                raw = bytearray(f.encode())
                if kind > 0.9 and len(raw) > 3:    # corrupt a byte (CRC then fails)
                    raw[rng.randrange(len(raw) - 1)] ^= 1 << rng.randrange(8)
                wire += raw
            sent += 1
        lk.ser.write(bytes(wire))
        probe = rng.randbytes(16)
        assert lk.echo(probe) == probe
    return sent


def test_fuzzed_frames_without_model(plain_fw):
    types = [t for t in range(0x01, 0x80) if t != Msg.EXIT]
    with _start(plain_fw) as dev:
        n = _fuzz(dev.link(), random.Random(15), 20000, types)
        _clean(dev)
    assert n >= 20000


# ---- models -----------------------------------------------------------------------------
def _check_model_device(dev, g, want_fn, n=3, seed=0):
    from toolchain.link.model import ModelClient
    c = ModelClient(dev.link())
    shape = g.t(g.inputs[0]).shape
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        out, _ = c.infer(x.tobytes())
        assert np.frombuffer(out, np.int8).tolist() == want_fn(x).reshape(-1).tolist()
    last = len(g.ops) - 1
    name, size = c.layer_info(last)
    assert size == g.t(g.ops[last].outputs[0]).nbytes
    assert len(c.layer_output(0)) == g.t(g.ops[0].outputs[0]).nbytes
    assert len(c.layer_times()) == len(g.ops)
    lk = dev.link()
    for stream in (0x21, 0x23, 0x28):
        r = lk.transact(Msg.XFER_READ, struct.pack("<BIH", stream, 0, 0))
        assert r.status == Status.OK and r.payload == b""
    _clean(dev)


@pytest.mark.skipif(not KWS.exists(), reason=f"{KWS} not present")
def test_kws_dsp_kernels_match_tflm(tmp_path):
    from converters import load_model
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    rep = build_model(KWS, BOARD, tmp_path / "b", kernels="dsp", measure_tflm=False,
                      werror=True)
    g = load_model(KWS)
    tf = TflmRunner(KWS.read_bytes())
    with start_device(BOARD, load_build(rep["build_dir"])) as dev:
        _check_model_device(dev, g, lambda x: tf.run(x)[0])
        types = [t for t in range(0x01, 0x40) if t != Msg.EXIT]
        assert _fuzz(dev.link(), random.Random(1), 500, types) >= 500
        _check_model_device(dev, g, lambda x: tf.run(x)[0], n=1, seed=1)


def test_zoo_model_portable_kernels_match_tflm(tmp_path):
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).parent))
    from zoo import zoo_int8
    from converters.tflite_writer import write_tflite
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    _, q, _ = zoo_int8("squeeze_excite")          # MEAN, FC, LOGISTIC, MUL, conv, pools
    path = tmp_path / "squeeze_excite.tflite"
    path.write_bytes(write_tflite(q))
    tf = TflmRunner(path.read_bytes())
    rep = build_model(path, BOARD, tmp_path / "b", kernels="portable", measure_tflm=False,
                      werror=True)
    with start_device(BOARD, load_build(rep["build_dir"])) as dev:
        _check_model_device(dev, q, lambda x: tf.run(x)[0])


# ---- patches: extreme biases, power cuts -------------------------------------------------
def _extreme_bias_patch():
    """The toy model (CONV_2D with K % 4 != 0, DEPTHWISE 3x3, FULLY_CONNECTED with
    O % 4 != 0) and an authenticated patch setting every bias to an int32 extreme."""
    from toolchain.patch.make import build_patch
    from toolchain.patch.store import weight_store
    from toolchain.patch.toy import toy_int8_graph
    g0 = toy_int8_graph(0)
    st = weight_store(g0)
    ends = [I32_MAX, I32_MIN, I32_MAX - 7, I32_MIN + 7, I32_MIN, I32_MAX]
    new_q = {}
    for i, t in enumerate(st.tensors):
        if t.patchable and t.dtype == "int32":
            new_q[i] = np.array([ends[(i + j) % len(ends)] for j in range(t.size)], np.int64)
    assert len(new_q) == 3
    return g0, build_patch(g0, new_q, KEY, 1)


def test_extreme_bias_patch_with_power_cuts(tmp_path):
    """The patched model's reference outputs equal tflite-micro's (the reference wraps
    as TFLM does); the sanitized device (DSP code paths, emulated intrinsics) applies
    the patch, survives fuzzed patch messages, and with power cuts at flash operations
    (every 3rd torn) holds the old or the new model after each reboot, outputs
    bit-exact."""
    from converters.tflite_writer import write_tflite
    from toolchain.patch.campaign import verifier
    from toolchain.patch.check import check_outputs, fixed_inputs, reference_outputs
    from toolchain.patch.device import build_patch_model_firmware
    from toolchain.patch.faults import power_cut_campaign
    from toolchain.patch.send import send_patch
    from toolchain.patch.store import weight_store
    from toolchain.tflm_oracle import TflmRunner
    g0, res = _extreme_bias_patch()
    g1 = res.graph
    tf = TflmRunner(write_tflite(g1))
    xs = fixed_inputs(g1, 4)
    assert reference_outputs(g1, xs) == [tf.run(x)[0].tobytes() for x in xs]
    fw, _ = build_patch_model_firmware(g0, BOARD, KEY, tmp_path / "fw", kernels="dsp",
                                       werror=True)
    with _start(fw, tmp_path / "flash0.bin") as dev:
        lk = dev.link()
        assert check_outputs(lk, g0, 4)[0]
        r = send_patch(None, res.data, link=lk)
        assert r.applied
        ok, _, msg = check_outputs(lk, g1, 4)
        assert ok, msg
        # fuzzed core, model and patch messages (not EXIT, not the armed power cut
        # PATCH_FAULT): the device still runs exactly the patched model
        types = [t for t in range(0x01, 0x60) if t not in (Msg.EXIT, Msg.PATCH_FAULT)]
        assert _fuzz(lk, random.Random(6), 3000, types) >= 3000
        ok, _, msg = check_outputs(lk, g1, 4)
        assert ok, msg
        _clean(dev)
    rep = power_cut_campaign(BOARD, fw, weight_store(g0), weight_store(g1), KEY,
                             tmp_path / "pc", data=res.data, stride=2, torn_every=3,
                             limit=6, verify=verifier([g0, g1]))
    assert rep["trials"] >= 4 and rep["bad"] == 0, rep["failures"][:3]


def test_host_kernels_extreme_biases_under_ubsan(tmp_path):
    """tests/test_kernels_wrap.py's host kernels (portable, DSP emulated, _pre entries)
    built with UBSan (-fno-sanitize-recover): a signed overflow would abort the run."""
    env = dict(os.environ, MCU_KERNELS_SANITIZE="1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    # the "dsp" library holds every entry point (_portable, _dsp, dispatch, _pre)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_kernels_wrap.py"), "-k",
                        "host_kernels and dsp"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and not REPORT.search(out), out[-3000:]

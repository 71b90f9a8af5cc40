"""The QEMU boards end to end (mps2-an386 Cortex-M4F, mps2-an500 Cortex-M7), and the
flash/RAM budget enforcement of the cross build."""
import os
import shutil
import struct
import time

import pytest

from toolchain.build import build_firmware
from toolchain.devices import start_device
from toolchain.errors import BuildError
from toolchain.link import DeviceError, Frame, FrameReader, Msg, cobs_encode
from toolchain.link.protocol import FLAG_DUPLICATE

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc not installed "
                               "(sudo apt-get install --no-install-recommends gcc-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not (HAVE_GCC and HAVE_QEMU),
                                reason="qemu-system-arm or arm-none-eabi-gcc not installed "
                                "(make setup)")
pytestmark = [pytest.mark.qemu]


@pytest.fixture(scope="module")
def an386_test_fw(tmp_path_factory):
    if not HAVE_GCC:
        pytest.skip("arm-none-eabi-gcc not installed")
    return build_firmware("mps2-an386", tmp_path_factory.mktemp("an386t"), test_build=True,
                          werror=True)


@pytest.fixture(scope="module")
def an386(an386_test_fw):
    if not HAVE_QEMU:
        pytest.skip("qemu-system-arm not installed")
    with start_device("mps2-an386", an386_test_fw) as d:
        yield d


@pytest.fixture
def link(an386):
    lk = an386.link(timeout=2.0, retries=3)
    lk.reader.reset()
    return lk


@needs_gcc
def test_build_report_and_budgets(an386_test_fw):
    fw = an386_test_fw
    assert fw.bin.exists() and fw.flash_budget == 1 << 20 and fw.ram_budget == 256 << 10
    assert 1000 < fw.flash_used < 16 << 10
    assert fw.ram_used >= 8192 + 8192  # stack reserve + debug scratch
    assert 8192 <= fw.by_file["(stack)"]["ram"] < 8192 + 8  # reserve + alignment padding
    assert {s["name"] for s in fw.sections} >= {".isr_vector", ".text", ".bss", ".stack"}


FAKE_MODEL = r"""
/* Stand-in for generated model code: weights in flash, an arena in RAM, the
 * model interface (overriding app/model_none.c) and a handler in the model range. */
#include "mcu_proto.h"
#include "model_iface.h"
#include "mcu_util.h"
static const int8_t weights[WEIGHTS] = {1, 2, 3};
static int8_t arena[ARENA];
static const uint8_t hash[4] = {0xde, 0xad, 0xbe, 0xef};
const uint8_t *model_hash(void) { return hash; }
uint32_t model_hash_len(void) { return sizeof hash; }
const char *model_name(void) { return "fake"; }
uint32_t model_input_size(void) { return ARENA; }
uint8_t *model_input(void) { return (uint8_t *)arena; }
static uint8_t on_sum(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t i, s = 0;
    for (i = 0; i < req->len; i++) s += (uint32_t)(int32_t)weights[req->data[i] % WEIGHTS];
    arena[0] = (int8_t)s;
    mcu_put_u32(rep->data, s + (uint32_t)arena[ARENA - 1]);
    rep->len = 4;
    return MCU_ST_OK;
}
MCU_HANDLER(0x3E, on_sum); /* a free type of the model range (0x20-0x28 are taken) */
"""


def _fake_model(tmp_path, weights, arena):
    src = tmp_path / "fake_model.c"
    src.write_text(FAKE_MODEL)
    return dict(extra_sources=[src], defines={"WEIGHTS": weights, "ARENA": arena})


@needs_gcc
def test_model_sized_sources_are_reported_and_budgets_enforced(tmp_path):
    fw = build_firmware("mps2-an386", tmp_path / "ok", werror=True,
                        **_fake_model(tmp_path, 200_000, 50_000))
    assert fw.by_file["ext/fake_model.c"]["flash"] >= 200_000
    assert fw.by_file["ext/fake_model.c"]["ram"] >= 50_000
    assert fw.flash_used > 200_000 and fw.ram_used > 50_000
    if HAVE_QEMU:  # the model interface and the extra handler are live
        with start_device("mps2-an386", fw) as d:
            info = d.link().info()
            assert info.has_model and info.model_hash == "deadbeef" and info.model_name == "fake"
            assert info.model_input_size == 50_000
            assert struct.unpack("<I", d.link().request(0x3E, bytes([0, 1, 2])))[0] == 6

    with pytest.raises(BuildError) as e:
        build_firmware("mps2-an386", tmp_path / "big", **_fake_model(tmp_path, 1_100_000, 10))
    msg = str(e.value)
    assert "does not fit board mps2-an386" in msg and "flash needs 1,1" in msg
    assert "has 1,048,576 B (over by" in msg and "ext/fake_model.c" in msg
    assert "\n" not in msg

    with pytest.raises(BuildError, match=r"RAM needs 3\d\d,\d+ B, has 262,144 B \(over by"):
        build_firmware("mps2-an386", tmp_path / "bigram", **_fake_model(tmp_path, 10, 300_000))


@needs_qemu
def test_info(link, an386_test_fw):
    info = link.info()
    assert info.board == "mps2-an386" and info.build_id == an386_test_fw.build_id
    assert info.test_build and info.model_hash is None
    assert (info.tick_hz, info.instructions_per_tick) == (25_000_000, 40)
    assert info.flash_used == an386_test_fw.flash_used
    assert info.ram_used == an386_test_fw.ram_used


@needs_qemu
@pytest.mark.parametrize("n", [0, 1, 255, 1024])
def test_echo(link, n):
    data = os.urandom(n)
    assert link.echo(data) == data


@needs_qemu
def test_chunked(link):
    data = os.urandom(2500)
    link.send_chunked(Msg.DEBUG_SCRATCH, data)
    assert link.recv_chunked(Msg.DEBUG_SCRATCH) == data
    with pytest.raises(DeviceError, match="TOO_LARGE"):
        link.send_chunked(Msg.DEBUG_SCRATCH, b"x" * 9000)


@needs_qemu
def test_corrupt_frames_and_duplicates(link):
    before = link.device_stats()
    c0 = struct.unpack("<I", link.request(Msg.DEBUG_COUNTER))[0]
    raw = bytearray(Frame(Msg.DEBUG_COUNTER, 999).raw())
    raw[-1] ^= 0x80
    link.ser.write(cobs_encode(bytes(raw)) + b"\x00")
    wire = Frame(Msg.DEBUG_COUNTER, 1000).encode()
    r = FrameReader()
    got = []
    for _ in range(2):
        link.ser.write(wire)
        out = []
        while not out:
            out = r.feed(link._read_some(2.0))
        got += out
    assert struct.unpack("<I", got[0].payload)[0] == c0 + 1
    assert got[1].flags & FLAG_DUPLICATE and got[1].payload == got[0].payload
    after = link.device_stats()
    assert after["bad_crc"] == before["bad_crc"] + 1
    assert after["duplicates"] == before["duplicates"] + 1


@needs_qemu
def test_ticks_advance(link):
    a, hz, ipt = link.ticks()
    b, _, _ = link.ticks()
    assert hz == 25_000_000 and ipt == 40 and b > a


@needs_qemu
def test_semihosting_exit_code(an386_test_fw):
    with start_device("mps2-an386", an386_test_fw) as d:
        d.link().exit(23)
        assert d.wait_exit(10) == 23


@needs_qemu
def test_an500_release_build(tmp_path):
    fw = build_firmware("mps2-an500", tmp_path / "an500", werror=True)
    assert fw.flash_budget == 2 << 20
    with start_device("mps2-an500", fw) as d:
        link = d.link()
        info = link.info()
        assert info.board == "mps2-an500" and not info.test_build
        assert link.echo(b"m7" * 100) == b"m7" * 100
        link.exit(5)  # release build: reset request; QEMU -no-reboot exits cleanly
        assert d.wait_exit(10) == 0


@needs_qemu
def test_pipelined_frames_are_never_dropped(link):
    """More bytes than the device's RX ring in flight: it must stall, not drop."""
    frames = [Frame(Msg.ECHO, 300 + i, os.urandom(1024)) for i in range(8)]
    link.ser.write(b"".join(f.encode() for f in frames))
    r, got = FrameReader(), []
    deadline = time.monotonic() + 20
    while len(got) < len(frames) and time.monotonic() < deadline:
        got += r.feed(link._read_some(0.5))
    assert [(g.seq, g.payload) for g in got] == [(f.seq, f.payload) for f in frames]

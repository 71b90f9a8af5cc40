"""The host board end to end: the device C code compiled natively, over a TCP socket."""
import os
import shutil
import struct

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from toolchain.build import build_firmware
from toolchain.cli import main
from toolchain.devices import start_device
from toolchain.errors import LinkError
from toolchain.link import DeviceError, Frame, FrameReader, Link, Msg, Status
from toolchain.link.protocol import FLAG_DUPLICATE, FLAG_RESPONSE

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    return build_firmware("host", tmp_path_factory.mktemp("host-fw"), werror=True)


@pytest.fixture(scope="module")
def dev(fw):
    with start_device("host", fw) as d:
        yield d


@pytest.fixture
def link(dev):
    lk = dev.link(timeout=1.0, retries=3)
    lk.reader.reset()
    return lk


def counter(link) -> int:
    return struct.unpack("<I", link.request(Msg.DEBUG_COUNTER))[0]


def test_build_report(fw):
    assert fw.elf.exists() and fw.flash_used > 0 and fw.ram_used > 0
    assert "app/proto.c" in fw.by_file and fw.by_file["app/handlers_debug.c"]["ram"] >= 8192
    assert build_firmware("host", fw.build_dir, werror=True).cached


def test_info(link, fw):
    info = link.info()
    assert info.board == "host" and info.proto_version == (1, 1)
    assert info.build_id == fw.build_id and info.model_hash is None and not info.has_model
    assert (info.flash_budget, info.ram_budget, info.max_payload) == (1 << 20, 256 << 10, 1024)
    assert info.tick_hz == 10**9


@pytest.mark.parametrize("n", [0, 1, 254, 255, 1024])
def test_echo_sizes(link, n):
    assert link.echo(bytes(range(256)) * 4 if n == 1024 else os.urandom(n)[:n]) is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=1024))
def test_echo_property(link, data):
    assert link.echo(data) == data


def test_oversized_request_is_dropped_and_counted(link):
    before = link.device_stats()
    for n in (1025, 3000):
        with pytest.raises(LinkError, match="did not answer ECHO"):
            link.request(Msg.ECHO, b"z" * n, timeout=0.2, retries=0)
    after = link.device_stats()
    assert after["oversized"] == before["oversized"] + 2
    assert link.echo(b"still fine") == b"still fine"


def test_bad_crc_never_reaches_a_handler(link):
    before, c0 = link.device_stats(), counter(link)
    raw = bytearray(Frame(Msg.DEBUG_COUNTER, 4242).raw())
    raw[-2] ^= 0x10
    from toolchain.link import cobs_encode
    link.ser.write(cobs_encode(bytes(raw)) + b"\x00")
    link.ser.write(b"\x03\x00\x01\x00garbage-no-zero")  # COBS error, then junk
    link.ser.write(b"\x00")
    after = link.device_stats()
    assert after["bad_crc"] == before["bad_crc"] + 1
    assert after["bad_frame"] >= before["bad_frame"] + 1
    assert counter(link) == c0 + 1  # the corrupt COUNTER request did not run


def test_unknown_and_reserved_types(link):
    for t in (0x7E, 0x3E, 0x41, 0x90):   # 0x20-0x28: model messages (NO_MODEL here)
        with pytest.raises(DeviceError, match="UNKNOWN_TYPE") as e:
            link.request(t)
        assert e.value.status == Status.UNKNOWN_TYPE


def test_retry_same_seq_gets_cached_response(link):
    c0 = counter(link)
    wire = Frame(Msg.DEBUG_COUNTER, 777).encode()
    r = FrameReader()

    def ask():
        link.ser.write(wire)
        got = []
        while not got:
            got = r.feed(link._read_some(1.0))
        return got[0]

    a, b = ask(), ask()
    assert a.flags & FLAG_RESPONSE and not a.flags & FLAG_DUPLICATE
    assert b.flags & FLAG_DUPLICATE and a.payload == b.payload
    assert struct.unpack("<I", b.payload)[0] == c0 + 1
    assert counter(link) == c0 + 2


class Faulty:
    """A pyserial stand-in that corrupts or drops the first frame in one direction."""

    def __init__(self, ser, mode):
        self.ser, self.mode, self.done = ser, mode, False
        self.port = "faulty"

    def write(self, data):
        if self.mode == "corrupt-request" and not self.done:
            self.done = True
            data = bytearray(data)
            data[3] ^= 0x40
        return self.ser.write(bytes(data))

    def flush(self):
        pass

    @property
    def in_waiting(self):
        return self.ser.in_waiting

    @property
    def timeout(self):
        return self.ser.timeout

    @timeout.setter
    def timeout(self, v):
        self.ser.timeout = v

    def read(self, n=1):
        data = self.ser.read(n)
        if data and not self.done and self.mode in ("corrupt-response", "drop-response"):
            # read the whole response frame first
            while not data.endswith(b"\x00"):
                data += self.ser.read(1)
            self.done = True
            if self.mode == "drop-response":
                return b""
            data = bytearray(data)
            data[2] ^= 0x01
            return bytes(data)
        return data

    def close(self):
        pass


@pytest.mark.parametrize("mode", ["corrupt-request", "corrupt-response", "drop-response"])
def test_link_recovers_without_running_twice(link, mode):
    c0 = counter(link)
    before = link.device_stats()
    lk = Link(Faulty(link.ser, mode), timeout=0.3, retries=3, owns=False)
    assert struct.unpack("<I", lk.request(Msg.DEBUG_COUNTER))[0] == c0 + 1
    assert counter(link) == c0 + 2
    after = link.device_stats()
    assert lk.counters["retries"] == 1
    if mode == "corrupt-request":
        rejected = lambda st: st["bad_crc"] + st["bad_frame"]  # noqa: E731
        assert rejected(after) == rejected(before) + 1 and lk.counters["timeouts"] == 1
    else:
        assert after["duplicates"] == before["duplicates"] + 1 and lk.counters["duplicates"] == 1
    if mode == "corrupt-response":
        assert lk.counters["bad_crc"] == 1


@pytest.mark.parametrize("n", [0, 1, 1018, 1019, 1020, 5000, 8192])
def test_chunked_round_trip(link, n):
    data = os.urandom(n)
    link.send_chunked(Msg.DEBUG_SCRATCH, data)
    assert link.recv_chunked(Msg.DEBUG_SCRATCH) == data


def test_chunked_errors(link):
    with pytest.raises(DeviceError, match="TOO_LARGE"):
        link.send_chunked(Msg.DEBUG_SCRATCH, b"x" * 8193)
    with pytest.raises(DeviceError, match="UNSUPPORTED"):
        link.send_chunked(0x7D, b"abc")
    with pytest.raises(DeviceError, match="BAD_STATE"):
        link.request(Msg.XFER_CHUNK, struct.pack("<BI", Msg.DEBUG_SCRATCH, 0) + b"x")
    # Wrong whole-payload CRC: every chunk acked, END refuses.
    link.request(Msg.XFER_BEGIN, struct.pack("<BII", Msg.DEBUG_SCRATCH, 3, 12345))
    link.request(Msg.XFER_CHUNK, struct.pack("<BI", Msg.DEBUG_SCRATCH, 0) + b"abc")
    with pytest.raises(DeviceError, match="CRC_MISMATCH"):
        link.request(Msg.XFER_END, bytes([Msg.DEBUG_SCRATCH]))
    # A chunk resent after its ack was lost is acknowledged, not written twice.
    data = os.urandom(3000)
    from toolchain.link import crc32
    link.request(Msg.XFER_BEGIN, struct.pack("<BII", Msg.DEBUG_SCRATCH, 3000, crc32(data)))
    for off, want in ((0, 1000), (1000, 2000), (1000, 2000), (0, 2000), (2000, 3000)):
        nxt = link.request(Msg.XFER_CHUNK, struct.pack("<BI", Msg.DEBUG_SCRATCH, off)
                           + data[off:off + 1000])
        assert struct.unpack("<I", nxt)[0] == want
    link.request(Msg.XFER_END, bytes([Msg.DEBUG_SCRATCH]))
    assert link.recv_chunked(Msg.DEBUG_SCRATCH) == data
    link.request(Msg.XFER_BEGIN, struct.pack("<BII", Msg.DEBUG_SCRATCH, 10, 0))
    with pytest.raises(DeviceError, match="BAD_ARG"):  # a gap
        link.request(Msg.XFER_CHUNK, struct.pack("<BI", Msg.DEBUG_SCRATCH, 5) + b"x")
    link.send_chunked(Msg.DEBUG_SCRATCH, data)
    assert link.recv_chunked(Msg.DEBUG_SCRATCH) == data


def test_ticks_monotonic(link):
    a, hz, _ = link.ticks()
    b, _, _ = link.ticks()
    assert hz == 10**9 and b > a


def test_reconnect_and_cli_info(dev, tmp_path):
    dev.release()  # the device keeps running; another client can connect
    r = CliRunner().invoke(main, ["info", "--port", dev.url, "--json", str(tmp_path / "i.json")])
    assert r.exit_code == 0, r.output
    assert "board:          host" in r.output and "model:          none" in r.output
    assert '"board": "host"' in (tmp_path / "i.json").read_text()
    assert dev.link().echo(b"back") == b"back"


def test_cli_build_and_info_host(tmp_path):
    r = CliRunner().invoke(main, ["build", "--board", "host", "-o", str(tmp_path / "b"), "--json",
                                  str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    assert "flash used:" in r.output and '"flash_used"' in (tmp_path / "b.json").read_text()
    r = CliRunner().invoke(main, ["info", "--board", "host", "--firmware", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "protocol:       v1.1" in r.output


def test_exit_code_and_stop(fw):
    with start_device("host", fw) as d:
        d.link().exit(42)
        assert d.wait_exit(5) == 42
    d2 = start_device("host", fw)
    assert d2.alive
    d2.stop()
    assert not d2.alive
    with pytest.raises(LinkError, match="closed the connection|did not answer|cannot open"):
        d2.link().info()


def test_model_messages_without_a_model(link):
    for t in (0x20, 0x22, 0x25):
        with pytest.raises(DeviceError, match="NO_MODEL"):
            link.request(t, b"\x00\x00" if t == 0x25 else b"")

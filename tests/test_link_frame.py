"""Host protocol unit tests: framing, corrupt/truncated/oversized frames, C/Python agreement."""
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from toolchain.errors import LinkError
from toolchain.link import (BadCRC, DeviceInfo, Frame, FrameError, FrameReader, InfoTag, Link,
                            Msg, Oversized, Status, cobs_decode, cobs_encode, decode)
from toolchain.link import protocol

HEADER = Path(__file__).resolve().parent.parent / "firmware_templates" / "app" / "mcu_proto.h"


@given(st.binary(max_size=2000))
def test_cobs_round_trip(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 508, 1000])
@pytest.mark.parametrize("fill", [0, 1])
def test_cobs_block_edges(n, fill):
    data = bytes([fill or (i % 255) + 1 for i in range(n)])
    assert cobs_decode(cobs_encode(data)) == data


frames = st.builds(Frame, type=st.integers(0, 255), seq=st.integers(0, 0xFFFF),
                   payload=st.binary(max_size=1200), flags=st.integers(0, 255),
                   status=st.integers(0, 255))


@given(frames)
def test_frame_round_trip(f):
    wire = f.encode()
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    g = decode(wire)
    assert (g.type, g.seq, g.payload, g.flags, g.status) == (f.type, f.seq, f.payload, f.flags,
                                                             f.status)


@given(frames, st.data())
def test_any_single_bit_flip_is_rejected(f, data):
    raw = bytearray(f.raw())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FrameError):
        from toolchain.link.frame import parse_raw
        parse_raw(bytes(raw))


@given(frames, st.data())
def test_truncated_frames_are_rejected(f, data):
    wire = f.encode()[:-1]
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(FrameError):
        decode(wire[:cut])


def test_bad_crc_kind():
    raw = bytearray(Frame(Msg.ECHO, 7, b"abc").raw())
    raw[-1] ^= 0xFF
    with pytest.raises(BadCRC):
        decode(cobs_encode(bytes(raw)))


def test_bad_version_rejected():
    with pytest.raises(FrameError, match="version"):
        decode(Frame(Msg.INFO, 1, version=2).encode())


@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_reader_reassembles_across_any_split(fs, data):
    wire = b"".join(f.encode() for f in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    r = FrameReader()
    got, prev = [], 0
    for c in cuts + [len(wire)]:
        got += r.feed(wire[prev:c])
        prev = c
    assert [(g.type, g.seq, g.payload) for g in got] == [(f.type, f.seq, f.payload) for f in fs]


def test_reader_drops_oversized_and_recovers():
    r = FrameReader(max_payload=64)
    big = Frame(Msg.ECHO, 1, b"x" * 500).encode()
    ok = Frame(Msg.ECHO, 2, b"fine").encode()
    out = r.feed(big + ok)
    assert isinstance(out[0], Oversized)
    assert out[1].payload == b"fine"
    # Length within the wire limit but above max_payload is also oversized.
    r2 = FrameReader(max_payload=64)
    assert isinstance(r2.feed(Frame(Msg.ECHO, 3, b"y" * 65).encode())[0], Oversized)


def test_reader_counts_garbage_and_keeps_going():
    r = FrameReader()
    out = r.feed(b"\x05garbage\x00\x00" + Frame(Msg.INFO, 9).encode())
    assert isinstance(out[0], FrameError)
    assert out[-1].seq == 9


def test_info_parse_skips_unknown_tags():
    p = bytes([InfoTag.PROTO_VERSION, 2, 1, 0, 200, 3, 1, 2, 3, InfoTag.BOARD, 4]) + b"abcd"
    p += bytes([InfoTag.MODEL_HASH, 0, InfoTag.TICK_HZ, 4]) + (25_000_000).to_bytes(4, "little")
    info = DeviceInfo.parse(p)
    assert info.proto_version == (1, 0) and info.board == "abcd" and info.model_hash is None
    assert info.tick_hz == 25_000_000 and info.unknown_tags == {200: b"\x01\x02\x03"}
    with pytest.raises(LinkError):
        DeviceInfo.parse(bytes([InfoTag.BOARD, 9]) + b"ab")


def test_c_header_matches_python():
    defs = dict(re.findall(r"#define (MCU_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", HEADER.read_text()))
    val = {k: int(v, 0) for k, v in defs.items()}
    for m in Msg:
        assert val[f"MCU_MSG_{m.name}"] == m.value, m
    for s in Status:
        assert val[f"MCU_ST_{s.name}"] == s.value, s
    for t in InfoTag:
        assert val[f"MCU_INFO_{t.name}"] == t.value, t
    assert val["MCU_PROTO_VERSION"] == protocol.PROTO_VERSION
    assert val["MCU_HDR_SIZE"] == protocol.HDR_SIZE
    assert val["MCU_MAX_PAYLOAD"] == protocol.MAX_PAYLOAD
    assert val["MCU_FLAG_DUPLICATE"] == protocol.FLAG_DUPLICATE


def test_device_that_does_not_answer():
    # loop:// echoes our own requests back: they are not responses, so nothing answers.
    with Link.open("loop://", timeout=0.05, retries=2) as link:
        with pytest.raises(LinkError, match="did not answer INFO after 3 tries"):
            link.info()
        assert link.counters["retries"] == 2 and link.counters["timeouts"] == 3
        assert link.counters["stale"] == 3


def test_missing_port_is_a_clear_error():
    with pytest.raises(LinkError, match="does not exist"):
        Link.open("/dev/ttyDOESNOTEXIST")
    with pytest.raises(LinkError, match="cannot open serial port"):
        Link.open("socket://127.0.0.1:1")

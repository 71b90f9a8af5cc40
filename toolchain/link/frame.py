"""Framing for protocol v1: header + payload + CRC-32, COBS-encoded, 0x00-terminated."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from toolchain.link.protocol import (CRC_SIZE, FLAG_RESPONSE, HDR, HDR_SIZE, MAX_PAYLOAD,
                                     PROTO_VERSION)


class FrameError(ValueError):
    """A frame that must be dropped (and counted)."""
    kind = "bad_frame"


class BadCRC(FrameError):
    kind = "bad_crc"


class Truncated(FrameError):
    kind = "bad_frame"


class Oversized(FrameError):
    kind = "oversized"


class BadVersion(FrameError):
    kind = "bad_frame"


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib's), as mcu_crc32_update in app/proto.c."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while True:
        j = i
        while j < n and data[j] != 0 and j - i < 254:
            j += 1
        code = j - i + 1
        out.append(code)
        out += data[i:j]
        if j >= n:
            break
        i = j if code == 0xFF else j + 1
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code == 0:
            raise FrameError("COBS: zero byte inside a frame")
        if i + code - 1 > n:
            raise Truncated("COBS: block runs past the end of the frame")
        out += data[i:i + code - 1]
        i += code - 1
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes = b""
    flags: int = 0
    status: int = 0
    version: int = PROTO_VERSION

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    def raw(self) -> bytes:
        """Header + payload + CRC, before COBS."""
        if len(self.payload) > 0xFFFF:
            raise Oversized(f"payload of {len(self.payload)} bytes does not fit a frame")
        body = HDR.pack(self.version, self.type, self.flags, self.status, self.seq & 0xFFFF,
                        len(self.payload)) + bytes(self.payload)
        return body + crc32(body).to_bytes(4, "little")

    def encode(self) -> bytes:
        """Wire bytes: COBS(raw) + 0x00."""
        return cobs_encode(self.raw()) + b"\x00"


def parse_raw(raw: bytes, max_payload: int = 0xFFFF) -> Frame:
    """Check and split a decoded frame. Raises a FrameError subclass."""
    if len(raw) < HDR_SIZE + CRC_SIZE:
        raise Truncated(f"frame of {len(raw)} bytes is shorter than header + CRC")
    version, mtype, flags, status, seq, length = HDR.unpack_from(raw)
    if HDR_SIZE + length + CRC_SIZE != len(raw):
        raise Truncated(f"length field says {length} payload bytes, frame has "
                        f"{len(raw) - HDR_SIZE - CRC_SIZE}")
    body = raw[:HDR_SIZE + length]
    if crc32(body) != int.from_bytes(raw[HDR_SIZE + length:], "little"):
        raise BadCRC("CRC mismatch")
    if version != PROTO_VERSION:
        raise BadVersion(f"protocol version {version}, expected {PROTO_VERSION}")
    if length > max_payload:
        raise Oversized(f"payload of {length} bytes exceeds {max_payload}")
    return Frame(mtype, seq, bytes(raw[HDR_SIZE:HDR_SIZE + length]), flags, status, version)


def decode(wire: bytes, max_payload: int = 0xFFFF) -> Frame:
    """Decode one frame's wire bytes (with or without the trailing 0x00)."""
    if wire.endswith(b"\x00"):
        wire = wire[:-1]
    return parse_raw(cobs_decode(wire), max_payload)


class FrameReader:
    """Incremental decoder: feed() bytes, get back frames and FrameErrors in order.

    A frame longer than the limit is dropped up to the next delimiter (Oversized)."""

    def __init__(self, max_payload: int = 0xFFFF):
        self.max_payload = max_payload
        self.max_wire = HDR_SIZE + max_payload + CRC_SIZE
        self.max_wire += self.max_wire // 254 + 2
        self._buf = bytearray()
        self._discard = False

    def feed(self, data: bytes) -> list:
        out: list = []
        data = bytes(data)
        start = 0
        while True:
            k = data.find(b"\x00", start)
            part = data[start:] if k < 0 else data[start:k]
            if not self._discard:
                self._buf += part
                if len(self._buf) > self.max_wire:
                    self._discard = True
                    self._buf.clear()
                    out.append(Oversized(f"frame longer than {self.max_wire} bytes"))
            if k < 0:
                break
            if self._discard:
                self._discard = False
            elif self._buf:
                try:
                    out.append(parse_raw(cobs_decode(bytes(self._buf)), self.max_payload))
                except FrameError as e:
                    out.append(e)
            self._buf.clear()
            start = k + 1
        return out

    def reset(self) -> None:
        self._buf.clear()
        self._discard = False

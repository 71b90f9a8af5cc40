"""Host end of the device protocol (spec: docs/protocol.md)."""
from toolchain.link.frame import (BadCRC, Frame, FrameError, FrameReader, Oversized, Truncated,
                                  cobs_decode, cobs_encode, crc32, decode)
from toolchain.link.link import DeviceError, DeviceInfo, Link
from toolchain.link.protocol import PROTO_VERSION, InfoTag, Msg, Status

__all__ = ["BadCRC", "DeviceError", "DeviceInfo", "Frame", "FrameError", "FrameReader",
           "InfoTag", "Link", "Msg", "Oversized", "PROTO_VERSION", "Status", "Truncated",
           "cobs_decode", "cobs_encode", "crc32", "decode"]

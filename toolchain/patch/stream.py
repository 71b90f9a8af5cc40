"""Streaming-time estimate of a patch over the serial link (the live measurement comes
with the device apply work).

Model (protocol v1, docs/protocol.md; firmware_templates/app/mcu_proto.h): the patch
goes in XFER_CHUNK requests of up to `chunk` patch bytes, each a frame of 8 header
bytes + 4 chunk-offset bytes + payload + CRC-32 (4), COBS-encoded (+1 byte per 254,
+1) and a 0x00 delimiter; the device acknowledges every chunk with an empty-payload
response frame (8 + 4 + COBS 1 + delimiter 1 = 14 B) before the next chunk goes
(stop-and-wait: both directions count on a half-duplex budget). XFER_BEGIN and
XFER_END (with the device's verification answer) add two more exchanges. 8N1 framing:
10 bits per byte, so 115200 baud = 11,520 B/s.
"""
from __future__ import annotations

import math

FRAME_HDR, FRAME_CRC, CHUNK_HDR = 8, 4, 4


def _frame(payload: int) -> int:
    raw = FRAME_HDR + payload + FRAME_CRC
    return raw + math.ceil(raw / 254) + 1 + 1          # COBS overhead + delimiter


def stream_estimate(nbytes: int, baud: int = 115200, chunk: int = 512) -> dict:
    chunks = max(1, math.ceil(nbytes / chunk))
    down = sum(_frame(CHUNK_HDR + min(chunk, nbytes - i * chunk)) for i in range(chunks))
    down += _frame(4 + 32) + _frame(0)                  # XFER_BEGIN (size, digest), XFER_END
    up = (chunks + 2) * _frame(0)                       # acks
    wire = down + up
    return dict(baud=baud, chunk=chunk, chunks=chunks, wire_bytes=wire,
                overhead=round(wire / max(nbytes, 1) - 1, 4),
                seconds=round(wire * 10 / baud, 4))

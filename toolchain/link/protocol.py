"""Device protocol v1: numbers shared with firmware_templates/app/mcu_proto.h.

Spec: docs/protocol.md. tests/test_link_frame.py checks that these values and
the C header agree."""
from __future__ import annotations

import enum
import struct

PROTO_VERSION = 1
PROTO_MINOR = 1
HDR = struct.Struct("<BBBBHH")  # version, type, flags, status, seq, length
HDR_SIZE = HDR.size  # 8
CRC_SIZE = 4
MAX_PAYLOAD = 1024  # the default device limit; INFO reports the real one

FLAG_RESPONSE = 0x01
FLAG_DUPLICATE = 0x02


class Msg(enum.IntEnum):
    INFO = 0x01
    ECHO = 0x02
    STATS = 0x03
    EXIT = 0x04
    TICKS = 0x05
    XFER_BEGIN = 0x10
    XFER_CHUNK = 0x11
    XFER_END = 0x12
    XFER_SIZE = 0x13
    XFER_READ = 0x14
    MODEL_FIRST = 0x20
    MODEL_LAST = 0x3F
    PATCH_STATUS = 0x40        # (first of the patch range: the canonical name of 0x40)
    PATCH_FIRST = 0x40
    PATCH_LAST = 0x5F
    PATCH_BEGIN = 0x41
    PATCH_CHUNK = 0x42
    PATCH_APPLY = 0x43
    PATCH_ABORT = 0x44
    PATCH_READ = 0x45
    PATCH_FAULT = 0x4F
    DEBUG_FIRST = 0x60
    DEBUG_SCRATCH = 0x60
    DEBUG_COUNTER = 0x61
    DEBUG_LAST = 0x7F


# Ranges reserved for later issues (inclusive).
RANGES = {
    "core": (0x01, 0x1F),
    "model": (0x20, 0x3F),
    "patch": (0x40, 0x5F),
    "debug": (0x60, 0x7F),
    "reserved": (0x80, 0xFF),
}


class Status(enum.IntEnum):
    OK = 0
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_ARG = 3
    BAD_STATE = 4
    NO_MODEL = 5
    TOO_LARGE = 6
    CRC_MISMATCH = 7
    BUSY = 8
    INTERNAL = 9
    UNSUPPORTED = 10
    AUTH_FAILED = 11
    WRONG_BASE = 12
    REPLAY = 13
    PATCH_INVALID = 14
    APPLY_FAILED = 15
    FLASH_ERROR = 16


class InfoTag(enum.IntEnum):
    PROTO_VERSION = 1
    BOARD = 2
    BUILD_ID = 3
    MODEL_HASH = 4
    FLASH_BUDGET = 5
    RAM_BUDGET = 6
    MAX_PAYLOAD = 7
    TICK_HZ = 8
    INSTR_PER_TICK = 9
    MODEL_IN_SIZE = 10
    MODEL_OUT_SIZE = 11
    FLAGS = 12
    MODEL_NAME = 13
    FLASH_USED = 14
    RAM_USED = 15
    SUBNETS = 16          # u8 levels, u8 active, levels x u16 sparsity (1/10000)


INFO_F_TEST_BUILD = 0x1
INFO_F_HAS_MODEL = 0x2
INFO_F_SEMIHOSTING = 0x4

# Order of the u32 counters in the STATS response (mcu_proto_stats_t).
STATS_FIELDS = ("rx_frames", "tx_frames", "bad_crc", "bad_frame", "oversized", "duplicates",
                "unknown_type")

"""Host end of device protocol v1 over any pyserial URL.

    with Link.open("socket://127.0.0.1:4321") as link:
        print(link.info())
        link.echo(b"hi")
        link.send_chunked(Msg.DEBUG_SCRATCH, data)
        back = link.recv_chunked(Msg.DEBUG_SCRATCH)

Requests are stop-and-wait: each carries a fresh sequence number; a retry (after
a timeout or a corrupt frame) resends the *same* bytes, so the device answers it
from its cache instead of running the request twice."""
from __future__ import annotations

import os
import random
import select
import struct
import time
from dataclasses import asdict, dataclass, field

from toolchain.errors import LinkError
from toolchain.link.frame import Frame, FrameError, FrameReader, crc32
from toolchain.link.protocol import (FLAG_DUPLICATE, INFO_F_HAS_MODEL, INFO_F_TEST_BUILD,
                                     PROTO_VERSION, STATS_FIELDS, InfoTag, Msg, Status)


class DeviceError(LinkError):
    """The device answered with a non-OK status."""

    def __init__(self, msg: str, status: int = 0, msg_type: int = 0):
        super().__init__(msg)
        self.status = status
        self.msg_type = msg_type


def msg_name(t: int) -> str:
    try:
        return Msg(t).name
    except ValueError:
        return f"0x{t:02X}"


def status_name(s: int) -> str:
    try:
        return Status(s).name
    except ValueError:
        return f"status {s}"


@dataclass
class DeviceInfo:
    proto_version: tuple = (0, 0)
    board: str = ""
    build_id: str = ""
    model_hash: str | None = None  # hex; None = no model
    model_name: str = ""
    flash_budget: int = 0
    ram_budget: int = 0
    flash_used: int = 0
    ram_used: int = 0
    max_payload: int = 0
    tick_hz: int = 0
    instructions_per_tick: int = 0
    model_input_size: int = 0
    model_output_size: int = 0
    flags: int = 0
    subnet_levels: list = field(default_factory=list)   # sparsity per level (INFO tag 16)
    subnet_active: int | None = None
    unknown_tags: dict = field(default_factory=dict)

    @property
    def test_build(self) -> bool:
        return bool(self.flags & INFO_F_TEST_BUILD)

    @property
    def has_model(self) -> bool:
        return bool(self.flags & INFO_F_HAS_MODEL)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["proto_version"] = "%d.%d" % tuple(self.proto_version)
        d["unknown_tags"] = {str(k): v.hex() for k, v in self.unknown_tags.items()}
        d["test_build"] = self.test_build
        return d

    @classmethod
    def parse(cls, payload: bytes) -> "DeviceInfo":
        info = cls()
        i = 0
        u32 = {InfoTag.FLASH_BUDGET: "flash_budget", InfoTag.RAM_BUDGET: "ram_budget",
               InfoTag.FLASH_USED: "flash_used", InfoTag.RAM_USED: "ram_used",
               InfoTag.TICK_HZ: "tick_hz", InfoTag.INSTR_PER_TICK: "instructions_per_tick",
               InfoTag.MODEL_IN_SIZE: "model_input_size",
               InfoTag.MODEL_OUT_SIZE: "model_output_size", InfoTag.FLAGS: "flags"}
        while i + 2 <= len(payload):
            tag, n = payload[i], payload[i + 1]
            v = payload[i + 2:i + 2 + n]
            if len(v) != n:
                raise LinkError("malformed INFO response (truncated record); "
                                "firmware and host protocol versions may differ")
            i += 2 + n
            if tag == InfoTag.PROTO_VERSION and n >= 2:
                info.proto_version = (v[0], v[1])
            elif tag == InfoTag.BOARD:
                info.board = v.decode(errors="replace")
            elif tag == InfoTag.BUILD_ID:
                info.build_id = v.decode(errors="replace")
            elif tag == InfoTag.MODEL_NAME:
                info.model_name = v.decode(errors="replace")
            elif tag == InfoTag.MODEL_HASH:
                info.model_hash = v.hex() if v else None
            elif tag == InfoTag.SUBNETS and n >= 2 and n >= 2 + 2 * v[0]:
                info.subnet_active = v[1]
                info.subnet_levels = [int.from_bytes(v[2 + 2 * i:4 + 2 * i], "little") / 10000
                                      for i in range(v[0])]
            elif tag == InfoTag.MAX_PAYLOAD and n == 2:
                info.max_payload = int.from_bytes(v, "little")
            elif tag in u32 and n == 4:
                setattr(info, u32[InfoTag(tag)], int.from_bytes(v, "little"))
            else:
                info.unknown_tags[tag] = bytes(v)
        return info


class Link:
    """One open connection to a device speaking protocol v1."""

    def __init__(self, ser, *, url: str = "", timeout: float = 1.0, retries: int = 3,
                 owns: bool = True):
        self.ser = ser
        self.url = url or getattr(ser, "port", "") or ""
        self.timeout = timeout
        self.retries = retries
        self.owns = owns
        self.reader = FrameReader()
        self.counters = dict(tx_frames=0, rx_frames=0, bad_crc=0, bad_frame=0, oversized=0,
                             timeouts=0, retries=0, stale=0, duplicates=0)
        self._seq = random.randrange(1, 0xFFFF)
        self._sock = getattr(ser, "_socket", None)  # pyserial socket://: read it directly
        self.max_payload = 0  # learned from INFO

    # ---- opening -------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, timeout: float = 1.0, retries: int = 3,
             baudrate: int = 115200) -> "Link":
        import serial
        if url.startswith("/dev/") and not os.path.exists(url):
            raise LinkError(f"serial port {url} does not exist; plug the board in or pick "
                            f"another with --port (see `ls /dev/ttyACM* /dev/ttyUSB*`)")
        try:
            ser = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
        except (serial.SerialException, ValueError, OSError) as e:
            raise LinkError(f"cannot open serial port {url}: {_first_line(e)}; check the "
                            f"URL (/dev/ttyACM0, socket://HOST:PORT, loop://) and that the "
                            f"device is running") from None
        return cls(ser, url=url, timeout=timeout, retries=retries)

    def close(self) -> None:
        if self.owns and self.ser is not None:
            try:
                self.ser.close()
            except Exception:
                pass
        self.ser = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- raw I/O -------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush() if self._sock is None else None
        except Exception as e:
            raise LinkError(f"write to {self.url} failed: {_first_line(e)}; the device "
                            f"closed the link (did it exit or crash?)") from None

    def _read_some(self, timeout: float) -> bytes:
        try:
            if self._sock is not None:
                r, _, _ = select.select([self._sock], [], [], max(timeout, 0))
                if not r:
                    return b""
                data = self._sock.recv(65536)
                if not data:
                    raise LinkError(f"device at {self.url} closed the connection (did it "
                                    f"exit or crash?)")
                return data
            self.ser.timeout = max(timeout, 0)
            data = self.ser.read(1)
            if data:
                n = self.ser.in_waiting
                if n:
                    data += self.ser.read(n)
            return data
        except LinkError:
            raise
        except Exception as e:
            raise LinkError(f"read from {self.url} failed: {_first_line(e)}") from None

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF or 1
        return self._seq

    # ---- request/response ----------------------------------------------
    def transact(self, msg_type: int, payload: bytes = b"", *, timeout: float | None = None,
                 retries: int | None = None) -> Frame:
        """Send one request and return the response frame (any status)."""
        if self.ser is None:
            raise LinkError("link is closed")
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        seq = self._next_seq()
        wire = Frame(int(msg_type), seq, bytes(payload)).encode()
        for attempt in range(retries + 1):
            if attempt:
                self.counters["retries"] += 1
            self._write(wire)
            self.counters["tx_frames"] += 1
            deadline = time.monotonic() + timeout
            corrupt = False
            while not corrupt:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.counters["timeouts"] += 1
                    break
                for item in self.reader.feed(self._read_some(left)):
                    if isinstance(item, FrameError):
                        self.counters[item.kind] += 1
                        corrupt = True  # maybe our answer: ask again at once (same seq)
                        continue
                    self.counters["rx_frames"] += 1
                    if not item.is_response or item.seq != seq or item.type != msg_type:
                        self.counters["stale"] += 1
                        continue
                    if item.flags & FLAG_DUPLICATE:
                        self.counters["duplicates"] += 1
                    return item
        bad = sum(self.counters[k] for k in ("bad_crc", "bad_frame", "oversized"))
        garbled = (f", {bad} corrupt frame(s) received so far: check the baud rate and "
                   f"cable" if bad else "")
        raise LinkError(f"device at {self.url} did not answer {msg_name(msg_type)} after "
                        f"{retries + 1} tries ({timeout:g} s each){garbled}; check that it is "
                        f"running the mcu firmware and that the port and baud rate are right")

    def request(self, msg_type: int, payload: bytes = b"", *, timeout: float | None = None,
                retries: int | None = None) -> bytes:
        """Send a request, return the response payload; a non-OK status raises DeviceError."""
        r = self.transact(msg_type, payload, timeout=timeout, retries=retries)
        if r.status != Status.OK:
            detail = f": {r.payload.decode(errors='replace')}" if r.payload else ""
            raise DeviceError(f"device rejected {msg_name(msg_type)} with "
                              f"{status_name(r.status)}{detail}", r.status, msg_type)
        return r.payload

    # ---- chunked transfers ---------------------------------------------
    def send_chunked(self, msg_type: int, data: bytes, *, chunk: int | None = None,
                     progress=None) -> None:
        """Write `data` to the device stream named by msg_type; every chunk is acknowledged
        with the next offset the device expects; the whole payload's CRC is checked."""
        data = bytes(data)
        t = int(msg_type)
        r = self.request(Msg.XFER_BEGIN, struct.pack("<BII", t, len(data), crc32(data)))
        max_chunk = struct.unpack_from("<H", r)[0] if len(r) >= 2 else 256
        n_chunk = min(max_chunk, chunk or max_chunk)
        off = 0
        while off < len(data):
            part = data[off:off + n_chunk]
            r = self.request(Msg.XFER_CHUNK, struct.pack("<BI", t, off) + part)
            nxt = struct.unpack_from("<I", r)[0]
            if not off < nxt <= len(data):
                raise LinkError(f"device acknowledged offset {nxt} after sending {off}; "
                                f"transfer to {msg_name(t)} aborted")
            off = nxt
            if progress:
                progress(off, len(data))
        self.request(Msg.XFER_END, bytes([t]))

    def recv_chunked(self, msg_type: int, *, chunk: int = 0xFFFF) -> bytes:
        """Read the device stream named by msg_type in chunks; checks the device's CRC."""
        t = int(msg_type)
        size, want_crc = struct.unpack("<II", self.request(Msg.XFER_SIZE, bytes([t]))[:8])
        out = bytearray()
        while len(out) < size:
            part = self.request(Msg.XFER_READ, struct.pack("<BIH", t, len(out),
                                                           min(chunk, size - len(out))))
            if not part:
                raise LinkError(f"device returned no data at offset {len(out)} of {size} "
                                f"reading {msg_name(t)}")
            out += part
        if crc32(bytes(out)) != want_crc:
            raise LinkError(f"CRC mismatch reading {msg_name(t)} ({size} bytes); retry")
        return bytes(out)

    # ---- core messages ---------------------------------------------------
    def info(self) -> DeviceInfo:
        info = DeviceInfo.parse(self.request(Msg.INFO))
        if info.proto_version and info.proto_version[0] != PROTO_VERSION:
            raise LinkError(f"device speaks protocol v{info.proto_version[0]}, this host "
                            f"v{PROTO_VERSION}; rebuild the firmware with this toolchain")
        self.max_payload = info.max_payload
        return info

    def echo(self, data: bytes) -> bytes:
        back = self.request(Msg.ECHO, data)
        if back != bytes(data):
            raise LinkError(f"echo of {len(data)} bytes came back different")
        return back

    def device_stats(self) -> dict:
        p = self.request(Msg.STATS)
        vals = struct.unpack_from("<%dI" % (len(p) // 4), p)
        return dict(zip(STATS_FIELDS, vals))

    def ticks(self) -> tuple[int, int, int]:
        """(ticks, tick_hz, instructions_per_tick) from the device timer."""
        lo, hi, hz, ipt = struct.unpack_from("<IIII", self.request(Msg.TICKS))
        return lo | (hi << 32), hz, ipt

    def exit(self, code: int = 0) -> None:
        """Ask the firmware to leave (semihosting exit in test builds, reset otherwise)."""
        self.request(Msg.EXIT, bytes([code & 0xFF]))


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__

"""Stream a patch to a device and apply it: `mcu patch send`.

    res = send_patch(lambda: Link.open(url), data, progress=cb)

Protocol (docs/patch-device.md): PATCH_STATUS, PATCH_BEGIN (size, CRC-32 and the
patch header: the device refuses a replayed, wrong-base or oversized patch before a
byte is streamed; it answers the offset to start from, so a transfer resumes where
the device's acknowledged offset is, in RAM across link drops and in its staging
header across reboots), PATCH_CHUNKs pipelined `window` at a time (each acknowledged
with the device's next offset; a chunk beyond it is answered with a gap flag and the
sender goes back to that offset: go-back-N), then PATCH_APPLY (the device checks tag,
digest, sequence, base and old values, builds the other slot, checks the target hash
and commits). Each chunk goes with a fresh sequence number; chunk writes are
idempotent by offset, so duplicates and retransmissions are harmless.

Chunk size adapts (ChunkSizer, docs/patch-device.md "Adaptive chunk size"): halved,
down to a floor (64 B), after `shrink_after` losses in a row (a go-back on a gap
answer, a timeout of the oldest chunk, or the link dropped with chunks in flight, with
no chunk acknowledged in between); doubled, up to the device's maximum, after
`grow_after` chunks acknowledged with no go-back or timeout between them. The state
survives reconnections; after a dropped link PATCH_BEGIN answers the device's staged
offset and the transfer continues from there.
"""
from __future__ import annotations

import struct
import time
import zlib
from dataclasses import asdict, dataclass, field

from toolchain.errors import LinkError
from toolchain.link.frame import Frame, FrameError
from toolchain.link.protocol import Msg, Status

from .errors import (PatchApplyError, PatchAuthError, PatchBaseError, PatchError,
                     PatchFormatError, PatchReplayError)
from .format import HEADER_SIZE, read_header

NOMINAL_BAUD = 115200


class PatchDeviceError(PatchError):
    """The device refused the patch (status code in .status)."""

    def __init__(self, msg, status=0):
        super().__init__(msg)
        self.status = status


def _dev(cls):
    return type(f"Device{cls.__name__}", (cls, PatchDeviceError), {"__module__": __name__})


# device status -> (what, exception: a subclass of both the host error and PatchDeviceError)
_ERR = {Status.AUTH_FAILED: ("tag check failed", _dev(PatchAuthError)),
        Status.WRONG_BASE: ("wrong base model", _dev(PatchBaseError)),
        Status.REPLAY: ("replayed or stale patch", _dev(PatchReplayError)),
        Status.PATCH_INVALID: ("malformed patch", _dev(PatchFormatError)),
        Status.APPLY_FAILED: ("apply failed, rolled back", _dev(PatchApplyError))}


def device_error(status: int, payload: bytes, what: str) -> PatchError:
    text = payload.decode(errors="replace").strip()
    name, cls = _ERR.get(status, (None, PatchDeviceError))
    if name is None:
        try:
            name = Status(status).name
        except ValueError:
            name = f"status {status}"
    e = cls(f"device refused the patch at {what}: {name}" + (f" ({text})" if text else ""))
    e.status = status
    return e


@dataclass
class PatchStatus:
    valid: bool
    staging: bool
    staged_complete: bool
    test_build: bool
    flash_loaded: bool
    slot: int
    fallbacks: int
    seq: int
    last_seq: int
    staged_total: int
    staged_next: int
    staged_crc: int
    stage_capacity: int
    slot_size: int
    erases: int
    programs: int
    refused: int
    max_chunk: int
    page: int
    hash: str | None
    key_id: str

    @property
    def flash_ops(self) -> int:
        return self.erases + self.programs

    @classmethod
    def parse(cls, p: bytes) -> "PatchStatus":
        if len(p) < 84 or p[0] != 1:
            raise LinkError("malformed PATCH_STATUS response; firmware and host versions differ")
        f = p[1]
        (seq, last, tot, nxt, crc, cap, slot, er, pr, rf) = struct.unpack_from("<10I", p, 4)
        mc, pg = struct.unpack_from("<HH", p, 44)
        if pg & 0x8000:             # large erase units (STM32F4 sectors): KB units
            pg = (pg & 0x7FFF) << 10
        return cls(bool(f & 1), bool(f & 2), bool(f & 4), bool(f & 8), bool(f & 16), p[2], p[3],
                   seq, last, tot, nxt, crc, cap, slot, er, pr, rf, mc, pg,
                   p[48:80].hex() if f & 1 else None, p[80:84].hex())

    def to_dict(self) -> dict:
        return asdict(self)


def patch_status(link) -> PatchStatus:
    r = link.transact(Msg.PATCH_STATUS)
    if r.status == Status.UNKNOWN_TYPE:
        raise PatchError(f"device at {link.url} has no patch support (firmware built without "
                         f"a weight area; build it with `mcu patch firmware` or a patchable model)")
    if r.status != Status.OK:
        raise device_error(r.status, r.payload, "PATCH_STATUS")
    return PatchStatus.parse(r.payload)


def _request(link, t, payload=b"", what="", **kw) -> bytes:
    r = link.transact(t, payload, **kw)
    if r.status != Status.OK:
        raise device_error(r.status, r.payload, what or Msg(t).name)
    return r.payload


@dataclass
class SendResult:
    bytes: int = 0              # patch size
    streamed: int = 0           # patch bytes acknowledged in this run
    resumed_from: int = 0       # device offset at the first BEGIN
    sent_bytes: int = 0         # chunk payload bytes put on the link (retransmissions too)
    chunks: int = 0
    chunk_size: int = 0
    window: int = 0
    retransmits: int = 0        # go-back-N rewinds
    timeouts: int = 0
    reconnects: int = 0
    chunk_min: int = 0          # smallest and last chunk payload used (adaptive sizing)
    chunk_final: int = 0
    chunk_changes: int = 0      # halvings + doublings
    resumes: list = field(default_factory=list)   # device offsets answered by each BEGIN
    stream_seconds: float = 0.0
    bytes_per_s: float = 0.0
    fraction_of_baud: float = 0.0   # of NOMINAL_BAUD / 10 bytes/s
    apply_seconds: float = 0.0
    applied: bool = False
    already_applied: bool = False
    seq: int = 0
    hash: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


CHUNK_FLOOR = 64


class ChunkSizer:
    """Deterministic chunk payload control: `size` starts at the ceiling (the device's
    maximum, or the --chunk given); lost() after a go-back (gap answer or timeout) or
    lost(cut=True) after a dropped link with chunks in flight, acked() per chunk that advanced the device's offset. `shrink_after` losses with no
    acknowledged chunk between them halve it (not below `floor`); `grow_after` chunks
    acknowledged with no go-back between them double it (not above the ceiling); a
    dropped link counts as a loss but does not break that run. Same events, same sizes."""

    def __init__(self, ceiling: int, floor: int = CHUNK_FLOOR, *, shrink_after: int = 2,
                 grow_after: int = 16, adaptive: bool = True):
        self.ceiling = self.size = max(1, ceiling)
        self.floor = min(floor, self.ceiling)
        self.shrink_after, self.grow_after = shrink_after, grow_after
        self.adaptive = adaptive
        self.losses = self.clean = self.changes = 0
        self.smallest = self.size

    def set_ceiling(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = min(self.floor, self.ceiling)
        self.size = min(self.size, self.ceiling)
        self.smallest = min(self.smallest, self.size)

    def lost(self, cut: bool = False) -> None:
        """A loss; cut=True: the link dropped with chunks in flight (counts toward a
        halving, but does not end the run of clean chunks: a cut says nothing of the
        line's error rate)."""
        if not cut:
            self.clean = 0
        self.losses += 1
        if self.adaptive and self.losses >= self.shrink_after and self.size > self.floor:
            self.size = max(self.floor, self.size // 2)
            self.smallest = min(self.smallest, self.size)
            self.losses = 0
            self.changes += 1

    def acked(self) -> None:
        self.losses = 0
        self.clean += 1
        if self.adaptive and self.clean >= self.grow_after and self.size < self.ceiling:
            self.size = min(self.ceiling, self.size * 2)
            self.clean = 0
            self.changes += 1


class _Session:
    def __init__(self, opener, link=None):
        self.opener = opener
        self.link = link

    def get(self):
        if self.link is None or self.link.ser is None:
            self.link = self.opener()
            try:
                self.link._write(b"\x00")   # end any partial frame the device still holds
            except LinkError:
                pass
        return self.link

    def drop(self):
        if self.link is not None:
            sock = getattr(self.link, "_sock", None) if self.link.owns else None
            if sock is not None:            # socket://: close it ourselves; pyserial's
                try:                        # close() sleeps 0.3 s per reconnection
                    sock.close()
                except OSError:
                    pass
                try:
                    self.link.ser._socket = None
                    self.link.ser.is_open = False
                except Exception:
                    pass
            try:
                self.link.close()
            except Exception:
                pass
        self.link = None


def send_patch(opener, data: bytes, *, window: int = 8, chunk: int | None = None,
               progress=None, apply: bool = True, reconnects: int = 5,
               apply_timeout: float = 60.0, link=None, baud: int = NOMINAL_BAUD,
               chunk_timeout: float | None = None, accept_applied: bool = False,
               adaptive: bool = True, chunk_floor: int = CHUNK_FLOOR) -> SendResult:
    """Stream `data` (a patch file) to the device and apply it. `opener()` returns a
    new Link (used after a dropped connection); `link` an already open one. Raises
    PatchError (one line) when the device refuses the patch. A patch whose sequence
    the device has passed is refused (REPLAY) even when the device holds its target;
    accept_applied=True turns exactly that case into a result with already_applied
    (resuming after an interruption that hit after the commit).

    The chunk payload starts at min(chunk, device maximum) and adapts to losses
    (ChunkSizer; adaptive=False keeps it fixed). `reconnects` bounds the reconnections
    in a row that make no progress with no smaller chunk left to try (a link cut after
    progress, or after the chunk was halved, does not use it up; a reconnection after
    progress is immediate, the others wait 0.05 s more each, up to 0.5 s). After the
    first, a reconnection goes straight to PATCH_BEGIN, which answers the device's
    staged offset to continue from."""
    data = bytes(data)
    h = read_header(data)           # a malformed file fails here, before the device sees it
    total, crc = len(data), zlib.crc32(data)
    res = SendResult(bytes=total, window=window)
    ses = _Session(opener, link)
    attempts = 0
    sizer = None
    acked = [0]                         # highest device offset acknowledged so far
    progress_at_fail, size_at_fail = -1, 1 << 30
    begin_rtt = None
    applying = False                    # APPLY was sent (its answer may have been lost)
    begun = False
    t0 = None
    while True:
        try:
            lk = ses.get()
            if begun and not applying and res.resumes:
                st = None                   # reconnected mid-transfer: BEGIN says where
            else:
                st = patch_status(lk)
            if st is not None and st.hash == h["target_hash"].hex() and st.last_seq >= h["seq"]:
                if accept_applied or res.applied or applying:
                    res.already_applied = not res.applied
                    res.applied = True
                    res.seq, res.hash = st.seq, st.hash
                    break
                e = _ERR[Status.REPLAY][1](
                    f"patch {h['seq']} is a replay: the device's last applied sequence is "
                    f"{st.last_seq} and it already holds this patch's target model "
                    f"{st.hash[:16]}; nothing sent")
                e.status = Status.REPLAY
                raise e
            if (st is not None and st.staged_complete and st.staged_total == total
                    and st.staged_crc == crc):
                nxt = total                     # nothing left to stream
                if not begun:
                    res.resumed_from = nxt
                    begun = True
            else:
                if t0 is None:
                    t0 = time.monotonic()          # streaming time includes BEGIN
                # a resuming BEGIN writes nothing: once one BEGIN was answered at the
                # first try, wait 4x the fastest such round trip (at least 0.15 s, at most
                # the link timeout) per try; retried exchanges are no sample (Karn)
                tb, tries = time.monotonic(), lk.counters["retries"]
                r = _request(lk, Msg.PATCH_BEGIN, struct.pack("<II", total, crc)
                             + data[:HEADER_SIZE], "PATCH_BEGIN",
                             timeout=None if begin_rtt is None else
                             min(lk.timeout, max(0.15, 4 * begin_rtt)))
                if lk.counters["retries"] == tries:
                    dt = time.monotonic() - tb
                    begin_rtt = dt if begin_rtt is None else min(begin_rtt, dt)
                nxt, max_chunk = struct.unpack_from("<IH", r)
                ceiling = min(max_chunk, chunk or max_chunk)
                if sizer is None:
                    sizer = ChunkSizer(ceiling, chunk_floor, adaptive=adaptive)
                    res.chunk_size = ceiling
                else:
                    sizer.set_ceiling(ceiling)
                res.resumes.append(nxt)
                acked[0] = max(acked[0], nxt)
                if not begun:
                    res.resumed_from = nxt
                    begun = True
                try:
                    _stream(lk, data, nxt, sizer, window, res, progress,
                            chunk_timeout or lk.timeout, acked)
                except LinkError:
                    sizer.lost(cut=True)        # link lost with chunks in flight
                    raise
                finally:
                    res.chunk_min, res.chunk_final = sizer.smallest, sizer.size
                    res.chunk_changes = sizer.changes
            if t0 is not None and not res.stream_seconds:
                res.stream_seconds = time.monotonic() - t0
            if not apply:
                break
            ta = time.monotonic()
            applying = True
            # a lost APPLY or answer must not cost the whole apply_timeout: retry every
            # link timeout, for apply_timeout in all (a retry is the same seq and bytes:
            # a device still applying answers it from its duplicate cache afterwards)
            per_try = min(apply_timeout, max(lk.timeout, 0.5))
            r = _request(lk, Msg.PATCH_APPLY, b"", "PATCH_APPLY", timeout=per_try,
                         retries=max(lk.retries, int(apply_timeout / per_try)))
            res.apply_seconds = time.monotonic() - ta
            res.seq = struct.unpack_from("<I", r)[0]
            res.hash = r[4:36].hex()
            res.applied = True
            break
        except LinkError as e:
            if isinstance(e, PatchError):
                raise
            # progress since the last failure, or a smaller chunk to try: a fresh budget
            size_now = sizer.size if sizer is not None else 0
            if acked[0] > progress_at_fail or size_now < size_at_fail:
                attempts = 0
            progress_at_fail, size_at_fail = acked[0], size_now
            attempts += 1
            if attempts > reconnects:
                raise
            res.reconnects += 1
            ses.drop()
            time.sleep(min(0.05 * (attempts - 1), 0.5))
    res.streamed = total - res.resumed_from
    if res.stream_seconds > 0:
        res.bytes_per_s = res.streamed / res.stream_seconds
        res.fraction_of_baud = res.bytes_per_s / (baud / 10)
    if link is None:
        ses.drop()
    return res


def _stream(lk, data, base, sizer, window, res, progress, timeout, acked=None):
    """Pipelined go-back-N: keep `window` chunks (of sizer.size bytes) in flight from
    `base` until the device acknowledges the whole patch."""
    total = len(data)
    nxt = base
    inflight: dict[int, tuple[int, float]] = {}     # seq -> (offset, sent at)
    sent: set[int] = set()
    last_progress = time.monotonic()
    if progress:
        progress(base, total)
    while base < total:
        while len(inflight) < window and nxt < total:
            n = min(sizer.size, total - nxt)
            seq = lk._next_seq()
            lk._write(Frame(Msg.PATCH_CHUNK, seq, struct.pack("<I", nxt) + data[nxt:nxt + n])
                      .encode())
            lk.counters["tx_frames"] += 1
            inflight[seq] = (nxt, time.monotonic())
            sent.add(seq)
            res.sent_bytes += n
            res.chunks += 1
            nxt += n
        oldest = min(t for _, t in inflight.values()) if inflight else time.monotonic()
        left = oldest + timeout - time.monotonic()
        if left <= 0:
            res.timeouts += 1
            lk.counters["timeouts"] += 1
            if time.monotonic() - last_progress > 4 * timeout + 1:
                raise LinkError(f"device at {lk.url} stopped acknowledging patch chunks at "
                                f"offset {base} of {total}")
            inflight.clear()
            nxt = base
            res.retransmits += 1
            sizer.lost()
            continue
        for item in lk.reader.feed(lk._read_some(min(left, 0.2))):
            if isinstance(item, FrameError):
                lk.counters[item.kind] += 1
                continue
            lk.counters["rx_frames"] += 1
            if not item.is_response or item.type != Msg.PATCH_CHUNK or item.seq not in sent:
                lk.counters["stale"] += 1
                continue
            if item.status != Status.OK:
                raise device_error(item.status, item.payload, f"offset {inflight.get(item.seq, (0,))[0]}")
            ack, gap = struct.unpack_from("<IB", item.payload)
            current = inflight.pop(item.seq, None)
            if ack > base:
                base = ack
                last_progress = time.monotonic()
                if acked is not None:
                    acked[0] = max(acked[0], ack)
                if current is not None and not gap:
                    sizer.acked()
                if progress:
                    progress(base, total)
            if gap and current is not None and ack == base and nxt > base:
                inflight.clear()                    # go back to the device's offset
                nxt = base
                res.retransmits += 1
                sizer.lost()
        if nxt < base:
            nxt = base

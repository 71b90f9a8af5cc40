"""Structured fuzzer of the device protocol and the patch messages (issue #15), against
the host board (the firmware compiled natively; `host-asan` too when that board exists).

    python -m toolchain.patch.fuzz --frames 1000000 --json bench-results/proto_fuzz.json
    rep = fuzz_device("host", fw, store, key, frames=50_000, seed=1)

Frames go straight into the device's socket in batches (pipelined, responses drained
concurrently). Kinds, drawn per frame by a seeded RNG:

- stream sequences: XFER_BEGIN / CHUNK / END / SIZE / READ on the model input, output,
  layer output and scratch streams, sizes right and off by one;
- random bytes (with and without 0x00 delimiters; overlong runs past the device buffer);
- well-formed frames of random type (EXIT and PATCH_FAULT excepted: they end the
  process by design) with random payloads, lengths at 0, 1, max-1, max, max+1;
- boundary values of every message type's fields (u8/u16/u32 at 0, 1, 0x7F, 0x80, 0xFF,
  0xFFFF, 0xFFFFFFFF, the sizes the device announces ± 1, stream ids, patch header fields);
- mutated frames: bit flips, inserted / deleted / truncated bytes in a valid frame, the
  CRC recomputed afterwards (so the handler sees the damage) or not (the framer does);
- bad framing: broken COBS codes, wrong version, response flag set, length fields that
  disagree with the frame;
- model messages with the sizes the model announces ± 1 (on a patchable model firmware);
- patch sequences: BEGIN, chunks (in order, out of order, duplicated, mutated), APPLY of
  valid patches signed with the device key, forged, wrong-base, stale and truncated ones.

After every batch: a lone 0x00, then an ECHO with a fresh nonce must come back exactly
(no hang: within `hang_s`), the process must be alive (no crash), every byte the device
sent must parse as a response frame with a good CRC, and PATCH_STATUS must report a
(model hash, sequence) the fuzzer's valid patches can have produced."""
from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import sys
import time
import zlib
from pathlib import Path

from toolchain.link.frame import FrameError, FrameReader, cobs_encode
from toolchain.link.protocol import HDR, MAX_PAYLOAD, Msg, Status

from .format import HEADER_SIZE

FORBIDDEN = (int(Msg.EXIT), int(Msg.PATCH_FAULT))
U8 = (0, 1, 0x7F, 0x80, 0xFE, 0xFF)
U16 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x401, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
U32 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x1FFF, 0x2000, 0x2001, 0xFFFF, 0x10000,
       0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
STREAMS = (0x00, 0x21, 0x23, 0x28, 0x60, 0x61, 0x40, 0x42, 0xFF)
KNOWN = sorted({int(m) for m in Msg} | set(range(0x20, 0x29)))


class FuzzFailure(AssertionError):
    pass


def _wire(t, seq, payload=b"", *, flags=0, status=0, version=1) -> bytes:
    body = HDR.pack(version, t & 0xFF, flags, status, seq & 0xFFFF, len(payload) & 0xFFFF) + payload
    return cobs_encode(body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")) + b"\x00"


def _raw(t, seq, payload=b"") -> bytearray:
    body = HDR.pack(1, t, 0, 0, seq & 0xFFFF, len(payload)) + payload
    return bytearray(body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little"))


class Generator:
    """Seeded frame generator; `patches` = list of valid patch byte strings (in sequence
    order) the device may apply, `others` = bad ones (forged, wrong base, truncated)."""

    def __init__(self, seed: int, patches, others, stage_cap: int, slot_size: int,
                 scratch: int = 8192, model_in: int = 64):
        self.r = random.Random(seed)
        self.seq = self.r.randrange(1, 0xFFFF)
        self.patches, self.others = patches, others
        self.sizes = sorted({0, 1, 8, 84, 128, 136, 1020, 1021, 1024, 1025, scratch - 1,
                             scratch, scratch + 1, stage_cap - 1, stage_cap, stage_cap + 1,
                             slot_size - 1, slot_size, slot_size + 1})
        self.model_in = model_in
        self.counts = {}
        self.next_patch = 0
        self.wire_frames = 0

    def _s(self):
        self.seq = (self.seq + 1) & 0xFFFF or 1
        return self.seq

    def _u(self, vals, bits):
        r = self.r
        return r.choice(vals) if r.random() < 0.7 else (
            r.choice(self.sizes) if r.random() < 0.5 else r.getrandbits(bits)) & ((1 << bits) - 1)

    def _bytes(self, n):
        return self.r.randbytes(n) if self.r.random() < 0.7 else bytes([self.r.choice(U8)]) * n

    def _fields(self, t) -> bytes:
        """A payload shaped like message type t's request, fields at boundary values."""
        r, u8, u16, u32 = self.r, (lambda: self._u(U8, 8)), (lambda: self._u(U16, 16)), (lambda: self._u(U32, 32))
        s = lambda: r.choice(STREAMS) if r.random() < 0.8 else r.getrandbits(8)  # noqa: E731
        if t == Msg.XFER_BEGIN:
            return struct.pack("<BII", s(), u32(), u32())
        if t == Msg.XFER_CHUNK:
            return struct.pack("<BI", s(), u32()) + self._bytes(r.choice((0, 1, 255, 1019, 1020)))
        if t in (Msg.XFER_END, Msg.XFER_SIZE):
            return bytes([s()])
        if t == Msg.XFER_READ:
            return struct.pack("<BIH", s(), u32(), u16())
        if t in (0x25, 0x26, 0x27):                          # LAYER_TIMES / LAYER_INFO / RUN_TO
            return struct.pack("<H", u16())
        if t == 0x24:                                         # MODEL_INFER: the whole input
            return self._bytes(r.choice((0, 1, max(self.model_in - 1, 0), self.model_in,
                                         self.model_in + 1, 784, 1024)))
        if t == Msg.PATCH_BEGIN:
            src = r.choice(self.patches + self.others)
            hdr = bytearray(src[:HEADER_SIZE])
            if r.random() < 0.6:                              # one header field at a boundary
                off, w = r.choice(((4, 2), (6, 1), (7, 1), (8, 1), (9, 1), (10, 2), (12, 4),
                                   (16, 4), (20, 4), (24, 4), (28, 4)))
                v = self._u({1: U8, 2: U16, 4: U32}[w], 8 * w)
                hdr[off:off + w] = v.to_bytes(w, "little")
            total = len(src) if r.random() < 0.5 else u32()
            return struct.pack("<II", total, zlib.crc32(src) if r.random() < 0.7 else u32()) \
                + bytes(hdr[:r.choice((HEADER_SIZE,) * 8 + (0, 1, HEADER_SIZE - 1))])
        if t == Msg.PATCH_CHUNK:
            return struct.pack("<I", u32()) + self._bytes(r.choice((0, 1, 64, 1019, 1020)))
        if t == Msg.PATCH_READ:
            return struct.pack("<IH", u32(), u16())
        if t == Msg.ECHO:
            return self._bytes(r.choice((0, 1, 254, 255, 1023, 1024)))
        return self._bytes(r.choice((0, 0, 0, 1, 4, 1024)))

    def _valid(self):
        t = self.r.choice([k for k in KNOWN if k not in FORBIDDEN])
        return t, self._fields(t)

    def frame(self) -> bytes:
        """One fuzz item (one or several frames' wire bytes)."""
        r = self.r
        x = r.random()
        if x < 0.10:
            kind = "random_bytes"
            n = r.choice((1, 2, 7, 12, 13, 100, 300))
            b = r.randbytes(n)
            out = b + (b"\x00" if r.random() < 0.8 else b"")
        elif x < 0.14:
            kind = "overlong"
            out = bytes(r.randrange(1, 256) for _ in range(r.choice((1100, 1200, 2100)))) + b"\x00"
        elif x < 0.26:
            kind = "stream_sequence"
            out = self._stream_sequence()
        elif x < 0.32:
            kind = "random_type"
            t = r.getrandbits(8)
            while t in FORBIDDEN:
                t = r.getrandbits(8)
            n = r.choice((0, 1, 2, 4, 16, MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1))
            out = _wire(t, self._s(), self._bytes(n))
        elif x < 0.55:
            kind = "boundary"
            t, p = self._valid()
            out = _wire(t, self._s(), p)
        elif x < 0.75:
            kind = "mutated_fixed_crc" if r.random() < 0.7 else "mutated_raw"
            t, p = self._valid()
            raw = _raw(t, self._s(), p)
            body = raw[:-4]
            for _ in range(r.choice((1, 1, 2, 3, 8))):
                op = r.random()
                i = r.randrange(len(body))
                if op < 0.5:
                    body[i] ^= 1 << r.randrange(8)
                elif op < 0.65:
                    body[i] = r.choice(U8)
                elif op < 0.8:
                    body.insert(i, r.getrandbits(8))
                elif len(body) > 1:
                    del body[i]
            if kind == "mutated_fixed_crc":
                if len(body) > 1 and body[1] in FORBIDDEN:
                    body[1] = Msg.ECHO
                if r.random() < 0.8 and len(body) >= 8:      # keep the length field honest
                    body[6:8] = (len(body) - 8).to_bytes(2, "little")
                raw = body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
            else:
                raw = body + raw[-4:]
            out = cobs_encode(bytes(raw)) + b"\x00"
        elif x < 0.82:
            kind = "bad_framing"
            t, p = self._valid()
            y = r.random()
            if y < 0.25:
                out = _wire(t, self._s(), p, version=r.choice((0, 2, 0xFF)))
            elif y < 0.5:
                out = _wire(t, self._s(), p, flags=r.choice((1, 3, 0xFF)))
            elif y < 0.75:
                w = bytearray(_wire(t, self._s(), p))
                w[0] = r.randrange(1, 256)                    # COBS code past the end, etc.
                out = bytes(w)
            else:
                body = HDR.pack(1, t, 0, 0, self._s(), self._u(U16, 16)) + p
                out = cobs_encode(body + zlib.crc32(body).to_bytes(4, "little")) + b"\x00"
        else:
            kind = "patch_sequence"
            out = self._patch_sequence()
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.wire_frames += out.count(0)
        return out

    def _stream_sequence(self) -> bytes:
        """XFER_BEGIN / CHUNKs / END / SIZE / READs on one stream (model input, output,
        layer output, the scratch buffer), sizes right or off by one, chunks in order or
        not, a RUN_TO or INVOKE between."""
        r = self.r
        sid = r.choice((0x21, 0x21, 0x23, 0x28, 0x60, 0x60))
        n = r.choice((self.model_in, self.model_in, self.model_in - 1, self.model_in + 1, 1,
                      0, 4096, 8192, 8193)) if sid != 0x60 else r.choice((1, 100, 4096, 8192, 8193))
        n = max(n, 0)
        data = r.randbytes(n)
        parts = [_wire(Msg.XFER_BEGIN, self._s(), struct.pack("<BII", sid, n,
                                                              zlib.crc32(data) if r.random() < 0.8
                                                              else r.getrandbits(32)))]
        step = r.choice((1, 64, 1019, 1020))
        offs = list(range(0, n, step))
        if r.random() < 0.2:
            r.shuffle(offs)
        for o in offs[:40]:
            parts.append(_wire(Msg.XFER_CHUNK, self._s(), struct.pack("<BI", sid, o) + data[o:o + step]))
        parts.append(_wire(Msg.XFER_END, self._s(), bytes([sid])))
        if r.random() < 0.5:
            parts.append(_wire(r.choice((0x22, 0x27)), self._s(),
                               b"" if r.random() < 0.5 else struct.pack("<H", self._u(U16, 16))))
        parts.append(_wire(Msg.XFER_SIZE, self._s(), bytes([r.choice((sid, 0x23, 0x28))])))
        for _ in range(r.choice((1, 2, 3))):
            parts.append(_wire(Msg.XFER_READ, self._s(),
                               struct.pack("<BIH", r.choice((sid, 0x23, 0x28)),
                                           r.choice((0, 1, n - 1 if n else 0, n, n + 1)) & 0xFFFFFFFF,
                                           r.choice((0, 1, 1024, 0xFFFF)))))
        return b"".join(parts)

    def _patch_sequence(self) -> bytes:
        r = self.r
        if r.random() < 0.6:                # valid patches, mostly in sequence order
            if r.random() < 0.7:
                src = self.patches[self.next_patch % len(self.patches)]
                self.next_patch += 1
            else:
                src = r.choice(self.patches)
        else:
            src = r.choice(self.others)
        parts = [_wire(Msg.PATCH_BEGIN, self._s(), struct.pack("<II", len(src), zlib.crc32(src))
                       + src[:HEADER_SIZE])]
        n = r.choice((64, 256, 1020))
        offs = list(range(0, len(src), n))
        mode = r.random()
        if mode < 0.2:
            r.shuffle(offs)
        elif mode < 0.3:
            offs = offs + offs[: r.randrange(len(offs) + 1)]
        elif mode < 0.4:
            offs = offs[: r.randrange(len(offs) + 1)]
        for o in offs:
            d = bytearray(src[o:o + n])
            if d and r.random() < 0.03:
                d[r.randrange(len(d))] ^= 1 << r.randrange(8)
            parts.append(_wire(Msg.PATCH_CHUNK, self._s(), struct.pack("<I", o) + bytes(d)))
        if r.random() < 0.8:
            parts.append(_wire(Msg.PATCH_APPLY, self._s()))
        if r.random() < 0.1:
            parts.append(_wire(Msg.PATCH_ABORT, self._s()))
        return b"".join(parts)


class _Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.setblocking(False)
        self.reader = FrameReader()
        self.rx_frames = self.rx_bad = 0
        self.answers = {}

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _take(self, data):
        out = []
        for it in self.reader.feed(data):
            if isinstance(it, FrameError) or not it.is_response:
                self.rx_bad += 1
            else:
                self.rx_frames += 1
                k = (it.type, it.status)
                self.answers[k] = self.answers.get(k, 0) + 1
                out.append(it)
        return out

    def pump(self, data: bytes, until=None, timeout: float = 10.0):
        """Write `data` while draining responses; then read until until(frame) is true."""
        view, i = memoryview(data), 0
        deadline = time.monotonic() + timeout
        hit = None
        while i < len(data) or (until is not None and hit is None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FuzzFailure("hang: the device stopped answering")
            w = [self.s] if i < len(data) else []
            rr, ww, _ = select.select([self.s], w, [], min(left, 0.5))
            if rr:
                try:
                    b = self.s.recv(1 << 16)
                except BlockingIOError:
                    b = None
                except OSError as e:
                    raise FuzzFailure(f"crash: the connection failed ({e})") from None
                if b == b"":
                    raise FuzzFailure("crash: the device closed the connection")
                if b:
                    for f in self._take(b):
                        if until is not None and hit is None and until(f):
                            hit = f
            if ww:
                try:
                    i += self.s.send(view[i:i + 65536])
                except BlockingIOError:
                    pass
                except OSError as e:
                    raise FuzzFailure(f"crash: write failed ({e})") from None
        return hit


def fuzz_device(board, fw, chain, key, *, frames=50_000, seed=1, batch=500,
                others=(), hang_s=10.0, restart_every=25_000, echo=None) -> dict:
    """Fuzz one running device. chain: [(store, patch bytes to the next store)] ... the
    valid patches in sequence order (chain[0][0] = the store the firmware was built
    with); others: bad patch bytes."""
    from toolchain.devices import start_device
    from toolchain.link import Link

    from .faults import port_of
    from .send import PatchStatus, patch_status
    valid = [p for _, p in chain if p is not None]
    states = {(chain[0][0].hexhash(), 0)}
    for i, (st, p) in enumerate(chain[1:], 1):
        states.add((st.hexhash(), i))
    rep = dict(board=board, seed=seed, frames=0, wire_frames=0, batches=0, bytes=0,
               failures=[], kinds={}, checks=0, boots=0, applied_max_seq=0, final_state=None,
               seconds=0.0)
    t0 = time.monotonic()
    gen = None
    nonce = random.Random(seed ^ 0x5EED)
    while rep["frames"] < frames and not rep["failures"]:
        seg_end = min(frames, rep["frames"] + restart_every)
        with start_device(board, fw) as dev:
            rep["boots"] += 1
            lk = dev.link()
            st0 = patch_status(lk)
            if gen is None:
                gen = Generator(seed, valid, list(others), st0.stage_capacity, st0.slot_size,
                                model_in=lk.info().model_input_size or 64)
            gen.next_patch = 0                  # a fresh device: back at the first patch
            port = port_of(dev.url)
            dev.release()
            conn = _Conn(port)
            try:
                while rep["frames"] < seg_end:
                    n = min(batch, seg_end - rep["frames"])
                    w0 = gen.wire_frames
                    buf = b"".join(gen.frame() for _ in range(n))
                    tag = nonce.randbytes(8)
                    seq = nonce.randrange(1, 0xFFFF)
                    probe = b"\x00" + _wire(Msg.ECHO, seq, tag)
                    try:
                        got = conn.pump(buf + probe, until=lambda f: f.type == Msg.ECHO and
                                        f.seq == seq and f.status == 0 and f.payload == tag,
                                        timeout=hang_s + len(buf) / 2e5)
                        sseq = nonce.randrange(1, 0xFFFF)
                        stf = conn.pump(b"\x00" + _wire(Msg.PATCH_STATUS, sseq),
                                        until=lambda f: f.type == Msg.PATCH_STATUS
                                        and f.seq == sseq, timeout=hang_s)
                    except FuzzFailure as e:
                        rc = dev.proc.poll() if dev.proc else None
                        raise FuzzFailure(f"batch {rep['batches']} (frames {rep['frames']}.."
                                          f"{rep['frames'] + n}, seed {seed}): {e}"
                                          + (f"; process exited {rc}; log: {dev.log()[-300:]}"
                                             if rc is not None else "")) from None
                    rep["frames"] += n
                    rep["wire_frames"] += gen.wire_frames - w0
                    rep["batches"] += 1
                    rep["bytes"] += len(buf)
                    if got is None or stf is None or stf.status != 0:
                        raise FuzzFailure(f"batch {rep['batches']}: valid request not "
                                          f"answered correctly")
                    ps = PatchStatus.parse(stf.payload)
                    if (ps.hash, ps.seq) not in states:
                        raise FuzzFailure(f"batch {rep['batches']}: device holds model "
                                          f"{ps.hash} seq {ps.seq}, which no valid patch "
                                          f"produces")
                    if conn.rx_bad:
                        raise FuzzFailure(f"batch {rep['batches']}: {conn.rx_bad} malformed "
                                          f"frame(s) from the device")
                    if dev.proc is not None and dev.proc.poll() is not None:
                        raise FuzzFailure(f"batch {rep['batches']}: process exited "
                                          f"{dev.proc.poll()}")
                    rep["checks"] += 2
                    rep["applied_max_seq"] = max(rep["applied_max_seq"], ps.seq)
                    rep["final_state"] = [ps.hash, ps.seq]
                    if echo and rep["batches"] % 200 == 0:
                        echo(f"  {board}: {rep['frames']:,} items, seq {ps.seq}, "
                             f"{rep['frames'] / (time.monotonic() - t0):,.0f} items/s")
            except FuzzFailure as e:
                rep["failures"].append(str(e))
            finally:
                conn.close()
            rep["responses"] = rep.get("responses", 0) + conn.rx_frames
            for (t, stt), c in conn.answers.items():
                try:
                    name = Msg(t).name
                except ValueError:
                    name = f"0x{t:02X}"
                try:
                    sname = Status(stt).name
                except ValueError:
                    sname = str(stt)
                a = rep.setdefault("answers", {}).setdefault(name, {})
                a[sname] = a.get(sname, 0) + c
            try:
                lk = Link.open(dev.url, timeout=2)
                stats = lk.device_stats()
                lk.close()
                for k, v in stats.items():
                    rep.setdefault("device_stats", {})[k] = rep.get("device_stats", {}).get(k, 0) + v
            except Exception as e:  # noqa: BLE001
                if not rep["failures"]:
                    rep["failures"].append(f"after the run: {type(e).__name__}: {e}")
            if dev.proc is not None and dev.proc.poll() is not None and not rep["failures"]:
                rep["failures"].append(f"process exited {dev.proc.poll()}")
            log = dev.log()
            if "runtime error" in log or "AddressSanitizer" in log:
                rep["failures"].append("sanitizer report: " + log[-400:])
    rep["kinds"] = dict(sorted(gen.counts.items()))
    rep["seconds"] = round(time.monotonic() - t0, 2)
    rep["frames_per_s"] = round(rep["frames"] / max(rep["seconds"], 1e-9))
    return rep


def fuzz_case(key: bytes, n_patches: int = 30, store=None):
    """A store (default: a raw one), a chain of valid patches (seq 1..n) and bad ones."""
    from .device import mutate_store, patch_between, raw_store
    st = store or raw_store(((600, "int8", "weight"), (16, "int32", "bias"),
                             (900, "int8", "weight"), (4, "int32", "other")))
    chain, cur = [], st
    for i in range(1, n_patches + 1):
        nxt = mutate_store(cur, 0.1 if i % 3 else 1.0, seed=100 + i)
        chain.append((cur, patch_between(cur, nxt, key, i, full=(i % 4 == 0))))
        cur = nxt
    chain.append((cur, None))
    a, b = chain[0][0], chain[1][0]
    forged = bytearray(chain[0][1])
    forged[HEADER_SIZE + 3] ^= 0x04
    elsewhere = mutate_store(a, 0.5, seed=999)        # a model the device never holds
    others = [bytes(forged), patch_between(a, b, bytes(32), 1),          # forged, other key
              patch_between(elsewhere, b, key, 50), chain[0][1][:-9],     # wrong base, truncated
              patch_between(a, b, key, 0)]                                # sequence 0
    return st, chain, others


def sanitizer_env() -> None:
    """LeakSanitizer needs ptrace and the firmware never allocates: off for host-asan."""
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=0")


def available_boards() -> list[str]:
    from toolchain.boards import board_names
    return [b for b in ("host", "host-asan") if b in board_names()]


def run(frames=1_000_000, seed=1, boards=None, json_path=None, workdir="build/proto-fuzz",
        echo=print, targets=("raw store", "patchable model")) -> dict:
    """`frames` fuzz items per (board, target): the patch firmware of a raw store (core,
    debug, patch messages; model messages answer NO_MODEL) and a patchable model
    firmware (the toy int8 CNN: model messages run the real model)."""
    from .device import build_patch_firmware, build_patch_model_firmware
    from .store import weight_store
    from .toy import toy_int8_graph
    key = bytes(range(32))
    out = dict(frames_per_target=frames, seed=seed, runs=[])
    sanitizer_env()
    g0 = toy_int8_graph(0)
    cases = {"raw store": fuzz_case(key), "patchable model": fuzz_case(key, store=weight_store(g0))}
    for board, target in [(b, t) for b in (boards or available_boards()) for t in targets]:
        st, chain, others = cases[target]
        d = Path(workdir) / f"{board}-{target.replace(' ', '-')}"
        if target == "raw store":
            fw = build_patch_firmware(board, st, key, d, test_build=True)
        else:
            fw = build_patch_model_firmware(g0, board, key, d)[0]
        rep = fuzz_device(board, fw, chain, key, frames=frames, seed=seed, others=others,
                          echo=echo)
        rep["target"] = target
        out["runs"].append(rep)
        echo(f"{board} ({target}): {rep['frames']:,} fuzz items = {rep['wire_frames']:,} frames on the wire "
             f"({rep['bytes']:,} B) in {rep['seconds']} s ({rep['frames_per_s']:,} items/s), "
             f"{rep['batches']} batches checked, {rep['boots']} boots, patches applied up to "
             f"seq {rep['applied_max_seq']}, {len(rep['failures'])} failures")
        for f in rep["failures"]:
            echo(f"  FAIL: {f}")
    out["total_frames"] = sum(r["frames"] for r in out["runs"])
    out["failures"] = sum(len(r["failures"]) for r in out["runs"])
    if json_path:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(out, f, indent=1, default=str)
            f.write("\n")
        echo(f"wrote {json_path}")
    return out


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--board", action="append", help="host, host-asan (default: those present)")
    ap.add_argument("--target", action="append", choices=("raw store", "patchable model"),
                    help="firmware(s) to fuzz (default: both)")
    ap.add_argument("--json", default="bench-results/proto_fuzz.json")
    a = ap.parse_args()
    r = run(a.frames, a.seed, a.board, a.json, targets=tuple(a.target or ("raw store",
                                                                         "patchable model")))
    sys.exit(1 if r["failures"] else 0)

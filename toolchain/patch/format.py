"""The patch file: encode, decode, authenticate. Byte-exact spec: docs/patch-format.md.

    offset size  field
      0     4    magic "MCUP"
      4     2    format version (1)
      6     1    type: 0 DELTA (changed elements, sparse or dense), 1 FULL (dense, new only)
      7     1    compression: 0 none (the only one the device accepts), 1 zlib (host only)
      8     1    tag algorithm: 1 HMAC-SHA256
      9     1    flags: bit 0 HAS_OLD (DELTA: set = records carry old values, clear =
                 new values only, roll-forward; FULL: clear); other bits 0
     10     2    group count (tensors touched)
     12     4    sequence number (strictly increasing per device)
     16     4    entry count (elements written, all groups)
     20     4    payload length as stored
     24     4    payload length after decompression
     28     4    key id: SHA-256("mcu-patch-key-id" ‖ key)[:4]
     32    32    base store hash (the model the patch applies to)
     64    32    target store hash (the model after applying)
     96    32    payload digest: SHA-256 of the stored payload bytes
    128     n    payload
  128+n    32    tag: HMAC-SHA256(key, bytes 0 .. 128+n-1)

A DELTA patch with HAS_OLD clear is roll-forward only, like FULL: the device verifies
its base by the base store hash (which covers every store byte) and cannot undo it
from the patch alone. All integers little-endian. Payload = groups in increasing tensor index:
    varint tensor index | u8 mode (0 SPARSE, 1 DENSE) | u8 element size | varint count |
    count records:  SPARSE: varint gap | new[elem] | old[elem]   (old only if HAS_OLD)
                    DENSE:               new[elem] | old[elem]   (element i = record i)
The gap of the first record is its element offset; then offset − previous offset − 1.
Varints are unsigned LEB128, minimal, at most 5 bytes, value < 2^32.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

# The header and tag sizes are defined below the patch layer: the weight area's staging
# size (toolchain.codegen.weight_area.max_patch_size) needs them.
from toolchain.codegen.weight_area import HEADER_SIZE, TAG_SIZE  # noqa: F401

from .errors import (PatchAuthError, PatchDigestError, PatchFormatError, PatchTruncated)

MAGIC = b"MCUP"
VERSION = 1
TYPE_DELTA, TYPE_FULL = 0, 1
TYPE_NAMES = {TYPE_DELTA: "delta", TYPE_FULL: "full"}
COMP_NONE, COMP_ZLIB = 0, 1
COMP_NAMES = {COMP_NONE: "none", COMP_ZLIB: "zlib"}
TAG_HMAC_SHA256 = 1
FLAG_HAS_OLD = 0x01
MODE_SPARSE, MODE_DENSE = 0, 1
_HDR = struct.Struct("<4sHBBBBHIIII4s32s32s32s")
assert _HDR.size == HEADER_SIZE
MAX_U32 = 0xFFFFFFFF
_DTYPES = {1: np.dtype("<i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4")}


# -- varints ---------------------------------------------------------------------------
def encode_varint(v: int) -> bytes:
    if v < 0 or v > MAX_U32:
        raise ValueError(f"varint out of range: {v}")
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, new position); rejects truncated, over-long (> 5 bytes), non-minimal and
    > 2^32-1 encodings, as the device does."""
    v = shift = 0
    for i in range(5):
        if pos + i >= len(buf):
            raise PatchFormatError(f"payload ends inside a varint at byte {pos}")
        b = buf[pos + i]
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if i > 0 and b == 0:
                raise PatchFormatError(f"non-minimal varint at byte {pos}")
            if v > MAX_U32:
                raise PatchFormatError(f"varint above 2^32-1 at byte {pos}")
            return v, pos + i + 1
    raise PatchFormatError(f"varint longer than 5 bytes at byte {pos}")


def encode_gaps(offsets: np.ndarray) -> bytes:
    """Strictly increasing offsets -> concatenated varint gaps (first = offset)."""
    return b"".join(encode_varint(int(g)) for g in gaps(offsets))


def gaps(offsets: np.ndarray) -> np.ndarray:
    o = np.asarray(offsets, dtype=np.int64)
    if o.size == 0:
        return o
    g = np.empty_like(o)
    g[0] = o[0]
    g[1:] = np.diff(o) - 1
    if (g < 0).any():
        raise ValueError("offsets must be strictly increasing")
    return g


def varint_len(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return 1 + (v >= 1 << 7) + (v >= 1 << 14) + (v >= 1 << 21) + (v >= 1 << 28)


# -- keys ------------------------------------------------------------------------------
def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"mcu-patch-key-id" + key).digest()[:4]


def load_key(path_or_bytes) -> bytes:
    """A key file holds 32 bytes, raw or as 64 hex digits (whitespace ignored)."""
    from .errors import PatchError
    if isinstance(path_or_bytes, (bytes, bytearray)):
        raw = bytes(path_or_bytes)
        where = "key"
    else:
        where = str(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise PatchError(f"cannot read key file {where}: {e.strerror}") from None
    if len(raw) == 32:
        return raw
    txt = raw.strip()
    try:
        k = bytes.fromhex(txt.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        k = b""
    if len(k) != 32:
        raise PatchError(f"{where}: a key is 32 bytes, raw or as 64 hex digits")
    return k


# -- the patch object --------------------------------------------------------------------
@dataclass
class Group:
    """Changes to one weight-store tensor: element offsets with new (and old) values."""
    tensor: int
    elem_size: int
    offsets: np.ndarray            # int64, strictly increasing
    new: np.ndarray                # signed ints of elem_size, same length
    old: np.ndarray | None = None  # None for FULL patches and DELTA without old values
    dense: bool = False

    @property
    def count(self) -> int:
        return int(len(self.offsets))

    def encoded_size(self, has_old: bool) -> int:
        n = self.count
        head = len(encode_varint(self.tensor)) + 2 + len(encode_varint(n))
        idx = 0 if self.dense else int(varint_len(gaps(self.offsets)).sum())
        return head + idx + n * self.elem_size * (2 if has_old else 1)


@dataclass
class Patch:
    type: int
    seq: int
    base_hash: bytes
    target_hash: bytes
    groups: list[Group] = field(default_factory=list)
    compression: int = COMP_NONE
    key_id: bytes = b"\0\0\0\0"
    with_old: bool = True          # DELTA only: records carry old values (flag HAS_OLD)
    # filled by decode:
    payload_digest: bytes = b""
    payload_len: int = 0
    raw_len: int = 0
    tag: bytes = b""
    tag_ok: bool | None = None

    @property
    def has_old(self) -> bool:
        return self.type == TYPE_DELTA and self.with_old

    @property
    def entries(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, str(self.type))


def encode_payload(patch: Patch) -> bytes:
    out = bytearray()
    last = -1
    for g in patch.groups:
        if g.tensor <= last:
            raise ValueError("groups must be in strictly increasing tensor order")
        last = g.tensor
        dt = _DTYPES[g.elem_size]
        out += encode_varint(g.tensor)
        out += bytes([MODE_DENSE if g.dense else MODE_SPARSE, g.elem_size])
        out += encode_varint(g.count)
        new = np.asarray(g.new).astype(dt)
        old = np.asarray(g.old).astype(dt) if patch.has_old else None
        gp = None if g.dense else gaps(g.offsets)
        if g.dense and not np.array_equal(g.offsets, np.arange(g.count)):
            raise ValueError("dense group must cover offsets 0..n-1")
        nb, ob = new.tobytes(), (old.tobytes() if old is not None else b"")
        es = g.elem_size
        for i in range(g.count):
            if gp is not None:
                out += encode_varint(int(gp[i]))
            out += nb[i * es:(i + 1) * es]
            if old is not None:
                out += ob[i * es:(i + 1) * es]
    return bytes(out)


def encode_patch(patch: Patch, key: bytes) -> bytes:
    """Patch -> authenticated bytes (the tag is HMAC-SHA256 with `key`)."""
    if patch.type not in TYPE_NAMES:
        raise ValueError(f"unknown patch type {patch.type}")
    if patch.type == TYPE_FULL and not all(g.dense for g in patch.groups):
        raise ValueError("a FULL patch has dense groups only")
    if not 0 <= patch.seq <= MAX_U32:
        raise ValueError("sequence number must fit in 32 bits")
    raw = encode_payload(patch)
    stored = raw
    if patch.compression == COMP_ZLIB:
        stored = zlib.compress(raw, 9)
    elif patch.compression != COMP_NONE:
        raise ValueError(f"unknown compression {patch.compression}")
    kid = key_id(key)
    hdr = _HDR.pack(MAGIC, VERSION, patch.type, patch.compression, TAG_HMAC_SHA256,
                    FLAG_HAS_OLD if patch.has_old else 0, len(patch.groups), patch.seq,
                    patch.entries, len(stored), len(raw), kid, patch.base_hash,
                    patch.target_hash, hashlib.sha256(stored).digest())
    body = hdr + stored
    return body + hmac.new(key, body, hashlib.sha256).digest()


def read_header(data: bytes) -> dict:
    """Parse and sanity-check the fixed header (no key needed)."""
    if len(data) < HEADER_SIZE + TAG_SIZE:
        if len(data) >= 4 and data[:4] != MAGIC:
            raise PatchFormatError("not a patch file (bad magic)")
        raise PatchTruncated(f"patch truncated: {len(data)} bytes, a patch has at least "
                             f"{HEADER_SIZE + TAG_SIZE}")
    (magic, ver, typ, comp, tag_alg, flags, n_groups, seq, n_entries, plen, rlen, kid,
     base, target, digest) = _HDR.unpack_from(data, 0)
    if magic != MAGIC:
        raise PatchFormatError("not a patch file (bad magic)")
    if ver != VERSION:
        raise PatchFormatError(f"patch format version {ver} not supported (this tool reads "
                               f"{VERSION})")
    if typ not in TYPE_NAMES:
        raise PatchFormatError(f"unknown patch type {typ}")
    if comp not in COMP_NAMES:
        raise PatchFormatError(f"unknown compression {comp}")
    if tag_alg != TAG_HMAC_SHA256:
        raise PatchFormatError(f"unknown tag algorithm {tag_alg}")
    if flags & ~FLAG_HAS_OLD or (typ == TYPE_FULL and flags & FLAG_HAS_OLD):
        raise PatchFormatError(f"bad flags 0x{flags:02x} for a {TYPE_NAMES[typ]} patch")
    want = HEADER_SIZE + plen + TAG_SIZE
    if len(data) < want:
        raise PatchTruncated(f"patch truncated: {len(data)} bytes, header says {want}")
    if len(data) > want:
        raise PatchTruncated(f"patch has {len(data) - want} trailing bytes after the tag")
    return dict(type=typ, compression=comp, flags=flags, n_groups=n_groups, seq=seq,
                entries=n_entries, payload_len=plen, raw_len=rlen, key_id=kid,
                base_hash=base, target_hash=target, payload_digest=digest)


def check_tag(data: bytes, key: bytes) -> bool:
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    return hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), tag)


def decode_patch(data: bytes, key: bytes | None = None) -> Patch:
    """Bytes -> Patch, checking in the device's order: length, header, tag (when a key
    is given; raises PatchAuthError), digest, payload structure. Without a key the
    tag is not checked (tag_ok None): use only for display."""
    data = bytes(data)
    h = read_header(data)
    tag_ok = None
    if key is not None:
        tag_ok = check_tag(data, key)
        if not tag_ok:
            hint = "" if h["key_id"] == key_id(key) else " (patch was signed with another key)"
            raise PatchAuthError(f"patch authentication failed: tag mismatch{hint}")
    stored = data[HEADER_SIZE:HEADER_SIZE + h["payload_len"]]
    if hashlib.sha256(stored).digest() != h["payload_digest"]:
        raise PatchDigestError("patch payload digest mismatch (corrupted payload)")
    if h["compression"] == COMP_ZLIB:
        try:
            raw = zlib.decompress(stored)
        except zlib.error:
            raise PatchFormatError("patch payload does not decompress (zlib)") from None
    else:
        raw = stored
    if len(raw) != h["raw_len"]:
        raise PatchFormatError(f"payload is {len(raw)} bytes, header says {h['raw_len']}")
    p = Patch(h["type"], h["seq"], h["base_hash"], h["target_hash"], [], h["compression"],
              h["key_id"], bool(h["flags"] & FLAG_HAS_OLD), h["payload_digest"],
              h["payload_len"], h["raw_len"], data[-TAG_SIZE:], tag_ok)
    p.groups = _decode_groups(raw, h, p.has_old)
    if p.entries != h["entries"]:
        raise PatchFormatError(f"payload holds {p.entries} entries, header says {h['entries']}")
    return p


def _decode_groups(raw: bytes, h: dict, has_old: bool) -> list[Group]:
    groups = []
    pos, last = 0, -1
    for gi in range(h["n_groups"]):
        t, pos = decode_varint(raw, pos)
        if t <= last:
            raise PatchFormatError(f"group {gi}: tensor {t} not above previous {last}")
        last = t
        if pos + 2 > len(raw):
            raise PatchFormatError(f"payload ends inside group {gi} header")
        mode, es = raw[pos], raw[pos + 1]
        pos += 2
        if mode not in (MODE_SPARSE, MODE_DENSE):
            raise PatchFormatError(f"group {gi}: unknown mode {mode}")
        if es not in _DTYPES:
            raise PatchFormatError(f"group {gi}: element size {es} not 1, 2 or 4")
        if h["type"] == TYPE_FULL and mode != MODE_DENSE:
            raise PatchFormatError(f"group {gi}: a full patch has dense groups only")
        n, pos = decode_varint(raw, pos)
        if n == 0:
            raise PatchFormatError(f"group {gi}: empty")
        rec = es * (2 if has_old else 1)
        if mode == MODE_DENSE:
            need = n * rec
            if pos + need > len(raw):
                raise PatchFormatError(f"payload ends inside group {gi}")
            blk = np.frombuffer(raw, np.uint8, need, pos).reshape(n, rec)
            pos += need
            offs = np.arange(n, dtype=np.int64)
        else:
            offs = np.empty(n, np.int64)
            blk = np.empty((n, rec), np.uint8)
            prev = -1
            for i in range(n):
                gap, pos = decode_varint(raw, pos)
                prev = prev + 1 + gap
                offs[i] = prev
                if pos + rec > len(raw):
                    raise PatchFormatError(f"payload ends inside group {gi} record {i}")
                blk[i] = np.frombuffer(raw, np.uint8, rec, pos)
                pos += rec
        dt = _DTYPES[es]
        new = np.ascontiguousarray(blk[:, :es]).view(dt).reshape(-1).astype(np.int64)
        old = (np.ascontiguousarray(blk[:, es:]).view(dt).reshape(-1).astype(np.int64)
               if has_old else None)
        groups.append(Group(t, es, offs, new, old, mode == MODE_DENSE))
    if pos != len(raw):
        raise PatchFormatError(f"{len(raw) - pos} bytes left after the last group")
    return groups

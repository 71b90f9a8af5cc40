"""Fleet keys (issue #15): per-device patch keys derived from one fleet secret and the
device id with HKDF-SHA256 (RFC 5869), so a server keeps one secret and each device
holds only its own key. Trust model: docs/patch-format.md "Fleet keys".

    key = device_key(load_fleet_secret("fleet.secret"), "sensor-0042")

    device key = HKDF-SHA256(IKM = fleet secret (32..64 B), salt = "mcu-patch-fleet-v1",
                             info = "mcu-patch-device-key" 0x00 device id (UTF-8), L = 32)

The derived key is an ordinary 32-byte patch key: firmware builds, patch signing and
the device's check do not change (the device never sees the fleet secret or the id).
"""
from __future__ import annotations

import hashlib
import hmac

from .errors import PatchError

HASH_LEN = 32
FLEET_SALT = b"mcu-patch-fleet-v1"
DEVICE_INFO = b"mcu-patch-device-key\x00"
MAX_DEVICE_ID = 128


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 2.2: PRK = HMAC-Hash(salt, IKM); an empty salt is HashLen zeros."""
    return hmac.new(salt or bytes(HASH_LEN), ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), OKM = first L octets."""
    if not 0 <= length <= 255 * HASH_LEN:
        raise ValueError(f"HKDF-SHA256 output length {length} not in 0..{255 * HASH_LEN}")
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def check_device_id(device_id) -> bytes:
    """A device id: 1..128 bytes of UTF-8 without control characters (serial number,
    asset tag ...). Returned encoded."""
    d = device_id.encode("utf-8") if isinstance(device_id, str) else bytes(device_id)
    if not d or len(d) > MAX_DEVICE_ID:
        raise PatchError(f"device id must be 1..{MAX_DEVICE_ID} bytes, got {len(d)}")
    try:
        txt = d.decode("utf-8")
    except UnicodeDecodeError:
        raise PatchError("device id is not valid UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in txt):
        raise PatchError(f"device id {txt!r} contains control characters")
    return d


def device_key(fleet_secret: bytes, device_id) -> bytes:
    """The 32-byte patch key of device `device_id` in the fleet of `fleet_secret`."""
    if len(fleet_secret) < 32:
        raise PatchError(f"a fleet secret has at least 32 bytes, got {len(fleet_secret)}")
    return hkdf(fleet_secret, FLEET_SALT, DEVICE_INFO + check_device_id(device_id), 32)


def load_fleet_secret(path) -> bytes:
    """A fleet secret file: 32..64 bytes raw, or 64..128 hex digits (whitespace ignored);
    `mcu patch keygen fleet.secret` writes one."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise PatchError(f"cannot read fleet secret {where}: {e.strerror}") from None
    try:
        txt = b"".join(raw.split()).decode("ascii")
        k = bytes.fromhex(txt) if len(txt) % 2 == 0 else b""
    except (UnicodeDecodeError, ValueError):
        k = b""
    if not 32 <= len(k) <= 64:
        k = raw if 32 <= len(raw) <= 64 else b""
    if not k:
        raise PatchError(f"{where}: a fleet secret is 32..64 bytes, raw or as hex digits")
    return k

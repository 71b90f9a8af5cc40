"""Patch errors: each is one line that says what was rejected and why."""
from toolchain.errors import McuError


class PatchError(McuError):
    """Base of every patch problem (the CLI prints it as one line, exit 1)."""


class PatchFormatError(PatchError):
    """Bytes that are not a valid patch: bad magic, unknown version, malformed payload."""


class PatchTruncated(PatchFormatError):
    """The patch is shorter (or longer) than its header says."""


class PatchAuthError(PatchError):
    """The authentication tag does not match (forged, corrupted, or the wrong key)."""


class PatchDigestError(PatchError):
    """The payload digest in the header does not match the payload."""


class PatchBaseError(PatchError):
    """The patch was made for another model (base hash or old values differ)."""


class PatchReplayError(PatchError):
    """The sequence number is not above the last one applied (replayed or stale patch)."""


class PatchApplyError(PatchError):
    """Applying did not give the promised model (target hash mismatch); rolled back."""


class PatchModelError(PatchError):
    """Two models that cannot be diffed (different structure), or a bad model file."""

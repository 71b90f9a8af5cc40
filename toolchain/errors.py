"""User-facing errors: each carries one line that says what went wrong and how to fix it."""
from toolchain.ir.graph import IRError


class McuError(Exception):
    """Base for errors the CLI reports as one line with a non-zero exit."""
    exit_code = 1


class BoardError(McuError):
    """Unknown board, or a board file with a missing/invalid field."""


class ToolMissing(McuError):
    """A required system tool (cross compiler, QEMU) is not installed."""


class BuildError(McuError):
    """Firmware did not compile or link (e.g. model does not fit)."""


class LinkError(McuError):
    """Serial link problem: port missing, device not answering, protocol violation."""


class ConvertError(McuError):
    """A model cannot be read or converted."""


USER_ERRORS = (McuError, IRError)

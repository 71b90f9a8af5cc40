"""User-facing errors: each carries one line that says what went wrong and how to fix it.

The bottom layer: imports nothing of the project, so every layer (the wire included)
can raise these without depending on the IR or anything else above."""


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


class NoModelError(LinkError):
    """The device runs firmware without a model: like a device running another model,
    exit status 3 (README "Exit status")."""
    exit_code = 3


class FlashError(McuError):
    """A board's flasher (its TOML [launch] flash_command) failed."""


class WrongFirmware(LinkError):
    """After flashing, the device answers with another build id or model hash: like a
    device running another model, exit status 3."""
    exit_code = 3


class ConvertError(McuError):
    """A model cannot be read or converted."""


class IRError(McuError, ValueError):
    """A problem with a model that the user must fix; the message is one clear line.
    Re-exported as toolchain.ir.graph.IRError / toolchain.ir.IRError; still a ValueError
    for code that catches it as one."""


USER_ERRORS = (McuError,)    # IRError is an McuError

"""HIL errors: each is one line for the user (the CLI prints it, exits non-zero)."""
from toolchain.errors import LinkError, McuError


class HilError(McuError):
    """A HIL run cannot start or go on."""


class DataError(HilError):
    """The data set does not fit the model (shape, dtype, labels)."""
    exit_code = 2


class ModelMismatch(HilError):
    """The device runs another model than the one given (model hash differs)."""
    exit_code = 3


class DeviceStopped(LinkError):
    """The device stopped answering during the run; partial results were kept."""
    exit_code = 4


class CheckFailed(HilError):
    """The run finished but a check failed (accuracy, device vs reference)."""
    exit_code = 1

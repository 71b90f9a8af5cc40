"""`mcu boards|build|run|info`: boards, firmware builds, devices."""
from toolchain.cli import main  # noqa: F401

"""The `mcu` command. Thin: parses, calls the modules, prints.

Every failure a user can cause ends in one line on stderr and a non-zero exit.
Commands live in small modules (cli_*.py) that register themselves on `main`;
heavy imports (torch, onnx) happen inside commands so `mcu boards` stays fast."""
from __future__ import annotations

import json
import sys

import click

from toolchain.errors import USER_ERRORS


class McuGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(getattr(e, "exit_code", 1))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=McuGroup)
@click.version_option(package_name="mcu-ml-toolchain")
def main():
    """Deploy int8 ML models to Cortex-M microcontrollers."""


def write_json(path, obj) -> None:
    """Write figures as JSON (every command that yields figures takes --json PATH)."""
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2, default=str)
            f.write("\n")


# Command modules register on import.
from toolchain import cli_device  # noqa: E402,F401
from toolchain import cli_convert  # noqa: E402,F401
from toolchain import cli_patch  # noqa: E402,F401
from toolchain import cli_hil  # noqa: E402,F401
from toolchain import cli_model  # noqa: E402,F401

if __name__ == "__main__":
    # Run as `python -m toolchain.cli`: this module is `__main__`, and the command modules
    # registered themselves on the importable `toolchain.cli`; run that one.
    from toolchain.cli import main as _main
    _main()

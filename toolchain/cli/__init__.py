"""The `mcu` command. Thin: parses, calls the modules, prints.

Every failure a user can cause ends in one line on stderr and a non-zero exit.
The group is assembled here from the command modules (device, convert, patch,
patch_device, hil, model); they import only toolchain.cli.common, never this module,
so there is no import circle. Heavy imports (torch, onnx) happen inside commands so
`mcu boards` stays fast."""
from __future__ import annotations

import sys

import click

from toolchain.cli import convert, device, hil, model, patch, patch_device
from toolchain.cli.common import write_json  # noqa: F401  (kept importable from here)
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


for _mod in (device, convert, patch, hil, model):
    for _cmd in _mod.COMMANDS:
        main.add_command(_cmd)
for _cmd in patch_device.COMMANDS:      # `mcu patch firmware|send|status`
    patch.patch.add_command(_cmd)

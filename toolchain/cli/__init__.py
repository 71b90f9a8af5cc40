"""The `mcu` command. Thin: parses, calls the modules, prints.

Every failure a user can cause ends in one line on stderr and a non-zero exit.
The group is assembled here from the command modules (device, flash, convert, patch,
patch_device, hil, model, subnets); they import only toolchain.cli.common, never this module,
so there is no import circle. Heavy imports (torch, onnx) happen inside commands so
`mcu boards` stays fast."""
from __future__ import annotations

import os
import sys

import click

from toolchain.cli import convert, device, flash, hil, model, patch, patch_device, subnets
from toolchain.cli.common import write_json  # noqa: F401  (kept importable from here)
from toolchain.errors import USER_ERRORS


EXIT_IO = 5          # a file could not be read or written
EXIT_INTERNAL = 70   # a bug in mcu (sysexits EX_SOFTWARE)
_CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def _debug(ctx) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("MCU_DEBUG", "") not in ("", "0")


class McuGroup(click.Group):
    """The one error boundary: every exception ends as one line and a documented exit
    status (README "Exit status"); --debug / MCU_DEBUG=1 shows internal tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(getattr(e, "exit_code", 1))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except _CLICK_FLOW:
            raise
        except OSError as e:
            if _debug(ctx):
                raise
            where = f" '{e.filename}'" if getattr(e, "filename", None) else ""
            click.echo(f"error: cannot access{where}: {e.strerror or e}", err=True)
            sys.exit(EXIT_IO)
        except Exception as e:  # noqa: BLE001 - the boundary: anything else is our bug
            if _debug(ctx):
                raise
            msg = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"error: internal error (a bug in mcu): {type(e).__name__}: {msg}; "
                       "rerun with --debug or MCU_DEBUG=1 for the traceback", err=True)
            sys.exit(EXIT_INTERNAL)


@click.group(cls=McuGroup)
@click.version_option(package_name="mcu-ml-toolchain")
@click.option("--debug", is_flag=True, help="Show Python tracebacks of internal errors "
              "(also MCU_DEBUG=1).")
def main(debug):
    """Deploy int8 ML models to Cortex-M microcontrollers."""


for _mod in (device, flash, convert, patch, hil, model, subnets):
    for _cmd in _mod.COMMANDS:
        main.add_command(_cmd)
for _cmd in patch_device.COMMANDS:      # `mcu patch firmware|send|status`
    patch.patch.add_command(_cmd)

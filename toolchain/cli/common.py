"""Helpers the command modules share (they import this, never the package's __init__).

Outputs are checked before the work starts (`check_outputs`: the directory exists and
is writable, the suffix is right) and written atomically (`atomic_write`: a temporary
name in the same directory, then a rename), so a failed command leaves nothing new."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from toolchain.errors import McuError


def check_outputs(*paths, suffixes: dict | None = None) -> None:
    """Raise one line before any work if an output path cannot be written. `suffixes`
    maps a path to the suffixes it must have (e.g. {out_model: (".tflite",)})."""
    for p in paths:
        if not p:
            continue
        p = Path(p)
        want = (suffixes or {}).get(str(p)) or (suffixes or {}).get(p)
        if want and p.suffix.lower() not in want:
            raise McuError(f"{p}: expected a {' or '.join(want)} file name")
        parent = p.parent if str(p.parent) else Path(".")
        if p.is_dir():
            raise McuError(f"{p} is a directory; give a file name")
        if not parent.is_dir():
            raise OSError(2, "No such file or directory", str(parent))
        if not os.access(parent, os.W_OK):
            raise OSError(13, "Permission denied", str(parent))


def atomic_write(path, data: bytes | str) -> None:
    """Write a whole file under a temporary name, then rename it into place."""
    path = Path(path)
    b = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path, obj) -> None:
    """Write figures as JSON (every command that yields figures takes --json PATH)."""
    if path:
        atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- spiking models (.nir)
SNN_OPTION_NAMES = ("timesteps", "dt", "reset", "encoding", "state_bits", "seed")


def snn_options(f):
    """The options of a spiking model (MODEL.nir): time steps and fixed point."""
    import click
    opts = [
        click.option("--timesteps", "-T", type=int, default=None,
                     help="Spiking models (.nir): time steps per sample (required)."),
        click.option("--dt", type=float, default=1e-4, show_default=True,
                     help="Spiking models: the forward-Euler time step (NIR has none; "
                          "snnTorch's convention)."),
        click.option("--reset", type=click.Choice(["zero", "subtract"]), default=None,
                     help="Spiking models: reset mechanism of every spiking neuron "
                          "[default: the graph's, v <- v_reset; snnTorch's Leaky default "
                          "is subtract]."),
        click.option("--encoding", type=click.Choice(["constant", "rate", "events"]),
                     default="constant", show_default=True,
                     help="Spiking models: input encoding (analog current every step, seeded "
                          "rate coding, or spike events from the data file)."),
        click.option("--state-bits", type=click.Choice(["16", "32"]), default="16",
                     show_default=True, help="Spiking models: neuron state width."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Spiking models: rate-coding seed."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def snn_opts(kw: dict):
    """SnnOptions from the click parameters (popped from kw)."""
    from toolchain.snn.pipeline import SnnOptions
    v = {k: kw.pop(k) for k in SNN_OPTION_NAMES}
    return SnnOptions(timesteps=v["timesteps"], dt=v["dt"], reset=v["reset"],
                      encoding=v["encoding"], state_bits=int(v["state_bits"]), seed=v["seed"])


def is_snn(model) -> bool:
    return bool(model) and str(model).lower().endswith(".nir")


def refuse_snn_options(model, kw: dict) -> None:
    """A non-spiking model given --timesteps: say so instead of ignoring it."""
    from toolchain.errors import McuError
    if kw.get("timesteps") is not None:
        raise McuError(f"--timesteps is for spiking models (.nir); {model} is not one")
    for k in SNN_OPTION_NAMES:
        kw.pop(k, None)


# ---------------------------------------------------------------- labgrid places (farm)
PLACE_TIMEOUT_HELP = ("Seconds to wait for a place that someone else holds, then fail "
                      "[default: wait as long as it takes].")


def place_options(f, multiple: bool = False):
    """--place NAME and --place-timeout S (a labgrid place on $LG_COORDINATOR)."""
    import click
    f = click.option("--coordinator", default=None, metavar="HOST:PORT",
                     help="labgrid coordinator for --place [default: $LG_COORDINATOR, else "
                          "127.0.0.1:20408].")(f)
    f = click.option("--place-timeout", type=click.FloatRange(min=0), default=None,
                     help=PLACE_TIMEOUT_HELP)(f)
    f = click.option("--place", "place", default=None, multiple=multiple, metavar="NAME",
                     help="A labgrid place (on --coordinator): acquired for the command, "
                          "its serial port "
                          "used as --port, its `board` tag as --board; released on exit"
                          + (". Repeat it, or give a pattern with --jobs N, for parallel "
                             "HIL" if multiple else "") + ".")(f)
    return f


def on_place(f):
    """Under the click options of a command with `port` and `board` parameters: with
    --place, acquire the place, run the command against its serial port, release it on
    every exit path (Ctrl-C and SIGTERM included)."""
    import functools

    import click

    @functools.wraps(f)
    def wrapper(*args, place=None, place_timeout=None, coordinator=None, **kw):
        if not place:
            if place_timeout is not None or coordinator is not None:
                raise click.UsageError("--place-timeout and --coordinator need --place")
            return f(*args, **kw)
        if kw.get("port"):
            raise click.UsageError("give --place or --port, not both")
        from toolchain.farm import acquire_place
        with acquire_place(place, timeout=place_timeout, coordinator=coordinator,
                           log=lambda s: click.echo(s, err=True)) as lease:
            kw["port"] = lease.serial_url
            if "board" in kw and not kw["board"] and lease.board:
                kw["board"] = lease.board
            return f(*args, **kw)
    return wrapper

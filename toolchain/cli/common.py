"""Helpers the command modules share (they import this, never the package's __init__)."""
from __future__ import annotations

import json


def write_json(path, obj) -> None:
    """Write figures as JSON (every command that yields figures takes --json PATH)."""
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2, default=str)
            f.write("\n")


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

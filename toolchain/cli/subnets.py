"""`mcu subnets export|train|level`: switchable nested row-sparse subnets (issue #10).

The export directory these write is what `mcu convert OUT/`, `mcu build OUT/`,
`mcu infer OUT/ --subnet K` and `mcu hil OUT/ --subnets all` take
(toolchain/subnets/export.py)."""
from __future__ import annotations

import click

from toolchain.cli.common import write_json


@click.group("subnets")
def subnets():
    """Nested row-sparse subnets sharing one weight store, switched on the device."""


def _calib(path, graph):
    from converters.convert import load_calibration
    x, _y, _note = load_calibration(path, graph)
    return x


@subnets.command("export")
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--calib", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Calibration inputs (.npz, array 'x'), as for mcu convert; each level is "
                   "calibrated on them (float models; an int8 .tflite keeps its "
                   "quantization).")
@click.option("--levels", required=True, help="Sparsities, strictly increasing in [0, 1): "
              "e.g. 0.5,0.75,0.9.")
@click.option("--dense", is_flag=True, help="Add the dense backbone as level 0.")
@click.option("--min-row", type=int, default=16, show_default=True,
              help="Rows shorter than this stay dense.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
def export_cmd(model, calib, levels, dense, min_row, out_dir, json_path):
    """Nested levels by weight magnitude (no retraining) from a float MODEL (.onnx, .pt2,
    float .tflite): per level a dense-with-zeros .tflite + C array (checked with
    tflite-micro), the packed store and a manifest in OUT/."""
    import numpy as np

    from converters import load_model
    from toolchain.subnets.export import (export_levels, format_manifest, magnitude_levels,
                                          parse_levels)
    s = parse_levels(levels, dense=dense)         # bad levels: before any work
    g = load_model(model)
    x = _calib(calib, g) if (calib and not g.is_quantized) else None
    shared, layers = magnitude_levels(g, s, x, min_row=min_row)
    if x is None:
        xt = g.t(g.inputs[0])
        x = np.random.default_rng(0).integers(-128, 128, (4,) + tuple(xt.shape[1:]),
                                              dtype=np.int64).astype(np.int8)
    man = export_levels(shared, out_dir, layers=layers, name=g.name or "model",
                        check=x[:8], source=f"{model} (magnitude, no retraining)")
    click.echo(format_manifest(man))
    click.echo(f"written: {out_dir}")
    write_json(json_path, man)


@subnets.command("train")
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Training data .npz: x (N, ...) float in the model's layout, y labels.")
@click.option("--levels", required=True, help="Sparsities, strictly increasing in [0, 1).")
@click.option("--dense", is_flag=True, help="Add the dense backbone as level 0.")
@click.option("--alpha", default=None, help="Loss weight per level, comma separated.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
def train_cmd(model, data_path, levels, dense, alpha, epochs, out_dir, json_path):
    """Train nested subnets jointly (Σ α_k L(W ⊙ m_k)) from MODEL (.onnx, .pt2, .tflite)
    on --data, quantize every level with shared int8 weights, export OUT/."""
    from toolchain.subnets.export import parse_levels
    from toolchain.subnets.flow import run_train
    parse_levels(levels, dense=dense)             # bad levels: before any work
    man = run_train(model, data_path, levels, dense=dense, alpha=alpha, epochs=epochs,
                    out_dir=out_dir, log=lambda m: click.echo(m, err=True))
    from toolchain.subnets.export import format_manifest
    click.echo(format_manifest(man))
    click.echo(f"written: {out_dir}")
    write_json(json_path, man)


@subnets.command("level")
@click.option("--board", "-b", default=None)
@click.option("--port", default=None, help="Serial URL of a device running a subnet firmware.")
@click.option("--firmware", type=click.Path(exists=True), default=None,
              help="Or start the board with this build (directory or ELF) and ask it.")
@click.argument("k", type=int, required=False)
def level_cmd(board, port, firmware, k):
    """Read (or, with K, set) the active subnet level of a device."""
    from toolchain.boards import resolve_board
    from toolchain.devices import start_device
    from toolchain.errors import McuError
    from toolchain.link.model import ModelClient
    if not port and not firmware:
        raise McuError("give --port URL (a running device) or --firmware BUILD (start one)")
    b = resolve_board(board)
    with (start_device(b, None, port=port) if port else start_device(b, firmware)) as dev:
        active, sp = ModelClient(dev.link()).level(k)
    click.echo(f"active level {active} of {len(sp)}: "
               + ", ".join(f"{i}: {s:.2f}" for i, s in enumerate(sp)))


COMMANDS = (subnets,)

"""`mcu infer`: run a model on a board (built with `mcu build MODEL`) for inputs from .npy."""
from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.common import (is_snn, on_place, place_options, refuse_snn_options,
                                  snn_options, snn_opts, write_json)


def _read_input(path):
    """--input: a .npy array, or a .npz with 'x'; checked like every data set (one line)."""
    import numpy as np

    from converters.npz import check_xy, read_xy_npz
    from toolchain.errors import McuError
    if str(path).lower().endswith(".npz"):
        x, _ = read_xy_npz(path, "input file", McuError)
        return x
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - format errors of a user's file
        raise McuError(f"cannot read input {path}: not a valid .npy ({type(e).__name__})") from None
    if not isinstance(x, np.ndarray):
        raise McuError(f"cannot read input {path}: expected one array (.npy) or a .npz with 'x'")
    check_xy(x.reshape((1,) + x.shape) if x.ndim == 0 else x, None, "input file", McuError,
             path=str(path))
    return x


@click.command("infer")
@click.argument("model", type=click.Path(exists=True))
@click.option("--board", "-b", default=None, help="Board name (`mcu boards`).")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, exists=True),
              required=True, help=".npy: one input (the model's shape) or a batch (N, ...); "
              "int8 as is, float quantized with the model's input scale/zero point.")
@click.option("--kernels", type=click.Choice(["auto", "portable", "dsp"]), default="auto",
              show_default=True)
@click.option("--port", default=None, help="A flashed board at this serial URL instead.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare every output byte with the tflite-micro interpreter (.tflite).")
@click.option("--layers", is_flag=True, help="Print per-layer counts of the last inference.")
@click.option("--subnet", "subnet", type=int, default=None,
              help="MODEL a subnet export: run level K (default 0), checked against that "
                   "level's .tflite.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Spiking models (.nir): calibration inputs [default: the --input file].")
@snn_options
@place_options
@on_place
def infer_cmd(model, board, input_path, kernels, port, check, layers, json_path, calib,
              subnet, **kw):
    """Run MODEL on a board for the inputs in --input; print outputs and counts.

    MODEL.nir (spiking; --timesteps T): --input is .npy (x [N, *input] or spikes
    [N, T, *input]) or .npz ('x' / 'spikes' / 'events', optional 'y'); prints each
    sample's spike counts, instructions and whether they equal the fixed-point
    reference, and with --layers the per-layer figures."""
    import numpy as np
    if is_snn(model):
        from toolchain.errors import McuError
        from toolchain.hil.runner import HilConfig
        from toolchain.hil.snn import format_snn_summary, run_snn_hil
        res = run_snn_hil(model, input_path, board=board, options=snn_opts(kw), calib=calib,
                          port=port, config=HilConfig(progress=False),
                          log=lambda s: click.echo(s, err=True))
        for s in res.samples:
            c = s.device_out
            lat = "?" if s.latency is None else f"{s.latency:,}"
            click.echo(f"[{s.index}] {lat} {res.latency_unit}  argmax {s.device_pred}  "
                       f"{c if len(c) <= 16 else str(c[:16]) + '...'}"
                       + ("  = fixed-point reference" if s.exact and s.layers_exact
                          else "  DIFFERS from the fixed-point reference"))
        if layers:
            click.echo("\n".join(line for line in format_snn_summary(res).splitlines()
                                 if line.startswith("layer ")))
        n_eq = res.identical
        click.echo(f"spike-exact with the fixed-point reference: {n_eq}/{res.done}")
        write_json(json_path, res.to_json())
        if n_eq != res.done:
            raise McuError(f"{res.done - n_eq} of {res.done} samples differ from the "
                           "fixed-point reference")
        return
    refuse_snn_options(model, kw)

    from toolchain.boards import resolve_board
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.codegen.firmware import load_int8_graph
    from toolchain.devices import start_device
    from toolchain.errors import McuError
    from toolchain.link.model import ModelClient
    from toolchain.subnets.export import SubnetError, is_export, load_export
    b = resolve_board(board)    # loaded once here; everything below gets this Board
    ex = None
    if is_export(model):
        ex = load_export(model)
        k = 0 if subnet is None else subnet
        if not 0 <= k < len(ex.levels):
            raise SubnetError(f"--subnet {k} is out of range: {model} has {len(ex.levels)} "
                              f"levels (0..{len(ex.levels) - 1})")
        graph, tfl = ex.graphs[k], None
    elif subnet is not None:
        raise SubnetError(f"--subnet needs a subnet export directory, not {model}")
    else:
        graph, tfl = load_int8_graph(model)
    xt = graph.t(graph.inputs[0])
    x = _read_input(input_path)
    if x.size == xt.size:
        x = x.reshape((1,) + tuple(xt.shape))
    elif x.size % xt.size == 0:
        x = x.reshape((-1,) + tuple(xt.shape))
    else:
        raise McuError(f"{input_path} has shape {x.shape}; the model takes {list(xt.shape)} "
                       f"(or a batch of them)")
    if x.dtype != np.int8:
        s, z = float(xt.quant.scale[0]), int(xt.quant.zero_point[0])
        x = np.clip(np.round(x.astype(np.float64) / s) + z, -128, 127).astype(np.int8)
    if port:
        dev = start_device(b, None, port=port)
    elif ex is not None:
        from toolchain.subnets.run import build_subnets
        rep = build_subnets(model, b, kernels=kernels)
        dev = start_device(b, load_build(rep["build_dir"]))
    else:
        rep = build_model(model, b, Path("build") / f"{b.name}-{Path(model).stem}-{kernels}",
                          kernels=kernels, measure_tflm=False)
        dev = start_device(b, load_build(rep["build_dir"]))
    ref = None
    if check and (tfl or ex is not None):
        from toolchain.tflm_oracle import TflmRunner
        ref = TflmRunner(ex.tflite[k] if ex is not None else Path(tfl).read_bytes())
    rows = []
    with dev:
        client = ModelClient(dev.link())
        if ex is not None:
            client.level(k)
            click.echo(f"subnet level {k} (sparsity {ex.levels[k]:g}) of {len(ex.levels)}")
        info = client.info()
        for i, xi in enumerate(x):
            out, count = client.infer(xi.tobytes())
            y = np.frombuffer(out, np.int8)
            row = dict(index=i, output=y.tolist(), count=count, unit=info.count_unit)
            if ref is not None:
                row["tflm_equal"] = bool(np.array_equal(ref.run(xi)[0].reshape(-1), y))
            rows.append(row)
            click.echo(f"[{i}] {count:,} {info.count_unit}  argmax {int(y.argmax())}  "
                       f"{y.tolist() if y.size <= 16 else str(y[:16].tolist()) + '...'}"
                       + ("" if ref is None else ("  = TFLM" if row["tflm_equal"]
                                                  else "  DIFFERS from TFLM")))
        lt = client.layer_times() if layers else None
    if lt:
        for k, (op, c) in enumerate(zip(graph.ops, lt)):
            click.echo(f"  layer {k:3d} {op.type:<18} {c:>12,} {info.count_unit}")
    if ref is not None:
        n_eq = sum(r["tflm_equal"] for r in rows)
        click.echo(f"bit-exact with tflite-micro: {n_eq}/{len(rows)}")
    write_json(json_path, dict(board=b.name, model=model, unit=info.count_unit, results=rows,
                               layer_counts=lt))
    if ref is not None and n_eq != len(rows):
        raise McuError(f"{len(rows) - n_eq} of {len(rows)} outputs differ from tflite-micro")


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--board", "-b", default="mps2-an386", show_default=True)
@click.option("--kernels", type=click.Choice(["both", "portable", "dsp"]), default="both",
              show_default=True, help="Our kernels to measure (beside TFLM's reference and "
              "CMSIS-NN kernels).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the results as JSON (default without MODELS: "
              "bench-results/bench.json).")
@click.option("--no-zoo", is_flag=True, help="Without MODELS: the MLPerf Tiny models only.")
@click.option("--readme", type=click.Path(dir_okay=False), default=None,
              help="Update the bench table in this README (default without MODELS: the "
              "repository's README.md when there is one).")
def bench_cmd(models, board, kernels, json_path, no_zoo, readme):
    """Our firmware vs TensorFlow Lite Micro, side by side on the same emulated Cortex-M4
    with the same input: instructions per inference and their ratio, arena vs TFLM's
    smallest, the physical floor (largest live set of one layer), flash, output bytes
    equal. MODELS: any int8 .tflite; none: the MLPerf Tiny and a few zoo models, plus the
    compile time of KWS (the same as `make bench`)."""
    from toolchain.bench import REPO_ROOT, run
    ks = ("portable", "dsp") if kernels == "both" else (kernels,)
    if not models:
        json_path = json_path or "bench-results/bench.json"
        if readme is None and (REPO_ROOT / "README.md").exists():
            readme = REPO_ROOT / "README.md"
    run(board, json_path, echo=click.echo, models=list(models) or None, kernels=ks,
        zoo=not no_zoo, readme=readme, log=lambda m: click.echo(m, err=True))


COMMANDS = (infer_cmd, bench_cmd)

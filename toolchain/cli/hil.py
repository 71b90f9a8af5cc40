"""`mcu hil`: run a data set on a device and compare with the host reference."""
from __future__ import annotations

import click

from toolchain.cli.common import (is_snn, place_options, refuse_snn_options, snn_options,
                                  snn_opts, write_json)


@click.command("hil")
@click.argument("model", type=click.Path())
@click.option("--board", "-b", default=None, help="Board name (`mcu boards`); default: the default board.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Samples: .npz with 'x' (N, ...) float32 (quantized with the model's input "
                   "scale/zero point) or int8 (already quantized), in the model's NHWC layout "
                   "or NCHW as from PyTorch (4-D, or (N, C, L) for a 1-D conv model; "
                   "transposed, and the run says so); optional "
                   "integer labels 'y' (N,).")
@click.option("--limit", type=int, default=None, help="Run only the first N samples.")
@click.option("--min-accuracy", type=float, default=None,
              help="Fail when device accuracy is below A (0..1, or a percentage > 1).")
@click.option("--tolerance", type=int, default=0, show_default=True,
              help="Accept outputs within this max abs difference (int8 steps) of the reference.")
@click.option("--layout", type=click.Choice(["auto", "nchw", "ncl", "nhwc"]), default="auto",
              show_default=True, help="Layout of data x (nchw: channels first; ncl is the "
                                      "same for 1-D data).")
@click.option("--port", default=None,
              help="A real device already flashed with this model's firmware (pyserial URL: "
                   "/dev/ttyACM0, socket://HOST:PORT); its model hash is checked.")
@click.option("--debug-layer", is_flag=True,
              help="Always run the divergence finder (it runs by itself when outputs differ).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write summary + per-sample results (partial if cut short) as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML report (plots inline).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Spiking models (.nir): calibration inputs for the fixed-point scales "
                   "[default: the --data file].")
@click.option("--subnets", "subnets", default=None,
              help="MODEL a subnet export: 'all' runs the data set on every level over one "
                   "boot (a table per level), or a list of levels: 0,2.")
@click.option("--subnet", "subnet", type=int, default=None,
              help="MODEL a subnet export: run level K only.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Shard the data set over N devices run at once and merge one report: N "
                   "emulated boards started here, or N of the --place places.")
@snn_options
@lambda f: place_options(f, multiple=True)
def hil_cmd(model, board, data_path, limit, min_accuracy, tolerance, layout, port, debug_layer,
            json_path, html_path, quiet, calib, subnets, subnet, jobs, place, place_timeout,
            coordinator, **kw):
    """Run DATA through MODEL on a device (QEMU by default) and check every output
    against the host reference (tflite-micro; the numpy reference where TFLM cannot
    run). Builds the firmware (or reuses the build for the same model, board and
    options), boots the board, streams each sample over serial and prints accuracy,
    byte-exact agreement, latency, flash and RAM.

    Exit status: 0 pass; 1 a check failed (accuracy below --min-accuracy, an output
    differs beyond --tolerance); 2 bad data; 3 the device runs another model; 4 the
    device stopped answering (partial results are kept in the JSON).

    MODEL.nir (spiking; --timesteps T): the data is 'x' [N, *input] (NIR channel-first;
    constant or rate encoding) or 'spikes' / 'events' (--encoding events). Every sample's
    spike counts, per-layer spikes and input events are checked against the numpy
    fixed-point reference; the report adds the float model's agreement, instructions per
    sample and per step, per-layer spike rates and synaptic operations, and (HTML) a
    spike raster."""
    from toolchain.hil.errors import CheckFailed, DeviceStopped
    from toolchain.hil.runner import HilConfig, format_summary
    from toolchain.subnets.export import SubnetError, is_export
    farm = bool(place) or (jobs or 1) > 1
    if (place_timeout is not None or coordinator is not None) and not place:
        raise click.UsageError("--place-timeout and --coordinator need --place")
    if place and port:
        raise click.UsageError("give --place or --port, not both")
    if farm and (is_export(model) or is_snn(model)):
        raise click.UsageError("--place/--jobs run int8 models (.tflite); not subnet exports "
                               "or spiking models yet")
    if (jobs or 1) > 1 and port:
        raise click.UsageError("--jobs N needs N devices: give N places (--place A --place "
                               "B) or no --port (emulated boards are started)")
    if is_export(model):
        _subnets_hil(model, board, data_path, limit, min_accuracy, port, json_path, html_path,
                     quiet, subnets, subnet)
        return
    if subnets is not None or subnet is not None:
        raise SubnetError(f"--subnets/--subnet need a subnet export directory, not {model}")
    if min_accuracy is not None and min_accuracy > 1:
        min_accuracy /= 100.0
    if is_snn(model):
        from toolchain.hil.snn import format_snn_summary, run_snn_hil
        cfg = HilConfig(limit=limit, min_accuracy=min_accuracy, progress=not quiet)
        res = run_snn_hil(model, data_path, board=board, options=snn_opts(kw), calib=calib,
                          port=port, config=cfg, json_path=json_path, html_path=html_path,
                          log=lambda s: click.echo(s, err=True))
        click.echo(format_snn_summary(res))
        for p, what in ((json_path, "JSON"), (html_path, "HTML")):
            if p:
                click.echo(f"{what} report: {p}")
        fails = res.failures()
        if res.stopped and res.stopped.get("interrupted"):
            raise KeyboardInterrupt
        if res.stopped:
            raise DeviceStopped(fails[0])
        if fails:
            raise CheckFailed("; ".join(fails))
        return
    if calib is not None:
        raise click.UsageError("--calib is for spiking models (.nir); an int8 model is "
                               "already quantized")
    refuse_snn_options(model, kw)
    from toolchain.hil.api import run_hil
    cfg = HilConfig(limit=limit, min_accuracy=min_accuracy, tolerance=tolerance, layout=layout,
                    debug_layer=debug_layer, progress=not quiet)
    log = lambda s: click.echo(s, err=True)  # noqa: E731
    if place:
        res = _hil_on_places(model, data_path, board, list(place), place_timeout, coordinator,
                             jobs, cfg, json_path, html_path, log)
    elif farm:
        from toolchain.hil.parallel import run_hil_parallel
        res = run_hil_parallel(model, data_path, board=board, jobs=jobs, config=cfg,
                               json_path=json_path, html_path=html_path, log=log)
    else:
        res = run_hil(model, data_path, board=board, port=port, config=cfg,
                      json_path=json_path, html_path=html_path, log=log)
    click.echo(format_summary(res))
    for p, what in ((json_path, "JSON"), (html_path, "HTML")):
        if p:
            click.echo(f"{what} report: {p}")
    fails = res.failures()
    if res.stopped and res.stopped.get("interrupted"):
        raise KeyboardInterrupt
    if res.stopped:
        raise DeviceStopped(fails[0] + (f"; partial results in {json_path}" if json_path else ""))
    if fails:
        raise CheckFailed("; ".join(fails))


def _hil_on_places(model, data_path, board, places, timeout, coordinator, jobs, cfg, json_path,
                   html_path, log):
    """Acquire the places (all released on every exit path), flash them through their
    labgrid driver where the board has one, run on one or shard over several."""
    from toolchain.boards import resolve_board
    from toolchain.farm import leased_places
    from toolchain.farm.flash import flash_driver
    from toolchain.hil.api import run_hil
    from toolchain.hil.parallel import run_hil_parallel
    from toolchain.hil.session import build_for_model, load_int8_model
    m = load_int8_model(model)        # a bad model fails before a place is locked
    count = jobs or len(places)
    with leased_places(places, count, timeout=timeout, coordinator=coordinator,
                       log=log) as leases:
        b = resolve_board(board or leases[0].board)
        if flash_driver(b)[0]:
            fw = build_for_model(m, b, log=log)
            for lease in leases:
                log(f"flashing {fw.elf} through place {lease.place}")
                lease.flash(fw.elf, b)
        ports = [lease.serial_url for lease in leases]
        if len(ports) == 1:
            res = run_hil(m, data_path, board=b.name, port=ports[0], config=cfg,
                          json_path=json_path, html_path=html_path, log=log)
        else:
            res = run_hil_parallel(m, data_path, board=b.name, ports=ports, config=cfg,
                                   json_path=json_path, html_path=html_path, log=log)
        res.meta["places"] = [lease.place for lease in leases]
    if json_path:
        from toolchain.hil.api import write_json_atomic
        write_json_atomic(json_path, res.to_json())
    return res


def _subnets_hil(model, board, data_path, limit, min_accuracy, port, json_path, html_path,
                 quiet, subnets, subnet):
    import sys

    from toolchain.boards import resolve_board
    from toolchain.hil.errors import CheckFailed
    from toolchain.subnets.export import SubnetError
    from toolchain.subnets.run import format_levels, run_levels, write_levels_html
    if subnets is not None and subnet is not None:
        raise click.UsageError("give --subnets or --subnet, not both")
    levels = None
    if subnet is not None:
        levels = [subnet]
    elif subnets not in (None, "all"):
        try:
            levels = [int(v) for v in subnets.split(",")]
        except ValueError:
            raise SubnetError(f"--subnets '{subnets}': give 'all' or level indices like 0,2") \
                from None
    if min_accuracy is not None and min_accuracy > 1:
        min_accuracy /= 100.0

    def progress(k, i, n):
        if not quiet and (i == n or i % 16 == 0):
            sys.stderr.write(f"\rlevel {k}: {i}/{n}" + ("\n" if i == n else ""))
            sys.stderr.flush()
    res = run_levels(model, data_path, resolve_board(board), levels=levels, limit=limit,
                     port=port, progress=progress, log=lambda s: click.echo(s, err=True))
    click.echo(format_levels(res))
    write_json(json_path, res)
    if html_path:
        write_levels_html(res, html_path)
        click.echo(f"HTML report: {html_path}")
    bad = [r for r in res["levels"] if r["byte_exact"] != r["samples"]]
    if bad:
        raise CheckFailed("; ".join(f"level {r['level']}: {r['samples'] - r['byte_exact']} of "
                                    f"{r['samples']} outputs differ from tflite-micro"
                                    for r in bad))
    low = [r for r in res["levels"] if min_accuracy is not None and r["accuracy"] is not None
           and r["accuracy"] < min_accuracy]
    if low:
        raise CheckFailed("; ".join(f"level {r['level']}: accuracy {100 * r['accuracy']:.1f} % "
                                    f"< {100 * min_accuracy:.1f} %" for r in low))


COMMANDS = (hil_cmd,)

"""`mcu boards|build|run|info|bench-link`: boards, firmware builds, devices, the link."""
from __future__ import annotations

import time
from pathlib import Path

import click

from toolchain.cli.common import is_snn, refuse_snn_options, snn_options, snn_opts, write_json


@click.command("boards")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the list as JSON.")
def boards_cmd(json_path):
    """List the boards (hw/boards/*.toml and $MCU_BOARDS_PATH)."""
    from toolchain.boards import list_boards
    boards = list_boards()
    click.echo(f"{'board':<14} {'kind':<7} {'core':<11} {'flash':>9} {'RAM':>9}  description")
    for b in boards:
        mark = " (default)" if b.default else ""
        click.echo(f"{b.name:<14} {b.kind:<7} {b.core:<11} {b.flash_size // 1024:>6} KiB "
                   f"{b.ram_size // 1024:>5} KiB  {b.description}{mark}")
    write_json(json_path, [b.summary() for b in boards])


@click.command("build")
@click.argument("model", required=False)
@click.option("--board", "-b", default=None, help="Board name (`mcu boards`); default: the default board.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Build directory (default: build/BOARD).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the build report as JSON.")
@click.option("--test-build", is_flag=True, help="Test build: semihosting exit/log enabled.")
@click.option("--werror", is_flag=True, help="Treat compiler warnings as errors.")
@click.option("--force", is_flag=True, help="Rebuild even if nothing changed.")
@click.option("--protocol", type=click.Choice(["binary", "eembc"]), default="binary",
              show_default=True, help="Host link protocol: the framed binary protocol, or the "
              "MLPerf Tiny / EEMBC benchmark text protocol (needs a MODEL).")
@click.option("--kernels", type=click.Choice(["auto", "portable", "dsp"]), default="auto",
              show_default=True, help="Runtime kernels: portable C, Cortex-M DSP (SIMD), or "
              "the best the board's core has.")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Calibration inputs (.npz, array 'x') to quantize a float model (.onnx, "
                   ".pt2) first, as `mcu convert` does.")
@click.option("--no-tflm", is_flag=True, help="Skip measuring TFLite Micro's arena.")
@click.option("--vs-tflm", is_flag=True, help="Measure TFLite Micro (reference and CMSIS-NN) "
              "side by side on the emulated Cortex-M4 with the same input: instructions, "
              "smallest arena, code flash, output bytes (../shared/tflm-m4, needs QEMU).")
@snn_options
def build_cmd(model, board, out_dir, json_path, test_build, werror, force, protocol, kernels,
              calib, no_tflm, vs_tflm, **kw):
    """Build the device firmware for a board, with MODEL (.tflite int8, or .onnx/.pt2 with
    --calib, or a spiking MODEL.nir with --timesteps and --calib) compiled in when given;
    print flash/RAM use from the linker."""
    from toolchain.boards import resolve_board
    from toolchain.build import build_firmware
    b = resolve_board(board)    # loaded once here; everything below gets this Board
    out = Path(out_dir or Path("build") / (b.name + ("-test" if test_build else "")))
    if protocol == "eembc" and not model:
        raise click.UsageError("--protocol eembc needs a MODEL")
    from toolchain.subnets.export import is_export
    if model and is_export(model):    # every subnet level in one firmware
        from toolchain.build_model import format_report
        from toolchain.subnets.run import build_subnets
        if protocol == "eembc":
            raise click.UsageError("--protocol eembc runs one model, not subnet levels")
        rep = build_subnets(model, b, out, kernels=kernels, test_build=test_build,
                            werror=werror, force=force, log=lambda m: click.echo(m, err=True))
        click.echo(format_report(rep))
        s = rep["subnets"]
        click.echo(f"subnet levels: {len(s['levels'])} ({', '.join(f'{v:g}' for v in s['levels'])})"
                   f" in one firmware; store {s['store_bytes']:,} B ({s['store_vs_dense']:.2f}x "
                   "dense int8)" + (f"; level switch {rep['switch_instructions']} instructions"
                                    if rep.get("switch_instructions") else ""))
        write_json(json_path, rep)
        return
    if is_snn(model):
        if protocol != "binary":
            raise click.UsageError("--protocol eembc is for int8 models, not MODEL.nir")
        from toolchain.build_model import build_snn_model, format_snn_report
        rep = build_snn_model(model, b, out, options=snn_opts(kw), calib=calib,
                              kernels=kernels, test_build=test_build, werror=werror,
                              force=force, log=lambda msg: click.echo(msg, err=True))
        rep.pop("_gen", None)
        click.echo(format_snn_report(rep))
        write_json(json_path, rep)
        return
    refuse_snn_options(model, kw)
    if model:
        from toolchain.build_model import build_model, format_report
        extra, defs = [], {}
        if protocol == "eembc":
            from toolchain.hil.session import load_int8_model, write_eembc_source
            m = load_int8_model(model)
            extra = [write_eembc_source(m, out / "eembc_model.c")]
            defs = dict(MCU_PROTOCOL_EEMBC=1, MCU_EEMBC_DB_SIZE=max(1, m.in_tensor.nbytes))
        if vs_tflm and protocol == "eembc":
            raise click.UsageError("--vs-tflm needs the binary protocol")
        rep = build_model(model, b, out, kernels=kernels, calib=calib, test_build=test_build,
                          werror=werror, force=force, measure_tflm=not (no_tflm or vs_tflm),
                          defines=defs, extra_sources=extra,
                          log=lambda msg: click.echo(msg, err=True))
        cmp = None
        if vs_tflm and rep.get("tflite"):
            from toolchain.bench import format_vs_tflm, vs_tflm_build
            cmp = vs_tflm_build(rep, b)
            rep["tflm"], rep["vs_tflm"] = dict(rep["tflm"], **cmp["tflm"]), cmp
        click.echo(format_report(rep))
        if cmp:
            click.echo(format_vs_tflm(cmp))
        write_json(json_path, rep)
        return
    res = build_firmware(b, out, test_build=test_build, werror=werror, force=force)
    click.echo(f"board: {b.name}" + ("  (unchanged, reused)" if res.cached else ""))
    click.echo(res.report())
    top = list(res.by_file.items())[:6]
    if top:
        click.echo("largest: " + ", ".join(f"{k} {v['flash']:,}/{v['ram']:,} B" for k, v in top)
                   + "  (flash/RAM)")
    write_json(json_path, res.to_json())


def _start(board, firmware, test_build, model=None):
    from toolchain.build import build_firmware, load_build
    from toolchain.devices import start_device
    from toolchain.boards import resolve_board
    b = resolve_board(board)
    fw = firmware
    if fw is None and model and b.kind != "serial":
        from toolchain.build_model import build_model
        rep = build_model(model, b, Path("build") / f"{b.name}-{Path(model).stem}",
                          test_build=test_build, measure_tflm=False)
        fw = load_build(rep["build_dir"])
    elif fw is None and b.kind != "serial":
        fw = build_firmware(b, test_build=test_build)
    return b, start_device(b, fw, test_build=test_build or None)


@click.command("run")
@click.argument("model", required=False)
@click.option("--board", "-b", default=None, help="Board name (`mcu boards`).")
@click.option("--firmware", type=click.Path(exists=True), default=None,
              help="Build directory or ELF (default: build the firmware first).")
@click.option("--test-build", is_flag=True, help="Run a test build (semihosting on).")
def run_cmd(model, board, firmware, test_build):
    """Start a board (with MODEL's firmware when given), print its serial URL, keep it
    running until Ctrl-C."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, _stop)   # also when started in the background
    signal.signal(signal.SIGTERM, _stop)
    b, dev = _start(board, firmware, test_build, model)
    with dev:
        info = dev.link().info()
        dev.release()  # let other clients connect to the URL
        click.echo(f"{b.name} running firmware {info.build_id}")
        click.echo(f"serial: {dev.url}")
        click.echo(f"try: mcu info --port {dev.url}   (Ctrl-C stops the device)", err=True)
        try:
            while dev.alive:
                time.sleep(0.2)
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
            return
        click.echo(f"device exited with status {dev.proc.returncode}")


def _print_info(info, url):
    def used(u):
        return f" (firmware uses {u:,} B)" if u else ""
    rows = [("board", info.board), ("protocol", "v%d.%d" % tuple(info.proto_version)),
            ("firmware build", info.build_id + (" (test build)" if info.test_build else "")),
            ("model", (f"{info.model_name or 'unnamed'} {info.model_hash}" if info.model_hash
                       else "none")),
            ("flash budget", f"{info.flash_budget:,} B{used(info.flash_used)}"),
            ("RAM budget", f"{info.ram_budget:,} B{used(info.ram_used)}"),
            ("max payload", f"{info.max_payload} B"),
            ("timer", f"{info.tick_hz:,} Hz" + (f", {info.instructions_per_tick} "
                                                 f"instructions/tick"
                                                 if info.instructions_per_tick else "")),
            ("serial", url)]
    if info.model_hash:
        rows.insert(4, ("model I/O", f"{info.model_input_size} B in, "
                                     f"{info.model_output_size} B out"))
    if info.subnet_levels:
        rows.insert(5, ("subnet levels", ", ".join(
            f"{k}: {s:g}" + (" (active)" if k == info.subnet_active else "")
            for k, s in enumerate(info.subnet_levels)) + "  (sparsity)"))
    for k, v in rows:
        click.echo(f"{k + ':':<16}{v}")


@click.command("info")
@click.option("--board", "-b", default=None, help="Start this board (`mcu boards`) and ask it.")
@click.option("--port", default=None, help="Ask a running device at this pyserial URL "
              "(/dev/ttyACM0, socket://HOST:PORT).")
@click.option("--firmware", type=click.Path(exists=True), default=None,
              help="Build directory or ELF to run (default: build it).")
@click.option("--timeout", type=float, default=None, help="Seconds per request try.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the info as JSON.")
def info_cmd(board, port, firmware, timeout, json_path):
    """Print a device's info: protocol, board, firmware build, model, budgets."""
    from toolchain.boards import load_board
    from toolchain.link import Link
    if port and not board:
        with Link.open(port, timeout=timeout or 2.0) as link:
            info = link.info()
        url = port
    elif port:
        from toolchain.devices import start_device
        with start_device(load_board(board), firmware, port=port) as dev:
            info = dev.link(timeout=timeout).info()
        url = port
    else:
        b, dev = _start(board, firmware, False)
        with dev:
            info = dev.link(timeout=timeout).info()
            url = dev.url
    _print_info(info, url)
    write_json(json_path, dict(info.to_dict(), url=url))


@click.command("bench-link")
@click.option("--board", "-b", "boards", multiple=True,
              help="Board(s) to measure (default: host and mps2-an386).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              default="bench-results/link.json", show_default=True)
@click.option("--quick", is_flag=True, help="Fewer iterations.")
def bench_link_cmd(boards, json_path, quick):
    """Measure link round-trip latency and throughput (not a test)."""
    from toolchain.bench_link import run_bench
    run_bench(list(boards) or None, json_path, quick=quick, echo=click.echo)


COMMANDS = (boards_cmd, build_cmd, run_cmd, info_cmd, bench_link_cmd)

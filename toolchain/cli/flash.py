"""`mcu flash`: put a firmware build (or a model's firmware, built first) on a board and
check that the device answers with that build."""
from __future__ import annotations

import time
from pathlib import Path

import click

from toolchain.cli.common import place_options, write_json


def _open_link(board, port: str, wait: float):
    """The link to a freshly flashed board: it resets after flashing and its USB serial
    port may come back a moment later, so opening is retried for `wait` seconds."""
    from toolchain.errors import LinkError
    from toolchain.link import Link
    deadline = time.monotonic() + wait
    while True:
        try:
            return Link.open(port, timeout=board.serial_timeout, retries=board.retries,
                             baudrate=board.baudrate)
        except LinkError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _verify(link, fw, board) -> dict:
    from toolchain.devices.flashing import is_eembc_build, verify_identity
    if is_eembc_build(fw):
        # the MLPerf Tiny text protocol has no build id: the device must answer as a DUT
        from toolchain.hil.eembc import EembcClient
        ee = EembcClient(link.ser, timeout=max(5.0, board.serial_timeout), url=link.url)
        name = ee.sync()
        return dict(protocol="eembc", dut_name=name, build_id=None, model_hash=None)
    info = verify_identity(link, fw, board)
    return dict(protocol="binary", board=info.board, build_id=info.build_id,
                model_hash=info.model_hash)


def _flash_place(fw, b, place, place_timeout, coordinator, wait, result) -> None:
    """Through a labgrid place: acquire it, flash with the board's [labgrid] flash driver
    (a place without one, e.g. an emulated board its exporter runs, is used as flashed),
    check over the place's serial port, release it on every exit path."""
    from toolchain.farm import acquire_place
    from toolchain.farm.flash import flash_driver
    with acquire_place(place, timeout=place_timeout, coordinator=coordinator,
                       log=lambda s: click.echo(s, err=True)) as lease:
        if lease.board and lease.board != b.name:
            from toolchain.errors import BoardError
            raise BoardError(f"place {lease.place} holds a {lease.board}, the build is for "
                             f"{b.name}; pick a place of that board")
        driver, _ = flash_driver(b)
        with click.progressbar(length=100, label=f"flashing {b.name} on {lease.place}",
                               show_percent=True) as bar:
            if driver:
                lease.flash(fw.elf, b)
            bar.update(70)
            link = _open_link(b, lease.serial_url, wait)
            try:
                result.update(_verify(link, fw, b))
            finally:
                link.close()
            bar.update(30)
        result.update(port=lease.serial_url, place=lease.place,
                      flasher=driver or "(place used as flashed)")


@click.command("flash")
@click.argument("target", type=click.Path())
@click.option("--board", "-b", default=None, help="Board (`mcu boards`); default: the build's "
              "board, or the default board for a MODEL.")
@click.option("--port", default=None, help="Serial port of a real board (/dev/ttyACM0, "
              "socket://HOST:PORT): where the flashed firmware is checked.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Build directory when TARGET is a model (default: build/flash-BOARD).")
@click.option("--protocol", type=click.Choice(["binary", "eembc"]), default="binary",
              show_default=True, help="Firmware protocol when TARGET is a model.")
@click.option("--wait", type=click.FloatRange(0, 600), default=5.0, show_default=True,
              help="Seconds to wait for the serial port after flashing (the board resets).")
@click.option("--keep-running", is_flag=True, help="QEMU/host boards: leave the emulator "
              "running (until Ctrl-C) after the check, its serial URL printed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@place_options
def flash_cmd(target, board, port, out_dir, protocol, wait, keep_running, json_path, place,
              place_timeout, coordinator):
    """Flash TARGET (a build directory from `mcu build`, or a MODEL to build first) to a
    board through its TOML flasher (pyocd, openocd, ...; QEMU and host boards: start the
    emulator with the image) or through a labgrid place (--place: the board TOML's
    [labgrid] flash driver), then check that the device answers over its serial link
    with the build's id and model hash."""
    from toolchain.boards import load_board, resolve_board
    from toolchain.build import MANIFEST, load_build
    from toolchain.errors import BoardError, BuildError
    p = Path(target)
    if p.is_dir() or p.name == MANIFEST:
        fw = load_build(p)
        b = load_board(board) if board else load_board(fw.board)
        if b.name != fw.board:
            raise BoardError(f"build {fw.build_dir} is for board {fw.board}, not {b.name}; "
                             f"rebuild with `mcu build --board {b.name}` or drop --board")
    elif p.is_file():
        from toolchain.hil.session import build_for_model
        b = resolve_board(board)
        out = Path(out_dir or Path("build") / f"flash-{b.name}")
        click.echo(f"building {p.name} for {b.name} in {out}")
        fw = build_for_model(str(p), b, build_dir=out, protocol=protocol)
    else:
        raise BuildError(f"no build or model at {target}; give a build directory "
                         f"(`mcu build --board BOARD -o DIR`) or a model file")
    if not Path(fw.elf).exists():
        raise BuildError(f"build {fw.build_dir} has no firmware ({fw.elf} is missing); "
                         f"rebuild it with `mcu build --board {b.name}`")
    result = dict(board=b.name, build_dir=str(fw.build_dir), build_id=fw.build_id)
    if not place and (place_timeout is not None or coordinator is not None):
        raise click.UsageError("--place-timeout and --coordinator need --place")
    if place:
        if port:
            raise click.UsageError("give --place or --port, not both")
        _flash_place(fw, b, place, place_timeout, coordinator, wait, result)
    elif b.flash_command:
        port = port or (b.serial_url if b.serial_url and "{" not in b.serial_url else None)
        if not port:
            raise BoardError(f"board {b.name}: give its serial port with --port (e.g. "
                             f"/dev/ttyACM0) so the flashed firmware can be checked")
        from toolchain.devices.flashing import prepare_flasher, run_flasher
        prepare_flasher(b, fw, port)       # tool present, image there: before the bar
        with click.progressbar(length=100, label=f"flashing {b.name}",
                               show_percent=True) as bar:
            def progress(pct):
                bar.update(max(0, int(pct * 0.9) - bar.pos))
            run_flasher(b, fw, port, progress=progress)
            link = _open_link(b, port, wait)
            try:
                result.update(_verify(link, fw, b))
            finally:
                link.close()
            bar.update(100 - bar.pos)
        result["port"] = port
        result["flasher"] = b.flash_command[0]
    else:
        from toolchain.devices import start_device
        with click.progressbar(length=100, label=f"starting {b.name} with the image",
                               show_percent=True) as bar:
            dev = start_device(b, fw)
            bar.update(60)
            try:
                result.update(_verify(dev.link(), fw, b))
            except BaseException:
                dev.stop()
                raise
            bar.update(40)
        result["port"] = dev.url
    what = (f"build {result['build_id']}" if result.get("build_id") else
            f"EEMBC DUT {result.get('dut_name')!r}")
    model = f", model {result['model_hash'][:16]}" if result.get("model_hash") else ""
    click.echo(f"flashed {b.name}: device at {result['port']} answers with {what}{model}")
    write_json(json_path, result)
    if not b.flash_command and not place:
        if keep_running:
            dev.release()
            click.echo(f"{b.name} keeps running at {dev.url}; Ctrl-C stops it")
            try:
                while dev.alive:
                    time.sleep(0.5)
            finally:
                dev.stop()
        else:
            dev.stop()


COMMANDS = [flash_cmd]

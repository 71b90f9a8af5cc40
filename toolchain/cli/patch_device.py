"""`mcu patch firmware|send|status`: the device half of partial weight patches (issue #6).

    mcu patch firmware old.tflite --board mps2-an386 -k dev.key -o build/dev
    mcu patch send p1.mcup --board mps2-an386 --firmware build/dev --flash build/dev/flash.bin
    mcu patch send p1.mcup --port socket://127.0.0.1:4321 -k dev.key
    mcu patch status --port /dev/ttyACM0
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from toolchain.cli.common import on_place, place_options, write_json
# helpers only: the `patch` group gets these commands in toolchain/cli/__init__.py
from toolchain.cli.patch import _key, _load_model, _read_patch, key_option


def _device(board, firmware, flash, port):
    """(device or None, opener) for --board/--firmware/--flash or --port."""
    from toolchain.errors import BoardError
    from toolchain.link import Link
    if port:
        from toolchain.boards import load_board
        b = load_board(board) if board else None
        timeout = b.serial_timeout if b else 2.0
        return None, (lambda: Link.open(port, timeout=timeout,
                                        baudrate=b.baudrate if b else 115200))
    if not board:
        raise BoardError("give the device: --board B (with --firmware DIR) to start an "
                         "emulated one, or --port URL for a running one")
    if not firmware:
        raise BoardError(f"--board {board} starts the device: give its patchable firmware "
                         f"with --firmware DIR (built by `mcu patch firmware`)")
    from toolchain.boards import load_board
    from toolchain.devices import start_device
    b = load_board(board)
    extra = []
    if flash:
        # the device would silently run without persistence on a path it cannot open
        fp = Path(flash).resolve()
        if not fp.parent.is_dir() or not os.access(fp.parent, os.W_OK) or \
                (fp.exists() and not os.access(fp, os.R_OK | os.W_OK)):
            raise OSError(13 if fp.parent.is_dir() else 2,
                          "cannot be read and written" if fp.parent.is_dir()
                          else "No such file or directory", str(fp))
        flash = str(fp)
        extra = ["--flash", flash] if b.kind == "host" else ["-append", f"--flash {flash}"]
    dev = start_device(b, firmware, extra_args=extra)
    url = dev.url
    dev.release()
    return dev, (lambda: Link.open(url, timeout=b.serial_timeout, retries=b.retries))


def _device_opts(f):
    f = click.option("--port", help="Serial URL of a running device (/dev/ttyACM0, "
                                    "socket://127.0.0.1:PORT).")(f)
    f = click.option("--flash", type=click.Path(dir_okay=False),
                     help="Emulated boards: file behind the weight flash (persists the "
                          "device's state between runs; test builds).")(f)
    f = click.option("--firmware", type=click.Path(exists=True),
                     help="Patchable firmware (build dir from `mcu patch firmware`) to start "
                          "with --board.")(f)
    f = click.option("--board", "-b", help="Board to start (emulated) or whose serial "
                                           "settings --port uses.")(f)
    return f


def _bar(width=30):
    state = dict(t0=time.monotonic(), last=0.0)

    def cb(off, total):
        now = time.monotonic()
        if off < total and now - state["last"] < 0.05:
            return
        state["last"] = now
        frac = off / total if total else 1.0
        n = int(frac * width)
        dt = max(now - state["t0"], 1e-9)
        sys.stderr.write(f"\r  [{'#' * n}{'.' * (width - n)}] {100 * frac:5.1f} % "
                         f"{off:,}/{total:,} B  {off / dt / 1000:,.1f} kB/s")
        if off >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return cb


@click.command("firmware")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--board", "-b", required=True, help="Target board (mcu boards).")
@key_option(required=True, help="Per-device patch key provisioned into the firmware.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Build directory.")
@click.option("--kernels", type=click.Choice(["auto", "portable", "dsp"]), default="auto",
              show_default=True)
@click.option("--release", is_flag=True, help="No semihosting (real boards); emulated boards "
                                              "default to a test build whose flash can be "
                                              "backed by a file (--flash).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
def firmware_cmd(model, board, key_path, out, kernels, release, json_path):
    """Build MODEL's firmware with its weights in a patchable flash area (A/B slots,
    staging, commit records) and the patch handlers."""
    from toolchain.boards import load_board
    from toolchain.patch.device import board_layout, build_patch_model_firmware
    from toolchain.patch.store import weight_store
    b = load_board(board)
    g = _load_model(model)
    res, g = build_patch_model_firmware(
        g, b, _key(key_path), out, kernels=kernels,
        test_build=not release and b.kind != "serial", name=Path(model).stem)
    st = weight_store(g)
    lay = board_layout(b, st)
    click.echo(res.report())
    click.echo(f"weight area: {lay.area_size:,} B = 2 meta pages + 2 slots of {lay.slot_size:,} B "
               f"+ staging {lay.stage_size:,} B (page {lay.page} B); store {st.nbytes:,} B in "
               f"{len(st.tensors)} tensors")
    click.echo(f"model {st.hexhash()} (seq {st.seq})")
    write_json(json_path, dict(build=res.to_json(), area=dict(
        size=lay.area_size, slot=lay.slot_size, stage=lay.stage_size, page=lay.page,
        offsets=lay.offsets), model_hash=st.hexhash()))


@click.command("send")
@click.argument("patch_file", type=click.Path(exists=True, dir_okay=False))
@_device_opts
@key_option(help="Check the tag on the host first (the device checks it in any case).")
@click.option("--window", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Chunks in flight.")
@click.option("--chunk", type=click.IntRange(16, 4096), default=None,
              help="Chunk payload bytes (default: the device's maximum).")
@click.option("--no-apply", is_flag=True, help="Stage only (apply later with another send).")
@click.option("--check-model", type=click.Path(exists=True, dir_okay=False),
              help="Model the device should hold afterwards (.tflite): compare its outputs on "
                   "fixed inputs with the reference interpreter's.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@place_options
@on_place
def send_cmd(patch_file, board, firmware, flash, port, key_path, window, chunk, no_apply,
             check_model, json_path):
    """Stream a patch to a device (pipelined chunks, resumable) and apply it there."""
    from toolchain.patch.format import decode_patch, read_header
    from toolchain.patch.send import NOMINAL_BAUD, patch_status, send_patch
    data = _read_patch(patch_file)
    h = read_header(data)
    if key_path:
        decode_patch(data, _key(key_path))     # PatchAuthError: one line, exit 1
    dev, opener = _device(board, firmware, flash, port)
    try:
        link = opener()
        st = patch_status(link)
        click.echo(f"device {link.url}: model {st.hash or '(none)'} seq {st.seq}"
                   + (f", staged {st.staged_next:,}/{st.staged_total:,} B" if st.staging else ""))
        click.echo(f"patch {patch_file}: {len(data):,} B, seq {h['seq']}, "
                   f"{h['base_hash'].hex()[:16]} -> {h['target_hash'].hex()[:16]}")
        # a resend (e.g. after a lost acknowledgement) to a device that already holds this
        # patch's target is a success; a device elsewhere still refuses it as a replay
        res = send_patch(opener, data, link=link, window=window, chunk=chunk,
                         progress=_bar(), apply=not no_apply, accept_applied=True)
        if res.already_applied:
            click.echo(f"already applied, nothing sent: the device holds this patch's target "
                       f"model {res.hash} seq {res.seq}")
        else:
            if res.resumed_from:
                click.echo(f"resumed at byte {res.resumed_from:,} (acknowledged before)")
            if res.stream_seconds:
                click.echo(f"streamed {res.streamed:,} B in {res.stream_seconds:.3f} s: "
                           f"{res.bytes_per_s:,.0f} B/s = {100 * res.fraction_of_baud:.1f} % of "
                           f"{NOMINAL_BAUD} baud ({NOMINAL_BAUD // 10:,} B/s nominal); "
                           f"{res.chunks} chunks of "
                           + (f"{res.chunk_min}-{res.chunk_size} B (adapted)"
                              if res.chunk_min and res.chunk_min < res.chunk_size
                              else f"{res.chunk_size} B") + f", window {window}, "
                           f"{res.retransmits} go-back(s), {res.reconnects} reconnect(s)")
            if res.applied:
                click.echo(f"applied: device model {res.hash} seq {res.seq} "
                           f"(verify + apply + commit {res.apply_seconds:.3f} s)")
            else:
                click.echo("staged (not applied: --no-apply)")
        out = dict(res.to_dict(), patch=str(patch_file))
        if check_model:
            from toolchain.patch.check import check_outputs
            ok, n, msg = check_outputs(link, _load_model(check_model))
            click.echo(msg)
            out["outputs_match"] = ok
            write_json(json_path, out)
            if not ok:
                raise SystemExit(1)
        write_json(json_path, out)
        link.close()
    finally:
        if dev is not None:
            dev.stop()


@click.command("status")
@_device_opts
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@place_options
@on_place
def status_cmd(board, firmware, flash, port, json_path):
    """Print the device's patch state: model hash, sequence, slot, staging progress."""
    from toolchain.patch.send import patch_status
    dev, opener = _device(board, firmware, flash, port)
    try:
        link = opener()
        st = patch_status(link)
        click.echo(f"model     {st.hash or '(no valid store)'}")
        click.echo(f"sequence  {st.seq} (last applied {st.last_seq}), slot {'AB'[st.slot]}, "
                   f"key id {st.key_id}")
        stg = (f"{st.staged_next:,}/{st.staged_total:,} B" + (" complete" if st.staged_complete
                                                             else "")) if st.staging else "empty"
        click.echo(f"staging   {stg} (capacity {st.stage_capacity:,} B)")
        click.echo(f"flash     {st.erases} erases, {st.programs} programs since boot "
                   f"(page {st.page} B, slot {st.slot_size:,} B)")
        write_json(json_path, st.to_dict())
        link.close()
    finally:
        if dev is not None:
            dev.stop()


COMMANDS = (firmware_cmd, send_cmd, status_cmd)   # subcommands of `mcu patch`

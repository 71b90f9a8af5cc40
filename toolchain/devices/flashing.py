"""Put a firmware build on a board and check that it is what runs there (`mcu flash`).

    fw = load_build("build/l4")
    run_flasher(board, fw, port="/dev/ttyACM0", progress=bar_update)   # [launch] flash_command
    info = verify_identity(link, fw, board)     # build id + model hash, or WrongFirmware

A board with a [launch] flash_command (pyocd, openocd, st-flash, a script) is flashed
with it: {hex} {elf} {bin} {port} {build_dir} are filled in, its output is scanned for
percentages (pyOCD and OpenOCD print them) to drive a progress bar. Boards without one
(QEMU, host) run the image: start_device does that."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from toolchain.boards import Board
from toolchain.build import BuildResult
from toolchain.errors import FlashError, ToolMissing, WrongFirmware

_PCT = re.compile(rb"(\d{1,3})(?:\.\d+)?\s*%")


def flasher_command(board: Board, fw: BuildResult, port: str | None = None) -> list[str]:
    elf = Path(fw.elf)
    vals = dict(elf=elf, bin=fw.bin or elf.with_suffix(".bin"), hex=elf.with_suffix(".hex"),
                port=port or "", build_dir=fw.build_dir)
    try:
        return [str(a).format(**vals) for a in board.flash_command]
    except (KeyError, IndexError, ValueError) as e:
        raise FlashError(f"{board.path}: [launch] flash_command has a bad placeholder ({e}); "
                         f"use {{hex}} {{elf}} {{bin}} {{port}} {{build_dir}}") from None


def prepare_flasher(board: Board, fw: BuildResult, port: str | None = None) -> list[str]:
    """The flasher command line for `fw`, after checking that it can run: the board has
    one, the image it names exists, the tool is installed (one-line errors)."""
    if not board.flash_command:
        raise FlashError(f"board {board.name} has no [launch] flash_command; add one to "
                         f"{board.path} (e.g. [\"pyocd\", \"flash\", \"-t\", TARGET, \"{{hex}}\"])")
    cmd = flasher_command(board, fw, port)
    if "{hex}" in " ".join(board.flash_command) and not Path(fw.elf).with_suffix(".hex").exists():
        raise FlashError(f"{Path(fw.elf).with_suffix('.hex')} does not exist; rebuild with "
                         f"`mcu build --board {board.name} -o {fw.build_dir}`")
    exe = cmd[0]
    if not (shutil.which(exe) or (os.sep in exe and os.access(exe, os.X_OK))):
        hint = ("pip install pyocd" if exe == "pyocd" else
                "sudo apt-get install openocd" if exe == "openocd" else "install it")
        raise ToolMissing(f"flasher {exe} not found (board {board.name}, [launch] "
                          f"flash_command); {hint}, or put it on PATH")
    return cmd


def run_flasher(board: Board, fw: BuildResult, port: str | None = None, progress=None,
                timeout: float = 300.0) -> str:
    """Run the board's flasher on `fw`; progress(percent) as its output reports it.
    Returns the flasher's output. One-line errors: tool missing, non-zero exit, timeout."""
    cmd = prepare_flasher(board, fw, port)
    exe = cmd[0]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        raise FlashError(f"cannot run flasher {exe}: {e.strerror}") from None
    out = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
            if progress:
                tail = re.split(rb"[\r\n]", out)[-3:]     # pyOCD redraws its bar with \r
                pcts = [int(m) for t in tail for m in _PCT.findall(t)]
                if pcts:
                    progress(min(100, max(pcts)))
            if time.monotonic() > deadline:
                raise FlashError(f"flasher {exe} did not finish within {timeout:g} s")
        rc = proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise FlashError(f"flasher {exe} did not finish within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    text = out.decode(errors="replace")
    if rc != 0:
        lines = [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
        last = lines[-1] if lines else "no output"
        raise FlashError(f"flashing {board.name} failed: {' '.join(cmd)} exited with status "
                         f"{rc}: {last[:200]}")
    if progress:
        progress(100)
    return text


def expected_model_hash(fw: BuildResult) -> str | None:
    """The model hash a build's device must report (its memory plan records it); None for
    a build without a model, or a patchable one (its hash is the active slot's)."""
    bd = Path(fw.build_dir)
    if (bd / "gen-patch").is_dir():
        return None
    plan = bd / "model" / "plan.json"
    try:
        return json.loads(plan.read_text()).get("model_hash") if plan.exists() else None
    except (OSError, ValueError):
        return None


def is_eembc_build(fw: BuildResult) -> bool:
    return (Path(fw.build_dir) / "eembc_model.c").exists()


def verify_identity(link, fw: BuildResult, board: Board):
    """INFO from the device; WrongFirmware (exit 3) unless its board, build id and model
    hash are the build's."""
    info = link.info()
    want_hash = expected_model_hash(fw)
    problems = []
    if info.board != board.name:
        problems.append(f"board {info.board!r}")
    if info.build_id != fw.build_id:
        problems.append(f"build {info.build_id or '?'}")
    if want_hash and info.model_hash != want_hash:
        problems.append(f"model {(info.model_hash or 'none')[:16]}")
    if problems:
        what = f"build {fw.build_id}" + (f", model {want_hash[:16]}" if want_hash else "")
        raise WrongFirmware(f"device at {link.url} answers with another firmware "
                            f"({', '.join(problems)}; expected {what} from {fw.build_dir}): "
                            f"the flash did not take, or another board is on that port")
    return info

"""One interface for every device: start (or flash) it, get a serial URL, stop it.

    with start_device("mps2-an386", build_result) as dev:   # QEMU, host process or port
        link = dev.link()            # toolchain.link.Link over the device's serial
        print(dev.url, link.info())
        link.exit(0); dev.wait_exit(5)

kinds (board TOML `kind`): qemu (emulator command from [launch], TCP serial server
that waits for us, -icount for deterministic instruction counts, semihosting in
test builds), host (the firmware as a native process listening on 127.0.0.1) and
serial (a real board on --port URL; optional [launch] flash_command)."""
from __future__ import annotations

import atexit
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from toolchain.boards import Board, load_board
from toolchain.build import BuildResult, build_firmware, load_build, require_tool
from toolchain.errors import BoardError, LinkError

_LIVE: "weakref.WeakSet[Device]" = weakref.WeakSet()


class Device:
    """A started device. Use as a context manager, or call stop()."""

    def __init__(self, board: Board, url: str, proc=None, firmware: BuildResult | None = None,
                 log_path: Path | None = None, serial_obj=None):
        self.board = board
        self.url = url
        self.proc = proc
        self.firmware = firmware
        self.log_path = log_path
        self._serial = serial_obj
        self._link = None
        _LIVE.add(self)

    # ---- link ------------------------------------------------------------
    def link(self, *, timeout: float | None = None, retries: int | None = None):
        """A Link over the device's serial connection (opened once, reused)."""
        from toolchain.link import Link
        if self._link is None or self._link.ser is None:
            if self._serial is None:
                self._link = Link.open(self.url, timeout=timeout or self.board.serial_timeout,
                                       retries=self.board.retries if retries is None else retries,
                                       baudrate=self.board.baudrate)
                self._serial = self._link.ser
            else:
                self._link = Link(self._serial, url=self.url,
                                  timeout=timeout or self.board.serial_timeout,
                                  retries=self.board.retries if retries is None else retries,
                                  owns=False)
        if timeout is not None:
            self._link.timeout = timeout
        if retries is not None:
            self._link.retries = retries
        return self._link

    def release(self) -> None:
        """Close our connection so another client (e.g. a terminal, `mcu info --port`) can
        connect to the URL; the device keeps running."""
        self._link = None
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:
                pass
        self._serial = None

    # ---- process ---------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def wait_exit(self, timeout: float | None = None) -> int | None:
        """Wait for the device process to end; returns its exit status (None: no process)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LinkError(f"device {self.board.name} did not exit within {timeout:g} s") \
                from None

    def stop(self, grace: float = 2.0) -> int | None:
        """Close the link and end the process: SIGTERM, then SIGKILL after `grace` s."""
        self.release()
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                _signal_group(self.proc, signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(self.proc, signal.SIGKILL)
                    self.proc.wait(5)
            rc = self.proc.returncode
            for s in (self.proc.stdout, self.proc.stderr):
                if s:
                    s.close()
        _LIVE.discard(self)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<Device {self.board.name} {self.url}>"


def _signal_group(proc, sig) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


@atexit.register
def _stop_all() -> None:
    for d in list(_LIVE):
        try:
            d.stop(grace=1.0)
        except Exception:
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _resolve_firmware(board: Board, firmware, test_build: bool | None) -> BuildResult:
    if firmware is None:
        return build_firmware(board, test_build=bool(test_build))
    if isinstance(firmware, BuildResult):
        return firmware
    p = Path(firmware)
    try:
        return load_build(p)
    except Exception:
        if p.is_file():  # a bare ELF without a manifest
            return BuildResult(board=board.name, build_dir=p.parent, elf=p, bin=None, map=None,
                               build_id="", test_build=bool(test_build), flash_used=0,
                               ram_used=0, flash_budget=board.flash_size,
                               ram_budget=board.ram_size)
        raise


def _fmt(args, **kw) -> list[str]:
    return [str(a).format(**kw) for a in args]


def _open_serial(url: str, timeout: float):
    import serial
    return serial.serial_for_url(url, timeout=timeout)


def start_device(board, firmware=None, *, port: str | None = None,
                 test_build: bool | None = None, extra_args=(),
                 connect_timeout: float | None = None, attempts: int = 5) -> Device:
    """Start `board` running `firmware` (a BuildResult, a build dir or ELF path; None =
    build the default firmware) and connect to its serial port.

    port: for kind=serial boards (or to talk to an already running device), the pyserial
    URL. test_build: enable semihosting (default: the firmware's own test_build flag)."""
    board = load_board(board)   # a Board passes through; a name is read once
    if port or board.kind == "serial":
        if not port:
            raise BoardError(f"board {board.name} is a real board: give its serial port "
                             f"with --port (e.g. /dev/ttyACM0)")
        if firmware is not None and board.flash_command:
            fw = _resolve_firmware(board, firmware, test_build)
            cmd = _fmt(board.flash_command, elf=fw.elf, bin=fw.bin, port=port,
                       build_dir=fw.build_dir, hex=Path(fw.elf).with_suffix(".hex"))
            require_tool(cmd[0], board)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise LinkError(f"flashing {board.name} failed ({' '.join(cmd)}): "
                                f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        dev = Device(board, port)
        dev.link()  # opens the port: a clear error if it does not exist
        return dev

    fw = _resolve_firmware(board, firmware, test_build)
    if not fw.elf.exists():
        raise LinkError(f"firmware {fw.elf} does not exist; build it with "
                        f"`mcu build --board {board.name}`")
    if fw.board != board.name:
        raise BoardError(f"firmware {fw.elf} was built for {fw.board}, not {board.name}; "
                         f"rebuild with `mcu build --board {board.name}`")
    semihost = fw.test_build if test_build is None else test_build
    timeout = connect_timeout or board.connect_timeout
    if board.kind == "qemu":
        require_tool(board.launch_command[0], board)
        return _start_qemu(board, fw, semihost, list(extra_args), timeout, attempts)
    return _start_host(board, fw, list(extra_args), timeout)


def _new_log(board: Board) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"mcu-{board.name}-", suffix=".log")
    os.close(fd)
    return Path(path)


def _start_qemu(board, fw, semihost, extra, timeout, attempts) -> Device:
    last = ""
    for _ in range(attempts):
        port = free_port()
        cmd = _fmt(board.launch_command, elf=fw.elf, bin=fw.bin, port=port,
                   build_dir=fw.build_dir)
        cmd += (board.test_args if semihost else []) + extra
        log = _new_log(board)
        with open(log, "wb") as lf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                    start_new_session=True, cwd=fw.build_dir)
        url = board.serial_url.format(port=port)
        deadline = time.monotonic() + timeout
        while True:
            rc = proc.poll()
            if rc is not None:
                last = log.read_text(errors="replace")
                break
            try:
                ser = _open_serial(url, board.serial_timeout)
            except Exception:
                ser = None
            if ser is not None:
                if (board.raw.get("launch") or {}).get("wait_ready"):
                    _wait_ready(ser, board, proc, log, deadline)
                return Device(board, url, proc, fw, log, ser)
            if time.monotonic() > deadline:
                dev = Device(board, url, proc, fw, log)
                dev.stop()
                raise LinkError(f"{cmd[0]} for {board.name} did not open its serial port "
                                f"{url} within {timeout:g} s (log: {log}); the machine may be "
                                f"overloaded: retry, or raise [launch] connect_timeout")
            time.sleep(0.02)
        if "Address already in use" in last or "Failed to bind" in last:
            continue  # another process took the port between our probe and QEMU: retry
        hint = {1: f"QEMU could not load {fw.elf} (wrong file or format?)",
                134: "the CPU locked up (image linked for another memory map?)"}.get(rc, "")
        msg = last.strip().splitlines()[-1] if last.strip() else f"exit status {rc}"
        raise LinkError(f"{cmd[0]} for {board.name} exited ({rc}) before its serial port "
                        f"opened: {msg}" + (f"; {hint}" if hint else "") + f" (log: {log})")
    raise LinkError(f"could not find a free TCP port for {board.name} after {attempts} tries: "
                    f"{last.strip()[-200:]}")


def _wait_ready(ser, board, proc, log, deadline) -> None:
    """[launch] wait_ready: the firmware sends one 0x00 (a frame delimiter) once its UART
    receives; bytes sent earlier may be discarded by the emulated UART (QEMU's STM32
    USART drops input until it is enabled), so the first request waits for it."""
    old = ser.timeout
    ser.timeout = 0.05
    try:
        while time.monotonic() < deadline:
            b = ser.read(1)
            if b == b"\x00":
                return
            if proc.poll() is not None:
                break
    finally:
        ser.timeout = old
    try:
        ser.close()
    except Exception:
        pass
    Device(board, "", proc, None, log).stop()
    raise LinkError(f"{board.name} did not signal UART ready (0x00) in time (log: {log}); "
                    f"does the firmware come from this board's family?")


_LISTEN = re.compile(rb"MCU_LISTEN (\S+) (\d+)")


def _start_host(board, fw, extra, timeout) -> Device:
    cmd = _fmt(board.launch_command, elf=fw.elf, bin=fw.bin, port=0,
               build_dir=fw.build_dir) + extra
    log = _new_log(board)
    with open(log, "wb") as lf:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=lf, start_new_session=True, cwd=fw.build_dir)
        except OSError as e:
            raise LinkError(f"cannot start {cmd[0]}: {e.strerror}; rebuild with "
                            f"`mcu build --board {board.name}`") from None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while True:
        m = _LISTEN.search(buf)
        if m:
            url = board.serial_url.format(port=int(m.group(2)))
            try:
                ser = _open_serial(url, board.serial_timeout)
            except Exception as e:
                Device(board, url, proc, fw, log).stop()
                raise LinkError(f"cannot connect to the host board at {url}: {e}") from None
            return Device(board, url, proc, fw, log, ser)
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            rc = proc.poll()
            Device(board, "", proc, fw, log).stop()
            why = log.read_text(errors="replace").strip().splitlines()[-1:] or [
                f"exit status {rc}" if rc is not None else f"no port within {timeout:g} s"]
            raise LinkError(f"host board firmware {fw.elf} did not start: {why[0]} "
                            f"(log: {log})")
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                proc.wait(1)
            buf += chunk


__all__ = ["Device", "start_device", "free_port"]

"""Host end of the MLPerf Tiny / EEMBC benchmark text protocol, spoken exactly as the
EEMBC runner does: ASCII commands ending in '%', the device answers with `m-…`
(or `e-[…]`) lines and `m-ready` after each command; the input goes as
`db load N%` then `db HEX%` with 31 bytes (62 hex digits) per command until the
device says `m-load-done`.

    with start_device("mps2-an386", fw) as dev:          # firmware built --protocol eembc
        ee = EembcClient(dev.link().ser)
        ee.name()                   -> "mcu"
        ee.profile()                -> {"profile": "...", "model": "..."}
        ee.load(xq.tobytes())
        r = ee.infer(1, 0)          -> {"us": elapsed µs, "results": [...], "int8": b"..."}

The firmware side is firmware_templates/app/eembc.c."""
from __future__ import annotations

import re
import time

from toolchain.errors import LinkError

DB_CHUNK = 31   # bytes per `db` command, as the EEMBC runner sends them


class EembcError(LinkError):
    """The device answered a command with an e-[…] line, or not at all."""


class EembcClient:
    def __init__(self, ser, timeout: float = 10.0, url: str = ""):
        self.ser = ser
        self.timeout = timeout
        self.url = url or getattr(ser, "port", "") or "device"
        self._buf = b""
        self.boot_lines: list[str] = []

    # ---- raw ---------------------------------------------------------------
    def _readline(self, deadline: float) -> str:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EembcError(f"device at {self.url} did not finish its answer within "
                                 f"{self.timeout:g} s (no m-ready); is it running firmware "
                                 f"built with --protocol eembc?")
            self.ser.timeout = min(left, 0.5)
            try:
                chunk = self.ser.read(max(1, getattr(self.ser, "in_waiting", 0) or 1))
            except Exception as e:  # noqa: BLE001 - closed socket, unplugged port
                raise EembcError(f"read from {self.url} failed: {e}") from None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("ascii", errors="replace").rstrip("\r")

    def wait_ready(self, timeout: float | None = None) -> list[str]:
        """Lines up to the next m-ready (e.g. the boot banner)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            ln = self._readline(deadline)
            if ln == "m-ready":
                return lines
            if ln:
                lines.append(ln)

    def sync(self, timeout: float | None = None) -> str:
        """Skip whatever the device printed before (boot banner, half a line) and
        identify it as the runner does: `name%` -> m-name-dut-[…]. Returns the name."""
        self.ser.write(b"name%")
        self.ser.flush()
        deadline = time.monotonic() + (timeout or self.timeout)
        name = None
        while True:
            ln = self._readline(deadline)
            if ln.startswith("m-name-dut-"):
                name = self._bracket([ln], "m-name-dut-")
            elif ln == "m-ready" and name is not None:
                return name
            elif ln and name is None:
                self.boot_lines.append(ln)

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send `cmd%`, return the answer lines (without m-ready); e-[…] raises."""
        if "%" in cmd or len(cmd) > 80:
            raise EembcError(f"bad EEMBC command {cmd!r} (no '%', at most 80 characters)")
        try:
            self.ser.write(cmd.encode("ascii") + b"%")
            self.ser.flush()
        except Exception as e:  # noqa: BLE001
            raise EembcError(f"write to {self.url} failed: {e}") from None
        lines = self.wait_ready(timeout)
        errs = [ln for ln in lines if ln.startswith("e-")]
        if errs:
            raise EembcError(f"device answered {cmd!r} with {errs[0]}")
        return lines

    # ---- commands ------------------------------------------------------------
    @staticmethod
    def _bracket(lines, prefix) -> str | None:
        for ln in lines:
            if ln.startswith(prefix):
                m = re.match(re.escape(prefix) + r"\[(.*)\]$", ln)
                return m.group(1) if m else ln[len(prefix):]
        return None

    def name(self) -> str:
        return self._bracket(self.command("name"), "m-name-dut-")

    def profile(self) -> dict:
        lines = self.command("profile")
        return dict(profile=self._bracket(lines, "m-profile-"),
                    model=self._bracket(lines, "m-model-"))

    def timestamp(self) -> int:
        return _laps(self.command("timestamp"))[0]

    def load(self, data: bytes) -> int:
        """`db load N%`, then 31-byte `db HEX%` commands until m-load-done."""
        data = bytes(data)
        lines = self.command(f"db load {len(data)}")
        if not any(ln == f"m-[Expecting {len(data)} bytes]" for ln in lines):
            raise EembcError(f"device did not accept db load {len(data)}: {lines}")
        done = False
        for i in range(0, len(data), DB_CHUNK):
            lines = self.command("db " + data[i:i + DB_CHUNK].hex())
            done = "m-load-done" in lines
        if not done:
            raise EembcError(f"device did not say m-load-done after {len(data)} bytes")
        return len(data)

    def buffer(self) -> bytes:
        """`db print%`: the loaded bytes."""
        out = b""
        for ln in self.command("db print"):
            if ln.startswith("m-buffer-"):
                out += bytes.fromhex(ln[len("m-buffer-"):].replace("-", ""))
        return out

    def infer(self, n: int = 1, warmup: int = 0, timeout: float | None = None) -> dict:
        """`infer N W%`: N timed runs after W warm-ups; elapsed µs and the results."""
        lines = self.command(f"infer {n} {warmup}", timeout=timeout)
        laps = _laps(lines)
        if "m-infer-done" not in lines or len(laps) < 2:
            raise EembcError(f"incomplete answer to infer {n} {warmup}: {lines[-3:]}")
        r = _results(lines)
        r.update(n=n, warmup=warmup, us=laps[-1] - laps[-2],
                 us_per_inference=(laps[-1] - laps[-2]) / n, lines=lines)
        return r

    def results(self) -> dict:
        return _results(self.command("results"))


def _laps(lines) -> list[int]:
    return [int(ln[len("m-lap-us-"):]) for ln in lines if ln.startswith("m-lap-us-")]


def _results(lines) -> dict:
    fl, raw = None, None
    for ln in lines:
        if ln.startswith("m-results-int8-["):
            raw = bytes(int(v) & 0xFF for v in ln[len("m-results-int8-["):-1].split(",") if v)
        elif ln.startswith("m-results-["):
            fl = [float(v) for v in ln[len("m-results-["):-1].split(",") if v]
    if fl is None:
        raise EembcError(f"no m-results line in the answer: {lines[-3:]}")
    return dict(results=fl, int8=raw)

"""A labgrid board farm on localhost, and the parallel-HIL speed-up measured on it.

    with LocalFarm.emulated(model, n=2) as farm:        # 2 QEMU mps2-an386 "boards"
        farm.coordinator       # 127.0.0.1:PORT (LG_COORDINATOR)
        farm.places            # ["mcu-0", "mcu-1"], tagged board=mps2-an386
        # mcu hil MODEL --data D --coordinator {farm.coordinator} --place mcu-0

What runs, as on a real farm: `labgrid-coordinator`; one `labgrid-exporter` whose
YAML config exports each board's serial port as a NetworkSerialPort (the QEMU
processes are the exporter host's boards, flashed with the model's firmware, serial
on a raw TCP server as ser2net would give a real UART); one place per board with a
match on it and a `board` tag. Everything listens on 127.0.0.1 and is torn down on
exit (SIGTERM, then SIGKILL).

`python -m toolchain.bench_farm` (make bench-farm): the digits CNN's test set (x2)
through `mcu hil` sharded over N = 1, 2, 4 devices, emulated boards started locally
and places of the local farm; JSON in bench-results/farm_parallel.json."""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPORTER = "mcu-farm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, grace=3.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def exporter_config(boards: dict, extra: dict | None = None) -> str:
    """The exporter YAML: {group: (host, port)} -> NetworkSerialPort (protocol raw)."""
    lines = []
    for g, (host, port) in boards.items():
        lines += [f"{g}:", "  NetworkSerialPort:", f"    host: {host}", f"    port: {port}",
                  "    protocol: raw", "    speed: 115200"]
    for g, res in (extra or {}).items():
        lines.append(f"{g}:")
        for cls, params in res.items():
            lines.append(f"  {cls}:")
            lines += [f"    {k}: {v}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


class LocalFarm:
    """Coordinator + exporter on 127.0.0.1 for boards already running (see module doc)."""

    def __init__(self, boards: dict, *, board_tag: str = "mps2-an386", extra: dict | None = None,
                 extra_places: dict | None = None, workdir=None, devices=()):
        self.boards = dict(boards)          # place/group name -> (host, port)
        self.board_tag = board_tag
        self.extra, self.extra_places = extra or {}, extra_places or {}
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mcu-farm-"))
        self.devices = list(devices)        # started here: stopped on exit
        self.coord = self.exporter = None
        self.coordinator = ""

    @classmethod
    def emulated(cls, model, n: int = 2, board: str = "mps2-an386", **kw) -> "LocalFarm":
        """Build the model's firmware once, start n QEMU boards running it."""
        from toolchain.devices import start_device
        from toolchain.hil.session import build_for_model
        fw = build_for_model(model, board)
        devs = []
        try:
            for _ in range(n):
                d = start_device(board, fw)
                d.release()            # the board keeps running; clients connect anew
                devs.append(d)
        except BaseException:
            for d in devs:
                d.stop()
            raise
        boards = {f"mcu-{k}": ("127.0.0.1", int(d.url.rsplit(":", 1)[1]))
                  for k, d in enumerate(devs)}
        return cls(boards, board_tag=board, devices=devs, **kw)

    @property
    def places(self) -> list[str]:
        return list(self.boards)

    def env(self) -> dict:
        return dict(os.environ, LG_COORDINATOR=self.coordinator)

    def start(self) -> "LocalFarm":
        from toolchain.farm import create_places, exported_resources
        try:
            port = _free_port()
            self.coordinator = f"127.0.0.1:{port}"
            log = open(self.workdir / "coordinator.log", "wb")
            self.coord = subprocess.Popen(
                [sys.executable, "-m", "labgrid.remote.coordinator", "-l", self.coordinator],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir)
            self._wait_port(port, self.coord, "coordinator.log")
            cfg = self.workdir / "exporter.yaml"
            cfg.write_text(exporter_config(self.boards, self.extra))
            log = open(self.workdir / "exporter.log", "wb")
            self.exporter = subprocess.Popen(
                [sys.executable, "-m", "labgrid.remote.exporter", "-c", self.coordinator,
                 "-n", EXPORTER, "--hostname", "127.0.0.1", str(cfg)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir)
            want = set(self.boards) | set(self.extra)
            deadline = time.monotonic() + 30
            while True:
                got = {k.split("/")[1] for k in exported_resources(self.coordinator)}
                if want <= got:
                    break
                if self.exporter.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("labgrid-exporter did not export the boards: "
                                       + self._tail("exporter.log"))
                time.sleep(0.1)
            places = {n: (f"{EXPORTER}/{n}/NetworkSerialPort", {"board": self.board_tag})
                      for n in self.boards}
            places.update(self.extra_places)
            create_places(places, coordinator=self.coordinator)
        except BaseException:
            self.stop()
            raise
        return self

    def _tail(self, name) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def _wait_port(self, port, proc, logname, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"labgrid-coordinator did not listen on {port}: "
                           + self._tail(logname))

    def stop(self) -> None:
        _stop(self.exporter)
        _stop(self.coord)
        self.exporter = self.coord = None
        for d in self.devices:
            d.stop()
        self.devices = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------------------------ bench
def _digits(cache: Path, repeat: int) -> tuple[Path, Path]:
    import numpy as np
    cache.mkdir(parents=True, exist_ok=True)
    model, data = cache / "digits.tflite", cache / f"digits-test-x{repeat}.npz"
    if not model.exists():
        import torch

        from converters import from_torch
        from converters.quantize import quantize
        from converters.tflite_writer import write_tflite
        from toolchain.examples.digits import train_digits_cnn
        m, (xtr, _ytr, xte, yte) = train_digits_cnn(0, epochs=12)
        g = from_torch(m, torch.from_numpy(xtr[:1]))
        model.write_bytes(write_tflite(quantize(g, xtr[:256].transpose(0, 2, 3, 1))))
        np.savez(cache / "digits-test.npz", x=xte, y=yte)
    if not data.exists():
        d = np.load(cache / "digits-test.npz")
        np.savez(data, x=np.concatenate([d["x"]] * repeat), y=np.concatenate([d["y"]] * repeat))
    return model, data


def run_bench(json_path, jobs=(1, 2, 4), repeat: int = 2, rounds: int = 3,
              echo=print) -> dict:
    """Each (mode, N) is run `rounds` times, interleaved; the figure is the fastest run
    (the machine is shared: the minimum is the least disturbed), every run is kept."""
    from toolchain.farm import leased_places
    from toolchain.hil.parallel import run_hil_parallel
    from toolchain.hil.runner import HilConfig
    load0 = list(os.getloadavg())
    model, data = _digits(Path("build") / "bench-farm", repeat)
    cfg = HilConfig(progress=False)
    runs: dict = {}

    def record(mode, n, res, t):
        s = res.summary()
        runs.setdefault((mode, n), []).append(dict(
            wall_s=round(t, 3), loop_s=round(max(sh["wall_s"] for sh in res.meta["shards"]), 3),
            samples=res.done, device_accuracy=s["device_accuracy"], byte_exact=s["agree_exact"]))
        echo(f"{mode:7} N={n}: {res.done} samples in {t:.2f} s, accuracy "
             f"{100 * s['device_accuracy']:.2f} %, byte-exact {s['agree_exact']}")

    run_hil_parallel(model, data, board="mps2-an386", jobs=1, config=HilConfig(
        limit=4, progress=False))                   # the build, outside the timings
    with LocalFarm.emulated(model, max(jobs)) as farm:
        for _ in range(rounds):
            for n in jobs:
                t0 = time.perf_counter()
                res = run_hil_parallel(model, data, board="mps2-an386", jobs=n, config=cfg)
                record("local", n, res, time.perf_counter() - t0)
                t0 = time.perf_counter()
                with leased_places(farm.places, n, timeout=30,
                                   coordinator=farm.coordinator) as leases:
                    res = run_hil_parallel(model, data, board="mps2-an386",
                                           ports=[l.serial_url for l in leases], config=cfg)
                record("places", n, res, time.perf_counter() - t0)
    rows = []
    for (mode, n), rs in runs.items():
        best = min(rs, key=lambda r: r["wall_s"])
        rows.append(dict(mode=mode, devices=n, samples=best["samples"], wall_s=best["wall_s"],
                         loop_s=best["loop_s"],
                         samples_per_s=round(best["samples"] / best["wall_s"], 1),
                         device_accuracy=best["device_accuracy"],
                         byte_exact=best["byte_exact"],
                         all_wall_s=[r["wall_s"] for r in rs]))
    for r in rows:
        base = next(b for b in rows if b["mode"] == r["mode"] and b["devices"] == 1)
        r["speedup"] = round(base["wall_s"] / r["wall_s"], 2)
        echo(f"{r['mode']:7} N={r['devices']}: best {r['wall_s']:.2f} s of "
             f"{r['all_wall_s']}, {r['samples_per_s']:.0f} samples/s, speed-up "
             f"{r['speedup']:.2f}x")
    same = len({(r["device_accuracy"], r["byte_exact"]) for rs in runs.values()
                for r in rs}) == 1
    out = dict(bench="parallel HIL (mcu hil --jobs N / --place x N)", model="digits CNN int8",
               board="mps2-an386 (QEMU, -icount shift=0)", samples=rows[0]["samples"],
               rounds=rounds, cores=os.cpu_count(), machine=platform.machine(),
               load_average_before=load0, load_average_after=list(os.getloadavg()),
               python=platform.python_version(), results=rows,
               merged_equals_single=same,
               note="wall_s: the fastest of `rounds` runs, from the call to the merged report "
                    "(local: QEMU boot included; places: acquire + release included, boards "
                    "already running); loop_s: that run's slowest shard's sample loop")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
        echo(f"wrote {json_path}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="bench-results/farm_parallel.json")
    ap.add_argument("--repeat", type=int, default=2, help="test set copies (449 samples each)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per figure (the fastest counts)")
    a = ap.parse_args(argv)
    out = run_bench(a.json, repeat=a.repeat, rounds=a.rounds)
    if not out["merged_equals_single"]:
        sys.exit("merged results differ between N")


if __name__ == "__main__":
    main()

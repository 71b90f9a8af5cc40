"""Link benchmark (not a test): round-trip latency and throughput over protocol v1.

    python -m toolchain.bench_link [--board host --board mps2-an386] [--json PATH] [--quick]
    mcu bench-link ...

For every board: echo round trips (16 B and one full frame), chunked transfer
host->device (XFER_* into the debug scratch stream, acked per chunk) and
device->host (XFER_READ), all payload bytes counted. Writes JSON."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from toolchain.errors import McuError

DEFAULT_BOARDS = ["host", "mps2-an386"]


def _rtts(link, payload: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        link.echo(payload)
        out.append(time.perf_counter() - t)
    return out


def _stats_us(xs: list[float]) -> dict:
    xs = sorted(xs)
    return dict(n=len(xs), median_us=round(statistics.median(xs) * 1e6, 1),
                p90_us=round(xs[int(0.9 * (len(xs) - 1))] * 1e6, 1),
                mean_us=round(statistics.fmean(xs) * 1e6, 1))


def bench_board(board: str, quick: bool = False) -> dict:
    from toolchain.boards import load_board
    from toolchain.build import build_firmware
    from toolchain.devices import start_device
    from toolchain.link import Msg
    b = load_board(board)           # once, for the build and the start
    fw = build_firmware(b)
    fast = fw.board == "host"
    n_small = (2000 if fast else 300) // (4 if quick else 1)
    n_big = (500 if fast else 40) // (4 if quick else 1)
    size = 8192
    reps = (20 if fast else 3) // (2 if quick else 1) or 1
    data = os.urandom(size)
    t0 = time.perf_counter()
    with start_device(b, fw) as dev:
        start_s = time.perf_counter() - t0
        link = dev.link()
        info = link.info()
        mp = info.max_payload or 256
        _rtts(link, b"w" * 16, 5)  # warm up
        small = _rtts(link, b"x" * 16, n_small)
        big = _rtts(link, os.urandom(mp), n_big)
        t = time.perf_counter()
        for _ in range(reps):
            link.send_chunked(Msg.DEBUG_SCRATCH, data)
        h2d = reps * size / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(reps):
            back = link.recv_chunked(Msg.DEBUG_SCRATCH)
        d2h = reps * size / (time.perf_counter() - t)
        if back != data:
            raise McuError(f"{board}: data read back differs from data sent")
        counters = dict(link.counters)
        dev_stats = link.device_stats()
    big_med = statistics.median(big)
    return dict(board=board, url_kind=dev.url.split(":")[0], start_s=round(start_s, 3),
                max_payload=mp,
                rtt_16B=_stats_us(small), rtt_full_frame=_stats_us(big),
                echo_full_frame_Bps=round(2 * mp / big_med),
                h2d_chunked_Bps=round(h2d), d2h_chunked_Bps=round(d2h),
                transfer_bytes=size, transfer_reps=reps,
                host_counters=counters, device_stats=dev_stats)


def run_bench(boards=None, json_path="bench-results/link.json", quick=False, echo=print) -> dict:
    results, skipped = {}, {}
    for b in boards or DEFAULT_BOARDS:
        try:
            r = bench_board(b, quick)
        except McuError as e:
            if len(boards or []) == 1:
                raise
            skipped[b] = str(e)
            echo(f"{b}: skipped ({e})")
            continue
        results[b] = r
        echo(f"{b}: RTT 16 B median {r['rtt_16B']['median_us']:.0f} us "
             f"(p90 {r['rtt_16B']['p90_us']:.0f}); {r['max_payload']} B echo "
             f"{r['rtt_full_frame']['median_us']:.0f} us; "
             f"host->device {r['h2d_chunked_Bps'] / 1024:.1f} KiB/s, "
             f"device->host {r['d2h_chunked_Bps'] / 1024:.1f} KiB/s (chunked, acked)")
    out = dict(benchmark="link", protocol="v1", when=time.strftime("%Y-%m-%dT%H:%M:%S"),
               machine=dict(platform=platform.platform(), cpus=os.cpu_count()),
               results=results, skipped=skipped)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")
        echo(f"wrote {json_path}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", action="append", dest="boards")
    ap.add_argument("--json", default="bench-results/link.json")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    try:
        run_bench(a.boards, a.json, a.quick)
    except McuError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measured patch streaming (issue #6 benchmark): `send_patch` onto the host board
(direct, and through a proxy pacing both directions at 115200 baud 8N1 = 11,520 B/s
to emulate a UART) and onto QEMU mps2-an386; stop-and-wait (window 1) vs pipelined.

    rows = measure_streaming({"dpu@5%": (graph, patch_bytes)}, boards=("host", "mps2-an386"))

Link efficiency = patch bytes / (streaming seconds x 11,520 B/s); streaming time runs
from PATCH_BEGIN to the last acknowledgement (the apply is timed separately). On QEMU
and the direct host board the baud rate is nominal (the fraction can exceed 1).

A bad line (issue #15), `python -m toolchain.patch.stream_bench` (make bench-patch-link):
bad_line_bench() sends a 14.8 kB delta through FaultProxy at per-byte error rates 0,
1e-4, 1e-3, 4e-3 (drops and bit flips, half each), cutting the connection every 1.5 kB,
paced at 115200 baud, adaptive chunks vs fixed 1020 B; JSON in bench-results/."""
from __future__ import annotations

import shutil
from pathlib import Path

RAW = 115200 / 10


def _send(board, fw, data, *, window, rate=0.0):
    from toolchain.devices import start_device
    from toolchain.link import Link

    from .faults import FaultProxy, port_of
    from .send import send_patch
    with start_device(board, fw) as dev:
        if not rate:
            return send_patch(None, data, link=dev.link(), window=window)
        port = port_of(dev.url)
        dev.release()
        with FaultProxy(port, rate=rate) as px:
            lk = Link.open(f"socket://127.0.0.1:{px.port}", timeout=2.0)
            try:
                return send_patch(None, data, link=lk, window=window)
            finally:
                lk.close()


def measure_streaming(cases: dict, boards=("host", "mps2-an386"), key: bytes | None = None,
                      workdir="build/patch-stream", echo=print, windows=(1, 8)) -> list[dict]:
    """cases: name -> (base graph or WeightStore, patch bytes signed with `key`)."""
    from .device import build_patch_firmware, build_patch_model_firmware
    from .store import WeightStore
    from .stream import stream_estimate
    key = key or bytes(range(32))
    rows = []
    fws = {}
    for board in boards:
        if board != "host" and not shutil.which("qemu-system-arm"):
            echo(f"  streaming on {board}: skipped (qemu-system-arm not installed)")
            continue
        for name, (base, data) in cases.items():
            fk = (board, id(base))
            if fk not in fws:
                d = Path(workdir) / f"{board}-{len(fws)}"
                if isinstance(base, WeightStore):
                    fws[fk] = build_patch_firmware(board, base, key, d, test_build=True)
                else:
                    fws[fk] = build_patch_model_firmware(base, board, key, d)[0]
            modes = [("nominal", 0.0)] + ([("115200 paced", RAW)] if board == "host" else [])
            for mode, rate in modes:
                for w in windows:
                    r = _send(board, fws[fk], data, window=w, rate=rate)
                    row = dict(case=name, board=board, link=mode, window=w, bytes=len(data),
                               stream_s=round(r.stream_seconds, 4),
                               bytes_per_s=round(r.bytes_per_s, 1),
                               fraction_of_115200=round(r.fraction_of_baud, 4),
                               apply_s=round(r.apply_seconds, 4), chunks=r.chunks,
                               retransmits=r.retransmits,
                               estimate_s_115200=stream_estimate(len(data))["seconds"])
                    rows.append(row)
                    echo(f"  {name:<14} {board:<11} {mode:<13} window {w}: {len(data):>7,} B in "
                         f"{r.stream_seconds:.3f} s = {r.bytes_per_s:>10,.0f} B/s "
                         f"({100 * r.fraction_of_baud:6.1f} % of 115200 baud), apply "
                         f"{r.apply_seconds * 1000:.1f} ms")
    return rows


# ---- a bad line: errors and cuts (issue #15) -----------------------------------------------
RATES = (0.0, 1e-4, 1e-3, 4e-3)
CUT_EVERY = 1500
BENCH_SIZES = ((6000, "int8", "weight"), (64, "int32", "bias"), (10000, "int8", "weight"),
               (4, "int32", "other"))


class _Deadline(Exception):
    pass


def bad_line_case(fraction=0.3, sizes=BENCH_SIZES, key=None):
    """(store, patch bytes): a raw store and a delta patch changing `fraction` of it."""
    from .device import mutate_store, patch_between, raw_store
    st = raw_store(sizes)
    return st, patch_between(st, mutate_store(st, fraction, seed=7), key or bytes(range(32)), 1)


def bad_line_run(fw, store, data, rate, *, seed=1, cut_every=CUT_EVERY, pace=RAW,
                 adaptive=True, chunk=None, limit_s=120.0, timeout=1.0) -> dict:
    """One `send_patch` through a FaultProxy onto a fresh host-board device: each byte
    in either direction dropped with probability rate/2 or one bit flipped with rate/2,
    the connection cut after every `cut_every` bytes (both directions), each direction
    paced at `pace` B/s. Link and reconnects as `mcu patch send` (timeout 1 s, 3 tries)."""
    import time

    from toolchain.devices import start_device
    from toolchain.link import Link

    from .faults import FaultProxy, port_of
    from .send import patch_status, send_patch
    with start_device("host", fw) as dev:
        port = port_of(dev.url)
        dev.release()
        with FaultProxy(port, drop=rate / 2, corrupt=rate / 2, cut_after=cut_every or None,
                        rate=pace, seed=seed) as px:
            url = f"socket://127.0.0.1:{px.port}"
            t0 = time.monotonic()

            def opener():
                if time.monotonic() - t0 > limit_s:
                    raise _Deadline
                return Link.open(url, timeout=timeout, retries=3)
            res, err = None, ""
            try:
                res = send_patch(opener, data, adaptive=adaptive, chunk=chunk)
            except _Deadline:
                err = f"not complete after {limit_s:g} s"
            except Exception as e:  # noqa: BLE001 - recorded as a failed run
                err = f"{type(e).__name__}: {e}"
            secs = time.monotonic() - t0
            proxy = dict(px.stats)
        lk = Link.open(dev.url, timeout=2.0)
        try:
            st = patch_status(lk)
        finally:
            lk.close()
    from .format import read_header
    done = res is not None and res.applied and st.hash == read_header(data)["target_hash"].hex()
    row = dict(rate=rate, seed=seed, cut_every=cut_every, adaptive=adaptive, bytes=len(data),
               completed=bool(done), seconds=round(secs, 3), error=err,
               goodput_bytes_per_s=round(len(data) / secs, 1) if done else 0.0,
               fraction_of_115200=round(len(data) / secs / RAW, 4) if done else 0.0,
               proxy=proxy)
    if res is not None:
        row.update(reconnects=res.reconnects, go_backs=res.retransmits, timeouts=res.timeouts,
                   chunks=res.chunks, sent_bytes=res.sent_bytes,
                   sent_over_patch=round(res.sent_bytes / len(data), 3),
                   chunk_max=res.chunk_size, chunk_min=res.chunk_min,
                   chunk_final=res.chunk_final, chunk_changes=res.chunk_changes,
                   resumes_monotonic=all(a <= b for a, b in zip(res.resumes, res.resumes[1:])))
    return row


def bad_line_bench(rates=RATES, seeds=(1, 2, 3), *, fixed=True, fixed_limit_s=60.0,
                   workdir="build/patch-badline", echo=print, fraction=0.3) -> dict:
    """Completion time and goodput of `mcu patch send` at each per-byte error rate (with
    cuts every CUT_EVERY bytes), adaptive chunks vs fixed 1020-B chunks."""
    import statistics
    import time

    from .device import build_patch_firmware
    key = bytes(range(32))
    st, data = bad_line_case(fraction, key=key)
    fw = build_patch_firmware("host", st, key, Path(workdir) / "fw", test_build=True)
    t0 = time.monotonic()
    rows = []
    modes = [True] + ([False] if fixed else [])
    for rate in rates:
        for adaptive in modes:
            for seed in seeds:
                r = bad_line_run(fw, st, data, rate, seed=seed, adaptive=adaptive,
                                 limit_s=120.0 if adaptive else fixed_limit_s)
                rows.append(r)
                echo(f"  rate {rate:<7g} {'adaptive' if adaptive else 'fixed 1020':<10} seed {seed}: "
                     + (f"{r['seconds']:7.2f} s, {r['goodput_bytes_per_s']:7.0f} B/s "
                        f"({100 * r['fraction_of_115200']:5.1f} %), {r.get('reconnects', 0)} "
                        f"reconnects, {r.get('go_backs', 0)} go-backs, chunks "
                        f"{r.get('chunk_min', 0)}..{r.get('chunk_max', 0)} B"
                        if r["completed"] else f"FAILED ({r['error']})"))
    summary = summarize_bad_line(rows, rates, modes)
    return dict(patch_bytes=len(data), cut_every=CUT_EVERY, pace_bytes_per_s=RAW,
                seeds=list(seeds), error_model="each byte, each direction: dropped with p/2, "
                "one bit flipped with p/2", rows=rows, summary=summary,
                seconds=round(time.monotonic() - t0, 1))


def summarize_bad_line(rows, rates, modes=(True, False)) -> list[dict]:
    """Per (rate, adaptive): runs completed and medians over the completed ones; wire
    bytes = bytes through the proxy, both directions (what a cut discards excluded)."""
    import statistics
    med = statistics.median
    summary = []
    for rate in rates:
        for adaptive in modes:
            rs = [r for r in rows if r["rate"] == rate and r["adaptive"] == adaptive]
            ok = [r for r in rs if r["completed"]]
            s = dict(rate=rate, adaptive=adaptive, runs=len(rs), completed=len(ok),
                     failed=sorted({r["error"].split(" at socket")[0] for r in rs
                                    if not r["completed"]}))
            if ok:
                s.update(median_s=round(med(r["seconds"] for r in ok), 2),
                         goodput_bytes_per_s=round(med(r["goodput_bytes_per_s"] for r in ok)),
                         fraction_of_115200=round(med(r["fraction_of_115200"] for r in ok), 4),
                         reconnects=round(med(r["reconnects"] for r in ok)),
                         go_backs=round(med(r["go_backs"] for r in ok)),
                         chunk_min=min(r["chunk_min"] for r in ok),
                         wire_over_patch=round(med(r["proxy"]["bytes"] / r["bytes"]
                                                   for r in ok), 2))
            summary.append(s)
    return summary


def format_bad_line(out: dict) -> str:
    lines = ["| per-byte error rate | chunk size | completed | median time | goodput | "
             "of 115200 baud | reconnects | go-backs | smallest chunk | wire bytes / patch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in out["summary"]:
        done = f"{s['completed']}/{s['runs']}"
        lines.append(
            f"| {s['rate']:g} | {'adaptive' if s['adaptive'] else 'fixed 1020 B'} | {done} | "
            + (f"{s['median_s']:.2f} s | {s['goodput_bytes_per_s']:,} B/s | "
               f"{100 * s['fraction_of_115200']:.1f} % | {s['reconnects']} | {s['go_backs']} | "
               f"{s['chunk_min']} B | {s['wire_over_patch']:.2f} |" if s["completed"]
               else "— | — | — | — | — | — | — |"))
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json
    import os
    import sys
    ap = argparse.ArgumentParser(description="Patch streaming over a bad line (issue #15): "
                                 "completion time and goodput vs per-byte error rate, with cuts")
    ap.add_argument("--json", default="bench-results/patch_stream_badline.json")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    ap.add_argument("--no-fixed", action="store_true", help="skip the fixed 1020-B comparison")
    a = ap.parse_args()
    out = bad_line_bench(tuple(float(x) for x in a.rates.split(",")),
                         tuple(range(1, a.seeds + 1)), fixed=not a.no_fixed)
    print(format_bad_line(out))
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {a.json} ({out['seconds']} s)")
    sys.exit(0 if all(s["completed"] == s["runs"] for s in out["summary"] if s["adaptive"]) else 1)

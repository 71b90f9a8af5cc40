"""Measured patch streaming (issue #6 benchmark): `send_patch` onto the host board
(direct, and through a proxy pacing both directions at 115200 baud 8N1 = 11,520 B/s
to emulate a UART) and onto QEMU mps2-an386; stop-and-wait (window 1) vs pipelined.

    rows = measure_streaming({"dpu@5%": (graph, patch_bytes)}, boards=("host", "mps2-an386"))

Link efficiency = patch bytes / (streaming seconds x 11,520 B/s); streaming time runs
from PATCH_BEGIN to the last acknowledgement (the apply is timed separately). On QEMU
and the direct host board the baud rate is nominal (the fraction can exceed 1)."""
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

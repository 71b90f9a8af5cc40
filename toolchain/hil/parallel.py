"""Parallel HIL: shard a data set over N devices, run them at once, merge one report.

    res = run_hil_parallel("model.tflite", "test.npz", board="mps2-an386", jobs=4)
    res = run_hil_parallel("model.tflite", "test.npz", ports=[url_a, url_b])   # farm places

Shards are contiguous slices (np.array_split), so shard k holds samples
[start_k, end_k); each device runs its slice with the same loop as `mcu hil`
(run_samples), and the merged result keeps every sample's global index. The merged
accuracy and byte-exact counts are the single-device run's: every device runs the same
firmware on the same inputs, and the reference outputs are computed once on the host.

Devices: `ports` (one per shard, e.g. the serial URLs of acquired labgrid places,
already flashed; model hash checked on each), or `jobs` emulated boards started here
from one firmware build (QEMU is single-threaded: one core per device helps)."""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as _Pending

import numpy as np

from toolchain.errors import LinkError
from toolchain.hil.api import layer_table, memory_plan, run_meta, write_json_atomic
from toolchain.hil.data import HilData, load_data
from toolchain.hil.errors import HilError
from toolchain.hil.reference import HostReference
from toolchain.hil.runner import HilConfig, HilResult, run_samples
from toolchain.hil.session import HilDevice, build_for_model, load_int8_model


def shard_indices(n: int, jobs: int) -> list[np.ndarray]:
    """Contiguous, nearly equal slices of range(n); no empty shard."""
    jobs = max(1, min(jobs, n))
    return [a for a in np.array_split(np.arange(n), jobs) if len(a)]


def _sub(data: HilData, idx: np.ndarray) -> HilData:
    return HilData(xq=data.xq[idx], y=None if data.y is None else data.y[idx],
                   source_dtype=data.source_dtype, layout_note=data.layout_note,
                   path=data.path, total=data.total)


def merge_results(parts, planned: int, config: HilConfig, meta: dict) -> HilResult:
    """parts: [(global indices, HilResult of that shard)] -> one HilResult."""
    samples, stopped = [], None
    for idx, r in parts:
        for s in r.samples:
            s.index = int(idx[s.index])
            samples.append(s)
        if r.stopped and (stopped is None or idx[0] < stopped["_first"]):
            at = int(idx[r.stopped["at"]]) if r.stopped["at"] < len(idx) else int(idx[-1]) + 1
            stopped = dict(r.stopped, at=at, _first=int(idx[0]))
    samples.sort(key=lambda s: s.index)
    if stopped is not None:
        stopped.pop("_first")
    r0 = parts[0][1]
    return HilResult(samples=samples, planned=planned, config=config, oracle=r0.oracle,
                     latency_unit=r0.latency_unit, num_classes=r0.num_classes,
                     info=r0.info, meta=meta, stopped=stopped)


class _Bar:
    """One progress line for all shards (stderr, terminals only)."""

    def __init__(self, total, enabled):
        self.total, self.done, self.lock = total, 0, threading.Lock()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, unit="sample", desc="hil",
                            dynamic_ncols=True, leave=False, mininterval=0.2)

    def __call__(self, res, s):
        if self.bar is not None:
            with self.lock:
                self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_hil_parallel(model, data_path, *, board: str | None = None, ports=None,
                     jobs: int | None = None, config: HilConfig | None = None,
                     json_path=None, html_path=None, log=None) -> HilResult:
    """Like run_hil, over len(ports) devices at those URLs or `jobs` started here."""
    config = config or HilConfig()
    t_start = time.perf_counter()
    m = load_int8_model(model)
    q = m.in_tensor.quant
    data = load_data(data_path, m.in_tensor.shape[1:], float(q.scale[0]),
                     int(q.zero_point[0]), m.num_classes, layout=config.layout,
                     source_layout=m.source_layout, limit=config.limit)
    ref = HostReference(m.graph, m.tflite)
    ports = list(ports or [])
    n_dev = len(ports) or int(jobs or 1)
    if n_dev < 1:
        raise HilError(f"--jobs {jobs}: give 1 or more devices")
    shards = shard_indices(len(data), n_dev)
    if log:
        log(f"data: {len(data)} samples ({data.source_dtype}, {data.layout_note}); "
            f"oracle: {ref.name}; {len(shards)} shards over "
            + (f"{len(ports)} places" if ports else f"{len(shards)} devices"))
    host_out = np.stack([ref(data.xq[i]) for i in range(len(data))])
    fw = None
    if not ports:
        from toolchain.boards import resolve_board
        b = resolve_board(board)
        if b.kind == "serial":
            raise HilError(f"--jobs {n_dev} starts emulated boards; {b.name} is a real board: "
                           f"give its places (--place A --place B) instead")
        fw = build_for_model(m, b, log=log)       # one build, N devices

    devs: list = [None] * len(shards)

    def open_dev(k):
        if ports:
            devs[k] = HilDevice(m, board, port=ports[k], log=log)
        else:
            devs[k] = HilDevice(m, board, firmware=fw, log=log)
        devs[k].info()

    bar = _Bar(len(data), config.progress)
    cfg = HilConfig(**{**config.__dict__, "progress": False})
    parts: list = [None] * len(shards)

    def run(k):
        d = devs[k]
        idx = shards[k]
        parts[k] = (idx, run_samples(d.client, _sub(data, idx), ref, cfg,
                                     latency_unit=d.latency_unit, num_classes=m.num_classes,
                                     info=d.info(), host_outputs=host_out[idx],
                                     on_sample=bar))

    try:
        with ThreadPoolExecutor(len(shards)) as ex:
            for f in [ex.submit(open_dev, k) for k in range(len(shards))]:
                f.result()
            futs = [ex.submit(run, k) for k in range(len(shards))]
            try:
                for f in futs:
                    while True:
                        try:
                            f.result(timeout=0.2)
                            break
                        except _Pending:
                            continue      # wake up for Ctrl-C now and then
            except KeyboardInterrupt:
                for d in devs:           # the workers' next request fails: they stop
                    if d is not None:
                        d.close()
                raise
        d0 = devs[0]
        info = d0.info()
        plan = memory_plan(m, d0.build)
        meta = run_meta(m, d0, data, ref, info, plan)
        meta["device_url"] = ", ".join(d.url for d in devs)
        meta["jobs"] = len(shards)
        meta["shards"] = [dict(device=devs[k].url, first=int(idx[0]), samples=len(idx),
                               wall_s=round(parts[k][1].wall_s, 3))
                          for k, idx in enumerate(shards)]
        res = merge_results(parts, len(data), config, meta)
        res.memory_plan = plan
        res.layers = layer_table(m, d0.client if res.stopped is None else _no_times(), plan,
                                 d0.latency_unit)
        first = res.first_diff()
        if res.stopped is None and (first is not None or config.debug_layer):
            from toolchain.hil.debug import find_divergence
            k0 = first if first is not None else 0
            dk = devs[next(k for k, idx in enumerate(shards) if k0 in idx)]
            try:
                res.divergence = find_divergence(dk.client, m.graph, ref, data.xq[k0], k0)
            except LinkError as e:
                res.divergence = dict(sample=k0, first_layer=None,
                                      message=f"divergence finder failed: {e}")
        res.wall_s = time.perf_counter() - t_start
    finally:
        bar.close()
        for d in devs:
            if d is not None:
                d.close()
    if json_path:
        write_json_atomic(json_path, res.to_json())
    if html_path:
        from toolchain.hil.html import write_html
        write_html(res, html_path)
    return res


def _no_times():
    from toolchain.hil.api import _NoTimes
    return _NoTimes()

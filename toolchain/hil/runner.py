"""The HIL loop: stream each sample to the device, collect its outputs, compare with
the host oracle, and gather the figures for the reports.

    result = run_samples(client, data, reference, HilConfig(tolerance=0))
    result.summary()  -> dict (JSON-ready); result.failures() -> [one line per failed check]

`client` is anything with the model client's interface: info(), infer(bytes) ->
(bytes, latency), layer_times(), layer_output(k) (the firmware's ModelClient, or
toolchain.hil.fake.FakeModelClient in unit tests). A device that stops answering
ends the loop, not the run: the result keeps every sample done so far and says
where it stopped."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from toolchain.errors import LinkError
from toolchain.hil.data import HilData


class RunFigures:
    """Figures every HIL result (int8 or spiking) derives from its samples, `planned`
    and `stopped`."""

    @property
    def done(self) -> int:
        return len(self.samples)

    @property
    def complete(self) -> bool:
        return self.stopped is None and self.done == self.planned

    def _acc(self, key) -> float | None:
        lab = [s for s in self.samples if s.label is not None]
        if not lab or getattr(lab[0], key) is None:
            return None
        return sum(getattr(s, key) == s.label for s in lab) / len(lab)

    def _accuracy_failures(self) -> list[str]:
        acc = self.device_accuracy
        if self.config.min_accuracy is None:
            return []
        if acc is None:
            return ["--min-accuracy needs labels: the data set has no 'y'"]
        if acc < self.config.min_accuracy:
            return [f"device accuracy {100 * acc:.2f} % is below --min-accuracy "
                    f"{100 * self.config.min_accuracy:.2f} %"]
        return []

    @property
    def passed(self) -> bool:
        return not self.failures()


@dataclass
class HilConfig:
    limit: int | None = None
    min_accuracy: float | None = None     # fraction 0..1
    tolerance: int = 0                    # max abs difference (int8/int16 steps) still accepted
    layout: str = "auto"
    debug_layer: bool = False             # run the divergence finder even when all agree
    progress: bool = True


@dataclass
class SampleResult:
    index: int
    exact: bool
    max_abs_diff: int
    latency: int | None
    label: int | None = None
    device_pred: int | None = None
    host_pred: int | None = None
    device_out: list = field(default_factory=list)
    host_out: list = field(default_factory=list)
    # regression targets (dequantized outputs vs y): squared / abs error sums, values
    reg: dict | None = None

    def to_json(self) -> dict:
        d = dict(index=self.index, exact=self.exact, max_abs_diff=self.max_abs_diff,
                 latency=self.latency)
        if self.label is not None:
            d["label"] = self.label
        if self.reg is not None:
            n = max(1, self.reg["n"])
            d.update(device_rmse=float(np.sqrt(self.reg["dev_se"] / n)),
                     host_rmse=float(np.sqrt(self.reg["host_se"] / n)))
        if self.device_pred is not None:
            d.update(device_pred=self.device_pred, host_pred=self.host_pred)
        d.update(device_out=self.device_out, host_out=self.host_out)
        return d


@dataclass
class HilResult(RunFigures):
    samples: list[SampleResult]
    planned: int                       # samples the run meant to do
    config: HilConfig
    oracle: str
    latency_unit: str
    num_classes: int | None
    info: dict = field(default_factory=dict)        # device info
    meta: dict = field(default_factory=dict)        # model, data, board, firmware, ...
    stopped: dict | None = None                     # {at, error} when cut short
    layers: list = field(default_factory=list)      # per-layer: name, type, latency, ...
    memory_plan: dict | None = None
    divergence: dict | None = None
    wall_s: float = 0.0
    output_dtype: str = "int8"
    out_quant: tuple | None = None                  # (scale, zero point) of the output

    # ---- figures (done, complete, accuracies: RunFigures) ----------------------
    @property
    def device_accuracy(self):
        return self._acc("device_pred")

    @property
    def host_accuracy(self):
        return self._acc("host_pred")

    @property
    def agree(self) -> int:
        return sum(s.exact for s in self.samples)

    @property
    def max_abs_diff(self) -> int:
        return max((s.max_abs_diff for s in self.samples), default=0)

    @property
    def max_abs_diff_real(self) -> float | None:
        """The max abs difference in real units (output scale x steps)."""
        return None if self.out_quant is None else self.max_abs_diff * self.out_quant[0]

    def regression(self) -> dict | None:
        """RMSE / MAE of the dequantized device and host outputs against the data set's
        regression targets (None without targets)."""
        r = [s.reg for s in self.samples if s.reg is not None]
        if not r:
            return None
        n = sum(x["n"] for x in r)
        tot = {k: sum(x[k] for x in r) for k in ("dev_se", "host_se", "dev_ae", "host_ae")}
        return dict(samples=len(r), values=n,
                    device_rmse=float(np.sqrt(tot["dev_se"] / n)),
                    host_rmse=float(np.sqrt(tot["host_se"] / n)),
                    device_mae=tot["dev_ae"] / n, host_mae=tot["host_ae"] / n)

    def first_diff(self) -> int | None:
        for s in self.samples:
            if not s.exact:
                return s.index
        return None

    def latency_stats(self) -> dict | None:
        v = [s.latency for s in self.samples if s.latency is not None]
        if not v:
            return None
        return dict(unit=self.latency_unit, mean=float(np.mean(v)), min=int(min(v)),
                    max=int(max(v)), n=len(v))

    def confusion(self) -> list[list[int]] | None:
        if self.num_classes is None or self.device_accuracy is None:
            return None
        k = self.num_classes
        m = [[0] * k for _ in range(k)]
        for s in self.samples:
            if s.label is not None and s.device_pred is not None and 0 <= s.device_pred < k:
                m[s.label][s.device_pred] += 1
        return m

    def failures(self) -> list[str]:
        """One line per failed check (empty: the run passed)."""
        out = []
        if self.stopped and self.stopped.get("interrupted"):
            out.append(f"run interrupted at sample {self.stopped['at']} "
                       f"({self.done}/{self.planned} done)")
        elif self.stopped:
            out.append(f"device stopped answering at sample {self.stopped['at']} "
                       f"({self.done}/{self.planned} done): {self.stopped['error']}")
        bad = [s for s in self.samples if s.max_abs_diff > self.config.tolerance]
        if bad:
            tol = (f" (tolerance {self.config.tolerance})" if self.config.tolerance else "")
            out.append(f"{len(bad)}/{self.done} outputs differ from {self.oracle}{tol}: first "
                       f"sample {bad[0].index}, max abs difference {self.max_abs_diff}")
        return out + self._accuracy_failures()

    def summary(self) -> dict:
        d = dict(passed=self.passed, complete=self.complete, samples_planned=self.planned,
                 samples_done=self.done, oracle=self.oracle,
                 device_accuracy=self.device_accuracy, host_accuracy=self.host_accuracy,
                 agree_exact=self.agree, differ=self.done - self.agree,
                 max_abs_diff=self.max_abs_diff, tolerance=self.config.tolerance,
                 min_accuracy=self.config.min_accuracy, latency=self.latency_stats(),
                 first_diff=self.first_diff(), failures=self.failures(),
                 wall_s=round(self.wall_s, 3), output_dtype=self.output_dtype)
        if self.out_quant is not None:
            d["max_abs_diff_real"] = self.max_abs_diff_real
        reg = self.regression()
        if reg is not None:
            d["regression"] = reg
        if self.stopped:
            d["stopped"] = self.stopped
        return d

    def to_json(self) -> dict:
        return dict(schema="mcu-hil/1", summary=self.summary(), meta=self.meta,
                    device=self.info, layers=self.layers, memory_plan=self.memory_plan,
                    confusion=self.confusion(), divergence=self.divergence,
                    samples=[s.to_json() for s in self.samples])


def _argmax(a: np.ndarray) -> int:
    return int(np.argmax(a))


def _fmt_lat(v: float, unit: str) -> str:
    return f"{v:,.0f} {unit}"


def run_samples(client, data: HilData, reference, config: HilConfig, *,
                latency_unit: str = "instructions", num_classes: int | None = None,
                info=None, meta: dict | None = None, host_outputs=None,
                on_sample=None, keep_values: int = 64, out_quant=None) -> HilResult:
    """Run every sample of `data` on the device behind `client` and compare.

    reference: callable sample -> flat output (HostReference), int8 or int16 (its
    `out_dtype`; the wire carries int16 as 2 bytes per element, little endian).
    host_outputs: precomputed reference outputs (N, out) to skip recomputing.
    out_quant: (scale, zero point) of the output, for the real-unit figures
    (dequantized outputs vs data.targets, max abs difference in real units).
    on_sample(result_so_far, sample): called after each sample (partial JSON)."""
    t0 = time.perf_counter()
    info = info if info is not None else client.info()
    res = HilResult(samples=[], planned=len(data), config=config,
                    oracle=getattr(reference, "name", "reference"), latency_unit=latency_unit,
                    num_classes=num_classes,
                    info=info.to_dict() if hasattr(info, "to_dict") else dict(info or {}),
                    meta=dict(meta or {}), out_quant=out_quant)
    odt = np.dtype(getattr(reference, "out_dtype", np.int8)).newbyteorder("<")
    idt = np.dtype(data.xq.dtype).newbyteorder("<")
    res.output_dtype = odt.name
    targets = getattr(data, "targets", None)
    bar = None
    if config.progress and sys.stderr.isatty():   # no bar in logs and CI output
        from tqdm import tqdm
        bar = tqdm(total=len(data), file=sys.stderr, unit="sample", desc="hil",
                   dynamic_ncols=True, leave=False, mininterval=0.2)
    try:
        for i in range(len(data)):
            x = data.xq[i]
            want = (host_outputs[i] if host_outputs is not None else reference(x))
            want = np.asarray(want).astype(odt).reshape(-1)
            try:
                raw, lat = client.infer(x.astype(idt).tobytes())
            except LinkError as e:
                res.stopped = dict(at=i, error=str(e))
                break
            raw = bytes(raw)
            if len(raw) != want.nbytes:
                res.stopped = dict(at=i, error=f"device returned {len(raw)} output bytes, "
                                               f"the model has {want.nbytes}")
                break
            got = np.frombuffer(raw, odt)
            diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
            s = SampleResult(index=i, exact=bool(np.array_equal(got, want)),
                             max_abs_diff=int(diff.max(initial=0)),
                             latency=None if lat is None else int(lat),
                             device_out=got[:keep_values].tolist(),
                             host_out=want[:keep_values].tolist())
            if data.y is not None:
                s.label = int(data.y[i])
                s.device_pred, s.host_pred = _argmax(got), _argmax(want)
            if targets is not None and out_quant is not None and \
                    targets[i].size == got.size:
                sc, zp = out_quant
                dv = (got.astype(np.float64) - zp) * sc - targets[i]
                hv = (want.astype(np.float64) - zp) * sc - targets[i]
                s.reg = dict(n=int(got.size), dev_se=float(dv @ dv), host_se=float(hv @ hv),
                             dev_ae=float(np.abs(dv).sum()), host_ae=float(np.abs(hv).sum()))
            res.samples.append(s)
            if bar is not None:
                post = {}
                if res.device_accuracy is not None:
                    post["acc"] = f"{100 * res.device_accuracy:.1f}%"
                post["exact"] = f"{res.agree}/{res.done}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if on_sample is not None:
                on_sample(res, s)
    except KeyboardInterrupt:
        res.stopped = dict(at=res.done, error="interrupted (Ctrl-C)", interrupted=True)
    finally:
        if bar is not None:
            bar.close()
        res.wall_s = time.perf_counter() - t0
    return res


def format_summary(res: HilResult) -> str:
    """The terminal table."""
    m, s = res.meta, res.summary()
    rows = []
    if m.get("model"):
        rows.append(("model", f"{m['model']}" + (f"  (hash {m['model_hash'][:16]})"
                                                  if m.get("model_hash") else "")))
    if m.get("board"):
        rows.append(("board", f"{m['board']}" + (f"  {m['device_url']}"
                                                  if m.get("device_url") else "")))
    if m.get("places"):
        rows.append(("places", ", ".join(m["places"])))
    if m.get("jobs"):
        rows.append(("devices", f"{m['jobs']} in parallel, shards of "
                                + "/".join(str(s["samples"]) for s in m.get("shards", []))
                                + f" samples; wall {res.wall_s:.2f} s"))
    if m.get("data"):
        rows.append(("data", f"{m['data']}: {res.planned} samples"
                             + (f" of {m['data_total']}" if m.get("data_total", res.planned)
                                != res.planned else "")
                             + (f", {m['data_dtype']}" if m.get("data_dtype") else "")
                             + (f", {m['layout']}" if m.get("layout") else "")))
    done = f"{res.done}/{res.planned}" + ("" if res.complete else "  (cut short)")
    rows.append(("samples run", done))
    if s["device_accuracy"] is not None:
        rows.append(("device accuracy", f"{100 * s['device_accuracy']:.2f} %"))
        rows.append(("host accuracy", f"{100 * s['host_accuracy']:.2f} %  ({res.oracle})"))
    rows.append(("byte-exact", f"{res.agree}/{res.done} outputs identical to {res.oracle}"))
    rows.append(("max abs diff", f"{res.max_abs_diff}"
                 + (f" {res.output_dtype} steps = {res.max_abs_diff_real:.4g} dequantized"
                    if res.out_quant is not None and res.max_abs_diff else "")
                 + (f"  (tolerance {res.config.tolerance})" if res.config.tolerance else "")))
    reg = res.regression()
    if reg:
        rows.append(("regression", f"RMSE device {reg['device_rmse']:.5g} / host "
                     f"{reg['host_rmse']:.5g}, MAE device {reg['device_mae']:.5g} / host "
                     f"{reg['host_mae']:.5g} (dequantized {res.output_dtype} outputs vs y, "
                     f"{reg['samples']} samples)"))
    lat = res.latency_stats()
    if lat:
        extra = ""
        hz = res.info.get("cpu_hz") or m.get("cpu_hz")
        if lat["unit"] == "instructions" and hz:
            extra = f"  (~{lat['mean'] / hz * 1e3:.2f} ms at {hz / 1e6:g} MHz, 1 IPC)"
        rows.append(("latency", f"mean {_fmt_lat(lat['mean'], lat['unit'])} / inference, "
                                f"min {lat['min']:,}, max {lat['max']:,}" + extra))
    fl, ram = m.get("flash_used") or res.info.get("flash_used"), \
        m.get("ram_used") or res.info.get("ram_used")
    fb, rb = m.get("flash_budget") or res.info.get("flash_budget"), \
        m.get("ram_budget") or res.info.get("ram_budget")
    if fl:
        rows.append(("flash", f"{fl:,} B" + (f" of {fb:,} B ({100 * fl / fb:.1f} %)" if fb else "")))
    if ram:
        rows.append(("RAM", f"{ram:,} B" + (f" of {rb:,} B ({100 * ram / rb:.1f} %)" if rb else "")
                     + (f", arena {m['arena_size']:,} B" if m.get("arena_size") else "")))
    if res.divergence:
        rows.append(("divergence", res.divergence.get("message", "")))
    rows.append(("result", "PASS" if res.passed else "FAIL"))
    w = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k + ':':<{w}}{v}" for k, v in rows)

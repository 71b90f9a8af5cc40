"""`mcu hil MODEL.nir` / `mcu infer MODEL.nir`: a spiking network on a device against
the host references.

    res = run_snn_hil("digits.nir", "test.npz", board="mps2-an386",
                      options=SnnOptions(timesteps=10, reset="subtract"),
                      json_path="hil.json", html_path="hil.html")
    print(format_snn_summary(res))

The model is quantized on --calib (default: the data itself), built with
toolchain.build_model.build_snn_model (the build under build/hil/ is reused while model,
options and board stay the same), and each sample is streamed over the link. The device
answers spike counts per output neuron (or an LI readout's membrane), the spikes of every
spiking layer and the input events of every synapse layer (toolchain/snn/codegen.py);
they are compared with the numpy fixed-point interpreter (the oracle: identical counts
expected on every sample) and the float simulation (argmax agreement). Figures:
accuracies, instructions per sample and per step, per-layer instructions (of the last
sample), spikes, spike rates and synaptic operations (input events x fan-out: the
additions of event-driven synapses; a synapse on constant analog input runs dense once
per sample, its multiply-accumulates are counted separately). HilConfig, the JSON writer,
the errors and the HTML primitives are the int8 runner's (runner.py, api.py, html.py)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.errors import LinkError
from toolchain.hil.errors import DataError, ModelMismatch
from toolchain.hil.runner import HilConfig, RunFigures


@dataclass
class SnnSample:
    index: int
    exact: bool                      # device counts == fixed-point reference
    latency: int | None
    label: int | None = None
    device_pred: int | None = None
    fixed_pred: int | None = None
    float_pred: int | None = None
    device_out: list = field(default_factory=list)
    fixed_out: list = field(default_factory=list)
    layer_spikes: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    layers_exact: bool = True        # per-layer spikes and events equal the reference too

    def to_json(self) -> dict:
        return dict(index=self.index, exact=self.exact, layers_exact=self.layers_exact,
                    latency=self.latency, label=self.label, device_pred=self.device_pred,
                    fixed_pred=self.fixed_pred, float_pred=self.float_pred,
                    device_out=self.device_out, fixed_out=self.fixed_out,
                    layer_spikes=self.layer_spikes, events=self.events)


@dataclass
class SnnHilResult(RunFigures):
    samples: list[SnnSample]
    planned: int
    config: HilConfig
    timesteps: int
    latency_unit: str = "instructions"
    num_classes: int | None = None
    meta: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    raster: dict | None = None       # sample 0: {layer: [[neuron indices that spiked] per step]}
    stopped: dict | None = None
    wall_s: float = 0.0
    oracle: str = "numpy fixed-point interpreter (toolchain.snn.fixed_point)"

    @property
    def device_accuracy(self):
        return self._acc("device_pred")

    @property
    def fixed_accuracy(self):
        return self._acc("fixed_pred")

    @property
    def float_accuracy(self):
        return self._acc("float_pred")

    @property
    def identical(self) -> int:
        return sum(s.exact and s.layers_exact for s in self.samples)

    @property
    def float_agreement(self) -> float | None:
        if not self.samples:
            return None
        return sum(s.device_pred == s.float_pred for s in self.samples) / self.done

    def latency_stats(self) -> dict | None:
        v = [s.latency for s in self.samples if s.latency is not None]
        if not v:
            return None
        m = float(np.mean(v))
        return dict(unit=self.latency_unit, mean=m, min=int(min(v)), max=int(max(v)),
                    n=len(v), per_step=m / self.timesteps)

    def confusion(self):
        if self.num_classes is None or self.device_accuracy is None:
            return None
        k = self.num_classes
        m = [[0] * k for _ in range(k)]
        for s in self.samples:
            if s.label is not None and 0 <= s.device_pred < k:
                m[s.label][s.device_pred] += 1
        return m

    def failures(self) -> list[str]:
        out = []
        if self.stopped and self.stopped.get("interrupted"):
            out.append(f"run interrupted at sample {self.stopped['at']} "
                       f"({self.done}/{self.planned} done)")
        elif self.stopped:
            out.append(f"device stopped answering at sample {self.stopped['at']} "
                       f"({self.done}/{self.planned} done): {self.stopped['error']}")
        bad = [s for s in self.samples if not (s.exact and s.layers_exact)]
        if bad:
            out.append(f"{len(bad)}/{self.done} samples differ from the fixed-point reference "
                       f"(first: sample {bad[0].index}"
                       + ("" if bad[0].exact else ", output counts") + ")")
        return out + self._accuracy_failures()

    def summary(self) -> dict:
        d = dict(passed=self.passed, complete=self.complete, samples_planned=self.planned,
                 samples_done=self.done, oracle=self.oracle, timesteps=self.timesteps,
                 device_accuracy=self.device_accuracy, fixed_accuracy=self.fixed_accuracy,
                 float_accuracy=self.float_accuracy, identical_to_fixed=self.identical,
                 differ=self.done - self.identical, float_agreement=self.float_agreement,
                 latency=self.latency_stats(), min_accuracy=self.config.min_accuracy,
                 failures=self.failures(), wall_s=round(self.wall_s, 3))
        if self.stopped:
            d["stopped"] = self.stopped
        return d

    def to_json(self) -> dict:
        return dict(schema="mcu-hil-snn/1", summary=self.summary(), meta=self.meta,
                    device=self.info, layers=self.layers, confusion=self.confusion(),
                    raster=self.raster, samples=[s.to_json() for s in self.samples])


def _fan_out(q, op) -> int:
    w = q.t(op.inputs[1]).shape
    if op.type == "FULLY_CONNECTED":
        return int(w[0])
    return int(w[0] // int(op.attr("groups"))) * int(w[1]) * int(w[2])


def _build_dir(board, m) -> Path:
    from toolchain.hil.session import options_key
    from toolchain.snn.codegen import snn_model_hash
    h = snn_model_hash(m.qgraph, m.options.timesteps)
    key = options_key(board.name, h, dict(m.options.to_json(), kind="snn"))
    return Path("build") / "hil" / f"{board.name}-{h[:12]}-{key}"


def run_snn_hil(model, data_path, *, board=None, options=None, calib=None, port=None,
                config: HilConfig | None = None, json_path=None, html_path=None,
                build_dir=None, log=None) -> SnnHilResult:
    """Quantize, build/boot (or connect to --port), run the data set, compare, report.
    Raises for problems before the loop (model, data, build, boot, wrong model); a device
    that stops mid-run gives a result with `stopped` set."""
    from toolchain.boards import resolve_board
    from toolchain.build_model import build_snn_model
    from toolchain.devices import start_device
    from toolchain.hil.api import write_json_atomic
    from toolchain.link.model import ModelClient
    from toolchain.snn import fixed_point as fp
    from toolchain.snn.float_sim import simulate, to_ir_layout
    from toolchain.snn.pipeline import load_data, prepare
    config = config or HilConfig()
    t0 = time.perf_counter()
    b = resolve_board(board)
    m = prepare(model, calib if calib is not None else data_path, options, error=DataError)
    opts, q, T = m.options, m.qgraph, m.options.timesteps
    x, y = load_data(data_path, m.graph, opts, DataError, "data file", config.limit)
    if log:
        log(f"data: {len(x)} samples from {data_path} ({opts.encoding} input, T={T}); "
            f"calibration: {m.calib_path} ({len(m.calib_x)} samples); oracle: numpy "
            "fixed-point interpreter")
    want = fp.run_fixed(q, x, T)
    flt = simulate(m.graph, x, T, opts.encoding, opts.seed)
    rec = fp.run_fixed(q, x[:1], T, record=True).record
    xir = to_ir_layout(q, x, steps=opts.encoding == "events")
    out_dir = Path(build_dir) if build_dir else _build_dir(b, m)
    if port:       # a flashed device: the generator only packs inputs, unpacks outputs
        import tempfile
        from toolchain.snn.codegen import generate_snn
        with tempfile.TemporaryDirectory(prefix=".mcu-snn-") as tmp:
            gen = generate_snn(q, Path(tmp) / "model", T, name=m.name)
        rep, dev = None, start_device(b, None, port=port)
    else:
        if log and not (out_dir / "build.json").exists():
            log(f"building firmware for {b.name} in {out_dir}")
        rep = build_snn_model(model, b, out_dir, prepared=m)
        gen = rep["_gen"]
        dev = start_device(b, rep["_build"])
    meta = dict(model=os.fspath(model), model_hash=gen.model_hash, model_name=m.name,
                kind="snn", options=opts.to_json(), board=b.name, board_kind=b.kind,
                data=os.fspath(data_path), calibration=m.calib_path,
                calibration_samples=int(len(m.calib_x)), warnings=list(m.warnings),
                ops=len(q.ops), cpu_hz=b.cpu_hz or None,
                started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if rep:
        meta.update(flash_used=rep["flash"]["total"], ram_used=rep["ram"]["total"],
                    flash_budget=rep["flash"]["budget"], ram_budget=rep["ram"]["budget"],
                    state_bytes=rep["ram"]["state"], weight_bytes=rep["flash"]["weights"],
                    firmware=rep["elf"], firmware_reused=rep["cached"])
    res = SnnHilResult([], len(x), config, T, meta=meta,
                       num_classes=m.num_classes if y is not None else None)
    res.raster = {k: [np.flatnonzero(v[t, 0].ravel()).tolist() for t in range(T)]
                  for k, v in rec.items()}
    res.meta["raster_neurons"] = {op.name: int(q.t(op.outputs[0]).size) for op in q.ops
                                  if op.name in rec}
    res.meta["raster_labels"] = {op.name: f"{k} {op.type} {op.name}"
                                 for k, op in enumerate(q.ops) if op.name in rec}
    last = [0.0]
    times = None
    with dev:
        client = ModelClient(dev.link(timeout=5.0, retries=3))
        info = client.info()
        res.info = info.to_dict() if hasattr(info, "to_dict") else {}
        res.meta["device_url"] = dev.url
        if (info.model_hash or "").lower()[:16] != gen.model_hash[:16]:
            raise ModelMismatch(f"device at {dev.url} runs model '{info.model_name or '?'}' "
                                f"{(info.model_hash or 'none')[:16]}, not {model} "
                                f"({gen.model_hash[:16]} with these options); build and flash "
                                f"it: mcu build {model} --board {b.name} --timesteps {T} ...")
        unit = getattr(info, "count_unit", "") or "instructions"
        res.latency_unit = unit
        try:
            for i in range(len(x)):
                try:
                    raw, count = client.infer(gen.pack_input(xir[i], index=i))
                except LinkError as e:
                    res.stopped = dict(at=i, error=str(e))
                    break
                counts, spikes, events = gen.unpack_output(bytes(raw))
                ref_spk = {k: int(v[i]) for k, v in want.layer_spikes.items()}
                ref_ev = {k: int(v[i]) for k, v in want.events.items()}
                s = SnnSample(index=i, exact=bool(np.array_equal(counts, want.counts[i])),
                              latency=None if count is None else int(count),
                              device_pred=int(np.argmax(counts)),
                              fixed_pred=int(np.argmax(want.counts[i])),
                              float_pred=int(np.argmax(flt.counts[i])),
                              device_out=counts.tolist()[:64],
                              fixed_out=want.counts[i].tolist()[:64],
                              layer_spikes=spikes, events=events,
                              layers_exact=spikes == ref_spk and events == ref_ev)
                if y is not None:
                    s.label = int(y[i])
                res.samples.append(s)
                if json_path and time.monotonic() - last[0] > 1.0:
                    last[0] = time.monotonic()
                    write_json_atomic(json_path, res.to_json())
            if res.stopped is None:
                times = client.layer_times()
        except KeyboardInterrupt:
            res.stopped = dict(at=res.done, error="interrupted (Ctrl-C)", interrupted=True)
    res.layers = _layer_rows(q, res, times, gen)
    res.wall_s = time.perf_counter() - t0
    if json_path:
        write_json_atomic(json_path, res.to_json())
    if html_path:
        from toolchain.hil.html import write_snn_html
        write_snn_html(res, html_path)
    return res


def _layer_rows(q, res: SnnHilResult, times, gen) -> list[dict]:
    from toolchain.snn.float_sim import is_spiking, role
    n = max(res.done, 1)
    T = res.timesteps
    rows = []
    for k, op in enumerate(q.ops):
        o = q.t(op.outputs[0])
        r = dict(index=k, name=op.name, type=op.type, shape=list(o.shape[1:]))
        if times is not None and k < len(times):
            r["latency"] = int(times[k])
            r["unit"] = res.latency_unit
        if is_spiking(op.type):
            sp = sum(s.layer_spikes.get(op.name, 0) for s in res.samples) / n
            r.update(neurons=int(o.size), spikes_per_sample=sp,
                     spike_rate=sp / (o.size * T))
        if role(op.type) == "synapse":
            if op.name in (gen.synapse_layers or []) and any(
                    s.events.get(op.name) for s in res.samples):
                ev = sum(s.events.get(op.name, 0) for s in res.samples) / n
                r.update(events_per_sample=ev, synops_per_sample=ev * _fan_out(q, op))
            elif op.inputs[0] == q.inputs[0] and gen.encoding == "constant":
                w = q.t(op.inputs[1]).shape
                r.update(dense_macs_per_sample=int(np.prod(w)) * (
                    int(np.prod(o.shape[1:3])) if op.type != "FULLY_CONNECTED" else 1))
            else:
                r.update(events_per_sample=0.0, synops_per_sample=0.0)
        rows.append(r)
    return rows


def format_snn_summary(res: SnnHilResult) -> str:
    m, s = res.meta, res.summary()
    o = m.get("options", {})
    rows = [("model", f"{m.get('model')}  (hash {m.get('model_hash', '')[:16]}), T="
                      f"{res.timesteps}, {o.get('encoding')} input, int{o.get('state_bits')} "
                      "state"),
            ("board", f"{m.get('board')}  {m.get('device_url', '')}"),
            ("data", f"{m.get('data')}: {res.planned} samples; calibration "
                     f"{m.get('calibration')} ({m.get('calibration_samples')} samples)")]
    done = f"{res.done}/{res.planned}" + ("" if res.complete else "  (cut short)")
    rows.append(("samples run", done))
    if s["device_accuracy"] is not None:
        rows.append(("device accuracy", f"{100 * s['device_accuracy']:.2f} %"))
        rows.append(("host accuracy", f"fixed point {100 * s['fixed_accuracy']:.2f} %, "
                                      f"float {100 * s['float_accuracy']:.2f} %"))
    rows.append(("spike-exact", f"{res.identical}/{res.done} samples: output counts, "
                                "per-layer spikes and events identical to the fixed-point "
                                "reference"))
    if s["float_agreement"] is not None:
        rows.append(("vs float", f"argmax agreement {100 * s['float_agreement']:.2f} % "
                                 "with the float simulation"))
    lat = res.latency_stats()
    if lat:
        extra = ""
        hz = m.get("cpu_hz")
        if lat["unit"] == "instructions" and hz:
            extra = f"  (~{lat['mean'] / hz * 1e3:.2f} ms at {hz / 1e6:g} MHz, 1 IPC)"
        rows.append(("latency", f"mean {lat['mean']:,.0f} {lat['unit']} / sample "
                                f"({lat['per_step']:,.0f} / step), min {lat['min']:,}, max "
                                f"{lat['max']:,}" + extra))
    for r in res.layers:
        parts = []
        if "latency" in r:
            parts.append(f"{r['latency']:,} {r['unit']}")
        if "spikes_per_sample" in r:
            parts.append(f"{r['spikes_per_sample']:,.1f} spikes/sample "
                         f"({100 * r['spike_rate']:.1f} % of {r['neurons']} neurons x T)")
        if "synops_per_sample" in r:
            parts.append(f"{r['events_per_sample']:,.1f} input events, "
                         f"{r['synops_per_sample']:,.0f} synaptic ops/sample")
        if "dense_macs_per_sample" in r:
            parts.append(f"dense on analog input: {r['dense_macs_per_sample']:,} MACs/sample")
        rows.append((f"layer {r['index']}", f"{r['type']} {r['name']}: " + ", ".join(parts)))
    if m.get("flash_used"):
        rows.append(("flash", f"{m['flash_used']:,} B of {m['flash_budget']:,} B (weights "
                              f"{m['weight_bytes']:,} B)"))
        rows.append(("RAM", f"{m['ram_used']:,} B of {m['ram_budget']:,} B (neuron state "
                            f"{m['state_bytes']:,} B)"))
    for w in m.get("warnings", []):
        rows.append(("warning", w))
    rows.append(("result", "PASS" if res.passed else "FAIL"))
    w = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k + ':':<{w}}{v}" for k, v in rows)

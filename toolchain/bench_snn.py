"""`make bench-snn` / `python -m toolchain.bench_snn`: spiking networks on the emulated
Cortex-M4 (mps2-an386, QEMU -icount shift=0: instructions = SysTick ticks x 40).

Two snnTorch models trained on sklearn digits (seeded, ~1 min on one thread): a Leaky
MLP 64-32-10 and a conv + pool net (conv3x3 1->8, Leaky, avg pool 2, fc 128->10, Leaky),
constant-current input, 16-bit state. For each: accuracy of the float SNN, the
fixed-point reference (run_fixed) and the device; device spike counts identical to the
reference (samples); instructions per sample and per step with portable and DSP
kernels; flash and RAM of the firmware (build report, from the linker map). Then the
MLP on rate-coded input over a sweep of input intensity (instructions vs input spike
rate: the event-driven cost falls with sparsity; the slope gives instructions per
synaptic event) and, side by side, the int8 digits CNN of toolchain/examples/digits.py
through the normal int8 path on the same board. Prints markdown tables, writes
bench-results/snn_bench.json (and snn_rate_sweep.png if matplotlib is installed)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BOARD = "mps2-an386"
KERNEL_DEFINES = {"portable": {"MCU_NO_DSP": 1}, "dsp": {}}


# --------------------------------------------------------------------------- training
def _digits(seed: int = 0):
    from toolchain.examples.digits import digits_data
    return digits_data(seed)        # x [N, 1, 8, 8] in [0, 1]; the int8 CNN's split


def train_snn(kind: str, timesteps: int, epochs: int, seed: int = 0, n_train: int | None = None):
    """A snnTorch Leaky net trained on digits with constant-current input (BPTT, fast
    sigmoid surrogate, Adam, one thread). kind: "mlp" (64-32-10) or "conv" (conv3x3
    1->8, avg pool 2, fc 128->10). Returns (module, (x_tr, y_tr, x_te, y_te)) with x in
    the module's input layout ([N, 64] or [N, 1, 8, 8])."""
    import torch
    import snntorch
    import snntorch.utils
    from snntorch import surrogate
    x_tr, y_tr, x_te, y_te = _digits(seed)
    if kind == "mlp":
        x_tr, x_te = x_tr.reshape(len(x_tr), 64), x_te.reshape(len(x_te), 64)
    if n_train:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        sg = surrogate.fast_sigmoid(slope=25)

        def lk(shape, out=False):
            return snntorch.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape),
                                  init_hidden=True, reset_mechanism="subtract", output=out,
                                  spike_grad=sg)
        if kind == "mlp":
            net = torch.nn.Sequential(torch.nn.Linear(64, 32), lk((32,)),
                                      torch.nn.Linear(32, 10), lk((10,), True))
        else:
            net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), lk((8, 8, 8)),
                                      torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                                      torch.nn.Linear(8 * 4 * 4, 10), lk((10,), True))
        opt = torch.optim.Adam(net.parameters(), lr=2e-2)
        X, Y = torch.as_tensor(x_tr), torch.as_tensor(y_tr)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), 128):
                idx = perm[i:i + 128]
                snntorch.utils.reset(net)
                cnt = 0
                for _t in range(timesteps):
                    cnt = cnt + net(X[idx])[0]
                loss = torch.nn.functional.cross_entropy(cnt, Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():               # hidden state of the last batch: not leaves
            snntorch.utils.reset(net)
    finally:
        torch.set_num_threads(threads)
    return net.eval(), (x_tr, y_tr, x_te, y_te)


# --------------------------------------------------------------------------- device
def _model_part(by_file: dict, key: str) -> int:
    """Bytes of the generated model sources (ext/*: model.c, model_weights.c)."""
    return sum(v.get(key, 0) for k, v in by_file.items() if k.startswith("ext/"))


def _sizes(fw) -> dict:
    """Firmware flash and RAM (the build report, from the linker map): totals (app,
    board, runtime, 8 KiB stack included) and the generated model's part."""
    return dict(flash=fw.flash_used, ram=fw.ram_used,
                model_flash=_model_part(fw.by_file, "flash"),
                model_ram=_model_part(fw.by_file, "ram"),
                stack=fw.by_file.get("(stack)", {}).get("ram", 0))


def run_snn_device(q, gen, x, kernels: str, build_dir: Path, board=BOARD, layers=True):
    """Build the generated model with `kernels`, run every sample of x (NIR layout) on the
    board: device counts, per-sample instructions and layer counts, and whether each
    sample's counts, layer spikes and input events equal run_fixed's."""
    from toolchain.build import build_firmware
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    from toolchain.snn.fixed_point import run_fixed
    from toolchain.snn.float_sim import to_ir_layout
    fw = build_firmware(board, build_dir, extra_sources=[str(f) for f in gen.files],
                        include_dirs=[str(gen.out_dir)], with_runtime=True, werror=True,
                        defines={"MCU_SCRATCH_SIZE": 64, **KERNEL_DEFINES[kernels]})
    want = run_fixed(q, x, gen.timesteps)
    xir = to_ir_layout(q, x, steps=gen.encoding == "events")
    counts, instr, lay, events, exact = [], [], [], [], 0
    with start_device(board, fw) as dev:
        c = ModelClient(dev.link(timeout=5.0, retries=3))
        for i in range(len(x)):
            out, n = c.infer(gen.pack_input(xir[i], index=i))
            cnt, sp, ev = gen.unpack_output(out)
            counts.append(cnt)
            instr.append(int(n))
            events.append(ev)
            if layers:
                lay.append(c.layer_times())
            exact += bool(np.array_equal(cnt, want.counts[i])
                          and sp == {k: int(v[i]) for k, v in want.layer_spikes.items()}
                          and ev == {k: int(v[i]) for k, v in want.events.items()})
    return dict(counts=np.array(counts), instructions=np.array(instr), layers=np.array(lay),
                events=events, exact=exact, n=len(x), sizes=_sizes(fw))


def _acc(counts, y) -> float:
    return float((np.asarray(counts).argmax(1) == np.asarray(y)).mean())


def bench_model(kind, net, data, T, n_dev, out: Path, echo=print, kernels=("portable", "dsp")):
    from converters.nir_frontend import from_snntorch
    from toolchain.snn.codegen import generate_snn
    from toolchain.snn.fixed_point import quantize, run_fixed
    from toolchain.snn.float_sim import simulate
    x_tr, y_tr, x_te, y_te = data
    shape = (64,) if kind == "mlp" else (1, 8, 8)
    g = from_snntorch(net, input_shape=shape, name=f"digits_snn_{kind}")
    q = quantize(g, x_tr[:300], T, state_bits=16)
    acc_f = _acc(simulate(g, x_te, T).counts, y_te)
    ref = run_fixed(q, x_te, T)
    acc_q = _acc(ref.counts, y_te)
    gen = generate_snn(q, out / kind / "model", T, name=f"digits_snn_{kind}")
    r = dict(model=f"SNN {kind}", timesteps=T, n_test=len(x_te), n_device=n_dev,
             float_acc=acc_f, fixed_acc=acc_q,
             neurons={op.name: int(q.t(op.outputs[0]).size) for op in q.ops
                      if op.type in ("LIF", "IF", "CUBA_LIF", "LI", "CUBA_LI")},
             weight_bytes=gen.weight_bytes, state_bytes=gen.ram_bytes)
    for kv in kernels if n_dev else ():
        t0 = time.perf_counter()
        d = run_snn_device(q, gen, x_te[:n_dev], kv, out / kind / f"fw-{kv}")
        lay = d["layers"].mean(0) if len(d["layers"]) else []
        per_neuron = {}
        for k, op in enumerate(q.ops):
            if op.name in r["neurons"] and len(lay):
                per_neuron[op.name] = float(lay[k] / (r["neurons"][op.name] * T))
        r[kv] = dict(device_acc=_acc(d["counts"], y_te[:n_dev]), exact=d["exact"],
                     instr_per_sample=float(d["instructions"].mean()),
                     instr_per_step=float(d["instructions"].mean() / T),
                     layer_instr=[float(v) for v in lay],
                     instr_per_neuron_step=per_neuron, **d["sizes"])
        echo(f"  {kind} {kv}: device {r[kv]['device_acc']:.3f}, exact {d['exact']}/{n_dev}, "
             f"{r[kv]['instr_per_sample']:,.0f} instructions/sample "
             f"({time.perf_counter() - t0:.0f} s)")
    return r, g, q


def rate_sweep(g, x_calib, x, y, T, intensities, out: Path, echo=print,
               kernels=("portable", "dsp")):
    """The MLP on rate-coded input, x scaled by each intensity: input spike rate, events,
    instructions per sample (device), fixed-point accuracy; the first synapse layer's
    instructions against its input events give instructions per synaptic event."""
    from toolchain.snn.codegen import generate_snn
    from toolchain.snn.fixed_point import quantize, run_fixed
    q = quantize(g, x_calib, T, encoding="rate", state_bits=16, seed=1)
    gen = generate_snn(q, out / "rate" / "model", T, name="digits_snn_rate")
    fc0 = q.ops[0]
    n_in, n_out = q.t(fc0.inputs[0]).size, q.t(fc0.outputs[0]).size
    xs = np.concatenate([np.clip(x * s, 0, 1) for s in intensities]).astype(np.float32)
    ys = np.concatenate([y] * len(intensities))
    ref = run_fixed(q, xs, T)
    rows = [dict(intensity=float(s)) for s in intensities]
    n = len(x)
    for j, row in enumerate(rows):
        sl = slice(j * n, (j + 1) * n)
        row["input_spike_rate"] = float(ref.events[fc0.name][sl].mean() / (n_in * T))
        row["input_events_per_step"] = float(ref.events[fc0.name][sl].mean() / T)
        row["fixed_acc"] = _acc(ref.counts[sl], ys[sl])
    slope = {}
    exact = {}
    for kv in kernels:
        d = run_snn_device(q, gen, xs, kv, out / "rate" / f"fw-{kv}")
        exact[kv] = f"{d['exact']}/{d['n']}"
        ev = np.array([e[fc0.name] for e in d["events"]], np.float64)
        lay0 = d["layers"][:, 0].astype(np.float64)
        slope[kv] = float(np.polyfit(ev, lay0, 1)[0] / n_out)
        for j, row in enumerate(rows):
            sl = slice(j * n, (j + 1) * n)
            row[f"instr_per_sample_{kv}"] = float(d["instructions"][sl].mean())
            row[f"fc0_instr_per_step_{kv}"] = float(lay0[sl].mean() / T)
        sizes = d["sizes"]
        echo(f"  rate sweep {kv}: {slope[kv]:.2f} instructions per synaptic event, "
             f"exact {exact[kv]}")
    return dict(timesteps=T, samples_per_point=n, fan_out=n_out, rows=rows,
                instr_per_synaptic_event=slope, exact=exact, **(sizes if kernels else {}))


def int8_cnn(out: Path, n_dev: int, echo=print, kernels=("portable", "dsp")):
    """The digits CNN (toolchain/examples/digits.py) through mcu convert + mcu build on the
    same board: accuracy (float, int8 on the device), instructions, flash, RAM."""
    import torch
    from converters.torch_frontend import torch_to_onnx
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.examples.digits import accuracy, train_digits_cnn
    from toolchain.link.model import ModelClient
    model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn(seed=0)
    d = out / "int8"
    d.mkdir(parents=True, exist_ok=True)
    onnx_path = d / "digits.onnx"
    onnx_path.write_bytes(torch_to_onnx(model, torch.from_numpy(x_tr[:1])).SerializeToString())
    np.savez(d / "calib.npz", x=x_tr[:300])
    r = dict(model="int8 CNN (toolchain/examples/digits.py)", float_acc=accuracy(model, x_te, y_te),
             n_test=len(x_te), n_device=n_dev,
             params=int(sum(p.numel() for p in model.parameters())))
    for kv in kernels:
        rep = build_model(onnx_path, BOARD, d / f"fw-{kv}", kernels=kv, calib=d / "calib.npz",
                          measure_tflm=False)
        from converters import load_model
        g = load_model(Path(d / f"fw-{kv}" / "converted" / "model.tflite"))
        ti, to = g.t(g.inputs[0]), g.t(g.outputs[0])
        si, zi = float(ti.quant.scale[0]), int(ti.quant.zero_point[0])
        pred, instr = [], []
        with start_device(BOARD, load_build(rep["build_dir"])) as dev:
            c = ModelClient(dev.link(timeout=5.0, retries=3))
            for i in range(n_dev):
                xq = np.clip(np.round(x_te[i].transpose(1, 2, 0) / si) + zi, -128, 127)
                yb, n = c.infer(xq.astype(np.int8).tobytes())
                pred.append(int(np.frombuffer(yb, np.int8)[:to.size].argmax()))
                instr.append(int(n))
        r[kv] = dict(device_acc=float((np.array(pred) == y_te[:n_dev]).mean()),
                     instr_per_sample=float(np.mean(instr)), flash=rep["flash"]["total"],
                     ram=rep["ram"]["total"], arena=rep["ram"]["arena"],
                     stack=rep["ram"]["stack"],
                     model_flash=_model_part(rep["build"]["by_file"], "flash"),
                     model_ram=_model_part(rep["build"]["by_file"], "ram"))
        echo(f"  int8 CNN {kv}: device {r[kv]['device_acc']:.3f}, "
             f"{r[kv]['instr_per_sample']:,.0f} instructions/sample")
    return r


# --------------------------------------------------------------------------- report
def _pct(v):
    return f"{100 * v:.1f} %"


def _n(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def tables(res: dict) -> str:
    """The markdown tables of a run (a kernel variant not run shows as —)."""
    def get(r, kv, key):
        return (r.get(kv) or {}).get(key)
    best = lambda r: r.get("dsp") or r.get("portable")     # noqa: E731
    L = ["| model | float | fixed point | device | spike-exact | instr/sample portable | "
         "instr/sample DSP | instr/step DSP | flash | RAM (model part) |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["snn"]:
        d = best(r)
        if d is None:                       # no device run (smoke test)
            L.append(f"| {r['model']} (T={r['timesteps']}) | {_pct(r['float_acc'])} | "
                     f"{_pct(r['fixed_acc'])} | — | — | — | — | — | — | — |")
            continue
        ex = min(v["exact"] for v in (r.get("portable"), r.get("dsp")) if v)
        L.append(f"| {r['model']} (T={r['timesteps']}) | {_pct(r['float_acc'])} | "
                 f"{_pct(r['fixed_acc'])} | {_pct(d['device_acc'])} | {ex}/{r['n_device']} | "
                 f"{_n(get(r, 'portable', 'instr_per_sample'))} | "
                 f"{_n(get(r, 'dsp', 'instr_per_sample'))} | "
                 f"{_n(get(r, 'dsp', 'instr_per_step'))} | {d['flash'] / 1024:.1f} kB | "
                 f"{d['ram'] / 1024:.1f} kB ({d['model_ram']:,} B) |")
    c = res.get("int8_cnn")
    if c:
        d = best(c)
        L.append(f"| int8 CNN (digits.py, {c['params']:,} params) | {_pct(c['float_acc'])} | "
                 f"— | {_pct(d['device_acc'])} | — | {_n(get(c, 'portable', 'instr_per_sample'))} | "
                 f"{_n(get(c, 'dsp', 'instr_per_sample'))} | — | {d['flash'] / 1024:.1f} kB | "
                 f"{d['ram'] / 1024:.1f} kB ({d['model_ram']:,} B) |")
    L += ["", "| kernel (M4) | portable | DSP |", "|---|---|---|"]
    sw = res.get("rate_sweep")
    if sw:
        s = sw["instr_per_synaptic_event"]
        L.append(f"| event-driven FC, instructions per synaptic event | "
                 f"{_n(s.get('portable'), '{:.2f}')} | {_n(s.get('dsp'), '{:.2f}')} |")
    for r in res["snn"]:
        for name in r["neurons"]:
            v = [(get(r, kv, "instr_per_neuron_step") or {}).get(name) for kv in ("portable", "dsp")]
            L.append(f"| {r['model']} layer {name} (LIF, 16-bit, {r['neurons'][name]} neurons), "
                     f"instructions per neuron-step | {_n(v[0], '{:.1f}')} | {_n(v[1], '{:.1f}')} |")
    if sw:
        L += ["", f"Rate-coded MLP (T={sw['timesteps']}, {sw['samples_per_point']} samples per "
                  f"point; device spike-exact: " + ", ".join(f"{k} {v}" for k, v in sw["exact"].items())
              + "):", "",
              "| intensity | input spike rate | input events/step | fixed-point acc | "
              "instr/sample portable | instr/sample DSP | first FC instr/step DSP |",
              "|---|---|---|---|---|---|---|"]
        for row in sw["rows"]:
            L.append(f"| {row['intensity']:.2f} | {_pct(row['input_spike_rate'])} | "
                     f"{row['input_events_per_step']:.1f} | {_pct(row['fixed_acc'])} | "
                     f"{_n(row.get('instr_per_sample_portable'))} | "
                     f"{_n(row.get('instr_per_sample_dsp'))} | "
                     f"{_n(row.get('fc0_instr_per_step_dsp'))} |")
    return "\n".join(L)


def _plot(sw: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rate = [100 * r["input_spike_rate"] for r in sw["rows"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kv in sw["instr_per_synaptic_event"]:
        ax.plot(rate, [r[f"instr_per_sample_{kv}"] for r in sw["rows"]], "o-", label=kv)
    ax.set_xlabel("input spike rate (%)")
    ax.set_ylabel("instructions per sample (M4)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(T: int = 10, epochs: int = 15, n_dev: int | None = None, n_sweep: int = 20,
        intensities=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0), json_path="bench-results/snn_bench.json",
        out="build/bench-snn", with_cnn: bool = True, n_train: int | None = None,
        models=("mlp", "conv"), kernels=("portable", "dsp"), echo=print):
    """The whole benchmark (defaults: `make bench-snn`); smaller arguments make the smoke
    run of tests/test_snn_bench.py."""
    out = Path(out)
    t0 = time.perf_counter()
    res = dict(board=BOARD, snn=[])
    nets = {}
    for kind in models:
        t = time.perf_counter()
        net, data = train_snn(kind, T, epochs, n_train=n_train)
        echo(f"trained SNN {kind} ({time.perf_counter() - t:.0f} s)")
        nd = len(data[2]) if n_dev is None else n_dev
        r, g, q = bench_model(kind, net, data, T, nd, out, echo, kernels)
        res["snn"].append(r)
        nets[kind] = (g, data)
    g, (x_tr, _, x_te, y_te) = nets["mlp"]
    res["rate_sweep"] = rate_sweep(g, x_tr[:300], x_te[:n_sweep], y_te[:n_sweep], T,
                                   intensities, out, echo, kernels)
    if with_cnn:
        res["int8_cnn"] = int8_cnn(out, len(x_te) if n_dev is None else n_dev, echo, kernels)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    md = tables(res)
    res["table"] = md
    if json_path:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(res, indent=2) + "\n")
        if _plot(res["rate_sweep"], p.with_name("snn_rate_sweep.png")):
            echo(f"wrote {p.with_name('snn_rate_sweep.png')}")
        echo(f"wrote {p}")
    echo("")
    echo(md)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timesteps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--samples", type=int, default=None,
                    help="device samples per model (default: the whole test split)")
    ap.add_argument("--sweep-samples", type=int, default=20)
    ap.add_argument("--json", default="bench-results/snn_bench.json")
    ap.add_argument("--no-cnn", action="store_true")
    a = ap.parse_args(argv)
    run(a.timesteps, a.epochs, a.samples, a.sweep_samples, json_path=a.json,
        with_cnn=not a.no_cnn)


if __name__ == "__main__":
    main()

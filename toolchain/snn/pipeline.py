"""The spiking-network path of `mcu convert`, `mcu build`, `mcu hil` and `mcu infer`:
NIR file + options -> float graph -> fixed-point graph, and the data files they read.

    opts = SnnOptions(timesteps=10, dt=1e-4, reset="subtract", encoding="constant")
    m = prepare("digits.nir", "calib.npz", opts, error=ConvertError)
    m.graph, m.qgraph, m.warnings
    result = convert_snn("digits.nir", "calib.npz", opts, out_dir="digits_snn")

Every failure a user can cause is one line (`error` is the exception class the caller
wants: ConvertError for convert/build, DataError for hil/infer); warnings (a gain far
from 1 for the chosen dt, a decay that rounds to 0 in Q15) are collected, not printed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from converters.nir_frontend import RESETS, SNNWarning, from_nir
from toolchain.errors import ConvertError
from toolchain.ir.graph import Graph, IRError

from . import fixed_point as fp
from .codegen import snn_model_hash
from .encoding import ENCODINGS, read_events
from .float_sim import is_spiking, role

SUFFIXES = (".nir",)


def is_snn_model(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and \
        os.fspath(path).lower().endswith(SUFFIXES)


@dataclass
class SnnOptions:
    timesteps: int = 10
    dt: float = 1e-4
    reset: str | None = None          # None: the graph's (NIR: v <- v_reset)
    encoding: str = "constant"
    state_bits: int = 16
    seed: int = 0

    def check(self) -> "SnnOptions":
        if self.timesteps is None or int(self.timesteps) < 1:
            raise ConvertError(f"--timesteps must be >= 1 (got {self.timesteps}); a spiking "
                               "model needs the number of steps per sample")
        if self.encoding not in ENCODINGS:
            raise ConvertError(f"unknown --encoding '{self.encoding}'; expected one of "
                               f"{', '.join(ENCODINGS)}")
        if self.reset is not None and self.reset not in RESETS:
            raise ConvertError(f"unknown --reset '{self.reset}'; expected one of "
                               f"{', '.join(RESETS)}")
        if self.state_bits not in (16, 32):
            raise ConvertError(f"--state-bits must be 16 or 32, got {self.state_bits}")
        if not (self.dt > 0 and np.isfinite(self.dt)):
            raise ConvertError(f"--dt must be a positive time step, got {self.dt}")
        self.timesteps = int(self.timesteps)
        return self

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SnnModel:
    path: str
    options: SnnOptions
    graph: Graph                      # float
    qgraph: Graph                     # fixed point
    calib_x: np.ndarray
    calib_y: np.ndarray | None
    calib_path: str
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def num_classes(self) -> int | None:
        n = self.qgraph.t(self.qgraph.outputs[0]).size
        return n if n > 1 else None


def _collect(ws) -> list[str]:
    out = []
    for w in ws:
        if issubclass(w.category, SNNWarning):
            msg = str(w.message)
            if msg not in out:
                out.append(msg)
    return out


def load_graph(model, opts: SnnOptions) -> tuple[Graph, list[str]]:
    """The float graph of a NIR file and the front end's warnings."""
    p = os.fspath(model)
    if not os.path.exists(p):
        raise ConvertError(f"cannot read {p}: no such file")
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always", SNNWarning)
        g = from_nir(p, dt=opts.dt, reset=opts.reset)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ConvertError(f"{p}: {len(g.inputs)} inputs and {len(g.outputs)} outputs; the "
                           "SNN path runs single-input, single-output graphs")
    return g, _collect(ws)


def load_data(path, graph: Graph, opts: SnnOptions, error=ConvertError,
              what: str = "data file", limit: int | None = None):
    """(x, y or None) for the model's input and encoding, x in NIR layout: analog
    [N, *shape] (constant, rate) or bool spikes [N, T, *shape] (events). One line of
    `error` for a file that does not fit: shape, encoding, values, labels."""
    p = os.fspath(path)
    shape = tuple(int(d) for d in graph.meta["snn"]["input_nir_shape"])
    want = ", ".join(map(str, shape))
    if p.lower().endswith(".npy"):
        try:
            arr = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            raise error(f"cannot read {what} {p}: no such file") from None
        except Exception as e:  # noqa: BLE001
            raise error(f"cannot read {what} {p}: not a valid .npy ({type(e).__name__})") from None
        tmpd = tempfile.mkdtemp(prefix=".mcu-npy-")
        try:
            key = "spikes" if opts.encoding == "events" else "x"
            q = os.path.join(tmpd, "data.npz")
            np.savez(q, **{key: arr})
            try:
                x, y = load_data(q, graph, opts, error, what, limit)
            except error as e:                      # name the user's file, not ours
                raise error(str(e).replace(q, p)) from None
        finally:
            shutil.rmtree(tmpd, ignore_errors=True)
        return x, y
    try:
        with np.load(p, allow_pickle=False) as z:
            files = list(z.files)
    except FileNotFoundError:
        raise error(f"cannot read {what} {p}: no such file") from None
    except Exception as e:  # noqa: BLE001 - zip/format errors
        raise error(f"cannot read {what} {p}: not a valid .npz ({type(e).__name__})") from None
    if opts.encoding == "events":
        if "x" in files and not ({"spikes", "events"} & set(files)):
            raise error(f"{what} {p} holds analog 'x', not spike events: use --encoding "
                        "constant or rate, or give 'spikes' [N, T, ...] / 'events' [K, 3]")
        try:
            x, y = read_events(p, shape)
        except IRError as e:
            raise error(str(e)) from None
        if x.shape[1] < opts.timesteps:
            raise error(f"{what} {p}: the spikes have {x.shape[1]} steps, fewer than "
                        f"--timesteps {opts.timesteps}")
    else:
        if "x" not in files and ({"spikes", "events"} & set(files)):
            raise error(f"{what} {p} holds spike events ('spikes'/'events'), not analog 'x': "
                        "use --encoding events")
        from converters.npz import read_xy_npz
        x, y = read_xy_npz(p, what, error)
        if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
            raise error(f"{what} {p}: x has dtype {x.dtype}; expected numbers")
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            extra = (f" (a batch dimension in the NIR input? the model's input is per "
                     f"sample)" if x.ndim == len(shape) + 2 else "")
            raise error(f"{what} {p}: x has shape {tuple(x.shape)}; the model expects "
                        f"(N, {want}) (NIR channel-first){extra}")
        if not np.all(np.isfinite(x)):
            raise error(f"{what} {p}: x holds NaN or infinite values")
        if opts.encoding == "rate" and x.dtype != np.uint8 and x.size and \
                (float(x.min()) < 0 or float(x.max()) > 1):
            raise error(f"{what} {p}: rate coding takes x in [0, 1] (or uint8 levels); x "
                        f"spans {float(x.min()):.4g}..{float(x.max()):.4g}: scale it or use "
                        "--encoding constant")
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
    if len(x) == 0:
        raise error(f"{what} {p} has no samples")
    if y is not None:
        y = np.asarray(y).reshape(-1) if np.asarray(y).ndim <= 1 else np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise error(f"{what} {p}: labels y have shape {np.asarray(y).shape} for {len(x)} "
                        "samples; expected (N,)")
        if not np.issubdtype(y.dtype, np.integer):
            raise error(f"{what} {p}: labels y have dtype {y.dtype}; expected integers")
        n_out = graph.t(graph.outputs[0]).size
        if len(y) and (y.min() < 0 or y.max() >= n_out):
            raise error(f"{what} {p}: labels y span {int(y.min())}..{int(y.max())}; the model "
                        f"has {n_out} outputs")
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    return x, y


def prepare(model, calib, opts: SnnOptions, error=ConvertError, log=None) -> SnnModel:
    """NIR file + calibration file -> float and fixed-point graphs."""
    opts.check()
    if calib is None:
        raise error(f"{os.path.basename(os.fspath(model))} is a spiking model: pass "
                    "calibration inputs with --calib DATA.npz ('x', or 'spikes'/'events' for "
                    "--encoding events)")
    g, ws = load_graph(model, opts)
    x, y = load_data(calib, g, opts, error, "calibration file")
    with warnings.catch_warnings(record=True) as w2:
        warnings.simplefilter("always", SNNWarning)
        q = fp.quantize(g, x, opts.timesteps, encoding=opts.encoding,
                        state_bits=opts.state_bits, seed=opts.seed)
    q.name = g.name
    return SnnModel(os.fspath(model), opts, g, q, x, y, os.fspath(calib), ws + _collect(w2))


# --------------------------------------------------------------------------- figures
def param_bytes(q: Graph, op) -> int:
    n = 0
    for name in op.inputs[1:]:
        t = q.tensors.get(name) if name else None
        if t is not None and t.is_const:
            n += t.nbytes
    if role(op.type) == "neuron":
        n += 5 * 4 * q.t(op.outputs[0]).shape[-1]      # beta, alpha, thr, vreset, leak
    return n


def layers(q: Graph) -> list[dict]:
    """One row per op of the fixed-point graph: what it holds and how it is quantized."""
    rows = []
    for k, op in enumerate(q.ops):
        o = q.t(op.outputs[0])
        r = dict(index=k, name=op.name, type=op.type, role=role(op.type),
                 shape=list(o.shape[1:]), param_bytes=param_bytes(q, op))
        if role(op.type) == "synapse":
            w = q.t(op.inputs[1])
            r.update(weights=list(w.shape), in_scale=float(op.attrs.get("in_scale", 1.0)),
                     w_scale=[float(np.min(w.quant.scale)), float(np.max(w.quant.scale))],
                     bias=bool(len(op.inputs) > 2 and op.inputs[2]))
        elif role(op.type) == "neuron":
            a = op.attrs
            r.update(state_bits=a["state_bits"], frac_bits=a["frac_bits"],
                     state_bytes=len(op.inputs[1:]) * o.size * a["state_bits"] // 8,
                     spiking=is_spiking(op.type), reset=a.get("reset"))
            for key in ("beta", "alpha", "thr"):
                if key in a:
                    v = np.asarray(a[key])
                    r[key] = [int(v.min()), int(v.max())]
        elif role(op.type) == "pool":
            r.update(window=[op.attr("filter_h"), op.attr("filter_w")],
                     stride=[op.attr("stride_h"), op.attr("stride_w")])
        rows.append(r)
    return rows


def _rng(v) -> str:
    a, b = v
    return f"{a}" if a == b else f"{a}..{b}"


def format_layer(r: dict) -> str:
    head = f"  {r['index']:>2} {r['type']:<15} {r['name'][:22]:<22} {str(r['shape']):<14}"
    if r["role"] == "synapse":
        tail = (f"int8 W {'x'.join(map(str, r['weights']))}"
                + (" + int32 bias" if r["bias"] else "")
                + f", w_scale {r['w_scale'][0]:.3g}..{r['w_scale'][1]:.3g}, "
                  f"in_scale {r['in_scale']:.3g}: {r['param_bytes']:,} B")
    elif r["role"] == "neuron":
        parts = [f"int{r['state_bits']} state ({r['state_bytes']:,} B), F={r['frac_bits']}"]
        if "beta" in r:
            parts.append(f"beta Q15 {_rng(r['beta'])}")
        if "alpha" in r:
            parts.append(f"alpha Q15 {_rng(r['alpha'])}")
        if "thr" in r:
            parts.append(f"thr {_rng(r['thr'])}")
        if r.get("reset"):
            parts.append(f"reset {r['reset']}")
        tail = ", ".join(parts) + f": {r['param_bytes']:,} B"
    elif r["role"] == "pool":
        tail = f"window {r['window'][0]}x{r['window'][1]}, stride {r['stride'][0]}x{r['stride'][1]}"
    else:
        tail = "same buffer"
    return head + tail


def describe(m: SnnModel) -> dict:
    g, q = m.graph, m.qgraph
    rows = layers(q)
    n_params = sum(int(t.size) for t in q.constants())
    return dict(
        model=m.path, kind="snn", options=m.options.to_json(),
        ops=dict(Counter(op.type for op in g.ops)), num_ops=len(g.ops),
        input=dict(name=g.inputs[0], nir_shape=list(g.meta["snn"]["input_nir_shape"]),
                   ir_shape=list(q.t(q.inputs[0]).shape),
                   scale=float(q.meta["snn"]["fixed"]["input_scale"])),
        output=dict(name=g.outputs[0], size=int(q.t(q.outputs[0]).size),
                    kind="spike counts" if is_spiking(q.producers()[q.outputs[0]].type)
                    else "membrane"),
        params=n_params, param_bytes=sum(r["param_bytes"] for r in rows),
        state_bytes=sum(r.get("state_bytes", 0) for r in rows),
        layers=rows, model_hash=snn_model_hash(q, m.options.timesteps),
        warnings=list(m.warnings))


# --------------------------------------------------------------------------- convert
def convert_snn(model, calib, opts: SnnOptions, out_dir=None, name: str = "snn_model",
                log=None) -> dict:
    """`mcu convert MODEL.nir`: quantize, compare fixed point with float on the
    calibration data, and write the C export (<name>.h / <name>.c, toolchain/snn/export.py)
    into out_dir, all or nothing. Returns the summary dict."""
    from .export import write_c_export
    model = os.fspath(model)
    if out_dir is None:
        out_dir = os.path.splitext(os.path.basename(model))[0] + "_snn"
    out_dir = os.path.abspath(os.fspath(out_dir))
    m = prepare(model, calib, opts, ConvertError, log)
    res = describe(m)
    res["out_dir"] = out_dir
    res["calibration"] = dict(file=m.calib_path, samples=int(len(m.calib_x)),
                              labels=m.calib_y is not None)
    res["fixed_vs_float"] = fp.compare(m.graph, m.qgraph, m.calib_x, opts.timesteps, m.calib_y)
    parent = os.path.dirname(out_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".mcu-convert-", dir=parent)
    try:
        write_c_export(m.qgraph, tmp, name, opts.timesteps)
        files = sorted(os.listdir(tmp))
        os.makedirs(out_dir, exist_ok=True)
        for fn in files:
            os.replace(os.path.join(tmp, fn), os.path.join(out_dir, fn))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["files"] = [os.path.join(out_dir, fn) for fn in files]
    return res


def format_summary(r: dict) -> str:
    o = r["options"]
    lines = [f"model:        {r['model']} (spiking, NIR)",
             "ops:          " + ", ".join(f"{k} x{v}" for k, v in r["ops"].items())
             + f" ({r['num_ops']} ops)",
             f"time steps:   T={o['timesteps']}, dt={o['dt']:g}, reset "
             f"{o['reset'] or 'as in the graph'}, {o['encoding']} input, "
             f"int{o['state_bits']} state",
             f"input:        {r['input']['name']} {r['input']['nir_shape']} (NIR) -> int8"
             f"{r['input']['ir_shape']}" + (f" scale={r['input']['scale']:.6g}"
                                            if o["encoding"] == "constant" else " spikes"),
             f"output:       {r['output']['name']} [{r['output']['size']}] "
             f"{r['output']['kind']}",
             f"parameters:   {r['params']:,}   parameter bytes: {r['param_bytes']:,}   "
             f"neuron state: {r['state_bytes']:,} B",
             "layers:"]
    lines += [format_layer(x) for x in r["layers"]]
    lines.append(f"model hash:   {r['model_hash'][:16]} (fixed-point IR, T, encoding: what "
                 "the device reports)")
    c = r.get("calibration")
    if c:
        lines.append(f"calibration:  {c['samples']} samples from {c['file']}")
    fv = r.get("fixed_vs_float")
    if fv:
        s = f"fixed vs float: argmax agreement {100 * fv['argmax_agreement']:.2f} %"
        if "identical_counts" in fv:
            s = (f"fixed vs float: identical spike counts {fv['identical_counts']}/"
                 f"{fv['samples']}, argmax agreement {100 * fv['argmax_agreement']:.2f} %")
        if "accuracy_fixed" in fv:
            s += (f", accuracy float {100 * fv['accuracy_float']:.2f} % / fixed "
                  f"{100 * fv['accuracy_fixed']:.2f} %")
        lines.append(s)
        rates = ", ".join(f"{k} {100 * v['fixed']:.1f} %" for k, v in fv["spike_rate"].items())
        if rates:
            lines.append(f"spike rates:  {rates} (fixed point, per neuron and step)")
    for w in r.get("warnings", []):
        lines.append(f"warning:      {w}")
    if r.get("files"):
        lines.append("wrote:        " + ", ".join(os.path.basename(f) for f in r["files"])
                     + f" in {r['out_dir']}")
    return "\n".join(lines)


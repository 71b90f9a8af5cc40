"""The `mcu convert` pipeline as a function: model file (+ calibration data) ->
int8 .tflite + C arrays in a directory, and a summary dict.

Nothing half-written: every file is written to a temporary directory beside the
destination and moved into place only after everything succeeded.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import numpy as np

from converters.npz import read_xy_npz
from toolchain.errors import ConvertError
from toolchain.ir.graph import Graph, IRError


def load_calibration(path, graph: Graph) -> tuple[np.ndarray, np.ndarray | None, str]:
    """npz with `x` (N, ...) in the model's user-facing input layout (NCHW for ONNX and
    PyTorch image models, (N, C, L) for their 1-D conv nets, NHWC for TFLite) and optional
    labels `y`. Returns (x in the IR layout NHWC (N, 1, L, C for NCL), y or None, a note on
    the layout used)."""
    x, y = read_xy_npz(path, "calibration file", ConvertError)
    if len(graph.inputs) != 1:
        raise ConvertError("calibration from .npz supports single-input models only")
    name = graph.inputs[0]
    ir_shape = tuple(graph.t(name).shape[1:])
    layout = graph.meta.get("input_layouts", {}).get(name)
    if not np.issubdtype(x.dtype, np.number):
        raise ConvertError(f"calibration data x has dtype {x.dtype}; expected numbers")
    if layout in ("NCHW", "NCL"):
        user = tuple(graph.meta["onnx_input_shapes"][name][1:])
        if x.ndim == len(user) + 1 and tuple(x.shape[1:]) == user:
            if layout == "NCHW":
                x, note = x.transpose(0, 2, 3, 1), "NCHW (transposed to NHWC)"
            else:
                x, note = x.transpose(0, 2, 1)[:, None], "NCL (transposed to N,1,L,C)"
        else:
            raise ConvertError(f"calibration data x has shape {tuple(x.shape)}; expected "
                               f"(N, {', '.join(map(str, user))}) ({layout}, the model's "
                               "input)")
    else:
        if x.ndim != len(ir_shape) + 1 or tuple(x.shape[1:]) != ir_shape:
            raise ConvertError(f"calibration data x has shape {tuple(x.shape)}; expected "
                               f"(N, {', '.join(map(str, ir_shape))})")
        note = "as the model's input"
    if len(x) == 0:
        raise ConvertError("calibration data x is empty")
    if y is not None and len(y) != len(x):
        raise ConvertError(f"calibration labels y have {len(y)} entries for {len(x)} inputs")
    return np.ascontiguousarray(x, np.float32), y, note


def _tflm_check(qgraph: Graph, tfl: bytes, x: np.ndarray, n: int = 16) -> dict:
    """Reference interpreter vs the tflite-micro interpreter on the first n inputs."""
    try:
        from toolchain.ir import reference
        from toolchain.tflm_oracle import TflmRunner
    except ImportError as e:
        return dict(checked=0, skipped=str(e))
    from converters.quantize import quantize_input
    r = TflmRunner(tfl)
    xq = quantize_input(qgraph, x[:n])
    same = 0
    for i in range(len(xq)):
        a = np.asarray(r.run([xq[i:i + 1]])[0]).reshape(-1)
        b = reference.run(qgraph, {qgraph.inputs[0]: xq[i:i + 1]})[qgraph.outputs[0]].reshape(-1)
        same += int(np.array_equal(a, b))
    return dict(checked=int(len(xq)), bit_exact=same == len(xq), identical=same)


def _passthrough_check(path, tfl: bytes, n: int = 4) -> dict:
    """The rewritten int8 model vs the original in tflite-micro on random int8 inputs."""
    from toolchain.tflm_oracle import TflmRunner
    with open(path, "rb") as f:
        a, b = TflmRunner(f.read()), TflmRunner(tfl)
    det = a.input_details(0)
    if np.dtype(det["dtype"]) != np.int8:
        return dict(checked=0, skipped="original model has non-int8 inputs")
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(n):
        x = rng.integers(-128, 128, det["shape"], dtype=np.int8)
        same += int(all(np.array_equal(p, q) for p, q in zip(a.run([x]), b.run([x]))))
    return dict(checked=n, bit_exact=same == n, identical=same, against="original .tflite")


def convert(model_path, calib=None, method: str = "minmax", out_dir=None,
            name: str = "model_data", percentile: float = 99.99,
            per_channel_fc: bool = False, log=print, activations: str = "int8") -> dict:
    """Convert `model_path` (.onnx, .pt2, .tflite) to int8 (activations="int16": int16
    activations with int8 weights, TFLite's 16x8) and write model.tflite, <name>.c/.h
    into out_dir. Returns the summary dict."""
    from converters import load_model
    from converters.c_array import write_c_array
    from converters.tflite_writer import write_tflite

    model_path = os.fspath(model_path)
    if out_dir is None:
        out_dir = os.path.splitext(os.path.basename(model_path))[0] + (
            "_int16" if activations == "int16" else "_int8")
    out_dir = os.path.abspath(os.fspath(out_dir))
    graph = load_model(model_path)
    result: dict = dict(model=model_path, out_dir=out_dir)
    if graph.is_quantized:
        if calib is not None:
            log("note: the model is already quantized; --calib is ignored")
        if activations == "int16" and not any(t.dtype == "int16" and not t.is_const
                                              for t in graph.tensors.values()):
            raise ConvertError(f"{os.path.basename(model_path)} is already int8; "
                               "--activations int16 needs a float model")
        qgraph = graph
        result["source"] = "int8 (passed through)"
    else:
        if any(graph.tensors[n].dtype not in ("int8", "float32")
               for n in graph.inputs + graph.outputs):
            raise ConvertError(f"{os.path.basename(model_path)} is {graph.io_kind()}; mcu "
                               "converts float or int8 models (re-export it as float)")
        if calib is None:
            raise ConvertError(f"{os.path.basename(model_path)} is a float model: pass "
                               "calibration inputs with --calib DATA.npz (array 'x')")
        x, y, note = load_calibration(calib, graph)
        from converters.quantize import compare, quantize
        qgraph = quantize(graph, x, method=method, percentile=percentile,
                          per_channel_fc=per_channel_fc, activations=activations)
        result["source"] = ("float (quantized, int16 activations)" if activations == "int16"
                            else "float (quantized)")
        result["calibration"] = dict(file=os.fspath(calib), samples=int(len(x)), layout=note,
                                     method=method, activations=activations)
        result["float_vs_int8"] = compare(graph, qgraph, x, y)
    tfl = write_tflite(qgraph)
    if graph.is_quantized and model_path.lower().endswith(".tflite"):
        try:
            result["tflm_check"] = _passthrough_check(model_path, tfl)
        except Exception as e:  # noqa: BLE001 - report, the files are still valid
            result["tflm_check"] = dict(checked=0, skipped=f"{type(e).__name__}: {e}")
    if not graph.is_quantized:
        try:
            result["tflm_check"] = _tflm_check(qgraph, tfl, x)
        except Exception as e:  # noqa: BLE001 - report, the files are still valid
            result["tflm_check"] = dict(checked=0, skipped=f"{type(e).__name__}: {e}")
    s = qgraph.summary()
    result.update(ops=s["ops"], num_ops=s["num_ops"], params=s["params"],
                  weight_bytes=s["weight_bytes"], inputs=s["inputs"], outputs=s["outputs"],
                  model_hash=s["model_hash"], tflite_bytes=len(tfl),
                  tflite_sha256=hashlib.sha256(tfl).hexdigest())

    parent = os.path.dirname(out_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".mcu-convert-", dir=parent)
    try:
        with open(os.path.join(tmp, "model.tflite"), "wb") as f:
            f.write(tfl)
        write_c_array(tfl, tmp, name)
        files = sorted(os.listdir(tmp))
        os.makedirs(out_dir, exist_ok=True)
        for fn in files:
            os.replace(os.path.join(tmp, fn), os.path.join(out_dir, fn))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["files"] = [os.path.join(out_dir, fn) for fn in files]
    return result


def format_summary(r: dict) -> str:
    def q(t):
        s = f"{t['name']} {t['dtype']}{list(t['shape'])}"
        if "scale" in t:
            s += f" scale={t['scale']:.6g} zero_point={t['zero_point']}"
        return s
    lines = [f"model:        {r['model']} ({r['source']})",
             "ops:          " + ", ".join(f"{k} x{v}" for k, v in r["ops"].items())
             + f" ({r['num_ops']} ops)",
             f"parameters:   {r['params']:,}   weight bytes: {r['weight_bytes']:,}   "
             f".tflite: {r['tflite_bytes']:,} B"]
    lines += [f"input:        {q(t)}" for t in r["inputs"]]
    lines += [f"output:       {q(t)}" for t in r["outputs"]]
    lines.append(f"model hash:   {r['model_hash'][:16]} (IR)   sha256: {r['tflite_sha256'][:16]}")
    c = r.get("calibration")
    if c:
        lines.append(f"calibration:  {c['samples']} samples from {c['file']}, {c['method']}, "
                     f"layout {c['layout']}")
    fv = r.get("float_vs_int8")
    if fv:
        kind = (r.get("calibration") or {}).get("activations", "int8")
        s = f"float vs {kind}: max abs error {fv['max_abs_error']:.4g}"
        if "top1_agreement" in fv:
            s += f", top-1 agreement {100 * fv['top1_agreement']:.2f} %"
        if "int8_accuracy" in fv:
            s += (f", accuracy float {100 * fv['float_accuracy']:.2f} % / int8 "
                  f"{100 * fv['int8_accuracy']:.2f} %")
        lines.append(s)
    tc = r.get("tflm_check")
    if tc and tc.get("checked"):
        lines.append(f"tflite-micro: {tc['identical']}/{tc['checked']} outputs byte-identical "
                     f"with {tc.get('against', 'the reference interpreter')}")
    lines.append("wrote:        " + ", ".join(os.path.basename(f) for f in r["files"])
                 + f" in {r['out_dir']}")
    return "\n".join(lines)


__all__ = ["convert", "format_summary", "load_calibration", "IRError"]

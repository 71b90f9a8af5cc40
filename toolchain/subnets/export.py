"""The subnet export directory (`mcu subnets export` / `train`; read by `mcu convert`,
`mcu build`, `mcu infer`, `mcu hil`).

    OUT/manifest.json        format, levels, per level: sparsity, .tflite, model hash,
                             bytes (entries used), kernel parameters of every sparse layer;
                             per layer: sparse or dense (and why), rows, row length,
                             entries per row per level; the store's bytes vs dense / K models
    OUT/store.npz            the packed store: per sparse weight W, W/pairs, W/tail,
                             W/segc (flash arrays, toolchain/subnets/store.py layout)
    OUT/level<k>.tflite      level k as a dense-with-zeros int8 model (TFLite Micro users),
    OUT/level<k>_model_data.c/.h   ... and as a C array, each checked with tflite-micro

    export_levels(shared, OUT, dense_layers=..., check=x)   # all or nothing
    ex = load_export(OUT)     # .graphs: per level the row-sparse IR graph (one store)

Everything is written into a temporary directory beside OUT and moved in at the end,
so a failure leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.errors import McuError
from toolchain.ir.graph import Graph, IRError
from toolchain.subnets.graph import SPARSE_OF, sparse_graphs
from toolchain.subnets.quantize import SharedLevels, quantize_levels
from toolchain.subnets.store import byte_report, check_levels, importance_order, nested_masks

FORMAT = "mcu-subnets-v1"
MIN_ROW = 16     # rows shorter than this stay dense (8-bit columns: little to gain)


class SubnetError(McuError):
    """A subnet export / build / run problem the user can fix (one line)."""


def parse_levels(text, dense: bool = False) -> tuple[float, ...]:
    """'0.5,0.75,0.9' (or a sequence) -> sparsities, strictly increasing in [0, 1)."""
    try:
        vals = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise SubnetError(f"--levels '{text}': give sparsities like 0.5,0.75,0.9") from None
    if dense and (not vals or vals[0] != 0.0):
        vals = [0.0] + vals
    try:
        return check_levels(vals)
    except IRError as e:
        raise SubnetError(str(e)) from None


def choose_layers(graph: Graph, min_row: int = MIN_ROW):
    """(orders {weight: importance order by |w|}, [layer report]) for a float graph:
    CONV_2D / FULLY_CONNECTED with rows of at least min_row entries are sparsified."""
    uses: dict[str, int] = {}
    for op in graph.ops:
        for n in op.inputs:
            uses[n] = uses.get(n, 0) + 1
    orders, layers = {}, []
    for op in graph.ops:
        if op.type not in SPARSE_OF and op.type != "DEPTHWISE_CONV_2D":
            continue
        w = op.inputs[1] if len(op.inputs) > 1 else ""
        t = graph.tensors.get(w)
        rep = dict(layer=op.name, op=op.type, weight=w, sparse=False, reason="")
        if t is None or t.data is None:
            rep["reason"] = "weights are not a constant"
        else:
            rows, K = int(t.shape[0]), int(np.prod(t.shape[1:]))
            rep.update(rows=rows, row_len=K)
            if op.type == "DEPTHWISE_CONV_2D":
                rep["reason"] = "depthwise: one input channel per output (no row-sparse kernel)"
            elif uses.get(w, 0) > 1:
                rep["reason"] = "weights shared by several layers"
            elif K < min_row:
                rep["reason"] = f"rows of {K} < {min_row} entries: column bytes would dominate"
            else:
                rep["sparse"] = True
                orders[w] = importance_order(t.data)
        layers.append(rep)
    if not orders:
        why = "; ".join(f"{r['layer'] or r['weight']}: {r['reason']}" for r in layers) or \
            "it has no CONV_2D / FULLY_CONNECTED layer"
        raise SubnetError(f"nothing to sparsify in '{graph.name}' ({why})")
    return orders, layers


def magnitude_levels(float_graph: Graph, sparsities, calib, *, min_row: int = MIN_ROW,
                     implicit_dense: bool = True, **quant_kw):
    """Nested levels by |w| (no retraining): (SharedLevels, layer report). An int8 graph
    (e.g. an MLPerf Tiny .tflite) keeps its quantization in every level (masks by |int8
    value|, no recalibration: for speed and store figures, not for accuracy)."""
    s = parse_levels(sparsities)
    if float_graph.is_quantized:
        import copy

        from toolchain.subnets.quantize import share_levels
        orders, layers = choose_layers(float_graph, min_row)
        qgs = []
        for k in range(len(s)):
            g = copy.deepcopy(float_graph)
            for w, order in orders.items():
                t = g.t(w)
                m = nested_masks(order, s)[k].reshape(t.shape)
                t.data = np.where(m, t.data, 0).astype(t.data.dtype)
            qgs.append(g)
        return share_levels(qgs, orders, s, None, implicit_dense=implicit_dense), layers
    if calib is None:
        raise SubnetError(f"'{float_graph.name}' is a float model: pass calibration inputs "
                          "with --calib DATA.npz")
    orders, layers = choose_layers(float_graph, min_row)
    shared = quantize_levels(float_graph, orders, s, calib, implicit_dense=implicit_dense,
                             **quant_kw)
    return shared, layers


def _store_arrays(graphs: list[Graph]) -> dict[str, np.ndarray]:
    g = graphs[0]
    out = {}
    for op in g.ops:
        if op.type.startswith("SPARSE_"):
            for n in (op.inputs[1], op.inputs[3], op.inputs[4]):
                if n:
                    out[n] = g.t(n).data
    return out


def level_bytes(g: Graph) -> int:
    """Flash bytes level k reads of the store: per sparse row its entries (value + column;
    the implicit dense group: values only)."""
    n = 0
    for op in g.ops:
        if op.type.startswith("SPARSE_"):
            rows, e = int(op.attr("filter_shape")[0]), int(op.attr("n_entries"))
            ge = [int(v) for v in op.attr("group_end")]
            if op.attr("implicit_last") and e == ge[-1] and len(ge) > 1:
                n += rows * (2 * ge[-2] + (e - ge[-2]))    # the dense group: values only
            else:
                n += rows * e * 2
    return n


def _level_params(g: Graph) -> list[dict]:
    from toolchain.codegen.kernel_params import kernel_params
    out = []
    for op in g.ops:
        if not op.type.startswith("SPARSE_"):
            continue
        p = kernel_params(g, op)
        out.append(dict(layer=op.name, op=op.type, n_entries=int(p["n_entries"]),
                        input_offset=int(p["input_offset"]), output_offset=int(p["output_offset"]),
                        act=[int(p["act_min"]), int(p["act_max"])],
                        multiplier0=int(np.atleast_1d(p["multiplier"])[0]),
                        shift0=int(np.atleast_1d(p["shift"])[0])))
    return out


def export_levels(shared: SharedLevels, out_dir, *, layers: list | None = None,
                  name: str = "model", check=None, source: str = "", extra: dict | None = None,
                  log=None) -> dict:
    """Write the export directory (module doc). check: int8 or float inputs (NHWC) to
    run each level's .tflite in tflite-micro against the numpy reference of its
    row-sparse graph (byte for byte); raises SubnetError on a difference."""
    from converters.c_array import write_c_array
    from converters.tflite_writer import write_tflite
    from toolchain.ir import reference
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
        raise SubnetError(f"{out_dir} exists and is not a subnet export; choose another -o")
    gs = sparse_graphs(shared)
    tfls = [write_tflite(g, description=f"mcu subnet level {k} (sparsity {shared.sparsities[k]})")
            for k, g in enumerate(gs)]
    checks = []
    if check is not None:
        from toolchain.tflm_oracle import TflmRunner
        for k, (g, tfl) in enumerate(zip(gs, tfls)):
            xt = g.t(g.inputs[0])
            x = np.asarray(check)
            if x.dtype != np.int8:
                s, z = float(xt.quant.scale[0]), int(xt.quant.zero_point[0])
                x = np.clip(np.round(x.astype(np.float64) / s) + z, -128, 127).astype(np.int8)
            x = x.reshape((-1,) + tuple(xt.shape[1:]))
            r = TflmRunner(tfl)
            eq = 0
            for xi in x:
                want = r.run(xi.reshape(xt.shape))[0].reshape(-1)
                got = reference.run(g, {g.inputs[0]: xi.reshape(xt.shape)})[g.outputs[0]]
                eq += int(np.array_equal(want, np.asarray(got).reshape(-1)))
            checks.append(dict(level=k, checked=int(len(x)), byte_exact=eq))
            if eq != len(x):
                raise SubnetError(f"level {k}: the row-sparse reference differs from "
                                  f"tflite-micro on {len(x) - eq} of {len(x)} inputs")
    from toolchain.subnets.graph import store_meta
    layers = [dict(r) for r in (layers or [dict(layer=shared.layers.get(w, ""), weight=w,
                                                 sparse=True) for w in shared.stores])]
    for r in layers:
        if r.get("sparse"):
            r.update(store_meta(shared.stores[r["weight"]]))
    br = byte_report(list(shared.stores.values()))
    arrays = _store_arrays(gs)
    levels = []
    for k, (g, tfl) in enumerate(zip(gs, tfls)):
        levels.append(dict(index=k, sparsity=float(shared.sparsities[k]),
                           tflite=f"level{k}.tflite", c_array=f"level{k}_model_data.c",
                           tflite_bytes=len(tfl), tflite_sha256=hashlib.sha256(tfl).hexdigest(),
                           model_hash=g.model_hash(), store_bytes_read=level_bytes(g),
                           params=_level_params(g)))
    store_bytes = int(sum(a.nbytes for a in arrays.values()))
    man = dict(format=FORMAT, name=name, source=source,
               levels=[float(s) for s in shared.sparsities], level=levels,
               layers=layers,
               store=dict(file="store.npz", bytes=store_bytes,
                          dense_int8_bytes=br["dense_int8_bytes"],
                          vs_dense=store_bytes / br["dense_int8_bytes"],
                          k_dense_models_bytes=br["k_dense_models_bytes"],
                          vs_k_dense=store_bytes / br["k_dense_models_bytes"],
                          k_sparse_models_bytes=br["k_sparse_models_bytes"]),
               tflm_check=checks, **(extra or {}))
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mcu-subnets-", dir=parent))
    try:
        for k, tfl in enumerate(tfls):
            (tmp / f"level{k}.tflite").write_bytes(tfl)
            write_c_array(tfl, tmp, f"level{k}_model_data")
        np.savez(tmp / "store.npz", **arrays)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in out_dir.iterdir():            # an older export: replaced as a whole
            if f.is_file():
                f.unlink()
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    man["dir"] = str(out_dir)
    return man


@dataclass
class Export:
    dir: Path
    manifest: dict
    graphs: list = field(default_factory=list)     # per level: row-sparse int8 Graph
    tflite: list = field(default_factory=list)     # per level: .tflite bytes

    @property
    def levels(self) -> list[float]:
        return list(self.manifest["levels"])


def is_export(path) -> bool:
    p = Path(os.fspath(path))
    return p.is_dir() and (p / "manifest.json").exists()


def load_export(path) -> Export:
    """Read an export directory: per level the dense-with-zeros .tflite, rebuilt as the
    row-sparse graph over the one store (store.npz); each level's sparse weights must
    decode to exactly its .tflite's weights."""
    from converters.tflite_reader import read_tflite
    from toolchain.ir.ops.sparse import dense_weight
    from toolchain.subnets.graph import sparse_op_arrays
    d = Path(os.fspath(path))
    mp = d / "manifest.json"
    if not mp.exists():
        raise SubnetError(f"{d} is not a subnet export (no manifest.json); make one with "
                          "mcu subnets export / mcu subnets train")
    try:
        man = json.loads(mp.read_text())
    except ValueError as e:
        raise SubnetError(f"{mp}: not valid JSON ({e})") from None
    if man.get("format") != FORMAT:
        raise SubnetError(f"{mp}: format {man.get('format')!r}, expected {FORMAT}")
    with np.load(d / "store.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    ex = Export(d, man)
    sparse = [r for r in man["layers"] if r.get("sparse")]
    for k, lv in enumerate(man["level"]):
        tfl = (d / lv["tflite"]).read_bytes()
        g = read_tflite(tfl)
        g.name = man.get("name") or g.name
        for r in sparse:
            w = r["weight"]
            op = next((o for o in g.ops if o.type in SPARSE_OF and len(o.inputs) > 1
                       and o.inputs[1] == w), None)
            if op is None:
                raise SubnetError(f"{lv['tflite']}: no CONV_2D / FULLY_CONNECTED reads weight "
                                  f"'{w}' of the manifest")
            want = g.t(w).data.copy()
            sparse_op_arrays(g, op, arrays, r, k)
            if not np.array_equal(dense_weight(g, op), want):
                raise SubnetError(f"{lv['tflite']}: weight '{w}' does not match the store "
                                  f"(store.npz) at level {k}")
        g.meta = dict(g.meta or {})
        g.meta["subnet"] = dict(level=k, sparsity=float(lv["sparsity"]), levels=ex.levels)
        ex.graphs.append(g)
        ex.tflite.append(tfl)
    return ex


def _short(name: str, n: int = 36) -> str:
    name = (name or "").split(";")[0]
    return name if len(name) <= n else "..." + name[-(n - 3):]


def format_manifest(man: dict) -> str:
    """`mcu convert OUT/`: per level parameters and bytes."""
    st = man["store"]
    lines = [f"subnet export: {man.get('name', '')} ({len(man['levels'])} levels"
             f"{', from ' + man['source'] if man.get('source') else ''})",
             f"store: {st['bytes']:,} B = {st['vs_dense']:.2f}x the dense int8 weights "
             f"({st['dense_int8_bytes']:,} B), {st['vs_k_dense']:.2f}x {len(man['levels'])} "
             f"dense models ({st['k_dense_models_bytes']:,} B)"]
    sp = [r for r in man["layers"] if r.get("sparse")]
    dn = [r for r in man["layers"] if not r.get("sparse")]
    lines.append(f"layers: {len(sp)} row-sparse" + (f", {len(dn)} dense: " + "; ".join(
        f"{_short(r['layer'] or r['weight'])} ({r['reason']})" for r in dn) if dn else ""))
    lines.append(f"{'level':>5} {'sparsity':>8} {'entries/row':>24} {'store bytes read':>16} "
                 f"{'.tflite':>9}  model hash")
    for lv in man["level"]:
        ents = ",".join(str(p["n_entries"]) for p in lv["params"])
        if len(ents) > 24:
            ents = ents[:21] + "..."
        lines.append(f"{lv['index']:>5} {lv['sparsity']:>8.2f} {ents:>24} "
                     f"{lv['store_bytes_read']:>16,} {lv['tflite_bytes']:>9,}  "
                     f"{lv['model_hash'][:16]}")
    lines.append("per-level layer parameters (input/output offset, activation range, "
                 "first multiplier/shift):")
    for lv in man["level"]:
        for p in lv["params"]:
            lines.append(f"  L{lv['index']} {_short(p['layer'], 28):<28} n={p['n_entries']:<5} "
                         f"in {p['input_offset']:>4} out {p['output_offset']:>4} "
                         f"act [{p['act'][0]},{p['act'][1]}] m0 {p['multiplier0']} "
                         f"s0 {p['shift0']}")
    for c in man.get("tflm_check", []):
        lines.append(f"level {c['level']}: byte-exact with tflite-micro on "
                     f"{c['byte_exact']}/{c['checked']} inputs")
    return "\n".join(lines)

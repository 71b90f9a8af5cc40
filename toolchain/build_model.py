"""`mcu build MODEL`: convert if needed, generate C, build the firmware, report flash
and RAM by part, and compare the arena with TFLite Micro's for the same model.

    rep = build_model("kws.tflite", "mps2-an386", out_dir="build/kws", kernels="auto")
    rep["flash"]["weights"], rep["ram"]["arena"], rep["tflm"]["arena_min"]

Above toolchain.build and toolchain.codegen (it drives both), so neither imports it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from toolchain.errors import BuildError

# TFLite Micro on the emulated Cortex-M4 (REFERENCE.md §4; 32-bit MCU figures), by model hash.
TFLM_MCU_REFERENCE = {
    "850e7903e877c4cc4cb9d864efd1a1e19dcf06e759278142b8c33b0bc11d7753": dict(
        model="MLPerf Tiny KWS (DS-CNN)", arena_cmsis_nn=22824, arena_reference=22772,
        instructions_cmsis_nn=7_697_240, instructions_reference=43_041_760,
        flash_without_model_cmsis_nn=56_800, flash_without_model_reference=44_700),
    "6c752742bf3b1298fe4794b0fbd4e6bef79651193f584cb2e2622b35e3eade64": dict(
        model="MLPerf Tiny IC (ResNet-8)", arena_cmsis_nn=55000, arena_reference=54340,
        instructions_cmsis_nn=29_863_440, instructions_reference=107_402_480,
        flash_without_model_cmsis_nn=54_500, flash_without_model_reference=49_000),
}


def tflm_min_arena(tflite: bytes, lo: int = 256, hi: int = 1 << 24) -> int | None:
    """Smallest arena_size with which the tflite-micro Python interpreter allocates and
    invokes the model (bisection; 64-bit host, so a little above a 32-bit MCU)."""
    try:
        import numpy as np
        from toolchain.tflm_oracle import TflmRunner
    except ImportError:
        return None

    def ok(n):
        try:
            r = TflmRunner(tflite, arena_size=n)
            d = r.input_details(0)
            r.run([np.zeros(d["shape"], d["dtype"]) for _ in range(r.num_inputs)])
            return True
        except (RuntimeError, ValueError):
            return False
    import sys
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)    # TFLM's C++ logs every failed allocation to fd 2
    try:
        if not ok(hi):
            return None
        while hi - lo > 16:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return hi


HOST_FALLBACK = ("64-bit host interpreter, a fallback: {why}; the Cortex-M4 needs less")


def tflm_measure(tfl_path, variants=("ref", "cmsis"), input_bytes: bytes | None = None) -> dict:
    """TFLite Micro's figures for a .tflite on the emulated Cortex-M4 (toolchain.tflm_kit:
    instructions, smallest arena, code flash, output bytes per variant) -> dict(source=
    "tflm-m4", variants={v: KitResult.to_json()}, arena_min=<CMSIS-NN's smallest, else
    ref's>). Without the kit or QEMU: dict(source="host", fallback=<why>, arena_min_host=
    <the tflite-micro host interpreter's smallest arena, labelled as such>)."""
    from toolchain.tflm_kit import KitError, KitMissing, measure
    try:
        res = measure(tfl_path, variants, input_bytes)
    except (KitMissing, KitError) as e:     # the comparison never fails a build
        return dict(source="host", fallback=str(e),
                    label=HOST_FALLBACK.format(why=str(e).split(":")[0]
                                               if isinstance(e, KitMissing) else str(e)),
                    arena_min_host=tflm_min_arena(Path(tfl_path).read_bytes()))
    vs = {k: v.to_json() for k, v in res.items()}
    arena = next((vs[k]["smallest_arena"] for k in ("cmsis", "ref")
                  if k in vs and vs[k]["ok"]), None)
    return dict(source="tflm-m4", label="TFLite Micro on the Cortex-M4 (tflm-m4 kit, QEMU)",
                variants=vs, arena_min=arena,
                arena_variant=next((k for k in ("cmsis", "ref") if k in vs and vs[k]["ok"]),
                                   None))


def _flash_ram_parts(res, gen) -> tuple[dict, dict]:
    bf = res.by_file

    def tot(pred, key):
        return sum(v[key] for k, v in bf.items() if pred(k))
    is_model = lambda k: k.endswith("/model.c") or k == "ext/model.c"  # noqa: E731
    weights = tot(lambda k: k.endswith("model_weights.c"), "flash")
    model_flash = tot(is_model, "flash")
    model_code = tot(is_model, "code")      # generated code: instructions only
    # generated constant data: requantization tables, per-layer parameter structs and
    # dims, layer names, hash/description
    tables = model_flash - model_code
    runtime = tot(lambda k: k.startswith("runtime/"), "flash")
    flash = dict(total=res.flash_used, weights=weights, model_tables=tables,
                 model_code=model_code, runtime=runtime,
                 app=res.flash_used - weights - model_flash - runtime,
                 budget=res.flash_budget)
    # the split the bench reports: model constants (weights, biases, repacked filters,
    # tables) vs code (runtime + app + board + generated code; their few literal
    # pools and strings stay with the code)
    flash["model_constants"] = weights + tables
    flash["code"] = flash["total"] - flash["model_constants"]
    flash["code_without_weights"] = flash["total"] - weights
    if getattr(gen, "table_bytes", None) is not None:
        flash["requant_tables"] = gen.table_bytes
    stack = bf.get("(stack)", {}).get("ram", 0)
    arena = gen.plan.arena_size
    ram = dict(total=res.ram_used, arena=arena, stack=stack,
               static_other=res.ram_used - arena - stack, budget=res.ram_budget)
    return flash, ram


def build_model(model, board, out_dir=None, *, kernels: str = "auto", calib=None,
                test_build: bool = False, werror: bool = False, force: bool = False,
                measure_tflm: bool = True, defines: dict | None = None, extra_sources=(),
                gen_options: dict | None = None, log=None) -> dict:
    """gen_options: passed to toolchain.codegen.generate (rows=False, reorder=False, ...)."""
    from converters import load_model  # noqa: F401  (fail early if converters break)
    from toolchain.boards import load_board
    from toolchain.build import build_firmware
    from toolchain.codegen.firmware import firmware_sources, load_int8_graph
    b = load_board(board)   # a name (Python API) is read once here; a Board passes through
    out = Path(out_dir or Path("build") / (b.name + ("-test" if test_build else "")))
    fresh = not out.exists()     # a failed build removes a directory it created
    from toolchain.ir.graph import Graph
    is_graph = isinstance(model, Graph)      # e.g. subnet levels (gen_options["levels"])
    try:
        graph, tfl_path = load_int8_graph(model, calib, out, log)
        srcs, incs, defs = firmware_sources(
            graph, b, out / "model", kernels=kernels,
            name=model.name if is_graph else Path(os.fspath(model)).stem, **(gen_options or {}))
        gen = firmware_sources.last
        defs = dict(defs, **(defines or {}))
        res = build_firmware(b, out, extra_sources=list(srcs) + list(extra_sources),
                             include_dirs=incs, defines=defs, with_runtime=True,
                             test_build=test_build, werror=werror, force=force)
    except BaseException:
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        raise
    flash, ram = _flash_ram_parts(res, gen)
    rep = dict(model=model.name if is_graph else os.fspath(model), board=b.name, kernels=gen.variant,
               model_hash=gen.model_hash, build_dir=str(res.build_dir), elf=str(res.elf),
               cached=res.cached, flash=flash, ram=ram,
               plan=dict(arena=gen.plan.arena_size, naive=gen.plan.naive_size,
                         row_inplace=len(gen.plan.rows), reordered=gen.exec_order != sorted(gen.exec_order),
                         segments=len(gen.plan.segments),
                         streamed=[k for k, op in enumerate(gen.graph.ops)   # no layer output
                                   if op.outputs[0] not in gen.plan.offsets]),
               layers=len(graph.ops), build=res.to_json())
    from toolchain.codegen.planner import largest_layer_live_set
    rep["plan"]["floor"] = largest_layer_live_set(gen.plan, gen.graph)
    tflm = {}
    if tfl_path:
        size = Path(tfl_path).stat().st_size
        rep["tflite_bytes"] = size
        rep["tflite"] = os.fspath(tfl_path)
        if measure_tflm:
            # CMSIS-NN's int8-only registrations cannot run int16 activations: the
            # reference kernels then (the same arena bookkeeping)
            int16 = any(t.dtype == "int16" for t in graph.tensors.values() if not t.is_const)
            tflm = tflm_measure(tfl_path, ("ref",) if int16 else ("cmsis",))
    ref = TFLM_MCU_REFERENCE.get(gen.model_hash)
    if ref:
        tflm["mcu_reference"] = ref
    rep["tflm"] = tflm
    return rep


def format_report(rep: dict) -> str:
    f, r, t = rep["flash"], rep["ram"], rep.get("tflm", {})

    def kb(n):
        return f"{n:,} B"
    lines = [f"model: {rep['model']} ({rep['model_hash'][:16]}), {rep['layers']} layers, "
             f"kernels: {rep['kernels']}",
             f"board: {rep['board']}" + ("  (unchanged, reused)" if rep.get("cached") else ""),
             f"firmware: {rep['elf']}",
             f"flash: {kb(f['total'])} of {kb(f['budget'])}: model constants "
             f"{kb(f['model_constants'])} (weights {kb(f['weights'])}, tables "
             f"{kb(f['model_tables'])}), code {kb(f['code'])} (generated "
             f"{kb(f['model_code'])}, runtime {kb(f['runtime'])}, app+board {kb(f['app'])})"
             + (f"  (.tflite {kb(rep['tflite_bytes'])})" if rep.get("tflite_bytes") else ""),
             f"RAM: {kb(r['total'])} of {kb(r['budget'])}: arena {kb(r['arena'])}, stack "
             f"{kb(r['stack'])}, other static {kb(r['static_other'])}"]
    fl = rep.get("plan", {}).get("floor")
    if fl and fl.get("layer") is not None:
        io = (f"inputs {kb(fl['inputs'])} + output {kb(fl['output'])}" if not fl.get("inplace")
              else f"output in place over its input {kb(fl['output'])}"
              + (f" + other inputs {kb(fl['inputs'])}" if fl["inputs"] else ""))
        seg = str(fl["type"]).startswith("segment")   # streamed layers: one live set
        where = (f"streamed layers {fl['type'].split()[-1]}" if seg
                 else f"layer {fl['layer']} {fl['type']}")
        lines.append(f"physical floor: {kb(fl['bytes'])} = largest live set of one layer "
                     f"({where}: {io} + scratch {kb(fl['scratch'])}"
                     f"{' (rings + kernel scratch)' if seg else ''}; arena "
                     f"{r['arena'] / max(1, fl['bytes']):.2f}x the floor; without in-place "
                     f"sharing {kb(fl['tensors_bytes'])} at layer {fl['tensors_layer']})")
    lines += tflm_arena_lines(r["arena"], t)
    return "\n".join(lines)


def tflm_arena_lines(arena: int, t: dict) -> list[str]:
    """The arena-vs-TFLite Micro line of `mcu build` (kit figures, or the labelled
    host-interpreter fallback)."""
    def kb(n):
        return f"{n:,} B"
    if t.get("source") == "tflm-m4":
        vs = t.get("variants", {})
        if t.get("arena_min"):
            name = "CMSIS-NN" if t.get("arena_variant") == "cmsis" else "reference kernels"
            return [f"arena vs TFLite Micro: {kb(arena)} vs {kb(t['arena_min'])} (smallest "
                    f"arena, {name}, on the Cortex-M4: tflm-m4 kit) -> "
                    f"{100 * arena / t['arena_min']:.0f} %"]
        errs = "; ".join(f"{k}: {v['error']}" for k, v in vs.items() if not v["ok"])
        return [f"arena vs TFLite Micro: TFLite Micro cannot run the model ({errs})"]
    lines = []
    if t.get("arena_min_host"):
        lines.append(f"arena vs TFLite Micro: {kb(arena)} vs {kb(t['arena_min_host'])} "
                     f"({t.get('label') or 'tflite-micro 64-bit host interpreter'}) -> "
                     f"{100 * arena / t['arena_min_host']:.0f} %")
    ref = t.get("mcu_reference")
    if ref:
        lines.append(f"  REFERENCE §4, Cortex-M4 (CMSIS-NN): {kb(ref['arena_cmsis_nn'])} -> "
                     f"{100 * arena / ref['arena_cmsis_nn']:.0f} %")
    return lines


def check_model_fits(rep: dict) -> None:
    if rep["flash"]["total"] > rep["flash"]["budget"] or rep["ram"]["total"] > rep["ram"]["budget"]:
        raise BuildError(f"model does not fit board {rep['board']}: flash needs "
                         f"{rep['flash']['total']:,} B of {rep['flash']['budget']:,} B, RAM "
                         f"{rep['ram']['total']:,} B of {rep['ram']['budget']:,} B")


# --------------------------------------------------------------------------- spiking models
def build_snn_model(model, board, out_dir=None, *, options=None, calib=None,
                    prepared=None, kernels: str = "auto", test_build: bool = False,
                    werror: bool = False, force: bool = False, defines: dict | None = None,
                    log=None) -> dict:
    """`mcu build MODEL.nir`: quantize the spiking model on --calib (toolchain.snn
    .pipeline, as `mcu convert` does), generate its model.c (toolchain.snn.codegen), build
    the firmware and report flash/RAM. `prepared`: an SnnModel already quantized (the
    HIL runner). The report's "snn" entry has what a host needs to talk to the model
    (the generator's result object is in rep["_gen"], not JSON)."""
    from toolchain.boards import load_board
    from toolchain.build import build_firmware
    from toolchain.codegen.firmware import kernel_defines, resolve_kernels, timer_defines
    from toolchain.snn.codegen import generate_snn
    from toolchain.snn.pipeline import describe, prepare
    b = load_board(board)
    out = Path(out_dir or Path("build") / (b.name + ("-test" if test_build else "")))
    m = prepared or prepare(model, calib, options, log=log)
    T = m.options.timesteps
    gen = generate_snn(m.qgraph, out / "model", T, name=m.name)
    variant = resolve_kernels(kernels, b)
    defs = dict(kernel_defines(variant, b))
    defs.update(timer_defines(b))
    defs["MCU_SCRATCH_SIZE"] = 64
    defs.update(defines or {})
    res = build_firmware(b, out, extra_sources=[str(f) for f in gen.files],
                         include_dirs=[str(gen.out_dir)], defines=defs, with_runtime=True,
                         test_build=test_build, werror=werror, force=force)
    bf = res.by_file
    model_c = next((v for k, v in bf.items() if k.endswith("/model.c") or k == "ext/model.c"),
                   dict(flash=0, ram=0, code=0))
    runtime = sum(v["flash"] for k, v in bf.items() if k.startswith("runtime/"))
    stack = bf.get("(stack)", {}).get("ram", 0)
    d = describe(m)
    flash = dict(total=res.flash_used, weights=gen.weight_bytes,
                 model_tables=model_c["flash"] - model_c.get("code", 0) - gen.weight_bytes,
                 model_code=model_c.get("code", 0), runtime=runtime, budget=res.flash_budget)
    flash["app"] = res.flash_used - model_c["flash"] - runtime
    flash["model_constants"] = model_c["flash"] - model_c.get("code", 0)
    flash["code"] = res.flash_used - flash["model_constants"]
    ram = dict(total=res.ram_used, model=model_c["ram"], state=gen.ram_bytes, stack=stack,
               static_other=res.ram_used - model_c["ram"] - stack, budget=res.ram_budget)
    rep = dict(model=os.fspath(model), kind="snn", board=b.name, kernels=variant,
               model_hash=gen.model_hash, build_dir=str(res.build_dir), elf=str(res.elf),
               cached=res.cached, flash=flash, ram=ram, layers=len(m.qgraph.ops),
               options=m.options.to_json(), warnings=list(m.warnings),
               calibration=dict(file=m.calib_path, samples=int(len(m.calib_x))),
               snn=dict(input_bytes=gen.input_size, output_bytes=gen.output_size,
                        encoding=gen.encoding, timesteps=T, spiking_layers=gen.spiking_layers,
                        synapse_layers=gen.synapse_layers, param_bytes=d["param_bytes"]),
               build=res.to_json())
    rep["_gen"], rep["_build"] = gen, res
    return rep


def format_snn_report(rep: dict) -> str:
    f, r, s, o = rep["flash"], rep["ram"], rep["snn"], rep["options"]

    def kb(n):
        return f"{n:,} B"
    lines = [f"model: {rep['model']} ({rep['model_hash'][:16]}), spiking, {rep['layers']} "
             f"layers, T={s['timesteps']}, {s['encoding']} input, int{o['state_bits']} state, "
             f"kernels: {rep['kernels']}",
             f"board: {rep['board']}" + ("  (unchanged, reused)" if rep.get("cached") else ""),
             f"firmware: {rep['elf']}",
             f"flash: {kb(f['total'])} of {kb(f['budget'])}: model constants "
             f"{kb(f['model_constants'])} (weights {kb(f['weights'])}, neuron parameters and "
             f"tables {kb(f['model_tables'])}), code {kb(f['code'])} (generated "
             f"{kb(f['model_code'])}, runtime {kb(f['runtime'])}, app+board {kb(f['app'])})",
             f"RAM: {kb(r['total'])} of {kb(r['budget'])}: model {kb(r['model'])} (neuron "
             f"state {kb(r['state'])}), stack {kb(r['stack'])}, other static "
             f"{kb(r['static_other'])}",
             f"device I/O: {s['input_bytes']} B in, {s['output_bytes']} B out (spike counts, "
             f"per-layer spikes and input events)"]
    lines += [f"warning: {w}" for w in rep.get("warnings", [])]
    return "\n".join(lines)

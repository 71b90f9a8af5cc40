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
                         row_inplace=len(gen.plan.rows), reordered=gen.exec_order != sorted(gen.exec_order)),
               layers=len(graph.ops), build=res.to_json())
    tflm = {}
    if tfl_path:
        size = Path(tfl_path).stat().st_size
        rep["tflite_bytes"] = size
        if measure_tflm:
            tflm["arena_min_host"] = tflm_min_arena(Path(tfl_path).read_bytes())
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
    cmp = []
    if t.get("arena_min_host"):
        cmp.append(f"TFLite Micro minimum arena {kb(t['arena_min_host'])} (64-bit host "
                   f"interpreter)")
    ref = t.get("mcu_reference")
    if ref:
        cmp.append(f"{kb(ref['arena_cmsis_nn'])} on the Cortex-M4 (CMSIS-NN, REFERENCE §4)")
    if cmp:
        base = (ref or {}).get("arena_cmsis_nn") or t.get("arena_min_host")
        lines.append(f"arena vs TFLite Micro: {kb(r['arena'])} vs " + "; ".join(cmp)
                     + f" -> {100 * r['arena'] / base:.0f} %")
    return "\n".join(lines)


def check_model_fits(rep: dict) -> None:
    if rep["flash"]["total"] > rep["flash"]["budget"] or rep["ram"]["total"] > rep["ram"]["budget"]:
        raise BuildError(f"model does not fit board {rep['board']}: flash needs "
                         f"{rep['flash']['total']:,} B of {rep['flash']['budget']:,} B, RAM "
                         f"{rep['ram']['total']:,} B of {rep['ram']['budget']:,} B")

"""Model -> generated C for a firmware build (the `toolchain.build.model_sources` hook).

    srcs, incs, defs = firmware_sources("kws.tflite", board, "build/x/model", kernels="auto")
    build_firmware(board, "build/x", extra_sources=srcs, include_dirs=incs, defines=defs,
                   with_runtime=True)
"""
from __future__ import annotations

import os
from pathlib import Path

from toolchain.errors import BuildError, ConvertError
from toolchain.ir.graph import Graph

DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85")


def load_int8_graph(model, calib=None, out_dir=None, log=None) -> tuple[Graph, str | None]:
    """(int8 graph, path of a .tflite holding it or None). Float models (.onnx, .pt2,
    float .tflite) go through the `mcu convert` pipeline with `calib`."""
    if isinstance(model, Graph):
        if not model.is_quantized:
            raise ConvertError(f"graph '{model.name}' is a float model; quantize it first "
                               "(mcu convert MODEL --calib DATA.npz)")
        return model, None
    from converters import load_model
    path = os.fspath(model)
    g = load_model(path)
    if g.is_quantized:
        return g, path if path.lower().endswith(".tflite") else None
    if any(g.tensors[n].dtype not in ("int8", "float32") for n in g.inputs + g.outputs):
        raise ConvertError(f"{os.path.basename(path)} is {g.io_kind()}; mcu runs int8 "
                           "models: quantize the float model with mcu convert --calib")
    if calib is None:
        raise ConvertError(f"{os.path.basename(path)} is a float model: pass calibration "
                           f"inputs with --calib DATA.npz (array 'x') to quantize it, or "
                           f"convert it first with mcu convert {path} --calib DATA.npz")
    from converters.convert import convert
    conv_dir = Path(out_dir or ".") / "converted"
    res = convert(path, calib=calib, out_dir=conv_dir, log=log or (lambda m: None))
    tfl = Path(res.get("tflite") or conv_dir / "model.tflite")
    return load_model(tfl), str(tfl)


def resolve_kernels(kernels: str, board) -> str:
    """'portable' | 'dsp' | 'auto' -> the variant for `board` (auto: DSP where the core
    has the DSP extension; portable on the host board)."""
    core = (board.core or "").lower()
    has_dsp = core in DSP_CORES
    if kernels == "auto":
        return "dsp" if has_dsp else "portable"
    if kernels == "dsp" and not has_dsp and board.kind != "host":
        raise BuildError(f"--kernels dsp needs a core with the DSP extension; board "
                         f"{board.name} is a {board.core or 'unknown core'} (use portable)")
    if kernels not in ("portable", "dsp"):
        raise BuildError(f"unknown kernel variant '{kernels}'; use portable, dsp or auto")
    return kernels


def kernel_defines(variant: str, board) -> dict:
    if variant == "portable":
        return {"MCU_NO_DSP": 1}
    if board.kind == "host":
        return {"MCU_EMULATE_DSP": 1}   # DSP code paths with emulated intrinsics
    return {}


def timer_defines(board) -> dict:
    """[timing] counter = "dwt" in the board TOML: per-layer cycles from the DWT cycle
    counter (real Cortex-M3/M4/M7 boards; QEMU does not emulate it)."""
    counter = str((board.raw.get("timing") or {}).get("counter", "")).lower()
    return {"MCU_TIMER_DWT": 1} if counter == "dwt" else {}


def firmware_sources(model, board, out_dir, kernels: str = "auto", calib=None,
                     log=None, **gen_kw):
    """Generate C for `model` into out_dir; returns (sources, include_dirs, defines).
    The GenResult is left in `firmware_sources.last` for reports."""
    from toolchain.boards import load_board
    from toolchain.codegen.generate import generate
    board = load_board(board)   # a Board (from build_model, the CLI) passes through
    out_dir = Path(out_dir)
    graph, _ = load_int8_graph(model, calib, out_dir.parent, log)
    variant = resolve_kernels(kernels, board)
    if "name" not in gen_kw and not isinstance(model, Graph):
        gen_kw["name"] = Path(os.fspath(model)).stem
    gen = generate(graph, out_dir, kernels=variant, **gen_kw)
    firmware_sources.last = gen
    defs = dict(kernel_defines(variant, board))
    defs.update(timer_defines(board))
    defs["MCU_SCRATCH_SIZE"] = 64    # the link-test scratch stream: not needed beside a model
    return [str(f) for f in gen.files], [str(out_dir)], defs


firmware_sources.last = None

"""PyTorch front end: nn.Module or a saved torch.export program (.pt2) -> ONNX -> IR.

Export goes through torch.onnx with fixed shapes (no dynamic axes). For a live
module the TorchScript exporter is tried first (offline, ~0.2 s, folds
BatchNorm in eval mode); the dynamo exporter (needs onnxscript) is the
fallback and the only path for .pt2 files (an ExportedProgram cannot be
re-traced by TorchScript)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

from toolchain.errors import ConvertError
from toolchain.ir.graph import Graph


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "onnxscript", "torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _as_tuple(example_input):
    import numpy as np
    import torch
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    return tuple(torch.from_numpy(np.ascontiguousarray(a, np.float32))
                 if isinstance(a, np.ndarray) else a for a in args)


def torch_to_onnx(module, example_input, opset: int = 17):
    """-> onnx.ModelProto with the shapes of `example_input` fixed."""
    import onnx
    import torch
    args = _as_tuple(example_input)
    if isinstance(module, torch.export.ExportedProgram):
        return _dynamo(module, args, opset)
    was_training = module.training
    module.eval()
    try:
        f = io.BytesIO()
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(module, args, f, dynamo=False, opset_version=opset,
                                  do_constant_folding=True,
                                  input_names=["input"] if len(args) == 1 else None,
                                  output_names=["output"])
            return onnx.load_model_from_string(f.getvalue())
        except Exception as first:  # noqa: BLE001 - fall back to the dynamo exporter
            try:
                return _dynamo(module, args, max(opset, 18))
            except Exception as e:  # noqa: BLE001
                raise ConvertError(f"torch.onnx.export failed: {_line(first)}; dynamo exporter: "
                                   f"{_line(e)}") from None
    finally:
        module.train(was_training)


def _line(e):
    s = str(e).strip().splitlines()
    return s[0][:300] if s else type(e).__name__


def _dynamo(program, args, opset):
    import torch
    with _quiet():
        prog = torch.onnx.export(program, args, dynamo=True, opset_version=max(opset, 18),
                                 optimize=True, verbose=False)
    return prog.model_proto


def from_torch(module, example_input) -> Graph:
    """Convert a torch.nn.Module (or ExportedProgram) traced at `example_input`'s shape
    (NCHW for images) into a float IR graph (NHWC)."""
    from .onnx_frontend import from_onnx
    g = from_onnx(torch_to_onnx(module, example_input))
    g.name = type(module).__name__.lower()
    return g


def load_pt2(path) -> Graph:
    """A program saved with torch.export.save: its example inputs fix the shapes."""
    import torch
    from .onnx_frontend import from_onnx
    path = os.fspath(path)
    try:
        with _quiet():
            ep = torch.export.load(path)
    except FileNotFoundError:
        raise ConvertError(f"cannot read {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle errors of many kinds
        raise ConvertError(f"{path} is not a valid torch.export program (.pt2): {_line(e)}") \
            from None
    ex = getattr(ep, "example_inputs", None)
    if not ex or not ex[0]:
        raise ConvertError(f"{path} has no example inputs; save it with torch.export.export("
                           "module, (example,)) and torch.export.save")
    try:
        model = _dynamo(ep, tuple(ex[0]), 18)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"exporting {path} to ONNX failed: {_line(e)}") from None
    g = from_onnx(model)
    g.name = os.path.splitext(os.path.basename(path))[0]
    return g

"""Model front ends (ONNX, PyTorch, TFLite, NIR) into the IR, transforms, and writers."""
from __future__ import annotations

import os


def from_onnx(path_or_model):
    """ONNX file/bytes/ModelProto -> float IR graph (NHWC). See converters.onnx_frontend."""
    from .onnx_frontend import from_onnx as _f
    return _f(path_or_model)


def from_torch(module, example_input):
    """torch.nn.Module + example input (NCHW) -> float IR graph via torch.onnx.export."""
    from .torch_frontend import from_torch as _f
    return _f(module, example_input)


def load_model(path):
    """Read a model file into the IR, dispatching on the suffix: .onnx, .pt2 (torch.export
    program), .tflite (float or int8)."""
    from toolchain.errors import ConvertError
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if not os.path.exists(p):
        raise ConvertError(f"cannot read {p}: no such file")
    if ext == ".onnx":
        return from_onnx(p)
    if ext in (".pt2", ".pt", ".pth") :
        if ext != ".pt2":
            raise ConvertError(f"{p}: plain PyTorch checkpoints hold no graph; save the model "
                               "with torch.export.save (.pt2) or export it to ONNX")
        from .torch_frontend import load_pt2
        return load_pt2(p)
    if ext == ".tflite":
        from .tflite_reader import read_tflite
        return read_tflite(p)
    raise ConvertError(f"{p}: unknown model format '{ext}'; expected .onnx, .pt2 or .tflite")

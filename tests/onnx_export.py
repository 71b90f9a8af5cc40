"""A torch module to ONNX bytes the way the op tests need it: the TorchScript exporter
(dynamo=False), a fixed opset, its warnings silenced."""
from __future__ import annotations

import io
import warnings


def export_onnx(net, shape, opset: int = 17) -> bytes:
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(*shape),), f, dynamo=False, opset_version=opset)
    return f.getvalue()

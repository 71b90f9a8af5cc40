"""The model zoo in the suite: every architecture of toolchain/examples/zoo_models.py
(issue #12), exported to ONNX by our front end and quantized by our PTQ on random
calibration data, cached per session.

    for name in ZOO: g = zoo_int8(name)        # (float graph, int8 graph, NHWC calibration)
"""
from __future__ import annotations

import functools

import numpy as np

from toolchain.examples.zoo_models import ZOO, zoo_module  # noqa: F401  (re-exported)


@functools.lru_cache(maxsize=None)
def zoo_int8(name: str, seed: int = 0, n_calib: int = 24):
    """-> (float IR graph, int8 IR graph, calibration data in the IR layout: NHWC, or
    (N, 1, L, C) for (N, C, L) models)."""
    import torch

    from converters import from_torch
    from converters.quantize import quantize
    m, shape = zoo_module(name, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_calib,) + tuple(shape[1:])).astype(np.float32)
    g = from_torch(m, torch.from_numpy(x[:1]))
    layout = g.meta["input_layouts"][g.inputs[0]]
    if layout == "NCHW":
        xin = x.transpose(0, 2, 3, 1)                         # NCHW -> the IR's NHWC
    elif layout == "NCL":
        xin = x.transpose(0, 2, 1)[:, None]                   # (N, C, L) -> (N, 1, L, C)
    else:
        xin = x
    xin = np.ascontiguousarray(xin)
    assert xin.shape[1:] == tuple(g.t(g.inputs[0]).shape[1:]), (name, xin.shape)
    return g, quantize(g, xin), xin

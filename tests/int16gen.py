"""Random single-op int16-activation ("16x8") graphs for bit-exactness tests.

Each builder takes a random int8 graph from tests/opgen.py and turns it into its
16x8 form: activations int16 with zero point 0 and scale / 256 (the same real range),
int8 weights unchanged (FULLY_CONNECTED per tensor), biases int64 (occasionally
beyond int32, and int32 for some CONV_2D: TFLM accepts both there), SOFTMAX output
1/32768.

    g = make_random16(rng, "CONV_2D")
    feeds = random_feeds16(rng, g)
"""
from __future__ import annotations

import numpy as np

import opgen
from toolchain.ir.graph import Graph, Quant

OPS16 = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
         "MAX_POOL_2D", "SOFTMAX", "RESHAPE")


def to_int16(rng, g: Graph, bias32: bool = False) -> Graph:
    """The int16 form of an int8 single-op graph (module docstring)."""
    op = g.ops[0]
    for t in g.tensors.values():
        if t.is_const or t.dtype != "int8" or t.quant is None:
            continue
        s = float(np.float32(t.quant.scale[0] / 256.0))
        t.dtype, t.quant = "int16", Quant.per_tensor(s, 0)
    if op.type == "SOFTMAX":
        g.t(op.outputs[0]).quant = Quant.per_tensor(1.0 / 32768, 0)
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 2 \
            and op.inputs[2]:
        b = g.t(op.inputs[2])
        big = rng.random() < 0.2
        if bias32:
            data = b.data.astype(np.int64) * 256 + rng.integers(-128, 128, size=b.shape)
            b.data, b.dtype = np.clip(data, -2**31, 2**31 - 1).astype(np.int32), "int32"
        else:
            data = b.data.astype(np.int64) * 256 + rng.integers(-128, 128, size=b.shape)
            if big:
                data = data * int(rng.integers(1, 1 << 10))
            b.data, b.dtype = data.astype(np.int64), "int64"
        s = np.asarray(b.quant.scale, np.float64) / 256.0
        b.quant = Quant(np.asarray(s, np.float32).astype(np.float64),
                        np.zeros(s.shape, np.int64), b.quant.axis)
    return g


def make_random16(rng, op_type: str, **kw) -> Graph:
    if op_type == "FULLY_CONNECTED":
        kw.setdefault("per_channel", False)
    g = opgen.make_random(rng, op_type, **kw)
    return to_int16(rng, g, bias32=op_type == "CONV_2D" and rng.random() < 0.3)


def random_feeds16(rng, g: Graph) -> dict[str, np.ndarray]:
    feeds = {}
    for n in g.inputs:
        t = g.t(n)
        x = rng.integers(-32768, 32768, size=t.shape)
        if rng.random() < 0.3:      # small values too (softmax, activations near 0)
            x = x >> int(rng.integers(4, 12))
        feeds[n] = x.astype(np.int16)
    return feeds

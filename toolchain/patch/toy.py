"""A tiny hand-made int8 graph (no training, no front end) for tests and examples:
CONV_2D 3x3 (per-channel) + ReLU, DEPTHWISE_CONV_2D 3x3, RESHAPE, FULLY_CONNECTED,
SOFTMAX, on a [1, 6, 6, 1] input."""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph, Op, Quant, Tensor


def toy_int8_graph(seed: int = 0, c1: int = 4, classes: int = 5) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph(name=f"toy{seed}")

    def act(name, shape, s, zp):
        return g.add_tensor(Tensor(name, shape, "int8", Quant.per_tensor(s, zp)))

    def wt(name, shape, axis, base=0.02):
        n = shape[axis] if axis is not None else 1
        s = np.float32(base) * (1 + rng.random(n)).astype(np.float32)
        data = rng.integers(-127, 128, size=shape).astype(np.int8)
        return g.add_tensor(Tensor(name, shape, "int8",
                                   Quant(s.astype(np.float64), np.zeros(n, np.int64), axis), data))

    def bias(name, in_s, w):
        s = (in_s * w.quant.scale).astype(np.float32).astype(np.float64)
        n = s.size if w.quant.per_channel else w.shape[0]
        data = rng.integers(-2000, 2000, size=(n if s.size > 1 else w.shape[0],)).astype(np.int32)
        return g.add_tensor(Tensor(name, data.shape, "int32",
                                   Quant(s, np.zeros(s.size, np.int64),
                                         0 if s.size > 1 else None), data))

    act("x", (1, 6, 6, 1), 1 / 255, -128)
    w1 = wt("conv.w", (c1, 3, 3, 1), 0)
    bias("conv.b", 1 / 255, w1)
    act("a1", (1, 6, 6, c1), 0.05, -128)
    g.add_op(Op("CONV_2D", ["x", "conv.w", "conv.b"], ["a1"],
                dict(padding="SAME", stride_h=1, stride_w=1, fused_activation="RELU")))
    w2 = wt("dw.w", (1, 3, 3, c1), 3, 0.01)
    bias("dw.b", 0.05, w2)
    act("a2", (1, 6, 6, c1), 0.1, 0)
    g.add_op(Op("DEPTHWISE_CONV_2D", ["a1", "dw.w", "dw.b"], ["a2"],
                dict(padding="SAME", depth_multiplier=1)))
    act("a3", (1, 36 * c1), 0.1, 0)
    g.add_op(Op("RESHAPE", ["a2"], ["a3"], dict(new_shape=[1, 36 * c1])))
    w3 = wt("fc.w", (classes, 36 * c1), None, 0.0005)
    bias("fc.b", 0.1, w3)
    act("logits", (1, classes), 0.2, 0)
    g.add_op(Op("FULLY_CONNECTED", ["a3", "fc.w", "fc.b"], ["logits"]))
    act("probs", (1, classes), 1 / 256, -128)
    g.add_op(Op("SOFTMAX", ["logits"], ["probs"], dict(beta=1.0)))
    g.inputs, g.outputs = ["x"], ["probs"]
    return g


def toy_fc_graph(seed: int = 0, n_in: int = 64, classes: int = 4) -> Graph:
    """One FULLY_CONNECTED layer (per-tensor int8 weights) + SOFTMAX on a [1, n_in]
    input in [-1, 1] (zero point 0, so an all-zero feature stays exactly 0)."""
    rng = np.random.default_rng(seed)
    g = Graph(name=f"toyfc{seed}")
    g.add_tensor(Tensor("x", (1, n_in), "int8", Quant.per_tensor(1 / 127, 0)))
    ws = 0.01
    g.add_tensor(Tensor("fc.w", (classes, n_in), "int8", Quant.per_tensor(ws, 0),
                        rng.integers(-60, 61, (classes, n_in)).astype(np.int8)))
    bs = float(np.float32(ws / 127))
    g.add_tensor(Tensor("fc.b", (classes,), "int32", Quant.per_tensor(bs, 0),
                        np.zeros(classes, np.int32)))
    g.add_tensor(Tensor("logits", (1, classes), "int8", Quant.per_tensor(0.05, 0)))
    g.add_op(Op("FULLY_CONNECTED", ["x", "fc.w", "fc.b"], ["logits"]))
    g.add_tensor(Tensor("probs", (1, classes), "int8", Quant.per_tensor(1 / 256, -128)))
    g.add_op(Op("SOFTMAX", ["logits"], ["probs"], dict(beta=1.0)))
    g.inputs, g.outputs = ["x"], ["probs"]
    return g

"""Train an int8 IR graph's weights in PyTorch, in the IR's own layout.

`GraphModule(graph)` executes the graph in float (NHWC, TFLite semantics) with one
`nn.Parameter` per patchable weight-store tensor (store index -> dequantized weights
or bias, IR shape), so trained values map back to the store with no layout
conversion, for any int8 model the toolchain reads. Activations are fake-quantized
(straight-through) with the deployed scales and zero points, which a patch cannot
change. With `weight_fake_quant` (default) the conv/fc weights are also seen through
int8 in the *deployed* scales (clamped to ±127·scale, rounded straight-through), so
training learns what the patch can express; the latent float weights are
re-quantized in those scales when the patch is built. `forward` returns the logits (the input of a trailing SOFTMAX).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError

from .make import dequantize_store
from .store import store_order


def _fq(x, s, zp):
    q = torch.clamp(torch.round(x / s) + zp, -128, 127)
    return x + ((q - zp) * s - x).detach()


def _act(y, a):
    if a in (None, "NONE"):
        return y
    if a == "RELU":
        return torch.relu(y)
    if a == "RELU6":
        return torch.clamp(y, 0, 6)
    if a == "RELU_N1_TO_1":
        return torch.clamp(y, -1, 1)
    raise IRError(f"unsupported fused activation {a}")


class GraphModule(nn.Module):
    def __init__(self, graph: Graph, fake_quant: bool = True, weight_fake_quant: bool = True):
        super().__init__()
        self.graph = graph
        self.fake_quant = fake_quant
        self.weight_fake_quant = weight_fake_quant
        self.wscale = {}
        for i, n in enumerate(store_order(graph)):
            t = graph.tensors[n]
            if t.dtype == "int8" and t.quant is not None:
                shape = [1] * len(t.shape)
                if t.quant.per_channel:
                    shape[t.quant.axis] = -1
                self.wscale[i] = torch.tensor(t.quant.scale.reshape(shape), dtype=torch.float32)
        floats = dequantize_store(graph)
        self.order = store_order(graph)
        self.index = {n: i for i, n in enumerate(self.order)}
        self.params = nn.ParameterDict({str(i): nn.Parameter(torch.tensor(f, dtype=torch.float32))
                                        for i, f in floats.items()})
        self.consts = {}
        for t in graph.constants():
            if t.name not in self.index or str(self.index[t.name]) not in self.params:
                self.consts[t.name] = t.data
        ops = list(graph.ops)
        self.final_softmax = bool(ops) and ops[-1].type == "SOFTMAX"
        self.ops = ops[:-1] if self.final_softmax else ops

    def store_floats(self) -> dict[int, np.ndarray]:
        return {int(k): p.detach().double().numpy() for k, p in self.params.items()}

    def _val(self, env, name):
        if name in env:
            return env[name]
        i = self.index.get(name)
        if i is not None and str(i) in self.params:
            p = self.params[str(i)]
            if self.weight_fake_quant and i in self.wscale:
                s = self.wscale[i]
                w = torch.maximum(torch.minimum(p, 127 * s), -127 * s)
                return w + (torch.round(w / s) * s - w).detach()
            return p
        t = self.graph.tensors[name]
        d = t.data.astype(np.float64)
        if t.quant is not None:
            shape = [1] * d.ndim
            if t.quant.per_channel:
                shape[t.quant.axis] = -1
            d = (d - t.quant.zero_point.reshape(shape)) * t.quant.scale.reshape(shape)
        return torch.tensor(d, dtype=torch.float32)

    def _q(self, name, y):
        t = self.graph.tensors[name]
        if not self.fake_quant or t.quant is None or t.dtype != "int8":
            return y
        return _fq(y, float(t.quant.scale[0]), float(t.quant.zero_point[0]))

    def forward(self, x):
        g = self.graph
        x = torch.as_tensor(x, dtype=torch.float32)
        env = {g.inputs[0]: self._q(g.inputs[0], x)}
        for op in self.ops:
            y = self._op(op, env)
            y = _act(y, op.attrs.get("fused_activation", "NONE"))
            env[op.outputs[0]] = self._q(op.outputs[0], y)
        return env[self.ops[-1].outputs[0]]

    def _op(self, op, env):
        """The op's PyTorch form from its registry module (OpDef.torch, toolchain/ir/ops)."""
        d = ops.get(op.type)
        if d is None or d.torch is None:
            raise IRError(f"layer '{op.name}' ({op.type}): not supported for patch training")
        x = self._val(env, op.inputs[0])
        return d.torch(self, op, x, lambda i: self._val(env, op.inputs[i])
                       if len(op.inputs) > i and op.inputs[i] else None)


def g_shape(graph: Graph, name: str):
    return graph.tensors[name].shape

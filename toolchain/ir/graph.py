"""The one IR: every front end produces a Graph, every back end consumes one.

Conventions (they follow TFLite so int8 semantics need no translation):
- Layout is NHWC for activations. CONV_2D weights are OHWI, DEPTHWISE_CONV_2D
  weights are 1HWO (O = in_channels * depth_multiplier), FULLY_CONNECTED
  weights are [out, in].
- Op types are TFLite builtin names (CONV_2D, ADD, ...). Attributes use
  snake_case TFLite option names, see the op registry (toolchain/ir/ops).
- Quantization: real = scale * (q - zero_point); per tensor (axis None) or per
  channel along `axis`.
- Constant tensors hold their data (`data`); activations have data None.

Extension points for later work: `Tensor.meta` carries per-tensor extras (e.g.
a nested row-sparse weight store); `Graph.state` lists tensors that persist
across invocations (e.g. LIF membrane potentials of spiking layers).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.errors import IRError  # noqa: F401  (defined at the bottom layer; re-exported here)

DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")

# Attributes each op type may carry, with defaults: filled by the op registry
# (toolchain/ir/ops, one module per op family) when toolchain.ir is imported.
from .model_hash import model_hash  # noqa: E402
from .op_tables import OP_ATTRS  # noqa: E402,F401  (re-exported)

FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


@dataclass
class Quant:
    scale: np.ndarray                # float, shape [1] or [channels]
    zero_point: np.ndarray           # int, same shape as scale
    axis: int | None = None          # None: per tensor

    def __post_init__(self):
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if self.scale.shape != self.zero_point.shape:
            raise IRError(f"quantization scale {self.scale.shape} and zero point "
                          f"{self.zero_point.shape} differ in shape")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.scale.size > 1

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> "Quant":
        return cls(np.array([scale]), np.array([zero_point]), None)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    quant: Quant | None = None
    data: np.ndarray | None = None   # set for constants (weights, biases, shapes)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPES:
            raise IRError(f"tensor '{self.name}': unsupported dtype {self.dtype}")
        if self.data is not None:
            self.data = np.asarray(self.data)
            if tuple(self.data.shape) != self.shape:
                raise IRError(f"tensor '{self.name}': data shape {self.data.shape} "
                              f"!= declared {self.shape}")

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    type: str
    inputs: list[str]                # tensor names; "" for an absent optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""                   # layer name, for error messages and reports

    def attr(self, key: str) -> Any:
        if key in self.attrs:
            return self.attrs[key]
        return OP_ATTRS.get(self.type, {}).get(key)


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str = "model"
    state: list[str] = field(default_factory=list)   # tensors kept across invocations
    meta: dict[str, Any] = field(default_factory=dict)

    # -- building -----------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        if t.name in self.tensors:
            raise IRError(f"duplicate tensor name '{t.name}'")
        self.tensors[t.name] = t
        return t

    def add_op(self, op: Op) -> Op:
        if not op.name:
            op.name = f"{op.type.lower()}_{len(self.ops)}"
        self.ops.append(op)
        return op

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            name, i = f"{base}_{i}", i + 1
        return name

    # -- queries ------------------------------------------------------------
    def t(self, name: str) -> Tensor:
        return self.tensors[name]

    def producers(self) -> dict[str, Op]:
        return {o: op for op in self.ops for o in op.outputs}

    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                if i:
                    out.setdefault(i, []).append(op)
        return out

    def constants(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.is_const]

    @property
    def is_quantized(self) -> bool:
        """int8 (or int16-activation, "16x8") inputs and outputs."""
        return all(self.tensors[n].dtype == "int8" or (self.tensors[n].dtype == "int16"
                                                       and self.tensors[n].quant is not None)
                   for n in self.inputs + self.outputs)

    def io_kind(self) -> str:
        """What a non-int8 model is, for messages: "a float model", "a uint8 model (TFLite's
        legacy asymmetric quantization)", ..."""
        kinds = sorted({self.tensors[n].dtype for n in self.inputs + self.outputs} - {"int8"})
        if not kinds or kinds == ["float32"]:
            return "a float model"
        if "uint8" in kinds:
            return "a uint8 model (TFLite's legacy asymmetric quantization)"
        return f"a model with {'/'.join(kinds)} inputs or outputs"

    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.constants())

    def num_params(self) -> int:
        return sum(t.size for t in self.constants() if t.dtype != "int32" or t.size > 4)

    def model_hash(self) -> str:
        """The model's identity, shared by host, firmware, HIL and patches: SHA-256 over a
        canonical structure descriptor (ops, attributes, wiring, shapes, float32-rounded
        quantization; no names) and every constant byte in weight-store order. Defined in
        toolchain.ir.model_hash (docs/patch-format.md) so a device can recompute it from its
        weights alone; a .tflite round trip keeps it."""
        return model_hash(self)

    def topo_check(self) -> None:
        """Ops must be in execution order: every input is a graph input, a constant,
        state, or produced by an earlier op."""
        known = set(self.inputs) | set(self.state) | {t.name for t in self.constants()}
        for op in self.ops:
            for i in op.inputs:
                if i and i not in known:
                    raise IRError(f"layer '{op.name}' ({op.type}) reads '{i}' before it is produced")
            known.update(op.outputs)
        for o in self.outputs:
            if o not in known:
                raise IRError(f"graph output '{o}' is never produced")

    def summary(self) -> dict[str, Any]:
        ops: dict[str, int] = {}
        for op in self.ops:
            ops[op.type] = ops.get(op.type, 0) + 1

        def q(n):
            t = self.tensors[n]
            d = dict(name=n, shape=list(t.shape), dtype=t.dtype)
            if t.quant is not None and t.quant.scale.size == 1:
                d.update(scale=float(t.quant.scale[0]), zero_point=int(t.quant.zero_point[0]))
            return d
        return dict(name=self.name, ops=ops, num_ops=len(self.ops), params=self.num_params(),
                    weight_bytes=self.weight_bytes(),
                    inputs=[q(n) for n in self.inputs], outputs=[q(n) for n in self.outputs],
                    model_hash=self.model_hash())

"""A model client that needs no device: runs the numpy reference on the host and can
misbehave on purpose (a corrupted layer, a device that stops answering, another
model's hash). For unit tests of the HIL runner, the reports and the divergence finder.

It has the interface of the firmware's model client:
    info() -> DeviceInfo, infer(input_bytes) -> (output_bytes, instructions),
    layer_times() -> [instructions per layer], layer_output(k) -> bytes."""
from __future__ import annotations

import numpy as np

from toolchain.errors import LinkError
from toolchain.ir import ops
from toolchain.ir.graph import Graph
from toolchain.link.link import DeviceInfo
from toolchain.link.protocol import INFO_F_HAS_MODEL


class FakeModelClient:
    def __init__(self, graph: Graph, *, corrupt_layer: int | None = None,
                 corrupt_positions=(0,), corrupt_xor: int = 0x01,
                 die_after: int | None = None,
                 model_hash: str | None = None, board: str = "fake",
                 instructions_per_mac: int = 3):
        self.graph = graph
        self.corrupt_layer = corrupt_layer
        self.corrupt_positions = tuple(corrupt_positions)
        self.corrupt_xor = corrupt_xor
        self.die_after = die_after
        self.calls = 0
        self._hash = model_hash or graph.model_hash()
        self.board = board
        self._last: dict[str, np.ndarray] = {}
        self._ipm = instructions_per_mac
        in_t, out_ts = graph.t(graph.inputs[0]), [graph.t(n) for n in graph.outputs]
        self._in_shape = in_t.shape
        # int8, or int16 little endian (16x8 models): as the firmware's wire format
        self._idt = np.dtype("<i2") if in_t.dtype == "int16" else np.dtype(np.int8)
        self._in_size = in_t.size * self._idt.itemsize
        self._out_size = sum(t.size * (2 if t.dtype == "int16" else 1) for t in out_ts)

    def info(self) -> DeviceInfo:
        self._alive()
        return DeviceInfo(proto_version=(1, 0), board=self.board, build_id="fake",
                          model_hash=self._hash, model_name=self.graph.name,
                          flash_budget=1 << 20, ram_budget=256 << 10,
                          flash_used=20000 + self.graph.weight_bytes(), ram_used=12000,
                          max_payload=1024, tick_hz=25_000_000, instructions_per_tick=40,
                          model_input_size=self._in_size, model_output_size=self._out_size,
                          flags=INFO_F_HAS_MODEL)

    def _alive(self):
        if self.die_after is not None and self.calls >= self.die_after:
            raise LinkError("device at fake:// did not answer MODEL_INFER after 4 tries "
                            "(2 s each); check that it is running the mcu firmware")

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        g = self.graph
        vals = {g.inputs[0]: x.reshape(self._in_shape)}
        for c in g.constants():
            vals[c.name] = c.data
        for k, op in enumerate(g.ops):
            out = ops.get(op.type).reference(g, op, vals)
            ot = g.t(op.outputs[0])
            out = np.ascontiguousarray(out).reshape(ot.shape).astype(ot.dtype)
            if k == self.corrupt_layer:
                flat = out.reshape(-1).copy()
                for p in self.corrupt_positions:
                    flat[p] = np.array(int(flat[p]) ^ self.corrupt_xor).astype(flat.dtype)
                out = flat.reshape(ot.shape)
            vals[op.outputs[0]] = out
        return vals

    def infer(self, data: bytes) -> tuple[bytes, int]:
        self._alive()
        self.calls += 1
        if len(data) != self._in_size:
            raise LinkError(f"fake device: input is {len(data)} B, model takes {self._in_size} B")
        x = np.frombuffer(bytes(data), self._idt).astype(self._idt.newbyteorder("="))
        self._last = self._run(x)
        out = b"".join(self._wire(n) for n in self.graph.outputs)
        return out, int(sum(self.layer_times()))

    def layer_times(self) -> list[int]:
        g = self.graph
        out = []
        for op in g.ops:
            d = ops.get(op.type)
            n = g.t(op.outputs[0]).size
            if d is not None and d.macs is not None:
                n = max(n, d.macs(g, op))
            elif len(op.inputs) > 1 and op.inputs[1] and g.t(op.inputs[1]).is_const:
                w = g.t(op.inputs[1])       # a constant operand: a cost per row of it
                n *= max(1, w.size // max(1, w.shape[0]))
            out.append(self._ipm * n + 200)
        return out

    def layer_output(self, k: int) -> bytes:
        self._alive()
        op = self.graph.ops[k]
        return self._wire(op.outputs[0])

    def _wire(self, name: str) -> bytes:
        dt = "<i2" if self.graph.t(name).dtype == "int16" else np.int8
        return self._last[name].astype(dt).tobytes()

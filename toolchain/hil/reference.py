"""The host oracle for a HIL run.

Plain int8 models run in the tflite-micro interpreter (the golden source, as the
contract says); models TFLM cannot run (sparse subnets, state, ops it lacks) run in
toolchain.ir.reference, which is held to the same bit-exact bar. Intermediates
(for the divergence finder) always come from toolchain.ir.reference with
keep_intermediates=True: they equal TFLM's."""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph


def _needs_numpy(graph: Graph) -> str | None:
    """Why TFLM cannot be the oracle for this graph, or None."""
    if graph.state:
        return "the model keeps state across invocations"
    for t in graph.tensors.values():
        if t.meta and any(k in t.meta for k in ("sparse", "nested_sparse", "subnets")):
            return f"tensor '{t.name}' is a nested sparse weight store"
    return None


class HostReference:
    """reference = HostReference(graph, tflite_bytes=None); out = reference(xq_sample)."""

    def __init__(self, graph: Graph, tflite_bytes: bytes | None = None,
                 prefer: str = "auto"):
        self.graph = graph
        self.name = "numpy reference"
        self.why_not_tflm = _needs_numpy(graph) if prefer != "numpy" else "asked for numpy"
        self._tflm = None
        if self.why_not_tflm is None:
            try:
                from toolchain.tflm_oracle import TflmRunner
                if tflite_bytes is None:
                    from converters.tflite_writer import write_tflite
                    tflite_bytes = write_tflite(graph)
                self._tflm = TflmRunner(tflite_bytes)
                self.name = "tflite-micro"
            except Exception as e:  # noqa: BLE001 - fall back to the numpy oracle, say why
                self.why_not_tflm = f"tflite-micro cannot run it ({type(e).__name__}: " \
                                    f"{str(e).splitlines()[0][:100] if str(e) else ''})"
        in_t = graph.t(graph.inputs[0])
        self.in_shape = tuple(in_t.shape)
        self.in_dtype = np.dtype(np.int16 if in_t.dtype == "int16" else np.int8)
        outs = [graph.t(n).dtype for n in graph.outputs]
        self.out_dtype = np.dtype(np.int16 if "int16" in outs else np.int8)

    def __call__(self, xq: np.ndarray) -> np.ndarray:
        """One sample (int8 or int16, the model's input shape without or with batch 1) ->
        the model's outputs concatenated, flattened, int8 or int16 (what the device
        returns)."""
        x = np.asarray(xq).astype(self.in_dtype).reshape(self.in_shape)
        if self._tflm is not None:
            outs = self._tflm.run([x])
        else:
            from toolchain.ir import reference
            r = reference.run(self.graph, {self.graph.inputs[0]: x})
            outs = [r[n] for n in self.graph.outputs]
        return np.concatenate([np.asarray(o).astype(self.out_dtype).reshape(-1) for o in outs])

    def intermediates(self, xq: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation tensor of one sample (numpy reference; equals TFLM's)."""
        from toolchain.ir import reference
        x = np.asarray(xq).astype(self.in_dtype).reshape(self.in_shape)
        return reference.run(self.graph, {self.graph.inputs[0]: x}, keep_intermediates=True)

"""Run a .tflite model (bytes) or an IR Graph in the tflite-micro Python interpreter:
the golden source of int8 outputs.

    interp = TflmRunner(model_bytes)          # or TflmRunner.from_graph(graph)
    outs = interp.run(x)                      # x: array or list/dict of arrays
    run_tflite(model_bytes, x) -> list[np.ndarray]
    run_graph(graph, feeds) -> dict[name, np.ndarray]

TFLM reuses the input buffer for intermediates, so the input is set before
every invoke.

Above the converters, not in the IR: running a Graph means writing it as a .tflite
(converters.tflite_writer), and the IR knows no front end or writer.
"""
from __future__ import annotations

import numpy as np


class TflmRunner:
    def __init__(self, model: bytes, arena_size: int | None = None,
                 preserve_all_tensors: bool = False):
        """preserve_all_tensors: keep every intermediate readable with tensor(i)
        (TFLM's kPreserveAllTensors; uses more arena)."""
        from tflite_micro.python.tflite_micro import runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
        self.model = bytes(model)
        if arena_size is None:
            arena_size = max(len(self.model) * 4, 1 << 20)
            if preserve_all_tensors:
                arena_size *= 4
        cfg = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all_tensors
               else runtime.InterpreterConfig.kAllocationRecording)
        self._interp = runtime.Interpreter.from_bytes(self.model, arena_size=arena_size,
                                                      intrepreter_config=cfg)
        sg = schema.Model.GetRootAsModel(self.model, 0).Subgraphs(0)
        self.num_inputs = sg.InputsLength()
        self.num_outputs = sg.OutputsLength()
        self.num_tensors = sg.TensorsLength()

    def tensor(self, index: int) -> np.ndarray:
        """Tensor `index` of subgraph 0 after invoke (needs preserve_all_tensors)."""
        d = self._interp.GetTensor(index, 0)
        if isinstance(d, dict):
            d = d["tensor_data"]
        return np.array(d, copy=True)

    @classmethod
    def from_graph(cls, graph, arena_size: int | None = None) -> "TflmRunner":
        from converters.tflite_writer import write_tflite
        return cls(write_tflite(graph), arena_size)

    def input_details(self, i: int = 0) -> dict:
        return self._interp.get_input_details(i)

    def run(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        for i, x in enumerate(inputs):
            d = self._interp.get_input_details(i)
            x = np.ascontiguousarray(np.asarray(x).astype(d["dtype"]).reshape(d["shape"]))
            self._interp.set_input(x, i)
        self._interp.invoke()
        return [np.array(self._interp.get_output(i), copy=True) for i in range(self.num_outputs)]


def run_tflite(model: bytes, inputs, arena_size: int | None = None) -> list[np.ndarray]:
    return TflmRunner(model, arena_size).run(inputs)


def run_graph(graph, feeds, arena_size: int | None = None) -> dict[str, np.ndarray]:
    """Write `graph` with converters.tflite_writer and run it in TFLM; feeds as for
    toolchain.ir.reference.run."""
    if isinstance(feeds, np.ndarray):
        feeds = {graph.inputs[0]: feeds}
    r = TflmRunner.from_graph(graph, arena_size)
    outs = r.run([feeds[n] for n in graph.inputs])
    return {n: o.reshape(graph.t(n).shape) for n, o in zip(graph.outputs, outs)}

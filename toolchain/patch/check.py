"""Does the device run exactly a given model? Hash and outputs on fixed inputs."""
from __future__ import annotations

import numpy as np


def fixed_inputs(graph, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """n deterministic int8 inputs for the graph's first input."""
    t = graph.t(graph.inputs[0])
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=t.shape).astype(np.int8) for _ in range(n)]


def reference_outputs(graph, xs) -> list[bytes]:
    from toolchain.ir.reference import run
    return [run(graph, x)[graph.outputs[0]].tobytes() for x in xs]


def device_outputs(link, xs) -> list[bytes]:
    from toolchain.link.model import ModelClient
    mc = ModelClient(link)
    return [mc.infer(x.tobytes())[0] for x in xs]


def check_outputs(link, graph, n: int = 8, seed: int = 0, ref=None) -> tuple[bool, int, str]:
    """(ok, inputs, one-line message): the device's model hash is graph's store hash and
    its outputs on n fixed inputs equal the reference interpreter's bytes."""
    from toolchain.link.model import ModelClient
    from toolchain.patch.store import store_hash
    want = store_hash(graph)
    got = ModelClient(link).info(refresh=True).model_hash
    if got != want:
        return False, 0, f"device model {got} is not {want[:16]}… (hash differs)"
    xs = fixed_inputs(graph, n, seed)
    ref = ref or reference_outputs(graph, xs)
    outs = device_outputs(link, xs)
    bad = [i for i, (a, b) in enumerate(zip(outs, ref)) if a != b]
    if bad:
        return False, n, f"outputs differ from the reference on {len(bad)} of {n} fixed inputs"
    return True, n, (f"outputs on {n} fixed inputs: bit-exact with the reference interpreter "
                     f"(model {want[:16]})")

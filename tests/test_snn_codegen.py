"""Generated SNN model C (toolchain/snn/codegen.py): device spike counts equal the numpy
fixed-point reference on every sample, compiled natively (ctypes), on the host board over
the link, and on QEMU mps2-an386."""
import ctypes as C
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
nir = pytest.importorskip("nir")

from toolchain.codegen.host import APP, HARNESS, RUNTIME  # noqa: E402
from toolchain.snn import fixed_point as fp  # noqa: E402
from toolchain.snn.codegen import generate_snn  # noqa: E402
from toolchain.snn.float_sim import to_ir_layout  # noqa: E402

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
T = 10


class NativeModel:
    """model.c + runtime + a board_ticks harness as one shared library."""

    def __init__(self, gen, build_dir: Path):
        (build_dir / "harness.c").write_text(HARNESS)
        so = build_dir / "snn_model.so"
        cmd = ["cc", "-O1", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror",
               "-DMCU_TICK_HZ=1000000000", "-DMCU_NO_DSP", f"-I{RUNTIME}", f"-I{APP}",
               str(build_dir / "harness.c"), *map(str, sorted(RUNTIME.glob("*.c"))),
               *map(str, gen.files), "-o", str(so)]
        subprocess.run(cmd, check=True)
        self.lib = C.CDLL(str(so))
        self.gen = gen
        self.lib.model_input.restype = C.POINTER(C.c_uint8)
        self.lib.model_output.restype = C.POINTER(C.c_uint8)
        self.lib.model_invoke.restype = C.c_uint8

    def infer(self, data: bytes) -> bytes:
        C.memmove(self.lib.model_input(), data, len(data))
        assert self.lib.model_invoke() == 0
        return C.string_at(self.lib.model_output(), self.gen.output_size)


def _mlp_graph(rng, sizes=(16, 24, 6), reset="subtract", cuba=False, li=False):
    from converters.nir_frontend import from_nir
    nodes = {"input": nir.Input(np.array([sizes[0]]))}
    keys = ["input"]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        nodes[f"fc{i}"] = nir.Affine(rng.normal(size=(b, a)) * 2.5 / np.sqrt(a),
                                     rng.normal(size=b) * 0.1)
        tau = 1e-4 / (1 - rng.uniform(0.7, 0.95, b))
        last = i == len(sizes) - 2
        if last and li:
            nodes[f"n{i}"] = nir.LI(tau=tau, r=tau / 1e-4, v_leak=np.zeros(b))
        elif last and cuba:
            ts = 1e-4 / (1 - rng.uniform(0.5, 0.9, b))
            nodes[f"n{i}"] = nir.CubaLIF(tau_syn=ts, tau_mem=tau, r=tau / 1e-4, v_leak=np.zeros(b),
                                         v_threshold=np.full(b, 0.5), v_reset=np.zeros(b),
                                         w_in=ts / 1e-4)
        else:
            nodes[f"n{i}"] = nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(b),
                                     v_threshold=rng.uniform(0.5, 1.0, b), v_reset=np.zeros(b))
        keys += [f"fc{i}", f"n{i}"]
    nodes["output"] = nir.Output(np.array([sizes[-1]]))
    keys.append("output")
    return from_nir(nir.NIRGraph(nodes, list(zip(keys, keys[1:])), type_check=False), reset=reset)


def _conv_graph():
    from snn_common import conv_net, export
    from converters.nir_frontend import from_nir
    return from_nir(export(conv_net("subtract", seed=5, in_shape=(2, 8, 8), ch=4), (2, 8, 8)),
                    reset="subtract")


def _check(gen, q, x, run, enc):
    """Every sample: device counts, per-layer spikes and events == run_fixed."""
    want = fp.run_fixed(q, x, T)
    xir = to_ir_layout(q, x, steps=enc == "events")
    for i in range(len(x)):
        counts, spikes, events = gen.unpack_output(run(gen.pack_input(xir[i], index=i)))
        np.testing.assert_array_equal(counts, want.counts[i], err_msg=f"sample {i}")
        assert spikes == {k: int(v[i]) for k, v in want.layer_spikes.items()}
        assert events == {k: int(v[i]) for k, v in want.events.items()}
    return want


CASES = {
    "mlp-constant-s32": lambda rng: (_mlp_graph(rng), "constant", 32),
    "mlp-rate-s16": lambda rng: (_mlp_graph(rng, reset="zero"), "rate", 16),
    "cuba-events-s32": lambda rng: (_mlp_graph(rng, cuba=True), "events", 32),
    "li-readout-s16": lambda rng: (_mlp_graph(rng, li=True), "constant", 16),
    "conv-pool-constant-s16": lambda rng: (_conv_graph(), "constant", 16),
    "conv-pool-rate-s32": lambda rng: (_conv_graph(), "rate", 32),
}


def _data(g, enc, rng, n):
    shape = tuple(g.meta["snn"]["input_nir_shape"])
    if enc == "events":
        return (rng.random((n, T, *shape)) < 0.3)
    return rng.random((n, *shape)).astype(np.float32)


@needs_cc
@pytest.mark.parametrize("case", sorted(CASES))
def test_native_equals_fixed_reference(case, tmp_path):
    rng = np.random.default_rng(abs(hash(case)) % 2 ** 32)
    g, enc, bits = CASES[case](rng)
    x = _data(g, enc, rng, 12)
    q = fp.quantize(g, x, T, encoding=enc, state_bits=bits, seed=9)
    gen = generate_snn(q, tmp_path / "model", T)
    lib = NativeModel(gen, tmp_path)
    want = _check(gen, q, x, lib.infer, enc)
    assert np.abs(want.counts).sum() > 0

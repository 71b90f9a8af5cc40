"""Generated SNN model C (toolchain/snn/codegen.py): device spike counts equal the numpy
fixed-point reference on every sample, compiled natively (ctypes), on the host board over
the link, and on QEMU mps2-an386."""
import ctypes as C
import shutil
import subprocess
import sys
from pathlib import Path
import zlib

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

    def __init__(self, gen, build_dir: Path, kernels: str = "portable"):
        (build_dir / "harness.c").write_text(HARNESS)
        so = build_dir / "snn_model.so"
        cmd = ["cc", "-O1", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror",
               "-DMCU_TICK_HZ=1000000000",
               "-DMCU_NO_DSP" if kernels == "portable" else "-DMCU_EMULATE_DSP",
               f"-I{RUNTIME}", f"-I{APP}",
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
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_native_equals_fixed_reference(case, kernels, tmp_path):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    g, enc, bits = CASES[case](rng)
    x = _data(g, enc, rng, 12)
    q = fp.quantize(g, x, T, encoding=enc, state_bits=bits, seed=9)
    gen = generate_snn(q, tmp_path / "model", T)
    lib = NativeModel(gen, tmp_path, kernels)
    want = _check(gen, q, x, lib.infer, enc)
    assert np.abs(want.counts).sum() > 0


# ----------------------------------------------------------------- firmware on devices
KERNEL_DEFINES = {"portable": {"MCU_NO_DSP": 1}, "dsp": {}}   # the M4 has the DSP extension


def _device_run(board, gen, q, x, enc, build_dir, kernels="portable"):
    from toolchain.build import build_firmware
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    fw = build_firmware(board, build_dir, extra_sources=[str(f) for f in gen.files],
                        include_dirs=[str(gen.out_dir)], with_runtime=True, werror=True,
                        defines={"MCU_SCRATCH_SIZE": 64, **KERNEL_DEFINES[kernels]})
    with start_device(board, fw) as dev:
        client = ModelClient(dev.link(timeout=2.0, retries=3))
        info = client.info()
        assert info.model_hash == gen.model_hash
        counts = []

        def run(data):
            out, count = client.infer(data)
            counts.append(count)
            return out
        want = _check(gen, q, x, run, enc)
        layers = client.layer_times()
    return want, counts, layers, fw


@pytest.fixture(scope="module")
def trained_q():
    from snn_common import export, train_digits_mlp
    from converters.nir_frontend import from_nir
    net, (xtr, ytr, xte, yte) = train_digits_mlp(timesteps=T)
    g = from_nir(export(net, (64,)), reset="subtract")
    q = fp.quantize(g, xtr[:300], T, state_bits=16)
    return q, xte[:40], yte[:40]


@needs_cc
def test_trained_mlp_on_host_board(trained_q, tmp_path):
    q, x, y = trained_q
    gen = generate_snn(q, tmp_path / "model", T, name="digits_snn")
    want, counts, layers, fw = _device_run("host", gen, q, x, "constant", tmp_path / "fw")
    assert (want.counts.argmax(1) == y).mean() > 0.8
    assert all(c > 0 for c in counts) and len(layers) == len(q.ops)


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
@pytest.mark.parametrize("model", ["mlp-rate", "conv-pool"])
def test_on_qemu_m4(model, kernels, trained_q, tmp_path):
    if model == "mlp-rate":
        _, x, _ = trained_q
        g = _mlp_graph(np.random.default_rng(1), sizes=(64, 32, 10))
        x = x[:16]
        q = fp.quantize(g, x, T, encoding="rate", state_bits=16, seed=3)
        enc = "rate"
    else:
        g = _conv_graph()
        x = np.random.default_rng(2).random((10, 2, 8, 8)).astype(np.float32)
        q = fp.quantize(g, x, T, state_bits=16)
        enc = "constant"
    gen = generate_snn(q, tmp_path / "model", T)
    want, counts, _, fw = _device_run("mps2-an386", gen, q, x, enc, tmp_path / "fw", kernels)
    assert want.counts.sum() > 0
    assert len(set(counts)) >= 1 and min(counts) > 0     # instructions per sample


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_event_driven_cost_falls_with_sparsity(kernels, tmp_path):
    """Event input on mps2-an386 (-icount): the first synapse layer's instructions grow
    with the input spike count; the slope is the cost of one synaptic event."""
    from toolchain.build import build_firmware
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    rng = np.random.default_rng(4)
    g = _mlp_graph(rng, sizes=(64, 32, 10))
    rates = [0.02, 0.1, 0.3, 0.6]
    x = np.concatenate([rng.random((2, T, 64)) < r for r in rates])
    q = fp.quantize(g, x, T, encoding="events", state_bits=16)
    gen = generate_snn(q, tmp_path / "model", T)
    fw = build_firmware("mps2-an386", tmp_path / "fw", extra_sources=[str(f) for f in gen.files],
                        include_dirs=[str(gen.out_dir)], with_runtime=True, werror=True,
                        defines={"MCU_SCRATCH_SIZE": 64, **KERNEL_DEFINES[kernels]})
    want = fp.run_fixed(q, x, T)
    cost, ev = [], []
    with start_device("mps2-an386", fw) as dev:
        client = ModelClient(dev.link(timeout=2.0, retries=3))
        for i in range(len(x)):
            out, _ = client.infer(gen.pack_input(x[i]))
            counts, _, events = gen.unpack_output(out)
            np.testing.assert_array_equal(counts, want.counts[i])
            cost.append(client.layer_times()[0])
            ev.append(events["fc0"])
    assert all(a < b for a, b in zip(cost[::2], cost[2::2]))      # grows with the rate
    slope = np.polyfit(ev, cost, 1)[0] / 32                       # per event and output
    print(f"instructions per synaptic event ({kernels}, M4): {slope:.2f}")
    assert 1 < slope < (12 if kernels == "portable" else 4), slope

"""DSP variants of the int16-activation CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
kernels (runtime/int16_dsp.c): bit-exact with tflite-micro.

- host, DSP code paths with emulated intrinsics (MCU_EMULATE_DSP) and the portable
  build: seeded random shapes (odd channel counts, padding, stride, dilation, batches,
  int32 and int64 biases), the int32-block boundaries (channels / features > 508, taps
  adding up past 508 products), the worst-case sums (all weights -128, all inputs
  -32768: the int64 sum is beyond int32), the fallbacks (depth multiplier 2, more
  than 508 depthwise taps, odd output counts);
- QEMU M4: a model with all three kernels (odd channels) built with the DSP kernels,
  byte-exact with tflite-micro (tests/qemu_model.py)."""
from __future__ import annotations

import shutil
import zlib

import numpy as np
import pytest

import int16gen
from qemu_model import assert_bit_exact_on_qemu, needs_qemu
from toolchain.tflm_oracle import run_graph

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RANDOM_CASES = 24


def _rng(*key):
    return np.random.default_rng([zlib.crc32(repr(key).encode())])


def _edge_cases():
    """(label, graph, worst): shapes at the int32-block boundaries and the fallbacks."""
    out = []
    r = _rng("edge")
    conv = lambda **kw: int16gen.make_random16(r, "CONV_2D", **kw)          # noqa: E731
    dw = lambda **kw: int16gen.make_random16(r, "DEPTHWISE_CONV_2D", **kw)  # noqa: E731
    fc = lambda **kw: int16gen.make_random16(r, "FULLY_CONNECTED", **kw)    # noqa: E731
    out.append(("conv cin 600 (a tap over two blocks)", conv(n=1, h=3, w=3, cin=600, cout=3,
                                                            kh=1, kw=1, stride=1), False))
    out.append(("conv cin 130 3x3 (blocks across taps)", conv(n=1, h=4, w=4, cin=130, cout=5,
                                                             kh=3, kw=3, stride=1,
                                                             padding="SAME"), False))
    out.append(("conv worst sums", conv(n=1, h=3, w=3, cin=600, cout=2, kh=1, kw=1, stride=1,
                                        act="NONE"), True))
    out.append(("conv 3x3 worst sums", conv(n=1, h=5, w=5, cin=70, cout=3, kh=3, kw=3,
                                            stride=1, padding="SAME", act="NONE"), True))
    out.append(("dw multiplier 2 (portable)", dw(n=1, cin=5, multiplier=2), False))
    out.append(("dw cin 13 (4 + 4 + 4 + 1)", dw(n=1, h=6, w=6, cin=13, multiplier=1, kh=3,
                                               kw=3, stride=1, padding="SAME"), False))
    out.append(("dw 23x23 taps (portable)", dw(n=1, h=23, w=23, cin=4, multiplier=1, kh=23,
                                               kw=23, stride=1, padding="VALID"), False))
    out.append(("dw worst sums", dw(n=1, h=10, w=10, cin=8, multiplier=1, kh=10, kw=10,
                                    stride=1, padding="VALID", act="NONE"), True))
    out.append(("fc k 1100 out 7", fc(batch=2, k=1100, out=7), False))
    out.append(("fc worst sums", fc(batch=1, k=1300, out=3, act="NONE"), True))
    return out


def _worst(g):
    """All weights -128 and (in the feeds) all inputs -32768: the largest int64 sums."""
    op = g.ops[0]
    w = g.t(op.inputs[1])
    w.data = np.full(w.shape, -128, np.int8)
    return g


@needs_cc
@pytest.mark.parametrize("variant", ["dsp", "portable"])
def test_int16_dsp_kernels_bitexact_with_tflm_host(variant, tmp_path):
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    cases = []
    for op_type in OPS:
        for s in range(RANDOM_CASES if variant == "dsp" else 6):
            rng = _rng(op_type, s)
            cases.append((f"{op_type} #{s}", rng, int16gen.make_random16(rng, op_type), False))
    for label, g, worst in _edge_cases():
        cases.append((label, _rng(label), _worst(g) if worst else g, worst))
    gens = [generate(g, tmp_path / f"m{i}", kernels=variant, prefix=f"m{i}_")
            for i, (_, _, g, _) in enumerate(cases)]
    lib = HostModels(gens, variant, tmp_path)
    n_big = 0
    for (label, rng, g, worst), gen in zip(cases, gens):
        for k in range(2):
            feeds = int16gen.random_feeds16(rng, g)
            if worst:
                feeds = {n: np.full_like(v, -32768 if k == 0 else 32767)
                         for n, v in feeds.items()}
            want = run_graph(g, feeds)
            got = lib.run(gen, [feeds[n] for n in g.inputs])
            for n, o in zip(g.outputs, got):
                assert o.dtype == np.int16 and o.tobytes() == want[n].reshape(o.shape).tobytes(), \
                    f"{variant}: {label}, feed {k}"
        if worst:
            n_big += 1
    assert n_big == 4


@needs_qemu
def test_int16_dsp_model_on_qemu_m4(tmp_path):
    """conv (3 -> 5, 3x3) -> depthwise 3x3 (5) -> conv 1x1 (5 -> 7) -> FC (7 outputs):
    every int16 DSP kernel with odd channels, on the Cortex-M4 build."""
    torch = pytest.importorskip("torch")
    from converters import from_torch
    from converters.quantize import quantize
    torch.manual_seed(5)
    nn = torch.nn
    m = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(5, 5, 3, padding=1, groups=5), nn.ReLU(),
                      nn.Conv2d(5, 7, 1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(7 * 9 * 9, 7)).eval()
    g = from_torch(m, torch.zeros(1, 3, 9, 9))
    calib = np.random.default_rng(1).standard_normal((32, 9, 9, 3)).astype(np.float32)
    q = quantize(g, calib, activations="int16")
    assert_bit_exact_on_qemu(q, tmp_path, "dsp", n=3)

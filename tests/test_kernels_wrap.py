"""Biases at the ends of int32 (issue #15): an authenticated weight patch may set any
int32 bias, and TFLite Micro then relies on int32 wrap-around when it adds the bias to
the accumulator. Our kernels do that addition with defined (unsigned, modulo 2^32)
arithmetic (`mcu_add_wrap`, runtime/README.md "Arithmetic that wraps on purpose"): the
bytes must still equal tflite-micro's and the numpy reference's, for CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED on every code path (portable, DSP with emulated
intrinsics, prepared `_pre` entries; the C requantize loops and the full-range
assembly/C-model stores; odd K tails), on the host and on the emulated Cortex-M4.

MCU_KERNELS_SANITIZE=1 builds the host kernels with UBSan (signed overflow aborts):
tests/test_sanitized_host.py runs this module that way in a subprocess."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kernel_host import host_lib, run_op  # noqa: E402
from kernel_qemu import build_image, emit_cases, have_toolchain, run_image  # noqa: E402
from opgen import OP_BUILDERS, random_feeds  # noqa: E402

from toolchain.ir import reference  # noqa: E402
from toolchain.tflm_oracle import run_graph  # noqa: E402

I32_MAX, I32_MIN = 2**31 - 1, -2**31
EXTREMES = [I32_MAX, I32_MIN, I32_MAX - 1, I32_MIN + 1, I32_MAX - 3000, I32_MIN + 3000]

# (op, builder kwargs): every DSP path and tail the bias add reaches
SHAPES = [
    ("CONV_2D", dict(cin=1, cout=12, kh=10, kw=4, stride=2, padding="SAME", h=13, w=10)),
    ("CONV_2D", dict(cin=3, cout=7, kh=3, kw=3, stride=1, padding="SAME", h=6, w=5)),   # K % 4
    ("CONV_2D", dict(cin=16, cout=12, kh=1, kw=1, stride=1, padding="VALID", h=5, w=5,
                     act="NONE")),                                   # assembly store loop
    ("CONV_2D", dict(cin=8, cout=9, kh=3, kw=3, stride=2, padding="SAME", h=7, w=7)),
    ("DEPTHWISE_CONV_2D", dict(cin=16, multiplier=1, kh=3, kw=3, stride=1, padding="SAME",
                               h=6, w=5)),                           # 3x3 path, C store
    ("DEPTHWISE_CONV_2D", dict(cin=20, multiplier=1, kh=3, kw=3, stride=2, padding="SAME",
                               h=8, w=8, act="NONE")),               # 3x3 path, asm store
    ("DEPTHWISE_CONV_2D", dict(cin=13, multiplier=1, kh=3, kw=3, stride=2, padding="SAME",
                               h=9, w=7)),                           # generic, C % 4 tail
    ("DEPTHWISE_CONV_2D", dict(cin=8, multiplier=2, kh=3, kw=3, stride=1, padding="VALID",
                               h=6, w=6)),                           # portable fallback
    ("FULLY_CONNECTED", dict(k=256, out=12)),
    ("FULLY_CONNECTED", dict(k=63, out=9, per_channel=True)),        # odd K tail, O % 4
    ("FULLY_CONNECTED", dict(k=1001, out=7, batch=3, per_channel=True)),  # blocks + partials
    ("FULLY_CONNECTED", dict(k=131, out=70, batch=3)),               # several sum chunks
]


def _extreme_cases(seed: int = 31):
    """(name, graph, feeds, tflite-micro output) with the biases set to int32 extremes."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (t, kw) in enumerate(SHAPES):
        g = OP_BUILDERS[t](rng, bias=True, **kw)
        op = g.ops[0]
        b = g.t(op.inputs[2])
        n = b.data.size
        vals = np.array([EXTREMES[(j + i) % len(EXTREMES)] for j in range(n)], np.int64)
        b.data = vals.astype(np.int32).reshape(b.data.shape)
        feeds = random_feeds(rng, g)
        want = run_graph(g, feeds)[g.outputs[0]]
        out.append((f"{t}_{i}", g, feeds, want))
    return out


@pytest.fixture(scope="module")
def cases():
    return _extreme_cases()


def test_extreme_biases_reference_equals_tflm(cases):
    """The numpy reference wraps where TFLM does (qm.wrap_int32 inside
    MultiplyByQuantizedMultiplier), and the cases really wrap: with the sum added in
    int64 (no wrap) many outputs would differ."""
    wrapped = 0
    for name, g, feeds, want in cases:
        got = reference.run(g, feeds)[g.outputs[0]]
        assert np.array_equal(got, want), f"{name}: reference != tflite-micro"
        # the same op with the bias clamped away from the ends (no wrap possible) differs
        b = g.t(g.ops[0].inputs[2])
        keep = b.data.copy()
        b.data = np.clip(keep.astype(np.int64), -2**30, 2**30).astype(np.int32)
        wrapped += int(np.sum(reference.run(g, feeds)[g.outputs[0]] != want))
        b.data = keep
    assert wrapped > 0


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_extreme_biases_host_kernels(cases, variant):
    lib = host_lib(variant)
    for name, g, feeds, want in cases:
        fns = ["_portable", "_dsp", "", "_pre"] if variant == "dsp" else ["", "_pre"]
        if g.ops[0].type == "FULLY_CONNECTED":
            fns = [f for f in fns if f != "_pre"]
        for fn in fns:
            y = run_op(lib, g, g.ops[0], feeds, fn).reshape(want.shape)
            assert np.array_equal(y, want), \
                f"{name} ({variant}{fn}): {int(np.sum(y != want))}/{want.size} bytes differ"


@pytest.mark.skipif(not have_toolchain(),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_extreme_biases_on_qemu_m4(cases, tmp_path):
    elf = build_image(emit_cases(cases), "m4", tmp_path)
    rc, results, text = run_image(elf, "m4")
    bad = [r for r in results if r[3]]
    assert not bad, f"mismatching kernel calls on the M4: {bad[:10]}"
    assert rc == 0, text[-2000:]
    assert {r[0] for r in results} == {c[0] for c in cases}
    assert {r[1] for r in results} >= {"portable", "dsp"}


def test_accumulator_overflow_refused_at_build():
    """Sums of products before the bias never wrap: a layer with more products per
    output than int32 holds (65,793 at |w * (x + offset)| <= 128 * 255) is refused."""
    from toolchain.codegen.generate import MAX_PRODUCTS, check_graph
    from toolchain.ir.graph import IRError
    rng = np.random.default_rng(0)
    check_graph(OP_BUILDERS["FULLY_CONNECTED"](rng, k=MAX_PRODUCTS, out=1))
    g = OP_BUILDERS["FULLY_CONNECTED"](rng, k=MAX_PRODUCTS + 1, out=1)
    with pytest.raises(IRError, match=r"65,794 products per output can overflow"):
        check_graph(g)

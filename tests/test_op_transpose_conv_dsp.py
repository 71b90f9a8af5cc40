"""The DSP TRANSPOSE_CONV int8 kernel (runtime/transpose_conv.c, mcu_transpose_conv_s8_dsp:
SMLAD, two output channels at a time, the taps of a pixel listed once) equals tflite-micro
byte for byte: seeded random geometries with input channels 1..21 (every residue mod 4),
odd output channels, strides 1-3 (also unequal), SAME / VALID, other output shapes, no
bias, full-range zero points; more taps per pixel than the list holds (portable
fallback). On the host with emulated intrinsics, and on QEMU M4 (bare-metal kernel
image: both variants on the device, instruction counts compared)."""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import opgen  # noqa: E402
from kernel_host import host_lib, run_op  # noqa: E402
from kernel_qemu import build_image, emit_cases, have_toolchain, run_image  # noqa: E402

from toolchain.tflm_oracle import run_graph  # noqa: E402


def _cases(n_random: int):
    out = []
    for s in range(n_random):
        rng = np.random.default_rng([zlib.crc32(b"tconv-dsp"), s])
        out.append((rng, opgen.make_transpose_conv(rng, cin=1 + s % 21,
                                                   cout=int(rng.integers(1, 10)))))
    rng = np.random.default_rng(11)
    for kw in (dict(cin=16, cout=8, h=8, w=8, kh=4, kw=4, stride=2, padding="SAME"),
               dict(cin=7, cout=5, kh=9, kw=9, stride=1, h=3, w=3),     # 81 taps: fallback
               dict(cin=33, cout=3, kh=3, kw=3, stride=2, bias=False),
               dict(cin=4, cout=1, kh=2, kw=2, stride=3, per_channel=False)):
        out.append((rng, opgen.make_transpose_conv(rng, n=1, **kw)))
    return out


def test_transpose_conv_dsp_bitexact_host():
    libs = [host_lib("portable"), host_lib("dsp")]
    for rng, g in _cases(63):
        feeds = opgen.random_feeds(rng, g)
        want = run_graph(g, feeds)["y"]
        for lib in libs:
            assert np.array_equal(run_op(lib, g, g.ops[0], feeds), want), g.ops[0].attrs


@pytest.mark.skipif(not have_toolchain(), reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_transpose_conv_dsp_on_qemu_m4(tmp_path):
    cases = []
    for i, (rng, g) in enumerate(_cases(12)):
        f = opgen.random_feeds(rng, g)
        cases.append((f"tconv_{i}", g, f, run_graph(g, f)["y"]))
    elf = build_image(emit_cases(cases), "m4", tmp_path)
    rc, results, text = run_image(elf, "m4")
    assert rc == 0 and results, text[-2000:]
    assert not [r for r in results if r[3]], results
    ticks = {(r[0], r[1]): r[2] for r in results}
    assert {v for _, v in ticks} == {"portable", "dsp"}
    # the 8x8x16 -> 16x16x8 k4 s2 layer: the DSP kernel needs well under 60 % of the
    # portable one's instructions (measured 0.47x)
    k = "tconv_12"
    assert ticks[(k, "dsp")] < 0.6 * ticks[(k, "portable")], ticks

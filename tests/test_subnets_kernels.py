"""Row-sparse C kernels (firmware_templates/runtime/sparse.c): host portable and
DSP (emulated intrinsics) builds, and on QEMU the Cortex-M4 and M7 builds (assembly
row loop), equal the numpy reference and tflite-micro on each level's
dense-with-zeros .tflite, byte for byte: random shapes, levels (dense level
included), row lengths not multiples of 4, rows longer than 256 (segments),
strides, dilation, padding, batches."""
import numpy as np
import pytest

from kernel_host import host_lib
from kernel_qemu import build_image, have_toolchain, run_image
from subnets_cases import make_case, random_case
from subnets_kernels import emit_sparse_cases, run_host
from toolchain.tflm_oracle import run_tflite
from toolchain.subnets import reference as R

VARIANTS = [("portable", "_portable"), ("portable", ""), ("dsp", "_dsp"), ("dsp", "")]


def _fixed(rng):
    return [
        make_case(rng, "CONV_2D", h=5, w=4, cin=64, cout=5, kh=3, kw=3, levels=(0, 0.5, 0.75, 0.9)),
        make_case(rng, "CONV_2D", h=6, w=6, cin=70, cout=3, kh=3, kw=2, stride=2,
                  levels=(0.2, 0.5)),                               # K = 420: segments
        make_case(rng, "CONV_2D", h=9, w=7, cin=3, cout=7, kh=3, kw=3, stride=2, dilation=2,
                  padding="SAME", act="RELU", levels=(0.5, 0.75, 0.9)),
        make_case(rng, "CONV_2D", h=5, w=5, cin=13, cout=9, kh=1, kw=1, levels=(0, 0.6)),
        make_case(rng, "CONV_2D", n=2, h=3, w=11, cin=5, cout=4, kh=1, kw=3, stride=3,
                  padding="VALID", levels=(0.3, 0.9)),
        make_case(rng, "FULLY_CONNECTED", batch=3, k=600, out=5, levels=(0, 0.5, 0.9)),
        make_case(rng, "FULLY_CONNECTED", batch=5, k=256, out=4, levels=(0, 0.5)),
        make_case(rng, "FULLY_CONNECTED", batch=1, k=63, out=9, levels=(0.5, 0.75, 0.9)),
        # one dense level, no implicit group: 128-column segments (256 > 255 per segment)
        make_case(rng, "FULLY_CONNECTED", batch=2, k=300, out=4, levels=(0.0,)),
        # > 255 entries per row: 64-bit accumulators flushed mid-row
        make_case(rng, "CONV_2D", h=4, w=5, cin=47, cout=3, kh=3, kw=3, levels=(0.05, 0.1)),
        make_case(rng, "CONV_2D", h=3, w=9, cin=4, cout=6, kh=2, kw=3, dilation=2,
                  padding="SAME", levels=(0.0, 0.5)),
        make_case(rng, "CONV_2D", h=4, w=4, cin=40, cout=3, kh=3, kw=3,
                  levels=(0.0, 0.5, 0.9), implicit_dense=False),      # explicit dense level
    ]


def _expected(c, k):
    g = c.shared.graphs[k]
    p = R.level_params(g, g.ops[0])
    fn = R.sparse_conv2d if g.ops[0].type == "CONV_2D" else R.sparse_fully_connected
    ref = fn(c.store, k, c.x[k], p)
    want = run_tflite(c.shared.tflite(k), c.x[k])[0].reshape(ref.shape)
    assert ref.tobytes() == want.tobytes()
    return want


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(2026)
    return _fixed(rng) + [random_case(rng, t) for _ in range(20)
                          for t in ("CONV_2D", "FULLY_CONNECTED")]


def test_host_kernels_bitexact(cases):
    libs = {v: host_lib(v) for v in ("portable", "dsp")}
    for c in cases:
        for k in range(len(c.levels)):
            want = _expected(c, k)
            for lib, fn in VARIANTS:
                got = run_host(libs[lib], c, k, fn)
                assert got.tobytes() == want.tobytes(), (lib, fn, c.levels, k, c.store.shape)


@pytest.mark.qemu
@pytest.mark.skipif(not have_toolchain(), reason="arm-none-eabi-gcc / qemu-system-arm missing")
@pytest.mark.parametrize("cpu", ["m4", "m7"])
def test_qemu_kernels_bitexact(cases, cpu, tmp_path):
    vec = [(f"c{i}L{k}", c, k, _expected(c, k).reshape(-1))
           for i, c in enumerate(cases) for k in range(len(c.levels))]
    elf = build_image(emit_sparse_cases(vec, dense=True), cpu, tmp_path)
    rc, results, text = run_image(elf, cpu)
    bad = [r for r in results if r[3]]
    assert not bad, f"mismatching sparse kernel calls: {bad[:10]}"
    assert rc == 0, text[-2000:]
    assert len(results) == 3 * len(vec)          # portable, DSP, dense reference kernel

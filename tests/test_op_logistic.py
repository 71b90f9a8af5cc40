"""LOGISTIC int8: the numpy math (quant_math.logistic_params / logistic_int8) equals
TFLite Micro byte for byte on single-op graphs written by our writer, over random
input scales and zero points and all 256 input values; the C kernels
(mcu_logistic_s8, mcu_logistic_s8_table + mcu_lut_s8) equal the numpy math on the
host and on the emulated Cortex-M4; an ONNX Sigmoid model converts, quantizes and
runs in TFLM."""
import ctypes as C
import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from qemu_model import assert_bit_exact_on_qemu, needs_qemu  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from kernel_host import CFLAGS, RUNTIME, host_lib  # noqa: E402

from converters.tflite_reader import read_tflite  # noqa: E402
from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.ir import quant_math as qm  # noqa: E402
from toolchain.ir.graph import Graph, Op, Quant, Tensor  # noqa: E402
from toolchain.tflm_oracle import TflmRunner, run_graph  # noqa: E402

ALL_INT8 = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
EDGE_SCALES = [2.0 ** -28, 2.0 ** -12, 2.0 ** -9, 1 / 256, 1 / 255, 0.0078125, 0.05, 0.1, 0.5,
               1.0, 2.0, 4.0, 7.99, 8.0, 16.0, 100.0]


def _f32(x) -> float:
    return float(np.float32(x))


def logistic_graph(scale, zp, shape=(1, 256), out_scale=1 / 256, out_zp=-128) -> Graph:
    g = Graph(name="logistic")
    g.add_tensor(Tensor("x", tuple(shape), "int8", Quant.per_tensor(_f32(scale), int(zp))))
    g.add_tensor(Tensor("y", tuple(shape), "int8", Quant.per_tensor(_f32(out_scale), out_zp)))
    g.add_op(Op("LOGISTIC", ["x"], ["y"], {}, name="y"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def random_quants(seed: int, n: int):
    """(scale, zero point) pairs: log-uniform scales 2^-12..16 (float32), any zp,
    then the edge scales with random zero points."""
    rng = np.random.default_rng(seed)
    out = [(_f32(np.exp2(rng.uniform(-12, 4))), int(rng.integers(-128, 128))) for _ in range(n)]
    out += [(_f32(s), int(rng.integers(-128, 128))) for s in EDGE_SCALES]
    out += [(_f32(s), zp) for s in (0.05, 0.1) for zp in (-128, 0, 127)]
    return out


# --------------------------------------------------------------------------- numpy vs TFLM
def test_params_prepare():
    # frexp(0.05f * 2^27): mantissa of the float32 scale, exponent 23
    zp, m, sh, r = qm.logistic_params(0.05, 3)
    assert (zp, sh) == (3, 23)
    assert m == int(np.float32(0.05).astype(np.float64) * 2 ** 27 / 2 ** 23 * 2 ** 31)
    assert r == (15 << 27) >> 23 == 240
    assert qm.logistic_params(2.0 ** -9, 0)[1:] == (1 << 30, 19, 15 << 8)
    assert qm.logistic_params(4.0, 0)[2:] == (30, 1)
    assert qm.logistic_params(8.0, 0)[2:] == (31, 0)        # radius 0: everything saturates
    with pytest.raises(ValueError, match="LOGISTIC: input scale"):
        qm.logistic_params(1e-9, 0)
    with pytest.raises(ValueError, match="> 0"):
        qm.logistic_params(0.0, 0)
    assert qm.LOGISTIC_QUANT == (1 / 256, -128)


def test_numpy_matches_float_sigmoid_roughly():
    x = ALL_INT8
    for s, zp in [(0.05, 3), (0.02, -100), (0.1, 0)]:
        y = qm.logistic_int8(x, *qm.logistic_params(s, zp)).astype(np.float64)
        want = 256.0 / (1.0 + np.exp(-(x.astype(np.float64) - zp) * _f32(s))) - 128
        assert np.max(np.abs(y - np.clip(want, -128, 127))) <= 1.0


def test_numpy_bitexact_with_tflm_all_inputs():
    """200 random input quantizations + edge scales, each on all 256 int8 values."""
    x = ALL_INT8.reshape(1, 256)
    for s, zp in random_quants(20261201, 200):
        want = run_graph(logistic_graph(s, zp), {"x": x})["y"]
        got = qm.logistic_int8(x, *qm.logistic_params(s, zp))
        assert got.dtype == np.int8 and got.shape == want.shape
        assert np.array_equal(got, want), \
            f"scale {s!r} zp {zp} params {qm.logistic_params(s, zp)}: " \
            f"{int(np.sum(got != want))} of 256 differ"


def test_numpy_bitexact_4d_random_inputs():
    rng = np.random.default_rng(3)
    for _ in range(10):
        s, zp = _f32(np.exp2(rng.uniform(-9, 2))), int(rng.integers(-128, 128))
        g = logistic_graph(s, zp, shape=(1, 5, 7, 3))
        x = rng.integers(-128, 128, size=(1, 5, 7, 3)).astype(np.int8)
        assert np.array_equal(qm.logistic_int8(x, *qm.logistic_params(s, zp)),
                              run_graph(g, {"x": x})["y"])


def test_table_is_the_function():
    for s, zp in random_quants(5, 20):
        p = qm.logistic_params(s, zp)
        t = qm.logistic_table(s, zp)
        assert t.shape == (256,) and t.dtype == np.int8
        assert np.array_equal(t[ALL_INT8.view(np.uint8)], qm.logistic_int8(ALL_INT8, *p))
    with pytest.raises(ValueError, match="shape"):
        qm.lut_s8_table(lambda x: x[:10])


def test_tflm_output_quantization_rules():
    """TFLM checks only the output zero point (-128); the output scale is not checked
    and the bytes are always in units of 1/256."""
    x = ALL_INT8.reshape(1, 256)
    want = qm.logistic_int8(x, *qm.logistic_params(0.05, 3))
    assert np.array_equal(run_graph(logistic_graph(0.05, 3, out_scale=0.01), {"x": x})["y"], want)
    with pytest.raises(RuntimeError):
        run_graph(logistic_graph(0.05, 3, out_zp=0), {"x": x})


def test_tflite_roundtrip():
    g = read_tflite(write_tflite(logistic_graph(0.05, 3, shape=(1, 4, 4, 2))))
    assert [(op.type, op.attrs) for op in g.ops] == [("LOGISTIC", {})]
    assert g.t(g.outputs[0]).quant.zero_point[0] == -128


# --------------------------------------------------------------------------- C on the host
def _p(a, ctype=C.c_int8):
    return a.ctypes.data_as(C.POINTER(ctype))


def c_logistic(lib, x, p):
    x = np.ascontiguousarray(x, np.int8)
    y = np.full(x.shape, 0x5A, np.int8)
    lib.mcu_logistic_s8(_p(x), _p(y), C.c_int32(x.size), *map(C.c_int32, p))
    return y


def c_table(lib, p):
    t = np.zeros(256, np.int8)
    lib.mcu_logistic_s8_table(_p(t), *map(C.c_int32, p))
    return t


def c_lut(lib, x, table, out=None):
    x = np.ascontiguousarray(x, np.int8)
    y = np.full(x.shape, 0x5A, np.int8) if out is None else out
    lib.mcu_lut_s8(_p(x), _p(y), C.c_int32(x.size), _p(np.ascontiguousarray(table, np.int8)))
    return y


@pytest.fixture(scope="module", params=["portable", "dsp"])
def lib(request):
    return host_lib(request.param)


def test_c_kernels_match_numpy(lib):
    rng = np.random.default_rng(11)
    for s, zp in random_quants(77, 300):
        p = qm.logistic_params(s, zp)
        want = qm.logistic_int8(ALL_INT8, *p)
        assert np.array_equal(c_logistic(lib, ALL_INT8, p), want), (s, zp, p)
        t = qm.logistic_table(s, zp)
        assert np.array_equal(c_table(lib, p), t), (s, zp, p)
        assert np.array_equal(c_lut(lib, ALL_INT8, t), want), (s, zp, p)
        x = rng.integers(-128, 128, size=int(rng.integers(1, 40))).astype(np.int8)
        assert np.array_equal(c_lut(lib, x, t), qm.logistic_int8(x, *p))


def test_c_kernels_in_place_and_sizes(lib):
    p = qm.logistic_params(0.04, -7)
    t = qm.logistic_table(0.04, -7)
    rng = np.random.default_rng(2)
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 1031):
        x = rng.integers(-128, 128, size=n).astype(np.int8)
        want = qm.logistic_int8(x, *p)
        buf = x.copy()
        c_lut(lib, buf, t, out=buf)
        assert np.array_equal(buf, want), n
        buf = x.copy()
        lib.mcu_logistic_s8(_p(buf), _p(buf), C.c_int32(n), *map(C.c_int32, p))
        assert np.array_equal(buf, want), n
        y = np.full(n + 4, 0x33, np.int8)
        lib.mcu_lut_s8(_p(x), _p(y), C.c_int32(n), _p(t))
        assert np.array_equal(y[:n], want) and np.all(y[n:] == 0x33), n   # writes size bytes only


@pytest.mark.parametrize("flags", [["-std=c99", "-pedantic"], ["-std=c99", "-pedantic", "-O3"]])
def test_c_file_is_warning_free(tmp_path, flags):
    cc = shutil.which("cc") or "gcc"
    subprocess.run([cc, *[f for f in CFLAGS if f not in ("-shared", "-fPIC")], *flags, "-c",
                    f"-I{RUNTIME}", str(RUNTIME / "activations.c"), "-o", str(tmp_path / "a.o")],
                   check=True)
    if shutil.which("arm-none-eabi-gcc"):
        for cpu in ("cortex-m0", "cortex-m4"):
            subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99",
                            "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffreestanding",
                            f"-I{RUNTIME}", "-c", str(RUNTIME / "activations.c"), "-o",
                            str(tmp_path / f"a_{cpu}.o")], check=True)


# --------------------------------------------------------------------------- C on QEMU M4
def _carr(name, a, ctype="int8_t"):
    a = np.asarray(a).reshape(-1)
    return (f"static const {ctype} {name}[{a.size}] __attribute__((aligned(4))) = "
            f"{{{','.join(str(int(v)) for v in a)}}};\n")


def qemu_vectors(quants) -> str:
    """harness_run_cases(): per quantization, mcu_logistic_s8 on all 256 values,
    mcu_logistic_s8_table, and mcu_lut_s8 with the Python-built table."""
    src = ['#include <stdint.h>\n#include "mcu_kernels.h"\n',
           "void harness_report(const char *, const char *, uint32_t, int32_t);\n"
           "int32_t harness_compare(const int8_t *, const int8_t *, int32_t);\n"
           "void harness_fill(int8_t *, int32_t, int8_t);\n"
           "uint32_t harness_ticks(void);\n",
           _carr("x_all", ALL_INT8)]
    for i, (s, zp) in enumerate(quants):
        p = qm.logistic_params(s, zp)
        src.append(_carr(f"want{i}", qm.logistic_int8(ALL_INT8, *p)))
        src.append(_carr(f"table{i}", qm.logistic_table(s, zp)))
        args = ", ".join(str(v) for v in p)
        src.append(f"""static int32_t case_{i}(void)
{{
    static int8_t out[256] __attribute__((aligned(4)));
    int32_t bad = 0, b;
    uint32_t t;
    harness_fill(out, 256, (int8_t)0x5a);
    t = harness_ticks();
    mcu_logistic_s8(x_all, out, 256, {args});
    t = harness_ticks() - t;
    b = harness_compare(out, want{i}, 256);
    harness_report("logistic_{i}", "compute", t, b);
    bad += b;
    harness_fill(out, 256, (int8_t)0x5a);
    t = harness_ticks();
    mcu_logistic_s8_table(out, {args});
    t = harness_ticks() - t;
    b = harness_compare(out, table{i}, 256);
    harness_report("logistic_{i}", "table", t, b);
    bad += b;
    harness_fill(out, 256, (int8_t)0x5a);
    t = harness_ticks();
    mcu_lut_s8(x_all, out, 256, table{i});
    t = harness_ticks() - t;
    b = harness_compare(out, want{i}, 256);
    harness_report("logistic_{i}", "lut", t, b);
    bad += b;
    return bad;
}}

""")
    src.append("int32_t harness_run_cases(void)\n{\n    int32_t bad = 0;\n")
    src.extend(f"    bad += case_{i}();\n" for i in range(len(quants)))
    src.append("    return bad;\n}\n")
    return "".join(src)


@pytest.mark.qemu
def test_c_kernels_on_qemu_m4(tmp_path):
    from kernel_qemu import build_image, have_toolchain, run_image
    if not have_toolchain():
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    quants = random_quants(4242, 12)
    elf = build_image(qemu_vectors(quants), "m4", tmp_path)
    rc, results, text = run_image(elf, "m4")
    assert {r[1] for r in results} == {"compute", "table", "lut"}
    assert len(results) == 3 * len(quants), text[-2000:]
    bad = [r for r in results if r[3]]
    assert not bad, f"mismatches on the M4: {bad[:10]}"
    assert rc == 0, text[-2000:]
    # the table lookup is much cheaper than the fixed-point evaluation
    lut = np.mean([r[2] for r in results if r[1] == "lut"])
    comp = np.mean([r[2] for r in results if r[1] == "compute"])
    assert lut * 5 < comp, (lut, comp)


# --------------------------------------------------------------------------- ONNX Sigmoid
def test_onnx_sigmoid_converts_quantizes_and_runs_in_tflm():
    torch = pytest.importorskip("torch")
    from torch import nn

    from converters import from_onnx
    from converters.quantize import quantize
    from toolchain.ir.float_eval import run_float

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 4), nn.Sigmoid()).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 6),), f, dynamo=False, opset_version=17)
    g = from_onnx(f.getvalue())
    assert [op.type for op in g.ops] == ["FULLY_CONNECTED", "LOGISTIC", "FULLY_CONNECTED",
                                         "LOGISTIC"]
    rng = np.random.default_rng(0)
    calib = (rng.standard_normal((64, 6)) * 2).astype(np.float32)
    want_f = net(torch.from_numpy(calib)).detach().numpy()
    np.testing.assert_allclose(run_float(g, calib)[g.outputs[0]], want_f, atol=1e-5)

    q = quantize(g, calib)
    for op in q.ops:
        if op.type == "LOGISTIC":
            oq = q.t(op.outputs[0]).quant
            assert (float(oq.scale[0]), int(oq.zero_point[0])) == qm.LOGISTIC_QUANT
    model = write_tflite(q)
    back = read_tflite(model)
    runner = TflmRunner(model, preserve_all_tensors=True)
    xq_q = q.t(q.inputs[0]).quant
    worst = 0.0
    for i in range(16):
        x = calib[i:i + 1]
        xq = np.clip(np.round(x / xq_q.scale[0]) + xq_q.zero_point[0], -128, 127).astype(np.int8)
        y = runner.run(xq)[0].reshape(1, 4)
        worst = max(worst, float(np.max(np.abs((y.astype(np.float64) + 128) / 256 - want_f[i]))))
        # every LOGISTIC layer inside TFLM equals the numpy math on its TFLM input
        for op in back.ops:
            if op.type != "LOGISTIC":
                continue
            xin, xout = back.t(op.inputs[0]), back.t(op.outputs[0])
            a = runner.tensor(xin.meta["tflite_index"]).reshape(xin.shape)
            b = runner.tensor(xout.meta["tflite_index"]).reshape(xout.shape)
            p = qm.logistic_params(xin.quant.scale[0], int(xin.quant.zero_point[0]))
            assert np.array_equal(qm.logistic_int8(a, *p), b)
    assert worst < 0.05, worst


# --------------------------------------------------------------------------- end to end


@pytest.mark.qemu
@needs_qemu
@pytest.mark.parametrize("kernels", ["portable", "dsp"])
def test_logistic_model_built_and_bit_exact_on_qemu_m4(kernels, tmp_path):
    """A conv net with Sigmoid gates (ONNX) through `mcu build`'s path on mps2-an386:
    every output byte equal to tflite-micro's on the written .tflite."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from converters import from_onnx
    from converters.quantize import quantize

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Sigmoid(), nn.Flatten(),
                        nn.Linear(8 * 6 * 5, 5), nn.Sigmoid()).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 6, 5),), f, dynamo=False, opset_version=17)
    g = from_onnx(f.getvalue())
    assert "LOGISTIC" in [op.type for op in g.ops]
    rng = np.random.default_rng(3)
    q = quantize(g, rng.standard_normal((32, 6, 5, 3)).astype(np.float32) * 2)
    assert_bit_exact_on_qemu(q, tmp_path, kernels)

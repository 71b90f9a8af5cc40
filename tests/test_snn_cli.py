"""`mcu convert / build / hil / infer MODEL.nir` end to end with an snnTorch MLP trained
on sklearn digits (seconds), on the host board and QEMU mps2-an386, and the bad-input
cases of the spiking path: each is one line, a non-zero exit and nothing written."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("snntorch")
nir = pytest.importorskip("nir")

from toolchain.cli import main  # noqa: E402

HAVE_CC = bool(shutil.which("cc"))
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
T = 8


def mcu(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(r, *words):
    """The failure is one line (progress lines of mcu hil, 'data: ...', 'building ...',
    may come before it)."""
    err = [line for line in r.stderr.splitlines() if line.strip()
           and not line.startswith(("data: ", "building firmware"))]
    assert r.exit_code != 0, r.output
    assert len(err) == 1 and err[0].startswith("error: "), r.stderr
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """An snnTorch Leaky MLP trained on digits (T = 8), exported to NIR, with calibration
    and test sets."""
    from toolchain.examples.digits_snn import export_nir, train_digits_snn
    d = tmp_path_factory.mktemp("snncli")
    net, (xtr, ytr, xte, yte) = train_digits_snn("mlp", timesteps=T, epochs=6)
    export_nir(net, (64,), d / "digits.nir")
    np.savez(d / "calib.npz", x=xtr[:200], y=ytr[:200])
    np.savez(d / "test.npz", x=xte[:60], y=yte[:60])
    np.save(d / "x5.npy", xte[:5])
    return d


def _snn(d):
    return ["--timesteps", T, "--reset", "subtract", "--calib", d / "calib.npz"]


def test_convert_prints_figures_and_writes_the_c_export(digits, tmp_path):
    out = tmp_path / "out"
    r = mcu("convert", digits / "digits.nir", *_snn(digits), "-o", out, "--json",
            tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    for s in ("(spiking, NIR)", "FULLY_CONNECTED x2, LIF x2", "T=8, dt=0.0001, reset subtract",
              "int8 W 32x64 + int32 bias", "beta Q15 29491", "fixed vs float: identical spike "
              "counts", "accuracy float", "wrote:        snn_model.c, snn_model.h"):
        assert s in r.stdout, (s, r.stdout)
    rep = json.loads((tmp_path / "c.json").read_text())
    fv = rep["fixed_vs_float"]
    assert fv["samples"] == 200 and fv["accuracy_fixed"] > 0.8
    assert abs(fv["accuracy_fixed"] - fv["accuracy_float"]) <= 0.03
    assert rep["param_bytes"] == sum(x["param_bytes"] for x in rep["layers"])
    h = (out / "snn_model.h").read_text()
    assert "#define SNN_MODEL_TIMESTEPS 8" in h and "mulq15" in h
    assert "extern const int8_t snn_model_l0_weight[2048];" in h
    if HAVE_CC:     # the export compiles and links into another C program, warning-free
        (tmp_path / "use.c").write_text(
            '#include "snn_model.h"\nint main(void) { return snn_model_l0_weight[0] + '
            'snn_model_l1_thr[0] + SNN_MODEL_L1_FRAC_BITS + (int)SNN_MODEL_INPUT_SIZE; }\n')
        subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                        f"-I{out}", str(tmp_path / "use.c"), str(out / "snn_model.c"),
                        "-o", str(tmp_path / "use")], check=True)


def test_exported_weights_are_the_quantized_ones(digits, tmp_path):
    from toolchain.snn.pipeline import SnnOptions, prepare
    r = mcu("convert", digits / "digits.nir", *_snn(digits), "-o", tmp_path / "o")
    assert r.exit_code == 0
    m = prepare(digits / "digits.nir", digits / "calib.npz",
                SnnOptions(timesteps=T, reset="subtract"))
    w = m.qgraph.t(m.qgraph.ops[0].inputs[1]).data          # [out, in]
    c = (tmp_path / "o" / "snn_model.c").read_text()
    body = c.split("snn_model_l0_weight[2048] __attribute__((aligned(4))) = {")[1].split("}")[0]
    got = np.array([int(v) for v in body.replace("\n", " ").split(",")])
    np.testing.assert_array_equal(got, w.T.reshape(-1))     # column-contiguous [in][out]


@pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler")
def test_build_hil_and_infer_on_the_host_board(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = mcu("build", digits / "digits.nir", "--board", "host", *_snn(digits), "-o", "fw",
            "--json", "build.json")
    assert r.exit_code == 0, r.output
    assert "spiking, 4 layers, T=8, constant input, int16 state" in r.stdout
    rep = json.loads(Path("build.json").read_text())
    assert rep["kind"] == "snn" and rep["ram"]["state"] == 2 * (32 + 10)
    assert rep["flash"]["weights"] == 64 * 32 + 32 * 10 + 4 * (32 + 10)
    r = mcu("hil", digits / "digits.nir", "--board", "host", "--data", digits / "test.npz",
            *_snn(digits), "--json", "hil.json", "--html", "hil.html", "-q")
    assert r.exit_code == 0, r.output
    assert "spike-exact:     60/60 samples" in r.stdout and "result:          PASS" in r.stdout
    s = json.loads(Path("hil.json").read_text())
    assert s["summary"]["identical_to_fixed"] == 60
    assert s["summary"]["device_accuracy"] == s["summary"]["fixed_accuracy"]
    assert s["summary"]["float_agreement"] > 0.9
    lif = [x for x in s["layers"] if x["type"] == "LIF"]
    assert len(lif) == 2 and all(0 < x["spike_rate"] < 1 for x in lif)
    fc2 = s["layers"][2]
    assert fc2["synops_per_sample"] == pytest.approx(fc2["events_per_sample"] * 10)
    assert s["layers"][0]["dense_macs_per_sample"] == 64 * 32
    html = Path("hil.html").read_text()
    assert "Spike rate per layer" in html and "Spike raster, sample 0" in html
    assert html.count("<svg") >= 3 and "<script" not in html
    r = mcu("infer", digits / "digits.nir", "--board", "host", "--input", digits / "x5.npy",
            *_snn(digits), "--layers")
    assert r.exit_code == 0, r.output
    assert "spike-exact with the fixed-point reference: 5/5" in r.stdout
    assert r.stdout.count("= fixed-point reference") == 5 and "layer 1:" in r.stdout


@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_hil_on_qemu_m4_rate_coded(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = mcu("hil", digits / "digits.nir", "--board", "mps2-an386", "--data",
            digits / "test.npz", *_snn(digits), "--encoding", "rate", "--limit", 30,
            "--json", "hil.json", "-q")
    assert r.exit_code == 0, r.output
    s = json.loads(Path("hil.json").read_text())["summary"]
    assert s["identical_to_fixed"] == 30 and s["samples_done"] == 30
    lat = s["latency"]
    assert lat["unit"] == "instructions" and lat["per_step"] == pytest.approx(lat["mean"] / T)
    assert "instructions / sample" in r.stdout


# ----------------------------------------------------------------- bad input
def _write_nir(path, nodes, edges):
    nir.write(str(path), nir.NIRGraph(nodes, edges, type_check=False))
    return path


def _lif(n, thr=1.0):
    tau = np.full(n, 1e-3)
    return nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def test_unsupported_nir_node_is_named(tmp_path):
    rng = np.random.default_rng(0)
    p = _write_nir(tmp_path / "delay.nir", {
        "input": nir.Input(np.array([4])), "fc": nir.Affine(rng.normal(size=(3, 4)), np.zeros(3)),
        "dly": nir.Delay(np.ones(3)), "output": nir.Output(np.array([3]))},
        [("input", "fc"), ("fc", "dly"), ("dly", "output")])
    np.savez(tmp_path / "c.npz", x=rng.random((4, 4)).astype(np.float32))
    r = mcu("convert", p, "-T", 5, "--calib", tmp_path / "c.npz", "-o", tmp_path / "out")
    one_error_line(r, "NIR node 'dly' (Delay) is not supported")
    assert not (tmp_path / "out").exists()


def test_unrepresentable_parameters_say_which_and_why(tmp_path):
    rng = np.random.default_rng(1)
    thr = rng.uniform(0.5, 1.5, (2, 4, 4))         # varies within each channel
    tau = np.full((2, 4, 4), 1e-3)
    p = _write_nir(tmp_path / "conv.nir", {
        "input": nir.Input(np.array([1, 4, 4])),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(size=(2, 1, 3, 3)), stride=1,
                           padding=1, dilation=1, groups=1, bias=np.zeros(2)),
        "lif": nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros_like(tau), v_threshold=thr,
                       v_reset=np.zeros_like(tau)),
        "output": nir.Output(np.array([2, 4, 4]))},
        [("input", "conv"), ("conv", "lif"), ("lif", "output")])
    np.savez(tmp_path / "c.npz", x=rng.random((4, 1, 4, 4)).astype(np.float32))
    r = mcu("convert", p, "-T", 5, "--calib", tmp_path / "c.npz", "-o", tmp_path / "out")
    one_error_line(r, "layer 'lif' (LIF): v_threshold varies within a channel")
    assert not (tmp_path / "out").exists()


def test_gain_far_from_one_warns_with_the_gain(digits, tmp_path):
    r = mcu("convert", digits / "digits.nir", "-T", T, "--reset", "subtract", "--dt", 5e-4,
            "--calib", digits / "calib.npz", "-o", tmp_path / "out", "--json", tmp_path / "j")
    assert r.exit_code == 0, r.output
    assert "input gain r*dt/tau = 5 is far from 1 for dt = 0.0005" in r.stdout
    assert json.loads((tmp_path / "j").read_text())["warnings"]


@pytest.mark.parametrize("case", ["shape", "events-for-analog", "analog-for-events",
                                  "rate-range", "labels", "no-timesteps"])
def test_bad_calibration_data_is_one_line_and_writes_nothing(digits, tmp_path, case):
    rng = np.random.default_rng(2)
    extra = []
    if case == "shape":
        np.savez(tmp_path / "c.npz", x=rng.random((5, 1, 8, 8)).astype(np.float32))
        words = ["x has shape (5, 1, 8, 8); the model expects (N, 64)"]
    elif case == "events-for-analog":
        np.savez(tmp_path / "c.npz", spikes=rng.random((5, T, 64)) < 0.2)
        words = ["holds spike events", "use --encoding events"]
    elif case == "analog-for-events":
        np.savez(tmp_path / "c.npz", x=rng.random((5, 64)).astype(np.float32))
        extra, words = ["--encoding", "events"], ["holds analog 'x', not spike events"]
    elif case == "rate-range":
        np.savez(tmp_path / "c.npz", x=rng.random((5, 64)).astype(np.float32) * 16)
        extra, words = ["--encoding", "rate"], ["rate coding takes x in [0, 1]"]
    elif case == "labels":
        np.savez(tmp_path / "c.npz", x=rng.random((5, 64)).astype(np.float32), y=np.arange(4))
        words = ["5 samples in x but 4 labels in y"]
    else:
        np.savez(tmp_path / "c.npz", x=rng.random((5, 64)).astype(np.float32))
        words = ["--timesteps must be >= 1"]
    ts = [] if case == "no-timesteps" else ["-T", T]
    r = mcu("convert", digits / "digits.nir", *ts, "--calib", tmp_path / "c.npz", *extra,
            "-o", tmp_path / "out")
    one_error_line(r, *words)
    assert not (tmp_path / "out").exists()


def test_hil_bad_data_exits_2_before_building(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("d.npz", x=np.zeros((3, 10), np.float32))
    r = mcu("hil", digits / "digits.nir", "--board", "host", "--data", "d.npz", *_snn(digits))
    assert r.exit_code == 2
    one_error_line(r, "data file d.npz: x has shape (3, 10)")
    assert not Path("build").exists()


def test_timesteps_on_an_int8_model_is_refused(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    r = mcu("convert", tmp_path / "m.tflite", "-T", 4, "-o", tmp_path / "out")
    one_error_line(r, "--timesteps is for spiking models (.nir)")
    assert r.exit_code == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler")
def test_c_export_runs_with_the_runtime_kernels_as_its_header_says(digits, tmp_path):
    """Another C project: the exported arrays, the header's macros and the mcu_snn_*
    kernels (firmware_templates/runtime) reproduce the fixed-point reference's counts."""
    from toolchain.codegen.host import RUNTIME
    from toolchain.snn import fixed_point as fp
    from toolchain.snn.pipeline import SnnOptions, prepare
    out = tmp_path / "o"
    assert mcu("convert", digits / "digits.nir", *_snn(digits), "-o", out).exit_code == 0
    m = prepare(digits / "digits.nir", digits / "calib.npz",
                SnnOptions(timesteps=T, reset="subtract"))
    x = np.load(digits / "test.npz")["x"][:20]
    want = fp.run_fixed(m.qgraph, x, T).counts
    xq = fp.quantize_input(x, m.qgraph.meta["snn"]["fixed"]["input_scale"])
    rows = ",\n".join("{" + ", ".join(map(str, r)) + "}" for r in xq)
    neuron = ("static const mcu_snn_neuron_t n{k} = {{SNN_MODEL_L{k}_CHANNELS, "
              "SNN_MODEL_L{k}_FRAC_BITS, SNN_MODEL_L{k}_RESET_SUBTRACT, snn_model_l{k}_beta, "
              "snn_model_l{k}_alpha, snn_model_l{k}_thr, snn_model_l{k}_vreset, "
              "snn_model_l{k}_leak}};")
    (tmp_path / "run.c").write_text(f"""#include <stdio.h>
#include "snn_model.h"
#include "mcu_kernels.h"
static const int8_t X[{len(xq)}][SNN_MODEL_INPUT_SIZE] = {{{rows}}};
{neuron.format(k=1)}
{neuron.format(k=3)}
int main(void) {{
    int s, t, i;
    for (s = 0; s < {len(xq)}; s++) {{
        int32_t acc0[SNN_MODEL_L0_OUT], acc2[SNN_MODEL_L2_OUT], cnt[SNN_MODEL_OUTPUT_SIZE] = {{0}};
        int16_t v1[SNN_MODEL_L1_SIZE] = {{0}}, v3[SNN_MODEL_L3_SIZE] = {{0}};
        int8_t s1[SNN_MODEL_L1_SIZE], s3[SNN_MODEL_L3_SIZE];
        mcu_snn_fc_dense_s8(SNN_MODEL_L0_IN, SNN_MODEL_L0_OUT, X[s], snn_model_l0_weight,
                            snn_model_l0_bias, acc0);      /* constant input: once */
        for (t = 0; t < SNN_MODEL_TIMESTEPS; t++) {{
            mcu_snn_lif_s16(&n1, SNN_MODEL_L1_SIZE, acc0, v1, s1);
            mcu_snn_fc_events_s8(SNN_MODEL_L2_IN, SNN_MODEL_L2_OUT, s1, snn_model_l2_weight,
                                 snn_model_l2_bias, acc2);
            mcu_snn_lif_s16(&n3, SNN_MODEL_L3_SIZE, acc2, v3, s3);
            for (i = 0; i < SNN_MODEL_OUTPUT_SIZE; i++) cnt[i] += s3[i];
        }}
        for (i = 0; i < SNN_MODEL_OUTPUT_SIZE; i++) printf("%d%c", (int)cnt[i],
                                                          i + 1 < SNN_MODEL_OUTPUT_SIZE ? ' ' : '\\n');
    }}
    return 0;
}}
""")
    exe = tmp_path / "run"
    subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-DMCU_NO_DSP",
                    f"-I{out}", f"-I{RUNTIME}", str(tmp_path / "run.c"), str(out / "snn_model.c"),
                    *map(str, sorted(RUNTIME.glob("*.c"))), "-o", str(exe)], check=True)
    got = np.loadtxt(subprocess.run([str(exe)], capture_output=True, text=True,
                                    check=True).stdout.splitlines(), dtype=np.int64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler")
def test_hil_on_a_running_device_checks_the_model_hash(digits, tmp_path, monkeypatch):
    """--port: a device already running the model (as a flashed board would); the same
    NIR file with other options is another model (exit 3)."""
    from toolchain.build_model import build_snn_model
    from toolchain.devices import start_device
    from toolchain.snn.pipeline import SnnOptions
    monkeypatch.chdir(tmp_path)
    rep = build_snn_model(digits / "digits.nir", "host", "fw", calib=digits / "calib.npz",
                          options=SnnOptions(timesteps=T, reset="subtract"))
    with start_device("host", rep["_build"]) as dev:
        dev.link().info()
        dev.release()
        r = mcu("hil", digits / "digits.nir", "--board", "host", "--port", dev.url, "--data",
                digits / "test.npz", "--limit", 10, *_snn(digits))
        assert r.exit_code == 0, r.output
        assert "spike-exact:     10/10 samples" in r.stdout
        r = mcu("hil", digits / "digits.nir", "--board", "host", "--port", dev.url, "--data",
                digits / "test.npz", "--timesteps", T + 2, "--reset", "subtract",
                "--calib", digits / "calib.npz")
        assert r.exit_code == 3
        one_error_line(r, f"runs model 'digits' {rep['model_hash'][:16]}", "not ")

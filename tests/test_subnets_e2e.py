"""Switchable subnets end to end from the CLI (issue #10 items 3-7): a small float model
(the digits CNN) -> `mcu subnets export` (levels by magnitude) -> `mcu convert OUT/`
-> `mcu build OUT/` (every level in one firmware) -> `mcu hil OUT/ --subnets all` on
the host board and on QEMU mps2-an386: every level byte-exact with tflite-micro on its
dense-with-zeros .tflite; the level message (set, read back, out of range, info); bad
inputs, each one line with nothing written."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hil_common import CACHE, needs_cc, needs_qemu
from toolchain.cli import main

LEVELS = "0.5,0.75,0.9"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(float .tflite, calib .npz NHWC, test .npz NHWC + labels) of the digits CNN."""
    torch = pytest.importorskip("torch")
    d = CACHE / "subnets-e2e"
    d.mkdir(parents=True, exist_ok=True)
    model, calib, test = d / "digits_float.tflite", d / "calib.npz", d / "test.npz"
    if not (model.exists() and calib.exists() and test.exists()):
        from converters import from_torch
        from converters.tflite_writer import write_tflite
        from toolchain.examples.digits import train_digits_cnn
        m, (xtr, _ytr, xte, yte) = train_digits_cnn(0, epochs=8)
        g = from_torch(m, torch.from_numpy(xtr[:1]))
        np.savez(calib, x=xtr[:200].transpose(0, 2, 3, 1))
        np.savez(test, x=xte[:48].transpose(0, 2, 3, 1), y=yte[:48])
        tmp = model.with_suffix(".tmp")
        tmp.write_bytes(write_tflite(g))
        tmp.replace(model)
    return model, calib, test


def _mcu(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def export(digits, tmp_path_factory):
    model, calib, _ = digits
    out = tmp_path_factory.mktemp("subnets") / "OUT"
    r = _mcu("subnets", "export", model, "--calib", calib, "--levels", LEVELS, "-o", out)
    assert r.exit_code == 0, r.output
    assert "byte-exact with tflite-micro on 8/8 inputs" in r.output
    return out


def test_export_directory(export):
    man = json.loads((export / "manifest.json").read_text())
    assert man["levels"] == [0.5, 0.75, 0.9]
    names = {p.name for p in export.iterdir()}
    for k in range(3):
        assert {f"level{k}.tflite", f"level{k}_model_data.c", f"level{k}_model_data.h"} <= names
    assert "store.npz" in names
    # one store for every level, sized by the densest level (50 %): 1.0x the dense weights
    assert 0.95 <= man["store"]["vs_dense"] <= 1.05
    dense = [r for r in man["layers"] if not r["sparse"]]
    assert dense and all(r["reason"] for r in dense)     # says which stayed dense and why
    reads = [lv["store_bytes_read"] for lv in man["level"]]
    assert reads == sorted(reads, reverse=True)
    r = _mcu("convert", export)                          # per-level parameters and bytes
    assert r.exit_code == 0, r.output
    assert "store: 1,792 B" in r.output and "L2 " in r.output
    for k in range(3):
        assert re.search(rf"^\s+{k}\s+0\.\d+\s", r.output, re.M)


def _hil(export, test, board, tmp_path):
    js = tmp_path / f"{board}.json"
    html = tmp_path / f"{board}.html"
    r = _mcu("hil", export, "--board", board, "--data", test, "--subnets", "all", "-q",
             "--json", js, "--html", html)
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert [row["level"] for row in res["levels"]] == [0, 1, 2]
    for row in res["levels"]:
        assert row["byte_exact"] == row["samples"] == 48, row      # every level = TFLM
        assert row["accuracy"] is not None
    assert "<svg" in html.read_text()                  # accuracy against instructions
    return res, r.output


@needs_cc
def test_host_board_every_level_bitexact(export, digits, tmp_path):
    res, out = _hil(export, digits[2], "host", tmp_path)
    assert "one boot" in out
    assert res["levels"][0]["accuracy"] >= res["levels"][2]["accuracy"]


@needs_qemu
@pytest.mark.qemu
def test_qemu_m4_every_level_bitexact(export, digits, tmp_path):
    res, out = _hil(export, digits[2], "mps2-an386", tmp_path)
    ins = [row["per_inference"] for row in res["levels"]]
    assert res["levels"][0]["unit"] == "instructions"
    assert ins[0] > ins[1] > ins[2]                      # sparser levels run faster
    assert res["switch_instructions"] is not None and res["switch_instructions"] <= 100
    assert "level switch on the device" in out


@needs_cc
def test_level_message(export, digits, tmp_path):
    from toolchain.boards import load_board
    from toolchain.build import load_build
    from toolchain.devices import start_device
    from toolchain.errors import LinkError
    from toolchain.link.model import ModelClient
    from toolchain.subnets.export import load_export
    from toolchain.subnets.run import build_subnets
    from toolchain.tflm_oracle import TflmRunner
    b = load_board("host")
    rep = build_subnets(export, b, tmp_path / "b")
    ex = load_export(export)
    x = np.load(digits[2])["x"][:3]
    with start_device(b, load_build(rep["build_dir"])) as dev:
        link = dev.link()
        c = ModelClient(link)
        assert c.level() == (0, [0.5, 0.75, 0.9])           # reset: level 0
        info = link.info()
        assert info.subnet_levels == [0.5, 0.75, 0.9] and info.subnet_active == 0
        assert c.level(2)[0] == 2
        assert c.level()[0] == 2                            # holds until changed
        with pytest.raises(LinkError, match="out of range .* kept its level"):
            c.level(3)
        assert c.level()[0] == 2                            # unchanged
        assert link.info().subnet_active == 2
        for k in (2, 0, 1):
            c.level(k)
            info = c.info(refresh=True)
            q = ex.graphs[k].t(ex.graphs[k].inputs[0]).quant
            assert info.inputs[0].scale == pytest.approx(float(q.scale[0]))
            assert info.outputs[0].scale == pytest.approx(
                float(ex.graphs[k].t(ex.graphs[k].outputs[0]).quant.scale[0]))
            ref = TflmRunner(ex.tflite[k])
            for xi in x:
                xq = np.clip(np.round(xi / q.scale[0]) + q.zero_point[0], -128, 127)
                xq = xq.astype(np.int8)
                out, _ = c.infer(xq.tobytes())
                want = ref.run(xq[None])[0].reshape(-1)
                assert np.frombuffer(out, np.int8).tobytes() == want.tobytes()
    # the CLI ends: `mcu info` lists the levels, `mcu subnets level` sets and reads one
    r = _mcu("info", "--board", "host", "--firmware", rep["build_dir"])
    assert r.exit_code == 0 and "subnet levels:  0: 0.5 (active), 1: 0.75, 2: 0.9" in r.output, \
        r.output
    r = _mcu("subnets", "level", "--board", "host", "--firmware", rep["build_dir"], "1")
    assert r.exit_code == 0 and "active level 1 of 3: 0: 0.50, 1: 0.75, 2: 0.90" in r.output, \
        r.output
    _one_line_error(_mcu("subnets", "level", "--board", "host", "--firmware", rep["build_dir"],
                         "7"), "subnet level 7 is out of range .* kept its level")


def test_ordinary_models_keep_their_generated_c(tmp_path):
    """An ordinary graph generates no level code (the weak model_none.c answers)."""
    from opgen import make_random
    from toolchain.codegen.generate import generate
    g = make_random(np.random.default_rng(3), "CONV_2D")
    res = generate(g, tmp_path / "m")
    src = (tmp_path / "m" / "model.c").read_text()
    assert "model_set_level" not in src and res.num_levels == 0


@needs_cc
def test_train_export_host(digits, tmp_path):
    """`mcu subnets train` (1 epoch): shared int8 values per row, per-level scales; every
    level byte-exact with tflite-micro on the host board."""
    pytest.importorskip("torch")
    from toolchain.examples.digits import digits_data
    xtr, ytr, _, _ = digits_data(0)
    data = tmp_path / "train.npz"
    np.savez(data, x=xtr[:400].transpose(0, 2, 3, 1), y=ytr[:400])
    out = tmp_path / "OUT"
    r = _mcu("subnets", "train", digits[0], "--data", data, "--levels", "0.5,0.9",
             "--epochs", 1, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output.count("byte-exact with tflite-micro on 8/8 inputs") == 2
    man = json.loads((out / "manifest.json").read_text())
    assert man["train"]["epochs"] == 1 and len(man["train"]["accuracy"]) == 2
    from toolchain.subnets.export import load_export
    ex = load_export(out)
    g0, g1 = ex.graphs
    for op0, op1 in zip(g0.ops, g1.ops):        # one store: the same flash bytes per level
        if op0.type.startswith("SPARSE_"):
            assert g0.t(op0.inputs[1]).data.tobytes() == g1.t(op1.inputs[1]).data.tobytes()
            assert op0.attr("n_entries") > op1.attr("n_entries")
    js = tmp_path / "r.json"
    r = _mcu("hil", out, "--board", "host", "--data", digits[2], "--subnets", "all", "-q",
             "--json", js)
    assert r.exit_code == 0, r.output
    assert all(row["byte_exact"] == row["samples"] for row in json.loads(js.read_text())["levels"])


# ------------------------------------------------------------------------ bad input
def _one_line_error(r, pattern):
    assert r.exit_code != 0, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and re.search(pattern, err[0]), r.output
    assert "Traceback" not in r.output


def test_train_bad_levels_first(digits, tmp_path):
    out = tmp_path / "OUT"
    _one_line_error(_mcu("subnets", "train", digits[0], "--data", digits[2], "--levels",
                         "0.75,0.5", "-o", out), "strictly increasing")
    assert not out.exists()


@pytest.mark.parametrize("levels,msg", [("0.9,0.5", "strictly increasing"),
                                        ("0.5,1.0", r"outside \[0, 1\)"),
                                        ("0.5,0.5", "strictly increasing"),
                                        ("-0.1", r"outside \[0, 1\)"),
                                        ("a,b", "give sparsities")])
def test_bad_levels(digits, tmp_path, levels, msg):
    model, calib, _ = digits
    out = tmp_path / "OUT"
    _one_line_error(_mcu("subnets", "export", model, "--calib", calib, "--levels", levels,
                         "-o", out), msg)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_nothing_to_sparsify(tmp_path):
    from converters.tflite_writer import write_tflite
    from subnets_cases import float_fc
    g = float_fc(np.random.default_rng(0), k=8, out=4)        # rows of 8 < 16
    m = tmp_path / "tiny.tflite"
    m.write_bytes(write_tflite(g))
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32))
    out = tmp_path / "OUT"
    _one_line_error(_mcu("subnets", "export", m, "--calib", tmp_path / "c.npz", "--levels",
                         "0.5", "-o", out), "nothing to sparsify .*rows of 8 < 16")
    assert not out.exists()


def test_store_does_not_fit_the_board(export, tmp_path):
    src = (Path(__file__).resolve().parents[1] / "hw" / "boards" / "host.toml").read_text()
    toml = tmp_path / "tiny.toml"
    toml.write_text(src.replace('name = "host"', 'name = "tiny"')
                    .replace("flash_size = 0x100000", "flash_size = 1024"))
    out = tmp_path / "b"
    _one_line_error(_mcu("build", export, "--board", toml, "-o", out),
                    r"store needs 1,792 B of flash; board tiny has 1,024 B")
    assert not out.exists()


def test_subnet_index_out_of_range(export, digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.load(digits[2])["x"][:1])
    r = _mcu("infer", export, "--board", "host", "--input", tmp_path / "x.npy", "--subnet", "3")
    _one_line_error(r, r"--subnet 3 is out of range: .* 3 levels \(0\.\.2\)")
    assert r.exit_code == 1
    r = _mcu("hil", export, "--board", "host", "--data", digits[2], "--subnet", "5")
    _one_line_error(r, r"subnet level 5 is out of range")
    assert r.exit_code == 1
    assert not (tmp_path / "build").exists(), "refused, yet something was built"


def test_patch_refuses_a_subnet_export(export, tmp_path):
    key = tmp_path / "k.key"
    assert _mcu("patch", "keygen", key).exit_code == 0
    _one_line_error(_mcu("patch", "diff", export, export, "--key", key, "--seq", 1, "-o",
                         tmp_path / "p.bin"), "is a subnet export: mcu patch does not update")
    assert not (tmp_path / "p.bin").exists()

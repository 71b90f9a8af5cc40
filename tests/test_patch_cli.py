"""`mcu patch`: keygen, diff, show, verify, apply, train (tiny), one-line errors."""
import copy

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("converters.tflite_writer")

from converters.tflite_writer import write_tflite  # noqa: E402
from toolchain.cli import main  # noqa: E402
from toolchain.patch.toy import toy_int8_graph  # noqa: E402


@pytest.fixture()
def files(tmp_path):
    g = toy_int8_graph()
    n = copy.deepcopy(g)
    n.t("fc.w").data[0, :30] = 7
    n.t("conv.b").data[:] += 11
    (tmp_path / "old.tflite").write_bytes(write_tflite(g))
    (tmp_path / "new.tflite").write_bytes(write_tflite(n))
    r = CliRunner().invoke(main, ["patch", "keygen", str(tmp_path / "dev.key")])
    assert r.exit_code == 0, r.output
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["patch", *map(str, args)])


def test_diff_show_verify_apply(files):
    d = files
    r = run("diff", d / "old.tflite", d / "new.tflite", "-k", d / "dev.key", "--seq", 4,
            "-o", d / "p.mcup", "--out-model", d / "out.tflite", "--json", d / "p.json")
    assert r.exit_code == 0, r.output
    assert "entries" in r.output and "115200 baud" in r.output
    r = run("show", d / "p.mcup", "-k", d / "dev.key", "--base", d / "old.tflite")
    assert r.exit_code == 0, r.output
    assert "tag       HMAC-SHA256" in r.output and ": OK" in r.output and "fc.w" in r.output
    assert "matches --base" in r.output
    r = run("verify", d / "p.mcup", "-k", d / "dev.key", "--base", d / "old.tflite", "--last-seq", 3)
    assert r.exit_code == 0 and "OK" in r.output, r.output
    r = run("apply", d / "p.mcup", "-k", d / "dev.key", "--base", d / "old.tflite", "-o", d / "a.tflite")
    assert r.exit_code == 0, r.output
    from toolchain.patch import store_hash
    from converters.tflite_reader import read_tflite
    assert store_hash(read_tflite(str(d / "a.tflite"))) == store_hash(read_tflite(str(d / "new.tflite")))
    r = run("diff", d / "old.tflite", d / "new.tflite", "-k", d / "dev.key", "--seq", 1, "--full",
            "-o", d / "f.mcup")
    assert r.exit_code == 0 and "full" in r.output


@pytest.mark.parametrize("case,msg", [
    ("replay", "not above"), ("wrong_base", "wrong base"), ("forged", "tag mismatch"),
    ("truncated", "truncated"), ("wrong_key", "another key")])
def test_verify_rejects_in_one_line(files, case, msg):
    d = files
    assert run("diff", d / "old.tflite", d / "new.tflite", "-k", d / "dev.key", "--seq", 2,
               "-o", d / "p.mcup").exit_code == 0
    patch, key, base, extra = d / "p.mcup", d / "dev.key", d / "old.tflite", []
    if case == "replay":
        extra = ["--last-seq", 2]
    elif case == "wrong_base":
        base = d / "new.tflite"
    elif case == "forged":
        b = bytearray(patch.read_bytes())
        b[140] ^= 0x40
        patch = d / "forged.mcup"
        patch.write_bytes(bytes(b))
    elif case == "truncated":
        patch = d / "t.mcup"
        patch.write_bytes((d / "p.mcup").read_bytes()[:-5])
    elif case == "wrong_key":
        key = d / "other.key"
        assert run("keygen", key).exit_code == 0
    r = run("verify", patch, "-k", key, "--base", base, *extra)
    assert r.exit_code == 1
    err = r.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], r.output


def test_keygen_refuses_overwrite(files):
    r = run("keygen", files / "dev.key")
    assert r.exit_code == 1 and "refusing" in r.output


def test_train_tiny(files):
    pytest.importorskip("torch")
    d = files
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((64, 6, 6, 1)).astype(np.float32),
             y=rng.integers(0, 5, 64))
    r = run("train", d / "old.tflite", "--data", d / "data.npz", "-k", d / "dev.key", "--seq", 1,
            "--budget", 0.05, "--epochs", 1, "--finetune-epochs", 1, "-o", d / "t.mcup",
            "--out-model", d / "t.tflite", "--json", d / "t.json", "--force")
    assert r.exit_code == 0, r.output
    assert "budget 0.05: 40 selected" in r.output
    assert run("verify", d / "t.mcup", "-k", d / "dev.key", "--base", d / "old.tflite").exit_code == 0


def test_verify_refuses_sequence_zero_as_a_device_does(files):
    d = files
    from converters.tflite_reader import read_tflite
    from toolchain.patch.format import load_key
    from toolchain.patch.make import diff_patch
    res = diff_patch(read_tflite(str(d / "old.tflite")), read_tflite(str(d / "new.tflite")),
                     load_key(d / "dev.key"), 0)   # the CLI refuses --seq 0; the API can make one
    (d / "p0.mcup").write_bytes(res.data)
    r = run("verify", d / "p0.mcup", "-k", d / "dev.key", "--base", d / "old.tflite")
    assert r.exit_code != 0 and "not above" in r.output, r.output
    r = run("apply", d / "p0.mcup", "-k", d / "dev.key", "--base", d / "old.tflite",
            "-o", d / "a.tflite")
    assert r.exit_code != 0 and "not above" in r.output, r.output


def test_bad_output_paths_refused_before_anything_is_written(files):
    d = files
    before = set(d.iterdir())
    r = run("diff", d / "old.tflite", d / "new.tflite", "-k", d / "dev.key", "--seq", 1,
            "-o", d / "p.mcup", "--out-model", d / "x.onnx")
    assert r.exit_code != 0 and ".tflite" in r.output, r.output
    r = run("diff", d / "old.tflite", d / "new.tflite", "-k", d / "dev.key", "--seq", 1,
            "-o", d / "p.mcup", "--json", d / "nodir" / "p.json")
    assert r.exit_code == 5 and "nodir" in r.output, r.output
    assert set(d.iterdir()) == before


def test_train_refuses_poisoned_or_mislabelled_data(files):
    d = files
    from toolchain.patch.toy import toy_int8_graph
    g = toy_int8_graph()
    shape = g.t(g.inputs[0]).shape[1:]
    n_cls = g.t(g.outputs[0]).shape[-1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8,) + tuple(shape)).astype(np.float32)
    cases = {"nan": (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x),
                     np.zeros(8, np.int64), "non-finite"),
             "classes": (x, np.full(8, n_cls), "classes"),
             "fraction": (x, np.full(8, 0.5), "whole numbers"),
             "length": (x, np.zeros(5, np.int64), "labels"),
             "empty": (x[:0], np.zeros(0, np.int64), "no samples"),
             "shape": (x[:, :-1], np.zeros(8, np.int64), "shape")}
    for name, (xx, yy, msg) in cases.items():
        np.savez(d / f"{name}.npz", x=xx, y=yy)
        out = d / f"{name}.mcup"
        r = run("train", d / "old.tflite", "--data", d / f"{name}.npz", "-k", d / "dev.key",
                "--seq", 1, "-o", out)
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, (name, r.output)
        assert not out.exists(), name


def test_train_never_emits_a_worse_model_without_force(files):
    pytest.importorskip("torch")
    import re
    d = files
    rng = np.random.default_rng(3)
    np.savez(d / "data.npz", x=rng.random((48, 6, 6, 1)).astype(np.float32),
             y=rng.integers(0, 5, 48))
    out = d / "w.mcup"
    r = run("train", d / "old.tflite", "--data", d / "data.npz", "-k", d / "dev.key", "--seq", 1,
            "--budget", 0.05, "--epochs", 1, "--finetune-epochs", 1, "--seed",
            3, "-o", out)
    m = re.search(r"deployed ([\d.]+) %, updated ([\d.]+) %", r.output)
    assert m, r.output
    old, new = float(m.group(1)), float(m.group(2))
    if new < old:
        assert r.exit_code == 1 and "no patch written" in r.output and not out.exists()
    else:
        assert r.exit_code == 0 and out.exists()

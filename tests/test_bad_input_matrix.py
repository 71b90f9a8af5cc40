"""Bad input across every command (issue #15): each case must end in one `error:` line (or
click's usage message), a documented non-zero exit status, no Python traceback, no
internal error (70), and nothing new left in the working directory.

The matrix is built from kinds of bad input (missing, corrupt, empty, wrong suffix,
unwritable output, NaN data, wrong shapes, out-of-range labels, unknown board, bad keys
and patches, bad option values) crossed with the commands that take them."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters.tflite_writer import write_tflite
from toolchain.cli import main
from toolchain.patch.toy import toy_int8_graph

DOCUMENTED = {1, 2, 3, 4, 5}      # README "Exit status" (70 = our bug, never expected here)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of good and bad files; tests run inside a fresh copy-free cwd."""
    d = tmp_path_factory.mktemp("badin")
    g = toy_int8_graph()
    n = copy.deepcopy(g)
    n.t("fc.w").data[0, :30] = 7
    (d / "m.tflite").write_bytes(write_tflite(g))
    (d / "new.tflite").write_bytes(write_tflite(n))
    shape = tuple(g.t(g.inputs[0]).shape[1:])
    classes = int(g.t(g.outputs[0]).shape[-1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6,) + shape).astype(np.float32)
    y = rng.integers(0, classes, 6)
    np.savez(d / "ok.npz", x=x, y=y)
    np.savez(d / "nan.npz", x=np.where(x > 1.5, np.nan, x), y=y)
    np.savez(d / "inf.npz", x=np.where(x > 1.5, np.inf, x), y=y)
    np.savez(d / "empty.npz", x=x[:0], y=y[:0])
    np.savez(d / "noy.npz", x=x)
    np.savez(d / "nox.npz", y=y)
    np.savez(d / "badlabels.npz", x=x, y=y + classes)
    np.savez(d / "neglabels.npz", x=x, y=y - classes - 1)
    np.savez(d / "fraclabels.npz", x=x, y=y + 0.5)
    np.savez(d / "shortlabels.npz", x=x, y=y[:3])
    np.savez(d / "2dlabels.npz", x=x, y=np.stack([y, y], 1))
    np.savez(d / "strlabels.npz", x=x, y=np.array(["a"] * 6))
    np.savez(d / "wrongshape.npz", x=x[..., :-1], y=y)
    np.savez(d / "scalar.npz", x=np.float32(1.0), y=y)
    np.savez(d / "strx.npz", x=np.array(["a"] * 6), y=y)
    np.save(d / "x.npy", x[:1])
    np.save(d / "nan.npy", np.full((1,) + shape, np.nan, np.float32))
    (d / "garbage.tflite").write_bytes(b"TFL3" + bytes(rng.integers(0, 256, 200, np.uint8)))
    (d / "random.tflite").write_bytes(bytes(rng.integers(0, 256, 300, np.uint8)))
    (d / "empty.tflite").write_bytes(b"")
    (d / "truncated.tflite").write_bytes((d / "m.tflite").read_bytes()[:200])
    (d / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 10)
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip")
    (d / "garbage.npy").write_bytes(b"\x93NUMPY junk")
    (d / "model.txt").write_text("not a model")
    (d / "adir").mkdir()
    r = CliRunner().invoke(main, ["patch", "keygen", str(d / "dev.key")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["patch", "keygen", str(d / "other.key")])
    assert r.exit_code == 0, r.output
    (d / "short.key").write_text("abcd")
    (d / "hexbad.key").write_text("zz" * 32)
    r = CliRunner().invoke(main, ["patch", "diff", str(d / "m.tflite"), str(d / "new.tflite"),
                                  "-k", str(d / "dev.key"), "--seq", "2", "-o", str(d / "p.mcup")])
    assert r.exit_code == 0, r.output
    p = (d / "p.mcup").read_bytes()
    (d / "trunc.mcup").write_bytes(p[:len(p) // 2])
    forged = bytearray(p)
    forged[len(p) // 2] ^= 1
    (d / "forged.mcup").write_bytes(bytes(forged))
    (d / "junk.mcup").write_bytes(bytes(200))
    (d / "empty.mcup").write_bytes(b"")
    return d


def _cases():
    M, N, K = "{d}/m.tflite", "{d}/new.tflite", "{d}/dev.key"
    bad_models = ["{d}/missing.tflite", "{d}/garbage.tflite", "{d}/random.tflite",
                  "{d}/empty.tflite", "{d}/truncated.tflite", "{d}/garbage.onnx",
                  "{d}/model.txt", "{d}/adir"]
    bad_data = ["missing.npz", "garbage.npz", "nan.npz", "inf.npz", "empty.npz", "nox.npz",
                "badlabels.npz", "neglabels.npz", "fraclabels.npz", "shortlabels.npz",
                "2dlabels.npz", "strlabels.npz", "wrongshape.npz", "scalar.npz", "strx.npz"]
    bad_out = ["{d}/nodir/out.json", "{d}/adir"]
    c = []
    for bm in bad_models:
        c += [("convert", ["convert", bm, "-o", "{d}/o_conv"]),
              ("build", ["build", bm, "--board", "host", "-o", "{d}/o_build"]),
              ("infer", ["infer", bm, "--board", "host", "--input", "{d}/x.npy"]),
              ("hil", ["hil", bm, "--board", "host", "--data", "{d}/ok.npz"]),
              ("patch diff", ["patch", "diff", bm, N, "-k", K, "--seq", "1", "-o", "{d}/o.mcup"]),
              ("patch verify", ["patch", "verify", "{d}/p.mcup", "-k", K, "--base", bm]),
              ("patch apply", ["patch", "apply", "{d}/p.mcup", "-k", K, "--base", bm, "-o",
                               "{d}/o_apply.tflite"])]
    for bd in bad_data:
        c += [("hil data", ["hil", M, "--board", "host", "--data", "{d}/" + bd]),
              ("patch train data", ["patch", "train", M, "--data", "{d}/" + bd, "-k", K,
                                    "--seq", "1", "-o", "{d}/o_train.mcup"]),
              ("convert calib", ["convert", "{d}/float.onnx", "--calib", "{d}/" + bd, "-o",
                                 "{d}/o_cal"])]
    for bi in ("garbage.npy", "nan.npy", "missing.npy", "garbage.npz", "nox.npz", "empty.npz"):
        c.append(("infer input", ["infer", M, "--board", "host", "--input", "{d}/" + bi]))
    for bo in bad_out:
        c += [("boards json", ["boards", "--json", bo]),
              ("convert json", ["convert", M, "-o", "{d}/o_c2", "--json", bo]),
              ("patch diff out", ["patch", "diff", M, N, "-k", K, "--seq", "1", "-o", bo]),
              ("patch diff json", ["patch", "diff", M, N, "-k", K, "--seq", "1", "-o",
                                   "{d}/o2.mcup", "--json", bo]),
              ("patch show json", ["patch", "show", "{d}/p.mcup", "--json", bo]),
              ("patch keygen out", ["patch", "keygen", bo])]
    c += [("patch diff model suffix", ["patch", "diff", M, N, "-k", K, "--seq", "1", "-o",
                                       "{d}/o3.mcup", "--out-model", "{d}/x.onnx"]),
          ("patch apply suffix", ["patch", "apply", "{d}/p.mcup", "-k", K, "--base", M, "-o",
                                  "{d}/o.onnx"])]
    for bk in ("{d}/short.key", "{d}/hexbad.key", "{d}/missing.key", "{d}/adir"):
        c += [("patch diff key", ["patch", "diff", M, N, "-k", bk, "--seq", "1", "-o",
                                  "{d}/o4.mcup"]),
              ("patch verify key", ["patch", "verify", "{d}/p.mcup", "-k", bk, "--base", M]),
              ("patch show key", ["patch", "show", "{d}/p.mcup", "-k", bk])]
    c.append(("patch verify other key", ["patch", "verify", "{d}/p.mcup", "-k",
                                         "{d}/other.key", "--base", M]))
    for bp in ("trunc.mcup", "forged.mcup", "junk.mcup", "empty.mcup", "missing.mcup"):
        c += [("patch show", ["patch", "show", "{d}/" + bp, "-k", K]),
              ("patch verify", ["patch", "verify", "{d}/" + bp, "-k", K, "--base", M]),
              ("patch apply", ["patch", "apply", "{d}/" + bp, "-k", K, "--base", M, "-o",
                               "{d}/o5.tflite"])]
    c += [("patch verify replay", ["patch", "verify", "{d}/p.mcup", "-k", K, "--base", M,
                                   "--last-seq", "2"]),
          ("patch verify wrong base", ["patch", "verify", "{d}/p.mcup", "-k", K, "--base", N]),
          ("patch diff same", ["patch", "diff", M, M, "-k", K, "--seq", "1", "-o", "{d}/o6.mcup"])]
    for board in ("nonexistent", "", "../etc/passwd", "mps2-an386.toml"):
        c += [("build board", ["build", "--board", board, "-o", "{d}/o_b2"]),
              ("info board", ["info", "--board", board]),
              ("run board", ["run", "--board", board]),
              ("hil board", ["hil", M, "--board", board, "--data", "{d}/ok.npz"])]
    for port in ("/dev/does-not-exist", "socket://127.0.0.1:1", "nonsense://x"):
        c += [("info port", ["info", "--port", port]),
              ("hil port", ["hil", M, "--port", port, "--data", "{d}/ok.npz"])]
    c += [("build kernels", ["build", M, "--board", "host", "--kernels", "fast"]),
          ("hil limit", ["hil", M, "--board", "host", "--data", "{d}/ok.npz", "--limit", "-3"]),
          ("hil tolerance", ["hil", M, "--board", "host", "--data", "{d}/ok.npz",
                             "--tolerance", "x"]),
          ("hil layout", ["hil", M, "--board", "host", "--data", "{d}/ok.npz", "--layout",
                          "chw"]),
          ("convert method", ["convert", M, "--method", "best"]),
          ("convert float no calib", ["convert", "{d}/float.onnx", "-o", "{d}/o_fnc"]),
          ("patch diff seq", ["patch", "diff", M, N, "-k", K, "--seq", "-1", "-o", "{d}/o7.mcup"]),
          ("patch diff budget", ["patch", "diff", M, N, "-k", K, "--seq", "1", "--budget", "7",
                                 "-o", "{d}/o8.mcup"]),
          ("unknown command", ["frobnicate"]),
          # `mcu flash` (issue #13): no build, no port, flasher missing / failing
          ("flash missing", ["flash", "{d}/missing-build"]),
          ("flash not a build", ["flash", "{d}/adir"]),
          ("flash bad model", ["flash", "{d}/model.txt", "--board", "host"]),
          ("flash board", ["flash", "{d}/flashb-fail", "--board", "nonexistent"]),
          ("flash other board", ["flash", "{d}/flashb-fail", "--board", "host"]),
          ("flash no port", ["flash", "{d}/flashb-fail"]),
          ("flash flasher fails", ["flash", "{d}/flashb-fail", "--port", "socket://127.0.0.1:1"]),
          ("flash flasher missing", ["flash", "{d}/flashb-missing", "--port",
                                     "socket://127.0.0.1:1"]),
          ("flash place no coordinator", ["flash", "{d}/flashb-fail", "--place", "A",
                                          "--coordinator", "127.0.0.1:1"]),
          ("flash place and port", ["flash", "{d}/flashb-fail", "--place", "A", "--port",
                                    "socket://127.0.0.1:1"]),
          # labgrid places and parallel HIL (issue #13); a coordinator that is not there
          ("hil place no coordinator", ["hil", M, "--data", "{d}/ok.npz", "--place", "A",
                                        "--coordinator", "127.0.0.1:1"]),
          ("hil places no coordinator", ["hil", M, "--data", "{d}/ok.npz", "--place", "A",
                                         "--place", "B", "--coordinator", "127.0.0.1:1"]),
          ("infer place no coordinator", ["infer", M, "--input", "{d}/x.npy", "--place", "A",
                                          "--coordinator", "127.0.0.1:1"]),
          ("patch send place no coordinator", ["patch", "send", "{d}/p.mcup", "--place", "A",
                                               "--coordinator", "127.0.0.1:1"]),
          ("patch status place no coordinator", ["patch", "status", "--place", "A",
                                                 "--coordinator", "127.0.0.1:1"]),
          ("hil place and port", ["hil", M, "--data", "{d}/ok.npz", "--place", "A", "--port",
                                  "socket://127.0.0.1:1"]),
          ("infer place and port", ["infer", M, "--input", "{d}/x.npy", "--place", "A",
                                    "--port", "socket://127.0.0.1:1"]),
          ("hil place-timeout alone", ["hil", M, "--board", "host", "--data", "{d}/ok.npz",
                                       "--place-timeout", "3"]),
          ("infer coordinator alone", ["infer", M, "--input", "{d}/x.npy", "--coordinator",
                                       "127.0.0.1:1"]),
          ("hil place-timeout negative", ["hil", M, "--data", "{d}/ok.npz", "--place", "A",
                                          "--place-timeout", "-1"]),
          ("hil jobs zero", ["hil", M, "--board", "host", "--data", "{d}/ok.npz", "--jobs", "0"]),
          ("hil jobs word", ["hil", M, "--board", "host", "--data", "{d}/ok.npz", "--jobs", "x"]),
          ("hil jobs with port", ["hil", M, "--data", "{d}/ok.npz", "--jobs", "2", "--port",
                                  "socket://127.0.0.1:1"]),
          ("hil jobs real board", ["hil", M, "--board", "nucleo-f446re", "--data", "{d}/ok.npz",
                                   "--jobs", "2"]),
          ("hil jobs bad model", ["hil", "{d}/garbage.tflite", "--board", "host", "--data",
                                  "{d}/ok.npz", "--jobs", "2"]),
          ("hil jobs bad data", ["hil", M, "--board", "host", "--data", "{d}/nan.npz", "--jobs",
                                 "2"]),
          ("hil jobs unknown board", ["hil", M, "--board", "nonexistent", "--data",
                                      "{d}/ok.npz", "--jobs", "2"]),
          ("patch keygen exists", ["patch", "keygen", K])]
    return c


CASES = _cases()


def test_the_matrix_is_large():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("label,args", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_clean_line(label, args, ws, tmp_path, monkeypatch):
    if any("float.onnx" in a for a in args) and not (ws / "float.onnx").exists():
        _float_onnx(ws / "float.onnx")
    if any("{d}/flashb-" in a for a in args):
        monkeypatch.setenv("MCU_BOARDS_PATH", str(ws / "flashboards"))
        _flash_builds(ws)
    monkeypatch.chdir(tmp_path)                         # nothing may appear here either
    before = {p for p in ws.rglob("*")}
    argv = [a.format(d=ws) for a in args]
    r = CliRunner().invoke(main, argv)
    out = r.output
    assert r.exit_code != 0, f"{label}: exit 0 on bad input: {out[-300:]}"
    assert r.exit_code in DOCUMENTED, f"{label}: exit {r.exit_code}: {out[-300:]}"
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        f"{label}: {type(r.exception).__name__}: {r.exception}"
    assert "Traceback" not in out, f"{label}: traceback"
    assert out.count("error:") + out.count("Error:") >= 1, f"{label}: no error line: {out[-300:]}"
    after = {p for p in ws.rglob("*")}
    new = {p for p in after - before if not p.name.startswith(".")}
    assert not new, f"{label}: left {sorted(str(p.relative_to(ws)) for p in new)}"
    assert not list(tmp_path.iterdir()), f"{label}: wrote into the working directory"


def _flash_builds(ws):
    """Host-board builds whose board TOMLs name a failing / a missing flasher."""
    import sys

    from toolchain.build import build_firmware
    bd = ws / "flashboards"
    if (ws / "flashb-missing" / "build.json").exists():
        return
    bd.mkdir(exist_ok=True)
    host = (Path(__file__).resolve().parent.parent / "hw/boards/host.toml").read_text()
    fail = f'["{sys.executable}", "-c", "import sys; print(\'Error: no target\'); sys.exit(1)"]'
    for name, cmd in (("fail", fail), ("missing", '["no-such-flasher-mcu", "{elf}"]')):
        t = host.replace('name = "host"', f'name = "flash-{name}"')
        (bd / f"flash-{name}.toml").write_text(t.replace("[launch]\n",
                                                         f"[launch]\nflash_command = {cmd}\n"))
        build_firmware(f"flash-{name}", ws / f"flashb-{name}")


def _float_onnx(path):
    torch = pytest.importorskip("torch")
    from torch import nn

    from converters.torch_frontend import torch_to_onnx
    g = toy_int8_graph()
    shape = tuple(g.t(g.inputs[0]).shape)
    net = nn.Sequential(nn.Conv2d(shape[3], 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * shape[1] * shape[2], 3)).eval()
    data = torch_to_onnx(net, (torch.zeros(1, shape[3], shape[1], shape[2]),))
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, (bytes, bytearray)) else data.SerializeToString())
    os.replace(tmp, path)

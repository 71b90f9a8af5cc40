"""The CLI's one error boundary (toolchain/cli/__init__.py): file errors and internal
errors end in one line and a documented exit status, never a traceback."""
from __future__ import annotations

from click.testing import CliRunner

import toolchain.boards
from toolchain.cli import EXIT_INTERNAL, EXIT_IO, main


def test_unwritable_output_path_is_one_line_and_exit_5(tmp_path):
    r = CliRunner().invoke(main, ["boards", "--json", str(tmp_path / "no" / "such" / "b.json")])
    assert r.exit_code == EXIT_IO, r.output
    err = [l for l in r.output.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "b.json" in err[0] and "Traceback" not in r.output


def test_internal_error_is_one_line_exit_70_and_debug_shows_it(monkeypatch):
    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")
    monkeypatch.setattr(toolchain.boards, "list_boards", boom)   # read at call time
    r = CliRunner().invoke(main, ["boards"])
    assert r.exit_code == EXIT_INTERNAL, r.output
    assert "internal error (a bug in mcu): ZeroDivisionError: simulated bug" in r.output
    assert "MCU_DEBUG=1" in r.output
    r = CliRunner().invoke(main, ["--debug", "boards"])
    assert isinstance(r.exception, ZeroDivisionError)
    monkeypatch.setenv("MCU_DEBUG", "1")
    r = CliRunner().invoke(main, ["boards"])
    assert isinstance(r.exception, ZeroDivisionError)


def test_usage_errors_stay_clicks():
    r = CliRunner().invoke(main, ["build", "--kernels", "nonsense"])
    assert r.exit_code == 2 and "Invalid value" in r.output


def test_infer_input_files_are_checked_in_one_line(tmp_path):
    import numpy as np

    from converters.tflite_writer import write_tflite
    from toolchain.patch.toy import toy_int8_graph
    g = toy_int8_graph()
    model = tmp_path / "m.tflite"
    model.write_bytes(write_tflite(g))
    shape = g.t(g.inputs[0]).shape
    (tmp_path / "garbage.npy").write_bytes(b"not numpy at all")
    np.save(tmp_path / "nan.npy", np.full(shape, np.nan, np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0,) + tuple(shape[1:]), np.float32))
    np.savez(tmp_path / "nox.npz", y=np.zeros(3))
    for name, msg in (("garbage.npy", "not a valid .npy"), ("nan.npy", "non-finite"),
                      ("empty.npy", "no samples"), ("nox.npz", "no array 'x'")):
        r = CliRunner().invoke(main, ["infer", str(model), "--board", "host", "--input",
                                      str(tmp_path / name)])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, (name, r.output)
    np.savez(tmp_path / "ok.npz", x=np.zeros((2,) + tuple(shape[1:]), np.float32))
    r = CliRunner().invoke(main, ["infer", str(model), "--board", "host", "--input",
                                  str(tmp_path / "ok.npz"), "--no-check"])
    assert r.exit_code == 0, r.output


def test_device_without_a_model_is_exit_3(tmp_path):
    """The model client against firmware without a model: one line, exit status 3 (as a
    device running another model), not a generic link failure."""
    import pytest

    from toolchain.build import load_build
    from toolchain.devices import start_device
    from toolchain.errors import NoModelError
    from toolchain.link.model import ModelClient
    r = CliRunner().invoke(main, ["build", "--board", "host", "-o", str(tmp_path / "fw")])
    assert r.exit_code == 0, r.output
    with start_device("host", load_build(tmp_path / "fw")) as dev:
        with pytest.raises(NoModelError) as e:
            ModelClient(dev.link()).info()
    assert e.value.exit_code == 3 and "runs no model" in str(e.value)

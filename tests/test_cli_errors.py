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

"""The import layers (setup.cfg [importlinter]): run import-linter, fail with its report.

A new import circle, or an import that runs down-to-up between layers, breaks a
contract here, so `make test` and CI catch it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")   # the test venv's, not another
    return str(exe) if exe.exists() else shutil.which("lint-imports")


def test_import_layers():
    exe = _lint_imports()
    # a failure, not a skip: without the check nothing guards the layers
    assert exe, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # --no-cache: no cache directory written into the checkout
    r = subprocess.run([exe, "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"import layers broken (setup.cfg [importlinter]):\n{r.stdout}{r.stderr}",
                    pytrace=False)


def test_every_cli_command_module_is_in_the_cli_contract():
    """The cli contract lists its source modules by name (so `__main__` may run the
    group); a new command module must be added there."""
    import configparser
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    listed = set(cfg["importlinter:contract:cli"]["source_modules"].split())
    mods = {f"toolchain.cli.{p.stem}" for p in (root / "toolchain" / "cli").glob("*.py")
            if p.stem not in ("__init__", "__main__")}
    assert mods == listed, f"not in setup.cfg's cli contract: {sorted(mods - listed)}"

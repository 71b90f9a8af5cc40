"""`mcu flash` (issue #13): a build flashed through a board's TOML flasher (here a fake
flasher script that "flashes" by starting the host firmware on a fixed port, printing
progress as pyOCD does), then checked over the serial link (board, build id, model
hash); QEMU boards start the emulator with the image. Bad input: flasher missing,
flasher failing, the board answering with another firmware -> one line, non-zero."""
from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolchain.build import build_firmware
from toolchain.cli import main
from toolchain.devices import free_port

FAKE = textwrap.dedent("""
    # fake flasher: fake_flash.py ELF PORT_URL PIDFILE MODE
    import os, subprocess, sys, time
    elf, url, pidfile, mode = sys.argv[1:5]
    if mode == "fail":
        print("Erasing: 40%", flush=True)
        print("0001234 E Error: no target connected", flush=True)
        sys.exit(1)
    port = url.rsplit(":", 1)[1]
    for p in (10, 50, 100):
        sys.stdout.write(f"\\r[{'=' * (p // 10)}] {p}%")
        sys.stdout.flush()
    proc = subprocess.Popen([elf, "--port", port], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    open(pidfile, "w").write(str(proc.pid))
    line = proc.stdout.readline()          # MCU_LISTEN 127.0.0.1 PORT
    print("\\nflashed:", line.decode().strip(), flush=True)
""")


def _board(d: Path, name: str, flasher: list[str]) -> None:
    host = (Path(__file__).resolve().parent.parent / "hw/boards/host.toml").read_text()
    text = host.replace('name = "host"', f'name = "{name}"')
    cmd = ", ".join(f'"{a}"' for a in flasher)
    text = text.replace("[launch]\n", f"[launch]\nflash_command = [{cmd}]\n")
    (d / f"{name}.toml").write_text(text)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("flash")
    boards = d / "boards"
    boards.mkdir()
    script = d / "fake_flash.py"
    script.write_text(FAKE)
    pid = d / "pid"
    py = sys.executable
    _board(boards, "fake-ok", [py, str(script), "{elf}", "{port}", str(pid), "ok"])
    _board(boards, "fake-fail", [py, str(script), "{elf}", "{port}", str(pid), "fail"])
    _board(boards, "fake-missing", ["no-such-flasher-mcu", "{elf}"])
    old = os.environ.get("MCU_BOARDS_PATH")
    os.environ["MCU_BOARDS_PATH"] = str(boards)
    fw = build_firmware("fake-ok", d / "b-ok")
    other = build_firmware("host", d / "b-other")          # another firmware (other board)
    _board(boards, "fake-other", [py, str(script), str(other.elf), "{port}", str(pid), "ok"])
    for b in ("fake-fail", "fake-missing", "fake-other"):
        build_firmware(b, d / f"b-{b}")
    yield dict(d=d, pid=pid, fw=fw)
    if old is None:
        os.environ.pop("MCU_BOARDS_PATH", None)
    else:
        os.environ["MCU_BOARDS_PATH"] = old


def _kill(pidfile: Path):
    if pidfile.exists():
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink()


def _flash(setup, build, *extra):
    url = f"socket://127.0.0.1:{free_port()}"
    try:
        return CliRunner().invoke(main, ["flash", str(build), "--port", url, *extra])
    finally:
        _kill(setup["pid"])


def test_flash_with_a_fake_flasher_and_verify(setup, tmp_path):
    r = _flash(setup, setup["fw"].build_dir, "--json", str(tmp_path / "f.json"))
    assert r.exit_code == 0, r.output
    assert f"answers with build {setup['fw'].build_id}" in r.output
    import json
    j = json.loads((tmp_path / "f.json").read_text())
    assert j["build_id"] == setup["fw"].build_id and j["flasher"] == sys.executable


@pytest.mark.parametrize("board,want,code", [
    ("fake-fail", "flashing fake-fail failed:", 1),
    ("fake-missing", "flasher no-such-flasher-mcu not found", 1),
    ("fake-other", "answers with another firmware", 3),
])
def test_flash_bad_cases_are_one_line(setup, board, want, code):
    r = _flash(setup, setup["d"] / f"b-{board}")
    assert r.exit_code == code, r.output
    errs = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and want in errs[0], r.output
    assert "Traceback" not in r.output


def test_flash_qemu_board_runs_the_image(tmp_path):
    import shutil
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("qemu-system-arm / arm-none-eabi-gcc not installed")
    fw = build_firmware("mps2-an386", tmp_path / "q")
    r = CliRunner().invoke(main, ["flash", str(fw.build_dir)])
    assert r.exit_code == 0 and f"answers with build {fw.build_id}" in r.output, r.output


def test_model_hash_is_checked(tmp_path):
    """A model build's device must report the model hash its memory plan records."""
    import json

    from toolchain.boards import load_board
    from toolchain.build import BuildResult
    from toolchain.devices.flashing import expected_model_hash, verify_identity
    from toolchain.errors import WrongFirmware
    from toolchain.link.link import DeviceInfo
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "plan.json").write_text(json.dumps({"model_hash": "ab" * 32}))
    fw = BuildResult(board="host", build_dir=tmp_path, elf=tmp_path / "firmware", bin=None,
                     map=None, build_id="0123456789abcdef", test_build=False, flash_used=0,
                     ram_used=0, flash_budget=0, ram_budget=0)
    assert expected_model_hash(fw) == "ab" * 32

    class FakeLink:
        url = "loop://"

        def __init__(self, h):
            self.h = h

        def info(self):
            return DeviceInfo(board="host", build_id=fw.build_id, model_hash=self.h)
    b = load_board("host")
    assert verify_identity(FakeLink("ab" * 32), fw, b).model_hash == "ab" * 32
    with pytest.raises(WrongFirmware, match="model cdcdcdcdcdcdcdcd") as e:
        verify_identity(FakeLink("cd" * 32), fw, b)
    assert e.value.exit_code == 3 and "\n" not in str(e.value)


def test_flash_through_a_labgrid_place(tmp_path):
    """`mcu flash --place`: a localhost farm (coordinator + exporter, one emulated board
    whose exporter runs the firmware: used as flashed); the place's device answers with
    the build it runs, another build is refused (exit 3), the place is released."""
    import shutil
    try:
        import labgrid  # noqa: F401
    except ImportError:
        pytest.skip("needs labgrid")
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("qemu-system-arm / arm-none-eabi-gcc not installed")
    sys.path.insert(0, str(Path(__file__).parent))
    from hil_common import digits_model

    from toolchain.bench_farm import LocalFarm
    from toolchain.farm import place_holder
    model, _ = digits_model()
    other = build_firmware("mps2-an386", tmp_path / "other")
    (tmp_path / "farm").mkdir()
    with LocalFarm.emulated(model, 1, workdir=tmp_path / "farm") as farm:
        [place] = farm.places
        fw = farm.devices[0].firmware
        co = ["--coordinator", farm.coordinator]
        r = CliRunner().invoke(main, ["flash", str(fw.build_dir), "--place", place, *co])
        assert r.exit_code == 0 and f"answers with build {fw.build_id}" in r.output, r.output
        r = CliRunner().invoke(main, ["flash", str(other.build_dir), "--place", place, *co])
        assert r.exit_code == 3 and "answers with another firmware" in r.output, r.output
        assert place_holder(place, farm.coordinator) is None       # released both times

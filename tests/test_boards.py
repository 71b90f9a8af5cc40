"""Board files: listing, defaults, validation, adding a board without Python changes."""
import re
import shutil

import pytest
from click.testing import CliRunner

from toolchain.boards import BOARDS_DIR, board_names, default_board_name, list_boards, load_board
from toolchain.build import build_firmware
from toolchain.cli import main
from toolchain.errors import BoardError, ToolMissing


def test_builtin_boards():
    names = board_names()
    for n in ("mps2-an386", "mps2-an500", "host"):
        assert n in names
    assert default_board_name() == "mps2-an386"
    b = load_board("mps2-an386")
    assert (b.flash_size, b.ram_size, b.instructions_per_tick, b.kind) == (1 << 20, 256 << 10, 40,
                                                                          "qemu")
    assert "-icount" in b.launch_command and "server=on,wait=on" in " ".join(b.launch_command)
    assert load_board("mps2-an500").core == "cortex-m7"
    assert load_board("host").kind == "host"


def test_unknown_board():
    with pytest.raises(BoardError, match=r"unknown board 'nope'; known boards: .*mps2-an386"):
        load_board("nope")


@pytest.fixture
def board_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MCU_BOARDS_PATH", str(tmp_path))
    return tmp_path


def _variant(board_dir, name, edit):
    text = (BOARDS_DIR / "mps2-an386.toml").read_text().replace('"mps2-an386"', f'"{name}"', 1)
    text = text.replace("default = true", "default = false")
    (board_dir / f"{name}.toml").write_text(edit(text))


def test_add_board_by_toml_only(board_dir):
    _variant(board_dir, "mps2-an386-small", lambda t: t.replace("0x100000", "0x20000"))
    assert "mps2-an386-small" in board_names()
    b = load_board("mps2-an386-small")
    assert b.flash_size == 0x20000 and b.family == "mps2"
    assert default_board_name() == "mps2-an386"


@pytest.mark.parametrize("field,line", [("[memory] flash_size", "flash_size = 0x100000"),
                                        ("[compiler] cc", 'cc = "arm-none-eabi-gcc"'),
                                        ("kind", 'kind = "qemu"')])
def test_missing_field_named(board_dir, field, line):
    _variant(board_dir, "broken", lambda t: t.replace(line, ""))
    with pytest.raises(BoardError, match="broken.toml: missing field " + re.escape(field)):
        load_board("broken")


def test_bad_values(board_dir):
    _variant(board_dir, "badtype", lambda t: t.replace("ram_size = 0x40000", 'ram_size = "big"'))
    with pytest.raises(BoardError, match=r"\[memory\] ram_size must be a int"):
        load_board("badtype")
    _variant(board_dir, "badname", lambda t: t.replace('name = "badname"', 'name = "other"'))
    with pytest.raises(BoardError, match="must match the file name"):
        load_board("badname")
    (board_dir / "syntax.toml").write_text("name = \n")
    with pytest.raises(BoardError, match="not valid TOML"):
        load_board("syntax")
    _variant(board_dir, "nofam", lambda t: t.replace('family = "mps2"', 'family = "stm32x"'))
    with pytest.raises(BoardError, match="has no firmware"):
        load_board("nofam")


def test_missing_cross_compiler(board_dir, tmp_path):
    _variant(board_dir, "nocc", lambda t: t.replace('cc = "arm-none-eabi-gcc"',
                                                    'cc = "arm-none-eabi-gcc-missing"'))
    with pytest.raises(ToolMissing, match="arm-none-eabi-gcc-missing not found.*apt-get install"):
        build_firmware("nocc", tmp_path / "b")


def test_missing_qemu(board_dir, tmp_path):
    from toolchain.devices import start_device
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed")
    _variant(board_dir, "noqemu", lambda t: t.replace('"qemu-system-arm"', '"qemu-system-nope"'))
    fw = build_firmware("noqemu", tmp_path / "b")
    with pytest.raises(ToolMissing, match="qemu-system-nope not found.*qemu-system-arm"):
        start_device("noqemu", fw)


def test_cli_boards_and_errors(tmp_path):
    r = CliRunner().invoke(main, ["boards", "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 0 and "mps2-an386" in r.output and "(default)" in r.output
    assert (tmp_path / "b.json").exists()
    for args in (["info", "--board", "nope"], ["build", "--board", "nope"],
                 ["info", "--port", "/dev/ttyNOPE0"], ["info", "--port", "socket://127.0.0.1:1"],
                 ["build", "model.tflite", "--board", "host", "-o", str(tmp_path / "m")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, args
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.output)
        assert "Traceback" not in r.output


def test_board_toml_read_once_per_build(tmp_path, monkeypatch):
    """`mcu build MODEL` reads the board file once (build_model, firmware_sources and
    build_firmware get the Board object); without --board, the scan that finds the
    default board is the only read."""
    import toolchain.boards as boards
    from converters.tflite_writer import write_tflite
    from toolchain.patch.toy import toy_int8_graph
    assert boards.resolve_board(None).name == default_board_name()
    b = load_board("host")
    assert boards.resolve_board(b) is b
    reads = []
    parse = boards.parse_board
    monkeypatch.setattr(boards, "parse_board", lambda p: reads.append(p.stem) or parse(p))
    model = tmp_path / "toy.tflite"
    model.write_bytes(write_tflite(toy_int8_graph()))
    r = CliRunner().invoke(main, ["build", str(model), "--board", "host", "--no-tflm",
                                  "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert reads == ["host"]
    reads.clear()
    boards.resolve_board(None)
    assert sorted(reads) == board_names()


def test_an_all_digit_build_id_is_still_a_c_string():
    """The build id is 16 hex digits; about one build in 2,000 has no letter in it, and it
    must still compile as a string literal (app/eembc.c concatenates it)."""
    from toolchain.build import CString, _defines_flags
    assert _defines_flags({"MCU_BUILD_ID": CString("2269629541386297")}) == \
        ['-DMCU_BUILD_ID="2269629541386297"']
    assert _defines_flags({"N": "12"}) == ["-DN=12"]

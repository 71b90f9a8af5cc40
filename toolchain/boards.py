"""Board definitions as data: hw/boards/*.toml (plus directories in $MCU_BOARDS_PATH).

Adding a board needs no Python change: drop NAME.toml next to the others (see
hw/boards/mps2-an386.toml for every field). `kind` selects how it is started
(qemu: an emulator command; host: a native process; serial: a real board on a
port), `family` selects firmware_templates/boards/<family>/."""
from __future__ import annotations

import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import BoardError

BOARDS_DIR = Path(__file__).resolve().parent.parent / "hw" / "boards"
KINDS = ("qemu", "host", "serial")

# (table, key, type); "" table = top level.
_REQUIRED = [
    ("", "name", str), ("", "kind", str), ("", "family", str),
    ("compiler", "cc", str), ("compiler", "cflags", list),
    ("memory", "flash_size", int), ("memory", "ram_size", int),
    ("timing", "tick_hz", int),
    ("serial", "baudrate", int), ("serial", "timeout", (int, float)),
]
_REQUIRED_BY_KIND = {
    "qemu": [("launch", "command", list), ("serial", "url", str),
             ("memory", "flash_origin", int), ("memory", "ram_origin", int),
             ("compiler", "linker_script", str)],
    "host": [("launch", "command", list), ("serial", "url", str)],
    "serial": [],
}


@dataclass
class Board:
    name: str
    path: Path
    kind: str
    family: str
    description: str = ""
    default: bool = False
    core: str = ""
    cc: str = "cc"
    objcopy: str | None = None
    opt: str = "-O2"
    cflags: list = field(default_factory=list)
    ldflags: list = field(default_factory=list)
    libs: list = field(default_factory=list)
    defines: dict = field(default_factory=dict)  # [compiler] defines: per-board -D
    linker_script: str | None = None
    flash_origin: int = 0
    flash_size: int = 0
    ram_origin: int = 0
    ram_size: int = 0
    stack_size: int = 0x2000
    cpu_hz: int = 0
    tick_hz: int = 0
    instructions_per_tick: int = 0
    launch_command: list = field(default_factory=list)
    test_args: list = field(default_factory=list)
    flash_command: list = field(default_factory=list)  # kind=serial: e.g. pyocd flash {hex}
    connect_timeout: float = 10.0
    serial_url: str = ""
    baudrate: int = 115200
    serial_timeout: float = 1.0
    retries: int = 3
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def is_cross(self) -> bool:
        return self.kind != "host"

    def summary(self) -> dict:
        return dict(name=self.name, kind=self.kind, core=self.core, family=self.family,
                    flash_budget=self.flash_size, ram_budget=self.ram_size,
                    default=self.default, description=self.description, file=str(self.path))


def board_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("MCU_BOARDS_PATH", "").split(os.pathsep) if p]
    return extra + [BOARDS_DIR]


def _board_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in board_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def _get(raw: dict, table: str, key: str):
    t = raw.get(table, {}) if table else raw
    return t.get(key) if isinstance(t, dict) else None


def parse_board(path: Path) -> Board:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    except OSError as e:
        raise BoardError(f"cannot read board file {path}: {e.strerror}") from None
    kind = raw.get("kind")
    for table, key, typ in _REQUIRED + _REQUIRED_BY_KIND.get(kind, []):
        v = _get(raw, table, key)
        where = f"[{table}] {key}" if table else key
        if v is None:
            raise BoardError(f"{path}: missing field {where}; add it (see "
                             f"{BOARDS_DIR / 'mps2-an386.toml'} for every field)")
        if not isinstance(v, typ) or isinstance(v, bool) and typ is int:
            tn = typ.__name__ if isinstance(typ, type) else "number"
            raise BoardError(f"{path}: field {where} must be a {tn}, got {v!r}")
    if kind not in KINDS:
        raise BoardError(f"{path}: kind = {kind!r} is not one of {', '.join(KINDS)}")
    if raw["name"] != path.stem:
        raise BoardError(f"{path}: name = {raw['name']!r} must match the file name "
                         f"({path.stem!r}); rename one of them")
    fam = Path(__file__).resolve().parent.parent / "firmware_templates" / "boards" / raw["family"]
    if not fam.is_dir():
        raise BoardError(f"{path}: family = {raw['family']!r} has no firmware "
                         f"(expected {fam}); use an existing family (mps2, host) or add one")
    c, m, t = raw.get("compiler", {}), raw.get("memory", {}), raw.get("timing", {})
    la, se = raw.get("launch", {}), raw.get("serial", {})
    return Board(
        name=raw["name"], path=path, kind=kind, family=raw["family"],
        description=raw.get("description", ""), default=bool(raw.get("default", False)),
        core=raw.get("cpu", {}).get("core", ""),
        cc=c["cc"], objcopy=c.get("objcopy"), opt=c.get("opt", "-O2"),
        cflags=list(c.get("cflags", [])), ldflags=list(c.get("ldflags", [])),
        libs=list(c.get("libs", [])), defines=dict(c.get("defines", {})),
        linker_script=c.get("linker_script"),
        flash_origin=m.get("flash_origin", 0), flash_size=m["flash_size"],
        ram_origin=m.get("ram_origin", 0), ram_size=m["ram_size"],
        stack_size=m.get("stack_size", 0x2000),
        cpu_hz=t.get("cpu_hz", 0), tick_hz=t["tick_hz"],
        instructions_per_tick=t.get("instructions_per_tick", 0),
        launch_command=list(la.get("command", [])), test_args=list(la.get("test_args", [])),
        flash_command=list(la.get("flash_command", [])),
        connect_timeout=float(la.get("connect_timeout", 10.0)),
        serial_url=se.get("url", ""), baudrate=se["baudrate"],
        serial_timeout=float(se["timeout"]), retries=int(se.get("retries", 3)),
        raw=raw)


def list_boards() -> list[Board]:
    return [parse_board(p) for p in _board_files().values()]


def board_names() -> list[str]:
    return sorted(_board_files())


def default_board_name() -> str:
    for b in list_boards():
        if b.default:
            return b.name
    return "mps2-an386"


def default_board() -> Board:
    """The default board (default = true; else mps2-an386), from the one scan that finds it."""
    boards = list_boards()
    for b in boards:
        if b.default:
            return b
    for b in boards:
        if b.name == "mps2-an386":
            return b
    return load_board("mps2-an386")     # not found: load_board says so in one line


def resolve_board(board=None) -> Board:
    """A Board from a Board, a name, a .toml path, or None (the default board). The CLI
    resolves once and passes the Board down; functions below accept either."""
    if board is not None and not isinstance(board, Board) and not str(board).strip():
        raise BoardError("empty board name; give one of `mcu boards` (or leave --board out "
                         "for the default board)")
    return load_board(board) if board else default_board()


def load_board(name_or_path) -> Board:
    """A board by name (hw/boards/NAME.toml or $MCU_BOARDS_PATH) or by path to a .toml."""
    if isinstance(name_or_path, Board):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".toml"):
        return parse_board(Path(s))
    files = _board_files()
    if s not in files:
        raise BoardError(f"unknown board {s!r}; known boards: {', '.join(sorted(files))} "
                         f"(see `mcu boards`; add one as hw/boards/{s}.toml or in a "
                         f"directory listed in $MCU_BOARDS_PATH)")
    return parse_board(files[s])

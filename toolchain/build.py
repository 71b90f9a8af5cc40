"""Firmware builds: firmware_templates (+ generated sources) + board TOML -> ELF/BIN,
with a flash/RAM report from the ELF sections and the linker map.

    res = build_firmware("mps2-an386", "build/an386",
                         extra_sources=[gen/"model.c"], include_dirs=[gen],
                         defines={"MCU_SCRATCH_SIZE": 1024}, test_build=False)
    res.elf, res.bin, res.flash_used, res.ram_used, res.by_file["gen/model.c"]

A build whose inputs did not change is reused (same build_id)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.boards import Board, load_board
from toolchain.build_cache import ObjectCache
from toolchain.errors import BuildError, ToolMissing

TEMPLATES = Path(__file__).resolve().parent.parent / "firmware_templates"
WARN_FLAGS = ["-std=c99", "-Wall", "-Wextra"]
MANIFEST = "build.json"


@dataclass
class BuildResult:
    board: str
    build_dir: Path
    elf: Path                # the ELF (host board: the native executable)
    bin: Path | None         # raw image for flashing (cross boards)
    map: Path | None
    build_id: str
    test_build: bool
    flash_used: int
    ram_used: int
    flash_budget: int
    ram_budget: int
    sections: list = field(default_factory=list)  # {name, addr, size, flash, ram}
    by_file: dict = field(default_factory=dict)   # source -> {"flash": B, "ram": B}
    cached: bool = False
    objects_from_cache: int = 0   # compiles skipped by the object cache (build_cache.py)

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("build_dir", "elf", "bin", "map"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "BuildResult":
        d = dict(d)
        for k in ("build_dir", "elf", "bin", "map"):
            d[k] = Path(d[k]) if d.get(k) else None
        return cls(**d)

    def report(self) -> str:
        def pct(a, b):
            return f" ({100 * a / b:.1f} % of {b:,} B)" if b else ""
        lines = [f"firmware: {self.elf}" + (" (test build)" if self.test_build else ""),
                 f"flash used: {self.flash_used:,} B{pct(self.flash_used, self.flash_budget)}",
                 f"RAM used:   {self.ram_used:,} B{pct(self.ram_used, self.ram_budget)}"]
        return "\n".join(lines)


def load_build(path) -> BuildResult:
    """A previous build from its directory, its ELF or its build.json."""
    p = Path(path)
    m = p / MANIFEST if p.is_dir() else (p if p.name == MANIFEST else p.parent / MANIFEST)
    if not m.exists():
        raise BuildError(f"no firmware build at {path} (missing {m.name}); run "
                         f"`mcu build --board BOARD -o DIR` first")
    return BuildResult.from_json(json.loads(m.read_text()))


def require_tool(tool: str, board: Board) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if tool.startswith("arm-none-eabi"):
        fix = "install it: sudo apt-get install --no-install-recommends gcc-arm-none-eabi"
    elif tool.startswith("qemu-system"):
        fix = "install it: sudo apt-get install --no-install-recommends qemu-system-arm"
    else:
        fix = "install a C compiler (sudo apt-get install gcc) or set [compiler] cc"
    raise ToolMissing(f"{tool} not found (needed by board {board.name}); {fix}, "
                      f"or run `make setup`")


def model_sources(model, board: Board, out_dir: Path):
    """Hook for `mcu build MODEL`: generated C for a model.

    toolchain.codegen provides firmware_sources(model, board, out_dir) ->
    (sources, include_dirs, defines); until it does, a clear error."""
    try:
        from toolchain import codegen
        fn = getattr(codegen, "firmware_sources")
    except (ImportError, AttributeError):
        raise BuildError(f"cannot build model {model} yet: model builds arrive with the "
                         f"runtime and code generator; run `mcu build --board {board.name}` "
                         f"without a model for now") from None
    return fn(model, board, Path(out_dir))


def _sources(board: Board, with_runtime: bool, extra_sources) -> list[tuple[Path, str]]:
    """(path, object stem) for every C/asm file of the firmware."""
    fam = TEMPLATES / "boards" / board.family
    out = []
    dirs = [("app", TEMPLATES / "app"), (f"boards/{board.family}", fam)]
    if board.is_cross:      # every cross family shares the Cortex-M core layer
        dirs.append(("boards/cortexm", TEMPLATES / "boards" / "cortexm"))
    if with_runtime and (TEMPLATES / "runtime").is_dir():
        dirs.append(("runtime", TEMPLATES / "runtime"))
    for tag, d in dirs:
        # runtime/: top level only (runtime/test/ is the kernel engineer's own harness)
        glob = d.glob if tag == "runtime" else d.rglob
        for p in sorted(list(glob("*.c")) + list(glob("*.S"))):
            out.append((p, f"{tag}/{p.relative_to(d).as_posix()}"))
    for p in extra_sources:
        p = Path(p).resolve()
        if not p.exists():
            raise BuildError(f"extra source {p} does not exist")
        out.append((p, f"ext/{p.name}"))
    return out


def _hash_inputs(parts: list) -> str:
    h = hashlib.sha256()
    for x in parts:
        if isinstance(x, Path):
            h.update(str(x).encode())
            h.update(x.read_bytes() if x.is_file() else b"")
        else:
            h.update(repr(x).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class _Hit(subprocess.CompletedProcess):
    """A compile answered by the object cache (its stderr replayed)."""


class CString(str):
    """A define that is always a C string literal (a hex build id can be all digits)."""


def _defines_flags(defines: dict) -> list[str]:
    out = []
    for k, v in defines.items():
        if v is None or v is True:
            out.append(f"-D{k}")
        elif isinstance(v, CString) or (isinstance(v, str) and not v.lstrip("-").isdigit()):
            out.append(f'-D{k}="{v}"')
        else:
            out.append(f"-D{k}={int(v)}")
    return out


def build_firmware(board, build_dir=None, *, extra_sources=(), include_dirs=(),
                   defines: dict | None = None, test_build: bool = False,
                   werror: bool = False, with_runtime: bool = False, extra_cflags=(),
                   force: bool = False, jobs: int = 2) -> BuildResult:
    """Compile and link the device firmware for `board` into `build_dir`.

    extra_sources/include_dirs/defines add generated model code (weights as const
    arrays land in .rodata = flash, arenas in .bss = RAM, both in the report).
    test_build adds MCU_TEST_BUILD (semihosting exit/log). with_runtime compiles
    firmware_templates/runtime/ too. werror turns warnings into errors."""
    board = load_board(board)   # a Board (from the CLI, build_model) passes through
    build_dir = Path(build_dir or Path("build") / (board.name + ("-test" if test_build else "")))
    build_dir = build_dir.resolve()
    cc = require_tool(board.cc, board)
    objcopy = require_tool(board.objcopy, board) if board.objcopy else None

    srcs = _sources(board, with_runtime, extra_sources)
    incs = [TEMPLATES / "app", TEMPLATES / "boards" / board.family]
    if board.is_cross:
        incs.append(TEMPLATES / "boards" / "cortexm")
    if with_runtime and (TEMPLATES / "runtime").is_dir():
        incs.append(TEMPLATES / "runtime")
    incs += [Path(p).resolve() for p in include_dirs]
    defs = {"MCU_BOARD_NAME": board.name, "MCU_FLASH_BUDGET": board.flash_size,
            "MCU_RAM_BUDGET": board.ram_size, "MCU_TICK_HZ": board.tick_hz,
            "MCU_INSTR_PER_TICK": board.instructions_per_tick,
            "MCU_UART_BAUD": board.baudrate}
    if board.cpu_hz:
        defs["MCU_CPU_HZ"] = board.cpu_hz
    if str((board.raw.get("timing") or {}).get("counter", "")).lower() == "dwt":
        defs["MCU_TIMER_DWT"] = 1  # the board layer starts the DWT cycle counter
    if test_build:
        defs["MCU_TEST_BUILD"] = 1
    defs.update(board.defines)
    defs.update(defines or {})
    cflags = ([board.opt] + WARN_FLAGS + (["-Werror"] if werror else [])
              + ["-ffunction-sections", "-fdata-sections"] + list(board.cflags)
              + list(extra_cflags))
    headers = sorted(h for d in incs for h in Path(d).rglob("*.h"))
    ld_tmpl = (TEMPLATES / "boards" / board.family / board.linker_script
               if board.linker_script else None)
    build_id = _hash_inputs([board.path, *[s for s, _ in srcs], *headers, ld_tmpl, cc,
                             cflags, sorted(defs.items()), board.ldflags, board.libs,
                             [str(i) for i in incs]])
    defs["MCU_BUILD_ID"] = CString(build_id)

    man = build_dir / MANIFEST
    if not force and man.exists():
        try:
            old = load_build(build_dir)
            if (old.build_id == build_id and old.build_dir == build_dir and old.elf.exists()
                    and (not objcopy or (build_dir / "firmware.hex").exists())):
                old.cached = True
                return old
        except (BuildError, TypeError, ValueError, KeyError):
            pass
    if man.exists():
        man.unlink()
    obj_dir = build_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    log.write_text("")
    # The build id changes with every model: only the sources that print it get it, so
    # the others compile to the same object from model to model (and hit the cache).
    id_def = _defines_flags({"MCU_BUILD_ID": defs.pop("MCU_BUILD_ID")})
    common = cflags + [f"-I{i}" for i in incs] + _defines_flags(defs)
    cache = ObjectCache.default(build_dir)

    def compile_one(item):
        src, stem = item
        obj = obj_dir / (stem.replace("/", "__") + ".o")
        dep = obj.with_suffix(".d")
        uses_id = b"MCU_BUILD_ID" in Path(src).read_bytes()
        cmd = [cc, *common, *(id_def if uses_id else []), "-MD", "-MF", str(dep),
               "-c", str(src), "-o", str(obj)]
        hit = cache.fetch(cc, cmd, Path(src), obj) if cache else None
        if hit is not None:
            return src, stem, obj, cmd, _Hit(cmd, 0, "", hit)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if cache and r.returncode == 0:
            try:
                cache.store(cc, cmd, Path(src), obj, dep, r.stderr)
            except OSError:       # a full or read-only cache never fails a build
                pass
        return src, stem, obj, cmd, r

    objs = []
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        results = list(ex.map(compile_one, srcs))
    with log.open("a") as f:
        for src, stem, obj, cmd, r in results:
            f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    for src, stem, obj, cmd, r in results:
        if r.returncode != 0 or (werror and "warning:" in r.stderr):
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln),
                         r.stderr.strip().splitlines()[0] if r.stderr.strip() else "failed")
            raise BuildError(f"compiling {stem} failed: {first.strip()} (full log: {log})")
        objs.append((obj, stem))

    elf = build_dir / ("firmware" if not board.is_cross else "firmware.elf")
    mapf = build_dir / "firmware.map"
    ld_script = None
    if ld_tmpl:
        ld_script = build_dir / "linker.ld"
        ld_script.write_text(_render_ld(ld_tmpl, board))
    machine = [f for f in board.cflags if f.startswith(("-m", "-f"))]
    link_cmd = ([cc, board.opt, *machine, *[str(o) for o, _ in objs]]
                + ([f"-T{ld_script}"] if ld_script else [])
                + ["-Wl,--gc-sections", f"-Wl,-Map={mapf}", *board.ldflags, "-o", str(elf),
                   *board.libs])
    r = subprocess.run(link_cmd, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(" ".join(link_cmd) + "\n" + r.stdout + r.stderr)
    if r.returncode != 0:
        if ld_tmpl and ("overflowed" in r.stderr or "will not fit" in r.stderr):
            raise BuildError(_overflow_message(board, link_cmd, ld_tmpl, ld_script, elf,
                                               objs))
        first = next((ln for ln in r.stderr.splitlines() if "error" in ln or "undefined" in ln),
                     r.stderr.strip().splitlines()[0] if r.stderr.strip() else "failed")
        raise BuildError(f"linking firmware for {board.name} failed: {first.strip()} "
                         f"(full log: {log})")

    binf = None
    if objcopy:
        binf = build_dir / "firmware.bin"
        # firmware.hex too: flashing tools (pyocd, openocd, st-flash) take it with its
        # load addresses, unlike the raw .bin
        for fmt, out in (("binary", binf), ("ihex", build_dir / "firmware.hex")):
            r = subprocess.run([objcopy, "-O", fmt, str(elf), str(out)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(f"objcopy failed: {r.stderr.strip()[:200]}")

    sections, flash_used, ram_used = analyse_elf(elf, board)
    by_file = _by_file(mapf, sections, {o.name: stem for o, stem in objs})
    res = BuildResult(board=board.name, build_dir=build_dir, elf=elf, bin=binf, map=mapf,
                      build_id=build_id, test_build=test_build, flash_used=flash_used,
                      ram_used=ram_used, flash_budget=board.flash_size,
                      ram_budget=board.ram_size, sections=sections, by_file=by_file,
                      objects_from_cache=sum(isinstance(r[4], _Hit) for r in results))
    man.write_text(json.dumps(res.to_json(), indent=2) + "\n")
    return res


def _render_ld(tmpl: Path, board: Board, big: bool = False) -> str:
    big_size = 0x10000000
    vals = {"FLASH_ORIGIN": board.flash_origin, "RAM_ORIGIN": board.ram_origin,
            "FLASH_SIZE": big_size if big else board.flash_size,
            "RAM_SIZE": big_size if big else board.ram_size,
            "STACK_SIZE": board.stack_size}
    text = tmpl.read_text()
    for k, v in vals.items():
        text = text.replace(f"@{k}@", f"0x{v:X}")
    left = re.findall(r"@[A-Z_]+@", re.sub(r"/\*.*?\*/", "", text, flags=re.S))
    if left:
        raise BuildError(f"linker script template {tmpl} uses {left[0]}, which the board "
                         f"file cannot fill")
    return text


def _overflow_message(board, link_cmd, ld_tmpl, ld_script, elf, objs) -> str:
    """Relink with huge regions to measure what the firmware needs, per section."""
    with tempfile.TemporaryDirectory() as td:
        big_ld = Path(td) / "big.ld"
        big_ld.write_text(_render_ld(ld_tmpl, board, big=True))
        big_elf, big_map = Path(td) / "big.elf", Path(td) / "big.map"
        cmd = [a.replace(str(ld_script), str(big_ld)).replace(str(elf), str(big_elf))
               for a in link_cmd]
        cmd = [f"-Wl,-Map={big_map}" if a.startswith("-Wl,-Map=") else a for a in cmd]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return (f"firmware for {board.name} does not fit its memory "
                    f"(flash {board.flash_size:,} B, RAM {board.ram_size:,} B)")
        sections, flash, ram = analyse_elf(big_elf, board, big=True)
        by_file = _by_file(big_map, sections, {o.name: stem for o, stem in objs})
    parts = []
    for what, need, have in (("flash", flash, board.flash_size), ("RAM", ram, board.ram_size)):
        s = f"{what} needs {need:,} B, has {have:,} B"
        if need > have:
            s += f" (over by {need - have:,} B)"
        parts.append(s)
    key = "flash" if flash > board.flash_size else "ram"
    secs = sorted((s for s in sections if s[key]), key=lambda s: -s["size"])[:3]
    files = sorted(by_file.items(), key=lambda kv: -kv[1][key])[:2]
    biggest = ", ".join(f"{s['name']} {s['size']:,} B" for s in secs)
    fbig = ", ".join(f"{k} {v[key]:,} B" for k, v in files)
    return (f"firmware does not fit board {board.name}: {'; '.join(parts)}; largest sections: "
            f"{biggest}; largest files: {fbig}; shrink the model or pick a board with more "
            f"memory (`mcu boards`)")


# ---- ELF and map analysis ---------------------------------------------------
SHF_WRITE, SHF_ALLOC, SHT_NOBITS = 0x1, 0x2, 8


def elf_sections(path: Path) -> list[dict]:
    """Allocated sections of an ELF32/ELF64 little-endian file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF file")
    is64 = data[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        fmt = "<IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
        fmt = "<IIIIIIIIII"
    hdrs = [struct.unpack_from(fmt, data, shoff + i * shentsize) for i in range(shnum)]
    stroff = hdrs[shstrndx][4]
    out = []
    for name, typ, flags, addr, off, size, *_ in hdrs:
        if not flags & SHF_ALLOC or size == 0:
            continue
        end = data.index(b"\0", stroff + name)
        out.append(dict(name=data[stroff + name:end].decode(), addr=addr, size=size,
                        flags=flags, nobits=typ == SHT_NOBITS))
    return out


def analyse_elf(elf: Path, board: Board, big: bool = False):
    """(sections, flash_used, ram_used). Cross boards: by address region (.data counts
    in both: it is stored in flash and copied to RAM). Host: by section flags."""
    secs = elf_sections(elf)
    span = 0x10000000 if big else None
    out, flash, ram = [], 0, 0
    for s in secs:
        if board.is_cross:
            in_flash = board.flash_origin <= s["addr"] < board.flash_origin + (span or board.flash_size)
            in_ram = board.ram_origin <= s["addr"] < board.ram_origin + (span or board.ram_size)
            f = s["size"] if in_flash or (in_ram and not s["nobits"]) else 0
            r = s["size"] if in_ram else 0
        else:
            f = 0 if s["nobits"] else s["size"]
            r = s["size"] if s["flags"] & SHF_WRITE else 0
        flash += f
        ram += r
        out.append(dict(name=s["name"], addr=s["addr"], size=s["size"], flash=f, ram=r))
    return out, flash, ram


_IN_SEC = re.compile(r"^ (\S+)?\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


def _by_file(mapf: Path, sections: list, obj_to_src: dict) -> dict:
    """Flash/RAM bytes per source file, from the GNU ld map's input-section lines."""
    kinds = {s["name"]: (s["flash"] > 0, s["ram"] > 0) for s in sections}
    out: dict[str, dict] = {}
    try:
        text = mapf.read_text(errors="replace")
    except OSError:
        return out
    k = text.find("Linker script and memory map")
    if k < 0:
        return out
    cur = None
    pending = None
    for line in text[k:].splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            cur = line.split()[0]
            pending = None
            continue
        if cur not in kinds:
            continue
        if line.strip().startswith("*fill*"):
            m = re.match(r"^\s*\*fill\*\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)", line)
            if m and cur == ".stack":  # the stack reserve is a fill of the .stack section
                e = out.setdefault("(stack)", {"flash": 0, "ram": 0, "code": 0})
                e["ram"] += int(m.group(1), 16)
            pending = None
            continue
        if line.startswith(" *"):
            pending = None
            continue
        m = _IN_SEC.match(line)
        if m and (m.group(1) or pending):
            size, obj = int(m.group(3), 16), m.group(4).strip()
            in_name = m.group(1) or pending
            pending = None
            if size == 0 or obj.startswith(("load address", "0x")):
                continue
            base = os.path.basename(obj.split("(")[0])
            src = obj_to_src.get(base, base)
            fl, rm = kinds[cur]
            e = out.setdefault(src, {"flash": 0, "ram": 0, "code": 0})
            e["flash"] += size if fl else 0
            e["ram"] += size if rm else 0
            # flash bytes of instructions (the rest of a file's flash is constant data)
            if fl and in_name.startswith((".text", ".glue", ".vfp11", ".v4_bx", ".iplt",
                                          ".isr_vector")):
                e["code"] += size
        elif re.match(r"^ \S+\s*$", line):
            pending = line.strip()  # long input-section name; numbers on the next line
        else:
            pending = None
    return dict(sorted(out.items(), key=lambda kv: -(kv[1]["flash"] + kv[1]["ram"])))

"""TFLite Micro measured on the same emulated Cortex-M4 as our firmware: a wrapper of the
prebuilt kit `../shared/tflm-m4` (its README: TFLM with reference or CMSIS-NN kernels,
one ELF per variant that reads the model at run time through semihosting, and
`measure.py`, which runs it under QEMU -icount shift=0).

    kit = find_kit()                              # $MCU_TFLM_KIT or <repo>/../shared/tflm-m4
    res = measure("kws.tflite", ("ref", "cmsis"), input_bytes=x.tobytes())
    res["cmsis"].instructions, res["cmsis"].smallest_arena, res["cmsis"].code_flash,
    res["cmsis"].output                           # bytes, to compare with ours

Figures per variant: instructions for one Invoke() after a warm-up (SysTick ticks x 40),
the smallest arena (multiple of 16, bisection on the device), the flash TFLM's code needs
for the model's ops only (the kit's estimate: TFLM library + op resolver + harness
startup/IO + libc + libgcc, the model itself not included) and the output bytes.

A missing kit or QEMU raises KitMissing with one line saying which and where. Sits beside
toolchain.tflm_oracle (the host interpreter), above nothing but toolchain.errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.errors import McuError, ToolMissing

ENV = "MCU_TFLM_KIT"
VARIANTS = ("ref", "cmsis", "cmsis-generic")
TITLES = {"ref": "TFLM reference kernels", "cmsis": "TFLM + CMSIS-NN",
          "cmsis-generic": "TFLM + CMSIS-NN (generic registrations)"}
REPO_ROOT = Path(__file__).resolve().parents[1]


class KitMissing(ToolMissing):
    """The tflm-m4 kit or the QEMU it needs is not there."""


class KitError(McuError):
    """measure.py ran but could not measure the model."""


@dataclass
class KitResult:
    variant: str
    ok: bool
    error: str = ""
    instructions: int | None = None
    smallest_arena: int | None = None
    arena_used: int | None = None
    code_flash: int | None = None        # model's ops only (estimate), without the model
    tflm_library_flash: int | None = None  # of which libtensorflow-microlite.a (+ CMSIS-NN)
    output: bytes = b""
    output_fnv1a: str = ""
    ops: list = field(default_factory=list)
    flash: dict = field(default_factory=dict)
    wall_s: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["output"] = self.output.hex()
        d["title"] = TITLES.get(self.variant, self.variant)
        return d


def kit_candidates() -> list[Path]:
    env = os.environ.get(ENV)
    if env:
        return [Path(env)]      # an explicit setting is the only place looked at
    return [REPO_ROOT.parent / "shared" / "tflm-m4", Path.cwd().parent / "shared" / "tflm-m4"]


def find_kit() -> Path:
    """The kit directory (holding measure.py), or KitMissing."""
    cands = kit_candidates()
    for c in cands:
        if (c / "measure.py").is_file():
            return c.resolve()
    where = (f"${ENV}={cands[0]}" if os.environ.get(ENV)
             else " or ".join(str(c) for c in dict.fromkeys(cands)))
    raise KitMissing(f"TFLite Micro kit (tflm-m4, measure.py) not found at {where}; "
                     f"set ${ENV} to the kit directory")


def find_qemu() -> str:
    q = os.environ.get("QEMU_SYSTEM_ARM") or "qemu-system-arm"
    path = shutil.which(q)
    if path is None:
        raise KitMissing(f"{q} not found: the TFLite Micro kit needs QEMU's ARM system "
                         "emulator (Debian/Ubuntu package qemu-system-arm)")
    return path


def available() -> tuple[bool, str]:
    """(True, kit path) or (False, the one-line reason)."""
    try:
        kit = find_kit()
        find_qemu()
    except KitMissing as e:
        return False, str(e)
    return True, str(kit)


def _variant_arg(variants) -> str:
    vs = tuple(variants)
    for v in vs:
        if v not in VARIANTS:
            raise KitError(f"unknown TFLM kit variant {v!r} (one of {', '.join(VARIANTS)})")
    if sorted(vs) == ["cmsis", "ref"]:
        return "both"
    if sorted(vs) == sorted(VARIANTS):
        return "all"
    if len(vs) != 1:
        raise KitError(f"variants {vs}: give one, ('ref', 'cmsis') or all three")
    return vs[0]


def parse(doc: dict) -> dict[str, KitResult]:
    """measure.py's --json document -> {variant: KitResult}."""
    out = {}
    for v in doc.get("variants", []):
        name = v.get("variant", "?")
        if not v.get("ok"):
            out[name] = KitResult(name, False, error=v.get("error", "failed"),
                                  ops=v.get("ops", []))
            continue
        fl = v.get("flash", {})
        out[name] = KitResult(
            name, True, instructions=int(v["instructions"]),
            smallest_arena=v.get("smallest_arena_bytes"), arena_used=v.get("arena_used_bytes"),
            code_flash=fl.get("model_ops_flash"),
            tflm_library_flash=fl.get("model_ops_tflm_lib_text_rodata"),
            output=bytes.fromhex(v.get("output_hex", "")), output_fnv1a=v.get("output_fnv1a", ""),
            ops=v.get("ops", []), flash=fl, wall_s=v.get("wall_s"))
    return out


def measure(model, variants=("ref", "cmsis"), input_bytes: bytes | None = None, *,
            arena_search: bool = True, host_reference: bool = False,
            timeout: float = 600.0) -> dict[str, KitResult]:
    """Run the kit's measure.py on a .tflite path for the given variants, with
    `input_bytes` (all input tensors, concatenated; default: the kit's xorshift input).
    A variant the kit cannot run comes back with ok=False and its error line."""
    kit = find_kit()
    qemu = find_qemu()
    model = Path(os.fspath(model))
    if not model.is_file():
        raise KitError(f"no such model file: {model}")
    with tempfile.TemporaryDirectory(prefix="mcu-tflm-kit-") as work:
        js = Path(work) / "out.json"
        cmd = [sys.executable, str(kit / "measure.py"), str(model.resolve()),
               "--variant", _variant_arg(variants), "--json", str(js), "--qemu", qemu,
               "--timeout", str(timeout)]
        if input_bytes is not None:
            (Path(work) / "input.bin").write_bytes(bytes(input_bytes))
            cmd += ["--input", str(Path(work) / "input.bin")]
        if not arena_search:
            cmd.append("--no-arena-search")
        if not host_reference:
            cmd.append("--no-reference")
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
        if not js.exists():
            lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit code {p.returncode}"
            raise (KitMissing if p.returncode == 2 and "not found" in msg else KitError)(
                f"TFLite Micro kit on {model.name}: {msg}")
        return parse(json.loads(js.read_text()))

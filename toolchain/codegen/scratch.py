"""Kernel scratch sizes, asked of the runtime itself.

The runtime's *_scratch_size() functions are the contract (firmware_templates/runtime
README). They are compiled once for the host with the DSP code paths emulated
(MCU_EMULATE_DSP: the same C, so the same sizes as on a Cortex-M with DSP; the
structures involved hold no pointers) and called through ctypes; the result is
cached by runtime source hash. Portable builds need no scratch.

The generated model checks the sizes again on the device (model_init), so a
kernel change that needs more scratch fails loudly instead of corrupting memory.
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from toolchain.errors import BuildError

RUNTIME = Path(__file__).resolve().parents[2] / "firmware_templates" / "runtime"
_LIB = None


class _Dims(C.Structure):
    _fields_ = [(k, C.c_int32) for k in ("n", "h", "w", "c")]


def _lib():
    global _LIB
    if _LIB is not None:
        return _LIB
    srcs = sorted(RUNTIME.glob("*.c"))
    h = hashlib.sha256()
    for p in sorted(RUNTIME.glob("*.[ch]")):
        h.update(p.name.encode() + p.read_bytes())
    cache = Path(os.environ.get("MCU_CACHE", Path(tempfile.gettempdir()) / "mcu-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"mcu_scratch_{h.hexdigest()[:16]}.so"
    if not out.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise BuildError("a host C compiler (cc) is needed to size kernel scratch "
                             "buffers for DSP kernels; install gcc or build with "
                             "--kernels portable")
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([cc, "-O0", "-shared", "-fPIC", "-std=c99", "-DMCU_EMULATE_DSP",
                            f"-I{RUNTIME}", *map(str, srcs), "-o", str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"compiling the runtime for the host failed: "
                             f"{(r.stderr.strip().splitlines() or ['?'])[0]}")
        os.replace(tmp, out)
    lib = C.CDLL(str(out))
    for fn in ("mcu_conv2d_s8_scratch_size", "mcu_dw_conv2d_s8_scratch_size"):
        getattr(lib, fn).argtypes = [C.POINTER(_Dims), C.POINTER(_Dims)]
        getattr(lib, fn).restype = C.c_int32
    lib.mcu_fc_s8_scratch_size.argtypes = [C.c_int32]
    lib.mcu_fc_s8_scratch_size.restype = C.c_int32
    _LIB = lib
    return lib


def kernel_scratch(op_type: str, p: dict, variant: str) -> int:
    """Scratch bytes the kernel for `op_type` needs with parameters `p`
    (toolchain.codegen.kernel_params) in kernel variant 'portable' or 'dsp'."""
    if variant == "portable":
        return 0
    if op_type == "CONV_2D":
        return int(_lib().mcu_conv2d_s8_scratch_size(C.byref(_Dims(*p["input_dims"])),
                                                    C.byref(_Dims(*p["filter_dims"]))))
    if op_type == "DEPTHWISE_CONV_2D":
        return int(_lib().mcu_dw_conv2d_s8_scratch_size(C.byref(_Dims(*p["input_dims"])),
                                                       C.byref(_Dims(*p["filter_dims"]))))
    if op_type == "FULLY_CONNECTED":
        return int(_lib().mcu_fc_s8_scratch_size(int(p["in_features"])))
    return 0

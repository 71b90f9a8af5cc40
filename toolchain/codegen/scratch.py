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

import numpy as np

from toolchain.errors import BuildError
from toolchain.ir import ops

RUNTIME = Path(__file__).resolve().parents[2] / "firmware_templates" / "runtime"
_LIB = None


class _Dims(C.Structure):
    _fields_ = [(k, C.c_int32) for k in ("n", "h", "w", "c")]


DW_FIELDS = ("input_offset", "output_offset", "stride_h", "stride_w", "dilation_h",
             "dilation_w", "pad_h", "pad_w", "depth_multiplier", "act_min", "act_max")


class _DwParams(C.Structure):
    _fields_ = [(k, C.c_int32) for k in DW_FIELDS]


SPARSE_INTS = ("rows", "row_len", "n_max", "n_cols", "n_groups", "n_seg", "seg_shift",
               "implicit_last")


class _SparseStore(C.Structure):   # mcu_sparse_store_t (sizes read only its integers)
    _fields_ = [(k, C.c_void_p) for k in ("pairs", "tail", "seg_counts", "group_end")] + \
               [(k, C.c_int32) for k in SPARSE_INTS]


class _ConvParams(C.Structure):    # mcu_conv_params_t
    _fields_ = [(k, C.c_int32) for k in ("input_offset", "output_offset", "stride_h",
                                          "stride_w", "dilation_h", "dilation_w", "pad_h",
                                          "pad_w", "act_min", "act_max")]


class _Requant(C.Structure):   # mcu_requant_t
    _fields_ = [("mult", C.c_int32), ("sh", C.c_int32), ("rlo", C.c_uint32),
                ("rhi", C.c_int32)]


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
    lib.mcu_fc_s8_scratch_size.argtypes = [C.c_int32, C.c_int32]
    lib.mcu_fc_s8_scratch_size.restype = C.c_int32
    lib.mcu_conv2d_s8_pre4_scratch_size.argtypes = [C.POINTER(_Dims), C.POINTER(_Dims)]
    lib.mcu_conv2d_s8_pre4_scratch_size.restype = C.c_int32
    lib.mcu_conv2d_s8_pre_scratch_size.argtypes = [C.POINTER(_Dims), C.POINTER(_Dims)]
    lib.mcu_conv2d_s8_pre_scratch_size.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_pre_scratch_size.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims),
                                                      C.POINTER(_Dims), C.POINTER(_Dims),
                                                      C.c_int32]
    lib.mcu_dw_conv2d_s8_pre_scratch_size.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_packed_size.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims)]
    lib.mcu_dw_conv2d_s8_packed_size.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_pack.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims), C.c_void_p,
                                          C.c_void_p]
    lib.mcu_dw_conv2d_s8_pack.restype = None
    lib.mcu_sparse_conv2d_s8_scratch_size.argtypes = [C.POINTER(_SparseStore),
                                                      C.POINTER(_ConvParams),
                                                      C.POINTER(_Dims), C.POINTER(_Dims)]
    lib.mcu_sparse_conv2d_s8_scratch_size.restype = C.c_int32
    lib.mcu_sparse_fc_s8_scratch_size.argtypes = [C.POINTER(_SparseStore), C.c_int32]
    lib.mcu_sparse_fc_s8_scratch_size.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_planes_ok.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims)]
    lib.mcu_dw_conv2d_s8_planes_ok.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_direct_ok.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims),
                                              C.POINTER(_Dims)]
    lib.mcu_dw_conv2d_s8_direct_ok.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_direct_scratch_size.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims),
                                                         C.POINTER(_Dims)]
    lib.mcu_dw_conv2d_s8_direct_scratch_size.restype = C.c_int32
    lib.mcu_dw_conv2d_s8_pack_direct.argtypes = [C.POINTER(_DwParams), C.POINTER(_Dims),
                                                 C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p]
    lib.mcu_dw_conv2d_s8_pack_direct.restype = None
    lib.mcu_fc_s8_pack.argtypes = [C.c_int32, C.c_int32, C.c_int32, C.c_void_p, C.c_void_p,
                                   C.c_void_p, C.c_void_p]
    lib.mcu_fc_s8_pack.restype = None
    lib.mcu_requant_prepare.argtypes = [C.c_void_p, C.c_int32, C.c_void_p, C.c_void_p,
                                        C.c_int32, C.c_int32]
    lib.mcu_requant_prepare.restype = None
    _LIB = lib
    return lib


def _dwp(p: dict) -> _DwParams:
    return _DwParams(*[int(p[k]) for k in DW_FIELDS])


def requant_table(p: dict) -> np.ndarray:
    """The per-channel mcu_requant_t table of a CONV_2D / DEPTHWISE_CONV_2D (computed by the
    runtime's own mcu_requant_prepare): int32 array [channels, 4] in struct field order
    (mult, sh, rlo as int32 bits, rhi; rhi = the shift in the slow form)."""
    mult = np.ascontiguousarray(np.asarray(p["multiplier"], np.int32).reshape(-1))
    shift = np.ascontiguousarray(np.asarray(p["shift"], np.int32).reshape(-1))
    n = int(p["output_dims"][3])
    out = np.zeros((n, 4), np.int32)
    _lib().mcu_requant_prepare(out.ctypes.data, n, mult.ctypes.data, shift.ctypes.data,
                               int(mult.size > 1), int(p["output_offset"]))
    return out


def dw_packed_weights(p: dict) -> np.ndarray:
    """DEPTHWISE_CONV_2D filter repacked by the runtime's mcu_dw_conv2d_s8_pack (uint32 words)."""
    lib = _lib()
    fd = _Dims(*p["filter_dims"])
    n = int(lib.mcu_dw_conv2d_s8_packed_size(C.byref(_dwp(p)), C.byref(fd)))
    out = np.zeros(max(n // 4, 1), np.uint32)
    f = np.ascontiguousarray(np.asarray(p["filter"]).astype(np.int8))
    lib.mcu_dw_conv2d_s8_pack(C.byref(_dwp(p)), C.byref(fd), f.ctypes.data, out.ctypes.data)
    return out[: n // 4]


def conv_pre4(p: dict, variant: str) -> bool:
    """CONV_2D runs the four-pixel path alone (mcu_conv2d_s8_pre4) in DSP builds where
    K % 4 == 0, there is a bias, the activation is the full int8 range and every
    requantization entry has the fast form."""
    o, kh, kw, ci = (int(v) for v in p["filter_dims"])
    return (variant == "dsp" and p.get("bias") is not None and (kh * kw * ci) % 4 == 0
            and int(p["act_min"]) == -128 and int(p["act_max"]) == 127
            and bool(np.all(requant_table(p)[:, 1] >= 0)))


def dw_direct(p: dict, variant: str, patchable: bool) -> bool:
    """DEPTHWISE_CONV_2D runs the direct form (mcu_dw_conv2d_s8_direct: packed filter
    the int8 filter's size, folded bias) in DSP builds that are not patchable."""
    return (variant == "dsp" and not patchable and
            bool(_lib().mcu_dw_conv2d_s8_direct_ok(C.byref(_dwp(p)),
                                                   C.byref(_Dims(*p["filter_dims"])),
                                                   C.byref(_Dims(*p["output_dims"])))))


def dw_planes(p: dict) -> bool:
    """The 3x3 int16-plane path of mcu_dw_conv2d_s8_pre applies: it reads the int8
    filter (no packed copy)."""
    return bool(_lib().mcu_dw_conv2d_s8_planes_ok(C.byref(_dwp(p)),
                                                  C.byref(_Dims(*p["filter_dims"]))))


def dw_direct_scratch(p: dict) -> int:
    return int(_lib().mcu_dw_conv2d_s8_direct_scratch_size(
        C.byref(_dwp(p)), C.byref(_Dims(*p["filter_dims"])), C.byref(_Dims(*p["output_dims"]))))


def dw_direct_weights(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(packed filter as int8, the int8 filter's size; folded bias int32 [C]) of
    mcu_dw_conv2d_s8_pack_direct."""
    f = np.ascontiguousarray(np.asarray(p["filter"]).astype(np.int8))
    c = int(p["filter_dims"][3])
    b = None if p.get("bias") is None else np.ascontiguousarray(np.asarray(p["bias"], np.int32))
    wp, bp = np.zeros(f.size, np.int8), np.zeros(c, np.int32)
    _lib().mcu_dw_conv2d_s8_pack_direct(C.byref(_dwp(p)), C.byref(_Dims(*p["filter_dims"])),
                                        f.ctypes.data, None if b is None else b.ctypes.data,
                                        wp.ctypes.data, bp.ctypes.data)
    return wp, bp


def fc_packed(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """FULLY_CONNECTED filter packed by the runtime's mcu_fc_s8_pack (int8, O * K bytes)
    and the bias with the input offset folded in (int32 [O])."""
    k, o = int(p["in_features"]), int(p["out_features"])
    f = np.ascontiguousarray(np.asarray(p["filter"]).astype(np.int8))
    b = None if p.get("bias") is None else np.ascontiguousarray(np.asarray(p["bias"], np.int32))
    wp = np.zeros(o * k, np.int8)
    bp = np.zeros(o, np.int32)
    _lib().mcu_fc_s8_pack(k, o, int(p["input_offset"]), f.ctypes.data,
                          None if b is None else b.ctypes.data, wp.ctypes.data, bp.ctypes.data)
    return wp, bp


def fc_uses_packed(p: dict, variant: str, patchable: bool) -> bool:
    """DSP builds that are not patchable run FULLY_CONNECTED on the packed filter (no
    scratch); symmetric weights only (the int8 filter's zero point is 0 in TFLite)."""
    return variant == "dsp" and not patchable and int(p["filter_offset"]) == 0


class RuntimeSizer:
    """What op modules' `scratch` callables ask of the C runtime (its own
    *_scratch_size functions, compiled for the host with the DSP paths emulated),
    and the arrays the runtime derives at build time (requantization tables,
    repacked depthwise filters)."""

    conv_pre4 = staticmethod(conv_pre4)

    def conv2d_pre4_scratch(self, input_dims, filter_dims) -> int:
        return int(_lib().mcu_conv2d_s8_pre4_scratch_size(C.byref(_Dims(*input_dims)),
                                                         C.byref(_Dims(*filter_dims))))

    def conv2d_pre_scratch(self, input_dims, filter_dims) -> int:
        return int(_lib().mcu_conv2d_s8_pre_scratch_size(C.byref(_Dims(*input_dims)),
                                                        C.byref(_Dims(*filter_dims))))

    def dw_conv2d_pre_scratch(self, p: dict, packed: bool) -> int:
        return int(_lib().mcu_dw_conv2d_s8_pre_scratch_size(
            C.byref(_dwp(p)), C.byref(_Dims(*p["input_dims"])), C.byref(_Dims(*p["filter_dims"])),
            C.byref(_Dims(*p["output_dims"])), int(packed)))

    def fc_scratch(self, in_features: int, out_features: int) -> int:
        return int(_lib().mcu_fc_s8_scratch_size(int(in_features), int(out_features)))

    def sparse_scratch(self, p: dict, variant: str = "dsp") -> int:
        """Row-sparse CONV_2D / FULLY_CONNECTED (sparse.c; scratch in every variant:
        portable 2 x row_len (conv) / row_len (fc) bytes, word-rounded)."""
        a = p["store"]
        words = (int(a["row_len"]) + 3) & ~3
        conv = "filter_dims" in p and "batches" not in p
        if variant == "portable":
            return 2 * words if conv else words
        st = _SparseStore(None, None, None, None, *[int(a[k]) for k in SPARSE_INTS])
        if conv:
            cp = _ConvParams(*[int(p[k]) for k in
                               [f for f, _ in _ConvParams._fields_]])
            return int(_lib().mcu_sparse_conv2d_s8_scratch_size(
                C.byref(st), C.byref(cp), C.byref(_Dims(*p["filter_dims"])),
                C.byref(_Dims(*p["output_dims"]))))
        return int(_lib().mcu_sparse_fc_s8_scratch_size(C.byref(st), int(p["batches"])))

    requant_table = staticmethod(requant_table)
    fc_packed = staticmethod(fc_packed)
    dw_direct = staticmethod(dw_direct)
    dw_planes = staticmethod(dw_planes)
    dw_direct_scratch = staticmethod(dw_direct_scratch)
    dw_direct_weights = staticmethod(dw_direct_weights)
    fc_uses_packed = staticmethod(fc_uses_packed)
    dw_packed_weights = staticmethod(dw_packed_weights)


RUNTIME_SIZER = RuntimeSizer()


def kernel_scratch(op_type: str, p: dict, variant: str, patchable: bool = False) -> int:
    """Scratch bytes the kernel for `op_type` needs with parameters `p`
    (toolchain.codegen.kernel_params) in kernel variant 'portable' or 'dsp', as its op
    module (toolchain/ir/ops, `OpDef.scratch`) computes it from the runtime's sizes."""
    d = ops.get(op_type)
    if d is None or d.scratch is None:
        return 0
    return int(d.scratch(p, variant, patchable, RUNTIME_SIZER))

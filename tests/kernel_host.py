"""Host build of the C runtime kernels (firmware_templates/runtime) and a ctypes
bridge that runs one IR op through them, with parameters from
toolchain.codegen.kernel_params.

    lib = host_lib("portable")     # or "dsp": DSP code paths with emulated intrinsics
    y = run_op(lib, graph, op, feeds_by_name)
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from toolchain.codegen.kernel_params import kernel_params

RUNTIME = Path(__file__).resolve().parents[1] / "firmware_templates" / "runtime"
CFLAGS = ["-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror"]
VARIANT_FLAGS = {"portable": [], "dsp": ["-DMCU_EMULATE_DSP"]}
# MCU_KERNELS_SANITIZE=1: UBSan build, any undefined behaviour aborts the process
# (tests/test_sanitized_host.py runs kernel tests so, in a subprocess)
SANITIZE_FLAGS = ["-fsanitize=undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer"]


def runtime_sources() -> list[Path]:
    return sorted(RUNTIME.glob("*.c"))


def _src_hash(extra: list[str]) -> str:
    h = hashlib.sha256(" ".join(extra).encode())
    for p in sorted(RUNTIME.glob("*.[ch]")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


_LIBS: dict[str, C.CDLL] = {}


def host_lib(variant: str = "portable") -> C.CDLL:
    if variant in _LIBS:
        return _LIBS[variant]
    flags = VARIANT_FLAGS[variant] + (SANITIZE_FLAGS if os.environ.get("MCU_KERNELS_SANITIZE")
                                      else [])
    out = Path(tempfile.gettempdir()) / f"mcu_kernels_{variant}_{_src_hash(flags)}.so"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, *CFLAGS, *flags, f"-I{RUNTIME}", *map(str, runtime_sources()),
                        "-o", str(tmp)], check=True)
        os.replace(tmp, out)
    lib = C.CDLL(str(out))
    _LIBS[variant] = lib
    return lib


# --------------------------------------------------------------------------- structs
class Dims(C.Structure):
    _fields_ = [(k, C.c_int32) for k in ("n", "h", "w", "c")]


class PerChannel(C.Structure):
    _fields_ = [("multiplier", C.POINTER(C.c_int32)), ("shift", C.POINTER(C.c_int32))]


def _struct(name, fields):
    return type(name, (C.Structure,), {"_fields_": [(f, C.c_int32) for f in fields]})


ConvParams = _struct("ConvParams", ["input_offset", "output_offset", "stride_h", "stride_w",
                                    "dilation_h", "dilation_w", "pad_h", "pad_w", "act_min",
                                    "act_max"])
DwParams = _struct("DwParams", ["input_offset", "output_offset", "stride_h", "stride_w",
                                "dilation_h", "dilation_w", "pad_h", "pad_w",
                                "depth_multiplier", "act_min", "act_max"])
FcParams = _struct("FcParams", ["input_offset", "filter_offset", "output_offset", "act_min",
                                "act_max"])
PoolParams = _struct("PoolParams", ["stride_h", "stride_w", "filter_h", "filter_w", "pad_h",
                                    "pad_w", "act_min", "act_max"])
AddParams = _struct("AddParams", ["input1_offset", "input2_offset", "left_shift",
                                  "input1_multiplier", "input1_shift", "input2_multiplier",
                                  "input2_shift", "output_multiplier", "output_shift",
                                  "output_offset", "act_min", "act_max"])
MulParams = _struct("MulParams", ["input1_offset", "input2_offset", "output_multiplier",
                                  "output_shift", "output_offset", "act_min", "act_max"])
PreluParams = _struct("PreluParams", ["input_offset", "alpha_offset", "output_offset",
                                      "output_multiplier_1", "output_shift_1",
                                      "output_multiplier_2", "output_shift_2"])
SoftmaxParams = _struct("SoftmaxParams", ["input_multiplier", "input_left_shift", "diff_min"])
TconvParams = _struct("TconvParams", ["input_offset", "output_offset", "stride_h", "stride_w",
                                      "pad_h", "pad_w", "act_min", "act_max"])


def fill(struct_cls, p: dict):
    return struct_cls(**{f: int(p[f]) for f, _ in struct_cls._fields_})


def ptr(a, ctype=C.c_int8):
    if a is None:
        return None
    return a.ctypes.data_as(C.POINTER(ctype))


def i8(a):
    return np.ascontiguousarray(np.asarray(a).astype(np.int8))


def i32(a):
    return np.ascontiguousarray(np.asarray(a).astype(np.int32))


# --------------------------------------------------------------------------- runner
def _run_pre(lib, p, conv, prm, idims, fdims, odims, x, bias, out, scratch, four=False):
    """The prepared entry points as generated DSP code calls them: q = NULL (the
    multipliers come from the mcu_requant_prepare table), depthwise with the filter
    prepacked and, in DSP builds, the int8 filter NULL where generate.py drops it
    (depth_multiplier 1, C % 4 == 0)."""
    n = int(p["output_dims"][3])
    mult, shift = i32(p["multiplier"]), i32(p["shift"])
    rq = np.zeros(n * 4 + 1, np.int32)
    lib.mcu_requant_prepare(rq.ctypes.data_as(C.c_void_p), n, ptr(mult, C.c_int32),
                            ptr(shift, C.c_int32), int(mult.size > 1), int(p["output_offset"]))
    rqp = rq.ctypes.data_as(C.c_void_p)
    filt = i8(p["filter"])
    if conv:
        fn = "mcu_conv2d_s8_pre4" if four else "mcu_conv2d_s8_pre"
        getattr(lib, fn + "_scratch_size").restype = C.c_int32
        nbytes = getattr(lib, fn + "_scratch_size")(C.byref(idims), C.byref(fdims))
        getattr(lib, fn)(C.byref(prm), None, rqp, C.byref(idims), ptr(x), C.byref(fdims),
                              ptr(filt), ptr(bias, C.c_int32), C.byref(odims), ptr(out),
                              scratch(nbytes))
        return out
    lib.mcu_dw_conv2d_s8_packed_size.restype = C.c_int32
    nb = lib.mcu_dw_conv2d_s8_packed_size(C.byref(prm), C.byref(fdims))
    packed = np.zeros(max(nb, 4) // 4 + 1, np.uint32)
    lib.mcu_dw_conv2d_s8_pack(C.byref(prm), C.byref(fdims), ptr(filt), packed.ctypes.data_as(C.c_void_p))
    drop = (hasattr(lib, "mcu_dw_conv2d_s8_dsp")      # DSP build (generated DSP code needs one)
            and int(p["depth_multiplier"]) == 1 and int(p["filter_dims"][3]) % 4 == 0)
    lib.mcu_dw_conv2d_s8_pre_scratch_size.restype = C.c_int32
    nbytes = lib.mcu_dw_conv2d_s8_pre_scratch_size(C.byref(prm), C.byref(idims), C.byref(fdims),
                                                   C.byref(odims), 1)
    lib.mcu_dw_conv2d_s8_pre(C.byref(prm), None, rqp, C.byref(idims), ptr(x), C.byref(fdims),
                             None if drop else ptr(filt), packed.ctypes.data_as(C.c_void_p),
                             ptr(bias, C.c_int32), C.byref(odims), ptr(out), scratch(nbytes))
    return out


def run_op(lib, g, op, feeds: dict, variant_fn: str = "") -> np.ndarray:
    """Run op through the C kernel. variant_fn: "" (dispatching entry point),
    "_portable" or "_dsp" (explicit variant, where the kernel has one)."""
    p = kernel_params(g, op)
    ot = g.t(op.outputs[0])
    out = np.zeros(ot.shape, np.int8)
    x = i8(feeds[op.inputs[0]])
    t = op.type
    keep = []  # keep temporaries alive

    def scratch(nbytes):
        buf = np.zeros(max(int(nbytes), 4) // 4 + 1, np.int32)
        keep.append(buf)
        return buf.ctypes.data_as(C.c_void_p)

    if t in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        conv = t == "CONV_2D"
        prm = fill(ConvParams if conv else DwParams, p)
        mult, shift = i32(p["multiplier"]), i32(p["shift"])
        q = PerChannel(ptr(mult, C.c_int32), ptr(shift, C.c_int32))
        idims, fdims, odims = Dims(*p["input_dims"]), Dims(*p["filter_dims"]), Dims(*p["output_dims"])
        bias = None if p["bias"] is None else i32(p["bias"])
        base = "mcu_conv2d_s8" if conv else "mcu_dw_conv2d_s8"
        if variant_fn in ("_pre", "_pre4"):    # _pre4: the four-pixel path alone
            return _run_pre(lib, p, conv, prm, idims, fdims, odims, x, bias, out, scratch,
                            four=variant_fn == "_pre4")
        if variant_fn == "_direct":     # packed filter + folded bias (non-patchable DSP builds)
            n = int(p["output_dims"][3])
            rq = np.zeros(n * 4 + 1, np.int32)
            lib.mcu_requant_prepare(rq.ctypes.data_as(C.c_void_p), n, ptr(mult, C.c_int32),
                                    ptr(shift, C.c_int32), int(mult.size > 1),
                                    int(p["output_offset"]))
            filt = i8(p["filter"])
            wp, bp = np.zeros(filt.size // 4 + 1, np.int32), np.zeros(n, np.int32)
            lib.mcu_dw_conv2d_s8_pack_direct(C.byref(prm), C.byref(fdims), ptr(filt),
                                             ptr(bias, C.c_int32), wp.ctypes.data_as(C.c_void_p),
                                             ptr(bp, C.c_int32))
            nbytes = lib.mcu_dw_conv2d_s8_direct_scratch_size(C.byref(prm), C.byref(fdims),
                                                              C.byref(odims))
            fn = lib.mcu_dw_conv2d_s8_direct_s2 if p["stride_w"] == 2 else lib.mcu_dw_conv2d_s8_direct
            fn(C.byref(prm), rq.ctypes.data_as(C.c_void_p),
                                        C.byref(idims), ptr(x), C.byref(fdims),
                                        wp.ctypes.data_as(C.c_void_p), ptr(bp, C.c_int32),
                                        C.byref(odims), ptr(out), scratch(nbytes))
            return out
        size_fn = getattr(lib, base + "_scratch_size")
        nbytes = size_fn(C.byref(idims), C.byref(fdims))
        args = [C.byref(prm), C.byref(q), C.byref(idims), ptr(x), C.byref(fdims), ptr(p["filter"]),
                ptr(bias, C.c_int32), C.byref(odims), ptr(out)]
        if variant_fn != "_portable":
            args.append(scratch(nbytes))
        getattr(lib, base + variant_fn)(*args)
    elif t == "FULLY_CONNECTED":
        prm = fill(FcParams, p)
        mult, shift = i32(p["multiplier"]), i32(p["shift"])
        q = PerChannel(ptr(mult, C.c_int32), ptr(shift, C.c_int32))
        bias = None if p["bias"] is None else i32(p["bias"])
        if variant_fn == "_packed":     # packed filter + folded bias (mcu_fc_s8_pack)
            k, o = p["in_features"], p["out_features"]
            wp, bp = np.zeros(o * k + 4, np.int32).view(np.int8), np.zeros(o, np.int32)
            lib.mcu_fc_s8_pack(k, o, p["input_offset"], ptr(i8(p["filter"])),
                               ptr(bias, C.c_int32), ptr(wp), ptr(bp, C.c_int32))
            lib.mcu_fc_s8_packed(C.byref(prm), C.byref(q), p["per_channel"], p["batches"], k,
                                 o, ptr(x), ptr(wp), ptr(bp, C.c_int32), ptr(out))
            return out
        args = [C.byref(prm), C.byref(q), p["per_channel"], p["batches"], p["in_features"],
                p["out_features"], ptr(x), ptr(p["filter"]), ptr(bias, C.c_int32), ptr(out)]
        if variant_fn != "_portable":
            args.append(scratch(lib.mcu_fc_s8_scratch_size(p["in_features"],
                                                             p["out_features"])))
        getattr(lib, "mcu_fc_s8" + variant_fn)(*args)
    elif t == "TRANSPOSE_CONV":
        mult, shift = i32(p["multiplier"]), i32(p["shift"])
        q = PerChannel(ptr(mult, C.c_int32), ptr(shift, C.c_int32))
        bias = None if p["bias"] is None else i32(p["bias"])
        lib.mcu_transpose_conv_s8(C.byref(fill(TconvParams, p)), C.byref(q),
                                  C.byref(Dims(*p["input_dims"])), ptr(x),
                                  C.byref(Dims(*p["filter_dims"])), ptr(p["filter"]),
                                  ptr(bias, C.c_int32), C.byref(Dims(*p["output_dims"])),
                                  ptr(out))
    elif t == "RESIZE_NEAREST_NEIGHBOR":
        rows, cols = i32(p["rows"]), i32(p["cols"])
        lib.mcu_resize_nearest_s8(C.byref(Dims(*p["input_dims"])), ptr(x),
                                  C.byref(Dims(*p["output_dims"])), ptr(rows, C.c_int32),
                                  ptr(cols, C.c_int32), ptr(out))
    elif t in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        prm = fill(PoolParams, p)
        fn = lib.mcu_avgpool_s8 if t == "AVERAGE_POOL_2D" else lib.mcu_maxpool_s8
        fn(C.byref(prm), C.byref(Dims(*p["input_dims"])), ptr(x),
           C.byref(Dims(*p["output_dims"])), ptr(out))
    elif t in ("ADD", "SUB", "MUL"):
        prm = fill(MulParams if t == "MUL" else AddParams, p)
        y = i8(feeds[op.inputs[1]])
        name = {"ADD": "mcu_add_s8", "SUB": "mcu_sub_s8", "MUL": "mcu_mul_s8"}[t]
        if p["broadcast"]:
            s1, s2 = i32(p["strides1"]), i32(p["strides2"])
            getattr(lib, name + "_broadcast")(C.byref(prm), C.byref(Dims(*p["output_dims"])),
                                              ptr(x), ptr(s1, C.c_int32), ptr(y),
                                              ptr(s2, C.c_int32), ptr(out))
        else:
            getattr(lib, name)(C.byref(prm), ptr(x), ptr(y), ptr(out), p["size"])
    elif t in ("MAXIMUM", "MINIMUM"):
        y = i8(feeds[op.inputs[1]])
        name = "mcu_maximum_s8" if t == "MAXIMUM" else "mcu_minimum_s8"
        if p["broadcast"]:
            s1, s2 = i32(p["strides1"]), i32(p["strides2"])
            getattr(lib, name + "_broadcast")(C.byref(Dims(*p["output_dims"])), ptr(x),
                                              ptr(s1, C.c_int32), ptr(y), ptr(s2, C.c_int32),
                                              ptr(out))
        else:
            getattr(lib, name)(ptr(x), ptr(y), ptr(out), p["size"])
    elif t == "TRANSPOSE":
        od, st = i32(p["output_dims"]), i32(p["strides"])
        lib.mcu_transpose_s8(ptr(od, C.c_int32), ptr(st, C.c_int32), ptr(x), ptr(out))
    elif t == "STRIDED_SLICE":
        od, st = i32(p["output_dims"]), i32(p["strides"])
        lib.mcu_strided_slice_s8(ptr(od, C.c_int32), ptr(st, C.c_int32), p["offset"], ptr(x),
                                 ptr(out))
    elif t == "PRELU":
        alpha = i8(g.t(op.inputs[1]).data if g.t(op.inputs[1]).is_const else feeds[op.inputs[1]])
        st = i32(p["alpha_strides"])
        lib.mcu_prelu_s8(C.byref(fill(PreluParams, p)), C.byref(Dims(*p["output_dims"])),
                         ptr(x), ptr(alpha), ptr(st, C.c_int32), ptr(out))
    elif t == "RESHAPE":
        lib.mcu_reshape_s8(ptr(x), ptr(out), p["size"])
    elif t == "SOFTMAX":
        lib.mcu_softmax_s8(C.byref(fill(SoftmaxParams, p)), p["rows"], p["depth"], ptr(x), ptr(out))
    elif t == "CONCATENATION":
        ins = [i8(feeds[n]) for n in op.inputs]
        arr = (C.POINTER(C.c_int8) * len(ins))(*[ptr(a) for a in ins])
        sizes = i32(p["inner_sizes"])
        lib.mcu_concat_s8(len(ins), arr, ptr(sizes, C.c_int32), p["outer"], ptr(out))
    elif t == "PAD":
        pads = i32(p["pads"])
        lib.mcu_pad_s8(C.byref(Dims(*p["input_dims"])), ptr(x), ptr(pads, C.c_int32),
                       C.c_int8(p["pad_value"]), ptr(out))
    elif t == "MEAN":
        lib.mcu_mean_s8(p["outer"], p["reduce"], p["inner"], ptr(x), p["input_zero_point"],
                        p["multiplier"], p["shift"], p["output_zero_point"], ptr(out))
    elif t == "RELU":
        lib.mcu_relu_s8(ptr(x), ptr(out), p["size"], p["input_zero_point"],
                        p["output_zero_point"], p["multiplier"], p["shift"], p["act_min"],
                        p["act_max"])
    elif t == "RELU6":
        lib.mcu_clamp_s8(ptr(x), ptr(out), p["size"], p["lo"], p["hi"])
    elif t in ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"):     # table activations
        lib.mcu_lut_s8(ptr(x), ptr(out), p["size"], ptr(i8(p["table"])))
    else:
        raise NotImplementedError(t)
    return out

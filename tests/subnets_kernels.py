"""Run the row-sparse C kernels (firmware_templates/runtime/sparse.c) on a
subnets_cases.Case level: on the host through ctypes (portable, or the DSP paths
with emulated intrinsics), and on QEMU (baked test vectors, kernel_qemu harness).

    y = run_host(host_lib("dsp"), case, level, "_dsp")
    src = emit_sparse_cases([(name, case, level, expected)], dense=True)
"""
from __future__ import annotations

import ctypes as C

import numpy as np

from kernel_host import ConvParams, Dims, FcParams, fill, i32, ptr
from kernel_qemu import CONV_F, FC_F, _carr, _dims, _struct_init
from toolchain.codegen.kernel_params import kernel_params
from toolchain.subnets.reference import level_params


class SparseStore(C.Structure):
    _fields_ = [("pairs", C.POINTER(C.c_uint8)), ("tail", C.POINTER(C.c_int8)),
                ("seg_counts", C.POINTER(C.c_uint8)), ("group_end", C.POINTER(C.c_int32))] + \
               [(k, C.c_int32) for k in ("rows", "row_len", "n_max", "n_cols", "n_groups",
                                         "n_seg", "seg_shift", "implicit_last")]


INT_FIELDS = ["rows", "row_len", "n_max", "n_cols", "n_groups", "n_seg", "seg_shift",
              "implicit_last"]


def store_struct(st, keep: list) -> SparseStore:
    a = st.c_arrays()
    keep.append(a)
    return SparseStore(ptr(a["pairs"], C.c_uint8), ptr(a["tail"], C.c_int8),
                       ptr(a["seg_counts"], C.c_uint8), ptr(a["group_end"], C.c_int32),
                       *[int(a[k]) for k in INT_FIELDS])


def _rq(lib, p, rows, keep):
    mult, shift = i32(p["multiplier"]), i32(p["shift"])
    per_channel = int(mult.size > 1)
    rq = np.zeros(rows * 5 + 1, np.int32)
    lib.mcu_requant_prepare(rq.ctypes.data_as(C.c_void_p), rows, ptr(mult, C.c_int32),
                            ptr(shift, C.c_int32), per_channel, int(p["output_offset"]))
    keep.append(rq)
    return rq.ctypes.data_as(C.c_void_p)


def run_host(lib, case, level: int, variant: str = "") -> np.ndarray:
    """variant: "" (dispatching), "_portable" or "_dsp"."""
    g = case.shared.graphs[level]
    op = g.ops[0]
    p = level_params(g, op)
    st = case.store
    keep = []
    s = store_struct(st, keep)
    n = int(st.counts[level])
    rq = _rq(lib, p, st.rows, keep)
    bias = None if p["bias"] is None else i32(p["bias"])
    beff = np.zeros(st.rows, np.int32)
    lib.mcu_sparse_bias_eff(C.byref(s), n, ptr(bias, C.c_int32), int(p["input_offset"]),
                            ptr(beff, C.c_int32))
    assert beff.tobytes() == st.bias_eff(level, bias, p["input_offset"]).tobytes()
    x = np.ascontiguousarray(case.x[level].astype(np.int8))
    out = np.zeros(g.t(op.outputs[0]).shape, np.int8)

    def scratch(nbytes):
        buf = np.zeros(max(int(nbytes), 4) // 4 + 1, np.int32)
        keep.append(buf)
        return buf.ctypes.data_as(C.c_void_p)
    if op.type == "CONV_2D":
        prm = fill(ConvParams, p)
        idims, fdims, odims = (Dims(*p[k]) for k in ("input_dims", "filter_dims", "output_dims"))
        lib.mcu_sparse_conv2d_s8_scratch_size.restype = C.c_int32
        nb = lib.mcu_sparse_conv2d_s8_scratch_size(C.byref(s), C.byref(prm), C.byref(fdims),
                                                   C.byref(odims))
        getattr(lib, "mcu_sparse_conv2d_s8" + variant)(
            C.byref(prm), rq, C.byref(s), n, C.byref(idims), ptr(x), C.byref(fdims),
            ptr(beff, C.c_int32), C.byref(odims), ptr(out), scratch(nb))
    else:
        prm = fill(FcParams, p)
        lib.mcu_sparse_fc_s8_scratch_size.restype = C.c_int32
        nb = lib.mcu_sparse_fc_s8_scratch_size(C.byref(s), int(p["batches"]))
        getattr(lib, "mcu_sparse_fc_s8" + variant)(
            C.byref(prm), rq, C.byref(s), n, int(p["batches"]), ptr(x), ptr(beff, C.c_int32),
            ptr(out), scratch(nb))
    return out


# ----------------------------------------------------------------------------- QEMU
def _store_c(st) -> str:
    a = st.c_arrays()
    s = [_carr("pairs", a["pairs"], "uint8_t"), _carr("gend", a["group_end"], "int32_t")]
    tail = "0"
    if a["tail"] is not None:
        s.append(_carr("tail", a["tail"], "int8_t"))
        tail = "tail"
    segc = "0"
    if a["seg_counts"] is not None:
        s.append(_carr("segc", a["seg_counts"], "uint8_t"))
        segc = "segc"
    ints = ",".join(str(int(a[k])) for k in INT_FIELDS)
    s.append(f"const mcu_sparse_store_t st = {{pairs, {tail}, {segc}, gend, {ints}}};\n")
    return "".join(s)


def _case_c(idx: int, name: str, case, level: int, expected: np.ndarray, dense: bool,
            dsp: bool) -> str:
    g = case.shared.graphs[level]
    op = g.ops[0]
    p = level_params(g, op)
    st = case.store
    n_out = int(expected.size)
    n = int(st.counts[level])
    bias = p["bias"] if p["bias"] is not None else np.zeros(st.rows, np.int32)
    beff = st.bias_eff(level, p["bias"], p["input_offset"])
    per_channel = int(np.atleast_1d(p["multiplier"]).size > 1)
    s = [f"static int32_t case_{idx}(void)\n{{\n", _carr("x", case.x[level], "int8_t"),
         _carr("expect", expected, "int8_t"), _store_c(st),
         _carr("mult", p["multiplier"], "int32_t"), _carr("shift", p["shift"], "int32_t"),
         _carr("beff", beff, "int32_t"), _carr("bias", bias, "int32_t"),
         f"static int8_t out[{n_out}] __attribute__((aligned(4)));\n",
         f"static mcu_requant_t rq[{st.rows}];\n",
         "int32_t bad = 0, b1; uint32_t t0;\n",
         f"mcu_requant_prepare(rq, {st.rows}, mult, shift, {per_channel}, "
         f"{int(p['output_offset'])});\n"]
    calls = []
    if op.type == "CONV_2D":
        s.append(f"const mcu_conv_params_t p = {_struct_init(p, CONV_F)};\n")
        s.append(f"const mcu_dims_t id = {_dims(p['input_dims'])}, "
                 f"fd = {_dims(p['filter_dims'])}, od = {_dims(p['output_dims'])};\n")
        s.append("if (mcu_sparse_conv2d_s8_scratch_size(&st, &p, &fd, &od) > (int32_t)sizeof(g_scratch)) "
                 "return 1000;\n")
        args = f"&p, rq, &st, {n}, &id, x, &fd, beff, &od, out, g_scratch"
        calls.append(("sparse_portable", f"mcu_sparse_conv2d_s8_portable({args});"))
        if dsp:
            calls.append(("sparse_dsp", f"mcu_sparse_conv2d_s8_dsp({args});"))
        if dense:
            dp = kernel_params(g, op)
            s.append(_carr("wd", dp["filter"], "int8_t"))
            s.append("if (mcu_conv2d_s8_pre_scratch_size(&id, &fd) > (int32_t)sizeof(g_scratch)) "
                     "return 1000;\n")
            calls.append(("dense_dsp", "mcu_conv2d_s8_pre(&p, 0, rq, &id, x, &fd, wd, bias, "
                          "&od, out, g_scratch);"))
    else:
        s.append(f"const mcu_fc_params_t p = {_struct_init(p, FC_F)};\n")
        s.append(f"if (mcu_sparse_fc_s8_scratch_size(&st, {p['batches']}) > "
                 "(int32_t)sizeof(g_scratch)) return 1000;\n")
        args = f"&p, rq, &st, {n}, {p['batches']}, x, beff, out, g_scratch"
        calls.append(("sparse_portable", f"mcu_sparse_fc_s8_portable({args});"))
        if dsp:
            calls.append(("sparse_dsp", f"mcu_sparse_fc_s8_dsp({args});"))
        if dense:
            dp = kernel_params(g, op)
            s.append(_carr("wd", dp["filter"], "int8_t"))
            s.append("const mcu_per_channel_quant_t q = {mult, shift};\n")
            calls.append(("dense_dsp", f"mcu_fc_s8(&p, &q, {per_channel}, {p['batches']}, "
                          f"{p['in_features']}, {p['out_features']}, x, wd, bias, out, "
                          "g_scratch);"))
    for variant, stmt in calls:
        s.append(f"harness_fill(out, {n_out}, (int8_t)0x5a);\n")
        s.append(f"t0 = harness_ticks();\n{stmt}\nt0 = harness_ticks() - t0;\n")
        s.append(f"b1 = harness_compare(out, expect, {n_out});\n")
        s.append(f'harness_report("{name}", "{variant}", t0, b1);\nbad += b1;\n')
    s.append("return bad;\n}\n\n")
    return "".join(s)


def emit_sparse_cases(cases, dense: bool = False, dsp: bool = True,
                      scratch_words: int = 16384) -> str:
    """cases: [(name, Case, level, expected int8)] -> C source of harness_run_cases().
    dense=True also times the dense DSP kernel (prepared entry) on the level's
    dense-with-zeros weights, checked against the same expected bytes."""
    out = ['#include <stdint.h>\n#include "mcu_kernels.h"\n',
           "void harness_report(const char *, const char *, uint32_t, int32_t);\n"
           "int32_t harness_compare(const int8_t *, const int8_t *, int32_t);\n"
           "void harness_fill(int8_t *, int32_t, int8_t);\n"
           "uint32_t harness_ticks(void);\n",
           f"static int32_t g_scratch[{scratch_words}];\n\n"]
    for i, (name, case, level, expected) in enumerate(cases):
        out.append(_case_c(i, name, case, level, expected, dense, dsp))
    out.append("int32_t harness_run_cases(void)\n{\nint32_t bad = 0;\n")
    out.extend(f"bad += case_{i}();\n" for i in range(len(cases)))
    out.append("return bad;\n}\n")
    return "".join(out)

"""Bare-metal kernel test images for QEMU (mps2-an386 Cortex-M4, mps2-an500
Cortex-M7): test vectors (inputs, kernel params from kernel_params, expected
outputs) are baked into a generated C file, the device runs every kernel variant,
compares on the device and exits via semihosting with the mismatch count. Each
call also reports its SysTick ticks (instructions = ticks * 40 under
`-icount shift=0`).

    src = emit_cases([("conv0", graph, feeds, expected), ...])
    elf = build_image(src, "m4", workdir)
    rc, results = run_image(elf, "m4")   # results: [(case, variant, ticks, bad)]
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from toolchain.codegen.kernel_params import kernel_params

RUNTIME = Path(__file__).resolve().parents[1] / "firmware_templates" / "runtime"
HARNESS = RUNTIME / "test"
CPUS = {
    "m4": dict(machine="mps2-an386",
               flags=["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]),
    "m7": dict(machine="mps2-an500",
               flags=["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"]),
}
SCRATCH_WORDS = 16384
# kernels with a DSP variant; both variants run on the device
DSP_OPS = {"CONV_2D": "mcu_conv2d_s8", "DEPTHWISE_CONV_2D": "mcu_dw_conv2d_s8",
           "FULLY_CONNECTED": "mcu_fc_s8", "TRANSPOSE_CONV": "mcu_transpose_conv_s8"}


def have_toolchain() -> bool:
    return bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))


def _carr(name: str, a, ctype: str) -> str:
    a = np.asarray(a).reshape(-1)
    body = ",".join(str(int(v)) for v in a) if a.size else "0"
    return f"static const {ctype} {name}[{max(a.size, 1)}] __attribute__((aligned(4))) = {{{body}}};\n"


def _dims(d) -> str:
    return "{" + ",".join(str(int(v)) for v in d) + "}"


def _struct_init(p: dict, fields: list[str]) -> str:
    return "{" + ",".join(str(int(p[f])) for f in fields) + "}"


CONV_F = ["input_offset", "output_offset", "stride_h", "stride_w", "dilation_h", "dilation_w",
          "pad_h", "pad_w", "act_min", "act_max"]
DW_F = ["input_offset", "output_offset", "stride_h", "stride_w", "dilation_h", "dilation_w",
        "pad_h", "pad_w", "depth_multiplier", "act_min", "act_max"]
FC_F = ["input_offset", "filter_offset", "output_offset", "act_min", "act_max"]
POOL_F = ["stride_h", "stride_w", "filter_h", "filter_w", "pad_h", "pad_w", "act_min", "act_max"]
ADD_F = ["input1_offset", "input2_offset", "left_shift", "input1_multiplier", "input1_shift",
         "input2_multiplier", "input2_shift", "output_multiplier", "output_shift",
         "output_offset", "act_min", "act_max"]
MUL_F = ["input1_offset", "input2_offset", "output_multiplier", "output_shift",
         "output_offset", "act_min", "act_max"]
PRELU_F = ["input_offset", "alpha_offset", "output_offset", "output_multiplier_1",
           "output_shift_1", "output_multiplier_2", "output_shift_2"]
SOFTMAX_F = ["input_multiplier", "input_left_shift", "diff_min"]
TCONV_F = ["input_offset", "output_offset", "stride_h", "stride_w", "pad_h", "pad_w",
           "act_min", "act_max"]


def _case(idx: int, name: str, g, feeds: dict, expected: np.ndarray, dsp: bool) -> str:
    """C function case_<idx>() returning its mismatch count."""
    op = g.ops[0]
    p = kernel_params(g, op)
    t = op.type
    n_out = int(expected.size)
    s = [f"static int32_t case_{idx}(void)\n{{\n"]
    if t != "CONCATENATION":
        s.append(_carr("x", feeds[op.inputs[0]], "int8_t"))
    s.append(_carr("expect", expected, "int8_t"))
    s.append(f"static int8_t out[{n_out}] __attribute__((aligned(4)));\n")
    s.append("int32_t bad = 0, b1; uint32_t t0;\n")
    setup, calls = [], []   # calls: (variant label, C statement)
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        s.append(_carr("w", p["filter"], "int8_t"))
        s.append(_carr("mult", p["multiplier"], "int32_t"))
        s.append(_carr("shift", p["shift"], "int32_t"))
        bias = "0"
        if p["bias"] is not None:
            s.append(_carr("b", p["bias"], "int32_t"))
            bias = "b"
        setup.append("const mcu_per_channel_quant_t q = {mult, shift};\n")
        base = DSP_OPS[t]
        if t == "FULLY_CONNECTED":
            setup.append(f"const mcu_fc_params_t p = {_struct_init(p, FC_F)};\n")
            setup.append(f"if (mcu_fc_s8_scratch_size({p['in_features']}, {p['out_features']}) > "
                         f"(int32_t)sizeof(g_scratch)) return 1000;\n")
            args = (f"&p, &q, {p['per_channel']}, {p['batches']}, {p['in_features']}, "
                    f"{p['out_features']}, x, w, {bias}, out")
            calls.append(("portable", f"{base}_portable({args});"))
            if dsp:
                calls.append(("dsp", f"{base}_dsp({args}, g_scratch);"))
            if dsp and int(p["filter_offset"]) == 0:
                from toolchain.codegen.scratch import fc_packed
                wp, bp = fc_packed(p)
                s.append(_carr("wp", wp, "int8_t"))
                s.append(_carr("bp", bp, "int32_t"))
                calls.append(("dsp_packed", f"mcu_fc_s8_packed(&p, &q, {p['per_channel']}, "
                              f"{p['batches']}, {p['in_features']}, {p['out_features']}, x, "
                              "wp, bp, out);"))
        else:
            ptype, fields = (("mcu_conv_params_t", CONV_F) if t == "CONV_2D"
                             else ("mcu_dw_conv_params_t", DW_F))
            setup.append(f"const {ptype} p = {_struct_init(p, fields)};\n")
            setup.append(f"const mcu_dims_t id = {_dims(p['input_dims'])}, "
                         f"fd = {_dims(p['filter_dims'])}, od = {_dims(p['output_dims'])};\n")
            setup.append(f"if ({base}_scratch_size(&id, &fd) > (int32_t)sizeof(g_scratch)) "
                         "return 1000;\n")
            args = f"&p, &q, &id, x, &fd, w, {bias}, &od, out"
            calls.append(("portable", f"{base}_portable({args});"))
            if dsp:
                calls.append(("dsp", f"{base}_dsp({args}, g_scratch);"))
            from toolchain.codegen.scratch import (conv_pre4, dw_direct, dw_direct_weights,
                                                   requant_table)
            if dsp and t == "CONV_2D" and conv_pre4(p, "dsp"):
                s.append(_carr("rq", requant_table(p).reshape(-1), "int32_t"))
                setup.append("if (mcu_conv2d_s8_pre4_scratch_size(&id, &fd) > "
                             "(int32_t)sizeof(g_scratch)) return 1000;\n")
                calls.append(("dsp_pre4", "mcu_conv2d_s8_pre4(&p, 0, (const mcu_requant_t *)"
                              f"(const void *)rq, &id, x, &fd, w, {bias}, &od, out, g_scratch);"))
            if dsp and t == "DEPTHWISE_CONV_2D" and dw_direct(p, "dsp", False):
                wp, bp = dw_direct_weights(p)
                s.append(_carr("wp", wp, "int8_t"))
                s.append(_carr("bp", bp, "int32_t"))
                s.append(_carr("rq", requant_table(p).reshape(-1), "int32_t"))
                setup.append("if (mcu_dw_conv2d_s8_direct_scratch_size(&p, &fd, &od) > "
                             "(int32_t)sizeof(g_scratch)) return 1000;\n")
                fn = "mcu_dw_conv2d_s8_direct" + ("_s2" if p["stride_w"] == 2 else "")
                calls.append(("dsp_direct", f"{fn}(&p, (const mcu_requant_t *)"
                              "(const void *)rq, &id, x, &fd, wp, bp, &od, out, g_scratch);"))
    elif t == "TRANSPOSE_CONV":
        s.append(_carr("w", p["filter"], "int8_t"))
        s.append(_carr("mult", p["multiplier"], "int32_t"))
        s.append(_carr("shift", p["shift"], "int32_t"))
        bias = "0"
        if p["bias"] is not None:
            s.append(_carr("b", p["bias"], "int32_t"))
            bias = "b"
        setup.append("const mcu_per_channel_quant_t q = {mult, shift};\n")
        setup.append(f"const mcu_transpose_conv_params_t p = {_struct_init(p, TCONV_F)};\n")
        setup.append(f"const mcu_dims_t id = {_dims(p['input_dims'])}, "
                     f"fd = {_dims(p['filter_dims'])}, od = {_dims(p['output_dims'])};\n")
        args = f"&p, &q, &id, x, &fd, w, {bias}, &od, out"
        calls.append(("portable", f"mcu_transpose_conv_s8_portable({args});"))
        if dsp:
            calls.append(("dsp", f"mcu_transpose_conv_s8_dsp({args});"))
    elif t == "RESIZE_NEAREST_NEIGHBOR":
        s.append(_carr("rows", p["rows"], "int32_t"))
        s.append(_carr("cols", p["cols"], "int32_t"))
        setup.append(f"const mcu_dims_t id = {_dims(p['input_dims'])}, "
                     f"od = {_dims(p['output_dims'])};\n")
        calls.append(("portable", "mcu_resize_nearest_s8(&id, x, &od, rows, cols, out);"))
    elif t in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        setup.append(f"const mcu_pool_params_t p = {_struct_init(p, POOL_F)};\n")
        setup.append(f"const mcu_dims_t id = {_dims(p['input_dims'])}, "
                     f"od = {_dims(p['output_dims'])};\n")
        fn = "mcu_avgpool_s8" if t == "AVERAGE_POOL_2D" else "mcu_maxpool_s8"
        calls.append(("portable", f"{fn}(&p, &id, x, &od, out);"))
    elif t in ("ADD", "SUB", "MUL"):
        s.append(_carr("y", feeds[op.inputs[1]], "int8_t"))
        ptype, fields, fn = {"ADD": ("mcu_add_params_t", ADD_F, "mcu_add_s8"),
                             "SUB": ("mcu_add_params_t", ADD_F, "mcu_sub_s8"),
                             "MUL": ("mcu_mul_params_t", MUL_F, "mcu_mul_s8")}[t]
        setup.append(f"const {ptype} p = {_struct_init(p, fields)};\n")
        if p["broadcast"]:
            s.append(_carr("s1", p["strides1"], "int32_t"))
            s.append(_carr("s2", p["strides2"], "int32_t"))
            setup.append(f"const mcu_dims_t od = {_dims(p['output_dims'])};\n")
            calls.append(("portable", f"{fn}_broadcast(&p, &od, x, s1, y, s2, out);"))
        else:
            calls.append(("portable", f"{fn}(&p, x, y, out, {p['size']});"))
    elif t in ("MAXIMUM", "MINIMUM"):
        s.append(_carr("y", feeds[op.inputs[1]], "int8_t"))
        fn = "mcu_maximum_s8" if t == "MAXIMUM" else "mcu_minimum_s8"
        if p["broadcast"]:
            s.append(_carr("s1", p["strides1"], "int32_t"))
            s.append(_carr("s2", p["strides2"], "int32_t"))
            setup.append(f"const mcu_dims_t od = {_dims(p['output_dims'])};\n")
            calls.append(("portable", f"{fn}_broadcast(&od, x, s1, y, s2, out);"))
        else:
            calls.append(("portable", f"{fn}(x, y, out, {p['size']});"))
    elif t == "TRANSPOSE":
        s.append(_carr("od", p["output_dims"], "int32_t"))
        s.append(_carr("st", p["strides"], "int32_t"))
        calls.append(("portable", "mcu_transpose_s8(od, st, x, out);"))
    elif t == "STRIDED_SLICE":
        s.append(_carr("od", p["output_dims"], "int32_t"))
        s.append(_carr("st", p["strides"], "int32_t"))
        calls.append(("portable", f"mcu_strided_slice_s8(od, st, {p['offset']}, x, out);"))
    elif t == "PRELU":
        s.append(_carr("alpha", g.t(op.inputs[1]).data, "int8_t"))
        s.append(_carr("ast", p["alpha_strides"], "int32_t"))
        setup.append(f"const mcu_prelu_params_t p = {_struct_init(p, PRELU_F)};\n")
        setup.append(f"const mcu_dims_t od = {_dims(p['output_dims'])};\n")
        calls.append(("portable", "mcu_prelu_s8(&p, &od, x, alpha, ast, out);"))
    elif t == "RESHAPE":
        calls.append(("portable", f"mcu_reshape_s8(x, out, {p['size']});"))
    elif t == "SOFTMAX":
        setup.append(f"const mcu_softmax_params_t p = {_struct_init(p, SOFTMAX_F)};\n")
        calls.append(("portable", f"mcu_softmax_s8(&p, {p['rows']}, {p['depth']}, x, out);"))
    elif t == "CONCATENATION":
        names = []
        for i, n in enumerate(op.inputs):
            s.append(_carr(f"in{i}", feeds[n], "int8_t"))
            names.append(f"in{i}")
        s.append(_carr("sizes", p["inner_sizes"], "int32_t"))
        setup.append(f"const int8_t *const ins[{len(names)}] = {{{','.join(names)}}};\n")
        calls.append(("portable", f"mcu_concat_s8({len(names)}, ins, sizes, {p['outer']}, out);"))
    elif t == "PAD":
        s.append(_carr("pads", p["pads"], "int32_t"))
        setup.append(f"const mcu_dims_t id = {_dims(p['input_dims'])};\n")
        calls.append(("portable", f"mcu_pad_s8(&id, x, pads, (int8_t){p['pad_value']}, out);"))
    elif t == "MEAN":
        calls.append(("portable", f"mcu_mean_s8({p['outer']}, {p['reduce']}, {p['inner']}, x, "
                      f"{p['input_zero_point']}, {p['multiplier']}, {p['shift']}, "
                      f"{p['output_zero_point']}, out);"))
    elif t == "RELU":
        calls.append(("portable", f"mcu_relu_s8(x, out, {p['size']}, {p['input_zero_point']}, "
                      f"{p['output_zero_point']}, {p['multiplier']}, {p['shift']}, "
                      f"{p['act_min']}, {p['act_max']});"))
    elif t == "RELU6":
        calls.append(("portable", f"mcu_clamp_s8(x, out, {p['size']}, {p['lo']}, {p['hi']});"))
    elif t in ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"):     # table activations
        s.append(_carr("lut", p["table"], "int8_t"))
        calls.append(("portable", f"mcu_lut_s8(x, out, {p['size']}, lut);"))
    else:
        raise NotImplementedError(t)
    s.extend(setup)
    for variant, stmt in calls:
        s.append(f"harness_fill(out, {n_out}, (int8_t)0x5a);\n")
        s.append(f"t0 = harness_ticks();\n{stmt}\nt0 = harness_ticks() - t0;\n")
        s.append(f"b1 = harness_compare(out, expect, {n_out});\n")
        s.append(f'harness_report("{name}", "{variant}", t0, b1);\nbad += b1;\n')
    s.append("return bad;\n}\n\n")
    return "".join(s)


def emit_cases(cases, dsp: bool = True) -> str:
    """cases: [(name, graph, feeds, expected)] -> C source of harness_run_cases()."""
    out = ['#include <stdint.h>\n#include "mcu_kernels.h"\n',
           "void harness_report(const char *, const char *, uint32_t, int32_t);\n"
           "int32_t harness_compare(const int8_t *, const int8_t *, int32_t);\n"
           "void harness_fill(int8_t *, int32_t, int8_t);\n"
           "uint32_t harness_ticks(void);\n",
           f"static int32_t g_scratch[{SCRATCH_WORDS}] __attribute__((unused));\n\n"]
    for i, (name, g, feeds, expected) in enumerate(cases):
        out.append(_case(i, name, g, feeds, expected, dsp))
    out.append("int32_t harness_run_cases(void)\n{\nint32_t bad = 0;\n")
    out.extend(f"bad += case_{i}();\n" for i in range(len(cases)))
    out.append("return bad;\n}\n")
    return "".join(out)


def build_image(cases_src: str, cpu: str, workdir: Path, opt: str = "-O2") -> Path:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "vectors.c").write_text(cases_src)
    elf = workdir / f"kernels_{cpu}.elf"
    srcs = [*sorted(RUNTIME.glob("*.c")), *sorted(RUNTIME.glob("*.S")), HARNESS / "startup_test.c",
            HARNESS / "harness_main.c", workdir / "vectors.c"]
    cmd = ["arm-none-eabi-gcc", *CPUS[cpu]["flags"], opt, "-std=c99", "-Wall", "-Wextra",
           "-Werror", "-ffreestanding", "-ffunction-sections", "-fdata-sections",
           f"-I{RUNTIME}", f"-I{HARNESS}", *map(str, srcs), "-nostdlib", "-nostartfiles",
           f"-T{HARNESS / 'link.ld'}", "-Wl,--gc-sections", "-lgcc", "-o", str(elf)]
    subprocess.run(cmd, check=True)
    return elf


def run_image(elf: Path, cpu: str, timeout: float = 120.0):
    """-> (exit code, [(case, variant, ticks, mismatches)], stderr text)"""
    cmd = ["qemu-system-arm", "-M", CPUS[cpu]["machine"], "-display", "none", "-monitor", "none",
           "-serial", "none", "-no-reboot", "-icount", "shift=0",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       start_new_session=True)
    text = r.stdout + r.stderr
    results = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "R":
            results.append((parts[1], parts[2], int(parts[3]), int(parts[4])))
    return r.returncode, results, text

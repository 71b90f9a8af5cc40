"""int16 activations with int8 weights ("16x8"), as TFLite / TFLite Micro define them.

Activations are int16 symmetric (zero point 0), weights int8 symmetric (per output
channel for CONV_2D / DEPTHWISE_CONV_2D, per tensor for FULLY_CONNECTED: TFLM's int16
FullyConnected takes one multiplier), biases int64 (what TF's 16x8 converter writes).
This module attaches the int16 forms to the ops registered by their family modules:
`attach()` wraps an OpDef's `reference`, `kernel_params`, `emit` (and `scratch`) so
they dispatch on the op's activation dtype; the int8 forms stay where they are.

TFLM fidelity (tflite-micro reference_integer_ops / reference_ops, int16 paths):
- CONV_2D: input and output zero points 0; accumulator of the bias type: int64 bias
  -> int64 sum and the int64 MultiplyByQuantizedMultiplier (multiplier reduced to
  Q15, (x * m15 + 2^(14-shift)) >> (15-shift)); int32 bias or none -> int32 sum
  (wraps as TFLM's does) and the int32 double-rounding MultiplyByQuantizedMultiplier.
  Without a bias the installed tflite-micro takes the int64 path (measured: the int32
  one is off by one on some outputs).
- DEPTHWISE_CONV_2D: int64 sum, int64 bias (or none), the int64 multiply.
- FULLY_CONNECTED: int64 sum, int64 bias (or none), per-tensor int64 multiply.
- ADD: left_shift 15 (20 for int8), zero points 0, the same SmallerThanOneExp
  multipliers and arithmetic as int8 (reference_ops::AddElementwise, int16).
- AVERAGE_POOL_2D / MAX_POOL_2D: int8's arithmetic on int16 values (the average
  rounds half away from zero over the valid taps).
- SOFTMAX: input zero point 0, output scale 1/32768 zero point 0; the difference to
  the row maximum rescaled by QuantizeMultiplier(in_s * beta / (10/65535)), an exp
  LUT on [-10, 0] and a 1/(1+x) LUT on [0, 1] (513 entries each, TFLM's gen_lut in
  float32) with linear interpolation, Q16.15 sum (reference_ops::SoftmaxInt16).
- RESHAPE: bytes; QUANTIZE: float32 -> int16 (round half away), int8/int16 ->
  int8/int16 requantize; DEQUANTIZE: int16 -> float32.
Kernels: firmware_templates/runtime/int16_conv.c (conv, depthwise, FC) and
int16_ops.c (add, pools, softmax). Ops without an int16 form are refused on int16
graphs by the code generator and the quantizer, naming op and layer.
"""
from __future__ import annotations

import functools

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op

from .base import (REGISTRY, bias_input, compute_padding, dims4, i32, pad_windows, qparams,
                   wscales)

INT16_MIN, INT16_MAX = -32768, 32767
SOFTMAX_OUTPUT_QUANT = (1.0 / 32768.0, 0)
LUT_SIZE = 513
# TFLite op versions for int16 activations (tensorflow/lite/tools/versioning/op_version.cc)
INT16_VERSION = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 5, "FULLY_CONNECTED": 7,
                 "AVERAGE_POOL_2D": 3, "MAX_POOL_2D": 3, "ADD": 3, "SOFTMAX": 3,
                 "RESHAPE": 1, "QUANTIZE": 2, "DEQUANTIZE": 3}
INT16_OPS: set[str] = set()          # filled by attach()


def is_int16(g: Graph, op: Op) -> bool:
    """The op runs on int16 activations (any non-constant input or output is int16)."""
    for n in list(op.inputs) + list(op.outputs):
        if n:
            t = g.tensors.get(n)
            if t is not None and not t.is_const and t.dtype == "int16":
                return True
    return False


def graph_is_int16(g: Graph) -> bool:
    return any(not t.is_const and t.dtype == "int16" for t in g.tensors.values())


def check_int16_graph(g: Graph, what: str) -> None:
    """Refuse (IRError naming op and layer) any op without an int16 form on a graph
    with int16 activations."""
    if not graph_is_int16(g):
        return
    for op in g.ops:
        if op.type not in INT16_OPS:
            raise IRError(f"unsupported op {op.type} in layer '{op.name}' for int16 "
                          f"activations in {what}; int16 ops: {', '.join(sorted(INT16_OPS))}")


def _zp0(t, layer: str, op_type: str) -> float:
    s, zp = qparams(t, layer)
    if zp != 0:
        raise IRError(f"layer '{layer}' ({op_type}): int16 tensor '{t.name}' must have zero "
                      f"point 0 (has {zp})")
    return s


def _act16(op: Op, scale: float) -> tuple[int, int]:
    return qm.activation_range_quantized(op.attr("fused_activation") or "NONE", scale, 0,
                                         INT16_MIN, INT16_MAX)


def mbqm_int64(x, quantized_multiplier, shift):
    """TFLM MultiplyByQuantizedMultiplier(int64 x, int32 M, int shift): M reduced to
    Q15 with rounding (0x7FFF at the top), one rounding shift by 15 - shift."""
    x, m, shift = qm.i64(x), qm.i64(quantized_multiplier), qm.i64(shift)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - shift
    return (x * reduced + (qm.i64(1) << (total - 1))) >> total


def _requant16(acc, mult, shift, lo, hi, int64_acc: bool):
    if int64_acc:
        out = mbqm_int64(acc, mult, shift)
    else:
        out = qm.multiply_by_quantized_multiplier(qm.wrap_int32(acc), mult, shift)
    return np.clip(out, lo, hi).astype(np.int16)


def _bias(g: Graph, op: Op, allow32: bool):
    """(int64 bias values or None, int64 accumulator?)."""
    b = bias_input(g, op)
    if b is None:
        return None, True       # the installed tflite-micro: int64 sum without a bias
    if b.dtype == "int64":
        return b.data.astype(np.int64).reshape(-1), True
    if b.dtype == "int32" and allow32:
        return b.data.astype(np.int64).reshape(-1), False
    raise IRError(f"layer '{op.name}' ({op.type}): int16 activations need an int64 bias"
                  f"{' (or int32)' if allow32 else ''}, not {b.dtype}")


# ---------------------------------------------------------------- CONV_2D / DEPTHWISE
def _conv_geometry(g: Graph, op: Op, depthwise: bool):
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s = _zp0(xt, op.name, op.type)
    out_s = _zp0(ot, op.name, op.type)
    n, h, w, c = dims4(xt.shape)
    if depthwise:
        _, kh, kw, o = wt.shape
        if o % c:
            raise IRError(f"layer '{op.name}' (DEPTHWISE_CONV_2D): {o} output channels is not "
                          f"a multiple of {c} input channels")
    else:
        o, kh, kw, ci = wt.shape
        if ci != c:
            raise IRError(f"layer '{op.name}' (CONV_2D): input has {c} channels, weights "
                          f"{ci} (grouped convolution is not supported)")
    if int(np.abs(wt.quant.zero_point).max(initial=0)) != 0:
        raise IRError(f"layer '{op.name}' ({op.type}): int8 weights must be symmetric")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(in_s * wscales(wt, o) / out_s)
    lo, hi = _act16(op, out_s)
    return dict(n=n, h=h, w=w, c=c, o=o, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, oh=oh,
                ow=ow, ph=ph, pw=pw, mult=mult, shift=shift, lo=lo, hi=hi)


def conv_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    q = _conv_geometry(g, op, depthwise=False)
    bias, acc64 = _bias(g, op, allow32=True)
    x = v[op.inputs[0]].astype(np.int64).reshape(q["n"], q["h"], q["w"], q["c"])
    w = g.t(op.inputs[1]).data.astype(np.int64)
    _, taps = pad_windows(x, q["kh"], q["kw"], q["sh"], q["sw"], q["dh"], q["dw"], q["oh"],
                          q["ow"], q["ph"], q["pw"], 0)
    cols = np.concatenate(taps, axis=-1).reshape(-1, q["kh"] * q["kw"] * q["c"])
    acc = cols @ w.reshape(q["o"], -1).T          # exact int64 (|acc| < 2^23 * K)
    if bias is not None:
        acc = acc + bias
    out = _requant16(acc, q["mult"], q["shift"], q["lo"], q["hi"], acc64)
    return out.reshape(q["n"], q["oh"], q["ow"], q["o"])


def depthwise_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    q = _conv_geometry(g, op, depthwise=True)
    bias, _ = _bias(g, op, allow32=False)
    x = v[op.inputs[0]].astype(np.int64).reshape(q["n"], q["h"], q["w"], q["c"])
    m = q["o"] // q["c"]
    if m > 1:
        x = np.repeat(x, m, axis=-1)
    w = g.t(op.inputs[1]).data.astype(np.int64)
    _, taps = pad_windows(x, q["kh"], q["kw"], q["sh"], q["sw"], q["dh"], q["dw"], q["oh"],
                          q["ow"], q["ph"], q["pw"], 0)
    acc = np.zeros((q["n"], q["oh"], q["ow"], q["o"]), np.int64)
    k = 0
    for i in range(q["kh"]):
        for j in range(q["kw"]):
            acc += taps[k] * w[0, i, j, :]
            k += 1
    if bias is not None:
        acc = acc + bias
    return _requant16(acc, q["mult"], q["shift"], q["lo"], q["hi"], True)


def _conv_params(g: Graph, op: Op, depthwise: bool) -> dict:
    q = _conv_geometry(g, op, depthwise)
    bias, acc64 = _bias(g, op, allow32=not depthwise)
    wt = g.t(op.inputs[1])
    p = dict(int16=True, input_offset=0, output_offset=0, stride_h=q["sh"], stride_w=q["sw"],
             dilation_h=q["dh"], dilation_w=q["dw"], pad_h=q["ph"], pad_w=q["pw"],
             act_min=q["lo"], act_max=q["hi"], multiplier=i32(q["mult"]),
             shift=i32(q["shift"]), bias=bias, bias64=int(acc64),
             filter=np.ascontiguousarray(wt.data.astype(np.int8)),
             input_dims=(q["n"], q["h"], q["w"], q["c"]),
             output_dims=(q["n"], q["oh"], q["ow"], q["o"]))
    if depthwise:
        p.update(depth_multiplier=q["o"] // q["c"], filter_dims=(1, q["kh"], q["kw"], q["o"]))
    else:
        p.update(filter_dims=(q["o"], q["kh"], q["kw"], q["c"]))
    return p


def p16(em, name: str) -> str:
    """An int16 tensor's address (arena or flash) as the int16 kernels take it."""
    t = em.g.t(name)
    if t.is_const:
        return em.const(name, t.data.astype(np.int16), "int16_t")
    return f"(int16_t *)(void *){em.ptr(name)}"


def _bias_args(em, op: Op, p: dict) -> tuple[str, str]:
    """(int64 bias, int32 bias) C arguments; at most one is set."""
    if p["bias"] is None:
        return "0", "0"
    if p["bias64"]:
        return em.const(op.inputs[2], p["bias"].astype(np.int64), "int64_t"), "0"
    return "0", em.const(op.inputs[2], p["bias"].astype(np.int32), "int32_t")


def _conv_emit(em, k: int, op: Op, p: dict, depthwise: bool) -> list[str]:
    P = em.layer_prefix(k)
    fields = ["input_offset", "output_offset", "stride_h", "stride_w", "dilation_h",
              "dilation_w", "pad_h", "pad_w"] + (["depth_multiplier"] if depthwise else []) \
        + ["act_min", "act_max"]
    ctype = "mcu_dw_conv_params_t" if depthwise else "mcu_conv_params_t"
    pp = em.struct(P, ctype, p, fields)
    q = em.quant(P, p)
    idm, fdm, odm = (em.dims(P, "id", p["input_dims"]), em.dims(P, "fd", p["filter_dims"]),
                     em.dims(P, "od", p["output_dims"]))
    w = em.const(op.inputs[1], p["filter"], "int8_t")
    b64, b32 = _bias_args(em, op, p)
    x, y = p16(em, op.inputs[0]), p16(em, op.outputs[0])
    if depthwise:
        return [f"mcu_dw_conv2d_s16({pp}, {q}, {idm}, {x}, {fdm}, {w}, {b64}, {odm}, {y});"]
    return [f"mcu_conv2d_s16({pp}, {q}, {idm}, {x}, {fdm}, {w}, {b64}, {b32}, {odm}, {y});"]


# ---------------------------------------------------------------- FULLY_CONNECTED
def _fc_quant(g: Graph, op: Op):
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s = _zp0(xt, op.name, op.type)
    out_s = _zp0(ot, op.name, op.type)
    if wt.quant.scale.size > 1:
        raise IRError(f"layer '{op.name}' (FULLY_CONNECTED): int16 activations take per-tensor "
                      "weights (TFLite Micro's int16 FULLY_CONNECTED has one multiplier)")
    o, k = wt.shape
    if xt.size % k:
        raise IRError(f"layer '{op.name}' (FULLY_CONNECTED): input size {xt.size} is not a "
                      f"multiple of {k}")
    mult, shift = qm.quantize_multiplier(float(in_s) * float(qm.f32(wt.quant.scale[0])) / out_s)
    lo, hi = _act16(op, out_s)
    return o, k, int(mult), int(shift), lo, hi, -int(wt.quant.zero_point[0])


def fc_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    o, k, mult, shift, lo, hi, w_off = _fc_quant(g, op)
    bias, _ = _bias(g, op, allow32=False)
    x = v[op.inputs[0]].astype(np.int64).reshape(-1, k)
    w = g.t(op.inputs[1]).data.astype(np.int64) + w_off
    acc = x @ w.T
    if bias is not None:
        acc = acc + bias
    return _requant16(acc, mult, shift, lo, hi, True).reshape(g.t(op.outputs[0]).shape)


def _fc_params(g: Graph, op: Op) -> dict:
    o, k, mult, shift, lo, hi, w_off = _fc_quant(g, op)
    bias, _ = _bias(g, op, allow32=False)
    return dict(int16=True, input_offset=0, filter_offset=w_off, output_offset=0, act_min=lo,
                act_max=hi, per_channel=0, multiplier=i32([mult]), shift=i32([shift]),
                bias=bias, bias64=1, filter=np.ascontiguousarray(g.t(op.inputs[1]).data
                                                                 .astype(np.int8)),
                batches=g.t(op.inputs[0]).size // k, in_features=k, out_features=o)


def _fc_emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_fc_params_t", p, ["input_offset", "filter_offset", "output_offset",
                                             "act_min", "act_max"])
    w = em.const(op.inputs[1], p["filter"], "int8_t")
    b64, _ = _bias_args(em, op, p)
    return [f"mcu_fc_s16({pp}, {int(p['multiplier'][0])}, {int(p['shift'][0])}, "
            f"{p['batches']}, {p['in_features']}, {p['out_features']}, "
            f"{p16(em, op.inputs[0])}, {w}, {b64}, {p16(em, op.outputs[0])});"]


# ---------------------------------------------------------------- ADD
def _add_quant(g: Graph, op: Op):
    s1 = _zp0(g.t(op.inputs[0]), op.name, op.type)
    s2 = _zp0(g.t(op.inputs[1]), op.name, op.type)
    so = _zp0(g.t(op.outputs[0]), op.name, op.type)
    left_shift = 15                       # int16 (TFLM add_common: 15; int8: 20)
    twice_max = 2 * max(s1, s2)
    sm = qm.quantize_multiplier_smaller_than_one_exp
    m1, sh1 = sm(s1 / twice_max)
    m2, sh2 = sm(s2 / twice_max)
    mo, sho = sm(twice_max / ((1 << left_shift) * so))
    lo, hi = _act16(op, so)
    return left_shift, (m1, sh1), (m2, sh2), (mo, sho), lo, hi


def add_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    ls, (m1, sh1), (m2, sh2), (mo, sho), lo, hi = _add_quant(g, op)
    a = v[op.inputs[0]].astype(np.int64) * (1 << ls)
    b = v[op.inputs[1]].astype(np.int64) * (1 << ls)
    a = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1, sh1)
    b = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2, sh2)
    raw = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(qm.wrap_int32(a + b), mo, sho)
    return np.broadcast_to(np.clip(raw, lo, hi), g.t(op.outputs[0]).shape).astype(np.int16)


def _add_params(g: Graph, op: Op) -> dict:
    from .elementwise import _layout
    ls, (m1, sh1), (m2, sh2), (mo, sho), lo, hi = _add_quant(g, op)
    return dict(int16=True, input1_offset=0, input2_offset=0, left_shift=ls,
                input1_multiplier=int(m1), input1_shift=int(sh1), input2_multiplier=int(m2),
                input2_shift=int(sh2), output_multiplier=int(mo), output_shift=int(sho),
                output_offset=0, act_min=lo, act_max=hi, **_layout(g, op))


def _add_emit(em, k: int, op: Op, p: dict) -> list[str]:
    from .elementwise import ADD_FIELDS
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_add_params_t", p, ADD_FIELDS)
    a, b, out = p16(em, op.inputs[0]), p16(em, op.inputs[1]), p16(em, op.outputs[0])
    if p["broadcast"]:
        odm = em.dims(P, "od", p["output_dims"])
        em.decls.append(f"static const int32_t {P}_s1[4] = {{{em.arr(p['strides1'])}}};")
        em.decls.append(f"static const int32_t {P}_s2[4] = {{{em.arr(p['strides2'])}}};")
        return [f"mcu_add_s16_broadcast({pp}, {odm}, {a}, {P}_s1, {b}, {P}_s2, {out});"]
    return [f"mcu_add_s16({pp}, {a}, {b}, {out}, {p['size']});"]


# ---------------------------------------------------------------- pooling
def _pool_geometry(g: Graph, op: Op):
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, _ = qparams(ot, op.name)
    if qparams(xt, op.name) != qparams(ot, op.name):
        raise IRError(f"layer '{op.name}' ({op.type}): input and output must share one "
                      "quantization (TFLite Micro pools int16 values without rescaling)")
    n, h, w, c = dims4(xt.shape)
    kh, kw = int(op.attr("filter_h")), int(op.attr("filter_w"))
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    oh, ph = compute_padding(sh, 1, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, 1, w, kw, op.attr("padding"))
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation") or "NONE", out_s,
                                           qparams(ot, op.name)[1], INT16_MIN, INT16_MAX)
    return n, h, w, c, kh, kw, sh, sw, oh, ow, ph, pw, lo, hi


def pool_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    n, h, w, c, kh, kw, sh, sw, oh, ow, ph, pw, lo, hi = _pool_geometry(g, op)
    x = v[op.inputs[0]].astype(np.int64).reshape(n, h, w, c)
    if op.type == "MAX_POOL_2D":
        _, taps = pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, np.iinfo(np.int64).min)
        return np.clip(np.maximum.reduce(taps), lo, hi).astype(np.int16)
    _, taps = pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, 0)
    _, mtaps = pad_windows(np.ones((1, h, w, 1), np.int64), kh, kw, sh, sw, 1, 1, oh, ow,
                           ph, pw, 0)
    acc, cnt = np.add.reduce(taps), np.add.reduce(mtaps)
    half = cnt // 2
    res = np.where(acc > 0, qm.trunc_div(acc + half, cnt), qm.trunc_div(acc - half, cnt))
    return np.clip(res, lo, hi).astype(np.int16)


def _pool_params(g: Graph, op: Op) -> dict:
    n, h, w, c, kh, kw, sh, sw, oh, ow, ph, pw, lo, hi = _pool_geometry(g, op)
    return dict(int16=True, stride_h=sh, stride_w=sw, filter_h=kh, filter_w=kw, pad_h=ph,
                pad_w=pw, act_min=lo, act_max=hi, input_dims=(n, h, w, c),
                output_dims=(n, oh, ow, c))


def _pool_emit(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    fn = "mcu_avgpool_s16" if op.type == "AVERAGE_POOL_2D" else "mcu_maxpool_s16"
    pp = em.struct(P, "mcu_pool_params_t", p, ["stride_h", "stride_w", "filter_h", "filter_w",
                                               "pad_h", "pad_w", "act_min", "act_max"])
    idm, odm = em.dims(P, "id", p["input_dims"]), em.dims(P, "od", p["output_dims"])
    return [f"{fn}({pp}, {idm}, {p16(em, op.inputs[0])}, {odm}, {p16(em, op.outputs[0])});"]


# ---------------------------------------------------------------- SOFTMAX
def gen_lut(func, input_min: float, input_max: float) -> np.ndarray:
    """TFLM gen_lut<float, int16_t, int16_t>(func, min, max, -1, 1): 512 interpolation
    bases (each corrected by half the midpoint error) and the end value, in float32
    arithmetic; func is evaluated in double and rounded to float (std::exp(float))."""
    f = np.float32
    step = f((f(input_max) - f(input_min)) / f(LUT_SIZE - 1))
    half = f(step / f(2))
    inv = f(f(65536) / f(f(1) - f(-1)))

    def fn(x):
        return f(func(float(f(x))))

    def rnd(x):
        return f(qm.round_half_away(np.float64(x)))
    lut = np.zeros(LUT_SIZE, np.int16)
    for i in range(LUT_SIZE - 1):
        xi = f(f(input_min) + f(f(i) * step))
        val = fn(xi)
        val_mid = fn(f(xi + half))
        val_next = fn(f(f(input_min) + f(f(i + 1) * step)))
        sample = rnd(f(val * inv))
        interp = rnd(f(f(f(val_next * inv) + rnd(f(val * inv))) / f(2)))
        mid = rnd(f(val_mid * inv))
        bias = rnd(f(f(interp - mid) / f(2)))
        lut[i] = int(min(max(f(sample - bias), -32768.0), 32767.0))
    lut[LUT_SIZE - 1] = int(min(max(rnd(f(fn(input_max) * inv)), -32768.0), 32767.0))
    return lut


@functools.lru_cache(maxsize=None)
def softmax_luts() -> tuple[np.ndarray, np.ndarray]:
    import math
    exp_lut = gen_lut(math.exp, -10.0, 0.0)
    recip_lut = gen_lut(lambda x: 1.0 / (1.0 + x), 0.0, 1.0)
    exp_lut.flags.writeable = False
    recip_lut.flags.writeable = False
    return exp_lut, recip_lut


def lut_lookup(value, lut: np.ndarray):
    """TFLM lut_lookup for int16: base at index 256 + (v >> 7), interpolated by the
    low 7 bits with rounding."""
    v = qm.i64(value)
    idx = 256 + (v >> 7)
    off = v & 0x7F
    base = lut.astype(np.int64)[idx]
    slope = lut.astype(np.int64)[idx + 1] - base
    return base + ((slope * off + 64) >> 7)


def _softmax_quant(g: Graph, op: Op):
    in_s = _zp0(g.t(op.inputs[0]), op.name, op.type)
    out_s, out_zp = qparams(g.t(op.outputs[0]), op.name)
    if out_zp != 0 or abs(out_s - 1.0 / 32768) > 0.001 / 32768:
        raise IRError(f"layer '{op.name}' (SOFTMAX): int16 output must have scale 1/32768 and "
                      f"zero point 0 (has {out_s}, {out_zp})")
    real = float(in_s) * float(np.float32(op.attr("beta"))) / (10.0 / 65535.0)
    return qm.quantize_multiplier(real)


def softmax_int16(x: np.ndarray, input_multiplier: int, input_left_shift: int) -> np.ndarray:
    """reference_ops::SoftmaxInt16 over the last axis."""
    exp_lut, recip_lut = softmax_luts()
    shape = x.shape
    x = qm.i64(x).reshape(-1, shape[-1])
    diff = x - x.max(axis=1, keepdims=True)
    scaled = qm.multiply_by_quantized_multiplier(diff, input_multiplier, input_left_shift)
    sym = np.clip(scaled + 32767, -32768, 32767)
    e = lut_lookup(sym, exp_lut)                              # Q0.15
    total = e.sum(axis=1)                                     # Q16.15
    out = np.empty_like(e)
    for r in range(len(x)):
        s = int(total[r])
        hp1 = 32 - s.bit_length() if s > 0 else 32          # CountLeadingZeros(uint32)
        shifted = ((s << (hp1 - 1)) + (1 << 13)) >> 14
        sym_sum = min(max(shifted - ((1 << 15) + (1 << 16)), -32768), 32767)
        recip = int(lut_lookup(sym_sum, recip_lut))
        rs = 31 - hp1
        out[r] = np.clip((e[r] * recip + (1 << (rs - 1))) >> rs, 0, 32767)
    return out.reshape(shape).astype(np.int16)


def softmax_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    m, s = _softmax_quant(g, op)
    return softmax_int16(v[op.inputs[0]], m, s)


def _softmax_params(g: Graph, op: Op) -> dict:
    m, s = _softmax_quant(g, op)
    depth = int(g.t(op.inputs[0]).shape[-1])
    return dict(int16=True, input_multiplier=int(m), input_left_shift=int(s),
                rows=g.t(op.inputs[0]).size // depth, depth=depth)


def _softmax_emit(em, k: int, op: Op, p: dict) -> list[str]:
    exp_lut, recip_lut = softmax_luts()
    e = em.derived_const("softmax_s16:exp_lut", exp_lut, "int16_t")
    r = em.derived_const("softmax_s16:one_over_one_plus_x_lut", recip_lut, "int16_t")
    return [f"mcu_softmax_s16({p['input_multiplier']}, {p['input_left_shift']}, {e}, {r}, "
            f"{p['rows']}, {p['depth']}, {p16(em, op.inputs[0])}, {p16(em, op.outputs[0])});"]


# ---------------------------------------------------------------- RESHAPE / QUANTIZE / DEQUANTIZE
def _reshape_params(g: Graph, op: Op) -> dict:
    return dict(int16=True, size=g.t(op.inputs[0]).nbytes)     # the kernel copies bytes


_RANGE = {"int8": (-128, 127), "int16": (INT16_MIN, INT16_MAX)}


def quantize_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    if ot.dtype not in _RANGE:
        raise IRError(f"layer '{op.name}' (QUANTIZE): output must be int8 or int16, not "
                      f"{ot.dtype}")
    out_s, out_zp = qparams(ot, op.name)
    lo, hi = _RANGE[ot.dtype]
    x = v[op.inputs[0]]
    if xt.dtype == "float32":
        q = qm.round_half_away(np.asarray(x, np.float32) / np.float32(out_s)) + out_zp
    elif xt.dtype in _RANGE:
        in_s, in_zp = qparams(xt, op.name)
        m, s = qm.quantize_multiplier(in_s / out_s)
        q = qm.multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, m, s) + out_zp
    else:
        raise IRError(f"layer '{op.name}' (QUANTIZE): input type {xt.dtype} is not supported")
    return np.clip(q, lo, hi).astype(ot.dtype)


def dequantize_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    s, zp = qparams(g.t(op.inputs[0]), op.name)
    return (s * (v[op.inputs[0]].astype(np.float64) - zp)).astype(np.float32)


# ---------------------------------------------------------------- attaching
def _dispatch(int8_fn, int16_fn):
    if int16_fn is None:
        return int8_fn
    wrap = functools.wraps(int8_fn) if int8_fn is not None else (lambda f: f)

    @wrap
    def fn(g, op, *a):
        if is_int16(g, op):
            return int16_fn(g, op, *a)
        if int8_fn is None:
            raise IRError(f"layer '{op.name}' ({op.type}): no int8 form")
        return int8_fn(g, op, *a)
    return fn


def _dispatch_params(int8_fn, int16_fn):
    """emit(em, k, op, p) / scratch(p, ...): the int16 kernel params carry int16=True."""
    @functools.wraps(int8_fn)
    def fn(*a):
        p = a[3] if len(a) == 4 and isinstance(a[3], dict) else a[0]
        if isinstance(p, dict) and p.get("int16"):
            return int16_fn(*a)
        return int8_fn(*a)
    return fn


def attach(name: str, reference, kernel_params=None, emit=None) -> None:
    """Give registered op `name` its int16 form (module docstring)."""
    d = REGISTRY[name]
    d.reference = _dispatch(d.reference, reference)
    if kernel_params is not None:
        d.kernel_params = _dispatch(d.kernel_params, kernel_params)
    if emit is not None:
        d.emit = _dispatch_params(d.emit, emit)
    if d.scratch is not None:
        d.scratch = _dispatch_params(d.scratch, lambda *a: 0)
    d.int16 = True
    INT16_OPS.add(name)


attach("CONV_2D", conv_reference, lambda g, op: _conv_params(g, op, False),
       lambda em, k, op, p: _conv_emit(em, k, op, p, False))
attach("DEPTHWISE_CONV_2D", depthwise_reference, lambda g, op: _conv_params(g, op, True),
       lambda em, k, op, p: _conv_emit(em, k, op, p, True))
attach("FULLY_CONNECTED", fc_reference, _fc_params, _fc_emit)
attach("ADD", add_reference, _add_params, _add_emit)
attach("AVERAGE_POOL_2D", pool_reference, _pool_params, _pool_emit)
attach("MAX_POOL_2D", pool_reference, _pool_params, _pool_emit)
attach("SOFTMAX", softmax_reference, _softmax_params, _softmax_emit)
attach("RESHAPE", REGISTRY["RESHAPE"].reference, _reshape_params)
attach("QUANTIZE", quantize_reference)
attach("DEQUANTIZE", dequantize_reference)

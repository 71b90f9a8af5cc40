"""Numpy reference interpreter for int8 graphs, bit-exact with TFLite Micro's
reference kernels (the host oracle; see quant_math.py for the arithmetic).

    run(graph, feeds, keep_intermediates=False) -> {name: ndarray}

`feeds` is {input name: array} or one array for a single-input graph.  Returns the
graph outputs, or every activation tensor with keep_intermediates=True.

Fidelity notes (each mirrors TFLM, checked by tests/test_reference_bitexact.py):
- Scales are used as the float32 values a .tflite file carries (quant_math.f32),
  so an IR graph and its written .tflite give the same bytes.
- Multipliers: CONV_2D / DEPTHWISE_CONV_2D / per-channel FULLY_CONNECTED use
  double(in_s) * double(w_s[c]) / double(out_s); per-tensor FULLY_CONNECTED uses
  double(float32(in_s * w_s)) / double(out_s) (GetQuantizedConvolutionMultipler).
- Padding as ComputePaddingHeightWidth; padded taps are skipped (= zero point).
- AVERAGE_POOL_2D divides by the count of valid taps, rounding half away from zero.
- ADD: left_shift 20, three SmallerThanOneExp multipliers. MUL: one multiplier.
- SOFTMAX int8: gemmlowp fixed-point exp (Q5.26), Q12.19 accumulation, reciprocal.
- MEAN: QuantizedMeanOrSum with the 1/count folded into the multiplier.
- RELU requantizes (in_s/out_s); RELU6 clamps to [zp, q(6)] with the input's params.
- CONCATENATION: TFLM copies int8 bytes without rescaling; inputs whose scale or
  zero point differ from the output's are rejected here (IRError) rather than
  silently reproducing that.  Insert QUANTIZE (int8->int8 requantize) instead.
Float tensors are accepted only as QUANTIZE inputs and DEQUANTIZE outputs (float
graphs run in toolchain/ir/float_eval.py).
"""
from __future__ import annotations

import numpy as np

from . import quant_math as qm
from .graph import Graph, IRError, Op, Tensor
from .validate import validate

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "ADD", "MUL", "RESHAPE", "SOFTMAX", "CONCATENATION", "PAD",
                 "MEAN", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")

_INT8_MIN, _INT8_MAX = -128, 127


# --------------------------------------------------------------------------- helpers
def _qp(t: Tensor, layer: str) -> tuple[float, int]:
    """Per-tensor (float32 scale as float, zero point) of an activation tensor."""
    if t.quant is None:
        raise IRError(f"layer '{layer}': tensor '{t.name}' has no quantization parameters")
    if t.quant.scale.size != 1:
        raise IRError(f"layer '{layer}': activation '{t.name}' must be per-tensor quantized")
    return float(qm.f32(t.quant.scale[0])), int(t.quant.zero_point[0])


def _wscales(t: Tensor, n: int) -> np.ndarray:
    s = qm.f32(t.quant.scale)
    return np.broadcast_to(s, (n,)) if s.size == 1 else s


def compute_padding(stride: int, dilation: int, in_size: int, filter_size: int,
                    padding: str) -> tuple[int, int]:
    """TFLM ComputePaddingHeightWidth for one dimension -> (out_size, pad_before)."""
    eff = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    elif padding == "VALID":
        out = (in_size - eff + stride) // stride
    else:
        raise IRError(f"unsupported padding {padding}")
    pad = max(((out - 1) * stride + eff - in_size) // 2, 0)
    return out, pad


def _pad_windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
                 oh: int, ow: int, ph: int, pw: int, fill) -> tuple[np.ndarray, list]:
    """Pad x [N,H,W,C] by (ph, pw) before and enough after; return the padded array
    and the list of strided tap views [N,OH,OW,C] in (kh, kw) order."""
    n, h, w, c = x.shape
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.full((n, max(need_h, ph + h), max(need_w, pw + w), c), fill, dtype=x.dtype)
    xp[:, ph:ph + h, pw:pw + w, :] = x
    taps = []
    for i in range(kh):
        for j in range(kw):
            taps.append(xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                           j * dw:j * dw + (ow - 1) * sw + 1:sw, :])
    return xp, taps


def _requant(acc: np.ndarray, mult, shift, out_zp: int, lo: int, hi: int) -> np.ndarray:
    out = qm.multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(out, lo, hi).astype(np.int8)


# --------------------------------------------------------------------------- kernels
def _conv2d(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64) - in_zp
    w = wt.data.astype(np.int64)
    o, kh, kw, ci = w.shape
    n, h, wd, c = x.shape
    if c != ci:
        raise IRError(f"layer '{op.name}' (CONV_2D): input has {c} channels, weights {ci} "
                      "(grouped convolution is not supported)")
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    dh, dw = op.attr("dilation_h"), op.attr("dilation_w")
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, wd, kw, op.attr("padding"))
    _, taps = _pad_windows(x, kh, kw, sh, sw, dh, dw, oh, ow, ph, pw, 0)
    cols = np.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * c)
    # float64 matmul is exact here: |acc| <= K * 255 * 128 << 2^53
    acc = (cols.astype(np.float64) @ w.reshape(o, -1).T.astype(np.float64)).astype(np.int64)
    if len(op.inputs) > 2 and op.inputs[2]:
        acc = acc + g.t(op.inputs[2]).data.astype(np.int64)
    ws = _wscales(wt, o)
    mult, shift = qm.quantize_multiplier(in_s * ws / out_s)
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), out_s, out_zp)
    return _requant(acc, mult, shift, out_zp, lo, hi).reshape(n, oh, ow, o)


def _depthwise(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64) - in_zp
    w = wt.data.astype(np.int64)
    _, kh, kw, oc = w.shape
    n, h, wd, c = x.shape
    if oc % c:
        raise IRError(f"layer '{op.name}' (DEPTHWISE_CONV_2D): {oc} output channels is not a "
                      f"multiple of {c} input channels")
    m = oc // c
    if m > 1:
        x = np.repeat(x, m, axis=-1)          # output channel k reads input channel k // m
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    dh, dw = op.attr("dilation_h"), op.attr("dilation_w")
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, wd, kw, op.attr("padding"))
    _, taps = _pad_windows(x, kh, kw, sh, sw, dh, dw, oh, ow, ph, pw, 0)
    acc = np.zeros((n, oh, ow, oc), dtype=np.int64)
    k = 0
    for i in range(kh):
        for j in range(kw):
            acc += taps[k] * w[0, i, j, :]
            k += 1
    if len(op.inputs) > 2 and op.inputs[2]:
        acc = acc + g.t(op.inputs[2]).data.astype(np.int64)
    ws = _wscales(wt, oc)
    mult, shift = qm.quantize_multiplier(in_s * ws / out_s)
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), out_s, out_zp)
    return _requant(acc, mult, shift, out_zp, lo, hi)


def _fully_connected(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    ot = g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    w = wt.data.astype(np.int64)
    o, k = w.shape
    w_zp = int(wt.quant.zero_point[0])
    x = v[op.inputs[0]].astype(np.int64).reshape(-1, k) - in_zp
    acc = (x.astype(np.float64) @ (w - w_zp).T.astype(np.float64)).astype(np.int64)
    if len(op.inputs) > 2 and op.inputs[2]:
        acc = acc + g.t(op.inputs[2]).data.astype(np.int64)
    if wt.quant.scale.size > 1:
        mult, shift = qm.quantize_multiplier(in_s * _wscales(wt, o) / out_s)
    else:
        prod32 = float(np.float32(in_s) * np.float32(qm.f32(wt.quant.scale[0])))
        mult, shift = qm.quantize_multiplier(prod32 / out_s)
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), out_s, out_zp)
    return _requant(acc, mult, shift, out_zp, lo, hi).reshape(ot.shape)


def _pool(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = _qp(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64)
    n, h, w, c = x.shape
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    sh, sw = op.attr("stride_h"), op.attr("stride_w")
    oh, ph = compute_padding(sh, 1, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, 1, w, kw, op.attr("padding"))
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), out_s, out_zp)
    if op.type == "MAX_POOL_2D":
        _, taps = _pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, np.iinfo(np.int64).min)
        res = np.maximum.reduce(taps)
        return np.clip(res, lo, hi).astype(np.int8)
    _, taps = _pad_windows(x, kh, kw, sh, sw, 1, 1, oh, ow, ph, pw, 0)
    _, mtaps = _pad_windows(np.ones((1, h, w, 1), np.int64), kh, kw, sh, sw, 1, 1, oh, ow,
                            ph, pw, 0)
    acc = np.add.reduce(taps)
    cnt = np.add.reduce(mtaps)
    half = cnt // 2
    res = np.where(acc > 0, qm.trunc_div(acc + half, cnt), qm.trunc_div(acc - half, cnt))
    return np.clip(res, lo, hi).astype(np.int8)


def _add(op: Op, g: Graph, v: dict) -> np.ndarray:
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    s1, z1 = _qp(t1, op.name)
    s2, z2 = _qp(t2, op.name)
    so, zo = _qp(ot, op.name)
    left_shift, (m1, sh1), (m2, sh2), (mo, sho) = qm.add_multipliers(s1, s2, so)
    a = (v[op.inputs[0]].astype(np.int64) - z1) * (1 << left_shift)
    b = (v[op.inputs[1]].astype(np.int64) - z2) * (1 << left_shift)
    a = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1, sh1)
    b = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2, sh2)
    raw = qm.multiply_by_quantized_multiplier_smaller_than_one_exp(qm.wrap_int32(a + b), mo, sho)
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), so, zo)
    return np.broadcast_to(np.clip(raw + zo, lo, hi), ot.shape).astype(np.int8)


def _mul(op: Op, g: Graph, v: dict) -> np.ndarray:
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    s1, z1 = _qp(t1, op.name)
    s2, z2 = _qp(t2, op.name)
    so, zo = _qp(ot, op.name)
    m, sh = qm.quantize_multiplier(s1 * s2 / so)
    prod = (v[op.inputs[0]].astype(np.int64) - z1) * (v[op.inputs[1]].astype(np.int64) - z2)
    lo, hi = qm.activation_range_quantized(op.attr("fused_activation"), so, zo)
    out = np.clip(qm.multiply_by_quantized_multiplier(qm.wrap_int32(prod), m, sh) + zo, lo, hi)
    return np.broadcast_to(out, ot.shape).astype(np.int8)


def _softmax(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, _ = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    if out_zp != -128 or np.float32(out_s) != np.float32(1.0 / 256):
        raise IRError(f"layer '{op.name}' (SOFTMAX): int8 output must have scale 1/256 and "
                      f"zero point -128 (has {out_s}, {out_zp})")
    m, s, diff_min = qm.softmax_params(op.attr("beta"), in_s)
    return qm.softmax_int8(v[op.inputs[0]], m, s, diff_min)


def _mean(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64)
    axes = np.atleast_1d(g.t(op.inputs[1]).data).astype(np.int64)
    axes = tuple(sorted({int(a) % x.ndim for a in axes}))
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    mult, shift = qm.quantize_multiplier(in_s / out_s)
    s = count.bit_length() - 1                 # 63 - clz64(count)
    s = min(s, 32, 31 + shift)
    mult = (mult << s) // count
    shift = shift - s
    total = x.sum(axis=axes) - in_zp * count
    out = np.clip(qm.multiply_by_quantized_multiplier(qm.wrap_int32(total), mult, shift)
                  + out_zp, _INT8_MIN, _INT8_MAX)
    return out.reshape(ot.shape).astype(np.int8)


def _concat(op: Op, g: Graph, v: dict) -> np.ndarray:
    ot = g.t(op.outputs[0])
    oq = _qp(ot, op.name)
    for n in op.inputs:
        if _qp(g.t(n), op.name) != oq:
            raise IRError(f"layer '{op.name}' (CONCATENATION): input '{n}' has scale/zero point "
                          f"{_qp(g.t(n), op.name)} but the output has {oq}; TFLite Micro copies "
                          "int8 bytes without rescaling, so requantize the input first")
    if op.attr("fused_activation") not in (None, "NONE"):
        raise IRError(f"layer '{op.name}' (CONCATENATION): fused activation is not supported "
                      "by TFLite Micro")
    return np.concatenate([v[n] for n in op.inputs], axis=int(op.attr("axis")))


def _pad(op: Op, g: Graph, v: dict) -> np.ndarray:
    ot = g.t(op.outputs[0])
    _, out_zp = _qp(ot, op.name)
    pads = g.t(op.inputs[1]).data.astype(np.int64).reshape(-1, 2)
    fill = out_zp
    if len(op.inputs) > 2 and op.inputs[2]:
        fill = int(np.asarray(g.t(op.inputs[2]).data).reshape(-1)[0])
    return np.pad(v[op.inputs[0]], [tuple(p) for p in pads], constant_values=fill).astype(np.int8)


def _relu(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    x = v[op.inputs[0]].astype(np.int64)
    if op.type == "RELU6":
        six = int(np.clip(in_zp + qm.round_half_away(np.float32(6.0) / np.float32(in_s)),
                          _INT8_MIN, _INT8_MAX))
        return np.clip(x, in_zp, six).astype(np.int8)
    m, s = qm.quantize_multiplier(in_s / out_s)
    lo = max(_INT8_MIN, out_zp + int(qm.round_half_away(np.float32(0.0) / np.float32(out_s))))
    out = out_zp + qm.multiply_by_quantized_multiplier(x - in_zp, m, s)
    return np.clip(out, lo, _INT8_MAX).astype(np.int8)


def _quantize(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = _qp(ot, op.name)
    if ot.dtype != "int8":
        raise IRError(f"layer '{op.name}' (QUANTIZE): output must be int8, not {ot.dtype}")
    x = v[op.inputs[0]]
    if xt.dtype == "float32":
        q = qm.round_half_away(np.asarray(x, np.float32) / np.float32(out_s)) + out_zp
        return np.clip(q, _INT8_MIN, _INT8_MAX).astype(np.int8)
    if xt.dtype == "int8":
        in_s, in_zp = _qp(xt, op.name)
        m, s = qm.quantize_multiplier(in_s / out_s)
        q = qm.multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, m, s) + out_zp
        return np.clip(q, _INT8_MIN, _INT8_MAX).astype(np.int8)
    raise IRError(f"layer '{op.name}' (QUANTIZE): input type {xt.dtype} is not supported")


def _dequantize(op: Op, g: Graph, v: dict) -> np.ndarray:
    xt = g.t(op.inputs[0])
    s, zp = _qp(xt, op.name)
    return (s * (v[op.inputs[0]].astype(np.float64) - zp)).astype(np.float32)


_KERNELS = {
    "CONV_2D": _conv2d, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "ADD": _add, "MUL": _mul,
    "RESHAPE": lambda op, g, v: v[op.inputs[0]].reshape(g.t(op.outputs[0]).shape),
    "SOFTMAX": _softmax, "CONCATENATION": _concat, "PAD": _pad, "MEAN": _mean,
    "RELU": _relu, "RELU6": _relu, "QUANTIZE": _quantize, "DEQUANTIZE": _dequantize,
}
assert set(_KERNELS) == set(SUPPORTED_OPS)

_FLOAT_OK = {("QUANTIZE", "in"), ("DEQUANTIZE", "out")}


def _check_types(g: Graph) -> None:
    for op in g.ops:
        for n in op.inputs[:1]:
            t = g.t(n)
            if t.dtype != "int8" and (op.type, "in") not in _FLOAT_OK:
                raise IRError(f"layer '{op.name}' ({op.type}): input '{n}' is {t.dtype}; the "
                              "reference interpreter runs int8 graphs (float graphs: float_eval)")
        for n in op.outputs:
            t = g.t(n)
            if t.dtype != "int8" and (op.type, "out") not in _FLOAT_OK:
                raise IRError(f"layer '{op.name}' ({op.type}): output '{n}' is {t.dtype}; the "
                              "reference interpreter runs int8 graphs (float graphs: float_eval)")


def run(graph: Graph, feeds, keep_intermediates: bool = False) -> dict[str, np.ndarray]:
    """Execute an int8 graph bit-exactly as TFLite Micro's reference kernels do."""
    validate(graph, SUPPORTED_OPS, target="the reference interpreter")
    _check_types(graph)
    if isinstance(feeds, np.ndarray):
        if len(graph.inputs) != 1:
            raise IRError(f"graph has {len(graph.inputs)} inputs; pass a dict of arrays")
        feeds = {graph.inputs[0]: feeds}
    values: dict[str, np.ndarray] = {}
    for n in graph.inputs:
        if n not in feeds:
            raise IRError(f"no value fed for graph input '{n}'")
        t = graph.t(n)
        a = np.asarray(feeds[n])
        if a.size != t.size:
            raise IRError(f"input '{n}': got shape {a.shape}, expected {t.shape}")
        if a.dtype != np.dtype(t.dtype):
            if t.dtype == "int8" and (a.min(initial=0) < -128 or a.max(initial=0) > 127):
                raise IRError(f"input '{n}': values out of int8 range")
            a = a.astype(t.dtype)
        values[n] = a.reshape(t.shape)
    for st in graph.state:
        t = graph.t(st)
        values.setdefault(st, t.data if t.data is not None else np.zeros(t.shape, t.dtype))
    for c in graph.constants():
        values.setdefault(c.name, c.data)
    for op in graph.ops:
        out = _KERNELS[op.type](op, graph, values)
        ot = graph.t(op.outputs[0])
        values[op.outputs[0]] = np.ascontiguousarray(out).reshape(ot.shape).astype(ot.dtype)
    if keep_intermediates:
        const = {c.name for c in graph.constants()}
        return {k: a for k, a in values.items() if k not in const}
    return {n: values[n] for n in graph.outputs}

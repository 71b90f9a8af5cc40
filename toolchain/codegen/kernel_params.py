"""IR op (int8 graph) -> the exact parameters the C runtime kernels take.

The C kernels live in firmware_templates/runtime (see its README.md for the
signatures). Every value here mirrors what TFLite Micro's Prepare functions
compute, so that kernel outputs are byte-identical with the tflite-micro
interpreter:

    p = kernel_params(graph, op)     # dict, keys per op type (see each function)

Common keys: `input_offset` = -input zero point, `output_offset` = +output zero
point, `multiplier`/`shift` (np.int32 arrays for per-channel ops, ints otherwise;
TFLM's QuantizeMultiplier: Q31 mantissa, shift > 0 = left), `act_min`/`act_max`
(fused activation clamp), `pad_h`/`pad_w` (top/left padding), dims as (n, h, w, c).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op
from toolchain.ir.reference import compute_padding  # one definition, shared with the oracle

__all__ = ["kernel_params", "compute_padding", "conv2d_params", "depthwise_conv2d_params",
           "fully_connected_params", "pool_params", "add_params", "mul_params",
           "softmax_params", "mean_params", "concat_params", "pad_params", "relu_params",
           "relu6_params", "dims4", "broadcast_strides"]


def dims4(shape) -> tuple[int, int, int, int]:
    """Shape -> (n, h, w, c); shorter shapes are right-aligned (c last)."""
    s = [int(d) for d in shape]
    if len(s) > 4:
        raise IRError(f"shape {tuple(s)} has more than 4 dimensions")
    s = [1] * (4 - len(s)) + s
    return tuple(s)


def _qp(t, layer):
    if t.quant is None:
        raise IRError(f"layer '{layer}': tensor '{t.name}' has no quantization")
    return float(qm.f32(t.quant.scale[0])), int(t.quant.zero_point[0])


def _act(op, scale, zp):
    return qm.activation_range_quantized(op.attr("fused_activation") or "NONE", scale, zp)


def _wscales(t, n):
    s = qm.f32(t.quant.scale)
    return np.broadcast_to(s, (n,)).astype(np.float64)


def _bias(g, op):
    if len(op.inputs) > 2 and op.inputs[2]:
        return np.ascontiguousarray(g.t(op.inputs[2]).data.astype(np.int32).reshape(-1))
    return None


def _i32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).astype(np.int32))


def conv2d_params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    o, kh, kw, ci = wt.shape
    n, h, w, c = dims4(xt.shape)
    if c != ci:
        raise IRError(f"layer '{op.name}' (CONV_2D): grouped convolution is not supported")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(in_s * _wscales(wt, o) / out_s)
    lo, hi = _act(op, out_s, out_zp)
    return dict(input_offset=-in_zp, output_offset=out_zp, stride_h=sh, stride_w=sw,
                dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw, act_min=lo, act_max=hi,
                multiplier=_i32(mult), shift=_i32(shift), bias=_bias(g, op),
                filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                input_dims=(n, h, w, c), filter_dims=(o, kh, kw, ci),
                output_dims=(n, oh, ow, o))


def depthwise_conv2d_params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    _, kh, kw, oc = wt.shape
    n, h, w, c = dims4(xt.shape)
    if oc % c:
        raise IRError(f"layer '{op.name}' (DEPTHWISE_CONV_2D): {oc} output channels is not a "
                      f"multiple of {c} input channels")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(in_s * _wscales(wt, oc) / out_s)
    lo, hi = _act(op, out_s, out_zp)
    return dict(input_offset=-in_zp, output_offset=out_zp, stride_h=sh, stride_w=sw,
                dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw, depth_multiplier=oc // c,
                act_min=lo, act_max=hi, multiplier=_i32(mult), shift=_i32(shift),
                bias=_bias(g, op), filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                input_dims=(n, h, w, c), filter_dims=(1, kh, kw, oc),
                output_dims=(n, oh, ow, oc))


def fully_connected_params(g: Graph, op: Op) -> dict:
    xt, wt, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    o, k = wt.shape
    if xt.size % k:
        raise IRError(f"layer '{op.name}' (FULLY_CONNECTED): input size {xt.size} is not a "
                      f"multiple of {k}")
    per_channel = wt.quant.scale.size > 1
    if per_channel:
        mult, shift = qm.quantize_multiplier(in_s * _wscales(wt, o) / out_s)
    else:
        # TFLM GetQuantizedConvolutionMultipler: float32 product of the scales first
        prod32 = float(np.float32(in_s) * np.float32(qm.f32(wt.quant.scale[0])))
        mult, shift = qm.quantize_multiplier(prod32 / out_s)
    lo, hi = _act(op, out_s, out_zp)
    return dict(input_offset=-in_zp, filter_offset=-int(wt.quant.zero_point[0]),
                output_offset=out_zp, act_min=lo, act_max=hi, per_channel=int(per_channel),
                multiplier=_i32(np.atleast_1d(mult)), shift=_i32(np.atleast_1d(shift)),
                bias=_bias(g, op), filter=np.ascontiguousarray(wt.data.astype(np.int8)),
                batches=xt.size // k, in_features=k, out_features=o)


def pool_params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    out_s, out_zp = _qp(ot, op.name)
    n, h, w, c = dims4(xt.shape)
    kh, kw = int(op.attr("filter_h")), int(op.attr("filter_w"))
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    oh, ph = compute_padding(sh, 1, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, 1, w, kw, op.attr("padding"))
    lo, hi = _act(op, out_s, out_zp)
    return dict(stride_h=sh, stride_w=sw, filter_h=kh, filter_w=kw, pad_h=ph, pad_w=pw,
                act_min=lo, act_max=hi, input_dims=(n, h, w, c), output_dims=(n, oh, ow, c))


def broadcast_strides(shape, out_shape) -> list[int]:
    """Element strides of a (right-aligned, 4-D) input inside an NHWC output; 0 on
    broadcast dimensions."""
    d = dims4(shape)
    od = dims4(out_shape)
    strides, acc = [0] * 4, 1
    for i in (3, 2, 1, 0):
        if d[i] != od[i] and d[i] != 1:
            raise IRError(f"shape {tuple(shape)} does not broadcast to {tuple(out_shape)}")
        strides[i] = 0 if (d[i] == 1 and od[i] != 1) else acc
        acc *= d[i]
    return strides


def _binary_layout(g, op):
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    same = tuple(t1.shape) == tuple(t2.shape) == tuple(ot.shape)
    return dict(broadcast=not same, size=ot.size, output_dims=dims4(ot.shape),
                strides1=broadcast_strides(t1.shape, ot.shape),
                strides2=broadcast_strides(t2.shape, ot.shape))


def add_params(g: Graph, op: Op) -> dict:
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    s1, z1 = _qp(t1, op.name)
    s2, z2 = _qp(t2, op.name)
    so, zo = _qp(ot, op.name)
    left_shift, (m1, sh1), (m2, sh2), (mo, sho) = qm.add_multipliers(s1, s2, so)
    lo, hi = _act(op, so, zo)
    return dict(input1_offset=-z1, input2_offset=-z2, left_shift=left_shift,
                input1_multiplier=int(m1), input1_shift=int(sh1), input2_multiplier=int(m2),
                input2_shift=int(sh2), output_multiplier=int(mo), output_shift=int(sho),
                output_offset=zo, act_min=lo, act_max=hi, **_binary_layout(g, op))


def mul_params(g: Graph, op: Op) -> dict:
    t1, t2, ot = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    s1, z1 = _qp(t1, op.name)
    s2, z2 = _qp(t2, op.name)
    so, zo = _qp(ot, op.name)
    m, sh = qm.quantize_multiplier(s1 * s2 / so)
    lo, hi = _act(op, so, zo)
    return dict(input1_offset=-z1, input2_offset=-z2, output_multiplier=int(m),
                output_shift=int(sh), output_offset=zo, act_min=lo, act_max=hi,
                **_binary_layout(g, op))


def softmax_params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, _ = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    if out_zp != -128 or np.float32(out_s) != np.float32(1.0 / 256):
        raise IRError(f"layer '{op.name}' (SOFTMAX): int8 output must have scale 1/256 and "
                      f"zero point -128")
    m, s, diff_min = qm.softmax_params(op.attr("beta"), in_s)
    depth = int(xt.shape[-1])
    return dict(input_multiplier=int(m), input_left_shift=int(s), diff_min=int(diff_min),
                rows=xt.size // depth, depth=depth)


def mean_params(g: Graph, op: Op) -> dict:
    """TFLM int8 MEAN: sum - zp*count, then MultiplyByQuantizedMultiplier with the
    multiplier of input_scale/output_scale divided by count (shift by
    min(floor(log2 count), 32, 31 + shift) first, as TFLM does)."""
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    shape = [int(d) for d in xt.shape]
    axes = sorted({int(a) % len(shape) for a in np.atleast_1d(g.t(op.inputs[1]).data)})
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise IRError(f"layer '{op.name}' (MEAN): axes {axes} are not contiguous")
    outer = int(np.prod(shape[:axes[0]], dtype=np.int64))
    reduce = int(np.prod(shape[axes[0]:axes[-1] + 1], dtype=np.int64))
    inner = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
    mult, shift = qm.quantize_multiplier(in_s / out_s)
    s = min(reduce.bit_length() - 1, 32, 31 + shift)
    mult = (mult << s) // reduce
    shift = shift - s
    return dict(outer=outer, reduce=reduce, inner=inner, input_zero_point=in_zp,
                multiplier=int(mult), shift=int(shift), output_zero_point=out_zp)


def concat_params(g: Graph, op: Op) -> dict:
    ot = g.t(op.outputs[0])
    rank = len(ot.shape)
    axis = int(op.attr("axis")) % rank
    oq = _qp(ot, op.name)
    for n in op.inputs:
        if _qp(g.t(n), op.name) != oq:
            raise IRError(f"layer '{op.name}' (CONCATENATION): input '{n}' is quantized "
                          "differently from the output; TFLite Micro copies bytes, requantize "
                          "first")
    outer = int(np.prod(ot.shape[:axis], dtype=np.int64))
    inner = [int(np.prod(g.t(n).shape[axis:], dtype=np.int64)) for n in op.inputs]
    return dict(outer=outer, inner_sizes=inner, num_inputs=len(op.inputs))


def pad_params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    _, out_zp = _qp(ot, op.name)
    pads = g.t(op.inputs[1]).data.astype(np.int64).reshape(-1, 2)
    pads = np.concatenate([np.zeros((4 - len(pads), 2), np.int64), pads])
    fill = out_zp
    if len(op.inputs) > 2 and op.inputs[2]:
        fill = int(np.asarray(g.t(op.inputs[2]).data).reshape(-1)[0])
    return dict(input_dims=dims4(xt.shape), pads=_i32(pads.reshape(-1)), pad_value=fill)


def relu_params(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = _qp(xt, op.name)
    out_s, out_zp = _qp(ot, op.name)
    m, s = qm.quantize_multiplier(in_s / out_s)
    lo = max(-128, out_zp + int(qm.round_half_away(np.float32(0.0) / np.float32(out_s))))
    return dict(input_zero_point=in_zp, output_zero_point=out_zp, multiplier=int(m),
                shift=int(s), act_min=lo, act_max=127, size=xt.size)


def relu6_params(g: Graph, op: Op) -> dict:
    """TFLM Relu6 int8 clamps in the input's quantization (no requantization)."""
    xt = g.t(op.inputs[0])
    in_s, in_zp = _qp(xt, op.name)
    six = int(np.clip(in_zp + qm.round_half_away(np.float32(6.0) / np.float32(in_s)), -128, 127))
    return dict(lo=in_zp, hi=six, size=xt.size)


_PARAMS = {
    "CONV_2D": conv2d_params, "DEPTHWISE_CONV_2D": depthwise_conv2d_params,
    "FULLY_CONNECTED": fully_connected_params, "AVERAGE_POOL_2D": pool_params,
    "MAX_POOL_2D": pool_params, "ADD": add_params, "MUL": mul_params,
    "SOFTMAX": softmax_params, "MEAN": mean_params, "CONCATENATION": concat_params,
    "PAD": pad_params, "RELU": relu_params, "RELU6": relu6_params,
    "RESHAPE": lambda g, op: dict(size=g.t(op.inputs[0]).size),
}


def kernel_params(g: Graph, op: Op) -> dict:
    try:
        fn = _PARAMS[op.type]
    except KeyError:
        raise IRError(f"layer '{op.name}': no runtime kernel for op {op.type}") from None
    return fn(g, op)

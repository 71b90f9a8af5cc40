"""Spiking-network synapses: SYN_CONV_2D, SUM_POOL_2D, SCALE, and the spiking forms of
FULLY_CONNECTED, AVERAGE_POOL_2D, RESHAPE and ADD (attached to their own OpDefs in
fully_connected.py, pooling.py, shape.py, elementwise.py). Semantics: docs/snn.md.

- SYN_CONV_2D: x NHWC, W OHWI (I = C_in/groups), bias; zero padding pad_h/pad_w at the
  top/left and pad_h_end/pad_w_end (None: the same) at the bottom/right; stride,
  dilation, groups.
- SUM_POOL_2D: window sums (pad_h/pad_w zeros at the top/left); divisor 1 = sum,
  kh*kw = an average counting padding (float; fixed point keeps integer sums and folds
  1/divisor into the next synapse's weights).
- SCALE: x * s elementwise with a constant s (float only).

Float steps compute in float32 (snnTorch's order, toolchain/snn/float_sim.py). Fixed
steps: int8 activations, int8 weights per output channel, int32 accumulators (exact in
int64 here), bit-exact with firmware_templates/runtime/snn.c: event-driven synapses add
only the weight columns of the inputs that are non-zero (mcu_snn_fc_events_s8,
mcu_snn_conv_events_s8); the synapse on a constant analog input runs once per sample
(mcu_snn_fc_dense_s8).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph, Op

from .base import OpDef, register, same_as_input

F32 = np.float32

SYNAPSE_ATTRS = {
    "SYN_CONV_2D": dict(stride_h=1, stride_w=1, pad_h=0, pad_w=0, dilation_h=1, dilation_w=1,
                        groups=1, pad_h_end=None, pad_w_end=None),
    "SUM_POOL_2D": dict(filter_h=1, filter_w=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                        divisor=1),
    "SCALE": dict(),
}
FIXED_SYNAPSE_ATTRS = dict(in_scale=None)     # set by toolchain.snn.fixed_point.quantize


def patches(x: np.ndarray, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow) -> np.ndarray:
    """x [N, H, W, C] -> [N, oh, ow, kh, kw, C] with zero padding (top/left ph/pw; the
    bottom/right as far as the output needs)."""
    n, h, w, c = x.shape
    hp = max(h + ph, (oh - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + pw, (ow - 1) * sw + dw * (kw - 1) + 1)
    xp = np.zeros((n, hp, wp, c), x.dtype)
    xp[:, ph:ph + h, pw:pw + w] = x
    out = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j] = xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                                    j * dw:j * dw + (ow - 1) * sw + 1:sw]
    return out


# --------------------------------------------------------------------------- shapes
def _conv_shape(g: Graph, op: Op):
    n, h, w, _ = g.t(op.inputs[0]).shape
    o, kh, kw, _ = g.t(op.inputs[1]).shape
    a = op.attr
    ph, pw = int(a("pad_h")), int(a("pad_w"))
    ph2 = ph if a("pad_h_end") is None else int(a("pad_h_end"))
    pw2 = pw if a("pad_w_end") is None else int(a("pad_w_end"))
    oh = (h + ph + ph2 - a("dilation_h") * (kh - 1) - 1) // a("stride_h") + 1
    ow = (w + pw + pw2 - a("dilation_w") * (kw - 1) - 1) // a("stride_w") + 1
    return (n, oh, ow, o)


def _pool_shape(g: Graph, op: Op):
    n, h, w, c = g.t(op.inputs[0]).shape
    a = op.attr
    return (n, (h + 2 * a("pad_h") - a("filter_h")) // a("stride_h") + 1,
            (w + 2 * a("pad_w") - a("filter_w")) // a("stride_w") + 1, c)


# --------------------------------------------------------------------------- float steps
def fully_connected(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x.reshape(x.shape[0], -1).astype(F32) @ w.astype(F32).T
    return y + b.astype(F32) if b is not None else y


def syn_conv_2d(op: Op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                out_shape: tuple) -> np.ndarray:
    """Grouped, dilated, zero-padded convolution; x NHWC, w OHWI (I = C_in/groups)."""
    g = int(op.attr("groups"))
    o, kh, kw, ipg = w.shape
    _, oh, ow, _ = out_shape
    p = patches(x.astype(F32), kh, kw, op.attr("stride_h"), op.attr("stride_w"),
                op.attr("dilation_h"), op.attr("dilation_w"), op.attr("pad_h"),
                op.attr("pad_w"), oh, ow)
    opg = o // g
    ys = []
    for gi in range(g):
        pg = p[..., gi * ipg:(gi + 1) * ipg].reshape(*p.shape[:3], -1)
        wg = w[gi * opg:(gi + 1) * opg].reshape(opg, -1).astype(F32)
        ys.append(pg @ wg.T)
    y = np.concatenate(ys, axis=-1)
    return y + b.astype(F32) if b is not None else y


def sum_pool_2d(op: Op, x: np.ndarray, out_shape: tuple) -> np.ndarray:
    kh, kw = op.attr("filter_h"), op.attr("filter_w")
    _, oh, ow, _ = out_shape
    p = patches(x.astype(F32), kh, kw, op.attr("stride_h"), op.attr("stride_w"), 1, 1,
                op.attr("pad_h") or 0, op.attr("pad_w") or 0, oh, ow)
    s = p.sum(axis=(3, 4), dtype=F32)
    d = op.attr("divisor") if op.type == "SUM_POOL_2D" else kh * kw
    return s / F32(d) if d != 1 else s


def _bias_of(ins):
    return ins[2] if len(ins) > 2 else None


def fc_step_float(op, ins, out_shape):
    return fully_connected(ins[0], ins[1], _bias_of(ins)), []


def conv_step_float(op, ins, out_shape):
    return syn_conv_2d(op, ins[0], ins[1], _bias_of(ins), out_shape), []


def pool_step_float(op, ins, out_shape):
    return sum_pool_2d(op, ins[0], out_shape), []


def reshape_step_float(op, ins, out_shape):
    return ins[0].reshape(out_shape), []


def scale_step_float(op, ins, out_shape):
    return (ins[0] * ins[1].astype(F32)).astype(F32), []


def add_step_float(op, ins, out_shape):
    return (ins[0] + ins[1]).astype(F32), []


# --------------------------------------------------------------------------- fixed steps
def fc_acc(x, w, b):
    """x [N, in] int, w [out, in] int8, b [out] int32 or None -> acc [N, out] int64."""
    acc = x.reshape(x.shape[0], -1).astype(np.int64) @ w.astype(np.int64).T
    return acc + b.astype(np.int64) if b is not None else acc


def conv_acc(p: dict, x, w, b, out_hw):
    """Grouped conv accumulation: x [N, H, W, C] int, w OHWI int8 -> [N, oh, ow, O]."""
    g = p["groups"]
    o, kh, kw, ipg = w.shape
    pt = patches(np.asarray(x, np.int64), kh, kw, p["stride_h"], p["stride_w"],
                 p["dilation_h"], p["dilation_w"], p["pad_h"], p["pad_w"], *out_hw)
    opg = o // g
    ys = [pt[..., gi * ipg:(gi + 1) * ipg].reshape(*pt.shape[:3], -1)
          @ w[gi * opg:(gi + 1) * opg].reshape(opg, -1).astype(np.int64).T for gi in range(g)]
    y = np.concatenate(ys, axis=-1)
    return y + b.astype(np.int64) if b is not None else y


def sum_pool(p: dict, x, out_hw):
    pt = patches(np.asarray(x, np.int64), p["filter_h"], p["filter_w"], p["stride_h"],
                 p["stride_w"], 1, 1, p["pad_h"], p["pad_w"], *out_hw)
    return pt.sum(axis=(3, 4))


def fc_step_fixed(kern, p, ins, out_shape):
    return kern.fc_acc(ins[0], ins[1], _bias_of(ins)), []


def conv_step_fixed(kern, p, ins, out_shape):
    return kern.conv_acc(p, ins[0], ins[1], _bias_of(ins), tuple(out_shape[1:3])), []


def pool_step_fixed(kern, p, ins, out_shape):
    return kern.sum_pool(p, ins[0], tuple(out_shape[1:3])), []


def reshape_step_fixed(kern, p, ins, out_shape):
    return ins[0].reshape(out_shape), []


# --------------------------------------------------------------------------- C emission
def _weights(em, c: str, data: np.ndarray) -> None:
    em.consts.append(f"static const int8_t {em.P}{c}_w[{data.size}] __attribute__((aligned(4))) "
                     f"= {{{em.arr(data)}}};")
    em.weight_bytes += data.size


def _bias(em, op: Op, c: str) -> str:
    if len(op.inputs) > 2 and op.inputs[2]:
        b = np.asarray(em.g.t(op.inputs[2]).data)
        em.consts.append(f"static const int32_t {em.P}{c}_b[{b.size}] = {{{em.arr(b)}}};")
        em.weight_bytes += 4 * b.size
        return f"{em.P}{c}_b"
    return "0"


def emit_fc(em, k: int, op: Op) -> None:
    """Weights column-contiguous [in][out]; dense once per sample on the analog input,
    else event-driven every step (its return value counts the input events)."""
    P, c, x = em.P, f"L{k}", op.inputs[0]
    ev = f"{P}events[{len(em.synapses)}]"
    w = np.asarray(em.g.t(op.inputs[1]).data)
    _weights(em, c, np.ascontiguousarray(w.T).astype(np.int8))
    bsym = _bias(em, op, c)
    em.bufs.append(f"static int32_t {P}{c}_acc[{w.shape[0]}];")
    args = f"({w.shape[1]}, {w.shape[0]}, {em.buf_of[x]}, {P}{c}_w, {bsym}, {P}{c}_acc)"
    if em.analog(x):
        em.body_once.append("mcu_snn_fc_dense_s8" + args + ";")
        em.cached.add(k)
    else:
        em.body_step.append((k, f"{ev} += (uint32_t)" + "mcu_snn_fc_events_s8" + args + ";"))
    em.buf_of[op.outputs[0]] = f"{P}{c}_acc"
    em.synapses.append(op.name)
    em.layer_out.append((f"{P}{c}_acc", 4 * w.shape[0]))


def emit_conv(em, k: int, op: Op) -> None:
    """Scatter form: weights [groups][kh][kw][in/g][out/g], one contiguous run per event."""
    g, P, c, x, o = em.g, em.P, f"L{k}", op.inputs[0], op.outputs[0]
    ev = f"{P}events[{len(em.synapses)}]"
    oshape = g.t(o).shape
    w = np.asarray(g.t(op.inputs[1]).data)
    oc, kh, kw, ipg = w.shape
    gr = int(op.attrs.get("groups", 1))
    _weights(em, c, np.ascontiguousarray(w.reshape(gr, oc // gr, kh, kw, ipg)
                                         .transpose(0, 2, 3, 4, 1)).astype(np.int8))
    bsym = _bias(em, op, c)
    a = op.attrs
    ishape = g.t(x).shape
    em.consts.append(
        f"static const mcu_snn_conv_params_t {P}{c}_p = {{{a.get('stride_h', 1)}, "
        f"{a.get('stride_w', 1)}, {a.get('pad_h', 0)}, {a.get('pad_w', 0)}, "
        f"{a.get('dilation_h', 1)}, {a.get('dilation_w', 1)}, {gr}}};")
    em.consts.append(f"static const mcu_dims_t {P}{c}_id = {{1, {ishape[1]}, {ishape[2]}, "
                     f"{ishape[3]}}}, {P}{c}_fd = {{{oc}, {kh}, {kw}, {ipg}}}, "
                     f"{P}{c}_od = {{1, {oshape[1]}, {oshape[2]}, {oshape[3]}}};")
    n_o = int(np.prod(oshape))
    em.bufs.append(f"static int32_t {P}{c}_acc[{n_o}];")
    call = ("mcu_snn_conv_events_s8" + f"(&{P}{c}_p, &{P}{c}_id, {em.buf_of[x]}, &{P}{c}_fd, "
            f"{P}{c}_w, {bsym}, &{P}{c}_od, {P}{c}_acc)")
    if em.analog(x):
        em.body_once.append(f"(void){call};")
        em.cached.add(k)
    else:
        em.body_step.append((k, f"{ev} += (uint32_t){call};"))
    em.buf_of[o] = f"{P}{c}_acc"
    em.synapses.append(op.name)
    em.layer_out.append((f"{P}{c}_acc", 4 * n_o))


def emit_sum_pool(em, k: int, op: Op) -> None:
    g, P, c, x, o = em.g, em.P, f"L{k}", op.inputs[0], op.outputs[0]
    a = op.attrs
    ishape, oshape = g.t(x).shape, g.t(o).shape
    em.consts.append(
        f"static const mcu_pool_params_t {P}{c}_p = {{{a['stride_h']}, {a['stride_w']}, "
        f"{a['filter_h']}, {a['filter_w']}, {a.get('pad_h', 0)}, {a.get('pad_w', 0)}, "
        f"-128, 127}};")
    em.consts.append(f"static const mcu_dims_t {P}{c}_id = {{1, {ishape[1]}, {ishape[2]}, "
                     f"{ishape[3]}}}, {P}{c}_od = {{1, {oshape[1]}, {oshape[2]}, "
                     f"{oshape[3]}}};")
    n_o = int(np.prod(oshape))
    em.bufs.append(f"static int8_t {P}{c}_out[{n_o}];")
    em.body_step.append((k, "mcu_snn_sumpool_s8" + f"(&{P}{c}_p, &{P}{c}_id, {em.buf_of[x]}, "
                            f"&{P}{c}_od, {P}{c}_out);"))
    em.buf_of[o] = f"{P}{c}_out"
    em.layer_out.append((f"{P}{c}_out", n_o))


def emit_reshape(em, k: int, op: Op) -> None:
    x = op.inputs[0]
    em.buf_of[op.outputs[0]] = em.buf_of[x]
    em.body_step.append((k, "/* reshape: same buffer */"))
    em.layer_out.append(em.layer_out[-1] if em.layer_out else (em.buf_of[x], em.g.t(x).size))


_FANIN = ("float only for now: fixed point needs a synapse (FULLY_CONNECTED or "
          "SYN_CONV_2D) right before each neuron layer")

register(OpDef("SYN_CONV_2D", dict(SYNAPSE_ATTRS["SYN_CONV_2D"], **FIXED_SYNAPSE_ATTRS),
               infer_shape=_conv_shape, family="snn", snn_role="synapse",
               step_float=conv_step_float, step_fixed=conv_step_fixed, emit_snn=emit_conv,
               doc="spiking convolution (event-driven on spikes): acc = bias + W * x"))
register(OpDef("SUM_POOL_2D", dict(SYNAPSE_ATTRS["SUM_POOL_2D"]), infer_shape=_pool_shape,
               family="snn", snn_role="pool", step_float=pool_step_float,
               step_fixed=pool_step_fixed, emit_snn=emit_sum_pool,
               doc="window sums of spikes (divisor kh*kw: average counting padding)"))
register(OpDef("SCALE", dict(SYNAPSE_ATTRS["SCALE"]), infer_shape=same_as_input,
               family="snn", snn_role="fanin", step_float=scale_step_float,
               float_only=_FANIN, doc="x * s elementwise with a constant s (NIR Scale)"))

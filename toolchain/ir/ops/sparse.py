"""SPARSE_CONV_2D / SPARSE_FULLY_CONNECTED: row-sparse CONV_2D / FULLY_CONNECTED over a
nested subnet store (DRESS, issue #10; toolchain/subnets builds the store).

One op of a subnet level. The op holds the packed store exactly as it lies in flash
(shared by every level: same tensors, same bytes) and the level's entry count:

- inputs: 0 x (int8), 1 `pairs` uint8 [R, Nc, 2] (column low bits, int8 value; its
  quantization is the shared int8 weight scale: per channel for CONV_2D, per tensor
  or per channel for FULLY_CONNECTED), 2 bias int32 [R] of the level (or ""),
  3 `tail` int8 [R, N - Nc] (implicit dense group, or ""), 4 `seg_counts` uint8
  [R, S, Ge] (rows longer than 256, or "");
- attrs: those of CONV_2D / FULLY_CONNECTED, plus `filter_shape` (OHWI / [O, K] of the
  dense filter), `group_end` (cumulative entries per row per group, sparsest first),
  `n_entries` (entries per row of this level: one of group_end), `seg_shift`,
  `implicit_last`.

Layout and kernels: firmware_templates/runtime/sparse.c (README "Row-sparse"). The int8
reference is the kernels' arithmetic (raw inputs, bias_eff = bias + input_offset x row
sum, TFLM MultiplyByQuantizedMultiplier), bit-exact with tflite-micro on the op's dense
form: `dense_form` gives the equivalent CONV_2D / FULLY_CONNECTED with the level's
dense-with-zeros weights (what the TFLite writer writes, so every level's .tflite is
checked against tflite-micro).
"""
from __future__ import annotations

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor

from . import conv, fully_connected
from .base import (OpDef, act_range, bias_i32, compute_padding, dims4, i32, qparams, register,
                   window_shape, wscales)

STORE_ATTRS = dict(filter_shape=(), group_end=(), n_entries=0, seg_shift=8, implicit_last=False)
CONV_ATTRS = dict(conv.ATTRS, **STORE_ATTRS)
FC_ATTRS = dict(fully_connected.ATTRS, **STORE_ATTRS)
DENSE_OF = {"SPARSE_CONV_2D": "CONV_2D", "SPARSE_FULLY_CONNECTED": "FULLY_CONNECTED"}


def _opt(g: Graph, op: Op, i: int):
    return g.t(op.inputs[i]).data if len(op.inputs) > i and op.inputs[i] else None


def store_arrays(g: Graph, op: Op) -> dict:
    """The mcu_sparse_store_t fields of the op (arrays + ints)."""
    pairs = g.t(op.inputs[1]).data
    fs = tuple(int(d) for d in op.attr("filter_shape"))
    if len(fs) < 2:
        raise IRError(f"layer '{op.name}' ({op.type}): no filter_shape")
    ge = np.asarray(op.attr("group_end"), np.int32).reshape(-1)
    segc = _opt(g, op, 4)
    tail = _opt(g, op, 3)
    R, K = fs[0], int(np.prod(fs[1:]))
    n = int(op.attr("n_entries"))
    if ge.size == 0 or n not in ge.tolist():
        raise IRError(f"layer '{op.name}' ({op.type}): n_entries {n} is not a level of the "
                      f"store (group ends {ge.tolist()})")
    return dict(pairs=np.ascontiguousarray(pairs, np.uint8),
                tail=None if tail is None else np.ascontiguousarray(tail, np.int8),
                seg_counts=None if segc is None else np.ascontiguousarray(segc, np.uint8),
                group_end=np.ascontiguousarray(ge), rows=R, row_len=K, n_max=int(ge[-1]),
                n_cols=int(pairs.shape[1]), n_groups=int(ge.size),
                n_seg=1 if segc is None else int(segc.shape[1]),
                seg_shift=int(op.attr("seg_shift")), implicit_last=int(bool(op.attr("implicit_last"))))


def decode(a: dict, n: int):
    """(columns int64 [R, n], values int64 [R, n]) of the first n entries per row, from
    the flash arrays alone, in the order the kernels read them."""
    R, K, S = int(a["rows"]), int(a["row_len"]), int(a["n_seg"])
    ge_arr = np.asarray(a["group_end"], np.int64)
    ng = int(np.searchsorted(ge_arr, n) + 1)
    ge = int(a["n_groups"]) - (1 if a["implicit_last"] else 0)
    nge = min(ng, ge)
    n_exp = int(ge_arr[nge - 1]) if nge else 0
    cols = np.empty((R, n), np.int64)
    vals = np.empty((R, n), np.int64)
    pv = a["pairs"][:, :, 1].view(np.int8).astype(np.int64)
    pc = a["pairs"][:, :, 0].astype(np.int64)
    for r in range(R):
        if S == 1:
            c, v = pc[r, :n_exp], pv[r, :n_exp]
        else:
            cl, vl, off = [], [], 0
            for si in range(S):
                cnt = int(a["seg_counts"][r, si, nge - 1]) if nge else 0
                cl.append((si << int(a["seg_shift"])) + pc[r, off:off + cnt])
                vl.append(pv[r, off:off + cnt])
                off += int(a["seg_counts"][r, si, ge - 1])
            c, v = np.concatenate(cl), np.concatenate(vl)
        if ng > ge:
            used = np.zeros(K, bool)
            used[c] = True
            c = np.concatenate([c, np.flatnonzero(~used)])
            v = np.concatenate([v, a["tail"][r].astype(np.int64)])
        cols[r], vals[r] = c, v
    return cols, vals


def dense_weight(g: Graph, op: Op) -> np.ndarray:
    """int8 dense-with-zeros filter of the op's level, in filter_shape."""
    a = store_arrays(g, op)
    cols, vals = decode(a, int(op.attr("n_entries")))
    w = np.zeros((a["rows"], a["row_len"]), np.int8)
    w[np.arange(a["rows"])[:, None], cols] = vals.astype(np.int8)
    return w.reshape(tuple(int(d) for d in op.attr("filter_shape")))


def dense_form(g: Graph, op: Op):
    """(dense op type, its attrs, its int8 weight Tensor): the equivalent CONV_2D /
    FULLY_CONNECTED with the level's dense-with-zeros weights (TFLite writer)."""
    t = DENSE_OF[op.type]
    base = conv.ATTRS if t == "CONV_2D" else fully_connected.ATTRS
    attrs = {k: op.attrs.get(k, d) for k, d in base.items()}
    pq = g.t(op.inputs[1]).quant
    axis = 0 if pq.scale.size > 1 else None
    # the store's tensors are named <weight>/pairs, ... (toolchain.subnets.graph): the
    # dense weight gets <weight> back, so a level's .tflite reads like the dense model
    pn = op.inputs[1]
    wn = pn[:-len("/pairs")] if pn.endswith("/pairs") and pn[:-6] not in g.tensors else pn + "/dense"
    w = Tensor(wn, tuple(int(d) for d in op.attr("filter_shape")), "int8",
               Quant(pq.scale.copy(), np.zeros(pq.scale.shape, np.int64), axis),
               dense_weight(g, op))
    return t, attrs, w


def _common(g: Graph, op: Op) -> dict:
    xt, ot = g.t(op.inputs[0]), g.t(op.outputs[0])
    in_s, in_zp = qparams(xt, op.name)
    out_s, out_zp = qparams(ot, op.name)
    a = store_arrays(g, op)
    n = int(op.attr("n_entries"))
    cols, vals = decode(a, n)
    b = bias_i32(g, op)
    bb = np.zeros(a["rows"], np.int64) if b is None else b.astype(np.int64)
    beff = qm.wrap_int32(bb + (-in_zp) * vals.sum(axis=1)).astype(np.int32)
    lo, hi = act_range(op, out_s, out_zp)
    return dict(store=a, n_entries=n, bias=b, bias_eff=np.ascontiguousarray(beff),
                input_offset=-in_zp, output_offset=out_zp, act_min=lo, act_max=hi,
                _in_s=in_s, _out_s=out_s, _cols=cols, _vals=vals)


def _conv_params(g: Graph, op: Op) -> dict:
    c = _common(g, op)
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    o, kh, kw, ci = (int(d) for d in op.attr("filter_shape"))
    n, h, w, ch = dims4(xt.shape)
    if ch != ci:
        raise IRError(f"layer '{op.name}' ({op.type}): input has {ch} channels, the store {ci}")
    sh, sw = int(op.attr("stride_h")), int(op.attr("stride_w"))
    dh, dw = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
    oh, ph = compute_padding(sh, dh, h, kh, op.attr("padding"))
    ow, pw = compute_padding(sw, dw, w, kw, op.attr("padding"))
    mult, shift = qm.quantize_multiplier(c["_in_s"] * wscales(wt, o) / c["_out_s"])
    c.update(stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw,
             multiplier=i32(mult), shift=i32(shift), input_dims=(n, h, w, ch),
             filter_dims=(o, kh, kw, ci), output_dims=(n, oh, ow, o))
    return c


def _fc_params(g: Graph, op: Op) -> dict:
    c = _common(g, op)
    xt, wt = g.t(op.inputs[0]), g.t(op.inputs[1])
    o, k = (int(d) for d in op.attr("filter_shape"))
    if xt.size % k:
        raise IRError(f"layer '{op.name}' ({op.type}): input size {xt.size} is not a "
                      f"multiple of {k}")
    mult, shift = fully_connected._multipliers(c["_in_s"], wt, o, c["_out_s"])
    c.update(filter_offset=0, per_channel=int(wt.quant.scale.size > 1),
             multiplier=i32(np.atleast_1d(mult)), shift=i32(np.atleast_1d(shift)),
             batches=xt.size // k, in_features=k, out_features=o,
             output_dims=(1, 1, 1, o))     # requantization table: one entry per row
    return c


def _requant(acc, p, rows):
    mult = np.broadcast_to(np.atleast_1d(p["multiplier"]).astype(np.int64), (rows,))
    shift = np.broadcast_to(np.atleast_1d(p["shift"]).astype(np.int64), (rows,))
    v = qm.multiply_by_quantized_multiplier(acc, mult, shift) + int(p["output_offset"])
    return np.clip(v, int(p["act_min"]), int(p["act_max"])).astype(np.int8)


def _acc(p, patches):
    acc = np.einsum("prn,rn->pr", patches[:, p["_cols"]], p["_vals"])
    return qm.wrap_int32(acc + p["bias_eff"].astype(np.int64))


def im2col_raw(x, kh, kw, p):
    """int8 NHWC -> int64 [n*oh*ow, kh*kw*c] raw patches, padded taps = input zero point."""
    n, h, w, c = (int(d) for d in p["input_dims"])
    _, oh, ow, _ = (int(d) for d in p["output_dims"])
    x = np.asarray(x).astype(np.int64).reshape(n, h, w, c)
    zp = -int(p["input_offset"])
    sh, sw, dh, dw = (int(p[k]) for k in ("stride_h", "stride_w", "dilation_h", "dilation_w"))
    iy = np.arange(oh)[:, None] * sh - int(p["pad_h"]) + np.arange(kh)[None, :] * dh
    ix = np.arange(ow)[:, None] * sw - int(p["pad_w"]) + np.arange(kw)[None, :] * dw
    vy, vx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
    gg = x[:, np.clip(iy, 0, h - 1)[:, None, :, None], np.clip(ix, 0, w - 1)[None, :, None, :], :]
    valid = (vy[:, None, :, None] & vx[None, :, None, :])[None, :, :, :, :, None]
    return np.where(valid, gg, zp).reshape(n * oh * ow, kh * kw * c)


def _conv_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _conv_params(g, op)
    _, kh, kw, _ = p["filter_dims"]
    y = _requant(_acc(p, im2col_raw(v[op.inputs[0]], kh, kw, p)), p, p["store"]["rows"])
    return y.reshape(g.t(op.outputs[0]).shape)


def _fc_reference(g: Graph, op: Op, v: dict) -> np.ndarray:
    p = _fc_params(g, op)
    x = np.asarray(v[op.inputs[0]]).astype(np.int64).reshape(-1, p["in_features"])
    return _requant(_acc(p, x), p, p["out_features"]).reshape(g.t(op.outputs[0]).shape)


def _float_weight(g, op):
    pq = g.t(op.inputs[1]).quant
    w = dense_weight(g, op).astype(np.float64)
    s = np.asarray(pq.scale, np.float64)
    return w * (s.reshape((-1,) + (1,) * (w.ndim - 1)) if s.size > 1 else s[0])


def _conv_float(g, op, inp):
    return conv.float_conv(op, inp(0), _float_weight(g, op), inp(2), depthwise=False)


def _fc_float(g, op, inp):
    w = _float_weight(g, op)
    x, b = inp(0), inp(2)
    y = x @ w.T if op.attr("keep_num_dims") else x.reshape(-1, w.shape[1]) @ w.T
    return y + b if b is not None else y


def _torch_weight(m, op, x):
    import torch
    return torch.as_tensor(_float_weight(m.graph, op),
                           dtype=x.dtype)


def _conv_torch(m, op, x, inp):
    w = _torch_weight(m, op, x)
    return conv.torch_conv(m, op, x, lambda i: w if i == 1 else inp(i), depthwise=False)


def _fc_torch(m, op, x, inp):
    w = _torch_weight(m, op, x)
    return fully_connected._torch(m, op, x, lambda i: w if i == 1 else inp(i))


def _shape_conv(g: Graph, op: Op):
    o, kh, kw, _ = (int(d) for d in op.attr("filter_shape"))
    return window_shape(g, op, o, kh, kw)


def _shape_fc(g: Graph, op: Op):
    o, k = (int(d) for d in op.attr("filter_shape"))
    x = g.t(op.inputs[0]).shape
    if op.attr("keep_num_dims"):
        return tuple(x[:-1]) + (o,)
    return (int(np.prod(x, dtype=np.int64)) // k, o)


def _scratch(p, variant, patchable, rt) -> int:
    return rt.sparse_scratch(p, variant)


def _store_struct(em, P: str, op: Op, p: dict) -> str:
    """The mcu_sparse_store_t of the op: its big arrays are flash constants shared by
    every level (keyed by tensor name), the struct itself is a few words per level."""
    a = p["store"]
    pairs = em.const(op.inputs[1], a["pairs"], "uint8_t")
    tail = em.const(op.inputs[3], a["tail"], "int8_t") if a["tail"] is not None else "0"
    segc = em.const(op.inputs[4], a["seg_counts"], "uint8_t") if a["seg_counts"] is not None else "0"
    em.decls.append(f"static const int32_t {P}_gend[] = {{{em.arr(a['group_end'])}}};")
    ints = ", ".join(str(int(a[k])) for k in ("rows", "row_len", "n_max", "n_cols", "n_groups",
                                               "n_seg", "seg_shift", "implicit_last"))
    em.decls.append(f"static const mcu_sparse_store_t {P}_st = "
                    f"{{(const uint8_t *){pairs}, (const int8_t *){tail}, "
                    f"(const uint8_t *){segc}, {P}_gend, {ints}}};")
    return f"&{P}_st"


def _bias_eff(em, op: Op, p: dict) -> str:
    return em.derived_const(f"{op.outputs[0]}:bias_eff", p["bias_eff"], "int32_t")


def _emit_conv(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_conv_params_t", p, conv.CONV_FIELDS + ["act_min", "act_max"])
    st = _store_struct(em, P, op, p)
    rq = em.requant_table(P, p)
    idm, fdm, odm = (em.dims(P, "id", p["input_dims"]), em.dims(P, "fd", p["filter_dims"]),
                     em.dims(P, "od", p["output_dims"]))
    alloc = em.plan.kernel_scratch.get(op.name, 0)
    em.checks.append(f"if (mcu_sparse_conv2d_s8_scratch_size({st}, {pp}, {fdm}, {odm}) > "
                     f"{alloc}) return 0;")
    return [f"mcu_sparse_conv2d_s8({pp}, {rq}, {st}, {p['n_entries']}, {idm}, "
            f"{em.ptr(op.inputs[0])}, {fdm}, {_bias_eff(em, op, p)}, {odm}, "
            f"{em.ptr(op.outputs[0])}, {em.scratch(op)});"]


def _emit_fc(em, k: int, op: Op, p: dict) -> list[str]:
    P = em.layer_prefix(k)
    pp = em.struct(P, "mcu_fc_params_t", p, ["input_offset", "filter_offset", "output_offset",
                                             "act_min", "act_max"])
    st = _store_struct(em, P, op, p)
    rq = em.requant_table(P, p)
    alloc = em.plan.kernel_scratch.get(op.name, 0)
    em.checks.append(f"if (mcu_sparse_fc_s8_scratch_size({st}, {p['batches']}) > {alloc}) "
                     "return 0;")
    return [f"mcu_sparse_fc_s8({pp}, {rq}, {st}, {p['n_entries']}, {p['batches']}, "
            f"{em.ptr(op.inputs[0])}, {_bias_eff(em, op, p)}, {em.ptr(op.outputs[0])}, "
            f"{em.scratch(op)});"]


def _macs(g: Graph, op: Op) -> int:
    o = int(op.attr("filter_shape")[0])
    return g.t(op.outputs[0]).size // o * o * int(op.attr("n_entries"))


ROLES = {1: "weight", 2: "bias", 3: "weight", 4: "other"}

register(OpDef(
    "SPARSE_CONV_2D", CONV_ATTRS, infer_shape=_shape_conv, float_eval=_conv_float,
    reference=_conv_reference, kernel_params=_conv_params, scratch=_scratch, emit=_emit_conv,
    weight_roles=ROLES, torch=_conv_torch, macs=_macs, dense_form=dense_form,
    doc="row-sparse CONV_2D at one level of a nested subnet store (DRESS)"))
register(OpDef(
    "SPARSE_FULLY_CONNECTED", FC_ATTRS, infer_shape=_shape_fc, float_eval=_fc_float,
    reference=_fc_reference, kernel_params=_fc_params, scratch=_scratch, emit=_emit_fc,
    weight_roles=ROLES, torch=_fc_torch, macs=_macs, dense_form=dense_form,
    doc="row-sparse FULLY_CONNECTED at one level of a nested subnet store (DRESS)"))

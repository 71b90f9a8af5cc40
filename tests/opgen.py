"""Random single-op int8 IR graphs for bit-exactness tests (reference interpreter,
C kernels, codegen) against TFLite Micro.

Every builder takes a numpy Generator and optional overrides and returns a Graph
with one op, graph input(s) and output, valid int8 quantization (per-channel
symmetric weights, asymmetric activations, int32 bias with scale in*w), and
scales that are exact float32 values:

    g = make_conv2d(rng, cin=3, cout=5, kh=3, kw=3, stride=2, padding="SAME")
    feeds = random_feeds(rng, g)          # {input name: int8/float32 array}

OP_BUILDERS maps each op type to its builder; `make_random(rng, op_type)` picks one.
"""
from __future__ import annotations

import numpy as np

from toolchain.ir.graph import Graph, Op, Quant, Tensor

ACTS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _f32(x) -> float:
    return float(np.float32(x))


def rand_scale(rng, lo=0.005, hi=0.2) -> float:
    return _f32(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def rand_zp(rng) -> int:
    return int(rng.integers(-128, 128))


def act_quant(rng, scale=None, zp=None) -> Quant:
    return Quant.per_tensor(rand_scale(rng) if scale is None else scale,
                            rand_zp(rng) if zp is None else zp)


def _pick(rng, v, choices):
    return v if v is not None else choices[int(rng.integers(len(choices)))]


def _act(rng, act):
    return act if act is not None else _pick(rng, None, ACTS)


def _weights(rng, shape, axis, per_channel, n_ch):
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    if per_channel:
        s = np.array([rand_scale(rng, 0.001, 0.05) for _ in range(n_ch)], np.float32)
        q = Quant(s.astype(np.float64), np.zeros(n_ch, np.int64), axis)
    else:
        q = Quant.per_tensor(rand_scale(rng, 0.001, 0.05), 0)
    return w, q


def _bias(rng, n, in_scale, wq: Quant, k: int, axis=0):
    ws = np.broadcast_to(wq.scale, (n,)).astype(np.float32).astype(np.float64)
    bs = (np.float64(in_scale) * ws).astype(np.float32).astype(np.float64)
    b = rng.normal(0, 60.0 * np.sqrt(k) * 40, size=n).round().astype(np.int32)
    return b, Quant(bs, np.zeros(n, np.int64), axis if n > 1 else None)


def _out_scale(rng, in_scale, wq: Quant, k: int) -> float:
    """Output scale so that typical accumulators land near the int8 range, with a
    random factor (sometimes saturating, sometimes multiplier > 1)."""
    typ = np.sqrt(k) * 70.0 * 70.0 * in_scale * float(np.median(wq.scale))
    return _f32(typ / 128.0 * np.exp(rng.uniform(np.log(0.3), np.log(4.0))))


def _valid_spatial(rng, size, k, stride, dil, padding):
    eff = (k - 1) * dil + 1
    if padding == "VALID" and size < eff:
        size = eff + int(rng.integers(0, 3))
    return size


def make_conv2d(rng, n=None, h=None, w=None, cin=None, cout=None, kh=None, kw=None,
                stride=None, dilation=None, padding=None, act=None, per_channel=None,
                bias=None) -> Graph:
    n = n or _pick(rng, None, (1, 1, 1, 2))
    cin = cin or int(rng.integers(1, 10))
    cout = cout or int(rng.integers(1, 11))
    kh = kh or int(rng.integers(1, 5))
    kw = kw or int(rng.integers(1, 5))
    sh = sw = stride or int(rng.integers(1, 4))
    dh = dw = dilation or _pick(rng, None, (1, 1, 2))
    padding = _pick(rng, padding, ("SAME", "VALID"))
    h = _valid_spatial(rng, h or int(rng.integers(1, 13)), kh, sh, dh, padding)
    w = _valid_spatial(rng, w or int(rng.integers(1, 13)), kw, sw, dw, padding)
    per_channel = bool(rng.integers(0, 4)) if per_channel is None else per_channel
    bias = bool(rng.integers(0, 5)) if bias is None else bias
    g = Graph(name="conv2d")
    xq = act_quant(rng)
    g.add_tensor(Tensor("x", (n, h, w, cin), "int8", xq))
    wt, wq = _weights(rng, (cout, kh, kw, cin), 0, per_channel, cout)
    g.add_tensor(Tensor("w", wt.shape, "int8", wq, wt))
    ins = ["x", "w"]
    if bias:
        b, bq = _bias(rng, cout, xq.scale[0], wq, kh * kw * cin)
        g.add_tensor(Tensor("b", b.shape, "int32", bq, b))
        ins.append("b")
    from toolchain.ir.reference import compute_padding
    oh, _ = compute_padding(sh, dh, h, kh, padding)
    ow, _ = compute_padding(sw, dw, w, kw, padding)
    g.add_tensor(Tensor("y", (n, oh, ow, cout), "int8",
                        act_quant(rng, _out_scale(rng, xq.scale[0], wq, kh * kw * cin))))
    g.add_op(Op("CONV_2D", ins, ["y"], dict(padding=padding, stride_h=sh, stride_w=sw,
                                            dilation_h=dh, dilation_w=dw,
                                            fused_activation=_act(rng, act))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_depthwise_conv2d(rng, n=None, h=None, w=None, cin=None, multiplier=None, kh=None,
                          kw=None, stride=None, dilation=None, padding=None, act=None,
                          per_channel=None, bias=None) -> Graph:
    n = n or _pick(rng, None, (1, 1, 1, 2))
    cin = cin or int(rng.integers(1, 10))
    m = multiplier or _pick(rng, None, (1, 1, 2, 3))
    cout = cin * m
    kh = kh or int(rng.integers(1, 5))
    kw = kw or int(rng.integers(1, 5))
    sh = sw = stride or int(rng.integers(1, 4))
    dh = dw = dilation or _pick(rng, None, (1, 1, 2))
    padding = _pick(rng, padding, ("SAME", "VALID"))
    h = _valid_spatial(rng, h or int(rng.integers(1, 13)), kh, sh, dh, padding)
    w = _valid_spatial(rng, w or int(rng.integers(1, 13)), kw, sw, dw, padding)
    per_channel = bool(rng.integers(0, 4)) if per_channel is None else per_channel
    bias = bool(rng.integers(0, 5)) if bias is None else bias
    g = Graph(name="depthwise_conv2d")
    xq = act_quant(rng)
    g.add_tensor(Tensor("x", (n, h, w, cin), "int8", xq))
    wt, wq = _weights(rng, (1, kh, kw, cout), 3, per_channel, cout)
    g.add_tensor(Tensor("w", wt.shape, "int8", wq, wt))
    ins = ["x", "w"]
    if bias:
        b, bq = _bias(rng, cout, xq.scale[0], wq, kh * kw)
        g.add_tensor(Tensor("b", b.shape, "int32", bq, b))
        ins.append("b")
    from toolchain.ir.reference import compute_padding
    oh, _ = compute_padding(sh, dh, h, kh, padding)
    ow, _ = compute_padding(sw, dw, w, kw, padding)
    g.add_tensor(Tensor("y", (n, oh, ow, cout), "int8",
                        act_quant(rng, _out_scale(rng, xq.scale[0], wq, kh * kw))))
    g.add_op(Op("DEPTHWISE_CONV_2D", ins, ["y"],
                dict(padding=padding, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
                     depth_multiplier=m, fused_activation=_act(rng, act))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_fully_connected(rng, batch=None, k=None, out=None, act=None, per_channel=None,
                         bias=None, input_4d=None) -> Graph:
    batch = batch or _pick(rng, None, (1, 1, 2, 3))
    k = k or int(rng.integers(1, 70))
    out = out or int(rng.integers(1, 20))
    per_channel = bool(rng.integers(0, 2)) if per_channel is None else per_channel
    bias = bool(rng.integers(0, 5)) if bias is None else bias
    input_4d = bool(rng.integers(0, 3) == 0) if input_4d is None else input_4d
    g = Graph(name="fully_connected")
    xq = act_quant(rng)
    xshape = (batch, 1, 1, k) if input_4d else (batch, k)
    g.add_tensor(Tensor("x", xshape, "int8", xq))
    wt, wq = _weights(rng, (out, k), 0, per_channel, out)
    g.add_tensor(Tensor("w", wt.shape, "int8", wq, wt))
    ins = ["x", "w"]
    if bias:
        b, bq = _bias(rng, out, xq.scale[0], wq, k)
        g.add_tensor(Tensor("b", b.shape, "int32", bq, b))
        ins.append("b")
    g.add_tensor(Tensor("y", (batch, out), "int8",
                        act_quant(rng, _out_scale(rng, xq.scale[0], wq, k))))
    g.add_op(Op("FULLY_CONNECTED", ins, ["y"], dict(fused_activation=_act(rng, act),
                                                    keep_num_dims=False)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_pool2d(rng, op_type=None, n=None, h=None, w=None, c=None, fh=None, fw=None,
                stride=None, padding=None, act=None) -> Graph:
    op_type = _pick(rng, op_type, ("AVERAGE_POOL_2D", "MAX_POOL_2D"))
    n = n or _pick(rng, None, (1, 1, 2))
    c = c or int(rng.integers(1, 10))
    fh = fh or int(rng.integers(1, 5))
    fw = fw or int(rng.integers(1, 5))
    sh = stride or int(rng.integers(1, 4))
    sw = stride or int(rng.integers(1, 4))
    padding = _pick(rng, padding, ("SAME", "VALID"))
    h = _valid_spatial(rng, h or int(rng.integers(1, 13)), fh, sh, 1, padding)
    w = _valid_spatial(rng, w or int(rng.integers(1, 13)), fw, sw, 1, padding)
    from toolchain.ir.reference import compute_padding
    oh, _ = compute_padding(sh, 1, h, fh, padding)
    ow, _ = compute_padding(sw, 1, w, fw, padding)
    q = act_quant(rng)
    g = Graph(name=op_type.lower())
    g.add_tensor(Tensor("x", (n, h, w, c), "int8", q))
    g.add_tensor(Tensor("y", (n, oh, ow, c), "int8", Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op(op_type, ["x"], ["y"], dict(padding=padding, stride_h=sh, stride_w=sw,
                                            filter_h=fh, filter_w=fw,
                                            fused_activation=_act(rng, act))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_average_pool2d(rng, **kw) -> Graph:
    return make_pool2d(rng, "AVERAGE_POOL_2D", **kw)


def make_max_pool2d(rng, **kw) -> Graph:
    return make_pool2d(rng, "MAX_POOL_2D", **kw)


def _rand_shape4(rng):
    return (int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 7)),
            int(rng.integers(1, 10)))


def _binary(rng, op_type, shape=None, broadcast=None, act=None) -> Graph:
    shape = shape or _rand_shape4(rng)
    broadcast = _pick(rng, broadcast, (None, None, "channel", "scalar", "spatial"))
    shape2 = {None: shape, "channel": (1, 1, 1, shape[3]), "scalar": (1,),
              "spatial": (shape[0], shape[1], shape[2], 1)}[broadcast]
    g = Graph(name=op_type.lower())
    q1, q2 = act_quant(rng), act_quant(rng)
    if op_type in ("ADD", "SUB"):
        qo = act_quant(rng, _f32(max(q1.scale[0], q2.scale[0]) * rng.uniform(0.5, 2.5)))
    else:
        qo = act_quant(rng, _f32(q1.scale[0] * q2.scale[0] * 128 * rng.uniform(0.1, 2.0)))
    g.add_tensor(Tensor("a", shape, "int8", q1))
    g.add_tensor(Tensor("b", shape2, "int8", q2))
    g.add_tensor(Tensor("y", shape, "int8", qo))
    g.add_op(Op(op_type, ["a", "b"], ["y"], dict(fused_activation=_act(rng, act))))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return g


def make_add(rng, **kw) -> Graph:
    return _binary(rng, "ADD", **kw)


def add_all_pairs(q1, q2, qo, act="NONE"):
    """ADD graph over every (x1, x2) int8 pair (65,536 elements) with these quants."""
    g = Graph(name="add_pairs")
    shape = (1, 256, 256, 1)
    g.add_tensor(Tensor("a", shape, "int8", Quant.per_tensor(*q1)))
    g.add_tensor(Tensor("b", shape, "int8", Quant.per_tensor(*q2)))
    g.add_tensor(Tensor("y", shape, "int8", Quant.per_tensor(*qo)))
    g.add_op(Op("ADD", ["a", "b"], ["y"], dict(fused_activation=act)))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    v = np.arange(-128, 128, dtype=np.int8)
    feeds = {"a": np.repeat(v, 256).reshape(shape), "b": np.tile(v, 256).reshape(shape)}
    return g, feeds


def add_pair_quants(seed=11, n=24):
    """Quantizations for the exhaustive ADD checks: equal scales (both input shifts 0),
    ResNet-like ratios, wide ratios (large input shifts), extreme zero points."""
    rng = np.random.default_rng(seed)
    out = [((0.05, 0), (0.05, 0), (0.1, 0)), ((0.02, -128), (0.02, 127), (0.04, -128)),
           ((0.1, 127), (0.003, -128), (0.2, 5)), ((0.003, -128), (0.2, 127), (0.01, -128))]
    while len(out) < n:
        s1 = rand_scale(rng, 0.001, 0.5)
        s2 = s1 if rng.random() < 0.25 else rand_scale(rng, 0.001, 0.5)
        so = _f32(max(s1, s2) * rng.uniform(0.3, 4.0))
        out.append(tuple((s, int(rng.integers(-128, 128))) for s in (s1, s2, so)))
    return out


def make_sub(rng, **kw) -> Graph:
    return _binary(rng, "SUB", **kw)


def _maxmin(rng, op_type, shape=None, broadcast=None, first=None) -> Graph:
    """MAXIMUM / MINIMUM: one quantization for both inputs and the output (TFLM compares
    bytes); the smaller operand broadcasts, as either input."""
    shape = shape or _rand_shape4(rng)
    broadcast = _pick(rng, broadcast, (None, None, "channel", "scalar", "spatial"))
    small = {None: shape, "channel": (1, 1, 1, shape[3]), "scalar": (1,),
             "spatial": (shape[0], shape[1], shape[2], 1)}[broadcast]
    first = bool(rng.integers(0, 3) == 0) if first is None else first
    q = act_quant(rng)
    g = Graph(name=op_type.lower())
    g.add_tensor(Tensor("a", small if first else shape, "int8", q))
    g.add_tensor(Tensor("b", shape if first else small, "int8",
                        Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_tensor(Tensor("y", shape, "int8", Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op(op_type, ["a", "b"], ["y"], {}))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return g


def make_maximum(rng, **kw) -> Graph:
    return _maxmin(rng, "MAXIMUM", **kw)


def make_minimum(rng, **kw) -> Graph:
    return _maxmin(rng, "MINIMUM", **kw)


def make_mul(rng, **kw) -> Graph:
    return _binary(rng, "MUL", **kw)


def make_reshape(rng, shape=None) -> Graph:
    shape = shape or _rand_shape4(rng)
    new = (shape[0], int(np.prod(shape[1:])))
    q = act_quant(rng)
    g = Graph(name="reshape")
    g.add_tensor(Tensor("x", shape, "int8", q))
    g.add_tensor(Tensor("y", new, "int8", Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op("RESHAPE", ["x"], ["y"], dict(new_shape=list(new))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_softmax(rng, shape=None, beta=None, in_scale=None) -> Graph:
    shape = shape or _pick(rng, None, ((1, int(rng.integers(1, 40))),
                                       (int(rng.integers(1, 4)), int(rng.integers(1, 20))),
                                       (1, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                        int(rng.integers(1, 12)))))
    beta = beta if beta is not None else _pick(rng, None, (1.0, 1.0, 0.5, 2.0))
    g = Graph(name="softmax")
    g.add_tensor(Tensor("x", shape, "int8", act_quant(rng, in_scale or rand_scale(rng, 0.01, 1.0))))
    g.add_tensor(Tensor("y", shape, "int8", Quant.per_tensor(1.0 / 256, -128)))
    g.add_op(Op("SOFTMAX", ["x"], ["y"], dict(beta=float(beta))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_concatenation(rng, n_inputs=None, axis=None) -> Graph:
    n_inputs = n_inputs or int(rng.integers(2, 4))
    base = _rand_shape4(rng)
    axis = axis if axis is not None else int(rng.integers(-1, 4))
    ax = axis % 4
    q = act_quant(rng)
    g = Graph(name="concatenation")
    names, total = [], 0
    for i in range(n_inputs):
        s = list(base)
        s[ax] = int(rng.integers(1, 5))
        total += s[ax]
        g.add_tensor(Tensor(f"x{i}", tuple(s), "int8", Quant(q.scale.copy(), q.zero_point.copy())))
        names.append(f"x{i}")
    out = list(base)
    out[ax] = total
    g.add_tensor(Tensor("y", tuple(out), "int8", q))
    g.add_op(Op("CONCATENATION", names, ["y"], dict(axis=axis, fused_activation="NONE")))
    g.inputs, g.outputs = names, ["y"]
    return g


def make_pad(rng, shape=None) -> Graph:
    shape = shape or _rand_shape4(rng)
    pads = np.zeros((4, 2), np.int32)
    pads[1:3] = rng.integers(0, 3, size=(2, 2))
    if rng.integers(0, 3) == 0:
        pads[3] = rng.integers(0, 2, size=2)
    out = tuple(int(s + p.sum()) for s, p in zip(shape, pads))
    q = act_quant(rng)
    g = Graph(name="pad")
    g.add_tensor(Tensor("x", shape, "int8", q))
    g.add_tensor(Tensor("paddings", (4, 2), "int32", None, pads))
    g.add_tensor(Tensor("y", out, "int8", Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op("PAD", ["x", "paddings"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_mean(rng, shape=None, axes=None, keep_dims=None, same_quant=None) -> Graph:
    shape = shape or (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                      int(rng.integers(1, 10)))
    axes = axes if axes is not None else _pick(rng, None, ((1, 2), (1, 2), (2,), (1,), (3,),
                                                           (1, 2, 3)))
    keep_dims = bool(rng.integers(0, 2)) if keep_dims is None else keep_dims
    same_quant = bool(rng.integers(0, 2)) if same_quant is None else same_quant
    q = act_quant(rng)
    qo = Quant(q.scale.copy(), q.zero_point.copy()) if same_quant else \
        act_quant(rng, _f32(q.scale[0] * rng.uniform(0.3, 2.0)))
    out = tuple((1 if i in axes else s) for i, s in enumerate(shape)) if keep_dims else \
        tuple(s for i, s in enumerate(shape) if i not in axes)
    g = Graph(name="mean")
    g.add_tensor(Tensor("x", shape, "int8", q))
    g.add_tensor(Tensor("axes", (len(axes),), "int32", None, np.array(axes, np.int32)))
    g.add_tensor(Tensor("y", out, "int8", qo))
    g.add_op(Op("MEAN", ["x", "axes"], ["y"], dict(keep_dims=keep_dims)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def _unary(rng, op_type, shape=None, same_quant=None) -> Graph:
    shape = shape or _rand_shape4(rng)
    same_quant = bool(rng.integers(0, 2)) if same_quant is None else same_quant
    if op_type == "RELU6":
        q = act_quant(rng, rand_scale(rng, 0.01, 0.1))
        same_quant = True
    else:
        q = act_quant(rng)
    qo = Quant(q.scale.copy(), q.zero_point.copy()) if same_quant else \
        act_quant(rng, _f32(q.scale[0] * rng.uniform(0.3, 2.0)))
    g = Graph(name=op_type.lower())
    g.add_tensor(Tensor("x", shape, "int8", q))
    g.add_tensor(Tensor("y", shape, "int8", qo))
    g.add_op(Op(op_type, ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_relu(rng, **kw) -> Graph:
    return _unary(rng, "RELU", **kw)


def make_relu6(rng, **kw) -> Graph:
    return _unary(rng, "RELU6", **kw)


def make_logistic(rng, shape=None) -> Graph:
    """LOGISTIC: any input quantization (scales 2^-10..4), output (1/256, -128)."""
    shape = shape or _rand_shape4(rng)
    g = Graph(name="logistic")
    g.add_tensor(Tensor("x", shape, "int8",
                        Quant.per_tensor(_f32(np.exp2(rng.uniform(-10, 2))), rand_zp(rng))))
    g.add_tensor(Tensor("y", shape, "int8", Quant.per_tensor(1.0 / 256, -128)))
    g.add_op(Op("LOGISTIC", ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_tanh(rng, shape=None) -> Graph:
    """TANH: any input quantization (scales 2^-10..4), output (1/128, 0)."""
    shape = shape or _rand_shape4(rng)
    g = Graph(name="tanh")
    g.add_tensor(Tensor("x", shape, "int8",
                        Quant.per_tensor(_f32(np.exp2(rng.uniform(-10, 2))), rand_zp(rng))))
    g.add_tensor(Tensor("y", shape, "int8", Quant.per_tensor(1.0 / 128, 0)))
    g.add_op(Op("TANH", ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_hard_swish(rng, shape=None) -> Graph:
    """HARD_SWISH: input scales 2^-10..4, output scale 1/16..16 times the input's
    (TFLM needs it >= about input / 128), any zero points."""
    shape = shape or _rand_shape4(rng)
    in_s = _f32(np.exp2(rng.uniform(-10, 2)))
    g = Graph(name="hard_swish")
    g.add_tensor(Tensor("x", shape, "int8", act_quant(rng, in_s)))
    g.add_tensor(Tensor("y", shape, "int8",
                        act_quant(rng, _f32(in_s * np.exp2(rng.uniform(-4, 4))))))
    g.add_op(Op("HARD_SWISH", ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_leaky_relu(rng, shape=None, alpha=None) -> Graph:
    """LEAKY_RELU: a usual alpha (0.01..0.3) or any in [-1, 2); any quantizations."""
    shape = shape or _rand_shape4(rng)
    if alpha is None:
        alpha = float(rng.choice([0.01, 0.1, 0.2, 0.3])) if rng.integers(0, 2) else \
            float(rng.uniform(-1, 2))
    q = act_quant(rng)
    g = Graph(name="leaky_relu")
    g.add_tensor(Tensor("x", shape, "int8", q))
    g.add_tensor(Tensor("y", shape, "int8",
                        act_quant(rng, _f32(q.scale[0] * np.exp2(rng.uniform(-2, 2))))))
    g.add_op(Op("LEAKY_RELU", ["x"], ["y"], dict(alpha=_f32(alpha))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_transpose(rng, shape=None, perm=None) -> Graph:
    """TRANSPOSE of a 1-D to 5-D int8 tensor by a random permutation (int32 constant)."""
    if shape is None:
        rank = int(rng.choice([1, 2, 3, 4, 4, 4, 5]))
        shape = tuple(int(d) for d in rng.integers(1, 7, size=rank))
    perm = [int(p) for p in (rng.permutation(len(shape)) if perm is None else perm)]
    q = act_quant(rng)
    g = Graph(name="transpose")
    g.add_tensor(Tensor("x", tuple(shape), "int8", q))
    g.add_tensor(Tensor("perm", (len(perm),), "int32", data=np.asarray(perm, np.int32)))
    g.add_tensor(Tensor("y", tuple(shape[p] for p in perm), "int8",
                        Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op("TRANSPOSE", ["x", "perm"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_strided_slice(rng, shape=None, begin=None, end=None, strides=None, masks=None) -> Graph:
    """STRIDED_SLICE of a 1-D to 4-D int8 tensor: random begin/end (negative too, out of
    range too), strides (negative too), begin/end/shrink masks; a non-empty output with
    at least one axis."""
    from toolchain.ir.graph import IRError
    from toolchain.ir.ops.shape import SLICE_ATTRS
    fixed = shape is not None
    for _ in range(200):
        if not fixed:
            rank = int(rng.choice([1, 2, 3, 4, 4, 4]))
            shape = tuple(int(d) for d in rng.integers(1, 8, size=rank))
        rank = len(shape)
        b = list(begin) if begin is not None else \
            [int(rng.integers(-d - 2, d + 2)) for d in shape]
        e = list(end) if end is not None else [int(rng.integers(-d - 2, d + 2)) for d in shape]
        st = list(strides) if strides is not None else \
            [int(rng.choice([1, 1, 1, 2, 3, -1, -2])) for _ in shape]
        if masks is not None:
            attrs = dict(SLICE_ATTRS, **masks)
        else:
            m = [int(rng.integers(0, 1 << rank)) if rng.random() < 0.5 else 0 for _ in range(3)]
            shrink = m[2] & int(rng.integers(0, 1 << rank)) if rng.random() < 0.3 else 0
            attrs = dict(SLICE_ATTRS, begin_mask=m[0], end_mask=m[1], shrink_axis_mask=shrink)
        q = act_quant(rng)
        g = Graph(name="strided_slice")
        g.add_tensor(Tensor("x", tuple(shape), "int8", q))
        for n, v in (("begin", b), ("end", e), ("strides", st)):
            g.add_tensor(Tensor(n, (rank,), "int32", data=np.asarray(v, np.int32)))
        g.add_tensor(Tensor("y", (), "int8", Quant(q.scale.copy(), q.zero_point.copy())))
        op = g.add_op(Op("STRIDED_SLICE", ["x", "begin", "end", "strides"], ["y"], attrs))
        try:
            from toolchain.ir.ops import get
            out = get("STRIDED_SLICE").infer_shape(g, op)
        except IRError:
            continue
        if not out:
            continue
        g.t("y").shape = tuple(out)
        g.inputs, g.outputs = ["x"], ["y"]
        return g
    raise ValueError(f"no non-empty slice found for {shape}")


def make_prelu(rng, shape=None, alpha_shape=None) -> Graph:
    """PRELU: constant int8 alpha per channel (or per tensor / spatial), per-tensor
    quantized (slopes from -1 to 2), any input and output quantizations."""
    shape = shape or _rand_shape4(rng)
    if alpha_shape is None:
        alpha_shape = _pick(rng, None, ((shape[-1],), (1, 1, shape[-1]), (1,),
                                        tuple(shape[1:])))
    aq = Quant.per_tensor(rand_scale(rng, 0.002, 0.02), rand_zp(rng))
    a = rng.integers(-128, 128, size=alpha_shape).astype(np.int8)
    q = act_quant(rng)
    g = Graph(name="prelu")
    g.add_tensor(Tensor("x", tuple(shape), "int8", q))
    g.add_tensor(Tensor("alpha", tuple(alpha_shape), "int8", aq, a))
    g.add_tensor(Tensor("y", tuple(shape), "int8",
                        act_quant(rng, _f32(q.scale[0] * np.exp2(rng.uniform(-2, 2))))))
    g.add_op(Op("PRELU", ["x", "alpha"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_transpose_conv(rng, n=None, h=None, w=None, cin=None, cout=None, kh=None, kw=None,
                        stride=None, padding=None, output_shape=None, act=None,
                        per_channel=None, bias=None) -> Graph:
    """TRANSPOSE_CONV: random geometry (strides 1-3, also unequal; SAME/VALID; kernels
    smaller and larger than the stride), the output shape TFLite infers or a nearby one
    (TFLM takes any: rows no input reaches get only the bias), any fused activation."""
    from toolchain.ir.ops import get
    n = n or _pick(rng, None, (1, 1, 1, 2))
    cin = cin or int(rng.integers(1, 9))
    cout = cout or int(rng.integers(1, 9))
    kh = kh or int(rng.integers(1, 6))
    kw = kw or int(rng.integers(1, 6))
    if stride is None:
        sh = int(rng.integers(1, 4))
        sw = sh if rng.random() < 0.7 else int(rng.integers(1, 4))
    else:
        sh = sw = stride
    padding = _pick(rng, padding, ("SAME", "VALID"))
    h = h or int(rng.integers(1, 9))
    w = w or int(rng.integers(1, 9))
    per_channel = bool(rng.integers(0, 4)) if per_channel is None else per_channel
    bias = bool(rng.integers(0, 5)) if bias is None else bias
    g = Graph(name="transpose_conv")
    xq = act_quant(rng)
    g.add_tensor(Tensor("x", (n, h, w, cin), "int8", xq))
    wt, wq = _weights(rng, (cout, kh, kw, cin), 0, per_channel, cout)
    g.add_tensor(Tensor("w", wt.shape, "int8", wq, wt))
    taps = -(-kh // sh) * -(-kw // sw) * cin
    ins = ["x", "w"]
    if bias:
        b, bq = _bias(rng, cout, xq.scale[0], wq, taps)
        g.add_tensor(Tensor("b", b.shape, "int32", bq, b))
        ins.append("b")
    if output_shape is None and rng.random() < 0.3:
        base = (h * sh, w * sw) if padding == "SAME" else ((h - 1) * sh + kh, (w - 1) * sw + kw)
        output_shape = [n] + [max(1, d + int(rng.integers(-2, 3))) for d in base] + [cout]
    g.add_tensor(Tensor("y", (n, 1, 1, cout), "int8",
                        act_quant(rng, _out_scale(rng, xq.scale[0], wq, taps))))
    op = g.add_op(Op("TRANSPOSE_CONV", ins, ["y"],
                     dict(padding=padding, stride_h=sh, stride_w=sw, output_shape=output_shape,
                          fused_activation=_act(rng, act))))
    g.t("y").shape = get("TRANSPOSE_CONV").infer_shape(g, op)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_resize_nearest_neighbor(rng, shape=None, size=None, align_corners=None,
                                 half_pixel_centers=None) -> Graph:
    """RESIZE_NEAREST_NEIGHBOR: up- and downsampling by integer and fractional factors,
    every align_corners / half_pixel_centers combination, same quantization in and out."""
    if shape is None:
        shape = (int(_pick(rng, None, (1, 1, 2))),) + tuple(int(d) for d in rng.integers(1, 9, 2)) \
            + (int(rng.integers(1, 7)),)
    if size is None:
        if rng.random() < 0.4:
            f = int(rng.integers(2, 4))
            size = [shape[1] * f, shape[2] * f]
        else:
            size = [int(d) for d in rng.integers(1, 17, 2)]
    ac = bool(rng.integers(0, 2)) if align_corners is None else align_corners
    hp = bool(rng.integers(0, 2)) if half_pixel_centers is None else half_pixel_centers
    q = act_quant(rng)
    g = Graph(name="resize_nearest_neighbor")
    g.add_tensor(Tensor("x", tuple(shape), "int8", q))
    g.add_tensor(Tensor("size", (2,), "int32", data=np.asarray(size, np.int32)))
    g.add_tensor(Tensor("y", (shape[0], size[0], size[1], shape[3]), "int8",
                        Quant(q.scale.copy(), q.zero_point.copy())))
    g.add_op(Op("RESIZE_NEAREST_NEIGHBOR", ["x", "size"], ["y"],
                dict(align_corners=ac, half_pixel_centers=hp)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_quantize(rng, shape=None, from_float=None) -> Graph:
    """QUANTIZE float32 -> int8, or int8 -> int8 (requantize)."""
    shape = shape or _rand_shape4(rng)
    from_float = bool(rng.integers(0, 2)) if from_float is None else from_float
    g = Graph(name="quantize")
    if from_float:
        g.add_tensor(Tensor("x", shape, "float32"))
    else:
        g.add_tensor(Tensor("x", shape, "int8", act_quant(rng)))
    g.add_tensor(Tensor("y", shape, "int8", act_quant(rng)))
    g.add_op(Op("QUANTIZE", ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def make_dequantize(rng, shape=None) -> Graph:
    shape = shape or _rand_shape4(rng)
    g = Graph(name="dequantize")
    g.add_tensor(Tensor("x", shape, "int8", act_quant(rng)))
    g.add_tensor(Tensor("y", shape, "float32"))
    g.add_op(Op("DEQUANTIZE", ["x"], ["y"], {}))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def _make_sparse(rng, op_type):
    """One level (random) of a random subnet case (tests/subnets_cases.py) as its
    row-sparse op (toolchain/ir/ops/sparse.py)."""
    from subnets_cases import random_case
    from toolchain.subnets.graph import sparse_graphs
    case = random_case(rng, op_type)
    gs = sparse_graphs(case.shared)
    g = gs[int(rng.integers(len(gs)))]
    g.ops[0].name = g.ops[0].name or "sparse"
    return g


def make_sparse_conv2d(rng, **kw) -> Graph:
    return _make_sparse(rng, "CONV_2D")


def make_sparse_fully_connected(rng, **kw) -> Graph:
    return _make_sparse(rng, "FULLY_CONNECTED")


OP_BUILDERS = {
    "CONV_2D": make_conv2d, "DEPTHWISE_CONV_2D": make_depthwise_conv2d,
    "FULLY_CONNECTED": make_fully_connected, "AVERAGE_POOL_2D": make_average_pool2d,
    "MAX_POOL_2D": make_max_pool2d, "ADD": make_add, "MUL": make_mul,
    "SUB": make_sub, "MAXIMUM": make_maximum, "MINIMUM": make_minimum,
    "TRANSPOSE": make_transpose, "STRIDED_SLICE": make_strided_slice,
    "PRELU": make_prelu, "TRANSPOSE_CONV": make_transpose_conv,
    "RESIZE_NEAREST_NEIGHBOR": make_resize_nearest_neighbor,
    "RESHAPE": make_reshape, "SOFTMAX": make_softmax, "CONCATENATION": make_concatenation,
    "PAD": make_pad, "MEAN": make_mean, "RELU": make_relu, "RELU6": make_relu6,
    "QUANTIZE": make_quantize, "DEQUANTIZE": make_dequantize, "LOGISTIC": make_logistic,
    "TANH": make_tanh, "HARD_SWISH": make_hard_swish, "LEAKY_RELU": make_leaky_relu,
    "SPARSE_CONV_2D": make_sparse_conv2d, "SPARSE_FULLY_CONNECTED": make_sparse_fully_connected,
}


def make_random(rng, op_type: str, **kw) -> Graph:
    return OP_BUILDERS[op_type](rng, **kw)


def random_feeds(rng, graph: Graph) -> dict[str, np.ndarray]:
    """Random inputs: full-range int8 for int8 inputs; for float inputs, values
    spanning a bit beyond the consumer's quantized range (to exercise clamping)."""
    feeds = {}
    for n in graph.inputs:
        t = graph.t(n)
        if t.dtype == "int8":
            feeds[n] = rng.integers(-128, 128, size=t.shape).astype(np.int8)
        else:
            span = 1.0
            for op in graph.ops:
                if n in op.inputs and op.type == "QUANTIZE":
                    q = graph.t(op.outputs[0]).quant
                    span = float(q.scale[0]) * 300
            x = rng.uniform(-span, span, size=t.shape).astype(np.float32)
            # include exact half-way points of the quantization grid
            flat = x.reshape(-1)
            if flat.size > 2:
                for op in graph.ops:
                    if n in op.inputs and op.type == "QUANTIZE":
                        s = np.float32(graph.t(op.outputs[0]).quant.scale[0])
                        k = rng.integers(-100, 100, size=flat.size // 3)
                        flat[:k.size] = (k + 0.5).astype(np.float32) * s
            feeds[n] = x
    return feeds

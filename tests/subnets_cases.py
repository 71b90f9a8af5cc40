"""Random single-layer float models (CONV_2D / FULLY_CONNECTED) taken through the
subnet flow: nested masks by |w|, per-level int8 quantization on calibration
data, weights shared across levels (toolchain.subnets.quantize). Used by the
tests/test_subnets_*.py files.

    case = make_case(rng, "CONV_2D", cin=5, cout=7, kh=3, kw=3, stride=2)
    case.shared.graphs[k], case.store, case.x (int8 input per level), case.want[k]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.ir.graph import Graph, Op, Tensor
from toolchain.ir.reference import compute_padding
from toolchain.subnets.quantize import SharedLevels, quantize_levels
from toolchain.subnets.store import importance_order

LEVEL_SETS = [(0.5, 0.75, 0.9), (0.0, 0.5, 0.75, 0.9), (0.3, 0.6), (0.0, 0.8), (0.25,)]


def float_conv(rng, n=1, h=6, w=5, cin=3, cout=4, kh=3, kw=3, stride=1, dilation=1,
               padding="SAME", act="NONE", bias=True) -> Graph:
    g = Graph(name="conv")
    g.add_tensor(Tensor("x", (n, h, w, cin), "float32"))
    g.add_tensor(Tensor("w", (cout, kh, kw, cin), "float32", None,
                        rng.normal(0, 1 / np.sqrt(kh * kw * cin), (cout, kh, kw, cin))
                        .astype(np.float32)))
    ins = ["x", "w"]
    if bias:
        g.add_tensor(Tensor("b", (cout,), "float32", None,
                            rng.normal(0, 0.3, cout).astype(np.float32)))
        ins.append("b")
    oh, _ = compute_padding(stride, dilation, h, kh, padding)
    ow, _ = compute_padding(stride, dilation, w, kw, padding)
    g.add_tensor(Tensor("y", (n, oh, ow, cout), "float32"))
    g.add_op(Op("CONV_2D", ins, ["y"], dict(padding=padding, stride_h=stride, stride_w=stride,
                                            dilation_h=dilation, dilation_w=dilation,
                                            fused_activation=act)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def float_fc(rng, batch=1, k=20, out=6, act="NONE", bias=True) -> Graph:
    g = Graph(name="fc")
    g.add_tensor(Tensor("x", (batch, k), "float32"))
    g.add_tensor(Tensor("w", (out, k), "float32", None,
                        rng.normal(0, 1 / np.sqrt(k), (out, k)).astype(np.float32)))
    ins = ["x", "w"]
    if bias:
        g.add_tensor(Tensor("b", (out,), "float32", None, rng.normal(0, 0.3, out).astype(np.float32)))
        ins.append("b")
    g.add_tensor(Tensor("y", (batch, out), "float32"))
    g.add_op(Op("FULLY_CONNECTED", ins, ["y"], dict(fused_activation=act, keep_num_dims=False)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


@dataclass
class Case:
    name: str
    op_type: str
    levels: tuple
    shared: SharedLevels
    x: list            # int8 input per level (each level has its own input quantization)

    @property
    def store(self):
        return self.shared.stores["w"]


def make_case(rng, op_type, levels=None, n_calib=16, implicit_dense=True, **kw) -> Case:
    levels = levels or LEVEL_SETS[int(rng.integers(len(LEVEL_SETS)))]
    fg = float_conv(rng, **kw) if op_type == "CONV_2D" else float_fc(rng, **kw)
    shape = fg.t("x").shape
    calib = rng.normal(0.2, 1.0, (n_calib,) + shape[1:]).astype(np.float32)
    orders = {"w": importance_order(fg.t("w").data)}
    shared = quantize_levels(fg, orders, levels, calib, implicit_dense=implicit_dense)
    xf = rng.normal(0.2, 1.1, shape)
    xs = []
    for g in shared.graphs:
        q = g.t("x").quant
        xs.append(np.clip(np.round(xf / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8))
    return Case(f"{op_type}", op_type, tuple(levels), shared, xs)


def random_case(rng, op_type) -> Case:
    """Random geometry: row lengths not multiples of 4, strides, dilation, padding."""
    if op_type == "FULLY_CONNECTED":
        return make_case(rng, op_type, batch=int(rng.choice([1, 1, 2, 3])),
                         k=int(rng.integers(3, 80)), out=int(rng.integers(1, 12)),
                         act=str(rng.choice(["NONE", "RELU", "RELU6"])))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride = int(rng.choice([1, 1, 2, 3]))
    dil = int(rng.choice([1, 1, 2]))
    padding = str(rng.choice(["SAME", "VALID"]))
    h = int(rng.integers(1, 9)) + (kh - 1) * dil
    w = int(rng.integers(1, 9)) + (kw - 1) * dil
    return make_case(rng, op_type, n=int(rng.choice([1, 1, 2])), h=h, w=w,
                     cin=int(rng.integers(1, 11)), cout=int(rng.integers(1, 10)), kh=kh, kw=kw,
                     stride=stride, dilation=dil, padding=padding,
                     act=str(rng.choice(["NONE", "RELU", "RELU6"])),
                     bias=bool(rng.integers(0, 4)))

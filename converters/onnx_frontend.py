"""ONNX front end: an ONNX model (float32, static shapes) -> float IR Graph (NHWC).

Layout: ONNX image tensors are NCHW; the IR is NHWC. Every 4-D activation is
transposed (inputs, outputs and intermediates alike) and axis-carrying
attributes are remapped. 1-D feature maps (Conv1d, BatchNorm1d, the 1-D pools)
are ONNX (N, C, L) and become IR (N, 1, L, C): NCHW with H = 1, so they run as
CONV_2D / DEPTHWISE_CONV_2D / pooling with a 1-row kernel. A rank-3 graph input
is read as (N, C, L) when it reaches a conv, pool or BatchNormalization
(through element-wise ops); any other rank-3 tensor keeps its ONNX order.
Flattening a 4-D (or NCL) tensor gives a different element order in NHWC than
in PyTorch's NCHW, so the fully connected layer that reads a flattened tensor
gets its weight columns permuted (as TF converters do); any other consumer of
such a tensor is rejected.

Transpose: the ONNX permutation is composed with the value's layout, so the IR
TRANSPOSE permutes IR axes (NCHW values stay NCHW-labelled, NHWC in the IR; an
identity in IR axes becomes a RESHAPE). A rank-3 Transpose output also gets an
(N, C, L) view for a following Conv1d/pool: (N, T, F) -> transpose(1, 2) -> Conv1d is
a RESHAPE of the input to the IR's (N, 1, T, F), no data movement; the unused form
is pruned.

ConvTranspose (group 1, no dilation; 1-D as H = 1) becomes TRANSPOSE_CONV, followed by
a STRIDED_SLICE crop where TFLite's SAME/VALID padding cannot place ONNX's pads.
Resize / Upsample (mode nearest, constant scales or sizes) become RESIZE_NEAREST_NEIGHBOR
with the align_corners / half_pixel_centers flags whose source pixels equal ONNX's
(checked index by index in exact arithmetic); other combinations are refused.

Folding: constant subgraphs (the Shape/Gather/Unsqueeze/Concat chains that
torch.onnx.export emits for `x.view(x.size(0), -1)`) are evaluated at
conversion time; BatchNormalization is folded into the preceding conv/gemm;
ReLU/ReLU6 following conv/gemm/add become fused activations; Identity and
Dropout disappear; MatMul + Add(constant) becomes one FULLY_CONNECTED.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from toolchain.errors import ConvertError
from toolchain.ir.float_eval import same_padding
from toolchain.ir.graph import Graph, IRError, Op, Tensor

NCHW_TO_NHWC = (0, 2, 3, 1)
AXIS_NCHW_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
AXIS_NCL_TO_NHWC = {0: 0, 1: 3, 2: 2}        # (N, C, L) -> IR (N, 1, L, C)
SPATIAL = ("nchw", "ncl")
# ops through which a rank-3 graph input keeps its meaning on the way to a conv/pool
_NCL_PASS = {"Relu", "Clip", "Sigmoid", "Add", "Sub", "Mul", "Div", "Identity", "Dropout",
             "Pad", "Concat"}
_NCL_USE = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
            "GlobalMaxPool", "BatchNormalization"}


@dataclass
class _Val:
    ir: str                      # IR tensor name
    layout: str                  # "nchw": ONNX NCHW / IR NHWC; "ncl": ONNX (N, C, L) /
    #                              IR (N, 1, L, C); "same"; "flat_chw"
    onnx_shape: tuple
    chw: tuple | None = None     # for flat_chw: the (C, H, W) that was flattened (H = 1
    #                              for a flattened NCL tensor)


def _nhwc(shape):
    return tuple(shape[i] for i in NCHW_TO_NHWC)


def _ir_shape(shape, layout):
    """The IR shape of an ONNX-shaped value in `layout`."""
    if layout == "nchw":
        return _nhwc(shape)
    if layout == "ncl":
        n, c, length = shape
        return (n, 1, length, c)
    return tuple(shape)


def _as_nchw(shape, layout):
    """The (N, C, H, W) view of a spatial value's ONNX shape (H = 1 for NCL)."""
    if layout == "ncl":
        n, c, length = shape
        return (n, c, 1, length)
    return tuple(shape)


class _Converter:
    def __init__(self, model):
        import onnx
        from onnx import numpy_helper, shape_inference
        self.onnx = onnx
        self.nh = numpy_helper
        try:
            model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as e:  # noqa: BLE001 - inference failure is a model problem
            raise IRError(f"ONNX shape inference failed: {str(e).splitlines()[0]}") from None
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        model = self._prefold(model)
        self.model = model
        g = model.graph
        self.graph = Graph(name=g.name or "model")
        self.consts: dict[str, np.ndarray] = {}
        self.vals: dict[str, _Val] = {}
        self.shapes: dict[str, tuple | None] = {}
        self.producer: dict[str, Op] = {}     # IR tensor -> op producing it
        self.ncl_views: dict[str, _Val] = {}  # IR tensor ("same", rank 3) -> its NCL view
        self.outputs = [o.name for o in g.output]
        for vi in list(g.value_info) + list(g.output) + list(g.input):
            self.shapes[vi.name] = self._static_shape(vi)
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.uses: dict[str, int] = {}
        for node in g.node:
            for i in node.input:
                if i:
                    self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.outputs:
            self.uses[o] = self.uses.get(o, 0) + 1

    def _prefold(self, model):
        """Evaluate constant subgraphs into initializers and re-run shape inference until
        nothing changes, so shapes behind computed pads/reshapes become static."""
        from onnx import shape_inference
        m = self.onnx.ModelProto()
        m.CopyFrom(model)
        for _ in range(10):
            g = m.graph
            self.consts = {i.name: self.nh.to_array(i) for i in g.initializer}
            self.shapes = {vi.name: self._static_shape(vi)
                           for vi in list(g.value_info) + list(g.output) + list(g.input)}
            keep, folded = [], []
            for idx, node in enumerate(g.node):
                if not node.name:
                    node.name = f"{node.op_type}_{idx}"
                if node.domain in ("", "ai.onnx") and self.fold(node):
                    folded.extend(o for o in node.output if o)
                else:
                    keep.append(node)
            if not folded:
                break
            used = {i for n in keep for i in n.input} | {o.name for o in g.output}
            new_inits = [self.nh.from_array(np.asarray(self.consts[o]), o)
                         for o in folded if o in used]
            del g.node[:]
            g.node.extend(keep)
            g.initializer.extend(new_inits)
            del g.value_info[:]
            try:
                m = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
            except Exception as e:  # noqa: BLE001
                raise IRError(f"ONNX shape inference failed: {str(e).splitlines()[0]}") from None
        return m

    # -- shapes and values --------------------------------------------------------
    @staticmethod
    def _static_shape(vi):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            return None
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                return None
        return tuple(dims)

    def _shape_of(self, name, node):
        s = self.shapes.get(name)
        if s is None:
            raise IRError(f"cannot infer a static shape for '{name}' (output of "
                          f"{node.op_type} node '{node.name}'); export with fixed input shapes")
        return s

    def const(self, name, node, what="input"):
        if name not in self.consts:
            raise IRError(f"{node.op_type} node '{node.name}': {what} '{name}' must be a "
                          "constant (initializer), not a computed tensor")
        return self.consts[name]

    def act(self, name, node) -> _Val:
        if name in self.vals:
            return self.vals[name]
        if name in self.consts:
            raise IRError(f"{node.op_type} node '{node.name}': constant input '{name}' where "
                          "an activation is expected is not supported")
        raise IRError(f"{node.op_type} node '{node.name}': input '{name}' is not available")

    def add_const(self, base, data, dtype="float32"):
        data = np.ascontiguousarray(np.asarray(data).astype(dtype))
        name = self.graph.unique_name(base)
        self.graph.add_tensor(Tensor(name, data.shape, dtype, data=data))
        return name

    def new_act(self, onnx_name, ir_shape, layout, onnx_shape, chw=None) -> _Val:
        name = self.graph.unique_name(onnx_name)
        self.graph.add_tensor(Tensor(name, ir_shape, "float32"))
        v = _Val(name, layout, tuple(onnx_shape), chw)
        self.vals[onnx_name] = v
        return v

    def emit(self, type_, inputs, out: _Val, attrs=None, name=""):
        op = self.graph.add_op(Op(type_, list(inputs), [out.ir], dict(attrs or {}), name))
        self.producer[out.ir] = op
        return op

    def out_val(self, node, layout=None, i=0):
        """Create the IR tensor of node output i from its inferred ONNX shape."""
        name = node.output[i]
        shp = self._shape_of(name, node)
        if layout is None:
            layout = "nchw" if len(shp) == 4 else "same"
        if layout == "ncl" and len(shp) != 3:
            raise IRError(f"{node.op_type} node '{node.name}': output '{name}' of a 1-D "
                          f"(N, C, L) input has shape {list(shp)}")
        return self.new_act(name, _ir_shape(shp, layout), layout, shp)

    def alias(self, onnx_name, val: _Val):
        self.vals[onnx_name] = val

    def single_use(self, onnx_name, val: _Val):
        return (self.uses.get(onnx_name, 0) == 1 and onnx_name not in self.outputs
                and val.ir not in self.graph.inputs)

    def spatial(self, name, node) -> _Val:
        """Input `name` of a conv/pool/BatchNormalization as a spatial value: NCHW, or
        (N, C, L) = NCHW with H = 1. A rank-3 tensor kept in its ONNX order (e.g. made
        by a Reshape/Unsqueeze) qualifies when C == 1 or L == 1: then (N, C, L) and the
        IR's (N, 1, L, C) hold the elements in the same order, and one RESHAPE relabels it."""
        x = self.act(name, node)
        if x.layout in SPATIAL:
            return x
        shp = x.onnx_shape
        where = f"{node.op_type} node '{node.name}'"
        if x.layout == "same" and len(shp) == 3:
            if x.ir in self.ncl_views:
                return self.ncl_views[x.ir]
            n, c, length = shp
            if c != 1 and length != 1:
                raise IRError(f"{where}: input '{name}' {list(shp)} is a 3-D tensor computed "
                              "in its ONNX element order (by a reshape or a non-spatial op); "
                              "as (N, C, L) with C > 1 and L > 1 it would need a transpose "
                              "to the IR's (N, 1, L, C)")
            ir = self.graph.unique_name(f"{name}_ncl")
            self.graph.add_tensor(Tensor(ir, (n, 1, length, c), "float32"))
            v = _Val(ir, "ncl", shp)
            self.emit("RESHAPE", [x.ir], v, dict(new_shape=[n, 1, length, c]),
                      name=f"{node.name}_to_ncl")
            self.ncl_views[x.ir] = v
            return v
        raise IRError(f"{where}: only 1-D (N, C, L) and 2-D (N, C, H, W) inputs are "
                      f"supported (input shape {list(shp)})")

    # -- attributes ---------------------------------------------------------------
    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def spatial_attrs(self, node, x: _Val):
        """Attributes of a conv/pool node with 1-D kernel_shape/strides/dilations/pads
        widened to 2-D (H = 1: kernel 1, stride 1, dilation 1, no padding) for NCL input."""
        a = self.attrs(node)
        rank = 1 if x.layout == "ncl" else 2
        for key, n in (("kernel_shape", rank), ("strides", rank), ("dilations", rank),
                       ("pads", 2 * rank)):
            if key in a and len(a[key]) != n:
                raise IRError(f"{node.op_type} node '{node.name}': {key} {list(a[key])} does "
                              f"not fit its {rank + 2}-D input {list(x.onnx_shape)}")
        if rank == 1:
            for key in ("kernel_shape", "strides", "dilations"):
                if key in a:
                    a[key] = [1] + list(a[key])
            if "pads" in a:
                a["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
        return a

    def _opt_input(self, node, i):
        return node.input[i] if len(node.input) > i and node.input[i] else None

    # -- padding ------------------------------------------------------------------
    def resolve_padding(self, node, a, hw, k, s, d):
        """-> ("VALID"|"SAME", None) or ("EXPLICIT", [top, left, bottom, right])."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            return "VALID", None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            same = [same_padding(hw[i], k[i], s[i], d[i]) for i in range(2)]
            if auto == "SAME_UPPER":
                return "SAME", None
            return "EXPLICIT", [same[0][2], same[1][2], same[0][1], same[1][1]]
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise IRError(f"{node.op_type} node '{node.name}': only 2-D spatial ops are supported")
        if not any(pads):
            return "VALID", None
        same = [same_padding(hw[i], k[i], s[i], d[i]) for i in range(2)]
        if pads == [same[0][1], same[1][1], same[0][2], same[1][2]]:
            return "SAME", None
        return "EXPLICIT", pads

    def emit_pad(self, node, x: _Val, pads, value_ok=True) -> _Val:
        """Zero-pad H and W of an NHWC activation ([top, left, bottom, right])."""
        t, l, b, r = pads
        n, h, w, c = self.graph.t(x.ir).shape
        paddings = self.add_const(f"{node.output[0]}_paddings",
                                  np.array([[0, 0], [t, b], [l, r], [0, 0]]), "int32")
        name = self.graph.unique_name(f"{node.output[0]}_padded")
        self.graph.add_tensor(Tensor(name, (n, h + t + b, w + l + r, c), "float32"))
        if x.layout == "ncl":
            assert t == b == 0
            v = _Val(name, "ncl", (n, c, w + l + r))
        else:
            v = _Val(name, "nchw", (n, c, h + t + b, w + l + r))
        self.emit("PAD", [x.ir, paddings], v, name=f"{node.name or node.op_type}_pad")
        return v

    # -- handlers -----------------------------------------------------------------
    def conv(self, node):
        x = self.spatial(node.input[0], node)
        a = self.spatial_attrs(node, x)
        w = self.const(node.input[1], node, "weight").astype(np.float32)
        if w.ndim != len(x.onnx_shape):
            raise IRError(f"Conv node '{node.name}': weight of shape {list(w.shape)} does not "
                          f"fit input {list(x.onnx_shape)}")
        if x.layout == "ncl":
            w = w[:, :, None, :]            # Conv1d: a 1 x K kernel over H = 1
        b_name = self._opt_input(node, 2)
        b = self.const(b_name, node, "bias").astype(np.float32) if b_name else None
        o, ig, kh, kw = w.shape
        n, c, h, wd = _as_nchw(x.onnx_shape, x.layout)
        group = int(a.get("group", 1))
        s = list(a.get("strides", [1, 1]))
        d = list(a.get("dilations", [1, 1]))
        padding, pads = self.resolve_padding(node, a, (h, wd), (kh, kw), s, d)
        if padding == "EXPLICIT":
            x = self.emit_pad(node, x, pads)
            padding = "VALID"
        attrs = dict(padding=padding, stride_h=s[0], stride_w=s[1], dilation_h=d[0],
                     dilation_w=d[1], fused_activation="NONE")
        base = node.name or node.output[0]
        if group == 1:
            typ = "CONV_2D"
            wir = w.transpose(0, 2, 3, 1)
        elif group == c and ig == 1:
            typ = "DEPTHWISE_CONV_2D"
            wir = w.reshape(o, kh, kw).transpose(1, 2, 0)[None]
            attrs["depth_multiplier"] = o // c
        else:
            # grouped conv: one dense conv with block-diagonal weights (exact; g x the MACs)
            typ = "CONV_2D"
            dense = np.zeros((o, c, kh, kw), np.float32)
            og = o // group
            for gi in range(group):
                dense[gi * og:(gi + 1) * og, gi * ig:(gi + 1) * ig] = w[gi * og:(gi + 1) * og]
            wir = dense.transpose(0, 2, 3, 1)
        if b is None:
            b = np.zeros(o, np.float32)
        ins = [x.ir, self.add_const(f"{base}.weight", wir), self.add_const(f"{base}.bias", b)]
        out = self.out_val(node, x.layout)
        self.emit(typ, ins, out, attrs, name=node.name)

    def convtranspose(self, node):
        """ConvTranspose (2-D; 1-D as H = 1), group 1, no dilation -> TRANSPOSE_CONV.
        ONNX output o is full-result index o + pad_begin; TFLM's output o is index
        o + pad, pad = ComputePaddingHeightWidth(output size): where SAME or VALID gives
        pad == pad_begin on both axes the op is exact as is, otherwise (e.g. k3 s2 p1
        output_padding 1) the full result (VALID, pad 0, output_padding rows included) is
        cropped by a STRIDED_SLICE."""
        from toolchain.ir.ops.base import compute_padding
        where = f"ConvTranspose node '{node.name}'"
        x = self.spatial(node.input[0], node)
        a = self.spatial_attrs(node, x)
        w = self.const(node.input[1], node, "weight").astype(np.float32)
        if w.ndim != len(x.onnx_shape):
            raise IRError(f"{where}: weight of shape {list(w.shape)} does not fit input "
                          f"{list(x.onnx_shape)}")
        rank = 1 if x.layout == "ncl" else 2
        if x.layout == "ncl":
            w = w[:, :, None, :]
        group = int(a.get("group", 1))
        if group != 1:
            raise IRError(f"{where}: group={group} is not supported (TFLite TRANSPOSE_CONV "
                          "has no groups)")
        if list(a.get("dilations", [1, 1])) != [1, 1]:
            raise IRError(f"{where}: dilations {list(a['dilations'])} are not supported "
                          "(TFLite TRANSPOSE_CONV has no dilation)")
        if "output_shape" in a:
            raise IRError(f"{where}: the output_shape attribute is not supported; export "
                          "with pads and output_padding")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "VALID"):
            raise IRError(f"{where}: auto_pad={auto} is not supported; export with explicit "
                          "pads")
        cin, cout, kh, kw = w.shape
        n, c, h, wd = _as_nchw(x.onnx_shape, x.layout)
        if c != cin:
            raise IRError(f"{where}: weight expects {cin} input channels, got {c}")
        s = list(a.get("strides", [1, 1]))
        pads = [0, 0, 0, 0] if auto == "VALID" else list(a.get("pads", [0, 0, 0, 0]))
        opad = list(a.get("output_padding", [0] * rank))
        if len(opad) != rank:
            raise IRError(f"{where}: output_padding {opad} does not fit its {rank + 2}-D input")
        if rank == 1:
            opad = [0] + opad
        if min(pads) < 0 or any(not 0 <= opad[i] < max(s[i], 1) for i in range(2)):
            raise IRError(f"{where}: pads {pads} / output_padding {opad} out of range")
        oshape = _as_nchw(self._shape_of(node.output[0], node), x.layout)
        out_hw = [(h - 1) * s[0] + kh - pads[0] - pads[2] + opad[0],
                  (wd - 1) * s[1] + kw - pads[1] - pads[3] + opad[1]]
        if list(oshape[2:]) != out_hw or oshape[1] != cout:
            raise IRError(f"{where}: output shape {list(oshape)} is not the transposed "
                          f"convolution's {[n, cout] + out_hw}")
        base = node.name or node.output[0]
        b_name = self._opt_input(node, 2)
        b = self.const(b_name, node, "bias").astype(np.float32) if b_name else \
            np.zeros(cout, np.float32)
        ins = [x.ir, self.add_const(f"{base}.weight", w.transpose(1, 2, 3, 0)),
               self.add_const(f"{base}.bias", b)]
        padding = next((p for p in ("SAME", "VALID")
                        if all(compute_padding(s[i], 1, out_hw[i], (kh, kw)[i], p)[1] ==
                               pads[i] for i in range(2))), None)
        out = self.out_val(node, x.layout)
        if padding is not None:
            attrs = dict(padding=padding, stride_h=s[0], stride_w=s[1],
                         output_shape=list(self.graph.t(out.ir).shape), fused_activation="NONE")
            self.emit("TRANSPOSE_CONV", ins, out, attrs, name=node.name)
            return
        full = [(h - 1) * s[0] + kh + opad[0], (wd - 1) * s[1] + kw + opad[1]]
        fshape = (n, full[0], full[1], cout)
        fv = self.new_act(f"{node.output[0]}_full", fshape, "nchw", (n, cout) + tuple(full))
        self.emit("TRANSPOSE_CONV", ins, fv, dict(padding="VALID", stride_h=s[0], stride_w=s[1],
                                                  output_shape=list(fshape),
                                                  fused_activation="NONE"), name=node.name)
        begin = [0, pads[0], pads[1], 0]
        end = [n, pads[0] + out_hw[0], pads[1] + out_hw[1], cout]
        cins = [fv.ir] + [self.add_const(f"{node.output[0]}_crop_{k}", np.asarray(v, np.int32),
                                         "int32")
                          for k, v in (("begin", begin), ("end", end), ("strides", [1] * 4))]
        self.emit("STRIDED_SLICE", cins, out, {}, name=f"{node.name}_crop")

    # ONNX Resize coordinate transformations, as exact fractions (x: output index)
    _RESIZE_CTM = {
        "half_pixel": lambda x, sc, i, o: (x + Fraction(1, 2)) / sc - Fraction(1, 2),
        "pytorch_half_pixel": lambda x, sc, i, o:
            (x + Fraction(1, 2)) / sc - Fraction(1, 2) if o > 1 else Fraction(0),
        "align_corners": lambda x, sc, i, o:
            Fraction(0) if o == 1 else Fraction(x * (i - 1), o - 1),
        "asymmetric": lambda x, sc, i, o: x / sc,
        "tf_half_pixel_for_nn": lambda x, sc, i, o: (x + Fraction(1, 2)) / sc,
    }

    @staticmethod
    def _onnx_nearest(v: Fraction, mode: str) -> int:
        fl = v.numerator // v.denominator
        frac = v - fl
        if mode == "floor":
            return fl
        if mode == "ceil":
            return fl + (frac != 0)
        if frac == Fraction(1, 2):
            return fl + (mode == "round_prefer_ceil")
        return fl + (frac > Fraction(1, 2))

    def _resize(self, node, x: _Val, scales, sizes, ctm: str, nearest: str):
        """Nearest resize of H and W of an NCHW value -> RESIZE_NEAREST_NEIGHBOR with the
        TFLite flags whose source indices equal ONNX's (exact arithmetic) on both axes;
        anything else is refused naming the node."""
        from toolchain.ir.ops.resize import nearest_indices
        where = f"{node.op_type} node '{node.name}'"
        if x.layout != "nchw":
            raise IRError(f"{where}: only 4-D NCHW inputs can be resized (TFLite "
                          f"RESIZE_NEAREST_NEIGHBOR), not {list(x.onnx_shape)}")
        oshape = tuple(self._shape_of(node.output[0], node))
        ishape = tuple(x.onnx_shape)
        if len(oshape) != 4 or oshape[:2] != ishape[:2]:
            raise IRError(f"{where}: only H and W can be resized ({list(ishape)} -> "
                          f"{list(oshape)})")
        if ctm not in self._RESIZE_CTM:
            raise IRError(f"{where}: coordinate_transformation_mode={ctm} has no TFLite "
                          "equivalent")
        if nearest not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
            raise IRError(f"{where}: nearest_mode={nearest} is not supported")
        maps = []
        for ax in (2, 3):
            i, o = int(ishape[ax]), int(oshape[ax])
            if scales is not None:
                sc = Fraction(float(np.float32(scales[ax])))
                if sc <= 0:
                    raise IRError(f"{where}: scale {float(sc)} on axis {ax}")
            else:
                sc = Fraction(o, i)
            f = self._RESIZE_CTM[ctm]
            maps.append([min(max(self._onnx_nearest(f(xo, sc, i, o), nearest), 0), i - 1)
                         for xo in range(o)])
        for ac, hp in ((False, False), (False, True), (True, False)):
            if all(nearest_indices(int(oshape[ax]), int(ishape[ax]), ac, hp).tolist() == m
                   for ax, m in zip((2, 3), maps)):
                break
        else:
            raise IRError(f"{where}: coordinate_transformation_mode={ctm} with "
                          f"nearest_mode={nearest} picks source pixels ({list(ishape[2:])} -> "
                          f"{list(oshape[2:])}) that no TFLite RESIZE_NEAREST_NEIGHBOR mode "
                          "(align_corners, half_pixel_centers) reproduces")
        out = self.out_val(node, "nchw")
        size = self.add_const(f"{node.output[0]}_size", np.asarray(oshape[2:], np.int32),
                              "int32")
        self.emit("RESIZE_NEAREST_NEIGHBOR", [x.ir, size], out,
                  dict(align_corners=ac, half_pixel_centers=hp), name=node.name)

    def _str_attr(self, a, key, default):
        v = a.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    def resize(self, node):
        where = f"Resize node '{node.name}'"
        a = self.attrs(node)
        mode = self._str_attr(a, "mode", "nearest")
        if mode != "nearest":
            raise IRError(f"{where}: mode={mode} is not supported (TFLite Micro runs "
                          "RESIZE_NEAREST_NEIGHBOR: mode=nearest only)")
        if int(a.get("antialias", 0)):
            raise IRError(f"{where}: antialias=1 is not supported")
        x = self.act(node.input[0], node)
        if self.opset < 11:
            scales, sizes = self.const(node.input[1], node, "scales"), None
        else:
            scales = (self.const(node.input[2], node, "scales")
                      if self._opt_input(node, 2) else None)
            sizes = self.const(node.input[3], node, "sizes") if self._opt_input(node, 3) else None
            if scales is not None and np.asarray(scales).size == 0:
                scales = None
        rank = len(x.onnx_shape)
        axes = a.get("axes")
        for nm, v in (("scales", scales), ("sizes", sizes)):
            if v is None:
                continue
            v = [float(d) for d in np.asarray(v).reshape(-1)]
            if axes is not None:                  # opset 18: values for these axes only
                full = [1.0] * rank if nm == "scales" else [float(d) for d in x.onnx_shape]
                for ax, d in zip(axes, v):
                    full[int(ax) % rank] = d
                v = full
            if nm == "scales":
                scales = v
            else:
                sizes = v
        if sizes is not None:
            pol = self._str_attr(a, "keep_aspect_ratio_policy", "stretch")
            if pol != "stretch":
                raise IRError(f"{where}: keep_aspect_ratio_policy={pol} is not supported")
            scales = None
        self._resize(node, x, scales, sizes,
                     self._str_attr(a, "coordinate_transformation_mode", "half_pixel"),
                     self._str_attr(a, "nearest_mode", "round_prefer_floor"))

    def upsample(self, node):
        """Upsample (opset 7-9, deprecated): nearest is Resize asymmetric + floor."""
        a = self.attrs(node)
        mode = self._str_attr(a, "mode", "nearest")
        if mode != "nearest":
            raise IRError(f"Upsample node '{node.name}': mode={mode} is not supported "
                          "(nearest only)")
        scales = a.get("scales")
        if scales is None:
            scales = self.const(node.input[1], node, "scales")
        self._resize(node, self.act(node.input[0], node),
                     [float(d) for d in np.asarray(scales).reshape(-1)], None,
                     "asymmetric", "floor")

    def batchnorm(self, node):
        a = self.attrs(node)
        x = self.act(node.input[0], node)
        if len(x.onnx_shape) == 3:          # BatchNorm1d over (N, C, L)
            x = self.spatial(node.input[0], node)
        gamma, beta, mean, var = (self.const(node.input[i], node).astype(np.float64)
                                  for i in range(1, 5))
        scale = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        shift = beta - mean * scale
        p = self.producer.get(x.ir)
        if (p is not None and p.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                and p.attrs.get("fused_activation", "NONE") == "NONE"
                and self.single_use(node.input[0], x)):
            wt, bt = self.graph.t(p.inputs[1]), self.graph.t(p.inputs[2]) if \
                len(p.inputs) > 2 and p.inputs[2] else None
            if bt is None:
                bname = self.add_const(f"{p.name}.bias", np.zeros(len(scale)))
                p.inputs = p.inputs[:2] + [bname]
                bt = self.graph.t(bname)
            axis = 3 if p.type == "DEPTHWISE_CONV_2D" else 0
            shape = [1] * wt.data.ndim
            shape[axis] = -1
            wt.data = (wt.data * scale.reshape(shape)).astype(np.float32)
            bt.data = (bt.data * scale + shift).astype(np.float32)
            self.alias(node.output[0], x)
            return
        if x.layout not in SPATIAL and len(x.onnx_shape) != 2:
            raise IRError(f"BatchNormalization node '{node.name}' does not follow a conv/gemm "
                          "and its input is not NCHW, NCL or [N, C]")
        shp = (1, 1, 1, -1) if x.layout in SPATIAL else (1, -1)
        base = node.name or node.output[0]
        mid = self.new_act(node.output[0] + "_scaled", self.graph.t(x.ir).shape, x.layout,
                           x.onnx_shape)
        self.emit("MUL", [x.ir, self.add_const(f"{base}.scale", scale.reshape(shp))], mid,
                  name=f"{base}_mul")
        out = self.out_val(node, x.layout)
        self.emit("ADD", [mid.ir, self.add_const(f"{base}.shift", shift.reshape(shp))], out,
                  name=f"{base}_add")

    def _fc(self, node, x: _Val, w_out_in, bias):
        if x.layout == "flat_chw":
            c, h, wd = x.chw
            w_out_in = (w_out_in.reshape(-1, c, h, wd).transpose(0, 2, 3, 1)
                        .reshape(w_out_in.shape[0], -1))
        elif x.layout in SPATIAL:
            what = "4-D NCHW" if x.layout == "nchw" else "1-D (N, C, L) feature map"
            raise IRError(f"{node.op_type} node '{node.name}' on a {what} tensor "
                          f"{list(x.onnx_shape)} is not supported; flatten first")
        base = node.name or node.output[0]
        ins = [x.ir, self.add_const(f"{base}.weight", w_out_in)]
        if bias is not None:
            ins.append(self.add_const(f"{base}.bias", np.broadcast_to(
                bias.reshape(-1), (w_out_in.shape[0],))))
        out = self.out_val(node, "same")
        attrs = dict(fused_activation="NONE", keep_num_dims=len(x.onnx_shape) > 2)
        self.emit("FULLY_CONNECTED", ins, out, attrs, name=node.name)

    def gemm(self, node):
        a = self.attrs(node)
        if a.get("transA", 0):
            raise IRError(f"Gemm node '{node.name}': transA=1 is not supported")
        x = self.act(node.input[0], node)
        bm = self.const(node.input[1], node, "weight").astype(np.float32)
        w = bm if a.get("transB", 0) else bm.T
        w = w * float(a.get("alpha", 1.0))
        cn = self._opt_input(node, 2)
        bias = self.const(cn, node, "bias").astype(np.float32) * float(a.get("beta", 1.0)) \
            if cn else None
        if bias is not None and bias.size not in (1, w.shape[0]):
            raise IRError(f"Gemm node '{node.name}': bias of shape {bias.shape} is not per "
                          "output feature")
        self._fc(node, x, w, bias)

    def matmul(self, node):
        x = self.act(node.input[0], node)
        bm = self.const(node.input[1], node, "second operand (weights)").astype(np.float32)
        if bm.ndim != 2:
            raise IRError(f"MatMul node '{node.name}': weights must be 2-D, got {bm.shape}")
        self._fc(node, x, bm.T, None)

    def _const_like(self, x: _Val, c, node):
        c = np.asarray(c, np.float32)
        if c.size == 1:
            return c.reshape(1)
        if x.layout == "nchw":
            c4 = c.reshape((1,) * (4 - c.ndim) + c.shape)
            return c4.transpose(NCHW_TO_NHWC)
        if x.layout == "ncl":
            if c.ndim > 3:
                raise IRError(f"{node.op_type} node '{node.name}': a {c.ndim}-D constant on "
                              "a 1-D (N, C, L) tensor is not supported")
            c3 = c.reshape((1,) * (3 - c.ndim) + c.shape)
            return c3.transpose(0, 2, 1)[:, None]           # (n, c, l) -> (n, 1, l, c)
        if x.layout == "flat_chw":
            raise IRError(f"{node.op_type} node '{node.name}': a non-scalar constant operand "
                          "on a flattened NCHW tensor is not supported")
        return c

    def binary(self, node):
        typ = node.op_type
        i0, i1 = node.input[0], node.input[1]
        c0, c1 = i0 in self.consts, i1 in self.consts
        if c0 and not c1 and typ in ("Add", "Mul"):
            i0, i1, c0, c1 = i1, i0, False, True
        if c0 and not c1 and typ == "Sub":          # c - x: SUB with a constant first input
            x = self.act(i1, node)
            if x.layout == "flat_chw":
                raise IRError(f"Sub node '{node.name}': a constant minus a flattened NCHW "
                              "tensor is not supported")
            c = self.add_const(f"{node.name or node.output[0]}.const",
                               self._const_like(x, self.consts[i0].astype(np.float64), node))
            out = self.out_val(node, x.layout)
            self.emit("SUB", [c, x.ir], out, dict(fused_activation="NONE"), name=node.name)
            return
        if c0:
            raise IRError(f"{typ} node '{node.name}': constant first operand is not supported")
        x = self.act(i0, node)
        base = node.name or node.output[0]
        if c1:
            c = self.consts[i1].astype(np.float64)
            if typ == "Sub":
                c, typ = -c, "Add"
            elif typ == "Div":
                c, typ = 1.0 / c, "Mul"
            p = self.producer.get(x.ir)
            if (typ == "Add" and p is not None and p.type == "FULLY_CONNECTED"
                    and len(p.inputs) == 2 and self.single_use(i0, x)
                    and c.size == self.graph.t(p.inputs[1]).shape[0]
                    and c.reshape(-1).shape[0] == c.shape[-1]):
                p.inputs.append(self.add_const(f"{p.name}.bias", c.reshape(-1)))
                self.alias(node.output[0], x)
                return
            y = self.add_const(f"{base}.const", self._const_like(x, c, node))
        else:
            y_val = self.act(i1, node)
            if x.layout == "ncl" and y_val.layout == "same" and len(y_val.onnx_shape) == 3:
                y_val = self.spatial(i1, node)
            elif y_val.layout == "ncl" and x.layout == "same" and len(x.onnx_shape) == 3:
                x = self.spatial(i0, node)
            if y_val.layout != x.layout:
                raise IRError(f"{typ} node '{node.name}': operands have different layouts")
            y = y_val.ir
        out = self.out_val(node, x.layout if x.layout != "flat_chw" else None)
        if x.layout == "flat_chw":
            out.layout, out.chw = "flat_chw", x.chw
        ir_t = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}.get(typ)
        if ir_t is None:
            raise IRError(f"{typ} node '{node.name}': two-activation {typ} is not supported")
        self.emit(ir_t, [x.ir, y], out, dict(fused_activation="NONE"), name=node.name)

    def maxmin(self, node):
        """Max / Min of any number of inputs (tensors or constants, broadcasting): a
        chain of MAXIMUM / MINIMUM, which share one quantization."""
        kind = "MAXIMUM" if node.op_type == "Max" else "MINIMUM"
        names = [i for i in node.input if i]
        acts = [i for i in names if i not in self.consts]
        if not acts:
            raise IRError(f"{node.op_type} node '{node.name}': all inputs constant")
        x = self.act(acts[0], node)
        vals = []
        for i in names:
            if i in self.consts:
                vals.append(None)
                continue
            v = self.act(i, node)
            if x.layout == "ncl" and v.layout == "same" and len(v.onnx_shape) == 3:
                v = self.spatial(i, node)
            elif v.layout == "ncl" and x.layout == "same" and len(x.onnx_shape) == 3:
                x = self.spatial(acts[0], node)
            if v.layout == "flat_chw":
                raise IRError(f"{node.op_type} node '{node.name}': a flattened NCHW operand "
                              "is not supported")
            vals.append(v)
        ins = []
        for i, v in zip(names, vals):
            if v is None:
                ins.append(self.add_const(f"{node.name or node.output[0]}.const",
                                          self._const_like(x, self.consts[i], node)))
            else:
                if v.layout != x.layout:
                    raise IRError(f"{node.op_type} node '{node.name}': operands have "
                                  "different layouts")
                ins.append(v.ir)
        if len(ins) == 1:
            self.alias(node.output[0], x)
            return
        acc = ins[0]
        for k, b in enumerate(ins[1:], 1):
            if k == len(ins) - 1:
                out = self.out_val(node, x.layout)
            else:
                shp = tuple(np.broadcast_shapes(self.graph.t(acc).shape, self.graph.t(b).shape))
                out = _Val(self.graph.unique_name(f"{node.output[0]}_{k}"), x.layout, ())
                self.graph.add_tensor(Tensor(out.ir, shp, "float32"))
            self.emit(kind, [acc, b], out, name=node.name if k == len(ins) - 1
                      else f"{node.name}_{k}")
            acc = out.ir

    def _activation(self, node, kind):
        x = self.act(node.input[0], node)
        p = self.producer.get(x.ir)
        if (p is not None and p.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                         "ADD", "SUB", "TRANSPOSE_CONV") and p.attrs.get("fused_activation", "NONE") == "NONE"
                and self.single_use(node.input[0], x)):
            p.attrs["fused_activation"] = kind
            self.alias(node.output[0], x)
            return
        out = self.new_act(node.output[0], self.graph.t(x.ir).shape, x.layout, x.onnx_shape,
                           x.chw)
        self.emit(kind, [x.ir], out, name=node.name)

    def relu(self, node):
        self._activation(node, "RELU")

    def _elementwise(self, node, kind, attrs=None):
        """A one-input elementwise op (layout and shape kept), never fused."""
        x = self.act(node.input[0], node)
        out = self.new_act(node.output[0], self.graph.t(x.ir).shape, x.layout, x.onnx_shape,
                           x.chw)
        self.emit(kind, [x.ir], out, attrs, name=node.name)

    def sigmoid(self, node):
        self._elementwise(node, "LOGISTIC")

    def tanh(self, node):
        self._elementwise(node, "TANH")

    def hardswish(self, node):
        self._elementwise(node, "HARD_SWISH")

    def leakyrelu(self, node):
        alpha = float(np.float32(self.attrs(node).get("alpha", 0.01)))     # ONNX default
        self._elementwise(node, "LEAKY_RELU", dict(alpha=alpha))

    def prelu(self, node):
        """PRelu with a constant slope (per channel or one): PRELU, alpha in IR layout."""
        x = self.act(node.input[0], node)
        slope = self.const(node.input[1], node, "slope")
        alpha = self._const_like(x, slope, node)
        if x.layout == "nchw" and alpha.ndim == 4 and alpha.shape[:3] == (1, 1, 1):
            alpha = alpha.reshape(-1)                    # per channel: (C,)
        out = self.new_act(node.output[0], self.graph.t(x.ir).shape, x.layout, x.onnx_shape,
                           x.chw)
        self.emit("PRELU", [x.ir, self.add_const(f"{node.name or node.output[0]}.alpha", alpha)],
                  out, name=node.name)

    def clip(self, node):
        a = self.attrs(node)
        lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        if self._opt_input(node, 1):
            lo = float(self.const(node.input[1], node, "min"))
        if self._opt_input(node, 2):
            hi = float(self.const(node.input[2], node, "max"))
        if lo == 0 and hi == 6:
            self._activation(node, "RELU6")
        elif lo == 0 and np.isinf(hi):
            self._activation(node, "RELU")
        else:
            raise IRError(f"Clip node '{node.name}': only Clip(0, 6) (ReLU6) and Clip(0, inf) "
                          f"are supported, got Clip({lo}, {hi})")

    def _pool_common(self, node):
        """-> (input, attributes, kernel, strides, padding, pads), all 2-D (H = 1 for NCL)."""
        x = self.spatial(node.input[0], node)
        a = self.spatial_attrs(node, x)
        hw = _as_nchw(x.onnx_shape, x.layout)[2:]
        k = list(a["kernel_shape"])
        s = list(a.get("strides", [1, 1]))
        d = list(a.get("dilations", [1, 1]))
        if d != [1, 1]:
            raise IRError(f"{node.op_type} node '{node.name}': dilated pooling is not supported")
        padding, pads = self.resolve_padding(node, a, hw, k, s, d)
        if a.get("ceil_mode", 0):
            oshape = _as_nchw(self._shape_of(node.output[0], node), x.layout)
            h, w = hw
            pp = pads or [0, 0, 0, 0]
            floor_hw = [(h + pp[0] + pp[2] - k[0]) // s[0] + 1,
                        (w + pp[1] + pp[3] - k[1]) // s[1] + 1]
            if padding != "SAME" and list(oshape[2:]) != floor_hw:
                raise IRError(f"{node.op_type} node '{node.name}': ceil_mode=1 changes the "
                              "output size here; use ceil_mode=0")
        return x, a, k, s, padding, pads

    def maxpool(self, node):
        x, a, k, s, padding, pads = self._pool_common(node)
        if padding == "EXPLICIT":
            p = self.producer.get(x.ir)
            if p is not None and (p.type in ("RELU", "RELU6") or p.attrs.get(
                    "fused_activation") in ("RELU", "RELU6")):
                x = self.emit_pad(node, x, pads)     # input >= 0: zero padding is exact
                padding = "VALID"
            else:
                raise IRError(f"MaxPool node '{node.name}': padding {pads} is neither SAME nor "
                              "VALID (TFLite) and the input may be negative")
        out = self.out_val(node, x.layout)
        self.emit("MAX_POOL_2D", [x.ir], out, dict(padding=padding, stride_h=s[0],
                  stride_w=s[1], filter_h=k[0], filter_w=k[1]), name=node.name)

    def avgpool(self, node):
        x, a, k, s, padding, pads = self._pool_common(node)
        include = int(a.get("count_include_pad", 0))
        if padding == "SAME" and include:
            h, w = _as_nchw(x.onnx_shape, x.layout)[2:]
            _, pads_h0, pads_h1 = same_padding(h, k[0], s[0])
            _, pads_w0, pads_w1 = same_padding(w, k[1], s[1])
            pads, padding = [pads_h0, pads_w0, pads_h1, pads_w1], "EXPLICIT"
        if padding == "EXPLICIT":
            if not include:
                raise IRError(f"AveragePool node '{node.name}': padding {pads} with "
                              "count_include_pad=0 has no TFLite equivalent; use SAME padding "
                              "or count_include_pad=1")
            x = self.emit_pad(node, x, pads)   # zeros counted in the average: exact
            padding = "VALID"
        out = self.out_val(node, x.layout)
        self.emit("AVERAGE_POOL_2D", [x.ir], out, dict(padding=padding, stride_h=s[0],
                  stride_w=s[1], filter_h=k[0], filter_w=k[1]), name=node.name)

    def _global_pool(self, node, typ, keepdims=True):
        x = self.spatial(node.input[0], node)
        n, c, h, w = _as_nchw(x.onnx_shape, x.layout)
        attrs = dict(padding="VALID", stride_h=1, stride_w=1, filter_h=h, filter_w=w)
        if keepdims:
            out = self.out_val(node, x.layout)
            self.emit(typ, [x.ir], out, attrs, name=node.name)
            return
        mid = self.new_act(node.output[0] + "_pooled", (n, 1, 1, c), x.layout,
                           (n, c, 1, 1) if x.layout == "nchw" else (n, c, 1))
        self.emit(typ, [x.ir], mid, attrs, name=node.name)
        out = self.out_val(node, "same")
        self.emit("RESHAPE", [mid.ir], out, dict(new_shape=list(out.onnx_shape)),
                  name=f"{node.name}_reshape")

    def globalavgpool(self, node):
        self._global_pool(node, "AVERAGE_POOL_2D")

    def globalmaxpool(self, node):
        self._global_pool(node, "MAX_POOL_2D")

    def reducemean(self, node):
        a = self.attrs(node)
        axes = a.get("axes")
        if self._opt_input(node, 1):
            axes = self.const(node.input[1], node, "axes").tolist()
        x = self.act(node.input[0], node)
        if axes is not None:
            axes = sorted(int(ax) % len(x.onnx_shape) for ax in axes)
        if len(x.onnx_shape) == 3 and axes == [2]:
            x = self.spatial(node.input[0], node)
        if not ((x.layout == "nchw" and axes == [2, 3]) or (x.layout == "ncl" and axes == [2])):
            raise IRError(f"ReduceMean node '{node.name}': only the mean over H and W of an "
                          f"NCHW tensor or over L of an (N, C, L) tensor is supported "
                          f"(axes {axes} of {list(x.onnx_shape)})")
        self._global_pool(node, "AVERAGE_POOL_2D", bool(a.get("keepdims", 1)))

    def reshape(self, node):
        x = self.act(node.input[0], node)
        oshape = self._shape_of(node.output[0], node)
        ishape = x.onnx_shape
        if tuple(oshape) == tuple(ishape):
            self.alias(node.output[0], x)
            return

        def order_free(s):   # NCHW / NCL and the IR's NHWC flatten to the same order
            if len(s) == 3:
                return s[1] == 1 or s[2] == 1
            return len(s) == 4 and (s[1] == 1 or s[2] * s[3] == 1)
        where = f"{node.op_type} node '{node.name}' ({list(ishape)} -> {list(oshape)})"
        oshape = tuple(oshape)
        if x.layout == "flat_chw":
            raise IRError(f"{where}: reshaping a flattened NCHW tensor again is not supported")
        if x.layout in SPATIAL and not order_free(ishape):
            n, c, h, w = _as_nchw(ishape, x.layout)
            if x.layout == "ncl" and oshape == (n, c, 1, w):
                out = self.out_val(node, "nchw")       # (N, C, L) -> (N, C, 1, L): same IR
            elif x.layout == "nchw" and h == 1 and oshape == (n, c, w):
                out = self.out_val(node, "ncl")        # (N, C, 1, L) -> (N, C, L): same IR
            elif len(oshape) == 2 and oshape[0] == n:
                out = self.new_act(node.output[0], oshape, "flat_chw", oshape, (c, h, w))
            else:
                raise IRError(f"{where}: only flattening [N, C*H*W] of an NCHW tensor "
                              "(or [N, C*L] of an (N, C, L) one) is supported")
        elif len(oshape) == 4:
            if not order_free(oshape):
                raise IRError(f"{where}: reshaping to a 4-D NCHW tensor with C > 1 and "
                              "H*W > 1 changes the element order in NHWC")
            out = self.out_val(node, "nchw")
        else:
            out = self.out_val(node, "same")
        self.emit("RESHAPE", [x.ir], out, dict(new_shape=list(self.graph.t(out.ir).shape)),
                  name=node.name)

    def softmax(self, node):
        a = self.attrs(node)
        x = self.act(node.input[0], node)
        rank = len(x.onnx_shape)
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % rank
        ok = (x.layout == "same" and axis == rank - 1) or \
            (x.layout in SPATIAL and axis == 1 and (self.opset >= 13 or
                                                    int(np.prod(x.onnx_shape[2:])) == 1))
        if self.opset < 13 and x.layout == "same" and axis != rank - 1:
            ok = False
        if not ok:
            raise IRError(f"Softmax node '{node.name}': only softmax over the channel/last "
                          f"axis is supported (axis {axis} of {list(x.onnx_shape)})")
        out = self.out_val(node, x.layout)
        self.emit("SOFTMAX", [x.ir], out, dict(beta=1.0), name=node.name)

    def concat(self, node):
        a = self.attrs(node)
        vals = [self.vals.get(i) for i in node.input]
        ref = next((v for v in vals if v is not None and v.layout == "ncl"),
                   next((v for v in vals if v is not None), None))
        if ref is None:
            raise IRError(f"Concat node '{node.name}': all inputs constant")
        rank = len(ref.onnx_shape)
        axis = int(a["axis"]) % rank
        ins = []
        for i, v in zip(node.input, vals):
            if v is None:
                ins.append(self.add_const(f"{node.output[0]}_const",
                                          self._const_like(ref, self.consts[i], node)))
            else:
                if ref.layout == "ncl" and v.layout == "same" and len(v.onnx_shape) == 3:
                    v = self.spatial(i, node)
                if v.layout != ref.layout or v.layout == "flat_chw":
                    raise IRError(f"Concat node '{node.name}': inputs with mixed layouts")
                ins.append(v.ir)
        ir_axis = {"nchw": AXIS_NCHW_TO_NHWC, "ncl": AXIS_NCL_TO_NHWC}.get(
            ref.layout, {a: a for a in range(rank)})[axis]
        out = self.out_val(node, ref.layout)
        self.emit("CONCATENATION", ins, out, dict(axis=ir_axis, fused_activation="NONE"),
                  name=node.name)

    def pad(self, node):
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise IRError(f"Pad node '{node.name}': mode {mode} is not supported (constant only)")
        pads = a.get("pads")
        if self._opt_input(node, 1):
            pads = self.const(node.input[1], node, "pads")
        value = a.get("value", 0.0)
        if self._opt_input(node, 2):
            value = float(self.const(node.input[2], node, "constant_value"))
        if value != 0:
            raise IRError(f"Pad node '{node.name}': only zero padding is supported")
        if self._opt_input(node, 3):
            raise IRError(f"Pad node '{node.name}': the axes input is not supported")
        x = self.act(node.input[0], node)
        r = len(x.onnx_shape)
        pads = np.asarray(pads, np.int64).reshape(2, r).T      # [rank, (begin, end)]
        if (pads < 0).any():
            raise IRError(f"Pad node '{node.name}': negative padding is not supported")
        if x.layout == "flat_chw":
            raise IRError(f"Pad node '{node.name}': padding a flattened NCHW tensor")
        if self.shapes.get(node.output[0]) is None:     # pads computed by a folded chain
            self.shapes[node.output[0]] = tuple(
                int(d + p.sum()) for d, p in zip(x.onnx_shape, pads))
        if x.layout == "nchw":
            ir_pads = pads[list(NCHW_TO_NHWC)]
        elif x.layout == "ncl":                         # (N, C, L) -> (N, 1, L, C)
            ir_pads = np.stack([pads[0], np.zeros(2, np.int64), pads[2], pads[1]])
        else:
            ir_pads = pads
        out = self.out_val(node, x.layout)
        self.emit("PAD", [x.ir, self.add_const(f"{node.output[0]}_paddings", ir_pads, "int32")],
                  out, name=node.name)

    def transpose(self, node):
        x = self.act(node.input[0], node)
        rank = len(x.onnx_shape)
        perm = self.attrs(node).get("perm")
        perm = list(range(rank))[::-1] if perm is None else [int(p) % rank for p in perm]
        where = f"Transpose node '{node.name}'"
        if sorted(perm) != list(range(rank)):
            raise IRError(f"{where}: {perm} is not a permutation of {rank} axes")
        if x.layout == "flat_chw":
            raise IRError(f"{where}: transposing a flattened NCHW tensor is not supported")
        # ONNX value = IR tensor transposed by `to_onnx` (the inverse of the layout map)
        if x.layout == "nchw":
            src, to_onnx = x.ir, [0, 3, 1, 2]
        elif x.layout == "ncl":             # IR (N, 1, L, C): view it as (N, L, C) first
            n, c, length = x.onnx_shape
            src = self._reshaped(x.ir, (n, length, c), f"{node.name}_nlc")
            to_onnx = [0, 2, 1]
        else:
            src, to_onnx = x.ir, list(range(rank))
        onnx_perm = [to_onnx[p] for p in perm]          # ONNX output = src.transpose(this)
        oshape = tuple(self._shape_of(node.output[0], node))
        if rank == 4:                                   # output NCHW-labelled: IR NHWC
            out = self.out_val(node, "nchw")
            self._ir_transpose(src, [onnx_perm[i] for i in NCHW_TO_NHWC], out, node.name)
            return
        out = self.out_val(node, "same")
        self._ir_transpose(src, onnx_perm, out, node.name)
        if rank == 3:                                   # (N, C, L) view for a Conv1d
            n, c, length = oshape
            view = _Val(self.graph.unique_name(f"{node.output[0]}_ncl"), "ncl", oshape)
            self.graph.add_tensor(Tensor(view.ir, (n, 1, length, c), "float32"))
            ncl_perm = [onnx_perm[i] for i in (0, 2, 1)]     # IR (N, L, C) from src
            if ncl_perm == list(range(3)):
                self.emit("RESHAPE", [src], view, dict(new_shape=[n, 1, length, c]),
                          name=f"{node.name}_ncl")
            else:
                mid = self._reshaped(None, (n, length, c), f"{node.name}_ncl_t")
                self._ir_transpose(src, ncl_perm, _Val(mid, "same", ()), f"{node.name}_ncl_t")
                self.emit("RESHAPE", [mid], view, dict(new_shape=[n, 1, length, c]),
                          name=f"{node.name}_ncl")
            self.ncl_views[out.ir] = view

    def _reshaped(self, src, shape, base) -> str:
        """A new IR tensor of `shape`; RESHAPE'd from `src` unless src is None."""
        name = self.graph.unique_name(base)
        self.graph.add_tensor(Tensor(name, tuple(shape), "float32"))
        if src is not None:
            op = self.graph.add_op(Op("RESHAPE", [src], [name], dict(new_shape=list(shape)),
                                      base))
            self.producer[name] = op
        return name

    def _ir_transpose(self, src, perm, out: _Val, name):
        """TRANSPOSE `src` by `perm` (IR axes) into out; a RESHAPE when the permutation
        moves no data (only axes of size 1 change place)."""
        shape = self.graph.t(src).shape
        moved = [p for p in perm if shape[p] != 1]
        if moved == sorted(moved):
            self.emit("RESHAPE", [src], out, dict(new_shape=list(self.graph.t(out.ir).shape)),
                      name=name)
            return
        p = self.add_const(f"{name}_perm", np.asarray(perm, np.int32), "int32")
        self.emit("TRANSPOSE", [src, p], out, name=name)

    def slice(self, node):
        """ONNX Slice (constant starts/ends/axes/steps) -> STRIDED_SLICE in IR axes, with
        the ONNX bounds clamped as ONNX defines them (an end before index 0 of a
        backward slice becomes the end mask)."""
        where = f"Slice node '{node.name}'"
        x = self.act(node.input[0], node)
        if x.layout == "flat_chw":
            raise IRError(f"{where}: slicing a flattened NCHW tensor is not supported")
        rank = len(x.onnx_shape)
        if self.opset >= 10:
            starts = self.const(node.input[1], node, "starts")
            ends = self.const(node.input[2], node, "ends")
            axes = self.const(node.input[3], node, "axes") if self._opt_input(node, 3) else None
            steps = self.const(node.input[4], node, "steps") if self._opt_input(node, 4) else None
        else:
            a = self.attrs(node)
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        starts = [int(v) for v in np.asarray(starts).reshape(-1)]
        ends = [int(v) for v in np.asarray(ends).reshape(-1)]
        axes = list(range(len(starts))) if axes is None else \
            [int(v) % rank for v in np.asarray(axes).reshape(-1)]
        steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
        amap = {"nchw": AXIS_NCHW_TO_NHWC, "ncl": AXIS_NCL_TO_NHWC}.get(
            x.layout, {i: i for i in range(rank)})
        ir_shape = self.graph.t(x.ir).shape
        begin, end = [0] * len(ir_shape), [int(d) for d in ir_shape]
        strides, end_mask = [1] * len(ir_shape), 0
        for s, e, ax, st in zip(starts, ends, axes, steps):
            n = int(x.onnx_shape[ax])
            if st == 0:
                raise IRError(f"{where}: step 0")
            s, e = s + n if s < 0 else s, e + n if e < 0 else e
            if st > 0:
                s, e = min(max(s, 0), n), min(max(e, 0), n)
            else:
                s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
            k = amap[ax]
            begin[k], end[k], strides[k] = s, e, st
            if st < 0 and e == -1:
                end[k], end_mask = 0, end_mask | (1 << k)
        out = self.out_val(node, x.layout)
        ins = [x.ir] + [self.add_const(f"{node.output[0]}_{w}", np.asarray(v, np.int32), "int32")
                        for w, v in (("begin", begin), ("end", end), ("strides", strides))]
        self.emit("STRIDED_SLICE", ins, out, dict(end_mask=end_mask), name=node.name)

    def identity(self, node):
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.alias(node.output[0], self.act(node.input[0], node))

    HANDLERS = {
        "Conv": conv, "BatchNormalization": batchnorm, "Gemm": gemm, "MatMul": matmul,
        "Add": binary, "Sub": binary, "Mul": binary, "Div": binary,
        "Relu": relu, "Clip": clip, "Sigmoid": sigmoid, "Tanh": tanh, "HardSwish": hardswish,
        "LeakyRelu": leakyrelu, "MaxPool": maxpool, "AveragePool": avgpool,
        "GlobalAveragePool": globalavgpool, "GlobalMaxPool": globalmaxpool,
        "ReduceMean": reducemean, "Flatten": reshape, "Reshape": reshape, "Squeeze": reshape,
        "Unsqueeze": reshape, "Softmax": softmax, "Concat": concat, "Pad": pad,
        "Identity": identity, "Dropout": identity, "Max": maxmin, "Min": maxmin,
        "Transpose": transpose, "Slice": slice,
        "PRelu": prelu, "ConvTranspose": convtranspose, "Resize": resize, "Upsample": upsample,
    }
    # ops evaluated at conversion time when all their inputs are constants
    FOLDABLE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Mul",
                "Div", "Add", "Sub", "Reshape", "Transpose", "ConstantOfShape", "Identity",
                "Range", "Flatten", "Equal", "Where", "Expand", "ReduceProd", "Neg", "Floor",
                "Sqrt", "Max", "Min", "Size", "Tile"}

    # -- folding ------------------------------------------------------------------
    def fold(self, node) -> bool:
        if node.op_type == "Constant":
            a = self.attrs(node)
            if "value" in a:
                val = self.nh.to_array(a["value"])
            else:
                k, v = next(iter(a.items()))
                val = np.asarray(v, np.float32 if k.startswith("value_float") else np.int64)
            self.consts[node.output[0]] = val
            return True
        if node.op_type == "Shape" and node.input[0] not in self.consts:
            shp = self._shape_of(node.input[0], node)
            a = self.attrs(node)
            start, end = a.get("start", 0), a.get("end", None)
            self.consts[node.output[0]] = np.array(shp[start:end], np.int64)
            return True
        ins = [i for i in node.input if i]
        if node.op_type not in self.FOLDABLE or not all(i in self.consts for i in ins):
            return False
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        try:
            feeds = {i: np.asarray(self.consts[i]) for i in ins}
            vis = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                 v.shape) for k, v in feeds.items()]
            outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
            m = helper.make_model(helper.make_graph([node], "fold", vis, outs),
                                  opset_imports=[helper.make_opsetid("", self.opset)])
            res = ReferenceEvaluator(m).run(None, feeds)
        except Exception as e:  # noqa: BLE001
            raise IRError(f"cannot fold constant {node.op_type} node '{node.name}': "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        for o, r in zip(node.output, res):
            self.consts[o] = np.asarray(r)
        return True

    # -- driver -------------------------------------------------------------------
    def _ncl_inputs(self) -> set:
        """Rank-3 graph inputs that reach a conv, pool or BatchNormalization through
        element-wise ops: those are (N, C, L) feature maps (IR (N, 1, L, C))."""
        g = self.model.graph
        consumers: dict[str, list] = {}
        for node in g.node:
            for i in node.input:
                if i:
                    consumers.setdefault(i, []).append(node)
        found = set()
        for vi in g.input:
            if self._static_shape(vi) is None or len(self._static_shape(vi)) != 3:
                continue
            todo, seen = [vi.name], set()
            while todo and vi.name not in found:
                v = todo.pop()
                for node in consumers.get(v, []):
                    if node.op_type in _NCL_USE and node.input[0] == v:
                        found.add(vi.name)
                    elif node.op_type in ("Unsqueeze", "Reshape") and node.input[0] == v:
                        n, c, length = self.shapes.get(v) or (0, 0, 0)
                        if self.shapes.get(node.output[0]) == (n, c, 1, length):
                            found.add(vi.name)        # to NCHW with H = 1 (Conv2d 1 x K)
                    elif node.op_type in _NCL_PASS:
                        todo.extend(o for o in node.output if o and o not in seen)
                        seen.update(node.output)
        return found

    def run(self) -> Graph:
        import onnx
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        ncl_inputs = self._ncl_inputs()
        for vi in g.input:
            if vi.name in inits:
                continue
            et = vi.type.tensor_type.elem_type
            if et != onnx.TensorProto.FLOAT:
                raise IRError(f"input '{vi.name}' has dtype "
                              f"{onnx.TensorProto.DataType.Name(et).lower()}; only float32 "
                              "inputs are supported")
            shp = self._static_shape(vi)
            if shp is None:
                dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                        for d in vi.type.tensor_type.shape.dim]
                raise IRError(f"input '{vi.name}' has a dynamic shape {dims}; export with "
                              "fixed input shapes (no dynamic axes)")
            layout = ("nchw" if len(shp) == 4 else
                      "ncl" if len(shp) == 3 and vi.name in ncl_inputs else "same")
            self.graph.add_tensor(Tensor(vi.name, _ir_shape(shp, layout)))
            self.graph.inputs.append(vi.name)
            self.vals[vi.name] = _Val(vi.name, layout, shp)
        supported = sorted(self.HANDLERS)
        for idx, node in enumerate(g.node):
            if not node.name:
                node.name = f"{node.op_type}_{idx}"
            if node.domain not in ("", "ai.onnx"):
                raise IRError(f"unsupported op {node.domain}.{node.op_type} in node "
                              f"'{node.name}'; supported: {', '.join(supported)}")
            if self.fold(node):
                continue
            h = self.HANDLERS.get(node.op_type)
            if h is None:
                raise IRError(f"unsupported op {node.op_type} in node '{node.name}'; "
                              f"supported: {', '.join(supported)}")
            h(self, node)
        layouts = {}
        for o in g.output:
            if o.name not in self.vals:
                raise IRError(f"graph output '{o.name}' is a constant or not computed")
            v = self.vals[o.name]
            if v.layout == "flat_chw":
                raise IRError(f"graph output '{o.name}' is a flattened NCHW tensor; its element "
                              "order would differ in NHWC")
            self.graph.outputs.append(v.ir)
            layouts[v.ir] = {"nchw": "NHWC (ONNX NCHW)",
                             "ncl": "N,1,L,C (ONNX NCL)"}.get(v.layout, "as ONNX")
        self.graph.meta.update(
            source="onnx",
            input_layouts={n: {"nchw": "NCHW", "ncl": "NCL"}.get(self.vals[n].layout,
                                                               "as ONNX")
                           for n in self.graph.inputs},
            output_layouts=layouts,
            onnx_input_shapes={n: list(self.vals[n].onnx_shape) for n in self.graph.inputs})
        _prune(self.graph)
        from toolchain.ir.validate import validate
        validate(self.graph)
        return self.graph


def _prune(graph: Graph) -> None:
    """Drop data-movement ops whose output nobody reads (the unused form of a
    Transpose: plain or (N, C, L) view), then tensors nothing refers to (folded
    weights, aliases)."""
    while True:
        read = set(graph.outputs)
        for op in graph.ops:
            read.update(i for i in op.inputs if i)
        dead = [op for op in graph.ops if op.type in ("TRANSPOSE", "RESHAPE")
                and not any(o in read for o in op.outputs)]
        if not dead:
            break
        gone = {id(op) for op in dead}
        graph.ops = [op for op in graph.ops if id(op) not in gone]
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(i for i in op.inputs if i)
        used.update(op.outputs)
    for name in list(graph.tensors):
        if name not in used:
            del graph.tensors[name]


def load_onnx_model(path_or_model):
    import onnx
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        data, where = bytes(path_or_model), "ONNX bytes"
    else:
        where = os.fspath(path_or_model)
        try:
            with open(where, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConvertError(f"cannot read {where}: {e.strerror}") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises various types
        raise ConvertError(f"{where} is not a valid ONNX model (corrupt or truncated: "
                           f"{type(e).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise ConvertError(f"{where} is not a valid ONNX model (empty or truncated graph)")
    return model


def from_onnx(path_or_model) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) into a float32 NHWC IR graph.

    Raises ConvertError for unreadable files and IRError for models that use
    something the IR cannot express (one line naming op, node and reason)."""
    model = load_onnx_model(path_or_model)
    g = _Converter(model).run()
    if isinstance(path_or_model, (str, os.PathLike)):
        g.name = os.path.splitext(os.path.basename(os.fspath(path_or_model)))[0]
    return g

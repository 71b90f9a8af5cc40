"""IR Graph -> .tflite flatbuffer bytes, built with the TFLite schema object API
(ModelT, SubGraphT, TensorT, OperatorT, BufferT, ...) and flatbuffers.Builder.

    write_tflite(graph) -> bytes

Writes float and int8 graphs for the ops in OP_ATTRS that TFLite Micro runs.
Constant buffers are 16-byte aligned (as TF's converter does).  RESHAPE gets
both ReshapeOptions.new_shape and a constant int32 shape input.  Scales are
stored as float32 (the values the reference interpreter uses too).  Op versions
follow what TF's converter writes for these types (TFLM ignores versions).
"""
from __future__ import annotations

import flatbuffers
import numpy as np

from toolchain.errors import ConvertError
from toolchain.ir.graph import Graph, IRError
from toolchain.ir.ops.int16 import INT16_VERSION, is_int16

from .tflite_schema import (BUILTIN_CODE, DTYPE_TO_TENSOR_TYPE, FILE_IDENTIFIER, NAME_TO_ACT,
                            NAME_TO_PADDING, PLACEHOLDER_FOR_GREATER_OP_CODES, schema)

WRITABLE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
                "MAX_POOL_2D", "ADD", "MUL", "RESHAPE", "SOFTMAX", "CONCATENATION", "PAD",
                "MEAN", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "TANH",
                "HARD_SWISH", "LEAKY_RELU", "SUB", "MAXIMUM", "MINIMUM", "TRANSPOSE",
                "STRIDED_SLICE", "PRELU", "TRANSPOSE_CONV", "RESIZE_NEAREST_NEIGHBOR",
                # written as their dense form (OpDef.dense_form: CONV_2D / FULLY_CONNECTED
                # with the level's dense-with-zeros weights)
                "SPARSE_CONV_2D", "SPARSE_FULLY_CONNECTED")

# op versions TF's converter writes for int8 kernels (float32 kernels are version 1);
# tensorflow/lite/tools/versioning/op_version.cc: TANH int8 is 2 (like LOGISTIC),
# HARD_SWISH has one version, LEAKY_RELU int8 is 1 (2 is int16), SUB int8 is 2 (3 when
# it broadcasts over more than 4 dimensions), MAXIMUM / MINIMUM int8 are 2, TRANSPOSE
# int8 is 2 (4 for a 5-D input), STRIDED_SLICE int8 is 2, PRELU has
# one version, TRANSPOSE_CONV int8 is 2 (3 with a bias, 4 with a fused activation),
# RESIZE_NEAREST_NEIGHBOR int8 is 2 (3 with align_corners or half_pixel_centers)
_INT8_VERSION = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4,
                 "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "ADD": 2, "MUL": 2, "RESHAPE": 1,
                 "SOFTMAX": 2, "CONCATENATION": 2, "PAD": 2, "MEAN": 2, "RELU": 2,
                 "RELU6": 2, "QUANTIZE": 2, "DEQUANTIZE": 2, "LOGISTIC": 2, "TANH": 2,
                 "HARD_SWISH": 1, "LEAKY_RELU": 1, "SUB": 2,
                 "MAXIMUM": 2, "MINIMUM": 2, "TRANSPOSE": 2,
                 "STRIDED_SLICE": 2, "PRELU": 1, "TRANSPOSE_CONV": 2,
                 "RESIZE_NEAREST_NEIGHBOR": 2}


class _AlignedBufferT(schema.BufferT):
    """BufferT whose data vector starts on a 16-byte boundary."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), 16)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, 0)
        schema.BufferAddSize(builder, 0)
        return schema.BufferEnd(builder)


def _act(op) -> int:
    a = op.attr("fused_activation") or "NONE"
    if a not in NAME_TO_ACT:
        raise IRError(f"layer '{op.name}' ({op.type}): unsupported fused activation {a}")
    return NAME_TO_ACT[a]


def _options(op, graph):
    """(BuiltinOptions type, options object or None) for an IR op."""
    t = op.type
    BO = schema.BuiltinOptions
    if t == "CONV_2D":
        o = schema.Conv2DOptionsT()
        o.padding = NAME_TO_PADDING[op.attr("padding")]
        o.strideH, o.strideW = int(op.attr("stride_h")), int(op.attr("stride_w"))
        o.dilationHFactor, o.dilationWFactor = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
        o.fusedActivationFunction = _act(op)
        return BO.Conv2DOptions, o
    if t == "DEPTHWISE_CONV_2D":
        o = schema.DepthwiseConv2DOptionsT()
        o.padding = NAME_TO_PADDING[op.attr("padding")]
        o.strideH, o.strideW = int(op.attr("stride_h")), int(op.attr("stride_w"))
        o.dilationHFactor, o.dilationWFactor = int(op.attr("dilation_h")), int(op.attr("dilation_w"))
        o.depthMultiplier = int(op.attr("depth_multiplier"))
        o.fusedActivationFunction = _act(op)
        return BO.DepthwiseConv2DOptions, o
    if t == "FULLY_CONNECTED":
        o = schema.FullyConnectedOptionsT()
        o.fusedActivationFunction = _act(op)
        o.keepNumDims = bool(op.attr("keep_num_dims"))
        return BO.FullyConnectedOptions, o
    if t in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = schema.Pool2DOptionsT()
        o.padding = NAME_TO_PADDING[op.attr("padding")]
        o.strideH, o.strideW = int(op.attr("stride_h")), int(op.attr("stride_w"))
        o.filterHeight, o.filterWidth = int(op.attr("filter_h")), int(op.attr("filter_w"))
        o.fusedActivationFunction = _act(op)
        return BO.Pool2DOptions, o
    if t == "ADD":
        o = schema.AddOptionsT()
        o.fusedActivationFunction = _act(op)
        if is_int16(graph, op):
            o.potScaleInt16 = False      # general scales (TF's 16x8 converter writes this)
        return BO.AddOptions, o
    if t == "SUB":
        o = schema.SubOptionsT()
        o.fusedActivationFunction = _act(op)
        return BO.SubOptions, o
    if t == "MUL":
        o = schema.MulOptionsT()
        o.fusedActivationFunction = _act(op)
        return BO.MulOptions, o
    if t == "RESHAPE":
        o = schema.ReshapeOptionsT()
        # the shape as an attribute, as an int32 input tensor (Keras exports), or the output's
        shape = op.attr("new_shape")
        if shape is None and len(op.inputs) > 1 and op.inputs[1] and graph.t(op.inputs[1]).is_const:
            shape = graph.t(op.inputs[1]).data.reshape(-1)
        o.newShape = [int(d) for d in (shape if shape is not None else graph.t(op.outputs[0]).shape)]
        return BO.ReshapeOptions, o
    if t == "SOFTMAX":
        o = schema.SoftmaxOptionsT()
        o.beta = float(op.attr("beta"))
        return BO.SoftmaxOptions, o
    if t == "CONCATENATION":
        o = schema.ConcatenationOptionsT()
        o.axis = int(op.attr("axis"))
        o.fusedActivationFunction = _act(op)
        return BO.ConcatenationOptions, o
    if t == "PAD":
        return BO.PadOptions, schema.PadOptionsT()
    if t == "MEAN":
        o = schema.ReducerOptionsT()
        o.keepDims = bool(op.attr("keep_dims"))
        return BO.ReducerOptions, o
    if t == "QUANTIZE":
        return BO.QuantizeOptions, schema.QuantizeOptionsT()
    if t == "DEQUANTIZE":
        return BO.DequantizeOptions, schema.DequantizeOptionsT()
    if t == "STRIDED_SLICE":
        o = schema.StridedSliceOptionsT()
        o.beginMask, o.endMask = int(op.attr("begin_mask")), int(op.attr("end_mask"))
        o.ellipsisMask, o.newAxisMask = int(op.attr("ellipsis_mask")), int(op.attr("new_axis_mask"))
        o.shrinkAxisMask, o.offset = int(op.attr("shrink_axis_mask")), bool(op.attr("offset"))
        return BO.StridedSliceOptions, o
    if t == "TRANSPOSE":
        return BO.TransposeOptions, schema.TransposeOptionsT()
    if t == "TRANSPOSE_CONV":
        o = schema.TransposeConvOptionsT()
        o.padding = NAME_TO_PADDING[op.attr("padding")]
        o.strideH, o.strideW = int(op.attr("stride_h")), int(op.attr("stride_w"))
        o.fusedActivationFunction = _act(op)
        return BO.TransposeConvOptions, o
    if t == "RESIZE_NEAREST_NEIGHBOR":
        o = schema.ResizeNearestNeighborOptionsT()
        o.alignCorners = bool(op.attr("align_corners"))
        o.halfPixelCenters = bool(op.attr("half_pixel_centers"))
        return BO.ResizeNearestNeighborOptions, o
    if t in ("MAXIMUM", "MINIMUM"):
        return BO.MaximumMinimumOptions, schema.MaximumMinimumOptionsT()
    if t == "LEAKY_RELU":
        o = schema.LeakyReluOptionsT()
        o.alpha = float(np.float32(op.attr("alpha")))
        return BO.LeakyReluOptions, o
    return BO.NONE, None


def lower_dense_forms(graph: Graph) -> Graph:
    """Ops without a TFLite builtin of their own but with a `dense_form` in their op
    module (the row-sparse family) become that equivalent op (its dense weight tensor
    added); other graphs are returned unchanged."""
    from toolchain.ir import ops as _ops
    if not any(getattr(_ops.get(op.type), "dense_form", None) for op in graph.ops):
        return graph
    import copy
    g = copy.copy(graph)
    g.tensors = dict(graph.tensors)
    g.ops = []
    for op in graph.ops:
        d = _ops.get(op.type)
        if d is None or d.dense_form is None:
            g.ops.append(op)
            continue
        t, attrs, w = d.dense_form(graph, op)
        g.tensors[w.name] = w
        bias = op.inputs[2] if len(op.inputs) > 2 else ""
        g.ops.append(type(op)(t, [op.inputs[0], w.name] + ([bias] if bias else []),
                              list(op.outputs), attrs, op.name))
    used = {n for op in g.ops for n in op.inputs + op.outputs if n}
    used |= set(g.inputs) | set(g.outputs)
    g.tensors = {n: t for n, t in g.tensors.items() if n in used}
    return g


def write_tflite(graph: Graph, description: str = "mcu toolchain") -> bytes:
    """Serialize `graph` (subgraph 0) to .tflite bytes."""
    graph = lower_dense_forms(graph)
    for op in graph.ops:
        if op.type not in WRITABLE_OPS:
            raise IRError(f"unsupported op {op.type} in layer '{op.name}' for the TFLite writer; "
                          f"supported: {', '.join(sorted(WRITABLE_OPS))}")
    graph.topo_check()

    buffers = [_AlignedBufferT()]          # buffer 0: the empty sentinel
    tensors: list = []
    index: dict[str, int] = {}

    def add_tensor(name: str) -> int:
        if name in index:
            return index[name]
        t = graph.t(name)
        if t.dtype not in DTYPE_TO_TENSOR_TYPE:
            raise IRError(f"tensor '{name}': dtype {t.dtype} cannot be written to TFLite")
        tt = schema.TensorT()
        tt.name = name
        tt.shape = np.asarray(t.shape, dtype=np.int32)
        tt.type = DTYPE_TO_TENSOR_TYPE[t.dtype]
        tt.buffer = 0
        if t.data is not None:
            b = _AlignedBufferT()
            b.data = np.ascontiguousarray(np.asarray(t.data, dtype=t.dtype).astype(
                np.dtype(t.dtype).newbyteorder("<"))).tobytes()
            buffers.append(b)
            tt.buffer = len(buffers) - 1
        if t.quant is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(t.quant.scale, dtype=np.float32)
            q.zeroPoint = np.asarray(t.quant.zero_point, dtype=np.int64)
            q.quantizedDimension = int(t.quant.axis) if t.quant.axis is not None else 0
            tt.quantization = q
        tensors.append(tt)
        index[name] = len(tensors) - 1
        return index[name]

    def _const_i32(base: str, data: np.ndarray) -> int:
        """A constant int32 tensor the IR does not hold (RESHAPE's shape, TRANSPOSE_CONV's
        output_shape), under a name no tensor has."""
        name, i = base, 1
        while name in index or name in graph.tensors:
            name, i = f"{base}_{i}", i + 1
        tt = schema.TensorT()
        tt.name = name
        tt.shape = np.asarray([data.size], np.int32)
        tt.type = schema.TensorType.INT32
        b = _AlignedBufferT()
        b.data = np.asarray(data, np.int32).astype("<i4").tobytes()
        buffers.append(b)
        tt.buffer = len(buffers) - 1
        tensors.append(tt)
        index[name] = len(tensors) - 1
        return index[name]

    for n in graph.inputs:
        add_tensor(n)

    opcodes: list = []
    opcode_index: dict[tuple[str, int], int] = {}
    operators = []
    for op in graph.ops:
        int8 = any(graph.t(n).dtype == "int8" for n in op.inputs[:1] + op.outputs if n)
        version = _INT8_VERSION.get(op.type, 1) if int8 else 1
        if op.type == "TRANSPOSE" and int8 and len(graph.t(op.inputs[0]).shape) > 4:
            version = 4
        if op.type == "FULLY_CONNECTED" and op.attr("keep_num_dims"):
            version = max(version, 5)
        if op.type == "TRANSPOSE_CONV":
            if (op.attr("fused_activation") or "NONE") != "NONE":
                version = 4
            elif len(op.inputs) > 2 and op.inputs[2]:
                version = 3
        if op.type == "RESIZE_NEAREST_NEIGHBOR" and int8 and \
                (op.attr("align_corners") or op.attr("half_pixel_centers")):
            version = 3
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and not int8 and \
                (op.attr("dilation_h") != 1 or op.attr("dilation_w") != 1):
            version = 2
        if is_int16(graph, op):          # int16 activations ("16x8"): op_version.cc
            version = INT16_VERSION.get(op.type, version)
        key = (op.type, version)
        if key not in opcode_index:
            oc = schema.OperatorCodeT()
            code = BUILTIN_CODE[op.type]
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = version
            opcodes.append(oc)
            opcode_index[key] = len(opcodes) - 1
        ins = [add_tensor(n) if n else -1 for n in op.inputs]
        if op.type == "TRANSPOSE_CONV":
            # TFLite order: output_shape (int32 constant), weights, input[, bias]
            oshape = np.asarray(graph.t(op.outputs[0]).shape, np.int32)
            ins = [_const_i32(f"{op.outputs[0]}/output_shape", oshape), ins[1], ins[0]] + \
                ([ins[2]] if len(ins) > 2 and ins[2] >= 0 else [])
        if op.type == "RESHAPE" and len(ins) == 1:
            shp = np.asarray(op.attr("new_shape") or graph.t(op.outputs[0]).shape, np.int32)
            ins.append(_const_i32(f"{op.outputs[0]}/shape", shp))
        outs = [add_tensor(n) for n in op.outputs]
        o = schema.OperatorT()
        o.opcodeIndex = opcode_index[key]
        o.inputs = np.asarray(ins, np.int32)
        o.outputs = np.asarray(outs, np.int32)
        o.builtinOptionsType, o.builtinOptions = _options(op, graph)
        operators.append(o)
    for n in graph.outputs:
        add_tensor(n)

    sg = schema.SubGraphT()
    sg.name = graph.name
    sg.tensors = tensors
    sg.inputs = np.asarray([index[n] for n in graph.inputs], np.int32)
    sg.outputs = np.asarray([index[n] for n in graph.outputs], np.int32)
    sg.operators = operators

    model = schema.ModelT()
    model.version = 3
    model.description = description
    model.operatorCodes = opcodes
    model.subgraphs = [sg]
    model.buffers = buffers
    builder = flatbuffers.Builder(1024 + sum(len(b.data or b"") for b in buffers))
    try:
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    except Exception as e:
        raise ConvertError(f"cannot serialize graph '{graph.name}' to TFLite: {e}") from None
    return bytes(builder.Output())

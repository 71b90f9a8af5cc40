"""TFLite flatbuffer (.tflite) -> IR Graph.

`read_tflite(path_or_bytes) -> Graph` reads float and int8 models (TF converter
output, MLPerf Tiny): tensors with shapes, dtypes, per-tensor / per-channel
quantization (axis), constant buffers, op attributes (OP_ATTRS names).
RESHAPE is normalized to the `new_shape` attribute (its shape input is dropped);
SQUEEZE and EXPAND_DIMS are read as RESHAPE to their output shape (ALIASES).
Ops without options (PAD, RELU, RELU6, LOGISTIC, TANH, HARD_SWISH, QUANTIZE, ...) get
no attributes; LEAKY_RELU gets `alpha` (LeakyReluOptions, 0.0 when absent, as TFLM).
TRANSPOSE_CONV's inputs (output_shape, weights, input[, bias]) become the IR's (input,
weights[, bias]) with the output tensor's shape as `output_shape` (what TFLM uses).
Op codes: max(builtin_code, deprecated_builtin_code), as TFLite does.

Errors: an op the IR does not know -> IRError naming op, layer (its first output
tensor name) and the supported list; an unreadable/corrupt/truncated file ->
ConvertError, one line.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolchain.errors import ConvertError
from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor
from toolchain.ir.validate import validate

from .tflite_schema import (ACT_TO_NAME, BUILTIN_NAME, FILE_IDENTIFIER, NP_DTYPE,
                            PADDING_TO_NAME, TENSOR_TYPE_TO_DTYPE, schema)

SUPPORTED_OPS = ops.family("int8")     # the TFLite builtins (not the spiking ops)
# builtins that are another op of the IR: SQUEEZE and EXPAND_DIMS only relabel the
# shape (TFLM copies the bytes), so they become RESHAPE to their output shape (the
# writer writes RESHAPE)
ALIASES = {"SQUEEZE": "RESHAPE", "EXPAND_DIMS": "RESHAPE"}


def _name(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else str(b)


def _act(opts, op_type, layer) -> str:
    a = ACT_TO_NAME.get(getattr(opts, "fusedActivationFunction", 0), None)
    if a is None or a in ("TANH", "SIGN_BIT"):
        raise IRError(f"layer '{layer}' ({op_type}): unsupported fused activation "
                      f"{a or getattr(opts, 'fusedActivationFunction', '?')}")
    return a


def _attrs(op_type: str, opts, layer: str) -> dict:
    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        d = dict(padding=PADDING_TO_NAME[opts.padding], stride_h=int(opts.strideH),
                 stride_w=int(opts.strideW), dilation_h=int(opts.dilationHFactor),
                 dilation_w=int(opts.dilationWFactor),
                 fused_activation=_act(opts, op_type, layer))
        if op_type == "DEPTHWISE_CONV_2D":
            d["depth_multiplier"] = int(opts.depthMultiplier)
        return d
    if op_type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return dict(padding=PADDING_TO_NAME[opts.padding], stride_h=int(opts.strideH),
                    stride_w=int(opts.strideW), filter_h=int(opts.filterHeight),
                    filter_w=int(opts.filterWidth), fused_activation=_act(opts, op_type, layer))
    if op_type == "FULLY_CONNECTED":
        if opts is not None and opts.weightsFormat != 0:
            raise IRError(f"layer '{layer}' (FULLY_CONNECTED): shuffled weights format "
                          "is not supported")
        return dict(fused_activation=_act(opts, op_type, layer) if opts else "NONE",
                    keep_num_dims=bool(opts.keepNumDims) if opts else False)
    if op_type in ("ADD", "SUB", "MUL"):
        return dict(fused_activation=_act(opts, op_type, layer) if opts else "NONE")
    if op_type == "SOFTMAX":
        return dict(beta=float(opts.beta) if opts else 1.0)
    if op_type == "CONCATENATION":
        return dict(axis=int(opts.axis), fused_activation=_act(opts, op_type, layer))
    if op_type == "MEAN":
        return dict(keep_dims=bool(opts.keepDims) if opts else False)
    if op_type == "STRIDED_SLICE":
        if opts is None:
            return {}
        return dict(begin_mask=int(opts.beginMask), end_mask=int(opts.endMask),
                    ellipsis_mask=int(opts.ellipsisMask), new_axis_mask=int(opts.newAxisMask),
                    shrink_axis_mask=int(opts.shrinkAxisMask), offset=bool(opts.offset))
    if op_type == "LEAKY_RELU":
        return dict(alpha=float(np.float32(opts.alpha)) if opts else 0.0)
    if op_type == "TRANSPOSE_CONV":
        return dict(padding=PADDING_TO_NAME[opts.padding], stride_h=int(opts.strideH),
                    stride_w=int(opts.strideW), fused_activation=_act(opts, op_type, layer))
    if op_type == "RESIZE_NEAREST_NEIGHBOR":
        return dict(align_corners=bool(opts.alignCorners) if opts else False,
                    half_pixel_centers=bool(opts.halfPixelCenters) if opts else False)
    return {}


def _load_bytes(path_or_bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "<bytes>"
    p = Path(os.fspath(path_or_bytes))
    try:
        return p.read_bytes(), str(p)
    except OSError as e:
        raise ConvertError(f"cannot read TFLite file {p}: {e.strerror or e}") from None


def read_tflite(path_or_bytes) -> Graph:
    """Read a .tflite model (path or bytes) into a Graph (subgraph 0)."""
    buf, where = _load_bytes(path_or_bytes)
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise ConvertError(f"{where} is not a TFLite model (missing 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
        return _to_graph(model, buf, where)
    except (IRError, ConvertError):
        raise
    except Exception as e:  # flatbuffers internals on corrupt input
        raise ConvertError(f"{where}: corrupt or truncated TFLite file "
                           f"({type(e).__name__}: {e})") from None


def _buffer_bytes(model, raw: bytes, idx: int) -> bytes | None:
    if idx <= 0 or model.buffers is None or idx >= len(model.buffers):
        if model.buffers is not None and idx >= len(model.buffers):
            raise ConvertError(f"buffer index {idx} out of range")
        return None
    b = model.buffers[idx]
    if b.data is not None and len(b.data) > 0:
        return np.asarray(b.data, dtype=np.uint8).tobytes()
    if b.offset > 1 and b.size > 0:            # buffers stored after the flatbuffer (>2 GB form)
        if b.offset + b.size > len(raw):
            raise ConvertError("buffer extends past the end of the file")
        return raw[b.offset:b.offset + b.size]
    return None


def _to_graph(model, raw: bytes, where: str) -> Graph:
    if not model.subgraphs:
        raise ConvertError(f"{where}: model has no subgraph")
    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    g = Graph(name=_name(sg.name) or Path(where).stem or "model")
    names: list[str] = []
    for i, t in enumerate(tensors):
        dtype = TENSOR_TYPE_TO_DTYPE.get(t.type)
        nm = _name(t.name) or f"t{i}"
        nm = g.unique_name(nm)
        names.append(nm)
        if dtype is None:
            raise ConvertError(f"{where}: tensor '{nm}' has unsupported type {t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        quant = None
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 0:
            zp = q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else \
                np.zeros(len(q.scale), np.int64)
            axis = int(q.quantizedDimension) if len(q.scale) > 1 else None
            quant = Quant(np.asarray(q.scale, np.float32).astype(np.float64),
                          np.asarray(zp, np.int64), axis)
        data = None
        raw_b = _buffer_bytes(model, raw, int(t.buffer))
        if raw_b is not None:
            npd = np.dtype(NP_DTYPE[dtype]).newbyteorder("<")
            n = int(np.prod(shape, dtype=np.int64))
            if len(raw_b) != n * npd.itemsize:
                raise ConvertError(f"{where}: tensor '{nm}' buffer holds {len(raw_b)} bytes, "
                                   f"shape {list(shape)} needs {n * npd.itemsize}")
            data = np.frombuffer(raw_b, dtype=npd).astype(NP_DTYPE[dtype]).reshape(shape)
        tt = g.add_tensor(Tensor(nm, shape, dtype, quant, data))
        tt.meta["tflite_index"] = i

    codes = model.operatorCodes or []
    for k, op in enumerate(sg.operators or []):
        if op.opcodeIndex >= len(codes):
            raise ConvertError(f"{where}: operator {k} uses opcode index {op.opcodeIndex} "
                               "out of range")
        oc = codes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        outs = [names[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        layer = outs[0] if outs else f"op{k}"
        if code == schema.BuiltinOperator.CUSTOM:
            op_type = f"CUSTOM({_name(oc.customCode)})"
        else:
            op_type = BUILTIN_NAME.get(code, f"BUILTIN_{code}")
        op_type = ALIASES.get(op_type, op_type)
        if op_type not in SUPPORTED_OPS:
            raise IRError(f"unsupported op {op_type} in layer '{layer}'; supported: "
                          f"{', '.join(sorted(SUPPORTED_OPS))}")
        ins = [names[i] if i >= 0 else "" for i in (op.inputs if op.inputs is not None else [])]
        attrs = _attrs(op_type, op.builtinOptions, layer)
        if op_type == "RESHAPE":
            attrs = dict(new_shape=list(g.t(outs[0]).shape))
            ins = ins[:1]
        if op_type in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) == 3 \
                and ins[2] == "":
            ins = ins[:2]
        if op_type == "TRANSPOSE_CONV":
            # TFLite (output_shape, weights, input[, bias]) -> IR (input, weights[, bias]);
            # TFLM takes the output shape from the output tensor (the shape input unread)
            if len(ins) not in (3, 4):
                raise IRError(f"layer '{layer}' (TRANSPOSE_CONV): {len(ins)} inputs, "
                              "TFLite has 3 or 4")
            ins = [ins[2], ins[1]] + ([ins[3]] if len(ins) == 4 and ins[3] else [])
            attrs["output_shape"] = list(g.t(outs[0]).shape)
        g.add_op(Op(op_type, ins, outs, attrs, name=layer))

    g.inputs = [names[i] for i in (sg.inputs if sg.inputs is not None else [])]
    g.outputs = [names[i] for i in (sg.outputs if sg.outputs is not None else [])]
    # Drop tensors nothing refers to (e.g. RESHAPE's shape input).
    used = set(g.inputs) | set(g.outputs)
    for op in g.ops:
        used.update(n for n in op.inputs + op.outputs if n)
    g.tensors = {n: t for n, t in g.tensors.items() if n in used}
    g.meta["source"] = "tflite"
    validate(g)
    return g

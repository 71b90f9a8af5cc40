"""The op registry's record type and the helpers every op family shares.

An op family module (conv.py, pooling.py, ...) describes each of its ops once, as an
`OpDef`, and registers it with `register`. Every layer looks ops up here: the IR
(attributes, validation), the float evaluator and the int8 reference interpreter,
the quantizer, the code generator (kernel parameters, scratch, in-place and
row-delayed capability, the kernel call), and patch training (the PyTorch form).
A field left None means "this op has no such form": e.g. QUANTIZE has no runtime
kernel, so `kernel_params`/`emit` are None and the code generator refuses it,
naming op and layer.

Signatures of the callables (g: Graph, op: Op):
- infer_shape(g, op) -> tuple: the output shape from the inputs and attributes
  (the validator checks every front end's declared shapes against it).
- float_eval(g, op, inp) -> ndarray; inp(i) is the float value of input i or None.
- reference(g, op, values) -> ndarray: int8 semantics bit-exact with TFLite Micro;
  `values` maps tensor names to arrays (constants included).
- kernel_params(g, op) -> dict: exactly what the C kernel takes (TFLM Prepare).
- scratch(p, variant, patchable, rt) -> int: scratch bytes for the kernel variant;
  `rt` is the code generator's runtime sizer (toolchain.codegen.scratch.RUNTIME_SIZER),
  which asks the C runtime's own *_scratch_size functions.
- emit(em, k, op, p) -> list[str]: C statements of layer k's run function; `em` is the
  code generator's emitter (toolchain.codegen.generate._Emitter).
- inplace(g, op) -> list[int] | None: inputs whose buffer the output may overwrite.
- macs(g, op) -> int: multiply-accumulates (reports, the fake device's timing model).
- dense_form(g, op) -> (op_type, attrs, weight Tensor): ops with no TFLite builtin of
  their own (the row-sparse family) are written to .tflite as this equivalent op
  (converters.tflite_writer), so tflite-micro checks them too.
- torch(m, op, x, inp) -> torch.Tensor: the op in PyTorch for patch training; `m` is
  the toolchain.patch.torch_graph.GraphModule, x the first input, inp(i) the others.

Spiking ops (family "snn": neurons.py, synapses.py; docs/snn.md) and the int8 ops a
spiking graph also uses (FULLY_CONNECTED, RESHAPE, AVERAGE_POOL_2D, ADD) describe their
time-step semantics with these fields (toolchain.snn looks them up; it holds no per-op
branches):
- snn_role: "synapse" (weights; its input events are counted; exactly one neuron layer
  reads it in fixed point), "neuron" (state tensors op.inputs[1:], one per name in
  `states`), "pool", "view" (a reshape), "fanin" (float only: ADD, SCALE).
- spiking: the output is 0/1 spikes (counted per layer); else a current or membrane.
- step_float(op, ins, out_shape) -> (y, new_states): one time step in float32 on a batch;
  ins are the input values in op.inputs order (neuron state included), out_shape the
  output's shape with the batch; new_states replace op.inputs[1:] (neurons; [] else).
- step_fixed(kern, p, ins, out_shape) -> (y, new_states): the same in the integer form
  (toolchain/snn/fixed_point.py), bit-exact with firmware_templates/runtime/snn.c; p: the
  op's integer parameters, kern: the kernel set (numpy here, the C kernels in tests) with
  fc_acc, conv_acc, sum_pool, neuron_step.
- emit_snn(em, k, op) -> None: layer k's C (toolchain/snn/codegen.py): adds constants,
  buffers and the per-step / once-per-sample kernel calls to the SNN emitter `em`.
- float_only: why the op has no fixed-point form (quantization refuses it with this).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from toolchain.ir import quant_math as qm
from toolchain.ir.graph import Graph, IRError, Op, Tensor
from toolchain.ir.op_tables import OP_ATTRS, WEIGHT_ROLES


@dataclass(frozen=True)
class QuantRule:
    """How the post-training quantizer treats an op (converters/quantize.py)."""
    weight_axis: int | str | None = None   # weights input 1: None (no weights), an axis,
    #                                         or "fc" (per tensor, per channel on request)
    fusable: bool = False                  # a following RELU/RELU6 folds into it
    same_quant: str | None = None          # "first" / "all": data inputs share the output's
    #                                         quantization (TFLM copies int8 bytes)
    fixed_output: tuple[float, int] | None = None   # output (scale, zero point) by spec
    const_inputs: bool = False             # float constant inputs get asymmetric int8
    fused_as: str | None = None            # this op folds into a fusable producer as
    #                                         that fused_activation (RELU, RELU6)


@dataclass
class OpDef:
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    infer_shape: Callable | None = None      # (g, op) -> output shape
    float_eval: Callable | None = None
    reference: Callable | None = None
    quant: QuantRule = field(default_factory=QuantRule)
    kernel_params: Callable | None = None
    scratch: Callable | None = None
    emit: Callable | None = None
    inplace: Callable | None = None
    row_capable: bool = False              # row-delayed in place (toolchain.codegen.rows)
    weight_roles: dict[int, str] = field(default_factory=dict)   # input index -> store role
    torch: Callable | None = None
    macs: Callable | None = None           # (g, op) -> multiply-accumulates of one run
    float_io: tuple[str, ...] = ()         # "in"/"out": float tensors the int8 reference accepts
    int8_const_inputs: bool = False        # constant data inputs must be int8 in the runtime
    dense_form: Callable | None = None     # (g, op) -> (op type, attrs, weight Tensor): the
    #                                         equivalent registered op the TFLite writer writes
    doc: str = ""
    int16: bool = False                    # has an int16-activation ("16x8") form (int16.py)
    # spiking networks (module docstring; docs/adding-an-op.md "Spiking op families")
    family: str = "int8"                   # "int8" or "snn"
    snn_role: str | None = None            # synapse, neuron, pool, view, fanin
    spiking: bool = False                  # output is 0/1 spikes
    states: tuple[str, ...] = ()           # neuron state tensors, after the current input
    step_float: Callable | None = None     # (op, ins, out_shape) -> (y, new_states)
    step_fixed: Callable | None = None     # (kern, p, ins, out_shape) -> (y, new_states)
    emit_snn: Callable | None = None       # (em, k, op) -> None (toolchain.snn.codegen)
    float_only: str = ""                   # why there is no fixed-point form


REGISTRY: dict[str, OpDef] = {}


def register(d: OpDef) -> OpDef:
    if d.name in REGISTRY:
        raise ValueError(f"op {d.name} registered twice")
    REGISTRY[d.name] = d
    OP_ATTRS[d.name] = d.attrs
    WEIGHT_ROLES[d.name] = d.weight_roles
    return d


def get(op_type: str) -> OpDef | None:
    return REGISTRY.get(op_type)


def ops_with(field_name: str) -> tuple[str, ...]:
    """Op types whose OpDef has `field_name` set (e.g. "emit": the runtime's ops)."""
    return tuple(n for n, d in REGISTRY.items() if getattr(d, field_name))


def family(name: str) -> tuple[str, ...]:
    """Op types of a family ("int8": the TFLite ops; "snn": neurons and synapses)."""
    return tuple(n for n, d in REGISTRY.items() if d.family == name)


# ------------------------------------------------------------ shared helpers
def qparams(t: Tensor, layer: str) -> tuple[float, int]:
    """Per-tensor (float32 scale as float, zero point) of an activation tensor."""
    if t.quant is None:
        raise IRError(f"layer '{layer}': tensor '{t.name}' has no quantization parameters")
    if t.quant.scale.size != 1:
        raise IRError(f"layer '{layer}': activation '{t.name}' must be per-tensor quantized")
    return float(qm.f32(t.quant.scale[0])), int(t.quant.zero_point[0])


def wscales(t: Tensor, n: int) -> np.ndarray:
    """Weight scales as float32 values, broadcast to n channels."""
    s = qm.f32(t.quant.scale)
    return np.broadcast_to(s, (n,)).astype(np.float64)


def act_range(op: Op, scale: float, zp: int) -> tuple[int, int]:
    return qm.activation_range_quantized(op.attr("fused_activation") or "NONE", scale, zp)


def requant(acc: np.ndarray, mult, shift, out_zp: int, lo: int, hi: int) -> np.ndarray:
    out = qm.multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(out, lo, hi).astype(np.int8)


def bias_input(g: Graph, op: Op) -> Tensor | None:
    if len(op.inputs) > 2 and op.inputs[2]:
        return g.t(op.inputs[2])
    return None


def bias_i32(g: Graph, op: Op) -> np.ndarray | None:
    b = bias_input(g, op)
    return None if b is None else np.ascontiguousarray(b.data.astype(np.int32).reshape(-1))


def i32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).astype(np.int32))


def dims4(shape) -> tuple[int, int, int, int]:
    """Shape -> (n, h, w, c); shorter shapes are right-aligned (c last)."""
    s = [int(d) for d in shape]
    if len(s) > 4:
        raise IRError(f"shape {tuple(s)} has more than 4 dimensions")
    s = [1] * (4 - len(s)) + s
    return tuple(s)


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


def same_padding(in_size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TFLite SAME padding: (out_size, pad_before, pad_after)."""
    eff = (k - 1) * dilation + 1
    out = -(-in_size // stride)
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total - total // 2


def valid_out(in_size: int, k: int, stride: int, dilation: int = 1) -> int:
    eff = (k - 1) * dilation + 1
    return (in_size - eff) // stride + 1


def pad_windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
                oh: int, ow: int, ph: int, pw: int, fill) -> tuple[np.ndarray, list]:
    """Pad x [N,H,W,C] by (ph, pw) before and enough after; return the padded array
    and the list of strided tap views [N,OH,OW,C] in (kh, kw) order (int8 reference)."""
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


def float_pad_amounts(op: Op, h: int, w: int, kh: int, kw: int):
    """(top, bottom, left, right) padding, strides and dilations of a float window op."""
    sh, sw = op.attr("stride_h") or 1, op.attr("stride_w") or 1
    dh, dw = op.attr("dilation_h") or 1, op.attr("dilation_w") or 1
    if op.attr("padding") == "SAME":
        _, pt, pb = same_padding(h, kh, sh, dh)
        _, pl, pr = same_padding(w, kw, sw, dw)
    elif op.attr("padding") == "VALID":
        pt = pb = pl = pr = 0
    else:
        raise IRError(f"layer '{op.name}' ({op.type}): padding must be SAME or VALID, "
                      f"not {op.attr('padding')!r}")
    return (pt, pb, pl, pr), (sh, sw), (dh, dw)


def windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int) -> np.ndarray:
    """[N,H,W,C] (already padded) -> [N,OH,OW,KH,KW,C] strided view (float evaluator)."""
    n, h, w, c = x.shape
    oh = (h - (kh - 1) * dh - 1) // sh + 1
    ow = (w - (kw - 1) * dw - 1) // sw + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, oh, ow, kh, kw, c),
        strides=(s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)


def torch_same_pad(x, op: Op, kh: int, kw: int, dilated: bool = True):
    """NCHW torch tensor padded as TFLite SAME (patch training)."""
    import torch.nn.functional as F
    n, c, h, wd = x.shape
    sh, sw = op.attr("stride_h") or 1, op.attr("stride_w") or 1
    dh, dw = (op.attr("dilation_h") or 1, op.attr("dilation_w") or 1) if dilated else (1, 1)
    _, pt, pb = same_padding(h, kh, sh, dh)
    _, pl, pr = same_padding(wd, kw, sw, dw)
    return (pl, pr, pt, pb)


def same_shape_inputs(g: Graph, op: Op) -> list[int] | None:
    """In place over any non-constant input of the output's shape and size
    (elementwise kernels read each element before writing it)."""
    out = g.tensors[op.outputs[0]]
    ks = []
    for k, name in enumerate(op.inputs):
        t = g.tensors.get(name) if name else None
        if t is not None and not t.is_const and t.nbytes == out.nbytes and t.shape == out.shape:
            ks.append(k)
    return ks or None


def same_as_input(g: Graph, op: Op) -> tuple[int, ...]:
    return tuple(g.t(op.inputs[0]).shape)


def window_shape(g: Graph, op: Op, channels: int, kh: int, kw: int, dilated: bool = True):
    """NHWC output shape of a sliding-window op (TFLM padding arithmetic)."""
    n, h, w, _ = g.t(op.inputs[0]).shape
    dh, dw = (int(op.attr("dilation_h")), int(op.attr("dilation_w"))) if dilated else (1, 1)
    oh, _ = compute_padding(int(op.attr("stride_h")), dh, h, kh, op.attr("padding"))
    ow, _ = compute_padding(int(op.attr("stride_w")), dw, w, kw, op.attr("padding"))
    return (n, oh, ow, channels)


def broadcast_shape(g: Graph, op: Op) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*(tuple(g.t(n).shape) for n in op.inputs if n)))

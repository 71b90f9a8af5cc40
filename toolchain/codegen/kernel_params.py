"""IR op (int8 graph) -> the exact parameters the C runtime kernels take.

Each op's parameters are computed by its module in the op registry
(toolchain/ir/ops, `OpDef.kernel_params`), mirroring what TFLite Micro's Prepare
functions compute so that kernel outputs are byte-identical with the tflite-micro
interpreter:

    p = kernel_params(graph, op)     # dict, keys per op type (see each op module)

Common keys: `input_offset` = -input zero point, `output_offset` = +output zero
point, `multiplier`/`shift` (np.int32 arrays for per-channel ops, ints otherwise;
TFLM's QuantizeMultiplier: Q31 mantissa, shift > 0 = left), `act_min`/`act_max`
(fused activation clamp), `pad_h`/`pad_w` (top/left padding), dims as (n, h, w, c).
"""
from __future__ import annotations

from toolchain.ir import ops
from toolchain.ir.graph import Graph, IRError, Op
from toolchain.ir.ops.base import compute_padding, dims4  # noqa: F401  (re-exported)
from toolchain.ir.ops.elementwise import broadcast_strides  # noqa: F401  (re-exported)

__all__ = ["kernel_params", "compute_padding", "dims4", "broadcast_strides"]


def kernel_params(g: Graph, op: Op) -> dict:
    d = ops.get(op.type)
    if d is None or d.kernel_params is None:
        raise IRError(f"layer '{op.name}': no runtime kernel for op {op.type}")
    return d.kernel_params(g, op)

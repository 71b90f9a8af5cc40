"""The op registry: one home per op family (docs/adding-an-op.md).

    from toolchain.ir import ops
    d = ops.get("CONV_2D")          # OpDef: attrs, float_eval, reference, quant rule,
                                    # kernel_params, scratch, emit, inplace, torch, ...
    ops.ops_with("emit")            # op types the mcu runtime runs
    ops.family("snn")               # spiking neurons and synapses (step_float, step_fixed,
                                    # emit_snn: toolchain.snn looks them up here)

Importing this package registers every family below; `toolchain.ir.graph.OP_ATTRS`
is filled from it, so attribute defaults, validation and the model hash see the same
ops as the interpreters, the quantizer and the code generator.
"""
from .base import REGISTRY, OpDef, QuantRule, family, get, ops_with, register
from . import conv, depthwise, fully_connected, pooling, elementwise, shape  # noqa: F401,E402
from . import softmax, reduce, activations, quantize  # noqa: F401,E402
from . import synapses, neurons  # noqa: F401,E402  (spiking networks, family "snn")
from . import sparse  # noqa: F401,E402  (nested row-sparse subnets)
from . import transpose_conv, resize  # noqa: F401,E402
from . import int16  # noqa: F401,E402  (int16 activations: attaches forms to the ops above)


def require(op_type: str, layer: str, what: str = "the IR") -> OpDef:
    d = REGISTRY.get(op_type)
    if d is None:
        from toolchain.ir.graph import IRError
        raise IRError(f"unsupported op {op_type} in layer '{layer}' for {what}")
    return d


__all__ = ["REGISTRY", "OpDef", "QuantRule", "family", "get", "ops_with", "register", "require"]

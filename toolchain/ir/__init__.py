"""The IR shared by every front end and back end (see graph.py for conventions)."""
from .graph import DTYPES, FUSED_ACTIVATIONS, OP_ATTRS, Graph, IRError, Op, Quant, Tensor
from .validate import validate

__all__ = ["DTYPES", "FUSED_ACTIVATIONS", "OP_ATTRS", "Graph", "IRError", "Op", "Quant",
           "Tensor", "validate"]

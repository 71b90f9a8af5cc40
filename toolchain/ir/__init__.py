"""The IR shared by every front end and back end (see graph.py for conventions)."""
from .graph import DTYPES, FUSED_ACTIVATIONS, OP_ATTRS, Graph, IRError, Op, Quant, Tensor
from . import ops  # registers every op family into OP_ATTRS
from .validate import validate

__all__ = ["DTYPES", "FUSED_ACTIVATIONS", "OP_ATTRS", "Graph", "IRError", "Op", "Quant",
           "Tensor", "validate"]

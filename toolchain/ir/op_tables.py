"""What the op registry (toolchain/ir/ops) publishes for the bottom of the IR: attribute
defaults and weight-store roles per op type, filled by `ops.base.register`. A module of
its own so that the graph, its model hash and the registry need no import circle."""
from __future__ import annotations

from typing import Any

OP_ATTRS: dict[str, dict[str, Any]] = {}       # op type -> attribute defaults
WEIGHT_ROLES: dict[str, dict[int, str]] = {}   # op type -> {input index: "weight"/"bias"}

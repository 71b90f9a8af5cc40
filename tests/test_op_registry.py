"""The op registry is complete and is the one place op semantics live
(docs/adding-an-op.md): every registered op has what each layer needs, and every
front end maps only onto registered ops. A new op that misses a piece fails here,
naming the piece. The rules depend on the op's family: int8 ops (the TFLite builtins)
and spiking ops ("snn": neurons and synapses, docs/adding-an-op.md "Spiking op
families")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from opgen import OP_BUILDERS
from toolchain.ir import ops
from toolchain.ir.graph import OP_ATTRS

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "firmware_templates" / "runtime"
ALL = sorted(ops.REGISTRY)
INT8 = sorted(ops.family("int8"))
SNN = sorted(ops.family("snn"))
SNN_ROLES = ("synapse", "neuron", "pool", "view", "fanin")


def test_every_op_has_a_family():
    assert set(INT8) | set(SNN) == set(ALL), set(ALL) - set(INT8) - set(SNN)
    assert {"LIF", "IF", "LI", "CUBA_LIF", "CUBA_LI", "THRESHOLD", "SYN_CONV_2D",
            "SUM_POOL_2D", "SCALE"} <= set(SNN)


def test_op_attrs_is_the_registry():
    assert set(OP_ATTRS) == set(ops.REGISTRY)
    for name, d in ops.REGISTRY.items():
        assert OP_ATTRS[name] is d.attrs


@pytest.mark.parametrize("name", INT8)
def test_every_op_is_complete(name):
    d = ops.get(name)
    assert d.doc, f"{name}: no doc line"
    assert d.infer_shape is not None, f"{name}: no infer_shape (the validator checks shapes)"
    assert d.float_eval is not None, f"{name}: no float_eval (calibration needs it)"
    assert d.reference is not None, f"{name}: no int8 reference (the oracle)"
    assert d.torch is not None, f"{name}: no PyTorch form (patch training)"
    if d.emit is not None:
        assert d.kernel_params is not None, f"{name}: emits C but has no kernel_params"
    if d.row_capable:
        assert d.emit is not None, f"{name}: row-capable without a kernel"
    assert name in OP_BUILDERS, (f"{name}: no random single-op builder in tests/opgen.py "
                                 "(the bit-exact suites run every builder)")


def _kernel_calls(name):
    """mcu_* functions an op's emit() can write, found in its module's source."""
    import inspect
    src = inspect.getsource(inspect.getmodule(ops.get(name).emit))
    return {n for n in _strings(src) if n.startswith("mcu_") and n.endswith("_s8")}


def _strings(src):
    import re
    return set(re.findall(r"\b(mcu_[a-z0-9_]+)\(", src)) | set(re.findall(r'"(mcu_[a-z0-9_]+)"', src))


@pytest.mark.parametrize("name", ops.ops_with("emit"))
def test_emitted_kernels_exist_in_the_runtime(name):
    header = (RUNTIME / "mcu_kernels.h").read_text()
    for fn in _kernel_calls(name):
        assert f"{fn}(" in header, f"{name}: kernel {fn} is not declared in mcu_kernels.h"


def _string_keys(path: Path, var: str) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == var
                                                for t in node.targets):
            return {c.value for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    raise AssertionError(f"{var} not found in {path}")


def test_tflite_writer_maps_only_registered_ops():
    writable = _string_keys(ROOT / "converters" / "tflite_writer.py", "WRITABLE_OPS")
    assert writable <= set(ops.REGISTRY), writable - set(ops.REGISTRY)
    assert set(INT8) <= writable, f"not writable to .tflite: {set(INT8) - writable}"


def test_quant_rules_are_consistent():
    for name, d in ops.REGISTRY.items():
        q = d.quant
        if q.weight_axis is not None:
            assert d.weight_roles.get(1) == "weight", f"{name}: weights without a store role"
        if q.fused_as is not None:
            assert q.fused_as in ("RELU", "RELU6", "RELU_N1_TO_1")
        assert q.same_quant in (None, "first", "all")


@pytest.mark.parametrize("name", INT8)
def test_infer_shape_matches_random_graphs_and_catches_a_wrong_declaration(name):
    import numpy as np

    from toolchain.ir.graph import IRError
    from toolchain.ir.validate import validate
    rng = np.random.default_rng(5)
    for _ in range(8):
        g = OP_BUILDERS[name](rng)
        validate(g)                                    # builders declare the right shapes
    out = g.t(g.ops[0].outputs[0])
    out.shape = out.shape[:-1] + (out.shape[-1] + 1,)
    with pytest.raises(IRError, match=r"is declared .* but the op computes|elements, not"):
        validate(g)


def test_a_tensor_no_microcontroller_can_address_is_refused():
    from toolchain.ir.graph import Graph, IRError, Op, Quant, Tensor
    from toolchain.ir.validate import validate
    g = Graph()
    q = Quant.per_tensor(0.1, 0)
    g.add_tensor(Tensor("x", (1, 65536, 65536, 1), "int8", q))
    g.add_tensor(Tensor("y", (1, 65536, 65536, 1), "int8", q))
    g.add_op(Op("RELU", ["x"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    with pytest.raises(IRError, match="limit 2 GiB"):
        validate(g)


# ----------------------------------------------------------------- spiking op families
def _snn_conformance_cases() -> set[str]:
    """Op types with a case in tests/test_snn_ops.py (SNN_OP_BUILDERS): float step, fixed
    step (numpy and the C kernels) and the generated C of each op, checked against each
    other there."""
    return _string_keys(ROOT / "tests" / "test_snn_ops.py", "SNN_OP_BUILDERS")


@pytest.mark.parametrize("name", SNN)
def test_every_snn_op_is_complete(name):
    d = ops.get(name)
    assert d.doc, f"{name}: no doc line"
    assert d.infer_shape is not None, f"{name}: no infer_shape (the validator checks shapes)"
    assert d.snn_role in SNN_ROLES, f"{name}: snn_role {d.snn_role!r} not one of {SNN_ROLES}"
    assert d.step_float is not None, f"{name}: no step_float (toolchain.snn.float_sim)"
    if d.float_only:
        assert d.step_fixed is None and d.emit_snn is None, \
            f"{name}: float_only but has a fixed-point form"
    else:
        assert d.step_fixed is not None, f"{name}: no step_fixed (toolchain.snn.fixed_point)"
        assert d.emit_snn is not None, f"{name}: no emit_snn (toolchain.snn.codegen)"
    if d.snn_role == "neuron":
        assert d.states or name == "THRESHOLD", f"{name}: a neuron without state tensors"
    assert d.emit is None and d.reference is None, \
        f"{name}: an int8 form on a spiking op (it would reach the int8 code generator)"
    assert name in _snn_conformance_cases(), (
        f"{name}: no conformance case in tests/test_snn_ops.py SNN_OP_BUILDERS")


@pytest.mark.parametrize("name", ops.ops_with("snn_role"))
def test_ops_in_spiking_graphs_have_time_step_semantics(name):
    d = ops.get(name)
    assert d.step_float is not None, f"{name}: snn_role without step_float"
    if d.step_fixed is not None or d.emit_snn is not None:
        assert d.step_fixed is not None and d.emit_snn is not None, \
            f"{name}: step_fixed and emit_snn come together"
    if d.family == "int8" and d.step_fixed is not None:
        assert name in _snn_conformance_cases(), (
            f"{name}: used in fixed-point SNNs but no case in tests/test_snn_ops.py")


@pytest.mark.parametrize("name", ops.ops_with("emit_snn"))
def test_emitted_snn_kernels_exist_in_the_runtime(name):
    import inspect
    header = (RUNTIME / "mcu_kernels.h").read_text()
    src = inspect.getsource(inspect.getmodule(ops.get(name).emit_snn))
    calls = {n for n in _strings(src) if n.startswith("mcu_snn_")}
    assert calls, f"{name}: its emitter calls no mcu_snn_* kernel"
    for fn in calls:
        assert f"{fn}(" in header, f"{name}: kernel {fn} is not declared in mcu_kernels.h"

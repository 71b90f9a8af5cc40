"""Code generation on the host: generated C compiled natively (one shared library per
kernel variant holding every model) and compared with tflite-micro byte for byte.

Random single-op graphs (tests/opgen.py), with and without forced row-delayed
in-place execution, both MLPerf Tiny models (arena sizes, intermediate outputs), the
row schedule itself, and op validation."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from opgen import OP_BUILDERS, make_random, random_feeds
from toolchain.codegen.generate import check_graph, generate, SUPPORTED_OPS
from toolchain.codegen.host import HostModels
from toolchain.codegen.rows import check_schedule, simulate
from toolchain.ir import reference
from toolchain.ir.graph import IRError
from toolchain.tflm_oracle import run_graph

MODELS = Path("/work/shared/models/mlperf-tiny")
needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")
PER_OP = 4
ROW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")


def _cases():
    """(label, graph, force_rows) for every supported op type."""
    rng = np.random.default_rng(1234)
    out = []
    for op_type in sorted(OP_BUILDERS):
        if op_type not in SUPPORTED_OPS:
            continue
        for i in range(PER_OP):
            kw = {}
            if op_type in ROW_OPS:
                kw["n"] = 1 if i % 2 == 0 else None   # batch 1: row-delayed in place possible
            try:
                g = make_random(rng, op_type, **kw)
            except TypeError:
                g = make_random(rng, op_type)
            out.append((f"{op_type}-{i}", g, op_type in ROW_OPS and i % 2 == 0))
    return out


@pytest.fixture(scope="module", params=["portable", "dsp"])
def built(request, tmp_path_factory):
    variant = request.param
    d = tmp_path_factory.mktemp(f"cg_{variant}")
    cases = _cases()
    gens = [generate(g, d / f"m{i}", kernels=variant, prefix=f"m{i}_", force_rows=fr)
            for i, (_, g, fr) in enumerate(cases)]
    return variant, cases, gens, HostModels(gens, variant, d)


@needs_cc
def test_random_single_ops_bit_exact_with_tflm(built):
    variant, cases, gens, lib = built
    rng = np.random.default_rng(7)
    rows_used = 0
    for (label, g, force), gen in zip(cases, gens):
        rows_used += bool(gen.plan.rows)
        if force and g.t(g.inputs[0]).shape[0] == 1:
            assert gen.plan.rows, f"{label}: row-delayed in place not used"
        for _ in range(2):
            feeds = random_feeds(rng, g)
            want = run_graph(g, feeds)
            got = lib.run(gen, [feeds[n] for n in g.inputs])
            for n, y in zip(g.outputs, got):
                assert np.array_equal(y, want[n].reshape(y.shape)), \
                    f"{label} ({variant}, rows={bool(gen.plan.rows)}): output differs from TFLM"
    assert rows_used >= 6


@needs_cc
def test_elementwise_in_place(built):
    _, cases, gens, _ = built
    for (label, g, _), gen in zip(cases, gens):
        if g.ops[0].type in ("RELU", "RELU6", "RESHAPE") and g.t(g.inputs[0]).nbytes == \
                g.t(g.outputs[0]).nbytes:
            assert gen.plan.offsets[g.inputs[0]] == gen.plan.offsets[g.outputs[0]], label


def test_unsupported_op_names_op_and_layer():
    rng = np.random.default_rng(0)
    g = make_random(rng, "QUANTIZE")
    with pytest.raises(IRError, match=r"QUANTIZE.*layer"):
        check_graph(g)


@pytest.mark.parametrize("geo", [
    (49, 10, 25, 320, 2, 1), (25, 320, 25, 320, 1, 1), (32, 48, 32, 512, 1, 1),
    (32, 512, 16, 512, 2, 0), (16, 512, 8, 512, 2, 0), (25, 320, 1, 64, 25, 0),
    (9, 30, 5, 60, 2, 2), (10, 100, 10, 50, 1, 3)])
def test_row_schedule_never_reads_clobbered_rows(geo):
    in_h, in_row, out_h, out_row, sh, ph = geo
    for block in (1, 2, 3):
        s = simulate(in_h, in_row, out_h, out_row, sh, ph, block=block)
        for eff in (1, 2, 3, 5):
            # a block reads the windows of all its rows: eff + (block - 1) * stride rows
            check_schedule(s, eff + (block - 1) * sh)


def _mlperf():
    from converters import load_model
    out = []
    for p in ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite"):
        if (MODELS / p).exists():
            out.append((p, load_model(MODELS / p), (MODELS / p).read_bytes()))
    return out


@needs_cc
@pytest.mark.skipif(not MODELS.exists(), reason="MLPerf Tiny models not present")
@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_mlperf_models_host(variant, tmp_path):
    from toolchain.tflm_oracle import TflmRunner
    models = _mlperf()
    gens = [generate(g, tmp_path / f"m{i}", kernels=variant, prefix=f"m{i}_")
            for i, (_, g, _) in enumerate(models)]
    lib = HostModels(gens, variant, tmp_path)
    rng = np.random.default_rng(3)
    # DSP ResNet-8: the four-pixel conv kernel's int16 columns cost 552 B of scratch
    # (35,072 B) for 13 % fewer instructions
    limits = {"kws_ref_model.tflite": {"portable": 9_000, "dsp": 10_500},
              "pretrainedResnet_quant.tflite": {"portable": 34_000, "dsp": 35_200}}
    for (name, g, tfl), gen in zip(models, gens):
        assert gen.arena_size <= limits[name][variant], (name, gen.arena_size)
        assert gen.plan.rows or gen.plan.segments, f"{name}: no row-delayed in-place layer"
        tf = TflmRunner(tfl)
        shape = g.t(g.inputs[0]).shape
        for _ in range(8):
            x = rng.integers(-128, 128, size=shape).astype(np.int8)
            assert np.array_equal(lib.run(gen, [x])[0].reshape(-1), tf.run(x)[0].reshape(-1)), name
        # every intermediate (layer k, run up to k) equals the reference interpreter's
        want = reference.run(g, {g.inputs[0]: x}, keep_intermediates=True)
        for k, op in enumerate(g.ops):
            got = lib.layer_output(gen, [x], k)
            if op.name in gen.plan.stream_of and op.outputs[0] not in gen.plan.offsets:
                assert got.size == 0     # inside a streamed segment: only ring rows exist
                continue
            assert np.array_equal(got, np.asarray(want[op.outputs[0]]).astype(np.int8).reshape(-1)), \
                f"{name} layer {k} {op.type}"

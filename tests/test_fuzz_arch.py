"""Random architectures (hypothesis, fixed budget): chains and branches (ADD, SUB, MUL,
MAXIMUM, MINIMUM, CONCATENATION) and upsampling layers (TRANSPOSE_CONV,
RESIZE_NEAREST_NEIGHBOR) of the ops the runtime supports, built as float IR
graphs with seeded weights, quantized by our PTQ, written to .tflite, generated to C and
run on the host board; every output byte equal to tflite-micro's. Shrinking gives the smallest failing architecture."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from toolchain.ir.graph import Graph, Op, Tensor  # noqa: E402

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")

# one layer: (kind, parameters); a "branch" runs two sub-chains and merges them
LAYER = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 12), st.sampled_from([1, 3, 5]),
              st.integers(1, 2), st.sampled_from(["SAME", "VALID"]),
              st.sampled_from(["NONE", "RELU", "RELU6"])),
    st.tuples(st.just("dw"), st.sampled_from([1, 2]), st.sampled_from([3, 5]), st.integers(1, 2),
              st.sampled_from(["SAME", "VALID"]), st.sampled_from(["NONE", "RELU6"])),
    st.tuples(st.just("pool"), st.sampled_from(["MAX_POOL_2D", "AVERAGE_POOL_2D"]),
              st.integers(2, 3), st.integers(1, 2), st.sampled_from(["SAME", "VALID"])),
    st.tuples(st.just("branch"), st.sampled_from(["ADD", "SUB", "CONCATENATION", "MUL", "MAXIMUM",
                                                   "MINIMUM"]),
              st.integers(1, 8)),
    st.tuples(st.just("act"), st.sampled_from(["RELU", "RELU6", "LOGISTIC", "TANH", "HARD_SWISH",
                                                "LEAKY_RELU"])),
    st.tuples(st.just("tconv"), st.integers(1, 8), st.sampled_from([1, 2, 3, 4]),
              st.integers(1, 2), st.sampled_from(["SAME", "VALID"]),
              st.sampled_from(["NONE", "RELU"])),
    st.tuples(st.just("resize"), st.sampled_from([(2, 2), (2, 1), (3, 2)]), st.booleans(),
              st.booleans()),
)
ARCH = st.tuples(st.integers(4, 14), st.integers(4, 14), st.integers(1, 5),
                 st.lists(LAYER, min_size=1, max_size=6),
                 st.sampled_from(["fc", "mean_fc", "fc_softmax"]), st.integers(0, 2**16))


class _B:
    def __init__(self, rng, h, w, c):
        self.g = Graph(name="fuzz")
        self.rng = rng
        x = self.tensor((1, h, w, c))
        self.g.inputs = [x]
        self.x, self.shape = x, (1, h, w, c)

    def tensor(self, shape, data=None, dtype="float32"):
        n = self.g.unique_name(f"t{len(self.g.tensors)}")
        self.g.add_tensor(Tensor(n, shape, dtype, data=data))
        return n

    def const(self, a):
        return self.tensor(a.shape, a.astype(np.float32))

    def op(self, typ, ins, shape, **attrs):
        out = self.tensor(shape)
        self.g.add_op(Op(typ, ins, [out], attrs))
        return out, shape

    def conv(self, x, shape, cout, k, s, pad, act):
        n, h, w, c = shape
        if pad == "VALID" and (h < k or w < k):
            pad = "SAME"
        oh = -(-h // s) if pad == "SAME" else (h - k) // s + 1
        ow = -(-w // s) if pad == "SAME" else (w - k) // s + 1
        wt = self.const(self.rng.standard_normal((cout, k, k, c)) / np.sqrt(k * k * c))
        b = self.const(self.rng.standard_normal(cout) * 0.1)
        return self.op("CONV_2D", [x, wt, b], (n, oh, ow, cout), padding=pad, stride_h=s,
                       stride_w=s, fused_activation=act)

    def layer(self, x, shape, spec):
        kind = spec[0]
        n, h, w, c = shape
        if kind == "conv":
            _, cout, k, s, pad, act = spec
            return self.conv(x, shape, cout, k, s, pad, act)
        if kind == "dw":
            _, m, k, s, pad, act = spec
            if pad == "VALID" and (h < k or w < k):
                pad = "SAME"
            oh = -(-h // s) if pad == "SAME" else (h - k) // s + 1
            ow = -(-w // s) if pad == "SAME" else (w - k) // s + 1
            wt = self.const(self.rng.standard_normal((1, k, k, c * m)) / k)
            b = self.const(self.rng.standard_normal(c * m) * 0.1)
            return self.op("DEPTHWISE_CONV_2D", [x, wt, b], (n, oh, ow, c * m), padding=pad,
                           stride_h=s, stride_w=s, depth_multiplier=m, fused_activation=act)
        if kind == "pool":
            _, typ, k, s, pad = spec
            if h < k or w < k:
                pad = "SAME"
            oh = -(-h // s) if pad == "SAME" else (h - k) // s + 1
            ow = -(-w // s) if pad == "SAME" else (w - k) // s + 1
            return self.op(typ, [x], (n, oh, ow, c), padding=pad, stride_h=s, stride_w=s,
                           filter_h=k, filter_w=k)
        if kind == "act":
            return self.op(spec[1], [x], shape)
        if kind == "tconv":                        # upsampling: only while the map is small
            _, cout, k, s, pad, act = spec
            if h * w > 64:
                s = 1
            oh, ow = (h * s, w * s) if pad == "SAME" else ((h - 1) * s + k, (w - 1) * s + k)
            wt = self.const(self.rng.standard_normal((cout, k, k, c)) / np.sqrt(k * k * c))
            b = self.const(self.rng.standard_normal(cout) * 0.1)
            return self.op("TRANSPOSE_CONV", [x, wt, b], (n, oh, ow, cout), padding=pad,
                           stride_h=s, stride_w=s, output_shape=[n, oh, ow, cout],
                           fused_activation=act)
        if kind == "resize":
            _, (fy, fx), ac, hp = spec
            oh, ow = (h * fy, w * fx) if h * w <= 64 else (max(h // fy, 1), max(w // fx, 1))
            size = self.tensor((2,), np.array([oh, ow], np.int32), "int32")
            return self.op("RESIZE_NEAREST_NEIGHBOR", [x, size], (n, oh, ow, c),
                           align_corners=ac, half_pixel_centers=hp)
        _, merge, cout = spec                       # branch: two convs, then merge
        cb = cout if merge == "CONCATENATION" else c
        a, sa = self.conv(x, shape, cb, 3, 1, "SAME", "RELU")
        b, sb = self.conv(x, shape, cb, 1, 1, "SAME", "NONE")
        if merge == "MUL":
            b, sb = self.op("LOGISTIC", [b], sb)      # a gate, as in squeeze-excite
        if merge == "CONCATENATION":
            return self.op(merge, [a, b], (n, h, w, 2 * cb), axis=3)
        return self.op(merge, [a, b], sa)

    def head(self, x, shape, kind, classes=5):
        n, h, w, c = shape
        if kind == "mean_fc":
            ax = self.tensor((2,), np.array([1, 2], np.int32), "int32")
            x, shape = self.op("MEAN", [x, ax], (n, 1, 1, c), keep_dims=True)
        flat = int(np.prod(shape[1:]))
        x, _ = self.op("RESHAPE", [x], (1, flat), new_shape=[1, flat])
        wt = self.const(self.rng.standard_normal((classes, flat)) / np.sqrt(flat))
        b = self.const(self.rng.standard_normal(classes) * 0.1)
        x, s = self.op("FULLY_CONNECTED", [x, wt, b], (1, classes))
        if kind == "fc_softmax":
            x, s = self.op("SOFTMAX", [x], s, beta=1.0)
        return x


def build(arch) -> Graph:
    h, w, c, layers, head, seed = arch
    b = _B(np.random.default_rng(seed), h, w, c)
    x, shape = b.x, b.shape
    for spec in layers:
        x, shape = b.layer(x, shape, spec)
    b.g.outputs = [b.head(x, shape, head)]
    return b.g


@needs_cc
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(arch=ARCH)
def test_random_architectures_bit_exact_with_tflm(arch, tmp_path_factory):
    from converters.quantize import quantize
    from converters.tflite_writer import write_tflite
    from toolchain.codegen.generate import generate
    from toolchain.codegen.host import HostModels
    from toolchain.ir.validate import validate
    from toolchain.tflm_oracle import TflmRunner
    g = build(arch)
    validate(g)
    rng = np.random.default_rng(arch[-1])
    calib = rng.standard_normal((16,) + g.t(g.inputs[0]).shape[1:]).astype(np.float32)
    q = quantize(g, calib)
    tf = TflmRunner(write_tflite(q))
    d = tmp_path_factory.mktemp("fuzz")
    variant = ("portable", "dsp")[arch[-1] % 2]
    gen = generate(q, d / "m", kernels=variant, prefix="f_")
    lib = HostModels([gen], variant, d)
    for _ in range(2):
        x = rng.integers(-128, 128, size=q.t(q.inputs[0]).shape).astype(np.int8)
        got = lib.run(gen, [x])[0].reshape(-1)
        assert got.tolist() == tf.run(x)[0].reshape(-1).tolist(), \
            f"{variant}: {[op.type for op in q.ops]} differs from tflite-micro"

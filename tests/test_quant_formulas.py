"""Which multiplier formula tflite-micro really uses, decided where the candidates
disagree. Random graphs almost never reach such an accumulator (the multipliers differ
in the last bits), so each case is built: a 1-input, 1-weight layer whose bias puts the
accumulator exactly where the float32-product and the double-product multipliers round
to different outputs. Our reference must give TFLM's answer every time (a CI run once
hit the float32-product formula on a 640-wide autoencoder, off by one)."""
from __future__ import annotations

import numpy as np
import pytest

from opgen import make_conv2d, make_depthwise_conv2d, make_fully_connected
from toolchain.ir import quant_math as qm

pytest.importorskip("tflite_micro")

ACCS = np.arange(-(1 << 17), 1 << 17, dtype=np.int64)


def _forms(i_s, w_s, o_s):
    f = lambda v: float(np.float32(v))  # noqa: E731
    return {"float32 product": f(np.float32(i_s) * np.float32(w_s)) / f(o_s),
            "double product": f(i_s) * f(w_s) / f(o_s)}


def _decisive_cases(make, n_wanted=6, max_seeds=600):
    """Yield (graph, acc, {form: expected int8}) where the forms disagree."""
    found = 0
    for seed in range(max_seeds):
        g = make(np.random.default_rng(seed))
        op = g.ops[0]
        xt, wt, bt, yt = (g.t(n) for n in op.inputs + op.outputs)
        ms = {k: qm.quantize_multiplier(v) for k, v in
              _forms(xt.quant.scale[0], wt.quant.scale[0], yt.quant.scale[0]).items()}
        a, b = ms.values()
        if a == b:
            continue
        zp = int(yt.quant.zero_point[0])
        r = {k: qm.multiply_by_quantized_multiplier(ACCS, *m) + zp for k, m in ms.items()}
        ra, rb = r.values()
        hit = np.nonzero((ra != rb) & (np.abs(ra) < 127) & (np.abs(rb) < 127))[0]
        if not len(hit):
            continue
        acc = int(ACCS[hit[0]])
        wt.data[...] = 1                    # acc = (0 - in_zp) * 1 + bias
        bt.data[...] = acc + int(xt.quant.zero_point[0])
        yield g, {k: int(v[hit[0]]) for k, v in r.items()}
        found += 1
        if found == n_wanted:
            return
    assert found, "no decisive case found: widen the search"


def _fc(rng):
    return make_fully_connected(rng, batch=1, k=1, out=1, act="NONE", per_channel=False,
                                bias=True, input_4d=False)


def _conv(rng):
    return make_conv2d(rng, n=1, h=1, w=1, cin=1, cout=1, kh=1, kw=1, stride=1,
                       dilation=1, padding="VALID", act="NONE", per_channel=False, bias=True)


def _dw(rng):
    return make_depthwise_conv2d(rng, n=1, h=1, w=1, cin=1, multiplier=1, kh=1, kw=1, stride=1,
                                 dilation=1, padding="VALID", act="NONE", per_channel=False,
                                 bias=True)


@pytest.mark.parametrize("make", [_fc, _conv, _dw],
                         ids=["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"])
def test_reference_takes_tflite_micros_side_where_formulas_disagree(make):
    from converters.tflite_writer import write_tflite
    from toolchain.ir import reference
    from toolchain.tflm_oracle import TflmRunner
    sides = []
    for g, expected in _decisive_cases(make):
        x = np.zeros(g.t(g.inputs[0]).shape, np.int8)
        tflm = int(TflmRunner(write_tflite(g)).run(x)[0].reshape(-1)[0])
        ours = int(reference.run(g, {g.inputs[0]: x})[g.outputs[0]].reshape(-1)[0])
        sides.append([k for k, v in expected.items() if v == tflm])
        assert ours == tflm, (g.ops[0].type, expected, tflm, ours)
    assert all(s == ["double product"] for s in sides), sides

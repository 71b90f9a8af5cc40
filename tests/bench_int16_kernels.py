"""Instructions per inference on QEMU mps2-an386 (Cortex-M4, -icount) of single-layer
models: our portable and DSP kernels against TFLite Micro (reference kernels; CMSIS-NN
with the generic registrations, which run int16; CMSIS-NN int8-only where it applies),
outputs checked byte for byte against tflite-micro (host).

    python tests/bench_int16_kernels.py [--json bench-results/int16_kernels.json] [--only NAME]

Layers: int16 ("16x8") CONV_2D 3x3 and 1x1, DEPTHWISE_CONV_2D 3x3, FULLY_CONNECTED,
and the int8 TRANSPOSE_CONV 8x8x16 -> 16x16x8 (k4, s2)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import int16gen  # noqa: E402
import opgen  # noqa: E402


def layers():
    """name -> (graph, int16?)"""
    r = np.random.default_rng(0)
    mk = lambda op, **kw: int16gen.to_int16(r, opgen.make_random(r, op, **kw))  # noqa: E731
    out = {
        "conv3x3_s16 16x16x16->16": mk("CONV_2D", n=1, h=16, w=16, cin=16, cout=16, kh=3, kw=3,
                                       stride=1, dilation=1, padding="SAME", act="RELU",
                                       bias=True),
        "conv1x1_s16 16x16x32->32": mk("CONV_2D", n=1, h=16, w=16, cin=32, cout=32, kh=1, kw=1,
                                       stride=1, dilation=1, padding="VALID", act="RELU",
                                       bias=True),
        "dw3x3_s16 16x16x32": mk("DEPTHWISE_CONV_2D", n=1, h=16, w=16, cin=32, multiplier=1,
                                 kh=3, kw=3, stride=1, dilation=1, padding="SAME", act="RELU",
                                 bias=True),
        "fc_s16 512->64": mk("FULLY_CONNECTED", batch=1, k=512, out=64, act="NONE", bias=True,
                             per_channel=False),
    }
    out["tconv_s8 8x8x16->16x16x8 k4 s2"] = opgen.make_transpose_conv(
        r, n=1, h=8, w=8, cin=16, cout=8, kh=4, kw=4, stride=2, padding="SAME", bias=True)
    return out


def run_ours(g, tfl: Path, x: np.ndarray, kernels: str, work: Path) -> tuple[int, bytes]:
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    rep = build_model(tfl, "mps2-an386", work / f"build-{kernels}", kernels=kernels,
                      measure_tflm=False)
    with start_device("mps2-an386", load_build(rep["build_dir"])) as dev:
        c = ModelClient(dev.link())
        out, count = c.infer(x.tobytes())
    return int(count), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None)
    a = ap.parse_args(argv)
    from converters.tflite_writer import write_tflite
    from toolchain import tflm_kit
    from toolchain.tflm_oracle import TflmRunner
    rows = []
    for name, g in layers().items():
        if a.only and not name.startswith(a.only):
            continue
        with tempfile.TemporaryDirectory() as td:
            work = Path(td)
            tfl = work / "m.tflite"
            tfl.write_bytes(write_tflite(g))
            t = g.t(g.inputs[0])
            dt = np.dtype("<i2") if t.dtype == "int16" else np.dtype(np.int8)
            info = np.iinfo(dt)
            x = np.random.default_rng(1).integers(info.min, info.max + 1, size=t.shape).astype(dt)
            want = TflmRunner(tfl.read_bytes()).run(x)[0]
            want = want.astype(want.dtype.newbyteorder("<")).tobytes()
            row = dict(layer=name)
            for k in ("portable", "dsp"):
                n, out = run_ours(g, tfl, x, k, work)
                assert out == want, f"{name} {k}: differs from tflite-micro"
                row[k] = n
            variants = ("ref", "cmsis-generic") if dt.itemsize == 2 else ("ref", "cmsis")
            for v in variants:
                res = tflm_kit.measure(tfl, (v,), x.tobytes(), arena_search=False)[v]
                row[f"tflm_{v}"] = res.instructions if res.ok else None
                if res.ok:
                    # TFLM's CMSIS-NN TRANSPOSE_CONV differs from tflite-micro (README)
                    row[f"tflm_{v}_equal"] = res.output == want
                else:
                    row[f"tflm_{v}_error"] = res.error
            rows.append(row)
            tf = [row.get(f"tflm_{v}") for v in variants]
            print(f"{name:<34} portable {row['portable']:>10,}  dsp {row['dsp']:>10,} "
                  f"({row['portable'] / row['dsp']:.2f}x)  "
                  + "  ".join(f"TFLM {v} {n:,}" if n else f"TFLM {v} n/a"
                              for v, n in zip(variants, tf)), flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(dict(board="mps2-an386", unit="instructions",
                                                rows=rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

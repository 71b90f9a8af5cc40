"""Generated model C compiled natively as a shared library and called through ctypes:
the fast way to check generated code (tests) without a device.

    gens = [generate(g, d, prefix=f"m{i}_") for i, g in enumerate(graphs)]
    lib = HostModels(gens, variant="dsp", build_dir=tmp)   # one .so, all models
    outs = lib.run(gens[0], [x0])        # list of output arrays
    y3 = lib.layer_output(gens[0], [x0], 3)

variant "dsp" compiles the runtime's DSP code paths with emulated intrinsics
(MCU_EMULATE_DSP), "portable" defines MCU_NO_DSP.
"""
from __future__ import annotations

import ctypes as C
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from toolchain.errors import BuildError

ROOT = Path(__file__).resolve().parents[2] / "firmware_templates"
RUNTIME = ROOT / "runtime"
APP = ROOT / "app"
VARIANT_DEFS = {"portable": ["-DMCU_NO_DSP"], "dsp": ["-DMCU_EMULATE_DSP"]}

HARNESS = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <time.h>
uint64_t board_ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
void board_log(const char *s) { fprintf(stderr, "%s\n", s); }
"""


class HostModels:
    def __init__(self, gens, variant: str = "portable", build_dir=None, opt: str = "-O1",
                 extra_flags=()):
        gens = list(gens)
        build_dir = Path(build_dir or gens[0].out_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise BuildError("no host C compiler (cc) found")
        (build_dir / "host_harness.c").write_text(HARNESS)
        srcs = [build_dir / "host_harness.c", *sorted(RUNTIME.glob("*.c"))]
        incs = [RUNTIME, APP]
        for g in gens:
            srcs += g.files
            incs.append(g.out_dir)
        so = build_dir / f"models_{variant}.so"
        cmd = [cc, opt, "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra",
               "-DMCU_TICK_HZ=1000000000", *VARIANT_DEFS[variant], *extra_flags,
               *[f"-I{i}" for i in dict.fromkeys(map(str, incs))],
               *map(str, srcs), "-o", str(so)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"host build of generated models failed:\n{r.stderr[-3000:]}")
        self.warnings = r.stderr
        self.lib = C.CDLL(str(so))
        self.so = so

    def _fn(self, gen, name, restype=None, argtypes=()):
        f = getattr(self.lib, gen.prefix + name)
        f.restype = restype
        f.argtypes = list(argtypes)
        return f

    def set_inputs(self, gen, inputs) -> None:
        ptr = self._fn(gen, "model_input_n", C.POINTER(C.c_uint8), [C.c_uint32])
        size = self._fn(gen, "model_input_size_n", C.c_uint32, [C.c_uint32])
        for i, x in enumerate(inputs):
            dt = np.dtype(gen.graph.t(gen.graph.inputs[i]).dtype)    # int8 or int16
            b = np.ascontiguousarray(np.asarray(x, dt)).astype(dt.newbyteorder("<")).tobytes()
            if len(b) != size(i):
                raise ValueError(f"input {i}: {len(b)} bytes, model takes {size(i)}")
            C.memmove(ptr(i), b, len(b))

    def run(self, gen, inputs) -> list[np.ndarray]:
        self.set_inputs(gen, inputs)
        st = self._fn(gen, "model_invoke", C.c_uint8)()
        if st != 0:
            raise RuntimeError(f"model_invoke returned status {st}")
        outs = []
        ptr = self._fn(gen, "model_output_n", C.POINTER(C.c_uint8), [C.c_uint32])
        size = self._fn(gen, "model_output_size_n", C.c_uint32, [C.c_uint32])
        for i, n in enumerate(gen.graph.outputs):
            raw = C.string_at(ptr(i), size(i))
            dt = np.dtype(gen.graph.t(n).dtype).newbyteorder("<")
            outs.append(np.frombuffer(raw, dt).astype(gen.graph.t(n).dtype)
                        .reshape(gen.graph.t(n).shape))
        return outs

    def layer_output(self, gen, inputs, k: int) -> np.ndarray:
        self.set_inputs(gen, inputs)
        st = self._fn(gen, "model_invoke_until", C.c_uint8, [C.c_int32])(k)
        if st != 0:
            raise RuntimeError(f"model_invoke_until returned status {st}")
        size = C.c_uint32()
        p = self._fn(gen, "model_layer_output", C.POINTER(C.c_uint8),
                     [C.c_uint32, C.POINTER(C.c_uint32)])(k, C.byref(size))
        return np.frombuffer(C.string_at(p, size.value), np.int8).copy()

    def layer_counts(self, gen) -> list[int]:
        f = self._fn(gen, "model_layer_count", C.c_uint64, [C.c_uint32])
        return [int(f(k)) for k in range(len(gen.graph.ops))]

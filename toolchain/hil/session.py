"""A device running the firmware for one model, ready for inferences.

    with HilDevice("out/model.tflite", board="mps2-an386") as dev:   # build, boot
        dev.info()                     # DeviceInfo (model hash checked)
        y = dev.infer(x)               # float or int8 sample -> int8 output array
    HilDevice(model, board="my-board", port="/dev/ttyACM0")   # a flashed real board

Builds are reused: the build directory is keyed by model hash + board + build
options (build/hil/<board>-<model hash>-<options hash>), and toolchain.build skips
the compile when nothing changed."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.hil.errors import HilError, ModelMismatch
from toolchain.ir.graph import Graph


@dataclass
class LoadedModel:
    path: str
    graph: Graph
    tflite: bytes | None          # the .tflite bytes when the file is one (TFLM oracle)
    hash: str                     # graph.model_hash()
    source_layout: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def in_tensor(self):
        return self.graph.t(self.graph.inputs[0])

    @property
    def num_classes(self) -> int | None:
        outs = [self.graph.t(n) for n in self.graph.outputs]
        if len(outs) != 1:
            return None
        n = outs[0].size // max(1, outs[0].shape[0] if len(outs[0].shape) > 1 else 1)
        return n if n > 1 else None


def load_int8_model(model) -> LoadedModel:
    """A model path (.tflite int8; .onnx/.pt2 are refused with the convert command to
    run) or an IR Graph."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, Graph):
        g, path, tfl = model, f"<graph {model.name}>", None
    else:
        from converters import load_model
        path = os.fspath(model)
        g = load_model(path)
        tfl = Path(path).read_bytes() if path.lower().endswith(".tflite") else None
    if not g.is_quantized:
        raise HilError(f"{path} is {g.io_kind()}; mcu runs int8 models, convert it first: "
                       f"mcu convert {path} --calib CALIB.npz -o OUT (then use OUT/model.tflite)")
    if any(g.tensors[n].dtype != "int8" for n in g.inputs + g.outputs):
        raise HilError(f"{path} has int16 activations; mcu hil streams int8 inputs and outputs "
                       "(build it with mcu build and run it with the host board or QEMU)")
    if len(g.inputs) != 1:
        raise HilError(f"{path} has {len(g.inputs)} inputs; mcu hil runs single-input models")
    layouts = g.meta.get("input_layouts", {})
    return LoadedModel(path, g, tfl, g.model_hash(), layouts.get(g.inputs[0]))


def _model_client_class():
    """The firmware's host-side model client (toolchain.codegen work)."""
    for mod, name in (("toolchain.link.model", "ModelClient"),
                      ("toolchain.link", "ModelClient"),
                      ("toolchain.codegen.client", "ModelClient"),
                      ("toolchain.codegen", "ModelClient")):
        try:
            m = __import__(mod, fromlist=[name])
            if hasattr(m, name):
                return getattr(m, name)
        except ImportError:
            continue
    raise HilError("this toolchain has no model client yet (toolchain.codegen); "
                   "model builds arrive with the code generator")


def options_key(board: str, model_hash: str, options: dict) -> str:
    blob = json.dumps(dict(board=board, model=model_hash, options=options), sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def build_for_model(model, board, *, build_dir=None, protocol: str = "binary",
                    test_build: bool = False, defines: dict | None = None,
                    patch_c=None, force: bool = False, log=None):
    """Generate C for `model` and build firmware for `board`; reuse a previous build
    with the same key. patch_c(gen_dir) may edit the generated sources (test builds
    that corrupt something on purpose). Returns a BuildResult."""
    from toolchain.boards import load_board
    m = load_int8_model(model)
    b = load_board(board)
    opts = dict(protocol=protocol, test_build=test_build, defines=defines or {},
                patch=getattr(patch_c, "__name__", None) if patch_c else None)
    key = options_key(b.name, m.hash, opts)
    out = Path(build_dir or Path("build") / "hil" / f"{b.name}-{m.hash[:12]}-{key}")
    stamp = out / "hil-key.json"
    out.mkdir(parents=True, exist_ok=True)
    # one build at a time per directory: pytest -n workers and parallel HIL runs may
    # ask for the same firmware at once
    import fcntl
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(m, b, out, stamp, key, opts, protocol, test_build, defines,
                             patch_c, force, log)


def _build_locked(m, b, out, stamp, key, opts, protocol, test_build, defines, patch_c,
                  force, log):
    from toolchain.build import build_firmware, model_sources
    # The C is generated every time (milliseconds); toolchain.build then skips the
    # compile when no source, header or flag changed, so a toolchain update rebuilds.
    if log and not (out / "build.json").exists():
        log(f"building firmware for {b.name} (model {m.hash[:12]}) in {out}")
    src = m.path if m.tflite is not None or not m.path.startswith("<") else m.graph
    srcs, incs, defs = model_sources(src, b, out / "model")
    if patch_c is not None:
        patch_c(out / "model")
    defs = dict(defs or {})
    srcs = list(srcs)
    if protocol == "eembc":
        defs["MCU_PROTOCOL_EEMBC"] = 1
        defs["MCU_EEMBC_DB_SIZE"] = max(1, m.in_tensor.nbytes)
        srcs.append(write_eembc_source(m, out / "eembc_model.c"))
    elif protocol != "binary":
        raise HilError(f"unknown protocol '{protocol}'; use binary or eembc")
    defs.update(defines or {})
    res = build_firmware(b, out, extra_sources=srcs, include_dirs=incs, defines=defs,
                         with_runtime=True, test_build=test_build, force=force)
    stamp.write_text(json.dumps(dict(key=key, model_hash=m.hash, board=b.name,
                                     options=opts), default=str) + "\n")
    return res


def write_eembc_source(m: LoadedModel, path: Path) -> Path:
    """Output quantization and model name for the EEMBC results line (app/eembc.c)."""
    o = m.graph.t(m.graph.outputs[0])
    scale, zp = (float(o.quant.scale[0]), int(o.quant.zero_point[0])) if o.quant else (0.0, 0)
    name = "".join(c for c in (m.graph.name or "model") if c.isalnum() or c in "-_.")[:32]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"/* generated by toolchain.hil for the EEMBC protocol build */\n"
            f"#include <stdint.h>\n"
            f"float mcu_eembc_output_scale(void);\n"
            f"int32_t mcu_eembc_output_zero_point(void);\n"
            f"const char *mcu_eembc_model_version(void);\n"
            f"float mcu_eembc_output_scale(void) {{ return {scale!r}f; }}\n"
            f"int32_t mcu_eembc_output_zero_point(void) {{ return {zp}; }}\n"
            f"const char *mcu_eembc_model_version(void) {{ return \"{name}-{m.hash[:8]}\"; }}\n")
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def check_model_hash(info, model: LoadedModel, where: str) -> None:
    dev = (info.model_hash or "").lower()
    if not dev:
        raise ModelMismatch(f"device at {where} runs no model (firmware without one); "
                            f"build and flash it with: mcu build {model.path} --board "
                            f"{info.board or 'BOARD'}")
    if not (model.hash.startswith(dev) or dev.startswith(model.hash)):
        raise ModelMismatch(f"device at {where} runs model '{info.model_name or '?'}' "
                            f"{dev[:16]}, not {model.path} ({model.hash[:16]}); flash the "
                            f"firmware built for this model (mcu build {model.path} --board "
                            f"{info.board or 'BOARD'})")


class HilDevice:
    """A started device + model client for one model (see the module docstring)."""

    def __init__(self, model, board: str | None = None, *, port: str | None = None,
                 firmware=None, protocol: str = "binary", test_build: bool = False,
                 defines: dict | None = None, patch_c=None, build_dir=None,
                 timeout: float | None = None, client=None, log=None):
        from toolchain.boards import resolve_board
        self.model = load_int8_model(model)
        self.board = resolve_board(board)
        self.port = port
        self.build = None
        self.device = None
        self._info = None
        if client is not None:          # an injected client (tests, fakes)
            self.client = client
            self.url = "injected"
        else:
            from toolchain.devices import start_device
            if port:
                self.device = start_device(self.board, None, port=port)
            else:
                self.build = firmware or build_for_model(
                    self.model, self.board, build_dir=build_dir, protocol=protocol,
                    test_build=test_build, defines=defines, patch_c=patch_c, log=log)
                self.device = start_device(self.board, self.build)
            self.url = self.device.url
            try:
                self.client = _model_client_class()(self.device.link(timeout=timeout))
            except Exception:
                self.close()
                raise
        try:
            check_model_hash(self.info(), self.model, self.url)
        except Exception:
            self.close()
            raise

    # ---- device ----------------------------------------------------------
    def info(self, refresh: bool = False):
        if self._info is None or refresh:
            self._info = self.client.info()
        return self._info

    @property
    def latency_unit(self) -> str:
        info = self.info()
        unit = getattr(info, "count_unit", "")
        if unit and unit not in ("?", "ticks"):
            return unit
        if self.board.kind == "qemu" or (self.board.kind != "serial"
                                         and info.instructions_per_tick):
            return "instructions"
        if self.board.kind == "serial":
            return "cycles"
        return "ns"

    def quantize(self, x) -> np.ndarray:
        """A float sample -> int8 with the model's input scale/zero point; int8 passes."""
        from toolchain.hil.data import quantize
        x = np.asarray(x)
        if x.dtype == np.int8:
            return x
        q = self.model.in_tensor.quant
        return quantize(x, float(q.scale[0]), int(q.zero_point[0]))

    def infer_raw(self, xq: np.ndarray) -> tuple[np.ndarray, int | None]:
        t = self.model.in_tensor
        xq = np.asarray(xq, np.int8)
        if xq.size != t.size:
            raise HilError(f"input has {xq.size} values ({xq.shape}), the model takes "
                           f"{t.size} {list(t.shape)}")
        out, lat = self.client.infer(xq.tobytes())
        return np.frombuffer(bytes(out), np.int8).copy(), lat

    def infer(self, x) -> np.ndarray:
        """One sample (float: quantized; int8: as is; NHWC or batch-1) -> int8 outputs,
        shaped as the model's (first) output."""
        out, _ = self.infer_raw(self.quantize(x))
        o = self.model.graph.t(self.model.graph.outputs[0])
        return out.reshape(o.shape) if out.size == o.size else out

    def close(self) -> None:
        if self.device is not None:
            self.device.stop()
            self.device = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

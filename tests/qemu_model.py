"""One int8 model as firmware on the emulated Cortex-M4, checked byte for byte against
tflite-micro: what every op's end-to-end QEMU test does (the `mcu build` path)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and "
                                "arm-none-eabi-gcc")


def assert_bit_exact_on_qemu(q, tmp_path, kernels: str, *, n: int = 6, seed: int = 3,
                             board: str = "mps2-an386", tflite=None) -> None:
    """Write q (an int8 or int16-activation IR graph) as .tflite (or use the `tflite` path given), build its
    firmware for `board` with `kernels`, boot it, and compare n random inputs' outputs
    with tflite-micro's; the device must report q's model hash."""
    from converters.tflite_writer import write_tflite
    from toolchain.build import load_build
    from toolchain.build_model import build_model
    from toolchain.devices import start_device
    from toolchain.link.model import ModelClient
    from toolchain.tflm_oracle import TflmRunner
    if tflite is None:
        tflite = tmp_path / "model.tflite"
        tflite.write_bytes(write_tflite(q))
    rep = build_model(tflite, board, tmp_path / "build", kernels=kernels, measure_tflm=False)
    tf = TflmRunner(tflite.read_bytes())
    rng = np.random.default_rng(seed)
    dt = np.dtype(q.t(q.inputs[0]).dtype)                  # int8, or int16 ("16x8")
    info = np.iinfo(dt)
    xs = rng.integers(info.min, info.max + 1, size=(n,) + tuple(q.t(q.inputs[0]).shape)).astype(dt)
    odt = np.dtype(q.t(q.outputs[0]).dtype).newbyteorder("<")
    with start_device(board, load_build(rep["build_dir"])) as dev:
        client = ModelClient(dev.link())
        assert client.info().model_hash == q.model_hash()
        for i, x in enumerate(xs):
            got, _ = client.infer(x.astype(dt.newbyteorder("<")).tobytes())
            assert np.frombuffer(got, odt).tolist() == tf.run(x)[0].reshape(-1).tolist(), \
                f"{board} ({kernels}): input {i} differs from tflite-micro"

"""Shared by tests/test_hil_*.py: a small trained int8 digits CNN and its data, made once
per session (a few seconds) and cached under build/hil-test/."""
from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "hil-test"

HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
HAVE_CC = bool(shutil.which("cc"))
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler (cc)")


def digits_model(epochs: int = 12) -> tuple[Path, Path]:
    """(int8 model.tflite, test data .npz with x float32 NCHW and y) for the digits CNN."""
    CACHE.mkdir(parents=True, exist_ok=True)
    model, data = CACHE / f"digits-e{epochs}.tflite", CACHE / f"digits-e{epochs}-test.npz"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if model.exists() and data.exists():
            return model, data
        torch = pytest.importorskip("torch")
        from converters import from_torch
        from converters.quantize import quantize
        from converters.tflite_writer import write_tflite
        from toolchain.examples.digits import train_digits_cnn
        m, (xtr, _ytr, xte, yte) = train_digits_cnn(0, epochs=epochs)
        g = from_torch(m, torch.from_numpy(xtr[:1]))
        q = quantize(g, xtr[:256].transpose(0, 2, 3, 1))
        tmp = model.with_suffix(".tmp")
        tmp.write_bytes(write_tflite(q))
        np.savez(data.with_suffix(".tmp.npz"), x=xte, y=yte)
        data.with_suffix(".tmp.npz").replace(data)
        tmp.replace(model)
    return model, data

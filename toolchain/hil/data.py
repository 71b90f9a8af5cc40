"""HIL data sets: an .npz with `x` (N, ...) and optional labels `y`, checked against the
model's input and turned into int8 (int16 for 16x8 models) tensors in the model's layout.

- float `x` is quantized with the model input's scale and zero point;
  int8 `x` is taken as already quantized (any other integer dtype is refused:
  say which you mean by casting to float32 or int8).
- Layout: the int8 model's input is NHWC. 4-D data in NCHW (as PyTorch feeds it)
  is accepted and transposed, and the run says so; so is 3-D (N, C, L) data for a 1-D
  conv model, whose input is (N, 1, L, C) (NCHW with H = 1). `layout="auto"` picks
  NHWC when the shape matches it, NCHW / NCL when only the transposed shape matches;
  "nchw" (channels first, 4-D or NCL; "ncl" is the same) / "nhwc" force one.
- `y` (N,) integer class labels, each in [0, number of output classes); or regression
  targets in real units: (N, *output shape) / (N, output size), or (N,) floats for a
  model with one output value (compared with the dequantized outputs: RMSE, MAE).
- int16 models ("16x8"): int16 `x` is taken as quantized, float is quantized to int16."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from converters.npz import read_xy_npz
from toolchain.hil.errors import DataError


@dataclass
class HilData:
    xq: np.ndarray            # int8 or int16 (N, *input shape without batch), NHWC
    y: np.ndarray | None      # int64 (N,) or None
    source_dtype: str         # "float32", "int8", ...
    layout_note: str          # how the layout was read
    path: str = ""
    total: int = 0            # samples in the file (before --limit)
    targets: np.ndarray | None = None   # float64 (N, output size): regression targets

    def __len__(self):
        return len(self.xq)


def _shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


def read_npz(path, raw_y: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    return read_xy_npz(path, "data file", DataError,
                       hint="; save it with np.savez(path, x=inputs, y=labels)", raw_y=raw_y)


def to_model_layout(x: np.ndarray, in_shape: tuple, layout: str = "auto",
                    source_layout: str | None = None) -> tuple[np.ndarray, str]:
    """x (N, ...) -> (N, *in_shape) where in_shape is the model's NHWC input without batch.
    source_layout: what the model's front end used ("NCHW" for ONNX/PyTorch), if known."""
    in_shape = tuple(int(d) for d in in_shape)
    layout = (layout or "auto").lower()
    if layout == "ncl":
        layout = "nchw"                       # channels first, for 1-D data
    if layout not in ("auto", "nchw", "nhwc"):
        raise DataError(f"unknown layout '{layout}'; use auto, nchw (ncl) or nhwc")
    if x.ndim == 0:
        raise DataError("data x is a scalar; expected (N, ...) samples")
    want = _shape(("N",) + in_shape)
    nhwc_ok = tuple(x.shape[1:]) == in_shape
    nchw_shape = None
    if len(in_shape) == 3:
        h, w, c = in_shape
        nchw_shape = (c, h, w)
    nchw_ok = nchw_shape is not None and tuple(x.shape[1:]) == nchw_shape
    # a 1-D conv model's input (1, L, C) also takes (N, C, L) as PyTorch feeds Conv1d
    ncl_shape = (in_shape[2], in_shape[1]) if len(in_shape) == 3 and in_shape[0] == 1 else None
    if ncl_shape is not None and x.ndim == 3 and tuple(x.shape[1:]) == ncl_shape and \
            layout in ("auto", "nchw"):
        return (np.ascontiguousarray(x.transpose(0, 2, 1)[:, None]),
                f"NCL {_shape(('N',) + ncl_shape)} as from PyTorch, transposed to the "
                f"model's {want}")
    if layout == "nhwc" or (layout == "auto" and nhwc_ok and
                            not (source_layout == "NCHW" and nchw_ok)):
        if not nhwc_ok:
            raise DataError(f"data x has shape {_shape(x.shape)}; the model's input is "
                            f"{want} (NHWC)")
        note = "NHWC (as the model's input)" if len(in_shape) == 3 else "as the model's input"
        return x, note
    if layout == "nchw" or (layout == "auto" and nchw_ok):
        if not nchw_ok:
            what = (f"{_shape(('N',) + nchw_shape)} in NCHW" if nchw_shape
                    else "not 4-D, so NCHW does not apply")
            if ncl_shape:
                what += f" or {_shape(('N',) + ncl_shape)} in NCL"
            raise DataError(f"data x has shape {_shape(x.shape)}; expected {what}")
        return (np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                f"NCHW {_shape(('N',) + nchw_shape)} as from PyTorch, transposed to the "
                f"model's NHWC {want}")
    alt = f" or {_shape(('N',) + nchw_shape)} (NCHW)" if nchw_shape else ""
    if ncl_shape:
        alt += f" or {_shape(('N',) + ncl_shape)} (NCL)"
    raise DataError(f"data x has shape {_shape(x.shape)}; the model's input is {want}"
                    + (" (NHWC)" if nchw_shape else "") + alt)


def io_dtype(tensor) -> np.dtype:
    """The wire dtype of a model input/output tensor: int8, or int16 little endian (the
    device protocol sends 2 bytes per element, LE, for 16x8 models)."""
    return np.dtype("<i2") if tensor.dtype == "int16" else np.dtype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """float -> int8 (or int16) as TFLite quantizes model inputs: round half to even
    (np.round, like converters.quantize.quantize_input), add the zero point, saturate."""
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point,
                   info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float64) - zero_point) * scale


def load_data(path, in_shape, scale: float, zero_point: int, num_classes: int | None = None,
              *, layout: str = "auto", source_layout: str | None = None,
              limit: int | None = None, dtype=np.int8, out_size: int | None = None) -> HilData:
    """Read and check a HIL data set; see the module docstring."""
    x, y = read_npz(path, raw_y=True)
    if y is not None and _targets(y, len(x), num_classes, out_size) is None:
        from converters.npz import check_xy
        y = check_xy(x, y, "data file", DataError, path=os.fspath(path))[1]   # class labels
    return prepare(x, y, in_shape, scale, zero_point, num_classes, layout=layout,
                   source_layout=source_layout, limit=limit, path=os.fspath(path),
                   dtype=dtype, out_size=out_size)


def _targets(y, n: int, num_classes, out_size) -> np.ndarray | None:
    """y as float regression targets (N, out_size), or None when y are class labels:
    (N, *output shape) / (N, output size) arrays, or (N,) floats for a one-value output."""
    y = np.asarray(y)
    if out_size is None or not np.issubdtype(y.dtype, np.number) or y.ndim < 1 or len(y) != n:
        return None
    if y.ndim >= 2 and int(np.prod(y.shape[1:])) == out_size and out_size > 1:
        pass
    elif not (out_size == 1 and num_classes is None and y.size == n):
        return None
    t = y.reshape(n, out_size).astype(np.float64)
    if not np.all(np.isfinite(t)):
        raise DataError("regression targets y hold NaN or infinite values")
    return t


def prepare(x, y, in_shape, scale, zero_point, num_classes=None, *, layout="auto",
            source_layout=None, limit=None, path="", dtype=np.int8,
            out_size=None) -> HilData:
    x = np.asarray(x)
    qname = np.dtype(dtype).name
    if x.dtype.kind == "i" and x.dtype.itemsize == np.dtype(dtype).itemsize:
        src = qname
        x = x.astype(dtype)
    elif np.issubdtype(x.dtype, np.floating):
        src = str(x.dtype)
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
            raise DataError(f"data x holds NaN or infinite values (first in sample {bad})")
    elif np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        raise DataError(f"data x has dtype {x.dtype}; give float32 (quantized with the model's "
                        f"input scale {scale:.6g} and zero point {zero_point}) or {qname} "
                        f"(already quantized)")
    else:
        raise DataError(f"data x has dtype {x.dtype}; expected float32 or {qname}")
    if x.ndim < 1 or len(x) == 0:
        raise DataError("data x is empty; expected (N, ...) samples with N >= 1")
    total = len(x)
    targets = _targets(y, len(x), num_classes, out_size) if y is not None else None
    if targets is not None:
        y = None
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"labels y have shape {_shape(y.shape)}; expected (N,) class "
                            f"indices")
        if len(y) != len(x):
            raise DataError(f"labels y have {len(y)} entries for {len(x)} samples in x")
        if not (np.issubdtype(y.dtype, np.integer) or
                (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
            raise DataError(f"labels y have dtype {y.dtype}; expected integer class indices")
        y = y.astype(np.int64)
        if num_classes is not None:
            bad = np.flatnonzero((y < 0) | (y >= num_classes))
            if len(bad):
                i = int(bad[0])
                raise DataError(f"label y[{i}] = {int(y[i])} is out of range: the model has "
                                f"{num_classes} output classes (0..{num_classes - 1}); "
                                f"{len(bad)} labels out of range in all")
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit {limit}: must be at least 1")
        x = x[:limit]
        y = y[:limit] if y is not None else None
        targets = targets[:limit] if targets is not None else None
    x, note = to_model_layout(x, in_shape, layout, source_layout)
    xq = x if src == qname else quantize(x, scale, zero_point, dtype)
    return HilData(np.ascontiguousarray(xq), y, src, note, path, total, targets)

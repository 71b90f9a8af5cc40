"""Reading the data files users hand us (calibration sets, HIL data sets, training data,
inputs): an array `x` (N, ...) and optional labels `y`, checked once for every command
(`check_xy`: at least one sample, numeric, finite, labels integer and as many as the
samples, within the model's classes when known), with one clear error line on failure."""
from __future__ import annotations

import os

import numpy as np


def read_xy_npz(path, what: str, error: type[Exception], hint: str = "",
                raw_y: bool = False):
    """(x, y or None) from `path`. Every failure raises `error` with one line naming
    `what` ("calibration file", "data file") and the path; `hint` follows a missing `x`.
    raw_y: y as stored, unchecked (the caller checks it: labels or regression targets)."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise error(f"{what} {path} has no array 'x' (found: "
                            f"{', '.join(z.files) or 'none'}){hint}")
            x = np.asarray(z["x"])
            y = np.asarray(z["y"]) if "y" in z.files else None
        if raw_y:
            return check_xy(x, None, what, error, path=path)[0], y
        return check_xy(x, y, what, error, path=path)
    except error:
        raise
    except FileNotFoundError:
        raise error(f"cannot read {what} {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/format errors
        detail = str(e).splitlines()[0][:80] if str(e) else ""
        raise error(f"cannot read {what} {path}: not a valid .npz "
                    f"({type(e).__name__}{': ' + detail if detail else ''})") from None


def check_xy(x: np.ndarray, y, what: str, error: type[Exception], num_classes: int | None = None,
             path: str = ""):
    """Raise `error` (one line) unless x and y are usable data; returns (x, y as int64)."""
    where = f"{what} {path}".strip()
    if x.ndim == 0 or x.shape[0] == 0 or x.size == 0:
        raise error(f"{where}: x holds no samples (shape {tuple(x.shape)})")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise error(f"{where}: x has dtype {x.dtype}; expected numbers")
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating):
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
            raise error(f"{where}: x has {int(bad.sum())} non-finite values (NaN or inf), "
                        f"first in sample {i}")
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise error(f"{where}: labels y have shape {tuple(y.shape)}; expected (N,) class indices")
    y = y.reshape(-1)
    if len(y) != len(x):
        raise error(f"{where}: {len(x)} samples in x but {len(y)} labels in y")
    if not np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_:
        raise error(f"{where}: labels y have dtype {y.dtype}; expected integer class indices")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise error(f"{where}: labels y are not whole numbers (class indices expected)")
    yi = y.astype(np.int64)
    if (yi < 0).any() or (num_classes is not None and (yi >= num_classes).any()):
        hi = f" < {num_classes}" if num_classes is not None else ""
        raise error(f"{where}: labels y range {int(yi.min())}..{int(yi.max())}; the model's "
                    f"classes are 0{hi and '..' + str(num_classes - 1)}")
    return x, yi

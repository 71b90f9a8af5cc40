"""Reading the `.npz` data files users hand us (calibration sets, HIL data sets): an
array `x` (N, ...) and optional labels `y`, with one clear error line on failure."""
from __future__ import annotations

import os

import numpy as np


def read_xy_npz(path, what: str, error: type[Exception], hint: str = ""):
    """(x, y or None) from `path`. Every failure raises `error` with one line naming
    `what` ("calibration file", "data file") and the path; `hint` follows a missing `x`."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise error(f"{what} {path} has no array 'x' (found: "
                            f"{', '.join(z.files) or 'none'}){hint}")
            x = np.asarray(z["x"])
            y = np.asarray(z["y"]) if "y" in z.files else None
    except error:
        raise
    except FileNotFoundError:
        raise error(f"cannot read {what} {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/format errors
        detail = str(e).splitlines()[0][:80] if str(e) else ""
        raise error(f"cannot read {what} {path}: not a valid .npz "
                    f"({type(e).__name__}{': ' + detail if detail else ''})") from None
    return x, y

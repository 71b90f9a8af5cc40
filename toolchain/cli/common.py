"""Helpers the command modules share (they import this, never the package's __init__).

Outputs are checked before the work starts (`check_outputs`: the directory exists and
is writable, the suffix is right) and written atomically (`atomic_write`: a temporary
name in the same directory, then a rename), so a failed command leaves nothing new."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from toolchain.errors import McuError


def check_outputs(*paths, suffixes: dict | None = None) -> None:
    """Raise one line before any work if an output path cannot be written. `suffixes`
    maps a path to the suffixes it must have (e.g. {out_model: (".tflite",)})."""
    for p in paths:
        if not p:
            continue
        p = Path(p)
        want = (suffixes or {}).get(str(p)) or (suffixes or {}).get(p)
        if want and p.suffix.lower() not in want:
            raise McuError(f"{p}: expected a {' or '.join(want)} file name")
        parent = p.parent if str(p.parent) else Path(".")
        if p.is_dir():
            raise McuError(f"{p} is a directory; give a file name")
        if not parent.is_dir():
            raise OSError(2, "No such file or directory", str(parent))
        if not os.access(parent, os.W_OK):
            raise OSError(13, "Permission denied", str(parent))


def atomic_write(path, data: bytes | str) -> None:
    """Write a whole file under a temporary name, then rename it into place."""
    path = Path(path)
    b = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path, obj) -> None:
    """Write figures as JSON (every command that yields figures takes --json PATH)."""
    if path:
        atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")

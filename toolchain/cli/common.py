"""Helpers the command modules share (they import this, never the package's __init__)."""
from __future__ import annotations

import json


def write_json(path, obj) -> None:
    """Write figures as JSON (every command that yields figures takes --json PATH)."""
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2, default=str)
            f.write("\n")

"""The README's "Supported ops" table names every op of the registry (and no other)."""
import re
from pathlib import Path

from toolchain.ir import ops

README = Path(__file__).resolve().parents[1] / "README.md"


def test_supported_ops_table_covers_the_registry():
    text = README.read_text()
    section = text.split("### Supported ops", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and
            not line.startswith("| op ")]
    named = set()
    for row in rows:
        first = row.split("|")[1]
        named.update(re.findall(r"\b[A-Z][A-Z0-9_]+\b", first))
    assert named == set(ops.REGISTRY), (f"missing: {sorted(set(ops.REGISTRY) - named)}, "
                                        f"unknown: {sorted(named - set(ops.REGISTRY))}")

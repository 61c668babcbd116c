"""Layers go one way: ``server`` -> ``signaling`` -> ``media`` (DESIGN.md). A module that imports
upward makes an import circle; this test reads every module's imports (not only at runtime:
TYPE_CHECKING blocks and imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"signaling": {"server"}, "media": {"server", "signaling"}}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_the_layers_above_it(package: str) -> None:
    upward = [f"{path.relative_to(ROOT)}:{line} imports {name}"
              for path in sorted((ROOT / package).rglob("*.py"))
              for line, name in _imports(path)
              if name.split(".")[0] in FORBIDDEN[package]]
    assert upward == []

"""Architecture conformance: the dependency arrow dashboard -> analysis -> sweep -> bao.

A package may import only those to its right; ``bao`` imports none of the others. Imports are
read from the source (every import statement, including those inside functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["dashboard", "analysis", "sweep", "bao"]


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER)
def test_imports_follow_the_dependency_arrow(package: str) -> None:
    forbidden = set(ORDER[: ORDER.index(package)])
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & forbidden)
        for path in (ROOT / package).rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_tests_mirror_the_packages() -> None:
    for test_dir in (ROOT / "tests").iterdir():
        if test_dir.is_dir() and test_dir.name not in {"e2e", "fixtures", "__pycache__"}:
            assert (ROOT / test_dir.name).is_dir(), f"tests/{test_dir.name} mirrors no package"

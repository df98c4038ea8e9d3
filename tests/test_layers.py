"""The dependency rule of ``../shared/ARCHITECTURE.md``, read from the source's imports.

Every ``import`` and ``from ... import`` statement is found with :mod:`ast`,
those inside functions (lazy imports) included, so a forbidden edge cannot hide
behind a deferred import.  The rule:

* ``dwellrank_logs`` (the shared layer) imports no other project package;
* ``simulate``, ``ranking`` and ``engagement`` import only the shared layer;
* ``dwellrank_pipeline`` (the top layer) may import any stage, never the CLI;
* ``cli.py`` may import everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("dwellrank_logs", "simulate", "ranking", "engagement", "dwellrank_pipeline", "cli")
ALLOWED: dict[str, frozenset[str]] = {
    "dwellrank_logs": frozenset(),
    "simulate": frozenset({"dwellrank_logs"}),
    "ranking": frozenset({"dwellrank_logs"}),
    "engagement": frozenset({"dwellrank_logs"}),
    "dwellrank_pipeline": frozenset({"dwellrank_logs", "simulate", "ranking", "engagement"}),
    "cli": frozenset({"dwellrank_logs", "simulate", "ranking", "engagement", "dwellrank_pipeline"}),
}


def imported_packages(source: str) -> set[tuple[str, int]]:
    """(top-level project package, line) of every absolute import in ``source``, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update((n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in PROJECT)
    return found


def violations(package: str, files: list[Path]) -> list[str]:
    """One line per import of ``package``'s files that breaks :data:`ALLOWED`."""
    out = []
    for f in files:
        for target, line in sorted(imported_packages(f.read_text())):
            if target != package and target not in ALLOWED[package]:
                out.append(f"{f.relative_to(ROOT)}:{line}: {package} must not import {target}")
    return out


def _files(package: str) -> list[Path]:
    if package == "cli":
        return [ROOT / "cli.py"]
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PROJECT)
def test_imports_follow_the_layers(package):
    files = _files(package)
    assert files, f"no source files found for {package}"
    assert violations(package, files) == []


def test_checker_sees_lazy_and_nested_imports(tmp_path):
    # The checker must not be vacuous: a lazy import inside a method is an edge.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import numpy\n\nclass A:\n    def f(self):\n        from simulate.engine import simulate\n        import ranking.train\n"
    )
    assert imported_packages(bad.read_text()) == {("simulate", 5), ("ranking", 6)}


def test_each_stage_uses_the_shared_layer():
    # The edges that must exist, so that a broken file walk cannot pass as "no violations".
    for package in ("simulate", "ranking", "engagement", "dwellrank_pipeline"):
        targets = {t for f in _files(package) for t, _ in imported_packages(f.read_text())}
        assert "dwellrank_logs" in targets, package

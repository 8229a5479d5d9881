"""The set-up cannot lie: every third-party module the tests and benchmarks import is declared in
pyproject.toml, and every declared dependency is installed in the environment running the tests."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


DECLARED = {
    _name(r)
    for r in [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["test"]]
}


def _imported_top_level(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_tests_is_declared() -> None:
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")} | {"ecaptureq"}
    imported = set()
    for folder in ("tests", "benchmarks"):
        imported |= _imported_top_level(ROOT / folder)
    third_party = sorted(imported - set(sys.stdlib_module_names) - local)
    assert third_party, "the walk found no third-party import at all"
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in third_party:
        dists = {_name(d) for d in providers.get(module, [])}
        if not dists & DECLARED:
            undeclared[module] = sorted(dists) or ["(not installed)"]
    assert not undeclared, f"imported by tests or benchmarks but not declared in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_installed() -> None:
    missing = []
    for name in sorted(DECLARED):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"declared but not installed (scripts/setup-test installs them): {missing}"

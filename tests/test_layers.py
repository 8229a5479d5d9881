"""The package layers: each package imports only the packages to its left (README, Architecture).

Read from the source with :mod:`ast`, so a late (function-level) import counts the same as a top-level one.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import ecaptureq

PACKAGE = Path(ecaptureq.__file__).parent

ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "tuning": set(),
    "lazy": set(),
    "access": {"protocol"},
    "decode": {"protocol"},
    "client": {"protocol", "access"},
    "server": {"protocol", "access"},
    "sinks": {"protocol", "decode"},
    "sources": {"protocol", "decode", "sinks", "lazy"},
    "store": {"protocol", "decode", "sinks", "lazy"},
    "pipeline": {"protocol", "decode", "sinks", "client", "store", "tuning"},
    "fleet": {"protocol", "decode", "sinks", "client", "store", "pipeline", "lazy"},
    "web": {"protocol", "access", "decode", "store"},
    "bench": {"protocol", "access", "decode", "sinks", "client", "server", "sources", "store", "pipeline"},
    "cli": set(),  # the top: may import every package
}
"""For each package (or top-level module), the packages it may import besides itself and ``ecaptureq``."""

TOP = {"cli", "__main__"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The ``ecaptureq`` packages a file imports (``ecaptureq`` itself, for ``__version__``, excluded)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ecaptureq" and len(parts) > 1:
                found.add(parts[1])
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_package_is_in_the_table() -> None:
    layers = {_layer(p) for p in _sources()}
    assert layers - TOP <= set(ALLOWED), f"add {sorted(layers - TOP - set(ALLOWED))} to ALLOWED"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_layers_to_its_left(path: Path) -> None:
    layer = _layer(path)
    if layer in TOP:
        return
    leaks = _imports(path) - ALLOWED[layer] - {layer}
    assert not leaks, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(leaks)}"


def test_a_leak_is_caught(tmp_path: Path) -> None:
    """The check itself: a store module that imports the client is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ecaptureq.client.connection import Client\nimport ecaptureq.web.app\n", encoding="utf-8"
    )
    assert _imports(bad) == {"client", "web"}
    assert _imports(bad) - ALLOWED["store"] == {"client", "web"}


def test_the_access_policy_needs_no_web_framework() -> None:
    """The hub's handshake hook and the web UI's guard share :mod:`ecaptureq.access`: stdlib only."""
    tree = ast.parse((PACKAGE / "access.py").read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    roots = {name.split(".")[0] for name in modules}
    assert roots - {"__future__"} <= set(sys.stdlib_module_names), sorted(roots)


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A long command-line option, as a person would type it: ``--filter``, ``--spool-size``."""

MAY_NAME_OPTIONS = {"bench", "web/curl.py"}
"""Outside cli, only these may name options: bench runs the CLI as a subprocess, web/curl.py writes curl's."""


def _option_names(source: str) -> list[tuple[int, str]]:
    """``(line, option)`` for each option named in a string literal of ``source``; docstrings (a string
    standing alone as a statement, attribute docstrings included) do not count."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    return [
        (node.lineno, option)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        for option in OPTION.findall(node.value)
    ]


def _may_name_options(rel: Path) -> bool:
    return rel.parts[0] in TOP or rel.parts[0] in MAY_NAME_OPTIONS or rel.as_posix() in MAY_NAME_OPTIONS


@pytest.mark.parametrize(
    "path",
    [p for p in _sources() if not _may_name_options(p.relative_to(PACKAGE))],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_nothing_below_cli_names_a_command_line_option(path: Path) -> None:
    """Library errors carry data and cli words them: a library message naming ``--token`` is CLI wording in
    the wrong layer (and, sent to a remote client, names options of a program the reader may not run)."""
    rel = path.relative_to(PACKAGE).as_posix()
    named = [f"{rel}:{line}: {option}" for line, option in _option_names(path.read_text(encoding="utf-8"))]
    assert not named, "word these in ecaptureq.cli (e.g. cli/explain.py): " + ", ".join(named)


def test_an_option_in_a_library_message_is_caught() -> None:
    """The check itself: an option in an f-string message is found, the same words in docstrings are not."""
    planted = (
        '"""Module docstring: --allowed here."""\n'
        "class E(Exception):\n"
        '    """Docstring: --allowed too."""\n'
        "X = 1\n"
        '"""Attribute docstring: --allowed."""\n'
        "def f(text: str) -> None:\n"
        '    raise E(f"invalid {text}: check --spool-size or --nats-user/--nats-password")\n'
        'Y = "a -- b, x--y, --, 2026-01-02 --3"\n'
    )
    assert _option_names(planted) == [(7, "--spool-size"), (7, "--nats-user"), (7, "--nats-password")]

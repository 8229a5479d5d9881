"""Keeps the ``e2e`` marks honest: a test that starts a process or opens a socket must carry one.

``pytest -m "not e2e"`` is the fast inner loop. Python's audit hooks (:pep:`578`) report every process
started and every socket connected or bound; a test that caused one on the main thread, in its call or
in the set-up of a fixture it uses (a module-scoped server counts for every test that uses it, not only
the first), fails unless it is marked ``@pytest.mark.e2e``. ``conftest.py`` installs the hooks.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Generator
from typing import Any

import pytest

E2E_EVENTS: frozenset[str] = frozenset(
    {"subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "socket.connect", "socket.bind"}
)
"""The audit events that make a test end-to-end."""
E2E_REPORT_ENV = "ECAPTUREQ_E2E_REPORT"
"""When set, names a file to which unmarked end-to-end tests are appended (``nodeid<TAB>why``) instead of
failing: how the marks were first placed."""


class _Watch:
    """What happened on the main thread since :meth:`start`; which fixtures did end-to-end things."""

    def __init__(self) -> None:
        self.active = False
        self.event: str | None = None
        self.count = 0
        self.fixtures: dict[str, str] = {}

    def start(self) -> None:
        self.active, self.event = True, None

    def audit(self, event: str, _args: tuple[object, ...]) -> None:
        if self.active and event in E2E_EVENTS and threading.current_thread() is threading.main_thread():
            self.count += 1
            self.event = self.event or event


_WATCH = _Watch()
sys.addaudithook(_WATCH.audit)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start watching this test (fixture set-up runs after this)."""
    _WATCH.start()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Remember a fixture whose set-up did end-to-end things: every test that uses it is end-to-end."""
    before = _WATCH.count
    result = yield
    if _WATCH.count > before and _WATCH.event is not None:
        _WATCH.fixtures[fixturedef.argname] = f"{_WATCH.event} in fixture {fixturedef.argname}"
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail a passed, unmarked test that did end-to-end things (or report it, under E2E_REPORT_ENV)."""
    report: pytest.TestReport = yield
    if call.when != "call":
        return report
    _WATCH.active = False
    names = getattr(item, "fixturenames", ())
    why = _WATCH.event or next((_WATCH.fixtures[n] for n in names if n in _WATCH.fixtures), None)
    if why is None or item.get_closest_marker("e2e") is not None or not report.passed:
        return report
    path = os.environ.get(E2E_REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{item.nodeid}\t{why}\n")
        return report
    report.outcome = "failed"
    report.longrepr = f"{item.nodeid} did {why} but is not marked e2e: add @pytest.mark.e2e"
    return report

"""Shared fixtures: real servers on 127.0.0.1 and the command line run as a real process."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "ecaptureq"]

CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine reaches no network: without these Chromium keeps trying to call home.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A foreign origin for the origin tests, served from 127.0.0.1.
    "--host-resolver-rules=MAP evil.example 127.0.0.1",
]
"""The flags every headless Chromium in the tests runs with."""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def run_on_terminal(
    args: list[str], env: dict[str, str] | None = None, *, stream: str = "stdout", timeout: float = 30
) -> tuple[int | None, str]:
    """Run ``ecaptureq ARGS`` with its ``stream`` (stdout or stderr) on a pseudo-terminal and the other
    thrown away; return its exit code (``None`` if still running after ``timeout``) and what it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args],
        env=env or ENV,
        stdout=follower if stream == "stdout" else subprocess.DEVNULL,
        stderr=follower if stream == "stderr" else subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the process closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(leader)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def store_process_of(pid: int) -> int:
    """The pid of ``pid``'s child running the store process (``record``, ``ui``, ``collect``), waited for
    (bounded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"ecaptureq.pipeline.store_process" in cmdline:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no store process")


def run_cli(*args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ecaptureq ARGS`` to completion and return the finished process (text mode)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV, input=input, check=False
    )


@dataclass
class Served:
    """A ``ecaptureq serve`` process and the URL it announced."""

    proc: subprocess.Popen[str]
    url: str


def start_serve(*args: str, listen: str = "ws://127.0.0.1:0/") -> Served:
    """Start ``ecaptureq serve --listen LISTEN ARGS`` and wait for its ``serving`` line.

    This is the one way tests start a ``serve`` process; an in-process server for a test whose other side
    is a thread or a process is ``server_support.ServerThread``.
    """
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", listen, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        match = re.search(r"serving .* on (wss?://\S+) ", line)
        if match:
            return Served(proc, match.group(1))
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.stderr.read()}")


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    """Read ``proc``'s stdout until ``needle`` appears (bounded by ``timeout``); return what was read.

    Reads the pipe itself (not through its text buffer), so ``proc.communicate()`` afterwards returns the
    rest. A process printing ``needle`` is the wait on the thing itself: it connected and was served.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in got:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not printed within {timeout} s: {got[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed before {needle!r} was printed: {got[-500:]!r}"
            got += chunk
    return got.decode(errors="replace")


def stop_serve(served: Served) -> tuple[int, str]:
    """Stop a served process with SIGTERM; return its exit code and the rest of its stderr."""
    served.proc.terminate()
    try:
        _out, err = served.proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        _out, err = served.proc.communicate()
    return served.proc.returncode, err


@pytest.fixture
def serve_demo() -> Iterator[Served]:
    """``ecaptureq serve --demo`` with a fast interval, stopped after the test."""
    served = start_serve("--demo", "--interval", "0.02")
    yield served
    stop_serve(served)


NO_SKIPS_ENV = "ECAPTUREQ_NO_SKIPS"
"""Set (by .ci/run) to make any skipped test fail the run: there, everything a test needs is installed."""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``ECAPTUREQ_NO_SKIPS=1``, a run with skipped tests fails and says which and why."""
    if not os.environ.get(NO_SKIPS_ENV):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if not skipped:
        return
    lines = [f"{NO_SKIPS_ENV} is set and {len(skipped)} test(s) or module(s) were skipped:"]
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        lines.append(f"  {report.nodeid}: {reason}")
    sys.stderr.write("\n".join(lines) + "\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


from e2e_guard import pytest_fixture_setup, pytest_runtest_makereport, pytest_runtest_setup  # noqa: E402

__all__ = ["pytest_fixture_setup", "pytest_runtest_makereport", "pytest_runtest_setup"]

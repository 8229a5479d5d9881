"""The run-log line naming a captured process's cgroup and container: written, parsed back, stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ecaptureq.protocol import RunLog
from ecaptureq.protocol.process import ProcessLabel, parse_process
from ecaptureq.store import CaptureStore

CONTAINER = "0f3c" * 16


def test_round_trip_with_awkward_cgroup_and_comm() -> None:
    for label in (
        ProcessLabel(1234, "curl", f"/system.slice/docker-{CONTAINER}.scope", CONTAINER),
        ProcessLabel(7, "my tool", "/user.slice/with space/x's", ""),
        ProcessLabel(8, "python3", "", ""),
    ):
        line = label.log_line()
        assert " INF process pid=" in line
        assert parse_process(line) == label


def test_other_lines_are_not_processes() -> None:
    assert parse_process("2026-11-27T15:00:00Z INF hooked openssl 3.0.19 path=/x") is None
    assert (
        parse_process("2026-11-27T15:00:00Z INF process pid=1 cgroup='unclosed container_id= comm=x") is None
    )


def test_store_keeps_processes(tmp_path: Path) -> None:
    label = ProcessLabel(4321, "curl", f"/docker-{CONTAINER}.scope", CONTAINER)
    store = CaptureStore(tmp_path / "capture.db")
    store.add(RunLog(label.log_line()))
    store.add(RunLog("2026-11-27T15:00:00Z INF something else"))
    store.close()
    with sqlite3.connect(tmp_path / "capture.db") as db:
        rows = db.execute("SELECT pid, comm, cgroup, container_id FROM processes").fetchall()
    assert rows == [(4321, "curl", f"/docker-{CONTAINER}.scope", CONTAINER)]

"""The run-log line naming a captured process's cgroup and container: written, parsed back, stored."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.process import ProcessLabel, parse_process
from ecaptureq.sources.tls.hooks import Processes, ProcessInfo
from ecaptureq.store import CaptureStore
from ecaptureq.web.queries import exchange_detail

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


def _add_exchange(store: CaptureStore, pid: int, node: str | None = None) -> None:
    request = b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for n, (payload, data_type) in enumerate(((request, 1), (response, 0))):
        store.add(
            Event(
                timestamp=1_700_000_000_000_000_000 + n,
                uuid=f"{pid}_{pid}_curl_5_{data_type}",
                src_ip="127.0.0.1",
                src_port=40000,
                dst_ip="127.0.0.1",
                dst_port=443,
                pid=pid,
                pname="curl",
                type=1 if data_type else 3,
                length=len(payload),
                payload=payload,
            ),
            node,
        )


def test_ui_exchange_detail_names_the_container(tmp_path: Path) -> None:
    label = ProcessLabel(4321, "curl", f"/docker-{CONTAINER}.scope", CONTAINER)
    store = CaptureStore(tmp_path / "capture.db")
    store.add(RunLog(label.log_line()))
    _add_exchange(store, 4321)
    store.close()
    with sqlite3.connect(tmp_path / "capture.db") as db:
        (exchange_id,) = db.execute("SELECT id FROM exchanges").fetchone()
        detail = exchange_detail(db, exchange_id)
    assert detail is not None and detail["pid"] == 4321
    assert detail["container_id"] == CONTAINER and detail["cgroup"] == label.cgroup


def test_ui_exchange_detail_names_the_container_of_its_own_node(tmp_path: Path) -> None:
    """The same pid on two fleet nodes is two processes: each exchange is labelled from its node's line,
    not from whichever node's line came last."""
    other = "9a8b" * 16
    labels = {
        "node-a": ProcessLabel(4321, "curl", f"/docker-{CONTAINER}.scope", CONTAINER),
        "node-b": ProcessLabel(4321, "curl", f"/docker-{other}.scope", other),
    }
    store = CaptureStore(tmp_path / "capture.db")
    for node, label in labels.items():
        store.add(RunLog(label.log_line()), node)
        _add_exchange(store, 4321, node)
    store.close()
    with sqlite3.connect(tmp_path / "capture.db") as db:
        for node, label in labels.items():
            (exchange_id,) = db.execute("SELECT id FROM exchanges WHERE node = ?", (node,)).fetchone()
            detail = exchange_detail(db, exchange_id)
            assert detail is not None
            assert (detail["container_id"], detail["cgroup"]) == (label.container_id, label.cgroup), node


def test_an_exec_still_in_the_ring_is_read_before_labelling_the_new_program(tmp_path: Path) -> None:
    """``sh -c 'echo $$ > .../cgroup.procs && exec curl'``: the pid is sh's, its cgroup at sh's exec is the
    parent's, and curl's exec record (with the container's cgroup) may still wait in the watcher's ring
    when curl's first event is labelled; the comm differing from the one the pid exec'd as reads it first."""
    scope = tmp_path / f"docker-{CONTAINER}.scope"
    scope.mkdir()
    processes = Processes(root=str(tmp_path))
    processes.saw_exec(4242, os.stat(tmp_path).st_ino, "sh")
    waiting = [(4242, os.stat(scope).st_ino, "curl")]  # what the watcher's drain would read next
    drains = []

    def drain() -> None:
        drains.append(len(waiting))
        while waiting:
            processes.saw_exec(*waiting.pop())

    processes.before_lookup = drain
    assert processes.get(4242, "sh") == ProcessInfo("/", "")  # known: no drain
    assert waiting
    assert processes.get(4242, "curl") == ProcessInfo(f"/{scope.name}", CONTAINER)
    # Threads that name themselves cost one drain per name, not one per event.
    for _ in range(3):
        for name in ("curl", "worker-1", "worker-2"):
            assert processes.get(4242, name) == ProcessInfo(f"/{scope.name}", CONTAINER)
    assert drains == [1, 0, 0]

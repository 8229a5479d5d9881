"""Deadline: a query is interrupted once its time is up, by one watchdog thread, and never after cancel."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from types import FrameType

import pytest

from ecaptureq.store import Deadline

FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
COUNT_TO = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c"
)


def test_a_query_past_its_deadline_is_interrupted() -> None:
    conn = sqlite3.connect(":memory:")
    started = time.monotonic()
    with Deadline(conn, 0.2) as deadline, pytest.raises(sqlite3.OperationalError, match="interrupted"):
        conn.execute(FOREVER).fetchone()
    assert deadline.expired and time.monotonic() - started >= 0.2


def test_a_statement_started_after_the_deadline_is_interrupted_too() -> None:
    # SQLite forgets an interrupt that comes between two statements: the watchdog interrupts again.
    conn = sqlite3.connect(":memory:")
    with Deadline(conn, 0.05) as deadline:
        time.sleep(0.2)  # the time runs out while no statement runs
        assert deadline.expired
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            conn.execute(FOREVER).fetchone()


def test_after_cancel_nothing_is_interrupted() -> None:
    conn = sqlite3.connect(":memory:")
    with Deadline(conn, 0.05) as deadline:
        assert conn.execute(COUNT_TO, (10,)).fetchone() == (10,)
    time.sleep(0.2)  # past the deadline that was cancelled
    assert not deadline.expired
    assert conn.execute(COUNT_TO, (3_000_000,)).fetchone() == (3_000_000,)


def test_many_deadlines_at_once_each_stop_their_own_query() -> None:
    # Threads with deadlines of 0.1 s to 0.5 s: each long query is stopped, each short one completes.
    results: dict[int, str] = {}

    def run(i: int) -> None:
        conn = sqlite3.connect(":memory:")
        with Deadline(conn, 0.1 + 0.1 * (i % 5)):
            try:
                sql, args = (FOREVER, ()) if i % 2 else (COUNT_TO, (1000,))
                results[i] = str(conn.execute(sql, args).fetchone()[0])
            except sqlite3.OperationalError as exc:
                results[i] = str(exc)
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {i: "interrupted" if i % 2 else "1000" for i in range(10)}


def test_no_python_runs_in_the_querying_thread_while_sqlite_works() -> None:
    # A progress handler would be Python called every thousand steps, each time needing the GIL, which a
    # recording process's decoding thread holds most of the time.
    conn = sqlite3.connect(":memory:")
    calls: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    with Deadline(conn, 10):
        sys.setprofile(profile)
        try:
            row = conn.execute(COUNT_TO, (1_000_000,)).fetchone()
        finally:
            sys.setprofile(None)
    assert row == (1_000_000,) and calls == []

"""Commits in the store's writer thread (what record and ui use), by its committing process, keep arrival
order with every other write, and keep what a synchronous flush would have written."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from ecaptureq.bench.workloads import workload_events
from ecaptureq.protocol import Event
from ecaptureq.store import CaptureStore, StoreError
from ecaptureq.store.schema import packet_row
from ecaptureq.store.writer import CHECKPOINT_WAL_BYTES, CHECKPOINT_WAL_LIMIT

pytestmark = pytest.mark.e2e  # the committing process


def _rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    try:
        packets = db.execute(
            'SELECT "index", uuid, payload_binary, connection_id FROM packets ORDER BY 1'
        ).fetchall()
        exchanges = db.execute("SELECT * FROM exchanges ORDER BY id").fetchall()
        conns = db.execute("SELECT id, url, close_reason FROM connections ORDER BY id").fetchall()
    finally:
        db.close()
    return packets, exchanges, conns


def test_background_commits_write_what_synchronous_flushes_write(tmp_path: Path) -> None:
    events = workload_events("http1", 3000) + workload_events("http2", 2000)
    plain, threaded = tmp_path / "plain.db", tmp_path / "threaded.db"

    store = CaptureStore(plain, batch_size=10**9)
    store.connection_opened("ws://127.0.0.1:1/")
    for i, ev in enumerate(events):
        store.buffer(ev)
        if i % 700 == 699:
            store.flush()
        if i == 2500:
            store.connection_closed("gone")
            store.connection_opened("ws://127.0.0.1:2/")
    store.close()

    store = CaptureStore(threaded, batch_size=10**9)
    writers: set[str] = set()
    store.connection_opened("ws://127.0.0.1:1/")
    futures = []
    for i, ev in enumerate(events):
        store.buffer(ev)
        if i % 700 == 699:
            future = store.flush_in_background()
            assert future is not None
            future.add_done_callback(lambda _f: writers.add(threading.current_thread().name))
            futures.append(future)
        if i == 2500:  # written through the same thread, after the batches asked for before
            store.connection_closed("gone")
            store.connection_opened("ws://127.0.0.1:2/")
    store.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert any(name.startswith("ecaptureq-store") for name in writers)

    a, b = _rows(plain), _rows(threaded)
    assert len(a[0]) == len(events)
    assert a[0] == b[0], "packets in arrival order, with the same connection ids"
    assert a[2] == b[2]
    strip = [tuple(v for j, v in enumerate(row) if j not in (10, 11)) for row in a[1]]  # started/ended ns
    assert strip == [tuple(v for j, v in enumerate(row) if j not in (10, 11)) for row in b[1]]


def test_a_batch_rendered_in_steps_writes_the_same(tmp_path: Path) -> None:
    # Take a batch, render its exchanges a few at a time while the decoder goes on, then commit it.
    events = workload_events("http1", 1200) + workload_events("http2", 800)
    plain, stepped = tmp_path / "plain.db", tmp_path / "stepped.db"
    store = CaptureStore(plain, batch_size=10**9)
    store.connection_opened("ws://127.0.0.1:1/")
    for i, ev in enumerate(events):
        store.buffer(ev)
        if i % 300 == 299:
            store.flush()
    store.close()

    store = CaptureStore(stepped, batch_size=10**9)
    store.connection_opened("ws://127.0.0.1:1/")
    batch = None
    for i, ev in enumerate(events):
        store.buffer(ev)
        if batch is not None and not batch.render(7):
            continue  # rendering goes on between events
        if batch is not None:
            store.commit_in_background(batch)
            batch = None
        if i % 300 == 299:
            batch = store.take()
            assert batch is not None and batch.unrendered
    if batch is not None:
        store.commit_in_background(batch)
    store.close()
    assert _rows(plain) == _rows(stepped)


def test_a_batch_queued_behind_a_failed_one_waits_for_it_and_both_are_written_in_order(
    tmp_path: Path,
) -> None:
    # Two batches handed to the writer thread back to back (what ``record``'s store process does). The
    # first fails in SQLite (a trigger refuses it), so the second must not be written before it: its
    # exchange rows would be replaced by the first's older ones (a request written again without the
    # response the second batch completed it with).
    events = workload_events("http1", 400)
    plain, refused = tmp_path / "plain.db", tmp_path / "refused.db"
    store = CaptureStore(plain, batch_size=10**9)
    for ev in events:
        store.buffer(ev)
    store.close()

    store = CaptureStore(refused, batch_size=10**9)
    db = sqlite3.connect(refused, isolation_level=None)
    db.execute("CREATE TABLE refuse (x)")
    db.execute("INSERT INTO refuse VALUES (1)")
    db.execute(
        "CREATE TRIGGER refusing BEFORE INSERT ON packets WHEN (SELECT count(*) FROM refuse) > 0"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    for ev in events[:201]:  # ends with a request: its response comes in the second batch
        store.buffer(ev)
    first = store.flush_in_background()
    for ev in events[201:]:
        store.buffer(ev)
    second = store.flush_in_background()
    assert first is not None and second is not None
    with pytest.raises(StoreError, match="refused by the test"):
        first.result()
    with pytest.raises(StoreError, match="earlier batch"):
        second.result()
    assert db.execute("SELECT count(*) FROM packets").fetchone() == (0,)
    db.execute("DELETE FROM refuse")
    db.close()
    store.close()  # the two, in order, and nothing else
    assert _rows(plain)[:2] == _rows(refused)[:2]


@pytest.mark.parametrize("background", [True, False])
def test_the_wal_is_copied_into_the_database_while_recording(tmp_path: Path, background: bool) -> None:
    """SQLite's automatic checkpoint is off on the store's connections: the WAL is copied into the database
    file while the recording goes on, and stays bounded. Commits in the background go to the committing
    process, which copies it after them; a store committing in its own process copies it in a thread."""
    path = tmp_path / "long.db"
    wal = Path(f"{path}-wal")
    store = CaptureStore(path, batch_size=10**9)
    events = workload_events("http1", 1000)
    largest_wal = 0
    for round_ in range(10):  # about 3 MiB of WAL per round: 30 MiB in all (4,000 events now write 12 MiB)
        if background:
            _store_and_commit(store, events)
        else:
            for ev in events:
                store.buffer(ev)
            store.flush()
        largest_wal = max(largest_wal, wal.stat().st_size)
        if round_ == 2:
            # The WAL passed CHECKPOINT_WAL_BYTES a round ago, far below CHECKPOINT_WAL_LIMIT: it is being
            # copied beside the commits (wait for it, bounded).
            threads = {t.name for t in threading.enumerate()}
            assert ("ecaptureq-checkpoint" in threads) is not background
            for _ in range(200):
                if path.stat().st_size > CHECKPOINT_WAL_BYTES:
                    break
                threading.Event().wait(0.05)
            assert path.stat().st_size > CHECKPOINT_WAL_BYTES
    store.close()
    assert "ecaptureq-checkpoint" not in {t.name for t in threading.enumerate()}
    assert not wal.exists() or wal.stat().st_size == 0  # close() empties it, as before
    assert largest_wal < CHECKPOINT_WAL_LIMIT + 4 * 1024 * 1024  # at most one round beyond the bound
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM packets").fetchone() == (10 * len(events),)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def _store_and_commit(store: CaptureStore, events: list[Event]) -> None:
    """Buffer ``events`` and commit them in the background; return once committed."""
    for ev in events:
        store.buffer(ev)
    future = store.flush_in_background()
    assert future is not None
    future.result()


def _stored_packets(path: Path) -> int:
    """The packets a database holds."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM packets").fetchone()[0])
    finally:
        db.close()


def _committers() -> list[int]:
    """Pids of this process's children running the store's committing process."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                if b"committer.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
    return pids


def test_background_commits_go_through_the_committing_process(tmp_path: Path) -> None:
    """The batches reach the database through a process of their own (the decoding thread keeps its
    core), which ends with the store; a batch it cannot take (a value marshal refuses) is committed by the
    writer thread itself, in order. Either way ``is_binary`` and ``payload_utf8`` are what ``packet_row``
    says (the committing process computes them with the same functions, loaded by path)."""

    class Name(str):
        __slots__ = ()

    path = tmp_path / "c.db"
    store = CaptureStore(path, batch_size=10**9)
    binary = b"\x00\x01 binary \xff\xfe\xc3"
    first = [*workload_events("http1", 250), Event(timestamp=2, uuid="1_1_x_3_1", pid=1, payload=binary)]
    _store_and_commit(store, first)
    (pid,) = _committers()
    odd = Event(timestamp=1, uuid="1_1_x_3_0", pid=1, pname=Name("curl"), payload=b"odd \x00" + binary)
    rest = workload_events("http1", 250)
    _store_and_commit(store, [odd, *rest])
    assert _committers() == [pid]
    store.close()
    assert _committers() == []
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            'SELECT pname, is_binary, payload_utf8, payload_binary FROM packets ORDER BY "index"'
        )
        stored = rows.fetchall()
    finally:
        db.close()
    assert len(stored) == 502 and stored[251][0] == "curl"
    expected = [packet_row(event)[-3:] for event in [*first, odd, *rest]]
    assert [row[1:] for row in stored] == expected
    assert [row[1] for row in stored[249:253]] == [0, 1, 1, 0]  # each path met a binary payload


def test_a_committing_process_gone_between_batches_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = CaptureStore(path, batch_size=10**9)
    events = workload_events("http1", 400)
    _store_and_commit(store, events[:200])
    (pid,) = _committers()
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # until it is gone (reaped by the store)
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                break
        threading.Event().wait(0.02)
    _store_and_commit(store, events[200:])  # by a new process: the batch was never sent to the one killed
    (new,) = _committers()
    assert new != pid
    store.close()
    assert _stored_packets(path) == 400


def test_start_background_starts_the_committing_process_before_the_first_commit(tmp_path: Path) -> None:
    """A long-running recorder starts the committing process before it reads its source; the first commit
    then goes to that process."""
    path = tmp_path / "s.db"
    store = CaptureStore(path, batch_size=10**9)
    assert _committers() == []
    store.start_background()
    (pid,) = _committers()
    _store_and_commit(store, workload_events("http1", 100))
    assert _committers() == [pid]
    store.close()
    assert _committers() == [] and _stored_packets(path) == 100


def test_without_a_committing_process_the_writer_thread_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter that cannot run the committing process (here one that exits at once) leaves the
    commits to the writer thread, as before there was one."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    path = tmp_path / "t.db"
    store = CaptureStore(path, batch_size=10**9)
    events = workload_events("http1", 300)
    for start in range(0, 300, 100):
        _store_and_commit(store, events[start : start + 100])
    assert _committers() == []
    store.close()
    assert _stored_packets(path) == 300

"""Commits in the store's writer thread (what record and ui use) keep arrival order with every other write,
and keep what a synchronous flush would have written."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ecaptureq.bench.workloads import workload_events
from ecaptureq.store import CaptureStore


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

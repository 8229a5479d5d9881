"""``record``'s store process (decoding and storing beside the receiving process): what happens when either
of the two ends, as real processes against a real server and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import CLI, ENV, store_process_of
from server_support import MIXED_FRAMES, MIXED_MALFORMED, ServerThread, server_thread
from websockets.asyncio.server import ServerConnection, serve

from ecaptureq.pipeline.store_process import StoreProcess
from ecaptureq.protocol import encode
from ecaptureq.sources.demo import DemoSource
from ecaptureq.store import CaptureStore, StoreError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from ui_support import start_ui, stop_ui

pytestmark = pytest.mark.e2e


def _record(url: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "record", url, "--db", str(db), "--flush-interval", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM packets").fetchone()[0])
    except sqlite3.Error:
        return 0


def _publish_and_wait(bg: ServerThread, db: Path, count: int, start: int = 0) -> None:
    source = DemoSource(seed=start + 1).events()
    for _ in range(count):
        bg.publish_event(next(source))
    deadline = time.monotonic() + 30
    while _count(db) < start + count:  # committed as the stream goes quiet, long before --flush-interval
        assert time.monotonic() < deadline, f"{_count(db)} of {start + count} events committed"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # ended, not yet waited for by its parent


@contextlib.contextmanager
def _recording(db: Path, events: int) -> Iterator[tuple[ServerThread, subprocess.Popen[str], int]]:
    """A server, ``record`` into ``db`` with ``events`` demo events committed, and its store process's pid."""
    with server_thread() as bg:
        rec = _record(bg.url, db)
        try:
            bg.wait_clients()
            _publish_and_wait(bg, db, events)
            yield bg, rec, store_process_of(rec.pid)
        finally:
            if rec.poll() is None:
                rec.kill()
                rec.communicate(timeout=30)


def _intact(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_store_process_killed_stops_record_with_exit_11_keeping_what_was_committed(tmp_path: Path) -> None:
    db = tmp_path / "capture.db"
    with _recording(db, 200) as (_bg, rec, store):
        os.kill(store, signal.SIGKILL)
        _out, err = rec.communicate(timeout=30)
    assert rec.returncode == 11, err
    assert "the store's process ended (exit code -9)" in err and "what was written before is kept" in err
    assert "Traceback" not in err
    assert _count(db) == 200
    _intact(db)


def test_record_killed_leaves_no_store_process_behind_and_its_events_are_kept(tmp_path: Path) -> None:
    # The store process runs in a session of its own (the terminal's Ctrl-C reaches only record, which ends
    # its input): when record is killed, the end of its input ends it too, after a last commit.
    db = tmp_path / "capture.db"
    with _recording(db, 100) as (_bg, rec, store):
        rec.kill()
        rec.communicate(timeout=30)
        deadline = time.monotonic() + 30
        while not _gone(store):
            assert time.monotonic() < deadline, "the store process outlived record"
            time.sleep(0.05)
    assert _count(db) == 100
    _intact(db)
    with sqlite3.connect(db) as conn:
        (closed,) = conn.execute("SELECT count(*) FROM connections WHERE closed_ns IS NULL").fetchone()
    assert closed == 1, "record was killed: nobody said the connection ended"


def test_record_stopped_by_sigterm_ends_its_store_process_after_the_last_commit(tmp_path: Path) -> None:
    db = tmp_path / "capture.db"
    with _recording(db, 50) as (_bg, rec, store):
        rec.send_signal(signal.SIGTERM)
        _out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "50 events" in err
    assert _gone(store)
    with sqlite3.connect(db) as conn:
        reasons = conn.execute("SELECT close_reason FROM connections").fetchall()
    assert reasons == [("recorder stopped",)]


async def test_malformed_frames_are_counted_by_the_store_process_and_shown_by_the_ui(tmp_path: Path) -> None:
    # The UI's process only receives: the store process decodes, and counts what it skipped.
    async def handler(conn: ServerConnection) -> None:
        for frame in MIXED_FRAMES:
            await conn.send(frame)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url, db = f"ws://127.0.0.1:{port}/", str(tmp_path / "u.db")
        ui = await asyncio.to_thread(start_ui, "--source", url, "--db", db)
        try:
            live: dict[str, object] = {}
            async with httpx.AsyncClient() as http:
                for _ in range(200):  # 10 s at most
                    live = (await http.get(f"{ui.base}/api/status")).json().get("live", {})
                    if live.get("events") == 1 and live.get("run_logs") == 1:
                        break
                    await asyncio.sleep(0.05)
            assert live.get("events") == 1 and live.get("run_logs") == 1, live
            assert live["malformed"] == MIXED_MALFORMED and live["frames"] == len(MIXED_FRAMES), live
        finally:
            code, err = await asyncio.to_thread(stop_ui, ui)
    assert code == 0, err
    assert "1 event" in err


async def _handled(store: StoreProcess, count: int) -> None:
    """Wait (bounded) until ``store`` says ``count`` messages are committed or skipped."""
    deadline = time.monotonic() + 20
    while store.handled < count:
        assert time.monotonic() < deadline, f"{store.handled} of {count} messages handled"
        await asyncio.sleep(0.02)


async def test_fleet_messages_are_stored_once_by_key_and_each_commit_says_how_many_it_covers(
    tmp_path: Path,
) -> None:
    """The collector's use: messages with stream sequences as keys. A key stored already (below the
    highest, or a redelivery above it, from a process started after the one that stored it) is skipped and
    counted, and still covered by the next answer: the collector acknowledges what is covered."""
    db = tmp_path / "fleet.db"
    bodies = [encode(e) for _, e in zip(range(30), DemoSource(seed=3).events(), strict=False)]
    first = StoreProcess(db, flush_interval=30, commit_every=10)
    await first.start()
    first.send_messages([("web-1", key, False, body) for key, body in enumerate(bodies[:20], 1)])
    await _handled(first, 20)  # commit_every: covered long before the flush interval
    first.send_messages(
        [("web-1", 5, False, bodies[4]), ("web-2", 18, True, bodies[17]), ("web-1", 21, False, b"\xff")]
    )
    await _handled(first, 23)  # two duplicates and a malformed body: nothing to write, still answered
    assert (first.duplicates, first.malformed, first.frames) == (2, 1, 23)
    await first.close()
    assert first.nodes == {"web-1": [20, 0]}

    # Another process on the same database: the keys it finds stored are skipped, the others stored.
    second = StoreProcess(db, flush_interval=30, commit_every=10)
    await second.start()
    second.send_messages([("web-1", 3, False, bodies[2]), ("web-1", 21, False, bodies[20])])
    await _handled(second, 2)  # the highest key stored is now 21, for this process
    # A third process stores key 30 meanwhile (a collector killed a moment ago, finishing its last commit);
    # the stream delivers it again, a redelivery, to the second one, above the highest key it knew.
    third = StoreProcess(db, flush_interval=30)
    await third.start()
    third.send_messages([("web-1", 30, False, bodies[29])])
    await third.close()
    second.send_messages([("web-1", 30, True, bodies[29]), ("web-1", 31, False, bodies[28])])
    await second.close()
    assert (second.handled, second.duplicates, second.nodes) == (4, 2, {"web-1": [2, 0]})
    with sqlite3.connect(db) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM delivered ORDER BY key")]
        nodes = conn.execute("SELECT node, count(*) FROM packets GROUP BY node").fetchall()
    assert keys == [*range(1, 22), 30, 31]
    assert nodes == [("web-1", 23)]


async def test_fleet_messages_of_a_failed_commit_are_never_reported_as_covered(tmp_path: Path) -> None:
    """What the collector acknowledges is what the answers say is covered: messages whose commit failed
    (here a trigger refuses every packet) must not be, neither after the failure nor at the end."""
    db = tmp_path / "refusing.db"
    CaptureStore(db).close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON packets BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        conn.commit()
    bodies = [encode(e) for _, e in zip(range(12), DemoSource(seed=5).events(), strict=False)]
    store = StoreProcess(db, flush_interval=30, commit_every=4)
    await store.start()
    store.send_messages([("web-1", key, False, body) for key, body in enumerate(bodies, 1)])
    with pytest.raises(StoreError, match="refused"):
        await asyncio.wait_for(store.failed(), 20)
    store.send_messages([("web-1", 3, True, bodies[2])])  # kept for the retry: a duplicate, not covered
    with pytest.raises(StoreError, match="refused"):
        await store.close()
    assert (store.handled, store.duplicates, store.stats.packets) == (0, 1, 12)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM packets").fetchone()[0] == 0

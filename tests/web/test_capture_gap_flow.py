"""A capture gap, end to end: the ``capture lost N bytes`` run-log line a capture sends when its ring buffer
overflowed reaches ``record`` through a real server; the exchange it damaged is stored incomplete with the
note, the line itself is kept, both are found by ``query``, and ``ui --db`` shows the note on the exchange.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import CLI, ENV, run_cli
from server_support import server_thread
from ui_support import start_ui, stop_ui

from ecaptureq.protocol import Event
from ecaptureq.protocol.gap import CaptureGap
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid

pytestmark = pytest.mark.e2e

HEAD = b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1000\r\n\r\n"
SENT = HEAD + b"a" * 300  # the first 300 bytes of the body arrive; the next 200 are lost
LOST = CaptureGap(format_uuid(7, 7, "curl", 5, DATA_TYPE_WRITE), len(SENT), len(SENT) + 200)


def _exchanges(db: Path) -> list[tuple[int, int, int | None, str]]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return conn.execute("SELECT id, complete, status, detail FROM exchanges ORDER BY id").fetchall()
    except sqlite3.Error:  # not created yet
        return []
    finally:
        conn.close()


def _record_a_gap(db: Path) -> str:
    """Run ``record`` against a server that sends a request, the gap line, the rest and the response;
    return record's stderr once the response's exchange is committed and record has stopped."""
    with server_thread() as server:
        record = subprocess.Popen(
            [*CLI, "record", server.url, "--db", str(db), "--flush-interval", "0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        try:
            server.wait_clients(1)
            write, read = LOST.uuid, format_uuid(7, 7, "curl", 5, DATA_TYPE_READ)
            server.publish_event(Event(timestamp=1, uuid=write, payload=SENT))
            server.publish_log(LOST.log_line())
            server.publish_event(Event(timestamp=2, uuid=write, payload=b"a" * 500))
            response = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"
            server.publish_event(Event(timestamp=3, uuid=read, payload=response))
            deadline = time.monotonic() + 30
            while not any(status == 413 for _i, _c, status, _d in _exchanges(db)):
                assert time.monotonic() < deadline, _exchanges(db)
                time.sleep(0.05)
        finally:
            record.send_signal(signal.SIGINT)
            _out, err = record.communicate(timeout=30)
    assert record.returncode == 0, err
    return err


def test_record_stores_the_gap_query_finds_it_and_the_ui_shows_it(tmp_path: Path) -> None:
    db = tmp_path / "gap.db"
    err = _record_a_gap(db)
    assert "Traceback" not in err

    rows = _exchanges(db)
    assert len(rows) == 1, rows
    _id, complete, status, detail = rows[0]
    assert complete == 0
    flow = json.loads(detail)
    assert "capture lost 200 bytes" in flow["request"]["notes"]
    assert flow["request"]["complete"] is False
    assert status == 413  # the response still pairs with the damaged request

    found = run_cli(
        "query", "--db", str(db), "--json",
        "SELECT id, method, url FROM exchanges WHERE complete = 0 AND detail LIKE '%capture lost%'",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["url"] for line in found.stdout.splitlines()] == [
        "https://api.example.com/upload"
    ]
    logged = run_cli("query", "--db", str(db), "--json", "SELECT line FROM run_logs")
    assert logged.returncode == 0, logged.stderr
    assert LOST.message() in logged.stdout

    ui = start_ui("--db", str(db))
    try:
        shown = httpx.get(f"{ui.base}/api/exchange/{_id}", timeout=10).json()
        table = httpx.get(f"{ui.base}/api/exchanges", timeout=10).json()
    finally:
        code, ui_err = stop_ui(ui)
    assert code == 0, ui_err
    assert "capture lost 200 bytes" in shown["request"]["notes"]
    assert shown["request"]["complete"] is False
    # The table marks the row incomplete (app.js styles a row whose ``complete`` is 0).
    (row,) = table["rows"]
    assert row[table["columns"].index("complete")] == 0

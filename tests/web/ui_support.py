"""Helpers for the web UI tests: ``ecaptureq ui`` as a real process, and capture databases made in bulk."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, ENV

from ecaptureq.decode.model import Exchange, HttpMessage
from ecaptureq.store import CaptureStore
from ecaptureq.store.writer import exchange_row

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots kept by the browser tests (gitignored)."""


def chromium_or_skip() -> str:
    """Debian's chromium for the browser tests; the calling module is skipped when it is not installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium; scripts/setup-test does)",
            allow_module_level=True,
        )
    return found


@dataclass
class Ui:
    """A running ``ecaptureq ui`` process: its base URL (``http://127.0.0.1:PORT``) and the URL it printed."""

    proc: subprocess.Popen[str]
    base: str
    url: str
    banner: str


def start_ui(*args: str) -> Ui:
    """Start ``ecaptureq ui ARGS --listen http://127.0.0.1:0/`` and wait for the line with the URL."""
    proc = subprocess.Popen(
        [*CLI, "ui", "--listen", "http://127.0.0.1:0/", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"open (http://127\.0\.0\.1:(\d+)/\S*)", line)
        if match:
            return Ui(proc, f"http://127.0.0.1:{match.group(2)}", match.group(1), "".join(seen))
    proc.kill()
    raise AssertionError(f"ui did not start: {''.join(seen)}{proc.stderr.read()}")


def stop_ui(ui: Ui) -> tuple[int, str]:
    """Stop the UI with SIGTERM; return its exit code and the rest of its stderr."""
    ui.proc.terminate()
    try:
        _out, err = ui.proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        ui.proc.kill()
        _out, err = ui.proc.communicate()
    return ui.proc.returncode, err


def sample_exchange(i: int, *, binary: bool = False) -> Exchange:
    """A complete HTTP/1.1 exchange, numbered ``i``: a JSON response, or a binary one."""
    body = bytes(range(256)) if binary else json.dumps({"id": i, "name": f"user{i}"}).encode()
    ctype = "application/octet-stream" if binary else "application/json"
    request = HttpMessage(
        kind="request",
        method="POST" if i % 3 == 0 else "GET",
        url=f"/v1/items/{i}",
        path=f"/v1/items/{i}",
        headers=[("Host", "api.example.com"), ("Accept", "*/*")],
    )
    response = HttpMessage(
        kind="response",
        status=200 if i % 10 else 404,
        reason="OK" if i % 10 else "Not Found",
        headers=[("Content-Type", ctype), ("Content-Length", str(len(body)))],
        body=body,
        body_text=None if binary else body.decode(),
        body_size=len(body),
        content_type=ctype,
    )  # is_json: worked out from the text and type
    return Exchange(
        id=i,
        connection=f"2746_2746_curl_{i % 50}",
        request=request,
        response=response,
        pid=2746 if i % 2 else 3101,
        pname="curl" if i % 2 else "python3",
        src_ip="10.0.0.5",
        src_port=40000 + i % 1000,
        dst_ip="93.184.216.34",
        dst_port=443,
        clock="epoch",
        started_ns=1_760_000_000_000_000_000 + i * 1_000_000,
        ended_ns=1_760_000_000_000_000_000 + i * 1_000_000 + 250_000,
        latency=0.00025,
    )


def make_database(path: Path, count: int) -> Path:
    """A capture database with ``count`` exchanges (every 7th with a binary body), written in bulk."""
    CaptureStore(path).close()  # the schema, exactly as record writes it
    conn = sqlite3.connect(path)
    columns = conn.execute("SELECT * FROM exchanges LIMIT 0").description
    marks = ", ".join("?" * len(columns))
    with conn:
        conn.executemany(
            f"INSERT INTO exchanges VALUES ({marks})",
            (exchange_row(i, sample_exchange(i, binary=i % 7 == 0)) for i in range(1, count + 1)),
        )
    conn.close()
    return path


def make_demo_database(path: Path, events: int) -> Path:
    """A capture database recorded from ``events`` demo events (packets and decoded exchanges)."""
    from itertools import islice

    from ecaptureq.sources.demo import DemoSource

    store = CaptureStore(path)
    store.connection_opened("ws://127.0.0.1:1/")
    for event in islice(DemoSource(seed=7).events(), events):
        store.add(event)
    store.close()
    return path


def make_huge_database(path: Path, count: int) -> Path:
    """A capture database with ``count`` exchanges, made by SQLite itself in seconds: the table's columns
    only (the detail is an empty object: opening one says it is unreadable), but for the last one, which
    is :func:`sample_exchange` whole. Ids are 1..count; one in 50 has status 404."""
    CaptureStore(path).close()  # the schema, exactly as record writes it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO exchanges (id, connection, protocol, pid, pname, src_ip, src_port, dst_ip, dst_port,"
        " started_ns, ended_ns, latency, method, host, path, status, response_size, complete, detail)"
        " SELECT i, '2746_2746_curl_' || (i % 50), 'http/1.1', 2746, 'curl', '10.0.0.5', 40000 + i % 1000,"
        " '93.184.216.34', 443, 1760000000000000000 + i * 1000000,"
        " 1760000000000000000 + i * 1000000 + 250000,"
        " 0.00025, 'GET', 'api.example.com', '/v1/items/' || i, CASE WHEN i % 50 = 0 THEN 404 ELSE 200 END,"
        " 24, 1, '{}' FROM n",
        (count - 1,),
    )
    columns = conn.execute("SELECT * FROM exchanges LIMIT 0").description
    conn.execute(
        f"INSERT INTO exchanges VALUES ({', '.join('?' * len(columns))})",
        exchange_row(count, sample_exchange(count)),
    )
    conn.execute("COMMIT")
    conn.close()
    return path

"""The bomb corpus and what recording it costs: database bytes and peak RSS of a real ``ecaptureq record``.

Each entry is one HTTP/1.1 exchange whose body is tiny on the wire and huge decoded: gzip, nested gzip,
br, zstd and deflate bodies that expand to 16 MiB, a text body of control characters, and form bodies
of millions of empty fields (response and request). :func:`measure` replays one entry with
``ecaptureq serve --replay`` into ``ecaptureq record`` and reports what it cost.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import brotli  # type: ignore[import-untyped]
import zstandard

from ecaptureq.bench.consumers import tree_peak_rss
from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.uuid import format_uuid

DECODED: Final = 16 * 1024 * 1024
"""What each bomb expands to: 16 MiB, the decoder's default per-body cap."""

BUDGET_SLACK: Final = 64 * 1024
"""An exchange may cost at most twice its wire bytes plus this on disk."""

_BASE_NS: Final = 1_760_495_631_000_000_000


def _event(fd: int, data_type: int, payload: bytes, n: int) -> Event:
    return Event(
        timestamp=_BASE_NS + n * 1_000_000,
        uuid=format_uuid(4242, 4242, "victim", fd, data_type),
        src_ip="10.0.0.5",
        src_port=40000 + fd,
        dst_ip="93.184.216.34",
        dst_port=443,
        pid=4242,
        pname="victim",
        type=0,
        payload=payload,
    )


def _message(first: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"{first}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def bomb_corpus() -> dict[str, list[Event]]:
    """Name -> the two events (request, response) of one exchange; ``plain`` is the small baseline."""
    zeros = bytes(DECODED)
    form = b"a&" * (DECODED // 2)
    bodies: dict[str, tuple[bytes, str, str]] = {
        "plain (baseline)": (b'{"ok": true}', "identity", "application/json"),
        "gzip": (gzip.compress(zeros, 9), "gzip", "application/octet-stream"),
        "nested gzip": (gzip.compress(gzip.compress(zeros, 9), 9), "gzip, gzip", "application/octet-stream"),
        "br": (brotli.compress(zeros, quality=11), "br", "application/octet-stream"),
        "zstd": (zstandard.ZstdCompressor(level=19).compress(zeros), "zstd", "application/octet-stream"),
        "deflate": (_deflate(zeros), "deflate", "application/octet-stream"),
        "control text": (gzip.compress(b"\x01" * DECODED, 9), "gzip", "text/plain; charset=utf-8"),
        "form": (gzip.compress(form, 9), "gzip", "application/x-www-form-urlencoded"),
    }
    corpus: dict[str, list[Event]] = {}
    for i, (name, (body, coding, ctype)) in enumerate(bodies.items()):
        request = _message(f"GET /bomb/{i} HTTP/1.1", [("Host", "api.example.com")], b"")
        headers = [("Content-Type", ctype), ("Content-Encoding", coding)]
        response = _message("HTTP/1.1 200 OK", headers, body)
        corpus[name] = [_event(100 + i, 1, request, 2 * i), _event(100 + i, 0, response, 2 * i + 1)]
    posted = [("Host", "api.example.com"), ("Content-Encoding", "gzip")]
    posted.append(("Content-Type", "application/x-www-form-urlencoded"))
    request = _message("POST /submit HTTP/1.1", posted, gzip.compress(form, 9))
    response = _message("HTTP/1.1 200 OK", [("Content-Type", "text/plain")], b"ok")
    corpus["form request"] = [_event(199, 1, request, 40), _event(199, 0, response, 41)]
    return corpus


@dataclass
class Cost:
    """What recording one exchange cost."""

    name: str
    wire_bytes: int
    db_bytes: int  # the database file after record closed it, minus an empty database's
    peak_rss: int  # bytes, the largest VmHWM of record's processes once the exchange was committed

    @property
    def budget(self) -> int:
        """What the exchange may cost on disk: twice its wire bytes plus 64 KiB."""
        return 2 * self.wire_bytes + BUDGET_SLACK


def _db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _complete(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT count(*) FROM exchanges WHERE complete = 1").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def measure(name: str, events: list[Event], workdir: Path, *, empty_db_bytes: int = 0) -> Cost:
    """Replay one exchange into a real ``ecaptureq record``; return its database bytes and peak RSS."""
    cli = [sys.executable, "-m", "ecaptureq"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    safe = re.sub(r"\W+", "-", name)
    replay = workdir / f"{safe}.jsonl"
    replay.write_text("".join(json.dumps(to_json(e)) + "\n" for e in events))
    db = workdir / f"{safe}.db"
    serve = subprocess.Popen(
        [*cli, "serve", "--replay", str(replay), "--speed", "0", "--listen", "ws://127.0.0.1:0/"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert serve.stderr is not None
        url = None
        while url is None:
            line = serve.stderr.readline()
            if not line:
                raise RuntimeError("serve did not start")
            match = re.search(r"on (ws://\S+) ", line)
            url = match.group(1) if match else None
        record = subprocess.Popen(
            [*cli, "record", url, "--db", str(db), "--quiet", "--flush-interval", "0.2"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        try:
            _wait_for(lambda: _complete(db), 120, f"record to commit the {name} exchange")
            rss = tree_peak_rss(record.pid)  # its store process decodes
        finally:
            record.send_signal(signal.SIGTERM)
            record.communicate(timeout=60)
    finally:
        serve.terminate()
        serve.communicate(timeout=30)
    return Cost(name, sum(len(e.payload) for e in events), _db_size(db) - empty_db_bytes, rss)


def empty_db_bytes(workdir: Path) -> int:
    """The size of a capture database with no rows (subtracted from every measurement)."""
    from ecaptureq.store import CaptureStore

    path = workdir / "empty.db"
    store = CaptureStore(path)
    store.connection_opened("ws://127.0.0.1:1/")
    store.close()
    return _db_size(path)


def measure_corpus(names: Sequence[str] | None = None) -> list[Cost]:
    """Measure every entry of :func:`bomb_corpus` (or those named), each in its own record process."""
    corpus = bomb_corpus()
    with tempfile.TemporaryDirectory(prefix="ecaptureq-bombs-") as tmp:
        workdir = Path(tmp)
        empty = empty_db_bytes(workdir)
        return [measure(n, corpus[n], workdir, empty_db_bytes=empty) for n in (names or list(corpus))]


def format_table(costs: Sequence[Cost]) -> str:
    """The table: wire bytes, database bytes, the budget, peak RSS and its ratio to the baseline row."""
    base = next((c.peak_rss for c in costs if "baseline" in c.name), costs[0].peak_rss if costs else 1)
    lines = [
        f"{'exchange':<18} {'wire B':>9} {'db B':>9} {'db/wire':>8} {'budget B':>9} {'in budget':>9} "
        f"{'peak RSS MiB':>12} {'RSS/base':>8}"
    ]
    for c in costs:
        lines.append(
            f"{c.name:<18} {c.wire_bytes:>9} {c.db_bytes:>9} {c.db_bytes / c.wire_bytes:>8.1f} {c.budget:>9} "
            f"{'yes' if c.db_bytes <= c.budget else 'NO':>9} {c.peak_rss / 2**20:>12.1f} "
            f"{c.peak_rss / base:>8.2f}"
        )
    return "\n".join(lines)

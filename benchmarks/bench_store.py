"""Benchmark the capture database: record rate beside a bare SQLite insert loop, and a LIKE query.

    python benchmarks/bench_store.py [--quick]

Rows:
- ``store.add`` (no decode / with HTTP decode): events/s into :class:`CaptureStore`, batched, WAL,
  beside a bare ``executemany`` of the same rows in one transaction per 5,000 (the baseline).
- ``record`` end to end: a server bursts N demo events to an ``ecaptureq record`` process; events/s
  from the first publish until every row is committed.
- database size with HTTP decode beside the same events stored without decoding (the baseline), and the
  ``exchanges`` table's share: the ``detail`` JSON and the body columns, in bytes per exchange.
- HAR export of the decoded exchanges (``write_har``: each row read into the typed
  :class:`~ecaptureq.decode.model.Exchange`, then its HAR entry) beside reading the same rows and parsing
  their ``detail`` JSON (the baseline: what any reader of the rows pays).
- ``LIKE`` over 1,000,000 packets: ``ecaptureq query``'s path (``payload_utf8 LIKE '%password%'``) beside
  the same SQL on a plain sqlite3 connection.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

from ecaptureq.protocol import Event
from ecaptureq.server import Server
from ecaptureq.sources.demo import DemoSource
from ecaptureq.store import CaptureStore, open_readonly, run_query
from ecaptureq.store.export import STORED_SELECT, write_har
from ecaptureq.store.schema import DDL, packet_row

INSERT = (
    "INSERT INTO packets (timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length,"
    " is_binary, payload_utf8, payload_binary, connection_id, received_ns)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def bare_insert(path: Path, events: list[Event]) -> float:
    """The baseline: the same rows, executemany in batches of 5,000, WAL, no other work."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(DDL)
    t0 = time.perf_counter()
    for start in range(0, len(events), 5000):
        batch = [(*packet_row(e), None, 0) for e in events[start : start + 5000]]
        db.execute("BEGIN")
        db.executemany(INSERT, batch)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return len(events) / elapsed


def store_add(path: Path, events: list[Event], decode: bool) -> float:
    store = CaptureStore(path, decode=decode)
    t0 = time.perf_counter()
    for ev in events:
        store.add(ev)
    store.close()
    return len(events) / (time.perf_counter() - t0)


async def record_end_to_end(path: Path, events: list[Event]) -> float:
    async with Server(port=0, queue_size=len(events) + 1000) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecaptureq", "record", server.url, "--db", str(path), "--quiet",
             "--flush-interval", "0.2"],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await server.wait_clients(1, timeout=60)
        t0 = time.perf_counter()
        for ev in events:
            server.publish_event(ev)
        deadline = time.monotonic() + 300
        done_at = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                    n = db.execute("SELECT count(*) FROM packets").fetchone()[0]
            except sqlite3.Error:
                continue
            if n >= len(events):
                done_at = time.perf_counter()
                break
        proc.terminate()
        proc.wait(30)
    if done_at is None:
        raise RuntimeError("the recorder did not store every event in time")
    return len(events) / (done_at - t0)


def exchange_bytes(path: Path) -> tuple[int, float, float]:
    """Exchanges stored, and the mean bytes per exchange of its ``detail`` JSON and of its body columns."""
    with sqlite3.connect(path) as db:
        count, detail, bodies = db.execute(
            "SELECT count(*), coalesce(sum(length(CAST(detail AS BLOB))), 0),"
            " coalesce(sum(coalesce(length(request_body), 0) + coalesce(length(response_body), 0)"
            " + coalesce(length(CAST(request_body_text AS BLOB)), 0)"
            " + coalesce(length(CAST(response_body_text AS BLOB)), 0)), 0) FROM exchanges"
        ).fetchone()
    return count, detail / max(count, 1), bodies / max(count, 1)


def har_export(path: Path) -> tuple[float, float, int]:
    """Seconds to write the HAR of every exchange, seconds to read and parse the same rows, and the count."""
    conn = open_readonly(path)
    try:
        t0 = time.perf_counter()
        count = write_har(conn, io.StringIO())
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        for row in conn.execute(f"{STORED_SELECT} ORDER BY started_ns, id"):
            json.loads(row[0])
            json.loads(row[1] or "null")
            json.loads(row[2] or "null")
        base = time.perf_counter() - t0
    finally:
        conn.close()
    return ours, base, count


def like_query(path: Path, n: int) -> tuple[float, float, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(DDL)
    template = list(islice(DemoSource(seed=5).events(), 500))
    db.execute("BEGIN")
    for start in range(0, n, 10_000):
        rows = []
        for i in range(start, min(n, start + 10_000)):
            ev = template[i % len(template)]
            row = list(packet_row(ev))
            if i % 1000 == 0:
                row[11] = row[11] + "&password=hunter2"
            rows.append((*row, None, 0))
        db.executemany(INSERT, rows)
    db.execute("COMMIT")
    db.close()
    sql = "payload_utf8 LIKE '%password=hunter2%'"
    conn = open_readonly(path)
    t0 = time.perf_counter()
    _cols, it = run_query(conn, sql)
    ours_rows = sum(1 for _ in it)
    ours = time.perf_counter() - t0
    plain = sqlite3.connect(path)
    t0 = time.perf_counter()
    base_rows = len(plain.execute(f"SELECT * FROM packets WHERE {sql}").fetchall())
    base = time.perf_counter() - t0
    assert ours_rows == base_rows
    return ours, base, ours_rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer events and 200,000 packets for LIKE")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    n_like = 200_000 if args.quick else 1_000_000
    events = list(islice(DemoSource(seed=1).events(), n))
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print(
            f"bench_store: {n} demo events, python {sys.version.split()[0]}, {os.cpu_count()} cores",
            file=sys.stderr,
        )
        base = bare_insert(d / "bare.db", events)
        plain = store_add(d / "plain.db", events, decode=False)
        decoded = store_add(d / "decoded.db", events, decode=True)
        rows.append(
            ("store.add, no decode", f"{plain:,.0f} ev/s", f"{base:,.0f} ev/s", f"{plain / base:.2f}")
        )
        rows.append(
            ("store.add + HTTP decode", f"{decoded:,.0f} ev/s", f"{base:,.0f} ev/s", f"{decoded / base:.2f}")
        )
        plain_size = (d / "plain.db").stat().st_size
        decoded_size = (d / "decoded.db").stat().st_size
        rows.append(
            (
                "database size, HTTP decode",
                f"{decoded_size / 2**20:,.1f} MiB",
                f"{plain_size / 2**20:,.1f} MiB",
                f"{decoded_size / plain_size:.2f}",
            )
        )
        count, detail_bytes, body_bytes = exchange_bytes(d / "decoded.db")
        rows.append(
            (
                f"detail JSON per exchange ({count:,})",
                f"{detail_bytes:,.0f} B",
                f"{body_bytes:,.0f} B",
                f"{detail_bytes / max(body_bytes, 1):.2f}",
            )
        )
        har_s, read_s, exported = har_export(d / "decoded.db")
        rows.append(
            (
                f"HAR export of {exported:,} exchanges",
                f"{har_s:.3f} s",
                f"{read_s:.3f} s",
                f"{har_s / read_s:.2f}",
            )
        )
        e2e = asyncio.run(record_end_to_end(d / "e2e.db", events))
        rows.append(
            ("record process, end to end", f"{e2e:,.0f} ev/s", f"{base:,.0f} ev/s", f"{e2e / base:.2f}")
        )
        print(f"bench_store: building {n_like:,} packets for LIKE ...", file=sys.stderr)
        ours, plain_s, matched = like_query(d / "like.db", n_like)
        rows.append(
            (
                f"LIKE over {n_like:,} packets ({matched} rows)",
                f"{ours:.3f} s",
                f"{plain_s:.3f} s",
                f"{ours / plain_s:.2f}",
            )
        )
    header = ("measure", "ecaptureq", "baseline", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(
        "baseline: bare sqlite3 executemany of the same rows (insert rows); the database without decoding"
        " (size row); the body columns of the same exchanges (detail row); reading the same rows and parsing"
        " their JSON (HAR row); plain sqlite3 SELECT (LIKE row)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

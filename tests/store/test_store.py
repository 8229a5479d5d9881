"""record, query and export against real servers, real processes and real SQLite files."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import pytest
from conftest import CLI, ENV, run_cli, start_serve, stop_serve
from haralyzer import HarEntry
from hypothesis import given, settings
from hypothesis import strategies as st
from server_support import server_thread

from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.text import payload_text
from ecaptureq.protocol.uuid import DATA_TYPE_READ, format_uuid
from ecaptureq.sources.demo import DemoSource
from ecaptureq.sources.replay import load_recording
from ecaptureq.store import CaptureStore
from ecaptureq.store.export import STORED_SELECT, load_exchange

pytestmark = pytest.mark.e2e


def start_record(url: str, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "record", url, "--db", str(db), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def demo_events(n: int, seed: int = 7) -> list[Event]:
    return list(islice(DemoSource(seed=seed).events(), n))


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_record_from_a_real_server_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "capture.db"
    events = demo_events(120)
    with server_thread() as bg:
        bg.publish_log('2026-01-02T10:00:00Z INF AppName="eCapture(旁观者)"')
        url = bg.url
        rec = start_record(url, db, "--flush-interval", "0.2")
        bg.wait_clients()
        for ev in events:
            bg.publish_event(ev)
        time.sleep(1.5)
        rec.send_signal(signal.SIGTERM)
        _out, err = rec.communicate(timeout=20)
    assert rec.returncode == 0, err
    assert "120 events" in err
    columns = '"index", timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length'
    stored = rows(
        db, f'SELECT {columns}, is_binary, payload_utf8, payload_binary FROM packets ORDER BY "index"'
    )
    assert [r[0] for r in stored] == list(range(1, 121))
    for ev, row in zip(events, stored, strict=True):
        fields = (ev.timestamp, ev.uuid, ev.src_ip, ev.src_port, ev.dst_ip, ev.dst_port, ev.pid, ev.pname)
        assert row[1:9] == fields
        assert row[9:11] == (ev.type, ev.length)
        assert row[13] == ev.payload
        # each run of invalid bytes and NULs is one U+FFFD, or left out if that made the text too long
        text = ev.payload.decode("utf-8", "replace")
        marked = re.sub("[\ufffd\x00]+", "\ufffd", text)
        fits = len(marked.encode()) <= len(ev.payload)
        assert row[12] == (marked if fits else re.sub("[\ufffd\x00]+", "", text))
        if b"\x00" in ev.payload:
            assert row[11] == 1
        elif ev.payload.startswith((b"GET ", b"POST ")):
            assert row[11] == 0  # an HTTP/1.1 request head is text
    assert rows(db, "SELECT line FROM run_logs") == [
        ('2026-01-02T10:00:00Z INF AppName="eCapture(旁观者)"\n',)
    ]  # stored as sent
    (conn_row,) = rows(db, "SELECT url, closed_ns IS NOT NULL, close_reason FROM connections")
    assert conn_row[0] == url and conn_row[1] == 1
    assert rows(db, "SELECT count(*) FROM heartbeats")[0][0] >= 1
    exchanges = rows(db, "SELECT method, host, status, latency, complete FROM exchanges ORDER BY id")
    assert len(exchanges) >= 30
    complete = [x for x in exchanges if x[4] == 1]
    assert len(exchanges) - len(complete) <= 1, (
        "only a request cut off by the end of the stream may lack its response"
    )
    assert all(m in ("GET", "POST") and s in (200, 404) and lat is not None for m, _h, s, lat, _c in complete)
    assert {h for _m, h, *_ in exchanges} <= {"api.example.com", "auth.example.org", "shop.example.net"}
    assert rows(db, "PRAGMA user_version")[0][0] == 1


def test_the_summary_counts_every_exchange_written_and_says_how_many_are_complete(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    first = CaptureStore(db)  # a row already there is not counted again
    first.add(Event(timestamp=1, uuid="1_1_curl_5_1", payload=b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"))
    first.close()
    store = CaptureStore(db)
    store.add(Event(timestamp=2, uuid="2_2_curl_5_1", payload=b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"))
    store.add(Event(timestamp=3, uuid="2_2_curl_5_0", payload=b"HTTP/1.1 204 No Content\r\n\r\n"))
    store.add(Event(timestamp=4, uuid="3_3_curl_5_1", payload=b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"))
    store.close()
    assert (store.stats.exchanges, store.stats.exchange_rows) == (1, 2)
    assert store.stats.exchanges_text() == "2 exchanges (1 complete)"
    assert rows(db, "SELECT count(*) FROM exchanges")[0][0] == 3


def test_whether_a_stored_body_is_json_is_worked_out_from_its_text_unless_the_text_was_cut(
    tmp_path: Path,
) -> None:
    # The store does not parse a body to say it is JSON (a reader works it out from the stored text),
    # but a text cut at BODY_STORED would no longer parse: there the detail says what the whole was.
    big = json.dumps({"items": ["x" * 100] * 200}).encode()  # about 21 KB: stored cut
    bodies = [b'{"a": [1, 2]}', b"{not json", big]
    db = tmp_path / "j.db"
    store = CaptureStore(db)
    request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    for n, body in enumerate(bodies):
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        store.add(Event(timestamp=2 * n + 1, uuid=f"{n}_{n}_c_5_1", payload=request))
        store.add(Event(timestamp=2 * n + 2, uuid=f"{n}_{n}_c_5_0", payload=head.encode() + body))
    store.close()
    stored = rows(db, "SELECT json_extract(detail, '$.response.is_json') FROM exchanges ORDER BY id")
    assert [r[0] for r in stored] == [None, None, 1]
    loaded = [load_exchange(r) for r in rows(db, f"{STORED_SELECT} ORDER BY id")]
    responses = [ex.response for ex in loaded if ex is not None and ex.response is not None]
    assert [r.is_json for r in responses] == [True, False, True]


def test_record_commits_a_burst_as_the_stream_goes_quiet(tmp_path: Path) -> None:
    """The end of a burst is in the database a moment after it, not a whole --flush-interval later."""
    db = tmp_path / "burst.db"
    with server_thread() as bg:
        rec = start_record(bg.url, db, "--flush-interval", "600", "--quiet")
        bg.wait_clients()
        for ev in demo_events(40):
            bg.publish_event(ev)
        deadline = time.monotonic() + 30
        count = 0
        while count < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
            count = len(rows(db, "SELECT 1 FROM packets")) if db.exists() else 0
        rec.send_signal(signal.SIGTERM)
        _out, err = rec.communicate(timeout=20)
    assert count == 40, f"{count} of 40 events committed 30 s after the burst: {err}"
    assert rec.returncode == 0, err


def test_kill_9_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    flush = 0.3
    with server_thread() as bg:
        rec = start_record(bg.url, db, "--flush-interval", str(flush), "--no-decode")
        bg.wait_clients()
        published_at: list[float] = []
        for i in range(600):  # about 3 s at 200 events/s
            bg.publish_event(Event(timestamp=time.time_ns(), pid=i, uuid="1_1_x_3_0", payload=b"k" * 64))
            published_at.append(time.monotonic())
            time.sleep(0.005)
            if i == 400:
                rec.send_signal(signal.SIGKILL)
                killed = time.monotonic()
        rec.wait(10)
    kept = [pid for (pid,) in rows(db, 'SELECT pid FROM packets ORDER BY "index"')]
    assert kept == list(range(len(kept))), "what was kept is a prefix, in order"
    # Everything published more than one flush interval (plus delivery slack) before the kill was kept.
    must_have = sum(1 for t in published_at if t < killed - flush - 0.3)
    assert len(kept) >= must_have > 100
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_read_while_recording(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    served = start_serve("--demo", "--interval", "0.01")
    rec = start_record(served.url, db, "--flush-interval", "0.2")
    try:
        counts = []
        for _ in range(3):
            time.sleep(1.0)
            result = run_cli("query", "--db", str(db), "SELECT count(*) AS n FROM packets", "--json")
            assert result.returncode == 0, result.stderr
            counts.append(json.loads(result.stdout)["n"])
        assert counts[0] > 0 and counts[0] < counts[1] < counts[2]
    finally:
        rec.send_signal(signal.SIGINT)
        rec.communicate(timeout=20)
        stop_serve(served)
    assert rec.returncode == 0


@pytest.fixture
def gui_db(tmp_path: Path) -> Path:
    """A database with packets chosen for the eCaptureQ GUI's documented filter examples."""
    db = tmp_path / "gui.db"
    store = CaptureStore(db, decode=False)
    specs = [
        ("curl", 2746, "10.0.0.5", 443, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1),
        ("curl", 2746, "10.0.0.5", 443, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3),
        ("python3", 3101, "192.168.1.20", 8443, b"POST /login HTTP/1.1\r\n\r\nuser=a&password=hunter2", 1),
        ("python3", 3101, "192.168.1.20", 8443, b"\x00\x00\x12\x01\x04\x00\x00\x00\x01\x82\x87", 2),
        ("nginx", 900, "10.0.0.9", 443, b"HTTP/1.1 404 Not Found\r\n\r\n", 3),
    ]
    for i, (pname, pid, src, dport, payload, etype) in enumerate(specs):
        uuid = format_uuid(pid, pid, pname, 5, DATA_TYPE_READ)
        store.add(Event(timestamp=1760495631914807673 + i, uuid=uuid, src_ip=src, src_port=40000 + i,
                        dst_ip="93.184.216.34", dst_port=dport, pid=pid, pname=pname,
                        type=etype, length=len(payload), payload=payload))  # fmt: skip
    store.close()
    return db


@pytest.mark.parametrize(
    ("sql", "expected_indexes"),
    [
        ("dst_port = 443", [1, 2, 5]),
        ("pname = 'curl'", [1, 2]),
        ("dst_port = 443 AND pname = 'curl'", [1, 2]),
        ("src_ip LIKE '192.168.%'", [3, 4]),
        ("payload_utf8 LIKE '%password%'", [3]),
        ("index > 3", [4, 5]),
        ('INDEX >= 2 AND "index" < 3', [2]),
        ("is_binary = 1", [4]),
        ("type IN (1, 2)", [1, 3, 4]),
        (
            'SELECT "index" FROM packets WHERE pid = 2746 UNION SELECT "index" FROM packets WHERE pid = 900',
            [1, 2, 5],
        ),
        ("SELECT index FROM packets WHERE pname = 'nginx'", [5]),
    ],
)
def test_gui_filters(gui_db: Path, sql: str, expected_indexes: list[int]) -> None:
    result = run_cli("query", "--db", str(gui_db), sql, "--json")
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["index"] for line in result.stdout.splitlines()]
    assert sorted(got) == expected_indexes


def test_query_output_forms(gui_db: Path) -> None:
    table = run_cli("query", "--db", str(gui_db), "pname = 'python3'", "--wide")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["index", "timestamp", "uuid"] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 5 and lines[4] == "(2 rows)"
    assert "x'0000120104" in table.stdout
    compact = run_cli("query", "--db", str(gui_db), "pname = 'python3'").stdout.splitlines()
    assert compact[0].split() == ["index", "time", "process", "endpoints", "type", "length", "payload"]
    assert len(compact) == 5 and compact[4] == "(2 rows)" and max(map(len, compact)) < 160
    sql = 'SELECT pname, payload_binary FROM packets WHERE "index" = 4'
    as_csv = run_cli("query", "--db", str(gui_db), sql, "--csv")
    header, row = as_csv.stdout.strip().splitlines()
    assert header == "pname,payload_binary"
    assert base64.b64decode(row.split(",")[1]) == b"\x00\x00\x12\x01\x04\x00\x00\x00\x01\x82\x87"


@pytest.mark.parametrize("sql", ["pname = ", "SELECT * FROM nowhere", "dst_port = 443; DROP TABLE packets"])
def test_bad_sql_is_one_line_and_exit_2(gui_db: Path, sql: str) -> None:
    result = run_cli("query", "--db", str(gui_db), sql)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert rows(gui_db, "SELECT count(*) FROM packets") == [(5,)]


def test_query_cannot_write(gui_db: Path) -> None:
    result = run_cli(
        "query", "--db", str(gui_db), "SELECT 1 FROM packets WHERE 0 UNION SELECT 1; DELETE FROM packets"
    )
    assert result.returncode == 2
    assert rows(gui_db, "SELECT count(*) FROM packets") == [(5,)]


def test_corrupt_and_missing_databases(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(os.urandom(8192))
    result = run_cli("query", "--db", str(corrupt), "pid = 1")
    assert result.returncode == 11 and "not a capture database" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("record", "ws://127.0.0.1:9/", "--db", str(corrupt))
    assert result.returncode == 11 and "not a capture database" in result.stderr
    assert corrupt.stat().st_size == 8192
    missing = run_cli("query", "--db", str(tmp_path / "nope.db"), "pid = 1")
    assert missing.returncode == 2 and "no such database" in missing.stderr
    (tmp_path / "a.db").mkdir()
    os.mkfifo(tmp_path / "fifo.db")
    for path, said in ((tmp_path / "a.db", "a directory"), (tmp_path / "fifo.db", "not a regular file")):
        result = run_cli("query", "--db", str(path), "pid = 1")  # was: no such database file
        assert result.returncode == 2 and said in result.stderr, result.stderr
    export = run_cli("export", "--db", str(corrupt), "--format", "har", "-o", str(tmp_path / "x.har"))
    assert export.returncode == 11 and not (tmp_path / "x.har").exists()


def test_record_bad_filter_and_unreachable_server(tmp_path: Path) -> None:
    bad = run_cli("record", "ws://127.0.0.1:9/", "--db", str(tmp_path / "a.db"), "--filter", "pid = = 1")
    assert bad.returncode == 2 and "invalid --filter" in bad.stderr
    down = run_cli("record", "ws://127.0.0.1:9/", "--db", str(tmp_path / "b.db"))
    assert down.returncode == 3 and "cannot connect" in down.stderr
    assert "Traceback" not in down.stderr + bad.stderr


def test_record_filter_keeps_only_matching_events(tmp_path: Path) -> None:
    db = tmp_path / "filtered.db"
    events = demo_events(90)
    with server_thread() as bg:
        rec = start_record(bg.url, db, "--filter", "pname = 'curl' AND type = 1", "--flush-interval", "0.2")
        bg.wait_clients()
        for ev in events:
            bg.publish_event(ev)
        time.sleep(1.0)
        rec.send_signal(signal.SIGINT)
        rec.communicate(timeout=20)
    kept = rows(db, "SELECT uuid, type FROM packets")
    expected = [(e.uuid, e.type) for e in events if e.pname == "curl" and e.type == 1]
    assert kept == expected and kept


def test_export_har_and_jsonl(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    store = CaptureStore(db)
    events = demo_events(150, seed=11)
    for ev in events:
        store.add(ev)
    store.close()
    har_path = tmp_path / "x.har"
    result = run_cli("export", "--db", str(db), "--format", "har", "-o", str(har_path))
    assert result.returncode == 0, result.stderr
    har = json.loads(har_path.read_text())
    log = har["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "ecaptureq"
    assert len(log["entries"]) == rows(db, "SELECT count(*) FROM exchanges")[0][0] > 20
    for entry in log["entries"]:
        assert {"startedDateTime", "time", "request", "response", "cache", "timings"} <= entry.keys()
        assert entry["startedDateTime"].endswith("Z") and entry["startedDateTime"][:2] == "20"
        req, resp = entry["request"], entry["response"]
        assert req["url"].startswith("https://") and req["method"] in ("GET", "POST")
        assert {"httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"} <= req.keys()
        assert {"status", "statusText", "content", "redirectURL", "headers", "cookies"} <= resp.keys()
        assert {"size", "mimeType"} <= resp["content"].keys()
        entry_obj = HarEntry(entry)
        assert entry_obj.request.method == req["method"]
        assert entry_obj.response.status == resp["status"]
    json_bodies = [
        e for e in log["entries"] if e["response"]["content"]["mimeType"].startswith("application/json")
    ]
    assert json_bodies and all(json.loads(e["response"]["content"]["text"]) for e in json_bodies)
    grpc = [e for e in log["entries"] if "grpc" in e["request"]["url"] or "Greeter" in e["request"]["url"]]
    assert all(e["request"]["httpVersion"] == "h2" for e in grpc)

    curl_only = tmp_path / "curl.har"
    result = run_cli(
        "export", "--db", str(db), "--format", "har", "-o", str(curl_only), "--filter", "pname = 'curl'"
    )
    assert result.returncode == 0
    assert all(e["_pname"] == "curl" for e in json.loads(curl_only.read_text())["log"]["entries"])

    jsonl = tmp_path / "x.jsonl"
    result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(jsonl))
    assert result.returncode == 0
    exported = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [base64.b64decode(r["payload"]) for r in exported if r["kind"] == "event"] == [
        e.payload for e in events
    ]
    served = start_serve("--replay", str(jsonl), "--speed", "0")
    try:
        replayed = run_cli("watch", served.url, "--json", "--count", "150")
    finally:
        stop_serve(served)
    got = [json.loads(x) for x in replayed.stdout.splitlines() if '"kind":"event"' in x]
    assert [(r["uuid"], r["payload"]) for r in got] == [
        (r["uuid"], r["payload"]) for r in exported if r["kind"] == "event"
    ]


def test_export_bad_filter(tmp_path: Path) -> None:
    db = tmp_path / "y.db"
    CaptureStore(db).close()
    result = run_cli(
        "export", "--db", str(db), "--format", "har", "-o", str(tmp_path / "y.har"), "--filter", "nope("
    )
    assert result.returncode == 2 and "invalid --filter" in result.stderr
    assert not (tmp_path / "y.har").exists()


def _recorded(db: Path, messages: Iterable[Event | RunLog]) -> Path:
    """A database of ``messages`` as ``record --no-decode`` stores them (packets and run-log lines)."""
    store = CaptureStore(db, decode=False)
    for message in messages:
        store.add(message)
    store.close()
    return db


def _tampered_database(tmp_path: Path) -> Path:
    """A capture database of 60 demo events whose packets 1-4 and first run-log line another program
    rewrote: values of other types, or beyond their proto fields' ranges."""
    db = _recorded(tmp_path / "tampered.db", [RunLog("first line"), *demo_events(60)])
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE packets SET timestamp = 'abc' WHERE \"index\" = 1")
        conn.execute('UPDATE packets SET payload_binary = 400000000 WHERE "index" = 2')  # not 400 MB of NULs
        conn.execute("UPDATE packets SET uuid = x'0102' WHERE \"index\" = 3")
        conn.execute('UPDATE packets SET src_port = 99999999999 WHERE "index" = 4')
        conn.execute("UPDATE run_logs SET line = x'00ff'")
    conn.close()
    return db


def test_query_shows_cells_of_another_type_as_they_are(tmp_path: Path) -> None:
    db = _tampered_database(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE packets SET timestamp = 1.5e30, src_ip = x'01' WHERE \"index\" = 5")
    conn.close()
    result = run_cli("query", "--db", str(db), '"index" <= 5')
    assert result.returncode == 0, result.stderr  # each row was an internal error (exit 1)
    lines = result.stdout.splitlines()[2:-1]  # the header, its rule and "(5 rows)" left out
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5"]
    assert lines[0].split()[1] == "abc" and "x'01':" in lines[4] and "1.5e+30" in lines[4]
    assert "99999999999" in lines[3]


@pytest.mark.parametrize("form", ["jsonl", "pcapng"])
def test_export_leaves_out_rows_the_schema_does_not_hold_and_says_which(tmp_path: Path, form: str) -> None:
    db = _tampered_database(tmp_path)
    out = tmp_path / f"out.{form}"
    result = run_cli("export", "--db", str(db), "--format", form, "-o", str(out))
    assert result.returncode == 0, result.stderr  # was an internal error (exit 1), or 400 MB of memory
    warning = result.stderr.partition("warning: ")[2]
    assert "packet 1: timestamp is TEXT 'abc', not a 64-bit integer" in warning
    assert "packet 2: payload_binary is INTEGER 400000000, not a BLOB" in warning
    assert "packet 3: uuid is a 2-byte BLOB, not TEXT" in warning
    assert "packet 4: src_port is INTEGER 99999999999, not an unsigned 32-bit integer" in warning
    if form == "jsonl":
        assert warning.startswith("5 rows left out") and "run log 1: line is a 2-byte BLOB" in warning
        recording = load_recording(out)  # what is written replays
        assert len(recording.events) == 56 and recording.logs == []
    else:
        assert warning.startswith("4 rows left out") and out.stat().st_size > 0


def test_export_reads_a_database_of_the_gui_which_has_no_run_logs(tmp_path: Path) -> None:
    db = _tampered_database(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DROP TABLE run_logs")
        conn.execute('DELETE FROM packets WHERE "index" <= 4')
    conn.close()
    result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", "-")
    assert result.returncode == 0, result.stderr  # was: internal error: no such table: run_logs
    assert len(result.stdout.splitlines()) == 56 and "warning" not in result.stderr


def test_export_of_a_damaged_file_is_a_storage_error_and_writes_nothing(tmp_path: Path) -> None:
    db = _recorded(tmp_path / "damaged.db", demo_events(400))
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 40 * page
    data[20 * page : 40 * page] = b"\xa5" * (20 * page)  # garbage over pages the packets are on
    db.write_bytes(bytes(data))
    out = tmp_path / "out.jsonl"
    result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(out))
    assert result.returncode == 11, result.stderr  # was an internal error (exit 1)
    assert "corrupt" in result.stderr and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_export_writes_into_a_device_or_a_fifo_and_never_replaces_it(tmp_path: Path) -> None:
    db = _recorded(tmp_path / "x.db", demo_events(50))
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of the test's own
    result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(null))
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(null.stat().st_mode)  # was renamed over: a regular file in its place
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(fifo.read_bytes)  # the export's reader
        result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(fifo))
        assert result.returncode == 0, result.stderr
        assert len(read.result(timeout=30).splitlines()) == 50
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("x.db")) == ["fifo", "null"]


@pytest.mark.e2e
def test_export_stopped_by_sigterm_leaves_no_temporary_file(tmp_path: Path) -> None:
    db = _recorded(tmp_path / "big.db", demo_events(2000) * 50)  # 100,000 packets: an export of some seconds
    out = tmp_path / "big.jsonl"
    proc = subprocess.Popen(
        [*CLI, "export", "--db", str(db), "--format", "jsonl", "-o", str(out)],
        stderr=subprocess.PIPE,
        env=ENV,
    )
    deadline = time.monotonic() + 30
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".big.jsonl.")]:
        assert time.monotonic() < deadline and proc.poll() is None, "the export did not start writing"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 130  # INTERRUPTED, as Ctrl-C; the default action was to die at once
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == []


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_full_disk_stops_with_a_clear_message_and_keeps_what_was_written(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "size=1m"):
        pytest.skip("cannot mount tmpfs here")
    try:
        db = mnt / "full.db"
        with server_thread() as bg:
            rec = start_record(bg.url, db, "--flush-interval", "0.1", "--no-decode")
            bg.wait_clients()
            for i in range(800):  # about 7 KiB stored per event: far more than the 1 MiB disk holds
                bg.publish_event(Event(timestamp=time.time_ns(), pid=i, payload=os.urandom(2048)))
                time.sleep(0.01)
                if rec.poll() is not None:
                    break
            _out, err = rec.communicate(timeout=20)
        assert rec.returncode == 11, err
        assert "full" in err and "kept" in err
        assert "Traceback" not in err
        kept = rows(db, 'SELECT pid FROM packets ORDER BY "index"')
        assert kept and [p for (p,) in kept] == list(range(len(kept)))
    finally:
        _umount(mnt)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_read_only_path_is_one_clear_line(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "ro,size=64k"):
        pytest.skip("cannot mount tmpfs here")
    try:
        result = run_cli("record", "ws://127.0.0.1:9/", "--db", str(mnt / "x.db"))
        assert result.returncode == 11
        assert "read-only" in result.stderr or "cannot open" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        _umount(mnt)


def test_like_sees_text_after_a_nul_byte(tmp_path: Path) -> None:
    """HTTP/2 DATA frames start with NUL bytes; SQLite's LIKE would stop there if they were kept."""
    db = tmp_path / "h2.db"
    store = CaptureStore(db, decode=False)
    store.add(Event(uuid="1_1_x_3_0", payload=b"\x00\x00\x11\x00\x01\x00\x00\x00\x01token=s3cr3t-password"))
    store.close()
    result = run_cli("query", "--db", str(db), "payload_utf8 LIKE '%s3cr3t-password%'", "--json")
    assert [json.loads(line)["index"] for line in result.stdout.splitlines()] == [1]


# Bytes that make invalid UTF-8, NULs, a literal U+FFFD, a multi-byte character and plain text, so that
# runs of every kind start, end and meet each other.
_PAYLOAD_PIECES = [b"\x00", b"\xff", b"\xe2\x82", "\ufffd".encode(), "\u20ac".encode(), b"a", b"bc"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_PAYLOAD_PIECES), max_size=40).map(b"".join))
def test_payload_text_collapses_each_invalid_run_into_one_replacement(payload: bytes) -> None:
    """payload_utf8 as the schema defines it: each run of invalid bytes and NULs one U+FFFD, or the runs
    left out when the U+FFFDs would make the text longer than the payload."""
    text = payload.decode("utf-8", "replace")
    marked = re.sub("[\ufffd\x00]+", "\ufffd", text)
    expected = marked if len(marked.encode()) <= len(payload) else re.sub("[\ufffd\x00]+", "", text)
    assert payload_text(payload) == expected


_WRITE_AND_WAIT = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=1")  # pages spill to the file (and the journal) before the commit
conn.execute("BEGIN")
for _ in range(5000):
    conn.execute("INSERT INTO run_logs (connection_id, received_ns, line) VALUES (1, 1, ?)", ("x" * 500,))
print("written", flush=True)
time.sleep(60)
"""


def test_a_database_left_mid_transaction_says_how_to_finish_it(tmp_path: Path) -> None:
    # A writer killed inside a transaction leaves a hot rollback journal (a database in rollback-journal
    # mode: a copy, or another program's); a read-only reader cannot play it back. Said so, exit 11.
    db = tmp_path / "cut.db"
    CaptureStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    command = [sys.executable, "-c", _WRITE_AND_WAIT, str(db)]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    writer.kill()
    writer.wait()
    assert Path(f"{db}-journal").exists()
    export = ["export", "--db", str(db), "--format", "jsonl", "-o", "-"]
    for args in (["query", "--db", str(db), "1"], export):
        result = run_cli(*args)
        assert result.returncode == 11, result.stderr
        assert "its last transaction must be rolled back (the -journal file beside it)" in result.stderr
        assert f"sqlite3 {db} 'PRAGMA quick_check'" in result.stderr
    sqlite3.connect(db).execute("PRAGMA quick_check").fetchall()  # as the message says: then it reads
    assert run_cli("query", "--db", str(db), "1").returncode == 0

"""pcapng out, judged by Debian's tshark: curl and python-hyper's h2 client against nginx on 127.0.0.1,
recorded through a tapped socket into a real capture database, exported (and streamed by watch), and
dissected to the same requests, statuses, HTTP/2 headers and body bytes the database holds."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, ENV, Served, run_cli, start_serve, stop_serve
from tshark_support import TSHARK, fields, h2_streams, needs_tshark, tshark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from decode_taps import (
    BASE_NS,
    TapProxy,
    curl,
    events_from_chunks,
    h2_client_get,
    nginx,
)

from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.store import CaptureStore
from ecaptureq.store.writer import BODY_STORED

pytestmark = [pytest.mark.e2e, needs_tshark]
DOC = {"items": [{"id": i, "name": f"item {i}"} for i in range(200)]}
BIG = bytes((i * 7) % 251 for i in range(300_000))
H1_PATHS = ["/data.json", "/page.txt", "/blob.bin", "/big.bin", "/missing"]
H2_MULTI_PATHS = ["/page.txt", "/blob.bin", "/missing", "/data.json"]
PID = 4242


@dataclass
class Capture:
    db: Path
    events: list[Event]
    taps: list[TapProxy]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """HTTP/1.1 (gzip, chunked, binary, 300 kB, 404) and HTTP/2 (curl, and four concurrent streams) from
    real clients and nginx, the connections' events interleaved as a capture would see them, recorded
    into a capture database with its decoded exchanges."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    root = tmp_path_factory.mktemp("www")
    (root / "data.json").write_text(json.dumps(DOC))
    (root / "page.txt").write_text("plain text page\n" * 50)
    (root / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (root / "big.bin").write_bytes(BIG)
    with nginx(root, tmp_path_factory.mktemp("nginx")) as (p1, p2):
        taps = [
            curl(p1, H1_PATHS, "--http1.1", "--compressed"),
            curl(p2, ["/data.json"], "--http2-prior-knowledge", "--compressed"),
            curl(p2, ["/big.bin"], "--http2-prior-knowledge"),
            h2_client_get(p2, H2_MULTI_PATHS),
        ]
    per_connection = [
        events_from_chunks(
            tap.chunks, pid=PID, fd=fd, src=tap.client_addrs[0], dst=("127.0.0.1", tap.port), base_ns=0
        )
        for fd, tap in enumerate(taps, start=5)
    ]
    events: list[Event] = []
    for group in zip_longest(*per_connection):  # round-robin: the connections overlap in time
        for ev in group:
            if ev is not None:
                events.append(Event(**{**vars_of(ev), "timestamp": BASE_NS + len(events) * 1_000_000}))
    db = tmp_path_factory.mktemp("db") / "capture.db"
    store = CaptureStore(db)
    for ev in events:
        store.add(ev)
    store.close()
    return Capture(db, events, taps)


def vars_of(ev: Event) -> dict[str, Any]:
    return {name: getattr(ev, name) for name in Event.__dataclass_fields__}


@pytest.fixture(scope="module")
def exported(capture: Capture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "capture.pcapng"
    result = run_cli("export", "--db", str(capture.db), "--format", "pcapng", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "4 connections" in result.stderr
    return out


def exchanges(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM exchanges ORDER BY id").fetchall()
    return [dict(r) for r in rows]


def test_http1_requests_statuses_and_bodies_match_the_database(
    capture: Capture, exported: Path, tmp_path: Path
) -> None:
    stored = [x for x in exchanges(capture.db) if x["protocol"] == "http/1.1"]
    assert [x["path"] for x in stored] == H1_PATHS
    requests = fields(exported, "http.request", "http.request.uri")
    responses = fields(exported, "http.response", "http.response.code", "http.response_for.uri")
    assert [r[0] for r in requests] == [x["path"] for x in stored]
    host = f"http://127.0.0.1:{capture.taps[0].port}"
    assert [(int(code), uri) for code, uri in responses] == [(x["status"], host + x["path"]) for x in stored]
    # tshark de-chunks and gunzips the bodies it exports, as the database holds them.
    objects = tmp_path / "objects"
    tshark("-r", str(exported), "-q", "--export-objects", f"http,{objects}")
    for x in stored:
        # the database keeps the first BODY_STORED decoded bytes of a body (bounded storage)
        body = (objects / x["path"].strip("/")).read_bytes()
        assert body[:BODY_STORED] == x["response_body"], x["path"]
    assert (objects / "big.bin").read_bytes() == BIG


def test_http2_headers_and_bodies_match_the_database(capture: Capture, exported: Path) -> None:
    stored = [x for x in exchanges(capture.db) if x["protocol"] == "h2"]
    assert len(stored) == 2 + len(H2_MULTI_PATHS)
    dissected = {
        (dict(s.request)[":authority"], dict(s.request)[":path"]): s for s in h2_streams(exported).values()
    }
    assert len(dissected) == len(stored)
    for x in stored:
        request_headers = [tuple(h) for h in json.loads(x["request_headers"])]
        stream = dissected[(dict(request_headers)[":authority"], x["path"])]
        assert stream.request == request_headers
        assert stream.response == [tuple(h) for h in json.loads(x["response_headers"])]
        assert dict(stream.response)[":status"] == str(x["status"])
        assert stream.body[:BODY_STORED] == x["response_body"], x["path"]
    assert dissected[(f"127.0.0.1:{capture.taps[2].port}", "/big.bin")].body == BIG


def test_tcp_streams_are_consistent_and_commented(capture: Capture, exported: Path) -> None:
    # Nothing for tshark's TCP analysis to complain about, and valid checksums.
    problems = fields(
        exported,
        'tcp.analysis.flags || tcp.checksum.status == "Bad" || ip.checksum.status == "Bad" || _ws.malformed',
        "frame.number",
        "_ws.expert.message",
    )
    assert problems == []
    rows = fields(
        exported,
        "tcp",
        "tcp.stream",
        "tcp.flags.str",
        "ip.src",
        "tcp.srcport",
        "ip.dst",
        "tcp.dstport",
        "tcp.len",
        "frame.comment",
        "tcp.options.mss_val",
    )
    by_stream: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        by_stream[row[0]].append(row)
    assert len(by_stream) == len(capture.taps)
    for stream_rows, tap, fd in zip(by_stream.values(), capture.taps, range(5, 9), strict=True):
        flags = [r[1].replace("·", "") for r in stream_rows]
        assert flags[:3] == ["S", "AS", "A"] and flags[-3:] == ["AF", "AF", "A"]
        assert stream_rows[0][8] == "1460"  # the MSS option
        client = tap.client_addrs[0]
        assert stream_rows[0][2:6] == ["127.0.0.1", str(client[1]), "127.0.0.1", "80"]
        assert all(int(r[6]) <= 1460 for r in stream_rows)
        real = f"real=127.0.0.1:{client[1]}->127.0.0.1:{tap.port}"
        for r in stream_rows:
            assert r[7].startswith(f"pid={PID} comm=curl uuid={PID}_{PID}_curl_{fd}") and r[7].endswith(real)
    # The 300 kB bodies span many full-size segments.
    assert sum(1 for r in rows if r[6] == "1460") >= 2 * len(BIG) // 1460
    # Capture timestamps, nanoseconds kept.
    epoch = fields(exported, "frame.number == 4", "frame.time_epoch")[0][0]
    assert epoch == f"{BASE_NS // 10**9}.{BASE_NS % 10**9:09d}"


def test_keep_ports_writes_the_captured_ports(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "ports.pcapng"
    result = run_cli(
        "export", "--db", str(capture.db), "--format", "pcapng", "-o", str(out), "--keep-ports",
        "--filter", "uuid LIKE '%curl_6_%'",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    port = capture.taps[1].port
    (syn,) = fields(out, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.dstport")
    assert syn == [str(port)]
    # On a port Wireshark does not know, HTTP/2 needs Decode As, as --help says.
    paths = fields(out, "http2.type == 1", "http2.headers.path")
    assert paths == []
    decoded = tshark(
        "-r", str(out), "-d", f"tcp.port=={port},http2", "-Y", "http2.type == 1", "-T", "fields",
        "-e", "http2.headers.path",
    )  # fmt: skip
    assert decoded.split() == ["/data.json"]


def test_export_is_deterministic_and_to_stdout(capture: Capture, exported: Path) -> None:
    proc = subprocess.run(
        [*CLI, "export", "--db", str(capture.db), "--format", "pcapng", "-o", "-"],
        capture_output=True,
        env=ENV,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == exported.read_bytes()
    piped = tshark(
        "-r", "-", "-Y", "http.request", "-T", "fields", "-e", "http.request.uri", stdin=proc.stdout
    )
    assert piped.split() == H1_PATHS


# -- watch --pcapng: live -------------------------------------------------------------------------------


# -- watch --pcapng: the same packets, live -------------------------------------------------------------


BUFFERED_ENV = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
"""The tests' environment with Python's own output buffering, as a user runs watch."""
LATE_REQUEST = b"GET /late HTTP/1.1\r\nHost: late.example\r\n\r\n"


@pytest.fixture
def served(capture: Capture, tmp_path: Path) -> Iterator[Served]:
    """``ecaptureq serve`` replaying the capture (exported as JSON Lines) to the first client at its pace,
    then, two seconds later, a small request on a new connection."""
    recording = tmp_path / "capture.jsonl"
    result = run_cli("export", "--db", str(capture.db), "--format", "jsonl", "-o", str(recording))
    assert result.returncode == 0, result.stderr
    late = Event(
        timestamp=capture.events[-1].timestamp + 2 * 10**9,
        uuid="77_77_wget_3_1",
        src_ip="10.1.2.3",
        src_port=51000,
        dst_ip="10.9.8.7",
        dst_port=443,
        pid=77,
        pname="wget",
        payload=LATE_REQUEST,
    )
    with recording.open("a") as f:
        f.write(json.dumps(to_json(late)) + "\n")
    served = start_serve("--replay", str(recording))
    try:
        yield served
    finally:
        stop_serve(served)


def test_watch_pcapng_file_is_the_export_and_text_is_still_shown(
    capture: Capture, exported: Path, served: Served, tmp_path: Path
) -> None:
    out = tmp_path / "live.pcapng"
    count = str(len(capture.events))
    result = run_cli("watch", served.url, "--pcapng", str(out), "--count", count, "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert f"> GET https://127.0.0.1:{capture.taps[0].port}/data.json HTTP/1.1" in result.stdout  # as usual
    # The same events in the same order make the same file, byte for byte (watch stopped before the
    # late request).
    assert out.read_bytes() == exported.read_bytes()


def test_watch_pcapng_stdout_streams_live_into_tshark(capture: Capture, served: Served) -> None:
    watch = subprocess.Popen(
        [*CLI, "watch", served.url, "--pcapng", "-", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=BUFFERED_ENV,
    )
    assert TSHARK is not None and watch.stdout is not None
    live = subprocess.Popen(
        [TSHARK, "-l", "-i", "-", "-Y", "http.request || http2.headers.path", "-T", "fields",
         "-e", "http.request.uri", "-e", "http2.headers.path"],
        stdin=watch.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    watch.stdout.close()  # tshark holds the pipe now
    assert live.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = live.stdout

    def pump() -> None:
        for line in iter(stdout.readline, b""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    expected = sorted([*H1_PATHS, "/data.json", "/big.bin", *H2_MULTI_PATHS, "/late"])
    seen: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while sorted(seen) != expected:
            try:  # tshark prints each request as its packet arrives (-l)
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"tshark showed only {seen} while watch was running")
            seen += line.decode().replace(",", " ").split()  # one line per packet: paths joined by ","
        # Every request reached tshark while watch was still running, the late one too: the packets are
        # flushed as they are written, not when watch ends.
        assert watch.poll() is None
    finally:
        watch.send_signal(signal.SIGINT)
        _out, err = watch.communicate(timeout=30)
        live.communicate(timeout=30)
    assert watch.returncode == 130, err
    assert b"Traceback" not in err
    assert live.returncode == 0


def test_watch_pcapng_reader_that_goes_away_ends_quietly(served: Served) -> None:
    assert TSHARK is not None
    watch = subprocess.Popen(
        [*CLI, "watch", served.url, "--pcapng", "-", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert watch.stdout is not None
    first = subprocess.run(
        [TSHARK, "-c", "5", "-r", "-"], stdin=watch.stdout, capture_output=True, timeout=60, check=False
    )
    watch.stdout.close()
    _out, err = watch.communicate(timeout=60)
    assert first.returncode == 0 and len(first.stdout.splitlines()) == 5
    # The 300 kB bodies do not fit a pipe's buffer: watch writes into the closed pipe, and stops.
    assert watch.returncode == 0, err
    assert b"Traceback" not in err and b"internal error" not in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--pcapng", "-", "--json"], 2, "both write to stdout"),
        (["--pcapng", "-", "--pname", "curl"], 2, "--pname choose what is shown"),
        (["--pcapng", "-", "--type", "1", "--port", "443"], 2, "--port, --type choose what is shown"),
        (["--pcapng", "/nonexistent-dir/x.pcapng"], 11, "cannot write /nonexistent-dir/x.pcapng"),
        (["--pcapng", "/dev/full"], 11, "cannot write /dev/full: No space left on device"),
    ],
)
def test_watch_pcapng_usage_errors(args: list[str], code: int, message: str) -> None:
    result = run_cli("watch", "ws://127.0.0.1:9/", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_export_pcapng_errors(capture: Capture, tmp_path: Path) -> None:
    bad = run_cli("export", "--db", str(capture.db), "--format", "pcapng", "-o", str(tmp_path / "x"),
                  "--filter", "no_such_column = 1")  # fmt: skip
    assert bad.returncode == 2 and "invalid --filter" in bad.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written
    unwritable = run_cli("export", "--db", str(capture.db), "--format", "pcapng", "-o", "/nonexistent-dir/x")
    assert unwritable.returncode == 11 and "cannot write" in unwritable.stderr

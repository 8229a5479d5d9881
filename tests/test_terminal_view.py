"""The terminal view (colour, --oneline, folding), late joining an HTTP/2 connection, exports that invent
nothing, and serve's summary: real ``serve`` and ``watch`` processes, a real pseudo-terminal, real SQLite."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import pytest
from conftest import ENV, Served, run_cli, run_on_terminal, start_serve, stop_serve
from haralyzer import HarEntry, HarParser

from ecaptureq.cli.colour import Palette
from ecaptureq.decode import Decoder, RequestDone, ResponseDone
from ecaptureq.protocol import Event, EventType
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.sources.demo import DemoSource
from ecaptureq.store import CaptureStore

SGR = re.compile(r"\x1b\[[0-9;]*m")
ONELINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3})  (\S+\[\d+\]) +(\S+) +(\S+)  (\d{3}|-)  (\d+(?:\.\d)? (?:B|KiB|MiB)|-)  "
    r"(\d+\.\d ms|-)$"
)


def demo_events(n: int, seed: int) -> list[Event]:
    return list(islice(DemoSource(seed=seed).events(), n))


def unanswered(events: list[Event]) -> list[str]:
    """The URLs of the requests the events leave without a response."""
    dec = Decoder()
    requests = [i for ev in events for i in dec.feed(ev) if isinstance(i, RequestDone)]
    return [r.message.url or r.message.path for r in requests if r.exchange.response is None]


EVENTS = demo_events(80, seed=11)
COUNT = str(len(EVENTS))


def write_recording(path: Path, events: list[Event]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(to_json(ev)) + "\n" for ev in events)
    return path


def exchanges(events: list[Event]) -> list[tuple[str, str, int | None]]:
    """(method, url, status) of each response the events complete, in order (decoded in this process)."""
    dec = Decoder()
    out = []
    for ev in events:
        for item in dec.feed(ev):
            if isinstance(item, ResponseDone) and item.exchange.request is not None:
                req = item.exchange.request
                out.append((req.method, req.url or req.path, item.message.status if item.message else None))
    return out


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 30) -> str:
    """Run ``ecaptureq ARGS`` with its stdout on a pseudo-terminal; return what it wrote there."""
    return run_on_terminal(args, env, timeout=timeout)[1]


Replay = Callable[[], str]


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replay]:
    """Start a ``serve --replay`` of 80 demo events and return its URL (a replay plays to one client)."""
    recording = write_recording(tmp_path / "demo.jsonl", EVENTS)
    started: list[Served] = []

    def start() -> str:
        started.append(start_serve("--replay", str(recording), "--speed", "0"))
        return started[-1].url

    yield start
    for served in started:
        stop_serve(served)


@pytest.mark.e2e
def test_color_always_colours_methods_statuses_and_headers(replay: Replay) -> None:
    out = run_cli("watch", replay(), "--count", COUNT, "--timeout", "20", "--color", "always")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "> \x1b[32mGET\x1b[0m \x1b[36mhttps://" in text  # method and URL
    assert "> \x1b[33mPOST\x1b[0m" in text
    assert re.search(r"< HTTP/1\.1 \x1b\[32m200\x1b\[0m OK", text)  # status by class
    assert re.search(r"< HTTP/1\.1 \x1b\[33m404\x1b\[0m Not Found", text)
    assert "\x1b[2m--- event " in text
    assert re.search(r"  \x1b\[36m10\.0\.0\.5:\d+ -> [\d.]+:443\x1b\[0m\n", text)  # hosts
    # every escape is one of ours: with them taken out, what is left has no control character
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", SGR.sub("", text))
    plain = run_cli("watch", replay(), "--count", "5", "--timeout", "20")  # a pipe: auto means none
    assert plain.returncode == 0 and "\x1b" not in plain.stdout


@pytest.mark.e2e
def test_auto_colours_a_terminal_unless_no_color(replay: Replay) -> None:
    args = ["--count", "10", "--timeout", "20", "--oneline"]
    coloured = run_in_pty(["watch", replay(), *args], ENV)
    assert "\x1b[32m200\x1b[0m" in coloured
    no_color = run_in_pty(["watch", replay(), *args], {**ENV, "NO_COLOR": "1"})
    assert "\x1b" not in no_color and re.search(r" 200  ", no_color)
    never = run_in_pty(["watch", replay(), *args, "--color", "never"], ENV)
    assert "\x1b" not in never


@pytest.mark.e2e
def test_oneline_prints_one_line_per_exchange(replay: Replay) -> None:
    out = run_cli("watch", replay(), "--count", COUNT, "--timeout", "20", "--oneline")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not re.match(r"^\d{4}-\d\d-\d\dT.* INF ", line)]
    want = exchanges(EVENTS)
    waiting = [line for line in lines if line.endswith("  (no response)")]  # the requests left waiting
    lines, last = lines[: len(lines) - len(waiting)], lines[len(lines) - len(waiting) :]
    assert last == waiting and [w.split()[3] for w in waiting] == unanswered(EVENTS), out.stdout
    assert len(want) > 20 and len(lines) == len(want), out.stdout
    for line, (method, url, status) in zip(lines, want, strict=True):
        m = ONELINE.match(line)
        assert m is not None, line
        assert (m[3], m[4], m[5]) == (method, url, str(status))
        assert re.fullmatch(r"(curl|python3|grpc-gateway)\[\d+\]", m[2])


@pytest.mark.e2e
def test_oneline_after_count_shows_the_requests_still_waiting(replay: Replay) -> None:
    # --count 1 stops after the first event, a request: its line says no response came (it was nothing).
    assert isinstance(Decoder().feed(EVENTS[0])[0], RequestDone)
    out = run_cli("watch", replay(), "--count", "1", "--timeout", "20", "--oneline")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not re.match(r"^\d{4}-\d\d-\d\dT.* INF ", line)]
    assert len(lines) == 1 and lines[0].endswith("  (no response)"), out.stdout
    req = exchanges(EVENTS)[0]  # the first exchange is the first event's
    assert f"  {req[1]}  -  -  -  (no response)" in lines[0]


@pytest.mark.e2e
def test_long_bodies_fold_on_a_terminal_and_full_shows_them(replay: Replay) -> None:
    args = ["--count", COUNT, "--timeout", "20", "--color", "never"]
    folded = run_in_pty(["watch", replay(), *args], ENV)
    assert "more lines folded (--full shows them)" in folded  # the 40-user list, pretty-printed
    full = run_in_pty(["watch", replay(), *args, "--full"], ENV)
    assert "more lines folded" not in full and '"name": "user40"' in full


@pytest.mark.e2e
def test_a_late_watch_decodes_most_http2_requests_of_the_demo() -> None:
    served = start_serve("--demo", "--interval", "0.02")
    try:
        # Wait until the demo's HTTP/2 connection is under way: a first watcher sees one of its requests.
        first = run_cli("watch", served.url, "--count", "200", "--timeout", "20", "--json", "--type", "2")
        assert first.returncode == 0 and '"protocol":"h2"' in first.stdout, first.stderr
        late = run_cli("watch", served.url, "--count", "400", "--timeout", "30", "--json")
    finally:
        stop_serve(served)
    assert late.returncode == 0, late.stderr
    requests = []
    for line in late.stdout.splitlines():
        http = json.loads(line).get("http")
        for msg in [http, *(http or {}).get("more", [])] if http else []:
            if msg["kind"] == "request" and msg["protocol"] == "h2":
                requests.append(msg)
    decoded = [r for r in requests if r["method"] in ("GET", "POST") and (r["path"] or "").startswith("/")]
    assert len(requests) >= 20 and len(decoded) >= 0.8 * len(requests), (len(decoded), len(requests))
    assert all(not r["errors"] for r in requests)  # unknown fields are notes, not a failed block
    for r in requests:  # never a made-up request line: unknown stays unknown
        assert r["method"] in ("GET", "POST") and (
            r["path"] is None or r["path"].startswith(("/api", "/hello"))
        )


@pytest.mark.e2e
def test_har_of_a_late_join_invents_no_method_url_or_status(tmp_path: Path) -> None:
    events = demo_events(600, seed=5)
    h2_start = next(
        i for i, ev in enumerate(events) if ev.type == EventType.HTTP2_REQUEST and ev.pname == "grpc-gateway"
    )
    late = events[h2_start + 3 :]  # after the first request of the HTTP/2 connection and its answer
    db = tmp_path / "late.db"
    store = CaptureStore(db)
    for ev in late:
        store.add(ev)
    store.close()
    har_path = tmp_path / "late.har"
    result = run_cli("export", "--db", str(db), "--format", "har", "-o", str(har_path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(har_path.read_text())
    HarParser(doc)  # an independent HAR reader takes it
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT started_ns, method, url FROM exchanges ORDER BY started_ns, id"
        ).fetchall()
    entries = doc["log"]["entries"]
    assert len(rows) == len(entries) > 100
    by_start = {started: (method, url) for started, method, url in _started(events)}
    unknown = 0
    for (started, method, _url), entry in zip(rows, entries, strict=True):
        request = HarEntry(entry).request
        true_method, true_url = by_start.get(started, ("", ""))  # ("", ""): its request was before the join
        assert request.method in ("", true_method) and method in (None, true_method)
        assert request.url == "" or (
            true_url and request.url.endswith(true_url.split("://")[-1].split("/", 1)[1])
        )
        assert entry["response"]["status"] in (0, 200, 404)
        if not request.method or not request.url:
            unknown += 1
            assert "not captured" in entry["request"]["comment"] and entry["_ecaptureq"]["unknown"]
    assert unknown >= 1, "the late join lost no field: the test proves nothing"


def _started(events: list[Event]) -> list[tuple[int, str, str]]:
    """(started_ns, method, url) of each request, decoded from the connection's start."""
    dec = Decoder()
    out = []
    for ev in events:
        for item in dec.feed(ev):
            if isinstance(item, RequestDone) and item.exchange.started_ns:
                ex, msg = item.exchange, item.message
                out.append((ex.started_ns, msg.method, msg.url or msg.path))
    return out


@pytest.mark.e2e
def test_serve_prints_a_summary_when_stopped() -> None:
    served = start_serve("--demo", "--interval", "0.02")
    watched = run_cli("watch", served.url, "--count", "20", "--timeout", "20")
    rc, err = stop_serve(served)
    assert watched.returncode == 0 and rc == 0, err
    m = re.search(
        r"ecaptureq serve: stopped after \d+\.\d s: (\d+) events \([\d,.]+ KiB\) and \d+ run log lines "
        r"published; 1 client connection \(0 open at the stop, 0 of them stalled\), 0 closed as too slow, "
        r"0 connections refused",
        err,
    )
    assert m is not None and int(m[1]) >= 20, err


@pytest.mark.e2e
def test_oneline_and_json_together_is_a_usage_error() -> None:
    result = run_cli("watch", "ws://127.0.0.1:9/", "--oneline", "--json")
    assert result.returncode == 2 and "--oneline and --json cannot be combined" in result.stderr


def test_palette_colours_errors_and_shows_captured_escapes_as_text() -> None:
    out = Palette(True).block("> GET /x\x1b]52;c;eA==\x07\n  ! HTTP/2: not a frame boundary")
    assert "\x1b[31m  ! HTTP/2: not a frame boundary\x1b[0m" in out  # errors red
    assert "/x\\e]52;c;eA==\\x07" in out and "\x07" not in out  # made visible before it was coloured
    assert Palette(False).block("a\x1b[2Jb") == "a\\e[2Jb"

"""Captured control characters never reach a terminal raw: watch, demo, query, errors (real processes)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, ENV, Served, run_cli, start_serve, stop_serve
from hostile_support import CLIPBOARD, ERASE, event, get, h1_exchange, h2_exchange, response, write_jsonl
from websockets.sync.server import ServerConnection, serve

from ecaptureq.cli.terminal import json_line, visible
from ecaptureq.store import CaptureStore

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")
"""What must never be in a terminal's output: every control character but tab and newline."""

HOSTILE_NAME = f"cu{CLIPBOARD}rl"

FORGED = "ecaptureq: FORGED line"
"""Text a captured value puts after a newline, to pass for a line of ours."""


def hostile_events() -> list:  # type: ignore[type-arg]
    """A process name, HTTP/1 header and text body, and HTTP/2 header values carrying escapes."""
    events = h1_exchange(
        get("/x", [("Host", "api.example.com"), ("X-Evil", f"a{CLIPBOARD}b")]),
        response(
            f"line one{ERASE}erased\x9b2Jand\u202eevil".encode(),
            [("Content-Type", "text/plain"), ("X-Erase", ERASE)],
        ),
        pname=HOSTILE_NAME,
    )
    events += h2_exchange(
        [(":method", "GET"), (":scheme", "https"), (":authority", "h2.example"), (":path", "/y")],
        [(":status", "200"), ("x-clip", CLIPBOARD), ("content-type", "text/plain"), ("x-a", f"1\n{FORGED}")],
        f"h2 body{CLIPBOARD}".encode(),
        pname=f"grpc\n{FORGED}",
        n=10,
    )
    events.append(event(HOSTILE_NAME, 9, 0, f"raw {CLIPBOARD}{ERASE}".encode(), 20))
    return events


@pytest.fixture
def hostile_server(tmp_path: Path) -> Iterator[Served]:
    """A replay of the hostile capture (a replay's events go to its first client only)."""
    path = write_jsonl(
        tmp_path / "hostile.jsonl",
        hostile_events(),
        logs=[f"2026-01-02T10:00:00Z INF hello {CLIPBOARD} {ERASE}gone"],
    )
    served = start_serve("--replay", str(path), "--speed", "0")
    yield served
    stop_serve(served)


def test_visible_shows_every_control_character() -> None:
    assert visible(f"a{CLIPBOARD}b") == "a\\e]52;c;cHduZWQ=\\x07b"
    assert visible("a\tb\nc\r") == "a\tb\nc\\r"
    assert visible("a\tb\nc", newlines=False) == "a\\tb\\nc"
    assert visible("\x9b\u202e\x7f") == "\\x9b\\u202e\\x7f"
    # A run of control characters is escaped at once, each character in it as it is alone.
    run = "\x00\x1b\r\x01\u2066\x9f\x7f"
    each = "\\0\\e\\r\\x01\\u2066\\x9f\\x7f"
    assert visible(f"é{run * 3}\t{run}\n{run}") == f"é{each * 3}\t{each}\n{each}"
    assert visible(f"{run}\t{run}\n", newlines=False) == f"{each}\\t{each}\\n"
    assert visible("\x01" * 100_000) == "\\x01" * 100_000
    line = json_line({"k": "\x9b\x1b\u2028é"})
    assert not RAW_CONTROL.search(line) and json.loads(line) == {"k": "\x9b\x1b\u2028é"}


@pytest.mark.parametrize("newlines", [True, False])
def test_visible_escapes_each_character_in_ascii_text_and_in_any_other(newlines: bool) -> None:
    # Printable ASCII takes a shortcut past the regex: each character alone, among printable ASCII and
    # beside non-ASCII text, is escaped exactly when it is a control character (tab and newline: only on
    # one line) or a line separator or bidi control.
    kept = "\t\n" if newlines else ""
    controls = "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    for code in [*range(0x250), *range(0x2000, 0x2070)]:
        ch = chr(code)
        escaped = ch not in kept and (code < 0x20 or 0x7F <= code <= 0x9F or ch in controls)
        for text in (ch, f"GET /{ch} HTTP/1.1", f"é{ch}"):
            shown = visible(text, newlines=newlines)
            assert (shown != text) is escaped, (code, text, shown)
            assert ch not in shown or not escaped, (code, shown)


@pytest.mark.e2e
def test_watch_text_shows_escapes_visibly(hostile_server: Served) -> None:
    result = run_cli("watch", hostile_server.url, "--count", "5", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not RAW_CONTROL.search(out), repr(out)
    assert "\\e]52;c;cHduZWQ=\\x07" in out  # shown, not obeyed: in the log line, the name, the headers
    assert "hello \\e]52;" in out and "\\e[2K\\rgone" in out
    assert f"process {visible(HOSTILE_NAME)}" in out
    assert "X-Evil: a\\e]52;" in out and "x-clip: \\e]52;" in out
    assert "erased\\x9b2Jand\\u202eevil" in out
    # a newline in a header value or a process name is shown, not obeyed: no line begins with what follows
    assert f"x-a: 1\\n{FORGED}" in out and f"grpc\\n{FORGED}" in out
    assert not [line for line in out.splitlines() if line.lstrip().startswith(FORGED)]


@pytest.mark.e2e
def test_watch_raw_output_is_escaped(hostile_server: Served) -> None:
    raw = run_cli("watch", hostile_server.url, "--count", "5", "--timeout", "20", "--no-decode")
    assert raw.returncode == 0, raw.stderr
    assert not RAW_CONTROL.search(raw.stdout), repr(raw.stdout)
    assert "|raw .]52;c;cHduZ|" in raw.stdout  # binary-looking: a hex dump


@pytest.mark.e2e
def test_watch_json_output_is_escaped(hostile_server: Served) -> None:
    lines = run_cli("watch", hostile_server.url, "--count", "5", "--timeout", "20", "--json")
    assert lines.returncode == 0, lines.stderr
    assert not RAW_CONTROL.search(lines.stdout), repr(lines.stdout)
    records = [json.loads(x) for x in lines.stdout.splitlines()]
    assert records[0]["run_log"].endswith(f"{CLIPBOARD} {ERASE}gone\n")  # the data itself is kept exactly
    assert any(r.get("pname") == HOSTILE_NAME for r in records)


@pytest.mark.e2e
def test_query_table_json_and_errors_are_escaped(tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    store = CaptureStore(db)
    store.connection_opened("ws://127.0.0.1:1/")
    for ev in hostile_events():
        store.add(ev)
    store.close()
    table = run_cli("query", "--db", str(db), "1")
    assert table.returncode == 0, table.stderr
    assert not RAW_CONTROL.search(table.stdout) and "\\e]52;" in table.stdout
    ex = run_cli("query", "--db", str(db), "SELECT pname, request_headers, response_body_text FROM exchanges")
    assert ex.returncode == 0, ex.stderr
    assert not RAW_CONTROL.search(ex.stdout) and "\\e" in ex.stdout
    js = run_cli("query", "--db", str(db), "SELECT pname FROM packets", "--json")
    assert not RAW_CONTROL.search(js.stdout)
    assert json.loads(js.stdout.splitlines()[0])["pname"] == HOSTILE_NAME
    # SQLite's own message quotes the text: an error line is escaped as well
    bad = run_cli("query", "--db", str(db), f"pname = '{CLIPBOARD}' AND")
    assert bad.returncode == 2 and not RAW_CONTROL.search(bad.stderr) and "\\e]52" in bad.stderr


@pytest.mark.e2e
def test_demo_output_has_no_raw_control_characters() -> None:
    result = run_cli("demo", "--count", "6", "--interval", "0", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    assert "--- event" in result.stdout and not RAW_CONTROL.search(result.stdout)


SGR = re.compile(r"\x1b\[[0-9;]*m")
"""The only escapes ecaptureq itself writes: colour (Select Graphic Rendition)."""


@pytest.mark.e2e
@pytest.mark.parametrize("view", [[], ["--oneline"]])
def test_colour_is_added_after_captured_text_is_made_visible(tmp_path: Path, view: list[str]) -> None:
    hostile_url = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", f"h2{ERASE}.example"),
        (":path", f"/{CLIPBOARD}"),
    ]
    events = h2_exchange(hostile_url, [(":status", "200")], b"ok", pname=HOSTILE_NAME, n=30)
    served = start_serve(
        "--replay", str(write_jsonl(tmp_path / "hostile.jsonl", hostile_events() + events)), "--speed", "0"
    )
    try:
        # no --count: when the stream goes quiet, what is still in progress is shown too (and coloured)
        result = run_cli("watch", served.url, "--timeout", "3", "--color", "always", *view)
    finally:
        stop_serve(served)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert SGR.search(out)  # coloured
    assert not RAW_CONTROL.search(SGR.sub("", out)), repr(out)  # and nothing else reached the terminal
    shown = SGR.sub("", out)
    assert visible(HOSTILE_NAME, newlines=False) in shown and visible(f"/{CLIPBOARD}") in shown


@pytest.mark.e2e
def test_a_close_reason_with_a_newline_stays_on_the_error_line() -> None:
    def close_at_once(ws: ServerConnection) -> None:
        ws.close(1011, f"oops\n{FORGED}")

    with serve(close_at_once, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        result = run_cli("watch", url, "--timeout", "20")
        server.shutdown()
    assert result.returncode == 3, result.stderr
    assert f"1011 (internal error) oops\\n{FORGED}" in result.stderr  # one line, as every error is
    assert not [line for line in result.stderr.splitlines() if line.startswith(FORGED)]


@pytest.mark.e2e
def test_record_says_why_a_connection_ended_when_the_client_failed_it(tmp_path: Path) -> None:
    # Text that is not UTF-8 makes the client fail the connection (1007); record reconnects, and says why
    # rather than only that it reconnected.
    def bad_text(ws: ServerConnection) -> None:
        ws.send(b"\xff\xfe not UTF-8", text=True)
        ws.wait_closed()

    with serve(bad_text, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        proc = subprocess.Popen(
            [*CLI, "record", url, "--db", str(tmp_path / "r.db"), "--quiet"],
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert proc.stderr is not None
        guard = threading.Timer(30, proc.kill)  # should the line never come
        guard.start()
        first = proc.stderr.readline()
        guard.cancel()
        proc.send_signal(signal.SIGINT)
        _out, rest = proc.communicate(timeout=30)
        server.shutdown()
    assert "this client closed the connection: 1007 (invalid frame payload data)" in first, first + rest
    assert "; reconnecting" in first and proc.returncode == 0, rest

"""What a first-time user hits: --timeout with heartbeats, graceful stop, run-log newlines, messages.

Every test runs real processes (``ecaptureq serve``/``watch``/``record``) or an in-process
:class:`~ecaptureq.server.Server` on 127.0.0.1, and checks the exact lines a user reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, ENV, run_cli, start_serve, stop_serve
from websockets.asyncio.client import connect

from ecaptureq.cli.errors import ExitCode, exit_codes_markdown
from ecaptureq.client import Client, ConnectionLost
from ecaptureq.protocol import Event, RunLog, decode
from ecaptureq.server import Server

UPSTREAM_LINE = '2025-08-02T14:16:10Z INF AppName="eCapture"\n'
"""A run-log line as real eCapture sends it: zerolog's console writer ends each line in a newline."""


async def _run(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    """Run ``ecaptureq ARGS`` as a process without blocking the event loop (the server runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"ecaptureq {' '.join(args)} still running after {timeout} s: {err!r}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- 1. watch --timeout while heartbeats keep coming ------------------------------------------------


@pytest.mark.e2e
async def test_watch_timeout_fires_while_heartbeats_arrive_faster() -> None:
    async with Server(heartbeat_interval=0.1) as server:
        server.publish_log(UPSTREAM_LINE)
        code, out, err = await _run("watch", server.url, "--timeout", "1", "--verbose")
    assert code == 0, err
    # heartbeats came every 0.1 s, many times within the 1 s of silence: they do not count as activity
    assert len(re.findall(r"^\[heartbeat\] #\d+ ", out, re.M)) >= 5, out
    assert "ecaptureq watch: no event or log for 1 s; stopping" in err.splitlines()


@pytest.mark.e2e
async def test_watch_timeout_with_count_exits_4_despite_heartbeats() -> None:
    async with Server(heartbeat_interval=0.1) as server:
        code, _out, err = await _run("watch", server.url, "--timeout", "1", "--count", "3")
    assert code == 4, err
    assert "ecaptureq watch: no event or log for 1 s; got 0 of 3 events" in err.splitlines()


# -- 2. graceful stop: readers get everything queued, a stalled one is closed and counted -----------


@pytest.fixture
def big_replay(tmp_path: Path) -> Path:
    """A recording of 20,000 events of 1 KiB (20 MiB: more than loopback's socket buffers hold)."""
    path = tmp_path / "big.jsonl"
    body = base64.b64encode(b"x" * 1024).decode()
    with path.open("w") as out:
        out.write(json.dumps({"kind": "log", "run_log": UPSTREAM_LINE}) + "\n")
        for i in range(20_000):
            record = {"kind": "event", "timestamp": 1_760_000_000_000_000_000 + i, "pid": 1,
                      "uuid": f"1_1_curl_5_{i % 2}", "pname": "curl", "type": 0, "length": 1024,
                      "payload": body}  # fmt: skip
            out.write(json.dumps(record) + "\n")
    return path


def _stalled_reader(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (tiny receive buffer)."""
    match = re.match(r"ws://([\d.]+):(\d+)/", url)
    assert match
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((match.group(1), int(match.group(2))))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "the server closed the stalled reader during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@pytest.mark.e2e
async def test_sigterm_drains_readers_and_counts_what_a_stalled_client_missed(big_replay: Path) -> None:
    served = start_serve("--replay", str(big_replay), "--speed", "0", "--shutdown-grace", "1")
    events = 0
    shutdown_line = ""
    code: int | None = None
    stalled: socket.socket | None = None
    try:
        async with connect(served.url, max_size=None, compression=None) as ws:
            stalled = _stalled_reader(served.url)  # connects second: the replay starts for the first
            try:
                async for frame in ws:
                    message = decode(frame)
                    if isinstance(message, Event):
                        events += 1
                        if events == 1000:
                            served.proc.send_signal(signal.SIGTERM)
                        if events % 200 == 0:
                            # a reader slower than the old 5 s hard cut: about 8 s for 20,000 events
                            await asyncio.sleep(0.08)
                    elif isinstance(message, RunLog) and "Shutting down" in message.line:
                        shutdown_line = message.line
            except Exception:
                pass
            code = ws.close_code
    finally:
        if stalled is not None:
            stalled.close()
        rc, err = stop_serve(served)
    published = int(re.search(r"Shutting down: (\d+) events published", shutdown_line).group(1))  # type: ignore[union-attr]
    assert events == published, (events, published)
    assert code == 1001
    assert rc == 0, err
    # the server says which client missed what: the stalled one did not read for the grace period
    lines = [line for line in err.splitlines() if "did not read" in line]
    assert len(lines) == 1, err
    missed = re.fullmatch(
        r"ecaptureq serve: client 127\.0\.0\.1:\d+ did not read for 1 s while stopping: "
        r"closed with (\d+) of its queued messages not delivered",
        lines[0],
    )
    assert missed is not None, lines[0]
    assert 0 < int(missed.group(1)) <= published + 10


@pytest.mark.e2e
async def test_stop_closes_a_reader_with_1001_after_everything_queued() -> None:
    server = Server(heartbeat_interval=60)
    await server.start()
    client = Client(server.url)
    got: list[int] = []

    async def read() -> None:
        with pytest.raises(ConnectionLost) as info:
            async for message in client:
                if isinstance(message, Event):
                    got.append(message.timestamp)
        assert info.value.code == 1001

    reader = asyncio.create_task(read())
    await server.wait_for_client()
    for i in range(5000):
        server.publish_event(Event(timestamp=i + 1, uuid="1_1_a_3_1", payload=b"x" * 200))
    result = await server.stop(grace=2.0)
    await asyncio.wait_for(reader, 10)
    assert got == list(range(1, 5001))
    assert result.stalled == []


# -- 3. run-log newlines ---------------------------------------------------------------------------


@pytest.mark.e2e
async def test_our_run_log_lines_end_in_one_newline_as_zerolog_writes_them() -> None:
    served = start_serve("--demo", "--interval", "10")
    try:
        lines: list[str] = []
        async for message in Client(served.url):
            if isinstance(message, RunLog):
                lines.append(message.line)
                if "Listen for eCaptureQ=" in message.line:
                    break
    finally:
        stop_serve(served)
    assert len(lines) >= 5
    for line in lines:
        assert line.endswith("\n") and not line.endswith("\n\n") and line.count("\n") == 1, repr(line)


@pytest.mark.e2e
async def test_publish_log_adds_the_newline_once() -> None:
    async with Server() as server:
        server.publish_log("2026-01-02T10:00:00Z INF no newline")
        server.publish_log("2026-01-02T10:00:01Z INF one newline\n")
        lines = [decode(frame) for frame in server.startup_log]
    assert lines == [
        RunLog("2026-01-02T10:00:00Z INF no newline\n"),
        RunLog("2026-01-02T10:00:01Z INF one newline\n"),
    ]


@pytest.mark.e2e
async def test_watch_prints_each_run_log_line_once_without_blank_lines() -> None:
    ours = "2026-01-02T10:00:00Z INF ours without a newline"
    async with Server(heartbeat_interval=60) as server:
        server.publish_log(UPSTREAM_LINE)
        server.publish_log(ours)
        server.publish_log("2025-08-02T14:16:11Z INF HomePage=https://ecapture.cc\r\n")
        code, out, err = await _run("watch", server.url, "--timeout", "1")
    assert code == 0, err
    assert out == (
        '2025-08-02T14:16:10Z INF AppName="eCapture"\n'
        "2026-01-02T10:00:00Z INF ours without a newline\n"
        "2025-08-02T14:16:11Z INF HomePage=https://ecapture.cc\n"
    )


# -- 10. messages ------------------------------------------------------------------------------------


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, not listening, for the test's duration)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.e2e
def test_url_warning_is_printed_once(dead_port: int) -> None:
    result = run_cli("watch", f"ws://127.0.0.1:{dead_port}", "--count", "1")
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"ecaptureq watch: warning: added the missing trailing '/': ws://127.0.0.1:{dead_port}/",
        f"ecaptureq watch: cannot connect to ws://127.0.0.1:{dead_port}/: connection refused "
        "(is the server running, on this port?)",
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["record", "watch"])
def test_cannot_connect_is_said_once(command: str, dead_port: int, tmp_path: Path) -> None:
    extra = ["--db", str(tmp_path / "c.db")] if command == "record" else []
    result = run_cli(command, f"ws://127.0.0.1:{dead_port}/", *extra)
    assert result.returncode == 3
    assert (
        f"ecaptureq {command}: cannot connect to ws://127.0.0.1:{dead_port}/: connection refused "
        "(is the server running, on this port?)"
    ) in result.stderr.splitlines(), result.stderr


@pytest.mark.e2e
def test_port_in_use_names_listen(busy_port: int) -> None:
    result = run_cli("serve", "--demo", "--listen", f"ws://127.0.0.1:{busy_port}/")
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"ecaptureq serve: cannot listen on 127.0.0.1:{busy_port}: the address is already in use by another "
        "program; choose another port with --listen (ws://127.0.0.1:0/ picks a free one)"
    ]


@pytest.mark.e2e
def test_port_28257_in_use_mentions_real_ecapture() -> None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 28257))
        sock.listen()
    except OSError:
        pass  # something else holds it: in use all the same
    try:
        result = run_cli("serve", "--demo")
    finally:
        sock.close()
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "ecaptureq serve: cannot listen on 127.0.0.1:28257: the address is already in use by another "
        "program (28257 is also real eCapture's eCaptureQ port: is `ecapture ... --ecaptureq` running?); "
        "choose another port with --listen (ws://127.0.0.1:0/ picks a free one)"
    ]


@pytest.mark.e2e
def test_ui_port_in_use_names_listen(busy_port: int, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    run_cli("record", "ws://127.0.0.1:1/", "--db", str(db))  # creates an empty capture database
    result = run_cli("ui", "--db", str(db), "--listen", f"http://127.0.0.1:{busy_port}/")
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"ecaptureq ui: cannot listen on 127.0.0.1:{busy_port}: the address is already in use by another "
        "program; choose another port with --listen (http://127.0.0.1:0/ picks a free one)"
    ]


@pytest.mark.e2e
def test_wss_to_a_plain_server_says_so() -> None:
    served = start_serve("--demo", "--interval", "10")
    try:
        url = served.url.replace("ws://", "wss://")
        result = run_cli("watch", url, "--count", "1")
    finally:
        stop_serve(served)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"ecaptureq watch: cannot connect to {url}: the TLS handshake failed (is it a plain ws:// server? "
        f"then use {served.url})"
    ]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["watch", "ws://127.0.0.1:1/", "--port", "70000"],
         "ecaptureq watch: error: argument --port: 70000 is not a port number (1 to 65535)"),
        (["watch", "ws://127.0.0.1:70000/"],
         "ecaptureq watch: 'ws://127.0.0.1:70000/': the port must be a number from 1 to 65535"),
        (["serve", "--demo", "--listen", "ws://127.0.0.1:70000/"],
         "ecaptureq serve: --listen 'ws://127.0.0.1:70000/': the port must be a number from 0 to 65535"),
        pytest.param(["tls", "--ecaptureq", "http://127.0.0.1:9/"],
         "ecaptureq tls: --ecaptureq 'http://127.0.0.1:9/': expected ws://HOST:PORT/, e.g. ws://127.0.0.1:28257/",
         marks=pytest.mark.skipif(os.geteuid() != 0, reason="tls checks for root first (exit 5)")),
    ],
)  # fmt: skip
def test_bad_ports_and_urls_name_the_right_option(args: list[str], line: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == line, result.stderr


@pytest.mark.e2e
def test_help_lists_every_exit_code_in_one_place() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    listed = [int(m) for m in re.findall(r"^  (\d+) ", result.stdout.split("exit codes:")[1], re.M)]
    assert listed == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130]
    assert [int(code) for code in ExitCode] == listed


def test_readme_exit_code_table_is_the_one_in_the_code() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert exit_codes_markdown() in readme


def test_tls_exit_codes_match_the_table() -> None:
    from ecaptureq.cli import tls

    assert set(tls._EXIT_CODES.values()) == {code for code in ExitCode if code.meaning.startswith("tls:")}


@pytest.mark.e2e
async def test_one_heartbeat_is_singular() -> None:
    async with Server(heartbeat_interval=60) as server:
        watching = asyncio.create_task(_run("watch", server.url, "--count", "1", "--verbose"))
        await asyncio.wait_for(server.wait_for_client(), 20)
        server.publish_event(Event(timestamp=1, uuid="1_1_a_3_1", payload=b"GET / HTTP/1.1\r\n\r\n"))
        code, _out, err = await watching
    assert code == 0, err
    assert err.splitlines()[-1] == (
        "ecaptureq watch: 1 event, 0 logs, 1 heartbeat, 0 malformed frames skipped, 1 connection"
    )


@pytest.mark.e2e
def test_ui_on_a_busy_port_leaves_no_database_behind(busy_port: int, tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    result = run_cli("ui", "--source", "ws://127.0.0.1:9/", "--db", str(db),
                     "--listen", f"http://127.0.0.1:{busy_port}/")  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"ecaptureq ui: cannot listen on 127.0.0.1:{busy_port}: the address is already in use by another "
        "program; choose another port with --listen (http://127.0.0.1:0/ picks a free one)"
    ]
    assert list(tmp_path.iterdir()) == []

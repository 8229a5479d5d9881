"""Hostile peers of the server and hostile sizes: refused Origins stay out of the startup log, a flooding
client is cut off at once, and an event too large for one frame loses nothing (real processes and sockets)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, ENV, run_cli, start_serve, stop_serve
from hostile_support import event, write_jsonl
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ecaptureq.protocol import MAX_FRAME_SIZE, RunLog, decode
from ecaptureq.server import Server

pytestmark = pytest.mark.e2e

EVIL_ORIGIN = "https://evil.example/\x1b]52;c;cHduZWQ=\x07"


async def startup_log(url: str) -> list[str]:
    """The run-log lines a new client is sent before the first heartbeat-paced wait."""
    lines = []
    async with connect(url, compression=None, max_size=None) as conn:
        while True:
            try:
                msg = decode(await asyncio.wait_for(conn.recv(), 1))
            except TimeoutError:
                return lines
            if isinstance(msg, RunLog):
                lines.append(msg.line)


async def test_refused_origins_are_kept_out_of_the_startup_cache_text() -> None:
    async with Server(port=0) as server:
        server.publish_log("2026-01-02T10:00:00Z INF the real startup log")
        for i in range(30):
            try:
                async with connect(server.url, origin=f"https://evil{i}.example", compression=None):  # type: ignore[arg-type]
                    raise AssertionError("a foreign origin was accepted")
            except InvalidStatus as exc:
                assert exc.response.status_code == 403
        lines = await startup_log(server.url)
    refusals = [ln for ln in lines if "refused a handshake" in ln]
    assert lines[0] == "2026-01-02T10:00:00Z INF the real startup log\n"  # zerolog ends lines in \n
    assert 0 < len(refusals) <= 8  # a few, never enough to crowd the real log out
    assert not any("evil" in ln for ln in lines), refusals  # what the refused client sent is not there


def _raw_handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _masked_text(data: bytes) -> bytes:
    return bytes([0x81, 0x80 | len(data)]) + b"\x00\x00\x00\x00" + data


async def test_a_flooding_client_is_cut_off_within_seconds() -> None:
    async with Server(port=0, max_inbound_rate=50) as server:
        loop = asyncio.get_running_loop()

        def flood() -> float:
            sock = _raw_handshake(server.port)
            sock.setblocking(False)
            started = time.monotonic()
            frame = _masked_text(b"flood") * 64
            try:
                while time.monotonic() - started < 15:  # bounded: the server should end it long before
                    with contextlib.suppress(BlockingIOError):
                        sock.send(frame)
                    try:
                        if sock.recv(65536) == b"":
                            break
                    except BlockingIOError:
                        pass
                    time.sleep(0.001)
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                sock.close()
            return time.monotonic() - started

        lasted = await loop.run_in_executor(None, flood)
        assert server.stats.flood_closes == 1
    assert lasted < 5, f"the flooding connection stayed open {lasted:.1f} s"


def test_an_event_larger_than_a_frame_is_split_and_its_neighbour_kept(tmp_path: Path) -> None:
    big = os.urandom(MAX_FRAME_SIZE + 3 * 1024 * 1024)
    events = [event("bulk", 3, 0, big, 0), event("bulk", 4, 0, b"the next event", 1)]
    db = tmp_path / "big.db"
    served = start_serve("--replay", str(write_jsonl(tmp_path / "big.jsonl", events)))
    record = subprocess.Popen([*CLI, "record", served.url, "--db", str(db), "--quiet"], env=ENV)
    try:
        deadline = time.monotonic() + 60
        rows: list[tuple[str, bytes]] = []
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    rows = conn.execute(
                        'SELECT uuid, payload_binary FROM packets ORDER BY "index"'
                    ).fetchall()
                    conn.close()
                except sqlite3.Error:
                    rows = []
                if any(r[1] == b"the next event" for r in rows):
                    break
            time.sleep(0.2)
    finally:
        record.terminate()
        record.wait(timeout=30)
        stop_serve(served)
    assert record.returncode == 0
    assert b"".join(p for u, p in rows if u.endswith("_3_0")) == big  # in pieces, all of it, in order
    assert [p for u, p in rows if u.endswith("_4_0")] == [b"the next event"]
    assert len(rows) == 3


def test_watch_receives_an_oversized_event_in_pieces(tmp_path: Path) -> None:
    big = b"x" * (MAX_FRAME_SIZE + 1024)
    events = [event("bulk", 3, 0, big, 0), event("bulk", 4, 0, b"after", 1)]
    served = start_serve("--replay", str(write_jsonl(tmp_path / "w.jsonl", events)))
    try:
        result = run_cli("watch", served.url, "--json", "--count", "3", "--timeout", "20", "--no-decode")
    finally:
        stop_serve(served)
    assert result.returncode == 0, result.stderr
    got = [json.loads(x) for x in result.stdout.splitlines() if '"kind":"event"' in x]
    assert [base64.b64decode(r["payload"]) for r in got[2:]] == [b"after"]
    assert b"".join(base64.b64decode(r["payload"]) for r in got[:2]) == big

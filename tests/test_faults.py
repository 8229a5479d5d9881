"""Faults: clients that misbehave, publishers that burst while clients churn, a server restarted under watch.

Every loop is bounded in count and time, and everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, ENV, Served, start_serve, stop_serve
from test_server import raw_connect, recv, recv_events
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ecaptureq.client import DEFAULT_ORIGIN
from ecaptureq.protocol import Event, Heartbeat, decode
from ecaptureq.server import Server

pytestmark = pytest.mark.e2e


def handshake_bytes(port: int, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {DEFAULT_ORIGIN}\r\n\r\n"
    ).encode()


async def raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket connection made by hand, so the test controls every byte the client sends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake_bytes(port))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def test_client_that_disconnects_mid_message() -> None:
    async with Server(port=0) as server:
        witness = await raw_connect(server.url)
        # One client sends half a frame then vanishes; another vanishes while a big frame is on its way.
        _r1, w1 = await raw_ws(server.port)
        w1.write(b"\x82\xfe\x10\x00" + b"\x00\x00\x00\x00" + b"x" * 100)  # masked 4096-byte frame, cut short
        await w1.drain()
        w1.transport.abort()
        r2, w2 = await raw_ws(server.port)
        await server.wait_disconnects(1, timeout=5)  # the first one is gone
        await server.wait_clients(2, timeout=5)  # the witness and the second one are registered
        for i in range(200):
            server.publish_event(Event(timestamp=i, payload=b"b" * 16384))
        await r2.read(5000)  # part of a frame
        w2.transport.abort()
        got = await recv_events(witness, 200)
        assert [e.timestamp for e in got] == list(range(200))
        await server.wait_disconnects(2, timeout=10)
        assert server.client_count == 1
        server.publish_event(Event(uuid="after"))
        (after,) = await recv_events(witness, 1)
        assert after.uuid == "after"
        await witness.close()


async def test_client_that_floods_the_server_does_not_hurt_the_others() -> None:
    async with Server(port=0) as server:
        witness = await raw_connect(server.url)
        flooder = await raw_connect(server.url)
        stop = time.monotonic() + 2.0

        async def flood() -> int:
            sent = 0
            try:
                while time.monotonic() < stop and sent < 200_000:
                    await flooder.send(b"z" * 100)
                    sent += 1
                    if sent % 100 == 0:
                        await asyncio.sleep(0)
            except Exception:  # closed by the server's flood limit, if it has one: also fine
                pass
            return sent

        flood_task = asyncio.create_task(flood())
        for i in range(2000):
            server.publish_event(Event(timestamp=i))
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        got = await recv_events(witness, 2000)
        assert [e.timestamp for e in got] == list(range(2000))
        assert await flood_task > 0
        assert server.stats.inbound_messages > 0
        await witness.close()


async def test_client_that_never_finishes_its_handshake() -> None:
    async with Server(port=0) as server:
        stalls = []
        for _ in range(20):
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(handshake_bytes(server.port)[:40])  # half a request line, then silence
            await writer.drain()
            stalls.append(writer)
        conn = await raw_connect(server.url)
        assert isinstance(await recv(conn), Heartbeat)
        server.publish_event(Event(uuid="served despite the stalls"))
        (ev,) = await recv_events(conn, 1)
        assert ev.uuid == "served despite the stalls"
        for w in stalls:
            w.close()
        await conn.close()


async def test_hundreds_of_connections() -> None:
    """300 connections at once: each is served, or refused with 503 past the connection limit."""
    async with Server(port=0, heartbeat_interval=60) as server:
        attempts = await asyncio.gather(
            *(raw_connect(server.url) for _ in range(300)), return_exceptions=True
        )
        conns = [c for c in attempts if not isinstance(c, BaseException)]
        refused = [e for e in attempts if isinstance(e, InvalidStatus)]
        assert len(conns) + len(refused) == 300, [e for e in attempts if isinstance(e, BaseException)][:3]
        assert all(e.response.status_code == 503 for e in refused)
        assert len(conns) >= 100
        for i in range(20):
            server.publish_event(Event(timestamp=i))
        results = await asyncio.gather(*(recv_events(c, 20) for c in conns))
        assert all([e.timestamp for e in got] == list(range(20)) for got in results)
        await asyncio.gather(*(c.close() for c in conns))
        await server.wait_disconnects(len(conns), timeout=10)
        assert server.client_count == 0
        assert server.stats.connections == len(conns)
        again = await raw_connect(server.url)  # and the server still takes new clients
        server.publish_event(Event(uuid="again"))
        (ev,) = await recv_events(again, 1)
        assert ev.uuid == "again"
        await again.close()


async def test_publisher_bursting_while_clients_come_and_go() -> None:
    async with Server(port=0) as server:
        steady = await raw_connect(server.url)
        await server.wait_clients(1, timeout=5)
        total = 20_000
        done = threading.Event()

        def publisher() -> None:
            for i in range(total):
                server.publish_event(Event(timestamp=i, payload=b"c" * 256))
                if i % 500 == 0:
                    time.sleep(0.001)
            done.set()

        thread = threading.Thread(target=publisher)
        thread.start()
        churned = 0
        deadline = time.monotonic() + 20
        while not done.is_set() and time.monotonic() < deadline and churned < 200:
            conn = await connect(server.url, compression=None)
            for _ in range(3):
                msg = decode(await asyncio.wait_for(conn.recv(), 5))  # type: ignore[arg-type]
                assert not hasattr(msg, "kind")
            await conn.close()
            churned += 1
        got = await recv_events(steady, total, timeout=60)
        thread.join(10)
        assert [e.timestamp for e in got] == list(range(total))
        assert churned > 0
        assert server.stats.overflow_closes == 0
        await steady.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_restarted_under_watch_reconnect(tmp_path: Path) -> None:
    port = free_port()
    served = _serve_on(port)
    out_path, err_path = tmp_path / "watch.out", tmp_path / "watch.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        watcher = subprocess.Popen(
            [*CLI, "watch", f"ws://127.0.0.1:{port}/", "--reconnect"],
            stdout=out_file,
            stderr=err_file,
            text=True,
            env=ENV,
        )
    try:
        _wait_for(lambda: out_path.read_text().count("--- event") >= 3)
        stop_serve(served)
        time.sleep(0.5)
        served = _serve_on(port)
        # Bounded wait for the backoff to come round and for events from the new server to arrive.
        _wait_for(lambda: "reconnected" in err_path.read_text())
        _wait_for(lambda: out_path.read_text().partition("Shutting down")[2].count("--- event") >= 3)
    finally:
        watcher.terminate()
        watcher.wait(20)
        stop_serve(served)
    out, err = out_path.read_text(), err_path.read_text()
    banner = [
        line for line in out.splitlines() if re.search(r" INF (AppName|HomePage|Version|Source|Listen)", line)
    ]
    keys = [line.split(" ", 1)[1] for line in banner]
    assert len(keys) == len(set(keys)), f"a startup line was shown twice: {banner}"
    assert any('AppName="ecaptureq demo"' in k for k in keys)
    assert "reconnected" in err and "gap" in err
    assert "Traceback" not in err


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _serve_on(port: int) -> Served:
    """``serve --demo`` on a given port (a restart must come back where it was)."""
    return start_serve("--demo", "--interval", "0.05", listen=f"ws://127.0.0.1:{port}/")

"""The server over real loopback sockets: startup replay, heartbeats, broadcast, order, backpressure."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ecaptureq.client import DEFAULT_ORIGIN
from ecaptureq.protocol import Event, Heartbeat, Message, RunLog, decode
from ecaptureq.server import CLOSE_QUEUE_OVERFLOW, CLOSE_SHUTDOWN, LOG_CACHE_SIZE, Server


async def raw_connect(url: str, **kwargs: object) -> ClientConnection:
    """A plain websockets client, as any third-party consumer would connect."""
    return await connect(url, compression=None, max_size=None, **kwargs)  # type: ignore[arg-type]


async def recv(conn: ClientConnection, timeout: float = 5.0) -> Message:
    data = await asyncio.wait_for(conn.recv(), timeout)
    assert isinstance(data, bytes), "the server must send binary frames only"
    msg = decode(data)
    assert not hasattr(msg, "kind"), f"server sent a malformed frame: {msg}"
    return msg  # type: ignore[return-value]


async def recv_events(conn: ClientConnection, n: int, timeout: float = 30.0) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        msg = await recv(conn, max(0.1, deadline - time.monotonic()))
        if isinstance(msg, Event):
            got.append(msg)
    return got


async def recv_logs(conn: ClientConnection, n: int) -> list[str]:
    lines: list[str] = []
    while len(lines) < n:
        msg = await recv(conn)
        if isinstance(msg, RunLog):
            lines.append(msg.line)
    return lines


@pytest.mark.e2e
async def test_replays_exactly_the_first_128_lines_in_order() -> None:
    async with Server(port=0) as server:
        for i in range(200):
            server.publish_log(f"line {i}")
        conn = await raw_connect(server.url)
        lines = await recv_logs(conn, LOG_CACHE_SIZE)
        assert lines == [f"line {i}\n" for i in range(LOG_CACHE_SIZE)]  # the server ends each in \\n
        server.publish_event(Event(uuid="marker"))
        # Nothing else from the log arrives before the next event: lines 128..199 were not replayed.
        while True:
            msg = await recv(conn)
            if isinstance(msg, Event):
                assert msg.uuid == "marker"
                break
            assert isinstance(msg, Heartbeat)
        await conn.close()


@pytest.mark.e2e
async def test_lines_published_before_start_are_cached() -> None:
    server = Server(port=0)
    server.publish_log("before start")
    async with server:
        conn = await raw_connect(server.url)
        assert await recv_logs(conn, 1) == ["before start\n"]
        await conn.close()


@pytest.mark.e2e
async def test_live_log_lines_reach_connected_clients_including_the_first_128() -> None:
    async with Server(port=0) as server:
        conn = await raw_connect(server.url)
        await server.wait_clients(1, timeout=5)
        server.publish_log("first line, written while a client is connected")
        for i in range(150):
            server.publish_log(f"live {i}")
        lines = await recv_logs(conn, 151)
        assert lines[0] == "first line, written while a client is connected\n"
        assert lines[1:] == [f"live {i}\n" for i in range(150)]
        await conn.close()


@pytest.mark.e2e
async def test_heartbeats_per_connection() -> None:
    async with Server(port=0, heartbeat_interval=0.2) as server:
        conn = await raw_connect(server.url)
        started = time.monotonic()
        beats: list[tuple[float, Heartbeat]] = []
        while len(beats) < 4:
            msg = await recv(conn)
            assert isinstance(msg, Heartbeat)
            beats.append((time.monotonic() - started, msg))
        assert [hb.count for _, hb in beats] == [0, 1, 2, 3]
        assert [hb.message for _, hb in beats] == ["heartbeat:0", "heartbeat:1", "heartbeat:2", "heartbeat:3"]
        assert beats[0][0] < 0.15, "first heartbeat right after connect"
        now = int(time.time())
        assert all(abs(hb.timestamp - now) <= 5 for _, hb in beats), "timestamp is Unix seconds"
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(beats)]
        assert all(0.1 < gap < 1.0 for gap in gaps), gaps
        # A second connection counts from 0 again.
        other = await raw_connect(server.url)
        first = await recv(other)
        assert isinstance(first, Heartbeat) and first.count == 0
        await conn.close()
        await other.close()


@pytest.mark.e2e
async def test_ten_thousand_events_reach_three_clients_in_order() -> None:
    async with Server(port=0) as server:
        conns = [await raw_connect(server.url) for _ in range(3)]
        await server.wait_clients(3, timeout=5)
        n = 10_000
        for i in range(n):
            server.publish_event(Event(timestamp=i, uuid=f"1_1_curl_5_{i % 2}", payload=b"p" * 512))
        results = await asyncio.gather(*(recv_events(c, n) for c in conns))
        for got in results:
            assert [e.timestamp for e in got] == list(range(n))
            assert all(e.length == 512 for e in got)
        assert server.stats.overflow_closes == 0
        for c in conns:
            await c.close()


@pytest.mark.e2e
async def test_publish_from_other_threads_keeps_each_threads_order() -> None:
    async with Server(port=0) as server:
        conn = await raw_connect(server.url)
        await server.wait_clients(1, timeout=5)
        per_thread = 2000

        def worker(tag: int) -> None:
            for i in range(per_thread):
                server.publish_event(Event(uuid=f"t{tag}", timestamp=i))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        got = await recv_events(conn, 3 * per_thread)
        for t in threads:
            t.join()
        for tag in range(3):
            assert [e.timestamp for e in got if e.uuid == f"t{tag}"] == list(range(per_thread))
        await conn.close()


@pytest.mark.e2e
async def test_slow_client_is_closed_with_its_code_while_others_get_everything() -> None:
    async with Server(port=0, queue_size=64) as server:
        fast = [await raw_connect(server.url) for _ in range(2)]
        # The slow client buffers at most one message and then stops reading from its socket.
        slow = await raw_connect(server.url, max_queue=1)
        await server.wait_clients(3, timeout=5)
        n = 3000
        payload = b"s" * 16384
        fast_tasks = [asyncio.create_task(recv_events(c, n, timeout=60)) for c in fast]
        for i in range(n):
            server.publish_event(Event(timestamp=i, payload=payload))
            if i % 16 == 0:
                await server.wait_room()  # a source that goes no faster than readers that keep up
        for got in await asyncio.gather(*fast_tasks):
            assert [e.timestamp for e in got] == list(range(n))
        assert server.stats.overflow_closes == 1
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), 15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_QUEUE_OVERFLOW
        assert "too slow" in closed.value.rcvd.reason
        for c in fast:
            await c.close()


@pytest.mark.e2e
async def test_graceful_stop_sends_what_is_queued_then_1001() -> None:
    server = Server(port=0)
    await server.start()
    conn = await raw_connect(server.url)
    await server.wait_clients(1, timeout=5)
    for i in range(500):
        server.publish_event(Event(timestamp=i))
    await server.stop()
    got = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            msg = await recv(conn)
            if isinstance(msg, Event):
                got.append(msg.timestamp)
    assert got == list(range(500))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_SHUTDOWN


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["/", "/anything/else", "/?x=1"])
async def test_handshake_on_any_path_with_or_without_origin(path: str) -> None:
    async with Server(port=0) as server:
        base = server.url.rstrip("/")
        for origin in (None, DEFAULT_ORIGIN, "http://127.0.0.1:8080"):
            conn = await raw_connect(base + path, origin=origin)
            assert isinstance(await recv(conn), Heartbeat)
            await conn.close()


@pytest.mark.e2e
async def test_client_messages_are_read_and_discarded() -> None:
    async with Server(port=0) as server:
        conn = await raw_connect(server.url)
        for _ in range(10):
            await conn.send(b"hello")
        await conn.send("text too")
        server.publish_event(Event(uuid="still here"))
        (ev,) = await recv_events(conn, 1)
        assert ev.uuid == "still here"
        for _ in range(500):  # the server reads what clients send as it comes: bounded wait for the 11th
            if server.stats.inbound_messages >= 11:
                break
            await asyncio.sleep(0.01)
        assert server.stats.inbound_messages == 11
        await conn.close()


@pytest.mark.e2e
async def test_plain_http_request_is_refused_cleanly() -> None:
    async with Server(port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(200), 5)
        assert head.startswith(b"HTTP/1.1 426") or head.startswith(b"HTTP/1.1 400")
        writer.close()
        # and the server still serves WebSocket clients afterwards
        conn = await raw_connect(server.url)
        assert isinstance(await recv(conn), Heartbeat)
        await conn.close()


@pytest.mark.e2e
async def test_port_zero_picks_a_free_port_and_url_ends_with_slash() -> None:
    async with Server(port=0) as a, Server(port=0) as b:
        assert a.port != b.port and a.port > 0
        assert a.url == f"ws://127.0.0.1:{a.port}/"


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Server(heartbeat_interval=0)
    with pytest.raises(ValueError):
        Server(queue_size=0)


@pytest.mark.e2e
async def test_refused_handshake_is_an_http_error_not_a_crash() -> None:
    from websockets.http11 import Response

    def refuse(_conn: object, _request: object) -> Response:
        from websockets.datastructures import Headers

        return Response(403, "Forbidden", Headers(), b"nope\n")

    async with Server(port=0, process_request=refuse) as server:  # type: ignore[arg-type]
        with pytest.raises(InvalidStatus) as err:
            await raw_connect(server.url)
        assert err.value.response.status_code == 403

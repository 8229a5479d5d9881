"""The client against real servers on loopback: a strict reference-like server, ours, and bad ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from server_support import MIXED_FRAMES, MIXED_MALFORMED, server_thread
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ecaptureq.client import (
    BadURL,
    Client,
    Connected,
    ConnectError,
    ConnectionLost,
    Disconnected,
    Status,
    SyncClient,
    normalize_url,
)
from ecaptureq.protocol import Event, Heartbeat, RunLog, encode
from ecaptureq.server import Server

BANNER = [  # as real eCapture sends it: zerolog ends each line in a newline
    '2025-08-02T14:16:10Z INF AppName="eCapture(旁观者)"\n',
    "2025-08-02T14:16:10Z INF Version=linux_arm64:v1.3.1-20250629-b395562:5.15.0-143-generic\n",
    "2025-08-02T14:16:10Z INF Listen for eCaptureQ=ws://172.16.71.129:9999\n",
]


def require_origin(_conn: ServerConnection, request: Request) -> Response | None:
    """Like the reference server (golang.org/x/net/websocket): no Origin header, HTTP 403."""
    if "Origin" not in request.headers:
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
    return None


@asynccontextmanager
async def strict_server(frames: list[bytes | str], then_close: bool = True) -> AsyncIterator[str]:
    """A server that requires Origin, sends ``frames`` to each client, then closes (or idles)."""

    async def handler(conn: ServerConnection) -> None:
        for frame in frames:
            await conn.send(frame)
        if not then_close:
            await asyncio.sleep(3600)

    async with serve(handler, "127.0.0.1", 0, process_request=require_origin, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


async def collect(client: Client, limit: int = 1000) -> tuple[list[object], BaseException | None]:
    got: list[object] = []
    try:
        async for msg in client:
            got.append(msg)
            if len(got) >= limit:
                break
    except (ConnectionLost, ConnectError) as exc:
        return got, exc
    return got, None


@pytest.mark.e2e
async def test_default_origin_is_accepted_by_a_server_that_requires_one() -> None:
    frames = [encode(RunLog(line)) for line in BANNER] + [
        encode(Event(uuid="2746_2746_curl_5_0", payload=b"GET"))
    ]
    async with strict_server(frames) as url:
        got, exc = await collect(Client(url))
    assert [m.line for m in got if isinstance(m, RunLog)] == BANNER
    assert [m.uuid for m in got if isinstance(m, Event)] == ["2746_2746_curl_5_0"]
    assert isinstance(exc, ConnectionLost)


@pytest.mark.e2e
async def test_no_origin_gets_403_as_a_clear_error() -> None:
    async with strict_server([]) as url:
        with pytest.raises(ConnectError) as err:
            async for _ in Client(url, origin=None):
                pass
    assert err.value.status == 403
    assert "403" in str(err.value)


@pytest.mark.e2e
async def test_malformed_frames_are_skipped_and_counted_and_the_connection_stays() -> None:
    skipped: list[object] = []
    async with strict_server(MIXED_FRAMES) as url:
        client = Client(url, on_malformed=skipped.append)
        got, _exc = await collect(client)
    assert [type(m).__name__ for m in got] == ["RunLog", "Event"]
    assert len(skipped) == MIXED_MALFORMED
    assert client.stats.malformed == MIXED_MALFORMED
    assert client.stats.connections == 1


@pytest.mark.e2e
async def test_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(ConnectError) as err:
        async for _ in Client("ws://127.0.0.1:1/"):
            pass
    assert "cannot connect" in str(err.value)


@pytest.mark.e2e
async def test_a_plain_http_server_is_not_mistaken_for_ecapture() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        with pytest.raises(ConnectError) as err:
            async for _ in Client(f"ws://127.0.0.1:{port}/"):
                pass
    assert err.value.status == 200


@pytest.mark.parametrize(
    ("url", "expected", "warned"),
    [
        ("ws://127.0.0.1:28257/", "ws://127.0.0.1:28257/", False),
        ("ws://127.0.0.1:28257", "ws://127.0.0.1:28257/", True),
        ("127.0.0.1:28257", "ws://127.0.0.1:28257/", True),
        ("http://10.1.2.3:9999", "ws://10.1.2.3:9999/", True),
        ("wss://host.example:443/path", "wss://host.example:443/path", False),
        ("ws://[::1]:28257", "ws://[::1]:28257/", True),
        ("ws://127.0.0.1:28257/?token=abc", "ws://127.0.0.1:28257/?token=abc", False),
    ],
)
def test_url_normalisation(url: str, expected: str, warned: bool) -> None:
    normalized, warnings = normalize_url(url)
    assert normalized == expected
    assert bool(warnings) == warned


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ws://0.0.0.0:28257/", "use 127.0.0.1"),
        ("ws://[::]:28257/", "use 127.0.0.1"),
        ("ftp://127.0.0.1/", "ws:// or wss://"),
        ("ws://127.0.0.1:notaport/", "port"),
        ("ws://127.0.0.1:99999/", "port"),
        ("", "empty"),
        ("ws:///nohost", "no host"),
    ],
)
def test_bad_urls_are_refused_with_a_hint(url: str, fragment: str) -> None:
    with pytest.raises(BadURL) as err:
        normalize_url(url)
    assert fragment in str(err.value)


@pytest.mark.e2e
async def test_reconnect_hides_the_replayed_startup_log_and_reports_the_gap() -> None:
    statuses: list[Status] = []
    server = Server(port=0, heartbeat_interval=30)
    for line in BANNER:
        server.publish_log(line)
    await server.start()
    port = server.port
    client = Client(
        server.url, reconnect=True, initial_backoff=0.05, max_backoff=0.2, on_status=statuses.append
    )
    got: list[object] = []

    async def consume() -> None:
        async for msg in client:
            got.append(msg)

    task = asyncio.create_task(consume())
    await server.wait_clients(1, timeout=10)
    server.publish_event(Event(uuid="before"))
    await server.stop()  # what is queued (the event, the last words) is sent before the close
    await asyncio.sleep(0.3)
    # Restarted on the same port, with the same banner (new timestamps, as a real restart has).
    again = Server(port=port, heartbeat_interval=30)
    for line in BANNER:
        again.publish_log(line.replace("2025-08-02T14:16:10Z", "2025-08-02T15:00:00Z"))
    again.publish_log("2025-08-02T15:00:00Z INF a line the first run did not have")
    await again.start()
    await again.wait_clients(1, timeout=10)  # the client's backoff came round
    again.publish_event(Event(uuid="after"))
    for _ in range(100):
        if any(isinstance(m, Event) and m.uuid == "after" for m in got):
            break
        await asyncio.sleep(0.05)
    await client.close()
    task.cancel()
    await again.stop()
    logs = [m.line for m in got if isinstance(m, RunLog)]
    assert len(logs) == len(BANNER) + 2
    assert logs[: len(BANNER)] == BANNER
    assert "INF Shutting down: 1 events published" in logs[len(BANNER)]  # the first server's last words
    assert logs[-1] == "2025-08-02T15:00:00Z INF a line the first run did not have\n"
    assert [m.uuid for m in got if isinstance(m, Event)] == ["before", "after"]
    assert client.stats.suppressed_logs == len(BANNER)
    connected = [s for s in statuses if isinstance(s, Connected)]
    assert len(connected) == 2 and connected[0].gap is None and connected[1].gap and connected[1].gap > 0.2
    assert any(isinstance(s, Disconnected) and "1001" in s.reason for s in statuses)


@pytest.mark.e2e
async def test_without_reconnect_a_server_shutdown_is_connection_lost() -> None:
    async with Server(port=0) as server:
        client = Client(server.url)
        it = aiter(client)
        assert isinstance(await anext(it), Heartbeat)
        await server.stop()
        with pytest.raises(ConnectionLost) as err:
            while True:
                await anext(it)
    assert err.value.code == 1001


def test_sync_client_iterates_over_a_real_server() -> None:
    got: list[object] = []
    with server_thread(heartbeat_interval=15) as running:
        running.publish_log("sync hello")
        with SyncClient(running.url) as client:
            for msg in client:
                got.append(msg)
                if len(got) == 1:  # the replayed startup log: the client is registered
                    for i in range(5):
                        running.publish_event(Event(timestamp=i))
                if sum(isinstance(m, Event) for m in got) == 5:
                    break
    assert isinstance(got[0], RunLog) and got[0].line == "sync hello\n"
    assert [m.timestamp for m in got if isinstance(m, Event)] == list(range(5))

"""``Client.batches``: every message that arrived together at once, in order, and a reader that stops
taking them stops the reading (the server keeps what it could not send; the client's memory stays bounded)."""

from __future__ import annotations

import asyncio

import pytest

from ecaptureq.client import Client
from ecaptureq.client.connection import RECEIVE_HIGH_FRAMES
from ecaptureq.protocol import Event, Heartbeat, Message
from ecaptureq.server import Server

pytestmark = pytest.mark.e2e

EVENTS = 30_000
PAYLOAD = 1024  # 30 MiB in all: far more than the client may hold and the loopback socket buffers


def _event(n: int) -> Event:
    return Event(timestamp=n + 1, uuid="7_7_curl_5_1", pid=7, pname="curl", payload=b"%08d" % n * 128)


async def _wait(predicate: object, what: str, timeout: float = 30) -> None:
    """Poll ``predicate`` on the loop until it holds (bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)
    assert predicate(), what  # type: ignore[operator]


async def _settled(read: object, timeout: float = 30) -> int:
    """Wait until ``read()`` (client pending, server sent) stays the same for 50 ms; the pending count."""
    async with asyncio.timeout(timeout):
        last = read()  # type: ignore[operator]
        while True:
            await asyncio.sleep(0.05)
            now = read()  # type: ignore[operator]
            if now == last:
                return int(now[0])
            last = now


async def test_a_reader_that_stops_taking_stops_the_reading() -> None:
    async with Server(port=0, heartbeat_interval=3600) as server:
        client = Client(server.url)
        batches = client.batches()
        first = await anext(batches)
        assert first and isinstance(first[0], Heartbeat)

        for n in range(EVENTS):
            server.publish_event(_event(n))
        # The reader takes nothing now: the client reads until its limit and pauses there.
        await _wait(lambda: client.pending >= RECEIVE_HIGH_FRAMES, "the client never filled its buffer")
        held = await _settled(lambda: (client.pending, server.stats.clients[0].sent))
        assert held < RECEIVE_HIGH_FRAMES + 512, held  # at most one socket read beyond the limit
        assert server.stats.clients[0].queued > 0  # the rest waits on the server: back-pressure

        got: list[Message] = []
        sizes = []
        while len(got) < EVENTS:
            batch = await anext(batches)
            sizes.append(len(batch))
            got.extend(m for m in batch if isinstance(m, Event))
        await batches.aclose()
        await client.close()
    assert [e.timestamp for e in got] == [n + 1 for n in range(EVENTS)]
    assert sizes[0] == held  # the first batch after the pause is everything held
    assert max(sizes) <= RECEIVE_HIGH_FRAMES + 512


async def test_fragmented_and_text_messages_keep_their_place() -> None:
    """A message sent in fragments arrives whole and in order; a text frame is a malformed message
    (skipped, counted); invalid UTF-8 in a text frame ends the connection after what came before it."""
    from websockets.asyncio.server import ServerConnection, serve

    from ecaptureq.client import ConnectionLost
    from ecaptureq.protocol import RunLog, encode

    whole = encode(Event(uuid="1_1_frag_3_1", payload=b"x" * 5000))

    async def handler(conn: ServerConnection) -> None:
        await conn.send(encode(RunLog("before")))
        await conn.send([whole[:10], whole[10:4000], whole[4000:]])  # three frames: BINARY, CONT, CONT
        await conn.send("a text frame")
        await conn.send(["text ", "in parts"])
        await conn.send(encode(RunLog("after")))
        await conn.send(b"\xff\xfe not UTF-8", text=True)
        await conn.send(encode(RunLog("never")))
        await conn.wait_closed()

    skipped: list[object] = []
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = Client(f"ws://127.0.0.1:{port}/", on_malformed=skipped.append)
        got: list[Message] = []
        with pytest.raises(ConnectionLost) as err:
            async for batch in client.batches():
                got.extend(batch)
    assert [type(m).__name__ for m in got] == ["RunLog", "Event", "RunLog"]
    assert isinstance(got[1], Event) and got[1].payload == b"x" * 5000
    assert [m.line for m in got if isinstance(m, RunLog)] == ["before", "after"]
    assert len(skipped) == 2 and client.stats.malformed == 2
    # the client failed it (1007) and says so, not that the connection was lost
    assert "this client closed the connection: 1007 (invalid frame payload data)" in str(err.value)
    assert err.value.code == 1007

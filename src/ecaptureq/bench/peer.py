"""The other side of a benchmark, run as its own process so it does not share a core with the server.

``python -m ecaptureq.bench.peer receive URL --clients K --events N`` opens K connections, prints
``ready``, reads until every client has N events (or goes idle), then prints one JSON line of results.
``python -m ecaptureq.bench.peer send --events N --size B`` serves N pre-encoded frames to each client
that connects, for the client-side benchmark.
``python -m ecaptureq.bench.peer replay FILE`` serves the events of FILE (see :func:`write_frames`) the way
``ecaptureq serve --replay FILE --speed 0`` does (this project's server fed by its replay source, as fast
as the client reads), to one client after another, for the consumer benchmarks;
``python -m ecaptureq.bench.peer frames FILE`` writes the frames of FILE as they are, the fastest a sender
can be; ``python -m ecaptureq.bench.peer count URL --events N`` is the bare receive loop the consumers are
measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ecaptureq.protocol import Event, decode, encode_event
from ecaptureq.server import Server
from ecaptureq.sources.replay import Recording, ReplaySource

EVENT_FRAME_START = b"\x08\x02"
"""The first bytes of a LogEntry frame that carries an event (field 1, ``log_type``, = 2)."""


@dataclass
class ReceiverResult:
    """What one receiving connection saw."""

    received: int = 0
    in_order: bool = True
    last_recv_ns: int = 0
    close_code: int | None = None
    latencies_ns: list[int] = field(default_factory=list)


async def _receive(
    conn: ClientConnection, n: int, idle: float, result: ReceiverResult, sample_every: int
) -> None:
    expected = 0
    try:
        while result.received < n:
            frame = await asyncio.wait_for(conn.recv(), idle)
            now = time.time_ns()
            msg = decode(frame) if isinstance(frame, bytes) else None
            if not isinstance(msg, Event):
                continue
            if msg.pid != expected:
                result.in_order = False
            expected = msg.pid + 1
            result.received += 1
            result.last_recv_ns = now
            if result.received % sample_every == 0 or result.received == 1:
                result.latencies_ns.append(now - msg.timestamp)
    except ConnectionClosed as exc:
        result.close_code = exc.rcvd.code if exc.rcvd else 1006
    except TimeoutError:
        pass
    finally:
        await conn.close()


async def _stall(conn: ClientConnection, result: ReceiverResult, hold: float) -> None:
    """Never read; after ``hold`` seconds, drain what arrived and note how the server closed us."""
    await asyncio.sleep(hold)
    try:
        while True:
            # What was sent is already buffered by then: a quiet spell means the server left us open.
            frame = await asyncio.wait_for(conn.recv(), 3)
            if isinstance(frame, bytes) and isinstance(decode(frame), Event):
                result.received += 1
    except ConnectionClosed as exc:
        result.close_code = exc.rcvd.code if exc.rcvd else 1006
    except TimeoutError:
        pass


async def receive(
    url: str, clients: int, events: int, idle: float, stalled: int, hold: float
) -> dict[str, Any]:
    """Open the connections, report ``ready``, receive, and return the results of every connection."""
    conns = [
        await connect(
            url, compression=None, max_size=None, max_queue=1 if i < stalled else 64, open_timeout=30
        )
        for i in range(clients)
    ]
    print("ready", flush=True)
    sample_every = max(1, events * clients // 20000)
    results = [ReceiverResult() for _ in conns]
    tasks = [
        _stall(c, r, hold) if i < stalled else _receive(c, events, idle, r, sample_every)
        for i, (c, r) in enumerate(zip(conns, results, strict=True))
    ]
    await asyncio.gather(*tasks)
    return {"results": [asdict(r) for r in results], "stalled": stalled}


async def send(events: int, size: int) -> None:
    """Serve ``events`` pre-encoded frames of ``size`` payload bytes to each client; print the URL."""
    payload = b"x" * size
    frames = [encode_event(Event(timestamp=time.time_ns(), pid=i, payload=payload)) for i in range(events)]

    async def handler(conn: ServerConnection) -> None:
        for frame in frames:
            await conn.send(frame)
        await conn.close()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/", flush=True)
        await asyncio.sleep(3600)


async def serve_frames(path: str) -> None:
    """Serve the length-prefixed frames of ``path`` to each client that connects; print the URL, then
    ``start NS`` (wall clock) as each connection's first frame goes out, and keep the connection open."""
    frames = read_frames(path)

    async def handler(conn: ServerConnection) -> None:
        print(f"start {time.time_ns()}", flush=True)
        for frame in frames:
            await conn.send(frame)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/", flush=True)
        await asyncio.sleep(3600)


async def serve_replay(path: str) -> None:
    """Serve the events of ``path`` as ``serve --replay --speed 0`` does, to one client after another; print
    the URL, then ``start NS`` (wall clock) as each client's replay begins."""
    events = [msg for msg in map(decode, read_frames(path)) if isinstance(msg, Event)]
    source = ReplaySource(Recording([], events), speed=0)
    async with Server(port=0) as server:
        print(server.url, flush=True)
        served = 0
        while True:
            await server.wait_clients(1)
            print(f"start {time.time_ns()}", flush=True)
            await source.play(server)
            served += 1
            await server.wait_disconnects(served)


async def count(url: str, events: int) -> None:
    """The bare receive loop: count ``events`` event frames (a server sends run-log lines and heartbeats
    too), then close."""
    n = 0
    async with connect(url, compression=None, max_size=None) as conn:
        async for frame in conn:
            if isinstance(frame, bytes) and frame.startswith(EVENT_FRAME_START):
                n += 1
                if n == events:
                    break


def write_frames(path: str, frames: list[bytes]) -> None:
    """Write frames, each after its 4-byte big-endian length."""
    with open(path, "wb") as f:
        for frame in frames:
            f.write(len(frame).to_bytes(4, "big"))
            f.write(frame)


def read_frames(path: str) -> list[bytes]:
    """Read what :func:`write_frames` wrote."""
    with open(path, "rb") as f:
        data = f.read()
    frames, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        frames.append(data[i + 4 : i + 4 + size])
        i += 4 + size
    return frames


def main(argv: list[str] | None = None) -> int:
    """Entry point of the peer process."""
    parser = argparse.ArgumentParser(prog="python -m ecaptureq.bench.peer")
    sub = parser.add_subparsers(dest="role", required=True)
    rcv = sub.add_parser("receive")
    rcv.add_argument("url")
    rcv.add_argument("--clients", type=int, default=1)
    rcv.add_argument("--events", type=int, required=True)
    rcv.add_argument("--idle", type=float, default=10.0)
    rcv.add_argument("--stalled", type=int, default=0)
    rcv.add_argument("--hold", type=float, default=5.0)
    snd = sub.add_parser("send")
    snd.add_argument("--events", type=int, required=True)
    snd.add_argument("--size", type=int, default=512)
    frm = sub.add_parser("frames")
    frm.add_argument("path")
    rpl = sub.add_parser("replay")
    rpl.add_argument("path")
    cnt = sub.add_parser("count")
    cnt.add_argument("url")
    cnt.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        if args.role == "receive":
            result = asyncio.run(
                receive(args.url, args.clients, args.events, args.idle, args.stalled, args.hold)
            )
            print(json.dumps(result), flush=True)
        elif args.role == "frames":
            asyncio.run(serve_frames(args.path))
        elif args.role == "replay":
            asyncio.run(serve_replay(args.path))
        elif args.role == "count":
            asyncio.run(count(args.url, args.events))
        else:
            asyncio.run(send(args.events, args.size))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

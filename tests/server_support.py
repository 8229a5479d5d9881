"""The one in-process server for tests whose other side is a thread or a process (record, ui, SyncClient).

Async tests use ``async with Server(port=0) as server`` directly; tests that run the command line against a
``serve`` process use ``conftest.start_serve``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ecaptureq.protocol import Event, RunLog, encode
from ecaptureq.protocol import event_pb2 as pb
from ecaptureq.server import Server, ServerStats

MIXED_FRAMES: list[bytes | str] = [
    b"\xff\xfe garbage",
    encode(RunLog("one")),
    pb.LogEntry(log_type=9, run_log="x").SerializeToString(),
    "a text frame",
    pb.LogEntry(log_type=pb.LOG_TYPE_EVENT, run_log="mismatch").SerializeToString(),
    b"",
    encode(Event(uuid="1_1_x_3_0", payload=b"after the garbage")),
]
"""Frames as a hostile or broken server sends them: a run-log line and an event (the last frame), among
:data:`MIXED_MALFORMED` malformed ones (not protobuf, an unknown log type, text, a type that disagrees with
its payload, empty)."""
MIXED_MALFORMED = 5


class ServerThread:
    """A :class:`Server` on its own event loop and thread, so a synchronous test can drive it.

    ``settings`` go to :class:`Server` (``port=0`` and a 0.5 s heartbeat unless given).
    """

    def __init__(self, **settings: Any) -> None:
        settings = {"port": 0, "heartbeat_interval": 0.5, **settings}
        self.loop = asyncio.new_event_loop()
        self.server = Server(**settings)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return self.server.url

    def publish_event(self, event: Event) -> None:
        """Publish an event (the server is thread-safe: it hands the frame to its loop)."""
        self.server.publish_event(event)

    def publish_log(self, line: str) -> None:
        """Publish a run-log line."""
        self.server.publish_log(line)

    def wait_clients(self, n: int = 1, timeout: float = 20) -> None:
        """Block until ``n`` clients are registered: whatever is published from then on reaches them."""
        future = asyncio.run_coroutine_threadsafe(self.server.wait_clients(n, timeout), self.loop)
        future.result(timeout + 5)

    def stats(self) -> ServerStats:
        """The server's counters, read on its loop."""

        async def read() -> ServerStats:
            return self.server.stats

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(10)

    def close(self) -> None:
        """Stop the server gracefully, then its loop and thread."""
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def server_thread(**settings: Any) -> Iterator[ServerThread]:
    """A :class:`ServerThread`, stopped when the block ends."""
    running = ServerThread(**settings)
    try:
        yield running
    finally:
        running.close()

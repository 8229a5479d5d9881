"""The eCaptureQ server: a WebSocket endpoint that pushes run logs, heartbeats and events to clients.

It speaks the protocol as eCapture does (one binary protobuf ``LogEntry`` per frame, the first 128 run-log
lines replayed to every new client, a heartbeat per connection right after connect and then periodically)
but, unlike the reference, it never drops a message for a client that keeps up: every client has its own
bounded queue, and a client that falls behind by a whole queue is closed with close code 1013 and a reason
that says so, instead of losing messages silently.

The hub knows nothing about where events come from: sources call :meth:`Server.publish_log` and
:meth:`Server.publish_event`, from the event loop or from any other thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl as _ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from websockets.asyncio.server import Server as _WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ecaptureq.access import RateWindow, Refusal, check_token, parse_allowed_origin
from ecaptureq.protocol import (
    MAX_FRAME_SIZE,
    Event,
    decode,
    encode_event,
    encode_heartbeat,
    encode_run_log,
    run_log_line,
)
from ecaptureq.protocol.messages import with_newline
from ecaptureq.server.handshake import build_process_request

logger = logging.getLogger(__name__)

LOG_CACHE_SIZE: Final = 128
FLOOD_CLOSE_SECONDS: Final = 1.0
"""How long a flooding client gets to answer its close frame before the connection is dropped."""
SPLIT_PAYLOAD: Final = MAX_FRAME_SIZE - 1024 * 1024
"""Payload bytes per event when a larger one is split (the rest of a frame is room for its metadata)."""
REFUSALS_CACHED: Final = 8
"""Most refused-handshake lines kept in the startup cache (so refusals cannot crowd out the real log)."""
"""How many run-log lines the server keeps and replays to each new client (the reference's number)."""

CLOSE_QUEUE_OVERFLOW: Final = int(CloseCode.TRY_AGAIN_LATER)
"""Close code (1013) for a client whose send queue overflowed because it did not read fast enough."""

CLOSE_SHUTDOWN: Final = int(CloseCode.GOING_AWAY)
"""Close code (1001) sent to every client on graceful shutdown."""

CLOSE_FLOOD: Final = int(CloseCode.POLICY_VIOLATION)
"""Close code (1008) for a client that sends more messages per second than allowed."""

CLOSE_TOO_BIG: Final = int(CloseCode.MESSAGE_TOO_BIG)
"""Close code (1009) for a client that sends a message larger than allowed."""

SHUTDOWN_GRACE: Final = 5.0
"""Seconds a client may go without reading while the server stops before it is given up on."""

REFUSAL_LOG_LINES_PER_MINUTE: Final = 20
"""Most refused-handshake lines written to the run log per minute (the rest are counted and summed up)."""

_SHUTDOWN = object()  # queue sentinel: send what is queued, then close with 1001

ProcessRequest = Callable[[ServerConnection, Request], Response | None]
"""A hook run on each handshake; returning a :class:`Response` refuses the connection with it."""


@dataclass
class ClientStats:
    """Counters of one connected client."""

    id: int
    remote: str
    connected_at: float
    sent: int = 0
    queued: int = 0
    queued_bytes: int = 0
    heartbeats: int = 0


@dataclass(frozen=True)
class StalledClient:
    """A client that did not read for the shutdown grace period: closed before it got everything."""

    remote: str
    undelivered: int
    """Messages that were queued for it and not delivered."""


@dataclass(frozen=True)
class ShutdownReport:
    """What :meth:`Server.stop` did: how many clients it closed, and those that missed messages."""

    clients: int
    grace: float
    stalled: list[StalledClient] = field(default_factory=list)


@dataclass
class ServerStats:
    """Counters of the whole server since it started."""

    events_published: int = 0
    logs_published: int = 0
    bytes_published: int = 0
    connections: int = 0
    disconnections: int = 0
    overflow_closes: int = 0
    inbound_messages: int = 0
    refused_origin: int = 0
    refused_token: int = 0
    refused_capacity: int = 0
    flood_closes: int = 0
    oversize_closes: int = 0
    clients: list[ClientStats] = field(default_factory=list)


class _Client:
    """One connection: its queue of frames and the task that writes them."""

    __slots__ = ("conn", "dead", "heartbeat_task", "queue", "queued_bytes", "stats", "wake", "writer_task")

    def __init__(self, conn: ServerConnection, stats: ClientStats) -> None:
        self.conn = conn
        self.stats = stats
        self.queue: deque[Any] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.dead = False
        self.writer_task: asyncio.Task[None] | None = None
        self.heartbeat_task: asyncio.Task[None] | None = None


class Server:
    """An eCaptureQ WebSocket server.

    >>> async def main():                                   # doctest: +SKIP
    ...     async with Server(port=0) as server:
    ...         server.publish_log("INF AppName=demo")
    ...         server.publish_event(Event(uuid="1_1_curl_5_0", payload=b"GET / HTTP/1.1\\r\\n\\r\\n"))

    Parameters:
        host: address to listen on (loopback by default).
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        heartbeat_interval: seconds between heartbeats on each connection (15 on the reference).
        queue_size: most frames waiting for one client before it is closed with 1013.
        queue_bytes: most bytes waiting for one client before it is closed with 1013.
        ssl: an :class:`ssl.SSLContext` to serve ``wss://``.
        process_request: an extra handshake hook, run after the built-in checks pass; see
            :data:`ProcessRequest`.
        max_message_size: largest message a client may send (clients have nothing to say); a larger one
            closes the connection with 1009.
        token: when set, every handshake must present it (``Authorization: Bearer TOKEN`` or
            ``?token=TOKEN``), or it is refused with 401.
        allowed_origins: browser origins allowed besides loopback pages (``scheme://host[:port]``, or
            ``*`` for any); a handshake from any other page is refused with 403. No Origin is allowed.
        open_timeout: seconds a client has to complete the opening handshake (slowloris bound).
        max_connections: most open connections; a handshake over the limit is refused with 503.
        max_inbound_rate: most messages a client may send per second; more closes it with 1008.
        shutdown_grace: on :meth:`stop`, seconds a client may go without reading before it is closed
            with what it has not read yet counted (a client that keeps reading gets everything).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_interval: float = 15.0,
        queue_size: int = 100_000,
        queue_bytes: int = 256 * 1024 * 1024,
        ssl: _ssl.SSLContext | None = None,
        process_request: ProcessRequest | None = None,
        max_message_size: int = 64 * 1024,
        token: str | None = None,
        allowed_origins: Iterable[str] = (),
        open_timeout: float = 10.0,
        max_connections: int = 128,
        max_inbound_rate: float = 50.0,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if shutdown_grace <= 0:
            raise ValueError("shutdown_grace must be positive")
        self.shutdown_grace = shutdown_grace
        if queue_size < 1 or queue_bytes < 1:
            raise ValueError("queue bounds must be positive")
        if max_message_size < 1 or open_timeout <= 0 or max_connections < 1 or max_inbound_rate <= 0:
            raise ValueError(
                "max_message_size, open_timeout, max_connections, max_inbound_rate must be positive"
            )
        self._token = None if token is None else check_token(token)
        self.allowed_origins = tuple(parse_allowed_origin(o) for o in allowed_origins)
        self.open_timeout = open_timeout
        self.max_connections = max_connections
        self.max_inbound_rate = max_inbound_rate
        self._refusal_log = RateWindow(REFUSAL_LOG_LINES_PER_MINUTE, 60.0)
        self._refusals_unlogged = 0
        self._refusals_cached = 0
        self.host = host
        self._requested_port = port
        self.heartbeat_interval = heartbeat_interval
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self._ssl = ssl
        self._process_request = process_request
        self._max_message_size = max_message_size
        self._log_cache: list[bytes] = []
        self._clients: set[_Client] = set()
        self._next_client_id = 1
        self._stats = ServerStats()
        self._ws: _WsServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closing = False
        # Frames published from other threads wait here until the loop fans them out, in order.
        self._pending: deque[tuple[bytes, bool]] = deque()
        self._pending_lock = threading.Lock()
        self._drain_scheduled = False
        # client id -> (frames sent, when that count last changed), for wait_room's stall detection
        self._progress: dict[int, tuple[int, float]] = {}
        self._first_client = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Run-log lines published before this are already in the startup cache."""
        if self._ws is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        guard = build_process_request(
            allowed_origins=self.allowed_origins,
            token=self._token,
            max_connections=self.max_connections,
            open_connections=self._open_connections,
            on_refuse=self._refused,
            then=self._process_request,
        )
        self._ws = await serve(
            self._handle,
            self.host,
            self._requested_port,
            ssl=self._ssl,
            process_request=guard,
            compression=None,  # the reference speaks no permessage-deflate; frames are sent as they are
            max_size=self._max_message_size,
            open_timeout=self.open_timeout,
        )

    @property
    def requires_token(self) -> bool:
        """Whether handshakes must present a token."""
        return self._token is not None

    def _open_connections(self) -> int:
        return len(self._ws.connections) if self._ws is not None else 0

    def _refused(self, conn: ServerConnection, refusal: Refusal) -> None:
        stats = self._stats
        if refusal.status == 403:
            stats.refused_origin += 1
        elif refusal.status == 401:
            stats.refused_token += 1
        else:
            stats.refused_capacity += 1
        head = f"refused a handshake from {_remote(conn)} with HTTP {refusal.status}: "
        line = head + refusal.reason
        logger.warning("%s", line)
        if self._refusal_log.hit():
            self._refusals_unlogged += 1  # a flood of bad handshakes must not flood every client's log
            return
        more = ""
        if self._refusals_unlogged:
            more = f" ({self._refusals_unlogged} more refusals not logged)"
            self._refusals_unlogged = 0
        # Connected clients get the reason; the startup cache, replayed to every later client, gets it
        # without what the refused client sent, and holds at most REFUSALS_CACHED such lines.
        live = encode_run_log(run_log_line(line + more, "WRN"))
        cached = encode_run_log(run_log_line(head + (refusal.summary or refusal.reason) + more, "WRN"))
        self._stats.logs_published += 1
        self._stats.bytes_published += len(live)
        if len(self._log_cache) < LOG_CACHE_SIZE and self._refusals_cached < REFUSALS_CACHED:
            self._log_cache.append(cached)
            self._refusals_cached += 1
        if not self._closing:
            for client in self._clients:
                self._enqueue(client, live)

    @property
    def requested_port(self) -> int:
        """The port asked for (0: any free one); :attr:`port` is the one bound."""
        return self._requested_port

    @property
    def port(self) -> int:
        """The TCP port the server listens on (useful with ``port=0``)."""
        if self._ws is None:
            raise RuntimeError("server not started")
        for sock in self._ws.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("server has no listening socket")

    @property
    def url(self) -> str:
        """The URL clients connect to, e.g. ``ws://127.0.0.1:28257/``."""
        scheme = "wss" if self._ssl else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"

    async def stop(self, grace: float | None = None) -> ShutdownReport:
        """Stop gracefully: a run-log line with the totals, then every client gets what is queued for it
        and a close with 1001.

        A client that keeps reading gets everything, however long that takes. A client that reads
        nothing for ``grace`` seconds (default :attr:`shutdown_grace`) is closed at once, and reported
        in the returned :class:`ShutdownReport` with the number of messages it did not get.
        """
        grace = self.shutdown_grace if grace is None else grace
        if self._ws is None or self._closing:
            return ShutdownReport(0, grace)
        self._drain_pending()
        st = self._stats
        self.publish_log(
            run_log_line(
                f"Shutting down: {st.events_published} events published, {st.connections} connections, "
                f"{st.overflow_closes} closed as too slow"
            )
        )
        self._closing = True
        self._ws.close(close_connections=False)
        clients = list(self._clients)
        for client in clients:
            if not client.dead:
                client.queue.append(_SHUTDOWN)
                client.wake.set()
        report = ShutdownReport(len(clients), grace)
        loop = asyncio.get_running_loop()
        progress = {id(c): (c.stats.sent, loop.time()) for c in clients}
        running = {
            c.writer_task: c for c in clients if c.writer_task is not None and not c.writer_task.done()
        }
        while running:
            await asyncio.wait(running, timeout=min(0.25, grace / 4))
            now = loop.time()
            for task, client in list(running.items()):
                if task.done():
                    del running[task]
                    continue
                sent, since = progress[id(client)]
                if client.stats.sent != sent:
                    progress[id(client)] = (client.stats.sent, now)
                elif now - since >= grace:
                    del running[task]
                    undelivered = sum(1 for frame in client.queue if frame is not _SHUTDOWN)
                    client.dead = True
                    client.queue.clear()
                    task.cancel()
                    if undelivered:
                        report.stalled.append(StalledClient(client.stats.remote, undelivered))
                        reason = f"server shutting down: {undelivered} queued messages not delivered"
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._close(client, CLOSE_SHUTDOWN, reason[:120]), 0.5)
        for client in clients:
            if client.conn.transport is not None and not client.conn.transport.is_closing():
                client.conn.transport.abort()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ws.wait_closed(), grace)
        return report

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- publishing --------------------------------------------------------------------------------

    def publish_log(self, line: str) -> None:
        """Publish one run-log line: cached if among the first 128, and sent to every connected client.

        The line is sent ending in one ``\n``, as eCapture's zerolog writer ends each line (one is added
        when ``line`` has none). Thread-safe. Lines published before :meth:`start` go to the startup cache.
        """
        self._publish(encode_run_log(with_newline(line)), True)

    def publish_event(self, event: Event) -> None:
        """Publish one captured event to every connected client, in publish order. Thread-safe.

        A ``length`` of 0 with a non-empty payload is filled in with the payload's length. An event too
        large for one frame (:data:`~ecaptureq.protocol.MAX_FRAME_SIZE`, what clients accept) is sent as
        consecutive events carrying its payload in pieces, so no client drops the connection (and the
        events that follow) on it.
        """
        payload = event.payload
        if len(payload) > SPLIT_PAYLOAD:
            for start in range(0, len(payload), SPLIT_PAYLOAD):
                piece = payload[start : start + SPLIT_PAYLOAD]
                self._publish(
                    encode_event(dataclasses.replace(event, payload=piece, length=len(piece))), False
                )
            return
        if not event.length and payload:
            event = dataclasses.replace(event, length=len(payload))
        self._publish(encode_event(event), False)

    def publish_frames(self, frames: Iterable[bytes]) -> None:
        """Publish already-encoded event frames (each a serialized ``LogEntry``). Thread-safe.

        A frame larger than clients accept is decoded and published as :meth:`publish_event` does.
        """
        for frame in frames:
            if len(frame) > MAX_FRAME_SIZE:
                message = decode(frame)
                if isinstance(message, Event):
                    self.publish_event(message)
                continue  # anything else that large is not ours to send
            self._publish(frame, False)

    async def wait_for_client(self) -> None:
        """Return once at least one client has connected (at once if one already has)."""
        await self._first_client.wait()

    async def wait_room(self, stall: float = 0.5) -> None:
        """Wait until no client that is still reading has its queue more than half full.

        For sources that can go slower (a fast replay, a benchmark): they publish no faster than the
        clients read. A client that has sent nothing for ``stall`` seconds is stalled and not waited for,
        so it cannot hold the others back; its queue overflows and it is closed as usual.
        """
        half = self.queue_size // 2
        await asyncio.sleep(0)
        while True:
            now = time.monotonic()
            waiting = False
            for client in self._clients:
                if client.dead or len(client.queue) <= half:
                    continue
                sent, since = self._progress.get(client.stats.id, (-1, now))
                if client.stats.sent != sent:
                    sent, since = client.stats.sent, now
                self._progress[client.stats.id] = (sent, since)
                if now - since < stall:
                    waiting = True
            if not waiting:
                return
            await asyncio.sleep(0.002)

    def _publish(self, frame: bytes, is_log: bool) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._fanout(frame, is_log)
            return
        with self._pending_lock:
            self._pending.append((frame, is_log))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self._loop.call_soon_threadsafe(self._drain_pending)

    def _drain_pending(self) -> None:
        while True:
            with self._pending_lock:
                if not self._pending:
                    self._drain_scheduled = False
                    return
                batch = list(self._pending)
                self._pending.clear()
            for frame, is_log in batch:
                self._fanout(frame, is_log)

    def _fanout(self, frame: bytes, is_log: bool) -> None:
        stats = self._stats
        if is_log:
            stats.logs_published += 1
            if len(self._log_cache) < LOG_CACHE_SIZE:
                self._log_cache.append(frame)
        else:
            stats.events_published += 1
        stats.bytes_published += len(frame)
        if self._closing:
            return
        for client in self._clients:
            self._enqueue(client, frame)

    def _enqueue(self, client: _Client, frame: bytes) -> None:
        if client.dead:
            return
        if len(client.queue) >= self.queue_size or client.queued_bytes + len(frame) > self.queue_bytes:
            self._overflow(client)
            return
        client.queue.append(frame)
        client.queued_bytes += len(frame)
        client.wake.set()

    def _overflow(self, client: _Client) -> None:
        client.dead = True
        pending = len(client.queue)
        client.queue.clear()
        client.queued_bytes = 0
        self._stats.overflow_closes += 1
        reason = f"too slow: send queue overflowed ({pending} messages waiting)"
        logger.warning("closing client %s: %s", client.stats.remote, reason)
        if client.writer_task is not None:
            client.writer_task.cancel()
        asyncio.get_running_loop().create_task(self._close(client, CLOSE_QUEUE_OVERFLOW, reason))

    @staticmethod
    async def _close(client: _Client, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await client.conn.close(code, reason)

    # -- connections -------------------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        stats = ClientStats(id=self._next_client_id, remote=_remote(conn), connected_at=time.time())
        self._next_client_id += 1
        client = _Client(conn, stats)
        self._stats.connections += 1
        # Registration and the startup replay happen with no await between them, so every run-log
        # line reaches this client exactly once: from the cache or live.
        self._clients.add(client)
        self._first_client.set()
        for frame in self._log_cache:
            self._enqueue(client, frame)
        client.writer_task = asyncio.create_task(self._writer(client))
        client.heartbeat_task = asyncio.create_task(self._heartbeats(client))
        inbound = RateWindow(self.max_inbound_rate)
        try:
            async for _message in conn:
                self._stats.inbound_messages += 1  # clients have nothing to say: read and discard
                if inbound.hit():
                    self._stats.flood_closes += 1
                    client.dead = True
                    logger.warning("closing client %s: too many messages", stats.remote)
                    reason = f"too many messages (over {self.max_inbound_rate:g}/s)"
                    try:
                        # A flooding client rarely answers the close frame: wait a little, then drop it
                        # (not websockets' 10 s close timeout, during which it keeps sending).
                        await asyncio.wait_for(conn.close(CLOSE_FLOOD, reason), FLOOD_CLOSE_SECONDS)
                    except TimeoutError:
                        conn.transport.abort()
                    break
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:
                self._stats.oversize_closes += 1
                logger.warning(
                    "closed client %s: message over %d bytes", stats.remote, self._max_message_size
                )
        finally:
            self._clients.discard(client)
            self._progress.pop(stats.id, None)
            self._stats.disconnections += 1
            client.heartbeat_task.cancel()
            if not self._closing:
                client.writer_task.cancel()
            client.dead = True

    async def _writer(self, client: _Client) -> None:
        conn = client.conn
        queue = client.queue
        try:
            while True:
                while queue:
                    frame = queue.popleft()
                    if frame is _SHUTDOWN:
                        await conn.close(CLOSE_SHUTDOWN, "server shutting down")
                        return
                    client.queued_bytes -= len(frame)
                    await conn.send(frame)
                    client.stats.sent += 1
                client.wake.clear()
                await client.wake.wait()
        except ConnectionClosed:
            client.dead = True

    async def _heartbeats(self, client: _Client) -> None:
        count = 0
        while not client.dead:
            self._enqueue(client, encode_heartbeat(int(time.time()), count, f"heartbeat:{count}"))
            client.stats.heartbeats = count + 1
            count += 1
            await asyncio.sleep(self.heartbeat_interval)

    # -- introspection -----------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        """How many clients are connected now."""
        return len(self._clients)

    def stats(self) -> ServerStats:
        """A snapshot of the server's counters, with one :class:`ClientStats` per connected client."""
        snap = ServerStats(**{k: v for k, v in vars(self._stats).items() if k != "clients"})
        for client in self._clients:
            client.stats.queued = len(client.queue)
            client.stats.queued_bytes = client.queued_bytes
            snap.clients.append(ClientStats(**vars(client.stats)))
        return snap

    @property
    def startup_log(self) -> list[bytes]:
        """The cached frames of the first run-log lines (at most :data:`LOG_CACHE_SIZE`)."""
        return list(self._log_cache)


def _remote(conn: ServerConnection) -> str:
    addr = conn.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)

"""The eCaptureQ server: a WebSocket endpoint that pushes run logs, heartbeats and events to clients.

It speaks the protocol as eCapture does (one binary protobuf ``LogEntry`` per frame, the first 128 run-log
lines replayed to every new client, a heartbeat per connection right after connect and then periodically)
but, unlike the reference, it never drops a message for a client that keeps up: every client has its own
bounded queue, and a client that falls behind by a whole queue is closed with close code 1013 and a reason
that says so, instead of losing messages silently.

The hub knows nothing about where events come from: sources call :meth:`Server.publish_log` and
:meth:`Server.publish_event`, from the event loop or from any other thread.

The decisions (replay, queues and their bounds, heartbeats, floods, shutdown, counters) are made by
:class:`~ecaptureq.server.fanout.Fanout`, which does no I/O; :class:`Server` is its asyncio adapter: it
accepts connections, runs one writer task per client and one heartbeat task, and carries out the actions
the core returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

from websockets.asyncio.server import Server as _WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ecaptureq.access import Refusal, check_token, parse_allowed_origin
from ecaptureq.protocol import MAX_FRAME_SIZE, Event, encode_event, encode_run_log
from ecaptureq.protocol.messages import with_newline
from ecaptureq.server.fanout import (
    CLOSE_SHUTDOWN,
    CLOSE_TOO_BIG,
    Action,
    Close,
    Fanout,
    Flood,
    Overflow,
    ServerStats,
    StalledClient,
)
from ecaptureq.server.handshake import build_process_request

logger = logging.getLogger(__name__)

__all__ = ["SHUTDOWN_GRACE", "ProcessRequest", "Server", "ShutdownReport"]

FLOOD_CLOSE_SECONDS: Final = 1.0
"""How long a flooding client gets to answer its close frame before the connection is dropped."""
SPLIT_PAYLOAD: Final = MAX_FRAME_SIZE - 1024 * 1024
"""Payload bytes per event when a larger one is split (the rest of a frame is room for its metadata)."""

SHUTDOWN_GRACE: Final = 5.0
"""Seconds a client may go without reading while the server stops before it is given up on."""

ProcessRequest = Callable[[ServerConnection, Request], Response | None]
"""A hook run on each handshake; returning a :class:`Response` refuses the connection with it."""


@dataclass(frozen=True)
class ShutdownReport:
    """What :meth:`Server.stop` did: how many clients it closed, and those that missed messages."""

    clients: int
    grace: float
    stalled: list[StalledClient] = field(default_factory=list)


class _Conn:
    """One connection as the adapter sees it: the socket, its writer task and what wakes the writer."""

    __slots__ = ("conn", "id", "remote", "wake", "writer_task")

    def __init__(self, conn: ServerConnection, cid: int, remote: str) -> None:
        self.conn = conn
        self.id = cid
        self.remote = remote
        self.wake = asyncio.Event()
        self.writer_task: asyncio.Task[None] | None = None


class Server:
    """An eCaptureQ WebSocket server: the asyncio adapter around :class:`~ecaptureq.server.fanout.Fanout`.

    The policy (who gets which frame, overflow, heartbeats, counters) is the :class:`Fanout`'s; this class
    owns the listening socket, one writer task per client and one heartbeat task, and carries out the
    actions the core returns.

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
        if shutdown_grace <= 0:
            raise ValueError("shutdown_grace must be positive")
        if max_message_size < 1 or open_timeout <= 0 or max_connections < 1 or max_inbound_rate <= 0:
            raise ValueError(
                "max_message_size, open_timeout, max_connections, max_inbound_rate must be positive"
            )
        self._core = Fanout(
            queue_size=queue_size,
            queue_bytes=queue_bytes,
            heartbeat_interval=heartbeat_interval,
            max_inbound_rate=max_inbound_rate,
        )
        self.shutdown_grace = shutdown_grace
        self._token = None if token is None else check_token(token)
        self.allowed_origins = tuple(parse_allowed_origin(o) for o in allowed_origins)
        self.open_timeout = open_timeout
        self.max_connections = max_connections
        self.host = host
        self._requested_port = port
        self._ssl = ssl
        self._process_request = process_request
        self._max_message_size = max_message_size
        self._conns: dict[int, _Conn] = {}
        self._ws: _WsServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._schedule_changed = asyncio.Event()
        # Frames published from other threads wait here until the loop fans them out, in order.
        self._pending: list[tuple[bytes, bool]] = []
        self._pending_lock = threading.Lock()
        self._drain_scheduled = False
        # Waiters on the clients: (condition, future), resolved when a client is added or removed.
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats on each connection."""
        return self._core.heartbeat_interval

    @property
    def queue_size(self) -> int:
        """Most frames waiting for one client before it is closed with 1013."""
        return self._core.queue_size

    @property
    def queue_bytes(self) -> int:
        """Most bytes waiting for one client before it is closed with 1013."""
        return self._core.queue_bytes

    @property
    def max_inbound_rate(self) -> float:
        """Most messages a client may send per second before it is closed with 1008."""
        return self._core.max_inbound_rate

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
        self._heartbeat_task = asyncio.create_task(self._heartbeats())

    @property
    def requires_token(self) -> bool:
        """Whether handshakes must present a token."""
        return self._token is not None

    def _open_connections(self) -> int:
        return len(self._ws.connections) if self._ws is not None else 0

    def _refused(self, conn: ServerConnection, refusal: Refusal) -> None:
        loop = asyncio.get_running_loop()
        refused = self._core.refuse(_remote(conn), refusal, loop.time(), time.time())
        logger.warning("%s", refused.line)
        self._apply(refused.actions)

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
        if self._ws is None or self._core.closing:
            return ShutdownReport(0, grace)
        self._drain_pending()
        loop = asyncio.get_running_loop()
        core = self._core
        actions = core.shutdown(loop.time(), time.time())
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        self._ws.close(close_connections=False)
        conns = list(self._conns.values())
        self._apply(actions)
        report = ShutdownReport(len(conns), grace)
        running = {c.id: c for c in conns if c.writer_task is not None and not c.writer_task.done()}
        while running:
            tasks = {c.writer_task for c in running.values() if c.writer_task is not None}
            await asyncio.wait(tasks, timeout=min(0.25, grace / 4))
            for cid in [cid for cid, c in running.items() if c.writer_task is None or c.writer_task.done()]:
                del running[cid]
            for cid in core.stalled(running, loop.time(), grace):
                conn = running.pop(cid)
                missed = core.give_up(cid)
                if conn.writer_task is not None:
                    conn.writer_task.cancel()
                if missed.undelivered:
                    report.stalled.append(missed)
                    reason = f"server shutting down: {missed.undelivered} queued messages not delivered"
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._close(conn, CLOSE_SHUTDOWN, reason[:120]), 0.5)
        for conn in conns:
            transport = conn.conn.transport
            if transport is not None and not transport.is_closing():
                transport.abort()
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

    async def wait_room(self, stall: float = 0.5) -> None:
        """Wait until no client that is still reading has its queue more than half full.

        For sources that can go slower (a fast replay, a benchmark): they publish no faster than the
        clients read. A client that has sent nothing for ``stall`` seconds is stalled and not waited for,
        so it cannot hold the others back; its queue overflows and it is closed as usual.
        """
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        while self._core.needs_room(loop.time(), stall):
            await asyncio.sleep(0.002)

    def _publish(self, frame: bytes, is_log: bool) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._apply(self._core.publish(frame, log=is_log))
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
                batch, self._pending = self._pending, []
            for frame, is_log in batch:
                self._apply(self._core.publish(frame, log=is_log))

    def _apply(self, actions: list[Action]) -> None:
        """Carry out what the core decided: wake writers, close clients that overflowed or flooded."""
        for action in actions:
            conn = self._conns.get(action.client)
            if conn is None:
                continue
            if isinstance(action, Overflow):
                logger.warning("closing client %s: %s", conn.remote, action.reason)
                if conn.writer_task is not None:
                    conn.writer_task.cancel()
                asyncio.get_running_loop().create_task(self._close(conn, action.code, action.reason))
            elif isinstance(action, Flood):
                asyncio.get_running_loop().create_task(self._close_flooder(conn, action))
            else:
                conn.wake.set()

    @staticmethod
    async def _close(conn: _Conn, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await conn.conn.close(code, reason)

    @staticmethod
    async def _close_flooder(conn: _Conn, flood: Flood) -> None:
        logger.warning("closing client %s: too many messages", conn.remote)
        # A flooding client rarely answers the close frame: wait a little, then drop it (not websockets'
        # 10 s close timeout, during which it keeps sending).
        try:
            await asyncio.wait_for(conn.conn.close(flood.code, flood.reason), FLOOD_CLOSE_SECONDS)
        except TimeoutError:
            conn.conn.transport.abort()

    # -- connections -------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        core = self._core
        joined = core.add_client(_remote(ws), loop.time(), time.time())
        conn = _Conn(ws, joined.client, _remote(ws))
        self._conns[conn.id] = conn
        conn.writer_task = asyncio.create_task(self._writer(conn))
        self._apply(joined.actions)
        self._schedule_changed.set()
        self._clients_changed()
        try:
            async for _message in ws:
                flood = core.received(conn.id, loop.time())
                if flood is not None:
                    await self._close_flooder(conn, flood)
                    break
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:
                core.oversize()
                logger.warning("closed client %s: message over %d bytes", conn.remote, self._max_message_size)
        finally:
            core.remove_client(conn.id)
            if not core.closing:
                conn.writer_task.cancel()
                del self._conns[conn.id]
            self._clients_changed()

    async def _writer(self, conn: _Conn) -> None:
        core = self._core
        ws = conn.conn
        cid = conn.id
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = core.pop(cid)
                if item is None:
                    conn.wake.clear()
                    await conn.wake.wait()
                elif isinstance(item, Close):
                    await ws.close(item.code, item.reason)
                    return
                else:
                    await ws.send(item)
                    core.sent(cid, loop.time())
        except ConnectionClosed:
            core.lost(cid)

    async def _heartbeats(self) -> None:
        """The one heartbeat task: queue what the core says is due, then sleep until the next is due
        (or until a client joins and the schedule changes)."""
        loop = asyncio.get_running_loop()
        while True:
            plan = self._core.heartbeats(loop.time(), time.time())
            self._apply(plan.actions)
            self._schedule_changed.clear()
            timeout = None if plan.next_at is None else max(0.0, plan.next_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._schedule_changed.wait(), timeout)

    # -- waiting on clients ------------------------------------------------------------------------

    def _clients_changed(self) -> None:
        for waiter in list(self._waiters):
            condition, future = waiter
            if future.done() or condition():
                self._waiters.remove(waiter)
                if not future.done():
                    future.set_result(None)

    async def _wait_until(self, condition: Callable[[], bool], timeout: float | None) -> None:
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (condition, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_clients(self, n: int = 1, timeout: float | None = None) -> None:
        """Return once at least ``n`` clients are registered (at once if they already are).

        A registered client has had the startup log and its first heartbeat queued: whatever is
        published from then on reaches it. Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        await self._wait_until(lambda: self._core.client_count >= n, timeout)

    async def wait_disconnects(self, n: int, timeout: float | None = None) -> None:
        """Return once the server has seen ``n`` connections end since it started (see
        :attr:`ServerStats.disconnections`). Raises :class:`TimeoutError` after ``timeout`` seconds."""
        await self._wait_until(lambda: self._core.stats(clients=False).disconnections >= n, timeout)

    async def wait_for_client(self) -> None:
        """Return once at least one client has connected since the server started (at once if one has,
        even if it has left since)."""
        await self._wait_until(lambda: self._core.stats(clients=False).connections >= 1, None)

    # -- introspection -----------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        """How many clients are connected now."""
        return self._core.client_count

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the server's counters, with one :class:`ClientStats` per connected client (each
        component's counters are its ``.stats``: the capture's, the store's, the recorder's, the client's)."""
        return self._core.stats()

    @property
    def startup_log(self) -> list[bytes]:
        """The cached frames of the first run-log lines (at most :data:`LOG_CACHE_SIZE`)."""
        return self._core.startup_log


def _remote(conn: ServerConnection) -> str:
    addr = conn.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)

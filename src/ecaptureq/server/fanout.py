"""The hub's policy with no I/O: which client gets which frame, and when (sans-I/O, as in ``websockets``).

:class:`Fanout` holds every decision the server makes about its clients and none of its sockets, tasks or
clocks: the startup-log cache replayed to each new client, the per-client bounded queues and what happens
when one overflows, the heartbeat schedule, the flood limit on what clients send, refusal lines, the
shutdown, and the counters. Inputs are method calls that carry the time (``now``: monotonic seconds for
schedules; ``unix``: wall-clock seconds for what is written in frames). Outputs are values: the frames
waiting in each client's queue (taken with :meth:`Fanout.pop`) and :data:`Action` values that tell the
adapter what to do (:class:`Deliver`: run that client's writer; :class:`Overflow` and :class:`Flood`:
close that client).

:class:`ecaptureq.server.Server` is the asyncio adapter around it: it owns the listening socket, one
writer task per client and one heartbeat task, and does what the actions say.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Final

from websockets.frames import CloseCode

from ecaptureq.access import RateWindow, Refusal
from ecaptureq.protocol import encode_heartbeat, encode_run_log, run_log_line

LOG_CACHE_SIZE: Final = 128
"""How many run-log lines the server keeps and replays to each new client (the reference's number)."""

REFUSALS_CACHED: Final = 8
"""Most refused-handshake lines kept in the startup cache (so refusals cannot crowd out the real log)."""

REFUSAL_LOG_LINES_PER_MINUTE: Final = 20
"""Most refused-handshake lines written to the run log per minute (the rest are counted and summed up)."""

CLOSE_QUEUE_OVERFLOW: Final = int(CloseCode.TRY_AGAIN_LATER)
"""Close code (1013) for a client whose send queue overflowed because it did not read fast enough."""

CLOSE_SHUTDOWN: Final = int(CloseCode.GOING_AWAY)
"""Close code (1001) sent to every client on graceful shutdown."""

CLOSE_FLOOD: Final = int(CloseCode.POLICY_VIOLATION)
"""Close code (1008) for a client that sends more messages per second than allowed."""

CLOSE_TOO_BIG: Final = int(CloseCode.MESSAGE_TOO_BIG)
"""Close code (1009) for a client that sends a message larger than allowed."""

SHUTDOWN_REASON: Final = "server shutting down"
"""The close reason every client gets with :data:`CLOSE_SHUTDOWN`."""


# -- outputs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deliver:
    """Frames wait in ``client``'s queue that was empty: wake its writer (which takes them with ``pop``)."""

    client: int


@dataclass(frozen=True)
class Overflow:
    """``client`` did not read fast enough and its queue overflowed: close it with ``code``.

    Its ``dropped`` queued frames were discarded; it gets nothing more.
    """

    client: int
    dropped: int
    reason: str
    code: int = CLOSE_QUEUE_OVERFLOW


@dataclass(frozen=True)
class Flood:
    """``client`` sent more messages per second than allowed: close it with ``code``."""

    client: int
    reason: str
    code: int = CLOSE_FLOOD


Action = Deliver | Overflow | Flood
"""What :class:`Fanout` asks its adapter to do."""


@dataclass(frozen=True)
class Close:
    """The last item of a client's queue: close the connection with ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True)
class Joined:
    """A client was added: its id, and the actions for what was queued for it (replay, heartbeat 0)."""

    client: int
    replayed: int
    """How many startup-log frames were queued for it."""
    actions: list[Action]


@dataclass(frozen=True)
class Refused:
    """A refused handshake: the line for the operator's log, and the actions for connected clients.

    ``logged`` is False when the refusal-line rate limit held it back from the run log (it is counted
    and summed up in the next line that is written).
    """

    line: str
    logged: bool
    actions: list[Action]


@dataclass(frozen=True)
class HeartbeatPlan:
    """What :meth:`Fanout.heartbeats` did at ``now``, and when to call it next."""

    sent: int
    """How many heartbeats were queued."""
    actions: list[Action]
    next_at: float | None
    """The monotonic time of the next heartbeat due; None when no client is connected."""


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


_COUNTERS: Final = tuple(f.name for f in fields(ServerStats) if f.name != "clients")


# -- the core ------------------------------------------------------------------------------------------


class _Client:
    """The core's state of one client: its queue and counters."""

    __slots__ = (
        "dead",
        "heartbeat_count",
        "inbound",
        "next_heartbeat",
        "progress_at",
        "queue",
        "queued_bytes",
        "stats",
    )

    def __init__(self, stats: ClientStats, now: float, inbound: RateWindow) -> None:
        self.stats = stats
        self.queue: deque[bytes | Close] = deque()
        self.queued_bytes = 0
        self.dead = False
        self.heartbeat_count = 0
        self.next_heartbeat = now
        self.progress_at = now
        self.inbound = inbound


class Fanout:
    """The server's client policy, as a state machine with no I/O.

    Parameters:
        queue_size: most frames waiting for one client; one more overflows it (:class:`Overflow`).
        queue_bytes: most bytes waiting for one client; one more byte overflows it.
        heartbeat_interval: seconds between heartbeats on each connection (the first is due on joining).
        max_inbound_rate: most messages a client may send per second; more is a :class:`Flood`.
    """

    def __init__(
        self,
        *,
        queue_size: int = 100_000,
        queue_bytes: int = 256 * 1024 * 1024,
        heartbeat_interval: float = 15.0,
        max_inbound_rate: float = 50.0,
    ) -> None:
        if queue_size < 1 or queue_bytes < 1:
            raise ValueError("queue bounds must be positive")
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if max_inbound_rate <= 0:
            raise ValueError("max_inbound_rate must be positive")
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.heartbeat_interval = heartbeat_interval
        self.max_inbound_rate = max_inbound_rate
        self.closing = False
        self._log_cache: list[bytes] = []
        self._refusals_cached = 0
        self._refusals_unlogged = 0
        self._refusal_log = RateWindow(REFUSAL_LOG_LINES_PER_MINUTE, 60.0)
        self._clients: dict[int, _Client] = {}
        self._connected: set[int] = set()
        self._next_id = 1
        self._stats = ServerStats()

    # -- clients ---------------------------------------------------------------------------------

    def add_client(self, remote: str, now: float, unix: float) -> Joined:
        """Register a client: queue the startup-log cache and heartbeat 0 for it, at once.

        Nothing published can fall between the replay and the live frames: every run-log line reaches
        the client exactly once, from the cache or live.
        """
        cid = self._next_id
        self._next_id += 1
        client = _Client(ClientStats(cid, remote, unix), now, RateWindow(self.max_inbound_rate))
        self._clients[cid] = client
        self._connected.add(cid)
        self._stats.connections += 1
        actions: list[Action] = []
        for frame in self._log_cache:
            self._enqueue(cid, client, frame, actions)
        if self.closing:  # joined while the server stops: the replay, then the close
            if not client.dead:
                if not client.queue:
                    actions.append(Deliver(cid))
                client.queue.append(Close(CLOSE_SHUTDOWN, SHUTDOWN_REASON))
        else:
            self._beat(cid, client, now, unix, actions)
        return Joined(cid, len(self._log_cache), actions)

    def remove_client(self, cid: int) -> None:
        """The client's connection ended: it gets nothing more and no longer counts as connected.

        While shutting down, what its writer still holds stays readable with :meth:`pop` until it is
        done (the writer, not the reader, decides when a closing connection is finished).
        """
        if cid not in self._connected:
            return
        self._connected.discard(cid)
        self._stats.disconnections += 1
        client = self._clients[cid]
        client.dead = True
        if not self.closing:
            del self._clients[cid]

    def lost(self, cid: int) -> None:
        """Sending to the client failed (its connection is gone): drop what is queued for it."""
        client = self._clients.get(cid)
        if client is not None:
            client.dead = True
            client.queue.clear()
            client.queued_bytes = 0

    @property
    def client_count(self) -> int:
        """How many clients are connected now."""
        return len(self._connected)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, frame: bytes, *, log: bool = False) -> list[Action]:
        """Publish one encoded frame to every connected client (a run-log line when ``log``).

        Run-log lines are kept in the startup cache while it has room (:data:`LOG_CACHE_SIZE`). Each
        client whose queue was empty gets a :class:`Deliver`; one whose queue would go over a bound gets
        an :class:`Overflow` instead and nothing more from then on. After :meth:`shutdown` nothing is
        queued (the frame is counted and, if a log line, cached).
        """
        stats = self._stats
        if log:
            stats.logs_published += 1
            if len(self._log_cache) < LOG_CACHE_SIZE:
                self._log_cache.append(frame)
        else:
            stats.events_published += 1
        stats.bytes_published += len(frame)
        actions: list[Action] = []
        if not self.closing:
            for cid, client in self._clients.items():
                self._enqueue(cid, client, frame, actions)
        return actions

    def refuse(self, remote: str, refusal: Refusal, now: float, unix: float) -> Refused:
        """Count a refused handshake and tell the connected clients, within limits.

        At most :data:`REFUSAL_LOG_LINES_PER_MINUTE` lines a minute go to the run log (the rest are
        counted, and the next line says how many); connected clients get the reason, and the startup
        cache keeps the reason without what the client sent (:attr:`Refusal.summary`), at most
        :data:`REFUSALS_CACHED` such lines.
        """
        stats = self._stats
        if refusal.status == 403:
            stats.refused_origin += 1
        elif refusal.status == 401:
            stats.refused_token += 1
        else:
            stats.refused_capacity += 1
        head = f"refused a handshake from {remote} with HTTP {refusal.status}: "
        line = head + refusal.reason
        if self._refusal_log.hit(now):
            self._refusals_unlogged += 1  # a flood of bad handshakes must not flood every client's log
            return Refused(line, False, [])
        more = ""
        if self._refusals_unlogged:
            more = f" ({self._refusals_unlogged} more refusals not logged)"
            self._refusals_unlogged = 0
        live = encode_run_log(run_log_line(line + more, "WRN", unix))
        cached = encode_run_log(run_log_line(head + (refusal.summary or refusal.reason) + more, "WRN", unix))
        stats.logs_published += 1
        stats.bytes_published += len(live)
        if len(self._log_cache) < LOG_CACHE_SIZE and self._refusals_cached < REFUSALS_CACHED:
            self._log_cache.append(cached)
            self._refusals_cached += 1
        actions: list[Action] = []
        if not self.closing:
            for cid, client in self._clients.items():
                self._enqueue(cid, client, live, actions)
        return Refused(line, True, actions)

    def _enqueue(self, cid: int, client: _Client, frame: bytes, actions: list[Action]) -> None:
        if client.dead:
            return
        queue = client.queue
        if len(queue) >= self.queue_size or client.queued_bytes + len(frame) > self.queue_bytes:
            actions.append(self._overflow(cid, client))
            return
        if not queue:
            actions.append(Deliver(cid))
        queue.append(frame)
        client.queued_bytes += len(frame)

    def _overflow(self, cid: int, client: _Client) -> Overflow:
        client.dead = True
        dropped = len(client.queue)
        client.queue.clear()
        client.queued_bytes = 0
        self._stats.overflow_closes += 1
        return Overflow(cid, dropped, f"too slow: send queue overflowed ({dropped} messages waiting)")

    # -- the writer's side -----------------------------------------------------------------------

    def pop(self, cid: int) -> bytes | Close | None:
        """The next item to send to the client: a frame, the final :class:`Close`, or None (nothing)."""
        client = self._clients.get(cid)
        if client is None or not client.queue:
            return None
        item = client.queue.popleft()
        if isinstance(item, bytes):
            client.queued_bytes -= len(item)
        return item

    def sent(self, cid: int, now: float) -> None:
        """One frame taken with :meth:`pop` was written to the client at ``now`` (its progress)."""
        client = self._clients.get(cid)
        if client is not None:
            client.stats.sent += 1
            client.progress_at = now

    # -- what clients send -----------------------------------------------------------------------

    def received(self, cid: int, now: float) -> Flood | None:
        """The client sent a message (clients have nothing to say: it is discarded). Over the rate
        limit, it is a :class:`Flood` and gets nothing more."""
        self._stats.inbound_messages += 1
        client = self._clients.get(cid)
        if client is None or not client.inbound.hit(now):
            return None
        self._stats.flood_closes += 1
        client.dead = True
        return Flood(cid, f"too many messages (over {self.max_inbound_rate:g}/s)")

    def oversize(self) -> None:
        """A client's message was over the size limit (the connection closes itself with 1009)."""
        self._stats.oversize_closes += 1

    # -- heartbeats ------------------------------------------------------------------------------

    def heartbeats(self, now: float, unix: float) -> HeartbeatPlan:
        """Queue a heartbeat for each client whose heartbeat is due at ``now``; say when the next is due.

        Each client's heartbeats are numbered from 0 and carry ``unix`` as their timestamp; the next one
        of a client is due :attr:`heartbeat_interval` after the one just queued. Nothing is due after
        :meth:`shutdown`.
        """
        actions: list[Action] = []
        sent = 0
        next_at: float | None = None
        if self.closing:
            return HeartbeatPlan(0, actions, None)
        for cid, client in self._clients.items():
            if client.dead:
                continue
            if client.next_heartbeat <= now:
                self._beat(cid, client, now, unix, actions)
                sent += 1
            if next_at is None or client.next_heartbeat < next_at:
                next_at = client.next_heartbeat
        return HeartbeatPlan(sent, actions, next_at)

    def _beat(self, cid: int, client: _Client, now: float, unix: float, actions: list[Action]) -> None:
        count = client.heartbeat_count
        self._enqueue(cid, client, encode_heartbeat(int(unix), count, f"heartbeat:{count}"), actions)
        client.heartbeat_count = count + 1
        client.stats.heartbeats = count + 1
        client.next_heartbeat = now + self.heartbeat_interval

    # -- backpressure for sources that can wait --------------------------------------------------

    def needs_room(self, now: float, stall: float) -> bool:
        """Whether a client that is still reading has its queue more than half full.

        A client that has written nothing for ``stall`` seconds is stalled: it is not waited for (it
        overflows and is closed as usual), so it cannot hold back the others.
        """
        half = self.queue_size // 2
        return any(
            not client.dead and len(client.queue) > half and now - client.progress_at < stall
            for client in self._clients.values()
        )

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self, now: float, unix: float) -> list[Action]:
        """Start shutting down: a run-log line with the totals, then :class:`Close` queued last for
        every live client. From now on nothing new is queued; a client's grace is counted from ``now``.
        """
        st = self._stats
        line = run_log_line(
            f"Shutting down: {st.events_published} events published, {st.connections} connections, "
            f"{st.overflow_closes} closed as too slow",
            "INF",
            unix,
        )
        actions = self.publish(encode_run_log(line), log=True)
        self.closing = True
        for cid, client in self._clients.items():
            client.progress_at = now
            if not client.dead:
                client.queue.append(Close(CLOSE_SHUTDOWN, SHUTDOWN_REASON))
                actions.append(Deliver(cid))
        return actions

    def stalled(self, clients: Iterable[int], now: float, grace: float) -> list[int]:
        """Those of ``clients`` (whose writers are still running) that wrote nothing for ``grace``."""
        return [
            cid
            for cid in clients
            if (client := self._clients.get(cid)) is not None and now - client.progress_at >= grace
        ]

    def give_up(self, cid: int) -> StalledClient:
        """Stop sending to a stalled client: drop its queue, and report the frames it missed."""
        client = self._clients.get(cid)
        if client is None:
            return StalledClient("", 0)
        undelivered = sum(1 for item in client.queue if not isinstance(item, Close))
        client.dead = True
        client.queue.clear()
        client.queued_bytes = 0
        return StalledClient(client.stats.remote, undelivered)

    # -- introspection ---------------------------------------------------------------------------

    def stats(self, clients: bool = True) -> ServerStats:
        """A snapshot of the counters, with one :class:`ClientStats` per connected client (none when
        ``clients`` is False: the server's counters alone, cheap enough to read on every change)."""
        snap = ServerStats(**{name: getattr(self._stats, name) for name in _COUNTERS})
        if not clients:
            return snap
        for cid in sorted(self._connected):
            client = self._clients[cid]
            client.stats.queued = len(client.queue)
            client.stats.queued_bytes = client.queued_bytes
            snap.clients.append(ClientStats(**vars(client.stats)))
        return snap

    def queued(self, cid: int) -> int:
        """How many items wait in the client's queue (0 for an unknown client)."""
        client = self._clients.get(cid)
        return 0 if client is None else len(client.queue)

    @property
    def startup_log(self) -> list[bytes]:
        """The cached frames of the first run-log lines (at most :data:`LOG_CACHE_SIZE`)."""
        return list(self._log_cache)

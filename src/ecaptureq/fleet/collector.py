"""The collector: a fleet reader whose sink is the capture database.

Each batch of delivered messages is added to the :class:`~ecaptureq.store.CaptureStore` with its node and
its stream sequence as the message key, committed, and only then acknowledged. A collector killed between
the commit and the acknowledgements gets those messages again when it restarts; the ``delivered`` keys
committed with them tell it that they are stored already, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from ecaptureq.fleet.reader import MAX_ACK_PENDING, FleetMessage, FleetReader
from ecaptureq.protocol import DecodeError, Event, Heartbeat
from ecaptureq.store.sql import PacketFilter
from ecaptureq.store.writer import QUIET_COMMIT, CaptureStore

COMMITS_IN_FLIGHT = 2
"""Commits the writer thread may have waiting while the collector reads on (each up to a third of the
messages the server lets wait for their acknowledgement)."""

DELIVERED_MARGIN = 1_000_000
"""Keys of acknowledged messages kept below the consumer's ack floor (about 16 MB): a server that lost
some of its consumer state in a crash may deliver again what was acknowledged just before."""


@dataclass
class NodeStatus:
    """What the collector knows of one node."""

    events: int = 0
    logs: int = 0
    last_seen: float = 0.0  # time.time() of its last message, heartbeats included
    source: str | None = None


@dataclass
class CollectorStats:
    """What a collector has stored."""

    stored: int = 0
    duplicates: int = 0  # redeliveries already in the database
    commits: int = 0
    nodes: dict[str, NodeStatus] = field(default_factory=dict)


class Collector:
    """Consume ``reader`` into ``store`` until cancelled; commit at least every ``flush_interval`` s, and
    whenever the stream goes quiet for :data:`~ecaptureq.store.writer.QUIET_COMMIT` s.

    With a durable reader each message's stream sequence is kept (``delivered``) in the transaction that
    stores it, and acknowledged after the commit. ``event_filter`` keeps only the events it matches
    (``record --filter``); ``on_commit`` runs after each commit.
    """

    def __init__(
        self,
        reader: FleetReader,
        store: CaptureStore,
        *,
        flush_interval: float = 0.5,
        event_filter: PacketFilter | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.event_filter = event_filter
        self._received_events = 0
        self.store = store
        self.flush_interval = flush_interval
        self.stats = CollectorStats()
        self._on_commit = on_commit
        self._exactly_once = reader.durable is not None
        self._high = store.delivered_high() if self._exactly_once else 0
        self._started = time.monotonic()
        self._acks: collections.deque[tuple[asyncio.Task[None], Future[None] | None]] = collections.deque()

    @property
    def url(self) -> str:
        """The NATS servers, as shown to a person."""
        return self.reader.options.display

    def _keep(self, fm: FleetMessage) -> None:
        status = self.stats.nodes.get(fm.node)
        if status is None:
            status = self.stats.nodes[fm.node] = NodeStatus()
        status.last_seen = time.time()
        status.source = fm.source or status.source
        message = fm.message
        if isinstance(message, DecodeError | Heartbeat):
            return
        if isinstance(message, Event) and self.event_filter is not None:
            self._received_events += 1
            if not self.event_filter.matches(message, self._received_events):
                return
        key = fm.stream_seq if self._exactly_once else None
        if key is not None:
            # New messages come in stream order, above every key kept: only one at or below the highest
            # can be a redelivery (after a restart of the collector, or of the server, which may deliver
            # again what it had delivered without counting it as a redelivery).
            if key <= self._high and self.store.delivered(key):
                self.stats.duplicates += 1
                return
            self._high = max(self._high, key)
        self.store.buffer(message, node=fm.node, key=key)  # committed by run(), in the writer thread
        self.stats.stored += 1
        if isinstance(message, Event):
            status.events += 1
        else:
            status.logs += 1

    async def _acknowledge(self, commit: Future[None] | None, to_ack: list[Msg]) -> None:
        """Once ``commit`` (and so every commit asked for before it) is done, acknowledge ``to_ack``."""
        if commit is not None:
            await asyncio.wrap_future(commit)  # StoreError: nothing of it is acknowledged
            self.stats.commits += 1
        for msg in to_ack:
            with contextlib.suppress(Exception):  # an ack lost is a redelivery, recognised later
                await msg.ack()
        if self._on_commit is not None:
            self._on_commit()

    def _commit(self, to_ack: list[Msg]) -> asyncio.Task[None]:
        """Commit what is buffered in the store's writer thread, then acknowledge ``to_ack``.

        Messages not stored (duplicates, other nodes) may be acknowledged only once whatever they were
        recognised against is committed: after the last commit asked for, which the writer thread
        finishes after every earlier one."""
        commit = self.store.flush_in_background()
        if commit is None and self._acks:
            commit = self._acks[-1][1]
        task = asyncio.ensure_future(self._acknowledge(commit, to_ack))
        self._acks.append((task, commit))
        return task

    async def _settle(self, keep: int) -> None:
        """Wait until at most ``keep`` commits are in flight (raising a failed one's StoreError)."""
        acks = self._acks
        while acks and (len(acks) > keep or acks[0][0].done()):
            task, _ = acks.popleft()
            await task

    async def run(self) -> None:
        """Fetch, store, commit, acknowledge, until cancelled.

        The commits run in the store's writer thread while the next messages are read; each batch is
        acknowledged (explicitly, message by message) once its commit is done. One acknowledgement of
        the batch's last message (``AckPolicy.ALL``) would be cheaper but not safe: a restarted
        collector, or one whose connection dropped messages on the way, is sent new messages before the
        server sends again what it had sent before, and acknowledging a new one would acknowledge those
        too, never stored.

        Raises:
            StoreError: the database cannot be written (nothing uncommitted was acknowledged).
            FleetError: the reader could not open its consumer.
        """
        to_ack: list[Msg] = []
        last_commit = time.monotonic()
        last_prune = time.monotonic()
        try:
            async for batch in self.reader.batches(idle=min(QUIET_COMMIT, self.flush_interval)):
                for fm, msg in batch:
                    if fm is not None:
                        self._keep(fm)
                    to_ack.append(msg)
                await self._settle(keep=COMMITS_IN_FLIGHT)
                now = time.monotonic()
                # commit on time, when the stream goes quiet, and before the server's bound on messages in
                # flight (they are acknowledged only after the commit) holds delivery back
                full = len(to_ack) >= MAX_ACK_PENDING // (COMMITS_IN_FLIGHT + 1)
                if to_ack and (full or now - last_commit >= self.flush_interval or not batch):
                    self._commit(to_ack)
                    to_ack = []
                    last_commit = now
                if self._exactly_once and now - last_prune >= 30:
                    last_prune = now
                    floor = await self.reader.ack_floor()
                    if floor and floor > DELIVERED_MARGIN:
                        self.store.forget_delivered(floor - DELIVERED_MARGIN)
        finally:
            if to_ack:
                self._commit(to_ack)
            tasks = [task for task, _ in self._acks]
            self._acks.clear()
            # every one awaited (a failed commit's error is the one run() raised, or comes again on close)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON (the web UI's ``/api/status``)."""
        s, st = self.stats, self.store.stats
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {
            "connected": self.reader.conn is not None and self.reader.conn.nc.is_connected,
            "status": f"reading {self.reader.filter} on {self.url}",
            "events": st.packets,
            "events_per_s": round(st.packets / elapsed, 1),
            "exchanges": st.exchanges,
            "bytes": st.payload_bytes,
            "run_logs": st.logs,
            "heartbeats": 0,
            "frames": self.reader.stats.received,
            "malformed": self.reader.stats.malformed,
            "reconnects": 0,
            "disconnections": 0,
            "duplicates": s.duplicates,
            "nodes": {
                name: {"events": n.events, "logs": n.logs, "last_seen": n.last_seen, "source": n.source}
                for name, n in sorted(s.nodes.items())
            },
        }

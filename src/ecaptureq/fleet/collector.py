"""The collector: a fleet reader whose sink is the capture database.

The collector's process only reads the stream: each batch of delivered messages goes, undecoded, to a
:class:`~ecaptureq.pipeline.store_process.StoreProcess` (a process of its own, as ``record``'s), with its
node and its stream sequence as the message key. That process decodes, stores and commits them, and says
after each commit how many of the messages sent it covers; only then are they acknowledged. A collector
killed between the commit and the acknowledgements gets those messages again when it restarts; the
``delivered`` keys committed with them tell it that they are stored already, so nothing is lost and nothing
is stored twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from ecaptureq.fleet.reader import MAX_ACK_PENDING, FleetReader
from ecaptureq.pipeline.store_process import IN_FLIGHT, StoreProcess
from ecaptureq.pipeline.tasks import until_first_ends

DELIVERED_MARGIN = 1_000_000
"""Keys of acknowledged messages kept below the consumer's ack floor (about 16 MB): a server that lost
some of its consumer state in a crash may deliver again what was acknowledged just before."""

PRUNE_INTERVAL = 30.0
"""Seconds between two prunings of the ``delivered`` keys below the ack floor (less the margin)."""


@dataclass
class NodeStatus:
    """What the collector knows of one node."""

    events: int = 0
    logs: int = 0
    last_seen: float = 0.0  # time.time() of its last message, heartbeats included
    source: str | None = None


@dataclass
class CollectorStats:
    """What a collector has stored (as of the last commit)."""

    stored: int = 0
    duplicates: int = 0  # redeliveries already in the database
    commits: int = 0
    nodes: dict[str, NodeStatus] = field(default_factory=dict)


class Collector:
    """Consume ``reader`` into the capture database ``db`` until cancelled.

    The store's process commits at least every ``flush_interval`` s, whenever the stream goes quiet for
    :data:`~ecaptureq.store.writer.QUIET_COMMIT` s, and before the server's bound on messages waiting for
    their acknowledgement holds delivery back. With a durable reader each message's stream sequence is kept
    (``delivered``) in the transaction that stores it, and acknowledged after the commit. ``decode``: also
    decode HTTP exchanges; ``event_filter`` keeps only the events it matches (``record --filter``);
    ``on_commit`` runs after each commit.

    Call :meth:`start` (it opens the database), :meth:`run`, then :meth:`close`.
    """

    def __init__(
        self,
        reader: FleetReader,
        db: Path,
        *,
        decode: bool = True,
        flush_interval: float = 0.5,
        event_filter: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.stats = CollectorStats()
        self.store = StoreProcess(
            db,
            decode=decode,
            event_filter=event_filter,
            flush_interval=flush_interval,
            # each commit up to a third of what the server lets wait for an acknowledgement
            commit_every=MAX_ACK_PENDING // (IN_FLIGHT + 1),
            on_commit=self._committed,
        )
        self._on_commit = on_commit
        self._exactly_once = reader.durable is not None
        self._started = time.monotonic()
        self._sent = 0  # messages sent to the store's process
        # messages to acknowledge once the store's process has handled so many: in the order received
        self._waiting: collections.deque[tuple[int, list[Msg]]] = collections.deque()
        self._acking: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The NATS servers, as shown to a person."""
        return self.reader.options.display

    async def start(self) -> None:
        """Start the store's process, which opens the database.

        Raises:
            StoreError: it could not (not a capture database, unwritable...).
        """
        await self.store.start()

    def _committed(self) -> None:
        self.stats.commits += 1
        self._count()
        self._acknowledge()
        if self._on_commit is not None:
            self._on_commit()

    def _count(self) -> None:
        store, stats = self.store, self.stats
        stats.duplicates = store.duplicates
        stats.stored = 0
        for node, (events, logs) in store.nodes.items():
            status = stats.nodes.get(node)
            if status is None:
                status = stats.nodes[node] = NodeStatus()
            status.events, status.logs = events, logs
            stats.stored += events + logs

    def _acknowledge(self) -> None:
        """Acknowledge the messages the store's process has handled (committed, or skipped once everything
        before them was committed)."""
        handled, waiting = self.store.handled, self._waiting
        msgs: list[Msg] = []
        while waiting and waiting[0][0] <= handled:
            msgs += waiting.popleft()[1]
        if msgs:
            task = asyncio.ensure_future(self._ack(msgs))
            self._acking.add(task)
            task.add_done_callback(self._acking.discard)

    @staticmethod
    async def _ack(msgs: list[Msg]) -> None:
        for msg in msgs:
            with contextlib.suppress(Exception):  # an ack lost is a redelivery, recognised later
                await msg.ack()

    async def _consume(self) -> None:
        store, waiting, nodes = self.store, self._waiting, self.stats.nodes
        keyed = self._exactly_once
        async for batch in self.reader.deliveries(idle=store.flush_interval):
            if not batch:
                continue
            now = time.time()
            items: list[tuple[str, int | None, bool, bytes]] = []
            for d, _ in batch:
                if d is None:  # another node's, or not the fleet's: acknowledged with the others
                    continue
                status = nodes.get(d.node)
                if status is None:
                    status = nodes[d.node] = NodeStatus()
                status.last_seen = now
                if d.source is not None:
                    status.source = d.source
                items.append((d.node, d.stream_seq if keyed else None, d.redelivered, d.body))
            if items:
                store.send_messages(items)
                self._sent += len(items)
            waiting.append((self._sent, [msg for _, msg in batch]))
            if self._sent <= store.handled:  # none sent: nothing to wait for
                self._acknowledge()
            await store.drain()

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            floor = await self.reader.ack_floor()
            if floor and floor > DELIVERED_MARGIN:
                self.store.forget(floor - DELIVERED_MARGIN)

    async def run(self) -> None:
        """Read, store, acknowledge, until cancelled.

        Each message is acknowledged explicitly once the commit that covers it is done. One acknowledgement
        of a batch's last message (``AckPolicy.ALL``) would be cheaper but not safe: a restarted collector,
        or one whose connection dropped messages on the way, is sent new messages before the server sends
        again what it had sent before, and acknowledging a new one would acknowledge those too, never
        stored.

        Raises:
            StoreError: the database cannot be written (nothing uncommitted was acknowledged).
            FleetError: the reader could not open its consumer.
        """
        parts = [self._consume(), self.store.failed()]
        if self._exactly_once:
            parts.append(self._prune())
        await until_first_ends(*parts)

    async def close(self) -> None:
        """Have everything sent committed, acknowledge it, and close the reader.

        Raises:
            StoreError: the last commit failed, or the store's process ended before (what it committed is
                kept, and acknowledged).
        """
        try:
            await self.store.close()
        finally:
            self._count()
            self._acknowledge()
            if self._acking:
                await asyncio.gather(*self._acking, return_exceptions=True)
            await self.reader.close()

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON (the web UI's ``/api/status``)."""
        st = self.store.stats
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
            "frames": self.store.frames,
            "malformed": self.store.malformed,
            "reconnects": 0,
            "disconnections": 0,
            "duplicates": self.store.duplicates,
            "nodes": {
                name: {"events": n.events, "logs": n.logs, "last_seen": n.last_seen, "source": n.source}
                for name, n in sorted(self.stats.nodes.items())
            },
        }

"""The node agent: a :class:`~ecaptureq.sources.base.Sink` that publishes into JetStream through a spool.

A source (the eBPF TLS capture, the demo, a replay, or a relayed WebSocket stream) publishes into an
:class:`Agent` as it would into the server. Each message is encoded once (the ``LogEntry`` bytes the
WebSocket protocol carries), put into the :class:`~ecaptureq.fleet.spool.Spool`, and published from there
to ``ecaptureq.<node>.<kind>`` with the headers of :mod:`ecaptureq.fleet.subjects`; it leaves the spool only
once JetStream acknowledged it. While NATS keeps up, messages go from the spool's memory and the disk sees
one small write per batch (no captured byte); what is not acknowledged within ``commit_interval`` is written
to the spool's file, as is what waits meanwhile. While NATS is down or slow the file fills (bounded,
overflow counted and reported, also into the stream once it is back) and drains, first in first out, when
the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors

from ecaptureq.fleet.connection import Connection, FleetError, NatsAuthError, NatsOptions, connect
from ecaptureq.fleet.spool import Spool, Spooled
from ecaptureq.fleet.stream import Retention, ensure_stream
from ecaptureq.fleet.subjects import HEADER_NODE, HEADER_SOURCE, check_node, message_headers, subject
from ecaptureq.protocol import Event, encode_event, encode_heartbeat, encode_run_log, run_log_line

DEFAULT_HEARTBEAT_INTERVAL = 15.0
"""Seconds between two of the agent's heartbeats (``ecaptureq.<node>.heartbeat``)."""


@dataclass(frozen=True)
class SpoolOverflow:
    """Notice: the spool (``max_bytes``) is full; ``overflowed`` messages (``overflowed_bytes``) were dropped
    so far because NATS was unreachable or too slow."""

    max_bytes: int
    overflowed: int
    overflowed_bytes: int

    def __str__(self) -> str:
        return (
            f"spool full ({self.max_bytes} bytes): {self.overflowed} messages ({self.overflowed_bytes} "
            "bytes) dropped so far"
        )


@dataclass
class AgentStats:
    """What an agent has done."""

    published: int = 0  # acknowledged by JetStream (duplicates included)
    duplicates: int = 0  # re-publishes JetStream recognised by Nats-Msg-Id
    failed_batches: int = 0
    connected: bool = False
    disconnections: int = 0
    heartbeats: int = 0


class Agent:
    """Publish what a source captures to JetStream, through a durable bounded spool.

    Parameters:
        options: how to reach NATS.
        node: this node's name (a subject token).
        source: what the agent reads, for the ``Ecaptureq-Source`` header (``tls``, ``demo`` ...).
        spool: the spool (owned by the caller, who closes it).
        retention: used when the agent creates the stream (it tries when it is missing, and goes on
            without when its credentials may not).
        heartbeat_interval: seconds between heartbeats.
        batch_size: messages in flight at once (published together, then their acks awaited).
        ack_timeout: seconds to wait for a batch's acks before publishing it again.
        commit_interval: seconds a message waits in the spool's memory, at most, before it is published,
            or written to the spool's file (as it is while a batch's acks take longer than this).
        on_notice: called with a sentence for a person (connection lost ...), or a
            :class:`SpoolOverflow` (the caller says what to do about it).
    """

    def __init__(
        self,
        options: NatsOptions,
        node: str,
        source: str,
        spool: Spool,
        *,
        retention: Retention | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        batch_size: int = 1000,
        ack_timeout: float = 5.0,
        commit_interval: float = 0.02,
        on_notice: Callable[[str | SpoolOverflow], None] | None = None,
    ) -> None:
        self.options = options
        self.node = check_node(node)
        self.source = source
        self.spool = spool
        self.retention = retention or Retention()
        self.heartbeat_interval = heartbeat_interval
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.commit_interval = commit_interval
        self.stats = AgentStats()
        self._notice = on_notice or (lambda text: None)
        self._conn: Connection | None = None
        self._reported_overflow = 0
        self._closing = False
        self._told_no_stream = False
        self._last_overflow_notice = 0.0
        self._subjects = {kind: subject(node, kind) for kind in ("event", "log", "heartbeat")}

    # -- the Sink side (thread-safe) ----------------------------------------------------------------

    def publish_log(self, line: str) -> None:
        """Spool one run-log line."""
        self.spool.put("log", encode_run_log(line))

    def publish_event(self, event: Event) -> None:
        """Spool one captured event (its ``LogEntry`` bytes, unknown fields kept)."""
        self.spool.put("event", encode_event(event))

    # -- the publishing side -------------------------------------------------------------------------

    def _headers(self, message: Spooled) -> dict[str, str]:
        return message_headers(self.node, self.source, self.spool.agent_id, message.seq)

    def _on_disconnected(self) -> None:
        if self.stats.connected and not self._closing:
            self.stats.disconnections += 1
            self._notice(
                f"lost NATS at {self.options.display}; spooling to {self.spool.path} until it is back"
            )
        self.stats.connected = False

    def _on_reconnected(self) -> None:
        self.stats.connected = True
        self._notice(f"NATS is back; sending the {self.spool.stats.queued} spooled messages")

    async def connect(self) -> None:
        """Connect once (the first attempt), creating the stream if missing and allowed.

        Raises:
            NatsAuthError: the credentials were refused (retrying would not help).
            NatsUnavailable: the server cannot be reached now (:meth:`run` keeps trying).
        """
        self._conn = await connect(
            self.options, on_disconnected=self._on_disconnected, on_reconnected=self._on_reconnected
        )
        self.stats.connected = True
        # Locked-down agents may not create it; whoever reads the fleet (collect) does.
        with contextlib.suppress(FleetError):
            await ensure_stream(self._conn, self.retention)

    async def _connect_forever(self) -> None:
        delay = 0.5
        while self._conn is None:
            try:
                await self.connect()
            except NatsAuthError:
                raise
            except FleetError as exc:
                self._notice(f"{exc}; spooling, retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _publish_batch(
        self, conn: Connection, batch: list[Spooled], on_wait: Callable[[], object]
    ) -> int:
        """Publish ``batch``; return how many of its first messages JetStream acknowledged. While the
        acknowledgements are awaited, ``on_wait`` is called every ``commit_interval``."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for message in batch:
                futures.append(
                    await conn.js.publish_async(
                        self._subjects[message.kind], message.body, headers=self._headers(message)
                    )
                )
        except (nats.errors.Error, nats.js.errors.Error, OSError):
            pass  # not connected (any more): publish what was sent, the rest goes again later
        pending: set[asyncio.Future[Any]] = set(futures)
        deadline = time.monotonic() + self.ack_timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            _, pending = await asyncio.wait(pending, timeout=min(self.commit_interval, left))
            if pending:
                on_wait()
        for future in pending:
            future.cancel()
        acked = 0
        failure: BaseException | None = None
        for future in futures:
            error = None if future.cancelled() else future.exception()  # every one retrieved
            if failure is None and error is None and not future.cancelled():
                acked += 1
                if getattr(future.result(), "duplicate", False):
                    self.stats.duplicates += 1
            elif failure is None:
                failure = error or TimeoutError()
        if isinstance(failure, nats.js.errors.NoStreamResponseError) and not self._told_no_stream:
            self._told_no_stream = True
            self._notice(
                f"no JetStream stream takes {self._subjects['event']} yet; spooling until one does "
                "(ecaptureq collect creates it)"
            )
        return acked

    def _report_overflow(self) -> None:
        st = self.spool.stats
        if st.overflowed <= self._reported_overflow:
            return
        now = time.monotonic()
        if now - self._last_overflow_notice >= 5:
            self._last_overflow_notice = now
            self._notice(SpoolOverflow(self.spool.max_bytes, st.overflowed, st.overflowed_bytes))
        if st.queued_bytes < self.spool.max_bytes // 2:
            # Room again: say it in the stream too, so that readers of the fleet know of the gap.
            self._reported_overflow = st.overflowed
            self.publish_log(
                run_log_line(
                    f"ecaptureq agent: spool overflowed: {st.overflowed} messages ({st.overflowed_bytes} "
                    f"bytes) captured on {self.node} were dropped while NATS was unreachable or slow",
                    "WRN",
                )
            )

    async def _publish_taken(self, conn: Connection, batch: list[Spooled]) -> int:
        """Publish messages taken from the spool's memory. While their acknowledgements are awaited longer
        than ``commit_interval``, they and what the source captures meanwhile go to the spool's file (as
        they do when stopped meanwhile); those JetStream did not acknowledge are written there too."""
        kept = False

        def keep() -> None:
            nonlocal kept
            if not kept:
                self.spool.keep(batch)
                kept = True
            self.spool.commit()

        try:
            acked = await self._publish_batch(conn, batch, keep)
        except asyncio.CancelledError:
            if not kept:
                self.spool.keep(batch)  # some may have arrived: published again, deduplicated
            raise
        if kept:
            self.spool.remove(batch[:acked])
        else:
            self.spool.keep(batch[acked:])
            self.spool.remove(batch[:acked], stored=False)
        return acked

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            self._report_overflow()
            conn = self._conn
            if conn is None or not conn.nc.is_connected:
                self.spool.commit()
                await asyncio.sleep(0.1)
                continue
            if self.spool.stored:
                self.spool.commit()  # behind what the file holds: first in, first out
                batch = self.spool.read(self.batch_size)
                acked = await self._publish_batch(conn, batch, self.spool.commit)
                self.spool.remove(batch[:acked])
            else:
                batch = self.spool.take(self.batch_size)
                if not batch:
                    await asyncio.sleep(self.commit_interval)
                    continue
                acked = await self._publish_taken(conn, batch)
            self.stats.published += acked
            if acked:
                backoff = 0.1
            if acked < len(batch):
                self.stats.failed_batches += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _heartbeat_loop(self) -> None:
        count = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            conn = self._conn
            if conn is None or not conn.nc.is_connected:
                continue
            st = self.spool.stats
            body = encode_heartbeat(
                int(time.time()), count, f"heartbeat:{count} spooled={st.queued} dropped={st.overflowed}"
            )
            with contextlib.suppress(nats.errors.Error):
                await conn.nc.publish(
                    self._subjects["heartbeat"],
                    body,
                    headers={HEADER_NODE: self.node, HEADER_SOURCE: self.source},
                )
                self.stats.heartbeats += 1
                count += 1

    async def run(self) -> None:
        """Connect (retrying while NATS is unreachable) and publish until cancelled.

        Raises:
            NatsAuthError: the server refused the credentials.
            SpoolError: the spool cannot be written, or what it holds cannot be read (a damaged chunk).
        """
        publisher = asyncio.create_task(self._publish_loop())
        heartbeats = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._connect_forever()
            await asyncio.gather(publisher, heartbeats)
        finally:
            publisher.cancel()
            heartbeats.cancel()
            await asyncio.gather(publisher, heartbeats, return_exceptions=True)

    async def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until everything spooled so far was acknowledged (an overflow's run-log line included);
        ``False`` when ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.spool.stats.queued > 0 or self.spool.stats.overflowed > self._reported_overflow:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        """Close the NATS connection (call after :meth:`run` was cancelled)."""
        self._closing = True
        if self._conn is not None:
            await self._conn.close()

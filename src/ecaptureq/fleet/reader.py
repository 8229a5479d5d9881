"""Reading the fleet's stream: a push consumer on ``ECAPTUREQ``, durable (collect) or not (watch, ui).

A push consumer with explicit acknowledgements and a bounded number in flight (``max_ack_pending``): nats-py
hands its messages to a callback at a fraction of the cost of ``fetch`` (which waits on each message),
and the server holds back once that many wait for their acknowledgement.

:class:`FleetReader` yields batches of :class:`FleetMessage` (the decoded ``LogEntry``, its node, its stream
sequence) with the nats-py message to acknowledge once the caller has kept it; or of :class:`Delivery`, the
same with the body not decoded (the collector has it decoded in its store's process).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NamedTuple

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from ecaptureq.fleet.connection import Connection, ConsumerRefused, FleetError, NatsOptions, connect
from ecaptureq.fleet.stream import Retention, ensure_stream
from ecaptureq.fleet.subjects import (
    HEADER_SOURCE,
    STREAM,
    filter_subject,
    node_matches,
    parse_subject,
)
from ecaptureq.protocol import DecodeError, Message, decode

_ACK_V1_TOKENS = 9
"""``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``: the reply
subject of a message a JetStream consumer delivers, from a server without domains (ADR-15)."""

_SUBJECTS_CACHED = 4096
"""Subjects whose parse a reader remembers (a fleet has a few per node); forgotten all at once beyond."""

MAX_ACK_PENDING = 4000
"""Messages delivered and not yet acknowledged, at most (at 16 KiB each, 64 MiB in flight)."""

DEFAULT_ACK_WAIT = 30.0
"""Seconds a durable consumer waits for an acknowledgement before delivering a message again."""


@dataclass(frozen=True, slots=True)
class FleetMessage:
    """One message of the stream, decoded.

    Attributes:
        node: the node that published it (from the subject).
        message: the ``LogEntry``, or a :class:`~ecaptureq.protocol.DecodeError` for a malformed body.
        stream_seq: its sequence number in the stream (unique, the collector's de-duplication key).
        redelivered: whether the server delivered it before (to this consumer).
        source: the agent's ``Ecaptureq-Source`` header.
        stored_ns: when the stream stored it (Unix nanoseconds).
    """

    node: str
    message: Message | DecodeError
    stream_seq: int
    redelivered: bool
    source: str | None
    stored_ns: int

    @property
    def stored_at(self) -> datetime.datetime:
        """When the stream stored it, as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.stored_ns / 1e9, datetime.UTC)


class Delivery(NamedTuple):
    """One message of the stream as delivered, its body not decoded (see :class:`FleetMessage`)."""

    node: str
    body: bytes
    stream_seq: int
    redelivered: bool
    source: str | None
    stored_ns: int


_FOREIGN = "<foreign>"  # not a node name: check_node refuses "<"
_OTHER_NODE = "<other node>"


@dataclass
class ReaderStats:
    """What a reader has received."""

    received: int = 0
    malformed: int = 0
    foreign: int = 0  # subjects of the stream that are not ecaptureq.<node>.<kind>
    skipped_nodes: int = 0  # not matching --node


class FleetReader:
    """A consumer on the fleet's stream.

    Parameters:
        options: how to reach NATS.
        node_glob: only these nodes (a shell glob; ``None``: all).
        durable: the durable consumer's name (it remembers what was acknowledged across restarts);
            ``None`` for a temporary consumer that the server deletes when the reader goes away.
        since: start at this time (within the stream's retention); else a durable starts at the
            oldest message kept, a temporary consumer at new messages only.
        ack_wait: seconds before an unacknowledged message is delivered again.
        batch_size: the most messages in one batch.
        create_stream: create the stream when missing (with ``retention``).
    """

    def __init__(
        self,
        options: NatsOptions,
        *,
        node_glob: str | None = None,
        durable: str | None = None,
        since: datetime.datetime | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
        batch_size: int = 500,
        create_stream: bool = True,
        retention: Retention | None = None,
    ) -> None:
        self.options = options
        self.node_glob = node_glob
        self.durable = durable
        self.since = since
        self.ack_wait = ack_wait
        self.batch_size = batch_size
        self.create_stream = create_stream
        self.retention = retention or Retention()
        self.filter = filter_subject(node_glob)
        self.stats = ReaderStats()
        self.conn: Connection | None = None
        self._sub: nats.js.JetStreamContext.PushSubscription | None = None
        # What nats-py delivered and deliveries() has not taken yet; the event is set while it holds any.
        self._delivered: collections.deque[Msg] = collections.deque()
        self._ready = asyncio.Event()
        self._nodes: dict[str, str] = {}  # subject -> node, _FOREIGN or _OTHER_NODE

    def _config(self) -> api.ConsumerConfig:
        if self.since is not None:
            policy, start = api.DeliverPolicy.BY_START_TIME, self.since
        elif self.durable is not None:
            policy, start = api.DeliverPolicy.ALL, None
        else:
            policy, start = api.DeliverPolicy.NEW, None
        return api.ConsumerConfig(
            deliver_policy=policy,
            opt_start_time=start.isoformat().replace("+00:00", "Z") if start is not None else None,  # type: ignore[arg-type]
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=MAX_ACK_PENDING,
        )

    async def open(self) -> None:
        """Connect, make sure the stream exists, and create (or bind to) the consumer.

        Raises:
            NatsUnavailable, NatsAuthError: cannot connect, or the credentials were refused.
            NatsPermissionError: the credentials may not read the stream (an agent's, for instance).
            ConsumerRefused: the consumer cannot be made (a durable created with another filter ...).
            FleetError: other refusals (no JetStream ...).
        """
        self.conn = conn = await connect(self.options)
        if self.create_stream:
            await ensure_stream(conn, self.retention)

        async def deliver(msg: Msg) -> None:
            self._delivered.append(msg)
            self._ready.set()

        try:
            for attempt in range(50):
                try:
                    self._sub = await conn.js.subscribe(
                        self.filter,
                        durable=self.durable,
                        stream=STREAM,
                        config=self._config(),
                        cb=deliver,
                        manual_ack=True,
                        pending_bytes_limit=MAX_ACK_PENDING * 128 * 1024,
                    )
                    break
                except nats.js.errors.Error as exc:
                    # A collector killed a moment ago may still hold the durable until the server notices.
                    if "already bound" not in str(exc) or attempt == 49:
                        raise
                    await asyncio.sleep(0.2)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            raise conn.refused(f"a consumer on stream {STREAM}") from None
        except nats.js.errors.NotFoundError:
            raise FleetError(
                f"no stream {STREAM} on the server: start ecaptureq collect (it creates it)"
            ) from None
        except (nats.js.errors.APIError, nats.js.errors.Error) as exc:
            raise ConsumerRefused(STREAM, self.durable, str(exc.description or exc)) from None

    def _node(self, subject: str) -> str | None:
        """The node of a subject to keep; ``None`` (counted) for a foreign subject or another node.

        Every message of a node has one of its three subjects: their parse is remembered."""
        node = self._nodes.get(subject, "")
        if node == "":
            parsed = parse_subject(subject)
            if parsed is None:
                node = _FOREIGN
            elif not node_matches(parsed.node, self.node_glob):
                node = _OTHER_NODE
            else:
                node = parsed.node
            if len(self._nodes) >= _SUBJECTS_CACHED:
                self._nodes.clear()
            self._nodes[subject] = node
        if node is _FOREIGN:
            self.stats.foreign += 1
            return None
        if node is _OTHER_NODE:
            self.stats.skipped_nodes += 1
            return None
        return node

    def _delivery(self, msg: Msg) -> Delivery | None:
        node = self._node(msg.subject)
        if node is None:
            return None
        tokens = msg.reply.split(".")
        if len(tokens) == _ACK_V1_TOKENS:  # read here: Msg.metadata costs as much as the rest of this
            stream_seq, delivered, stored_ns = int(tokens[5]), int(tokens[4]), int(tokens[7])
        else:  # a server with a JetStream domain: its longer form, read by nats-py
            meta = msg.metadata
            stream_seq, delivered = meta.sequence.stream, meta.num_delivered
            stored_ns = int(meta.timestamp.timestamp() * 1e9)
        self.stats.received += 1
        headers = msg.headers
        source = headers.get(HEADER_SOURCE) if headers else None
        return Delivery(node, msg.data, stream_seq, delivered > 1, source, stored_ns)

    def _message(self, msg: Msg) -> FleetMessage | None:
        delivery = self._delivery(msg)
        return None if delivery is None else self._decoded(delivery)

    def _decoded(self, d: Delivery) -> FleetMessage:
        decoded = decode(d.body)
        if isinstance(decoded, DecodeError):
            self.stats.malformed += 1
        return FleetMessage(d.node, decoded, d.stream_seq, d.redelivered, d.source, d.stored_ns)

    async def batches(self, idle: float = 0.5) -> AsyncIterator[list[tuple[FleetMessage | None, Msg]]]:
        """Yield the messages delivered so far in batches (``[]`` after ``idle`` quiet seconds), until
        cancelled.

        Messages of other nodes or subjects come as ``(None, msg)``: acknowledge them too. While the
        server is away nothing comes; delivery resumes by itself when it is back.
        """
        async for batch in self.deliveries(idle):
            yield [(None if d is None else self._decoded(d), m) for d, m in batch]

    async def deliveries(self, idle: float = 0.5) -> AsyncIterator[list[tuple[Delivery | None, Msg]]]:
        """:meth:`batches` with the bodies not decoded."""
        if self._sub is None:
            await self.open()
        delivered, ready, size = self._delivered, self._ready, self.batch_size
        while True:
            if not delivered:
                ready.clear()
                try:
                    await asyncio.wait_for(ready.wait(), idle)
                except TimeoutError:
                    yield []
                    continue
            count = min(len(delivered), size)
            msgs = [delivered.popleft() for _ in range(count)]
            yield [(self._delivery(m), m) for m in msgs]

    async def ack_floor(self) -> int | None:
        """The stream sequence up to which every message is acknowledged (durable consumers)."""
        if self._sub is None:
            return None
        try:
            info = await self._sub.consumer_info()
        except (nats.errors.Error, nats.js.errors.Error):
            return None
        floor = info.ack_floor
        return floor.stream_seq if floor is not None else None

    async def close(self) -> None:
        """Close the connection (a temporary consumer goes away with it)."""
        if self.conn is not None:
            await self.conn.close()

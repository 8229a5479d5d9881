"""The stateful :class:`Decoder`: feed it :class:`~ecaptureq.protocol.Event` values, get
:data:`~ecaptureq.decode.results.Decoded` results (:class:`RequestDone` and :class:`ResponseDone` paired
into :class:`Exchange` values, :class:`WebSocketFrames`, :class:`H2Control`, :class:`Undecoded`).

Each connection is in one :class:`ConnectionMode`; every change of mode is in one table,
:data:`MODE_TRANSITIONS` (as h11 keeps its states): a connection starts ``UNKNOWN``, becomes ``HTTP1`` at
its first HTTP/1.x message, ``WEBSOCKET`` after a ``101 Switching Protocols`` to ``websocket``, and
``HTTP2`` at its first HTTP/2 frames (for good: from then on every chunk is read as HTTP/2).

State is kept per connection, keyed by the uuid without its data_type suffix (so the write and read
directions of one TLS connection meet), and within a connection per direction. HTTP/1.x responses are
paired with requests in order, HTTP/2 ones by stream id. State is bounded: at most ``max_connections``
connections and ``max_buffered`` bytes of unfinished messages are held; the least recently used
connection is evicted first (its unfinished messages are returned, marked incomplete). No I/O; never
raises.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final, Literal

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT
from ecaptureq.decode.classify import classify_payload, h2_direction, h2_frame_start
from ecaptureq.decode.http1 import Http1Parser, starts_message
from ecaptureq.decode.http2 import H2_PREFACE, H2Connection, H2Result, Side
from ecaptureq.decode.meta import EventMeta, MetaReader, unparsed_meta
from ecaptureq.decode.model import Exchange, HttpMessage, Protocol
from ecaptureq.decode.results import (
    Decoded,
    H2Control,
    RequestDone,
    ResponseDone,
    Undecoded,
    WebSocketFrames,
)
from ecaptureq.decode.websocket import parse_websocket
from ecaptureq.protocol.gap import CaptureGap
from ecaptureq.protocol.messages import Event, EventType
from ecaptureq.protocol.timestamps import TimeUnit
from ecaptureq.protocol.uuid import DATA_TYPE_WRITE

DEFAULT_MAX_CONNECTIONS: Final = 4096
"""Default cap on tracked connections."""
DEFAULT_MAX_BUFFERED: Final = 256 * 1024 * 1024
"""Default cap on bytes held for unfinished messages across all connections."""
_MAX_PENDING: Final = 128
_MAX_HOLD: Final = 64 * 1024


class ConnectionMode(enum.Enum):
    """What a connection is speaking, as decoded so far."""

    UNKNOWN = "unknown"
    """Nothing decoded yet (or only WebSocket frames without the upgrade that starts them)."""
    HTTP1 = "http/1"
    """HTTP/1.x messages."""
    WEBSOCKET = "websocket"
    """After a ``101 Switching Protocols`` to ``websocket``: chunks that are not HTTP/1.x are frames."""
    HTTP2 = "h2"
    """HTTP/2 frames, for the rest of the connection."""

    # Members are singletons compared by identity: hash them so too (Enum's own hash is a Python call,
    # and the decoder looks a mode up in MODE_TRANSITIONS for every event).
    __hash__ = object.__hash__


class Seen(enum.Enum):
    """What a chunk of a connection showed, as far as its mode is concerned."""

    H1_MESSAGE = "an HTTP/1.x message"
    WEBSOCKET_UPGRADE = "a 101 Switching Protocols to websocket"
    WEBSOCKET_FRAMES = "WebSocket frames"
    H2_FRAMES = "HTTP/2 frames"

    __hash__ = object.__hash__  # as ConnectionMode's


_M, _S = ConnectionMode, Seen
MODE_TRANSITIONS: Final[dict[tuple[ConnectionMode, Seen], ConnectionMode]] = {
    (_M.UNKNOWN, _S.H1_MESSAGE): _M.HTTP1,
    (_M.UNKNOWN, _S.WEBSOCKET_UPGRADE): _M.WEBSOCKET,
    # Frames without their upgrade are decoded, but do not make later undecodable chunks frames.
    (_M.UNKNOWN, _S.WEBSOCKET_FRAMES): _M.UNKNOWN,
    (_M.UNKNOWN, _S.H2_FRAMES): _M.HTTP2,
    (_M.HTTP1, _S.H1_MESSAGE): _M.HTTP1,
    (_M.HTTP1, _S.WEBSOCKET_UPGRADE): _M.WEBSOCKET,
    (_M.HTTP1, _S.WEBSOCKET_FRAMES): _M.HTTP1,
    (_M.HTTP1, _S.H2_FRAMES): _M.HTTP2,  # h2c upgrade, or a reused descriptor
    # An HTTP/1.x message on an upgraded connection is still decoded as one (the capture may have
    # missed the close); the connection stays upgraded.
    (_M.WEBSOCKET, _S.H1_MESSAGE): _M.WEBSOCKET,
    (_M.WEBSOCKET, _S.WEBSOCKET_UPGRADE): _M.WEBSOCKET,
    (_M.WEBSOCKET, _S.WEBSOCKET_FRAMES): _M.WEBSOCKET,
    (_M.WEBSOCKET, _S.H2_FRAMES): _M.HTTP2,
    # HTTP/2 is for good: every chunk goes to the HTTP/2 decoder, which reports what is not a frame.
    (_M.HTTP2, _S.H1_MESSAGE): _M.HTTP2,
    (_M.HTTP2, _S.WEBSOCKET_UPGRADE): _M.HTTP2,
    (_M.HTTP2, _S.WEBSOCKET_FRAMES): _M.HTTP2,
    (_M.HTTP2, _S.H2_FRAMES): _M.HTTP2,
}
"""Every change of a connection's mode: (mode, what a chunk showed) -> the next mode."""
del _M, _S

_Lane = Literal["h1-request", "h1-response", "h2", "ws"]
"""Which decoder a chunk goes to."""
_LANE_SEEN: Final[dict[str, Seen]] = {
    "h1-request": Seen.H1_MESSAGE,
    "h1-response": Seen.H1_MESSAGE,
    "h2": Seen.H2_FRAMES,
    "ws": Seen.WEBSOCKET_FRAMES,
}
_LANE_STEP: Final[dict[tuple[ConnectionMode, str], ConnectionMode]] = {
    (mode, lane): MODE_TRANSITIONS[(mode, seen)]
    for mode in ConnectionMode
    for lane, seen in _LANE_SEEN.items()
}
"""MODE_TRANSITIONS by lane (what the chunk was decoded as), looked up once per event."""
_TYPE_LANES: Final[dict[int, _Lane]] = {
    EventType.HTTP1_REQUEST: "h1-request",
    EventType.HTTP1_RESPONSE: "h1-response",
    EventType.HTTP2_REQUEST: "h2",
    EventType.HTTP2_RESPONSE: "h2",
    EventType.WEBSOCKET: "ws",
}
"""The lane of a chunk by its event type (that of the event, or of its bytes)."""
_HTTP2: Final = ConnectionMode.HTTP2
_UNIT_ZERO: Final = TimeUnit.ZERO
_UNIT_BOOT: Final = TimeUnit.BOOT_NANOSECONDS
_WEBSOCKET: Final = ConnectionMode.WEBSOCKET
_LANE_TYPES: Final[dict[str, int]] = {
    "h1-request": EventType.HTTP1_REQUEST,
    "h1-response": EventType.HTTP1_RESPONSE,
    "ws": EventType.WEBSOCKET,
}


@dataclass(slots=True)
class _Direction:
    """One direction of a connection: the lane its unfinished HTTP/1.x message is in, which side sends
    it (HTTP/2), and the start of a frame held until the rest arrives."""

    lane: _Lane | None = None
    side: Side | None = None
    held: bytes = b""


@dataclass(slots=True)
class _Conn:
    """One connection: its mode, its decoders, the exchanges waiting for a response, its directions."""

    key: str
    mode: ConnectionMode = ConnectionMode.UNKNOWN
    h1: dict[str, Http1Parser] = field(default_factory=dict)
    h2: H2Connection | None = None
    pending: deque[Exchange] = field(default_factory=deque)
    h2_pending: dict[int, Exchange] | None = None
    """HTTP/2 exchanges by stream id, oldest first (made at the first HTTP/2 request)."""
    directions: dict[str, _Direction] = field(default_factory=dict)
    writer_side: Side | None = None
    buffered: int = 0
    meta: EventMeta | None = None

    def direction(self, stream: str) -> _Direction:
        found = self.directions.get(stream)
        if found is None:
            found = self.directions[stream] = _Direction()
        return found

    def saw(self, seen: Seen) -> None:
        """Move to the mode :data:`MODE_TRANSITIONS` gives for what a chunk showed."""
        self.mode = MODE_TRANSITIONS[(self.mode, seen)]


def _other(side: Side) -> Side:
    return "server" if side == "client" else "client"


class Decoder:
    """Decode a stream of events into HTTP exchanges, WebSocket frames and raw data.

    ``body_limit`` caps each body before and after decompression (default 16 MiB); ``max_connections``
    and ``max_buffered`` bound the state kept; ``write_data_type`` is the uuid data_type that means
    written by the traced process (1 in eCapture and in ecaptureq's own sources). Call
    :meth:`feed` for each event in arrival order and :meth:`flush` at the end of a capture.
    """

    def __init__(
        self,
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        write_data_type: int = DATA_TYPE_WRITE,
    ) -> None:
        self.body_limit = body_limit
        self.max_connections = max(1, max_connections)
        self.max_buffered = max_buffered
        self.write_data_type = write_data_type
        self._meta = MetaReader(write_data_type=write_data_type, size=2 * self.max_connections).read
        self._conns: OrderedDict[str, _Conn] = OrderedDict()
        self._buffered = 0
        self._next_id = 1
        self.evicted = 0
        """How many connections were evicted to keep within the bounds."""
        self.last_meta: EventMeta | None = None
        """The metadata of the last event fed."""
        self.last_type: int | None = None
        """The type of the last event fed, from its connection's protocol as decoded so far and its side
        (a client's HTTP/2 frames are requests, a server's responses; an HTTP/1.x body chunk belongs to
        the message it continues), or ``None`` when the decoder cannot tell (see :meth:`event_type`)."""

    @property
    def connections(self) -> int:
        """How many connections are tracked now."""
        return len(self._conns)

    @property
    def buffered(self) -> int:
        """Bytes held for unfinished messages now (approximate)."""
        return self._buffered

    def feed(self, event: Event) -> list[Decoded]:
        """Decode one event; return what it completed (possibly nothing). Never raises.

        Afterwards :attr:`last_meta` and :attr:`last_type` describe the event.
        """
        self.last_type = None
        self.last_meta = None
        try:
            meta = self._meta(event)
        except Exception as exc:  # defensive: metadata recovery is itself defensive
            # Not parsed again: the bytes are reported whole, with what failed.
            error = f"metadata: {type(exc).__name__}: {exc}"
            meta = unparsed_meta(event)
            return [Undecoded(meta, meta.body, (error,))]
        self.last_meta = meta
        out: list[Decoded] = []
        try:
            self._feed(meta, out)
        except Exception as exc:  # a bug in this module must not end a capture
            # What the event completed before the failure stays in ``out``; the connection's state is
            # dropped (it may be what failed) and the event's bytes are reported with the error.
            out.append(Undecoded(meta, meta.body, (f"decoder: {type(exc).__name__}: {exc}",)))
            self._drop(meta.connection)
        return out

    def mode(self, connection: str) -> ConnectionMode | None:
        """The mode of ``connection`` (an :attr:`EventMeta.connection` key), ``None`` when not tracked."""
        conn = self._conns.get(connection)
        return conn.mode if conn is not None else None

    def lost(self, gap: CaptureGap) -> list[Decoded]:
        """The capture lost bytes of one direction of a connection (a ``capture lost N bytes`` run-log
        line, :func:`~ecaptureq.protocol.gap.parse_gap`): return the messages that direction had in
        progress, marked incomplete with that note, and start it afresh. Never raises."""
        try:
            return self._lost(gap)
        except Exception as exc:  # a bug in this module must not end a capture
            # As in :meth:`feed`: the connection's state is dropped and the failure reported once.
            key = gap.uuid.rpartition("_")[0] if isinstance(gap.uuid, str) else ""
            conn = self._conns.get(key)
            self._drop(key)
            if conn is None or conn.meta is None:
                return []
            meta = dataclasses.replace(conn.meta, body=b"")
            return [Undecoded(meta, b"", (f"decoder: {type(exc).__name__}: {exc}",))]

    def _lost(self, gap: CaptureGap) -> list[Decoded]:
        out: list[Decoded] = []
        key, _, _data_type = gap.uuid.rpartition("_")
        conn = self._conns.get(key)
        if conn is None or conn.meta is None:
            return out
        note = f"capture lost {gap.lost} bytes"
        meta = conn.meta
        lane: _Lane | None = None
        direction = conn.directions.get(gap.uuid)
        if direction is not None:
            lane, direction.lane, direction.held = direction.lane, None, b""
        if conn.h2 is not None:
            for msg in conn.h2.flush():
                msg.notes.append(note)
                out.append(self._h2_message(conn, meta, msg))
        if lane in ("h1-request", "h1-response"):
            parser = conn.h1.pop("request" if lane == "h1-request" else "response", None)
            for msg in parser.flush(note) if parser is not None else []:
                out.append(self._h1_message(conn, meta, msg))
        self._account(conn, out)
        return out

    def flush(self) -> list[Decoded]:
        """Return every unfinished message (marked incomplete) and forget all state."""
        out: list[Decoded] = []
        for key in list(self._conns):
            out.extend(self._evict(key))
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _conn(self, meta: EventMeta, out: list[Decoded]) -> _Conn:
        conn = self._conns.get(meta.connection)
        if conn is None:
            while len(self._conns) >= self.max_connections:
                out.extend(self._evict(next(iter(self._conns))))
            conn = self._conns[meta.connection] = _Conn(meta.connection)
        else:
            self._conns.move_to_end(meta.connection)
        conn.meta = meta
        return conn

    def _drop(self, key: str) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            self._buffered -= conn.buffered

    def _evict(self, key: str) -> list[Decoded]:
        conn = self._conns.get(key)
        out: list[Decoded] = []
        if conn is None:
            return out
        meta = conn.meta
        if meta is not None:
            for direction in conn.directions.values():
                if direction.held:
                    out.append(Undecoded(dataclasses.replace(meta, body=direction.held), direction.held))
            for parser in conn.h1.values():
                for msg in parser.flush():
                    out.append(self._h1_message(conn, meta, msg))
            if conn.h2 is not None:
                for msg in conn.h2.flush():
                    out.append(self._h2_message(conn, meta, msg))
        self._drop(key)
        return out

    def _account(self, conn: _Conn, out: list[Decoded]) -> None:
        h2 = conn.h2
        now = h2.buffered if h2 is not None else 0
        if conn.h1:
            for parser in conn.h1.values():
                now += parser.buffered
        for direction in conn.directions.values():
            if direction.held:
                now += len(direction.held)
        was = conn.buffered
        if now != was:
            self._buffered += now - was
            conn.buffered = now
        while self._buffered > self.max_buffered and self._conns:
            self.evicted += 1
            out.extend(self._evict(next(iter(self._conns))))

    def _feed(self, meta: EventMeta, out: list[Decoded]) -> None:
        body = meta.body
        if not body:
            return
        conn = self._conns.get(meta.connection)
        if conn is None:
            conn = self._conn(meta, out)
        else:
            self._conns.move_to_end(meta.connection)
            conn.meta = meta
        direction = conn.directions.get(meta.stream) or conn.direction(meta.stream)
        held = direction.held
        if conn.mode is _HTTP2 and not held:
            # An HTTP/2 connection's chunk, the common case: every chunk goes to its HTTP/2 decoder
            # (what _lane and the mode table say for it, without asking them).
            self._feed_h2(conn, direction, meta, out)
            self._account(conn, out)
            return
        if held:
            direction.held = b""
            body = held + body
            meta = dataclasses.replace(meta, body=body, type=0)  # re-classify the joined bytes
        lane = self._lane(conn, direction, meta)
        if lane is None:
            if len(body) <= _MAX_HOLD and h2_frame_start(body):
                # The start of an HTTP/2 frame cut short: wait for the rest before deciding.
                direction.held = body
                self._account(conn, out)
                return
            out.append(Undecoded(meta, body))
            self._account(conn, out)
            return
        conn.mode = _LANE_STEP[conn.mode, lane]
        if conn.mode is _HTTP2 and conn.h2 is None:
            conn.h2 = H2Connection(body_limit=self.body_limit, scheme=self._scheme(meta))
        if lane != "h2" and lane != "ws":
            direction.lane = lane
        self.last_type = _LANE_TYPES.get(lane)
        if lane == "ws":
            frames, errors = parse_websocket(body)
            if frames:
                out.append(WebSocketFrames(meta, tuple(frames), tuple(errors)))
            else:
                out.append(Undecoded(meta, body, tuple(errors)))
        elif lane == "h2":
            self._feed_h2(conn, direction, meta, out)
        else:
            kind: Literal["request", "response"] = "request" if lane == "h1-request" else "response"
            parser = conn.h1.get(kind)
            if parser is None:
                parser = conn.h1[kind] = self._h1_parser(conn, kind, meta)
            elif parser.in_body and starts_message(body, kind):
                # A new message begins where the body was still expected: the capture lost bytes.
                note = "a new message began before this body ended: captured bytes were lost"
                for msg in parser.flush(note):
                    out.append(self._h1_message(conn, meta, msg))
            for msg in parser.feed(body, meta.time_ns):
                out.append(self._h1_message(conn, meta, msg))
        self._account(conn, out)

    def _lane(self, conn: _Conn, direction: _Direction, meta: EventMeta) -> _Lane | None:
        """Which decoder the chunk goes to, from the connection's mode, the message its direction has in
        progress, and what the chunk looks like (:func:`classify_payload`)."""
        body = meta.body
        if conn.mode is _HTTP2:
            return "h2"
        current = direction.lane
        if current is not None:
            parser = conn.h1.get("request" if current == "h1-request" else "response")
            if parser is not None and parser.in_message:
                return current
        etype = meta.type
        if etype not in (1, 2, 3, 4, 5):
            hint = None if meta.direction is None else meta.direction == "write"
            etype = classify_payload(body, hint)
        if conn.mode is _WEBSOCKET and (etype == EventType.UNKNOWN or etype == EventType.WEBSOCKET):
            return "ws"
        return _TYPE_LANES.get(etype)

    @staticmethod
    def _scheme(meta: EventMeta) -> str:
        return "http" if 80 in (meta.dst_port, meta.src_port) else "https"

    def _h1_parser(self, conn: _Conn, kind: Literal["request", "response"], meta: EventMeta) -> Http1Parser:
        if kind == "request":  # only a response's parser asks which method it answers
            return Http1Parser(kind, body_limit=self.body_limit, scheme=self._scheme(meta))
        # The hint holds the connection's queue, not the connection: a parser that referred back to its
        # connection would make every connection a reference cycle, freed only by the garbage
        # collector (on short connections, its passes cost more than decoding did).
        pending = conn.pending

        def method_hint(n: int) -> str | None:
            if n < len(pending):
                req = pending[n].request
                return req.method if req is not None else None
            return None

        return Http1Parser(
            kind, body_limit=self.body_limit, scheme=self._scheme(meta), method_hint=method_hint
        )

    def _new_exchange(
        self,
        conn: _Conn,
        meta: EventMeta,
        protocol: Protocol,
        request: HttpMessage | None = None,
        stream_id: int | None = None,
    ) -> Exchange:
        """A new exchange on ``conn``, opened by ``request`` when there is one (it starts at its time)."""
        unit = meta.timestamp.unit
        ex = Exchange(
            id=self._next_id,
            connection=conn.key,
            protocol=protocol,
            stream_id=stream_id,
            request=request,
            pid=meta.pid,
            pname=meta.pname,
            tid=meta.tid,
            fd=meta.fd,
            src_ip=meta.src_ip,
            src_port=meta.src_port,
            dst_ip=meta.dst_ip,
            dst_port=meta.dst_port,
            clock="unset" if unit is _UNIT_ZERO else "boot" if unit is _UNIT_BOOT else "epoch",
            started_ns=request.time_ns if request is not None else None,
        )
        self._next_id += 1
        return ex

    @staticmethod
    def _close(ex: Exchange, meta: EventMeta, response: HttpMessage) -> None:
        ex.response = response
        ex.ended_ns = ended = meta.time_ns
        started = ex.started_ns
        if started is None:
            ex.started_ns = started = response.time_ns
        if started is not None and ended is not None and ex.request is not None:
            ex.latency = max(0, ended - started) / 1e9

    def _h1_message(self, conn: _Conn, meta: EventMeta, msg: HttpMessage) -> Decoded:
        if msg.kind == "request":
            if not msg.method:
                return Undecoded(meta, msg.raw, tuple(msg.errors))
            ex = self._new_exchange(conn, meta, msg.protocol, msg)
            conn.pending.append(ex)
            while len(conn.pending) > _MAX_PENDING:
                conn.pending.popleft()
            return RequestDone(meta, msg, ex)
        if msg.status is None:
            return Undecoded(meta, msg.raw, tuple(msg.errors))
        if 100 <= msg.status < 200:
            if msg.status == 101 and msg.header("upgrade").lower() == "websocket":
                conn.saw(Seen.WEBSOCKET_UPGRADE)
            ex = conn.pending[0] if conn.pending else self._new_exchange(conn, meta, msg.protocol)
            return ResponseDone(meta, msg, ex)
        ex = conn.pending.popleft() if conn.pending else self._new_exchange(conn, meta, msg.protocol)
        self._close(ex, meta, msg)
        return ResponseDone(meta, msg, ex)

    def _h2_side(self, conn: _Conn, direction: _Direction, meta: EventMeta) -> Side:
        """Which side sent the chunk of HTTP/2 bytes ``meta`` carries (``direction`` is its stream's)."""
        known = direction.side
        if known is not None:
            return known
        body = meta.body
        strong: Side | None = None
        if body.startswith(H2_PREFACE[:16]):
            strong = "client"
        else:
            guess = h2_direction(body)
            strong = "client" if guess == "request" else "server" if guess == "response" else None
        side: Side
        if strong is not None:
            side = strong
            if meta.stream != meta.connection:
                direction.side = strong
            if meta.direction is not None and conn.writer_side is None:
                conn.writer_side = strong if meta.direction == "write" else _other(strong)
        elif meta.direction is not None and conn.writer_side is not None:
            side = conn.writer_side if meta.direction == "write" else _other(conn.writer_side)
        elif meta.type == EventType.HTTP2_REQUEST:
            side = "client"
        elif meta.type == EventType.HTTP2_RESPONSE:
            side = "server"
        else:
            # A capture source sees a client far more often than a server: a write is the client's.
            side = (
                "server" if meta.direction == "read" else "client" if meta.direction == "write" else "server"
            )
        return side

    def _feed_h2(self, conn: _Conn, direction: _Direction, meta: EventMeta, out: list[Decoded]) -> None:
        assert conn.h2 is not None
        side = direction.side or self._h2_side(conn, direction, meta)
        self.last_type = EventType.HTTP2_REQUEST if side == "client" else EventType.HTTP2_RESPONSE
        result: H2Result = conn.h2.feed(side, meta.body, meta.time_ns)
        for msg in result.messages:
            out.append(self._h2_message(conn, meta, msg))
        if result.frames:
            out.append(H2Control(meta, tuple(result.frames)))
        if result.errors:
            out.append(Undecoded(meta, result.raw, tuple(result.errors)))

    def _h2_message(self, conn: _Conn, meta: EventMeta, msg: HttpMessage) -> Decoded:
        sid = msg.stream_id if msg.stream_id is not None else 0
        pending = conn.h2_pending
        if pending is None:
            pending = conn.h2_pending = {}
        if msg.kind == "request":
            ex = self._new_exchange(conn, meta, "h2", msg, sid)
            pending[sid] = ex
            if len(pending) > _MAX_PENDING:
                del pending[next(iter(pending))]  # one added, so one at most too many
            return RequestDone(meta, msg, ex)
        found = pending.pop(sid, None)
        ex = found if found is not None else self._new_exchange(conn, meta, "h2")
        ex.stream_id = sid
        self._close(ex, meta, msg)
        return ResponseDone(meta, msg, ex)


TypeSource = Literal["decoder", "proto", "payload"]
"""Where an event's type came from: the decoder's view of its connection, the event's own ``type``
field, or its bytes alone (:func:`classify_payload`)."""


def event_type(decoder: Decoder, event: Event) -> tuple[int, TypeSource]:
    """The type of ``event``, just fed to ``decoder``: the decoder's when it knows the connection, else
    the event's own ``type``, else what its bytes alone look like."""
    if decoder.last_type is not None:
        return decoder.last_type, "decoder"
    if event.type:
        return event.type, "proto"
    meta = decoder.last_meta
    body = meta.body if meta is not None else event.payload
    hint = None if meta is None or meta.direction is None else meta.direction == "write"
    return classify_payload(body, hint), "payload"


class EventTyper:
    """Type captured events from their connection's protocol and direction, as the decoder knows it.

    What a capture source calls to fill ``Event.type`` instead of typing each chunk alone with
    :func:`classify_payload` (which calls an HTTP/1.x body chunk whatever its bytes look like, and a
    server's HTTP/2 DATA frames requests). Feed every event of the capture, in order; state is bounded
    like the :class:`Decoder`'s it keeps (bodies are not kept beyond ``body_limit``).

    >>> typer = EventTyper()
    >>> typer.type_of(Event(uuid="1_1_curl_3_1", payload=b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"))
    1
    """

    def __init__(
        self,
        *,
        write_data_type: int = DATA_TYPE_WRITE,
        body_limit: int = 64 * 1024,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_buffered: int = 64 * 1024 * 1024,
    ) -> None:
        self._decoder = Decoder(
            body_limit=body_limit,
            max_connections=max_connections,
            max_buffered=max_buffered,
            write_data_type=write_data_type,
        )

    def type_of(self, event: Event) -> int:
        """The type of ``event`` (the next one of the capture). Never raises."""
        self._decoder.feed(event)
        return event_type(self._decoder, event)[0]

"""Event metadata: the uuid parsed, and pid/comm/tid/fd/direction/4-tuple recovered from a text header.

eCapture's uuid is ``<pid>_<tid>_<comm>_<fd>`` optionally followed by ``_<data_type>``. The comm may
itself contain underscores, so pid and tid are read from the left and fd and data_type from the right.

Current eCapture 2.x releases often fill only ``payload`` and ``length`` and put a text header in front
of the plaintext, such as ``PID:2746, Comm:curl, Src:10.0.0.5:40522, Dest:93.184.216.34:443,\\n`` or
``[2026-01-02 10:00:00.000] PID:2746 TID:2746 Comm:curl FD:5 WRITE (79 bytes):\\n``. :func:`event_meta`
prefers the structured fields, falls back to that header and then to the uuid, and strips the header
from the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from ecaptureq.protocol.messages import Event
from ecaptureq.protocol.timestamps import Timestamp, TimeUnit, detect_timestamp
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, UuidInfo, parse_uuid


@dataclass(frozen=True, slots=True)
class TextHeader:
    """What a text header in front of the payload said; absent items are ``None``."""

    text: str
    pid: int | None = None
    tid: int | None = None
    comm: str | None = None
    fd: int | None = None
    direction: str | None = None
    src: tuple[str, int] | None = None
    dst: tuple[str, int] | None = None
    length: int | None = None


_NO_HEADER: Final = TextHeader(text="")
"""What an event without a text header has of one: nothing (frozen, so one serves all)."""
_HEADER_START = re.compile(rb"(?:\[[^\]\n]{1,64}\]\s*)?(?:PID|UUID|Pid)\s*[:=]")
_HEADER_FIRST: Final = frozenset({b"[", b"P", b"U"})
"""The bytes a text header can begin with (:data:`_HEADER_START`)."""
_FIELD = re.compile(
    r"\b(PID|Pid|TID|Tid|FD|Fd|Src|SrcAddr|Source|Dest|Dst|DstAddr|Destination|Length|UUID)\s*[:=]\s*([^\s,]+)"
)
_COMM = re.compile(
    r"\b(?:Comm|Pname|PName)\s*[:=]\s*(.*?)(?=,|\s+\w+\s*[:=]|\s+(?:WRITE|READ|SEND|RECV)\b|\s+\(|\s*$)",
)
_DIRECTION = re.compile(r"\b(WRITE|READ|SEND|RECV|Send|Recv|Write|Read|Sent|Received)\b")
_BYTES = re.compile(r"\((\d+) bytes\)")
_MAX_HEADER = 1024


def split_text_header(payload: bytes) -> tuple[TextHeader | None, bytes]:
    """Recognise and remove an eCapture text header at the start of ``payload``.

    Returns ``(header, body)``; ``(None, payload)`` when the payload does not start with one. A header is
    one line (at most 1 KiB) that starts with ``PID:`` (optionally after a ``[timestamp]``) and ends in a
    newline. Never raises.
    """
    if not _HEADER_START.match(payload):
        return None, payload
    nl = payload.find(b"\n", 0, _MAX_HEADER)
    if nl == -1:
        return None, payload
    line = payload[:nl].decode("utf-8", "replace").rstrip("\r")
    return _parse_header(line), payload[nl + 1 :]


def _int(value: str) -> int | None:
    value = value.strip().rstrip(",:")
    return int(value) if value.isdigit() else None


def _addr(value: str) -> tuple[str, int] | None:
    value = value.strip().rstrip(",")
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _parse_header(line: str) -> TextHeader:
    fields: dict[str, Any] = {}
    for key, value in _FIELD.findall(line):
        k = key.lower()
        if k == "pid":
            fields["pid"] = _int(value)
        elif k == "tid":
            fields["tid"] = _int(value)
        elif k == "fd":
            fields["fd"] = _int(value)
        elif k in ("src", "srcaddr", "source"):
            fields["src"] = _addr(value)
        elif k in ("dest", "dst", "dstaddr", "destination"):
            fields["dst"] = _addr(value)
        elif k == "length":
            fields["length"] = _int(value)
    m = _COMM.search(line)
    if m:
        fields["comm"] = m.group(1).strip()
    m = _DIRECTION.search(line)
    if m:
        word = m.group(1).upper()
        fields["direction"] = "write" if word in ("WRITE", "SEND", "SENT") else "read"
    m = _BYTES.search(line)
    if m:
        fields["length"] = int(m.group(1))
    return TextHeader(text=line, **fields)


@dataclass(slots=True)
class EventMeta:
    """Everything known about where an event came from, with its body stripped of any text header.

    ``direction`` is ``"write"``, ``"read"`` or ``None`` (unknown). ``connection`` is the key the two
    directions of one connection share (the uuid without its data_type, or the pid and 4-tuple when the
    uuid is empty). ``stream`` identifies this direction of it (the full uuid, or the connection plus the
    direction).

    Read-only by contract, not frozen: a frozen dataclass sets each of these 17 fields through
    ``object.__setattr__``, about 1 µs an event, more than the rest of the metadata costs
    (:class:`MetaReader`). Use :func:`dataclasses.replace` for a changed copy.
    """

    timestamp: Timestamp
    uuid: UuidInfo
    pid: int | None
    tid: int | None
    pname: str
    fd: int | None
    direction: str | None
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    type: int
    body: bytes
    header: TextHeader | None
    connection: str
    stream: str
    sources: dict[str, str | None]
    """Where each of ``pid tid pname fd src_ip src_port dst_ip dst_port direction`` came from:
    ``"proto"`` (the event's own field), ``"header"`` (its text header), ``"uuid"``, or ``None`` (unknown)."""

    @property
    def time_ns(self) -> int | None:
        """Nanoseconds on the event's clock (Unix epoch, or since boot), ``None`` when unset."""
        if self.timestamp.epoch_ns is not None:
            return self.timestamp.epoch_ns
        return self.timestamp.boot_ns

    def recovered(self) -> dict[str, Any]:
        """What is known of the event's origin, each item from the best place that had it (the proto
        field, else the text header, else the uuid), and ``sources``: where each came from. Unknown
        values are ``None``. This is ``watch --json``'s ``meta`` object (without its type)."""
        source = self.sources
        return {
            "pid": None if source["pid"] is None else self.pid,
            "tid": self.tid,
            "pname": None if source["pname"] is None else self.pname,
            "fd": self.fd,
            "src_ip": None if source["src_ip"] is None else self.src_ip,
            "src_port": None if source["src_port"] is None else self.src_port,
            "dst_ip": None if source["dst_ip"] is None else self.dst_ip,
            "dst_port": None if source["dst_port"] is None else self.dst_port,
            "direction": self.direction,
            "sources": dict(source),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "timestamp": self.timestamp.isoformat(),
            "timestamp_unit": self.timestamp.unit.value,
            "uuid": self.uuid.raw,
            "pid": self.pid,
            "tid": self.tid,
            "pname": self.pname,
            "fd": self.fd,
            "direction": self.direction,
            "src_ip": self.src_ip,
            "src_port": self.src_port,
            "dst_ip": self.dst_ip,
            "dst_port": self.dst_port,
            "type": self.type,
            "connection": self.connection,
            "header": self.header.text if self.header else None,
        }


_UNKNOWN_SOURCES: Final = (
    "pid",
    "tid",
    "pname",
    "fd",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "direction",
)


def unparsed_meta(event: Event) -> EventMeta:
    """Metadata that parses nothing (no header split, no uuid, no timestamp): the whole payload is the
    body (empty when the payload is not bytes at all). What a decoder reports an event with when
    :func:`event_meta` itself failed on it."""
    raw = event.payload
    payload = bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else b""
    return EventMeta(
        timestamp=Timestamp(0, TimeUnit.ZERO, None),
        uuid=UuidInfo(raw=""),
        pid=None,
        tid=None,
        pname="",
        fd=None,
        direction=None,
        src_ip="",
        src_port=0,
        dst_ip="",
        dst_port=0,
        type=0,
        body=payload,
        header=None,
        connection="",
        stream="",
        sources=dict.fromkeys(_UNKNOWN_SOURCES),
    )


def event_meta(event: Event, *, write_data_type: int = DATA_TYPE_WRITE) -> EventMeta:
    """Gather an event's metadata from its fields, its text header and its uuid (in that order).

    ``write_data_type`` is the uuid data_type that means "written by the traced process" (1, as eCapture
    and ecaptureq's own sources number it); the other value means read.
    """
    header, body = split_text_header(event.payload)
    info = parse_uuid(event.uuid)
    h = header or _NO_HEADER
    pid = event.pid or h.pid or info.pid
    tid = h.tid if h.tid is not None else info.tid
    fd = h.fd if h.fd is not None else info.fd
    pname = event.pname or h.comm or info.comm
    src_ip, src_port = event.src_ip, event.src_port
    if not src_ip and h.src:
        src_ip, src_port = h.src
    dst_ip, dst_port = event.dst_ip, event.dst_port
    if not dst_ip and h.dst:
        dst_ip, dst_port = h.dst
    direction = h.direction
    if direction is None and info.data_type in (DATA_TYPE_READ, DATA_TYPE_WRITE):
        direction = "write" if info.data_type == write_data_type else "read"
    src_from = "proto" if event.src_ip else "header" if h.src else None
    dst_from = "proto" if event.dst_ip else "header" if h.dst else None
    sources: dict[str, str | None] = {
        "pid": "proto" if event.pid else "header" if h.pid else "uuid" if info.pid else None,
        "tid": "header" if h.tid is not None else "uuid" if info.tid is not None else None,
        "pname": "proto" if event.pname else "header" if h.comm else "uuid" if info.comm else None,
        "fd": "header" if h.fd is not None else "uuid" if info.fd is not None else None,
        "src_ip": src_from,
        "src_port": src_from,
        "dst_ip": dst_from,
        "dst_port": dst_from,
        "direction": "header" if h.direction else "uuid" if direction else None,
    }
    if info.parsed:
        connection = info.connection
        stream = info.raw
    elif event.uuid:
        connection = stream = event.uuid
    else:
        ends = sorted([f"{src_ip}:{src_port}", f"{dst_ip}:{dst_port}"])
        connection = f"{pid or 0}_{pname}_{fd if fd is not None else ''}_{ends[0]}_{ends[1]}"
        stream = f"{connection}/{direction or '?'}"
    return EventMeta(
        timestamp=detect_timestamp(event.timestamp),
        uuid=info,
        pid=pid,
        tid=tid,
        pname=pname,
        fd=fd,
        direction=direction,
        src_ip=src_ip,
        src_port=src_port,
        dst_ip=dst_ip,
        dst_port=dst_port,
        type=event.type,
        body=body,
        header=header,
        connection=connection,
        stream=stream,
        sources=sources,
    )


DEFAULT_ORIGINS: Final = 8192
"""How many origins a :class:`MetaReader` remembers (two a connection: one a direction)."""


_Origin = tuple[
    UuidInfo,
    int | None,
    int | None,
    str,
    int | None,
    str | None,
    str,
    int,
    str,
    int,
    str,
    str,
    dict[str, str | None],
]
"""What an origin's events share: every :class:`EventMeta` field but the timestamp, type, body and header."""


class MetaReader:
    """:func:`event_meta` for a stream of events, quicker: what depends only on an event's origin (its
    uuid, pid, comm and address fields) is worked out once per origin and remembered, at most
    ``size`` origins (all are forgotten when that many are held; no event's body is kept). An event
    with a text header is read whole each time. Gives what :func:`event_meta` gives
    (tests/decode/test_meta.py)."""

    def __init__(self, *, write_data_type: int = DATA_TYPE_WRITE, size: int = DEFAULT_ORIGINS) -> None:
        self.write_data_type = write_data_type
        self.size = max(1, size)
        self._origins: dict[tuple[object, ...], _Origin] = {}
        # The few distinct sources tables, shared by the origins that have the same one (each event
        # gets its own copy).
        self._sources: dict[tuple[str | None, ...], dict[str, str | None]] = {}

    def read(self, event: Event) -> EventMeta:
        """The metadata of ``event``, as :func:`event_meta` gives it. Raises what it raises."""
        payload = event.payload
        if type(payload) is not bytes or (payload[:1] in _HEADER_FIRST and _HEADER_START.match(payload)):
            return event_meta(event, write_data_type=self.write_data_type)
        key = (event.uuid, event.pid, event.pname, event.src_ip, event.src_port, event.dst_ip, event.dst_port)
        o = self._origins.get(key)
        if o is None:
            meta = event_meta(event, write_data_type=self.write_data_type)
            if len(self._origins) >= self.size:
                self._origins.clear()
            if len(self._sources) >= self.size:
                self._sources.clear()
            sources = self._sources.setdefault(tuple(meta.sources.values()), meta.sources)
            self._origins[key] = (
                meta.uuid,
                meta.pid,
                meta.tid,
                meta.pname,
                meta.fd,
                meta.direction,
                meta.src_ip,
                meta.src_port,
                meta.dst_ip,
                meta.dst_port,
                meta.connection,
                meta.stream,
                sources,
            )
            meta.sources = sources.copy()  # the remembered table is no event's own
            return meta
        return EventMeta(
            detect_timestamp(event.timestamp),
            o[0],
            o[1],
            o[2],
            o[3],
            o[4],
            o[5],
            o[6],
            o[7],
            o[8],
            o[9],
            event.type,
            payload,
            None,
            o[10],
            o[11],
            o[12].copy(),
        )

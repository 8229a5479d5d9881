"""Turn eCaptureQ frame bytes into typed messages and back. No I/O.

:func:`decode` never raises on bad input: a frame that cannot be understood comes back as a
:class:`DecodeError` value the caller can count and report, so one bad frame never ends a read loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import DecodeError as _PbDecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from ecaptureq.protocol import event_pb2 as pb
from ecaptureq.protocol.messages import Event, Heartbeat, LogType, Message, RunLog

MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Largest frame a client accepts (eCapture caps one capture at 16 KiB; this leaves room for anything sane).
A server never sends a larger one: it splits a larger event's payload into consecutive events instead."""

_ONEOF_FOR_TYPE = {
    LogType.HEARTBEAT: "heartbeat_payload",
    LogType.PROCESS_LOG: "run_log",
    LogType.EVENT: "event_payload",
}
_ONEOF_FOR_LOG_TYPE: dict[int, str] = {int(t): name for t, name in _ONEOF_FOR_TYPE.items()}
"""The same, keyed by the raw ``log_type`` (no enum made per frame)."""
_KNOWN_EVENT_FIELDS = tuple(f.name for f in pb.Event.DESCRIPTOR.fields)


class ErrorKind(enum.Enum):
    """Why a frame could not be decoded."""

    NOT_PROTOBUF = "not protobuf"
    UNKNOWN_LOG_TYPE = "unknown log_type"
    LOG_TYPE_MISMATCH = "log_type disagrees with payload"
    EMPTY_PAYLOAD = "no payload"


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A frame that is not a usable ``LogEntry``; returned, never raised."""

    kind: ErrorKind
    detail: str
    raw: bytes

    def __str__(self) -> str:
        return f"malformed frame ({self.kind.value}): {self.detail}"


def decode(data: bytes) -> Message | DecodeError:
    """Decode one frame into a :class:`Heartbeat`, :class:`RunLog` or :class:`Event`.

    Malformed input (bytes that are not protobuf, an unknown ``log_type``, a ``log_type`` that disagrees
    with the member of the oneof that is set, or no member set) is returned as a :class:`DecodeError`.
    """
    entry = pb.LogEntry()
    try:
        entry.ParseFromString(data)
    except _PbDecodeError as exc:
        return DecodeError(ErrorKind.NOT_PROTOBUF, str(exc) or "parse failed", bytes(data))
    except Exception as exc:
        return DecodeError(ErrorKind.NOT_PROTOBUF, f"{type(exc).__name__}: {exc}", bytes(data))
    which = entry.WhichOneof("payload")
    log_type = entry.log_type
    if which is None:
        return DecodeError(ErrorKind.EMPTY_PAYLOAD, f"log_type {log_type} with no payload set", bytes(data))
    expected = _ONEOF_FOR_LOG_TYPE.get(log_type)
    if expected is None:
        return DecodeError(ErrorKind.UNKNOWN_LOG_TYPE, f"log_type {log_type} (payload {which})", bytes(data))
    if which != expected:
        return DecodeError(
            ErrorKind.LOG_TYPE_MISMATCH, f"log_type {LogType(log_type).name} carries {which}", bytes(data)
        )
    if which == "event_payload":
        return _event_from_pb(entry.event_payload)
    if which == "run_log":
        return RunLog(entry.run_log)
    hb = entry.heartbeat_payload
    return Heartbeat(timestamp=hb.timestamp, count=hb.count, message=hb.message)


def _event_from_pb(ev: pb.Event) -> Event:
    unknown = b""
    if UnknownFieldSet(ev):
        rest = pb.Event()
        rest.CopyFrom(ev)
        for name in _KNOWN_EVENT_FIELDS:
            rest.ClearField(name)
        unknown = rest.SerializeToString()
    # By position, in the order of Event's fields (and of the proto's): a frozen dataclass takes keyword
    # arguments half again as slowly, once per event received.
    return Event(
        ev.timestamp,
        ev.uuid,
        ev.src_ip,
        ev.src_port,
        ev.dst_ip,
        ev.dst_port,
        ev.pid,
        ev.pname,
        ev.type,
        ev.length,
        ev.payload,
        unknown,
    )


def encode(message: Message) -> bytes:
    """Encode a message as the bytes of one binary frame (a serialized ``LogEntry``)."""
    if isinstance(message, Event):
        return encode_event(message)
    if isinstance(message, RunLog):
        return encode_run_log(message.line)
    if isinstance(message, Heartbeat):
        return encode_heartbeat(message.timestamp, message.count, message.message)
    raise TypeError(f"cannot encode {type(message).__name__}")


def encode_event(event: Event) -> bytes:
    """Encode an :class:`Event`, writing back its unknown fields unchanged."""
    ev = pb.Event(
        timestamp=event.timestamp,
        uuid=event.uuid,
        src_ip=event.src_ip,
        src_port=event.src_port,
        dst_ip=event.dst_ip,
        dst_port=event.dst_port,
        pid=event.pid,
        pname=event.pname,
        type=event.type,
        length=event.length,
        payload=event.payload,
    )
    if event.unknown_fields:
        ev.MergeFromString(event.unknown_fields)
    data: bytes = pb.LogEntry(log_type=pb.LOG_TYPE_EVENT, event_payload=ev).SerializeToString()
    return data


def encode_run_log(line: str) -> bytes:
    """Encode one run-log line."""
    data: bytes = pb.LogEntry(log_type=pb.LOG_TYPE_PROCESS_LOG, run_log=line).SerializeToString()
    return data


def encode_heartbeat(timestamp: int, count: int, message: str) -> bytes:
    """Encode a heartbeat."""
    hb = pb.Heartbeat(timestamp=timestamp, count=count, message=message)
    data: bytes = pb.LogEntry(log_type=pb.LOG_TYPE_HEARTBEAT, heartbeat_payload=hb).SerializeToString()
    return data

"""The JSON Lines form of messages, as ``ecaptureq watch --json`` writes and ``serve --replay`` reads.

One JSON object per line, with ``"kind"`` = ``"log"``, ``"heartbeat"`` or ``"event"`` and the message's
fields under their proto names; an event's ``payload`` is base64. Extra keys written for readers'
convenience (``type_name``, and ``time`` where ``watch`` adds it) are ignored when reading;
``unknown_fields`` (base64 of the raw wire bytes of fields this schema does not know), is kept.
"""

from __future__ import annotations

import binascii
import json
from typing import Any, Final

import orjson
import pybase64
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError as _PbDecodeError

from ecaptureq.protocol import event_pb2 as pb
from ecaptureq.protocol.messages import (
    INT64_MAX,
    INT64_MIN,
    Event,
    Heartbeat,
    Message,
    RunLog,
    event_type_name,
)


class JsonlError(ValueError):
    """A JSON Lines record that is not a message; the text says which field is wrong."""


def to_json(message: Message, *, payload: bool = True) -> dict[str, Any]:
    """Return the JSON-able dict of a message (see the module docstring for the format).

    ``payload=False`` leaves an event's ``payload`` out, for a writer that appends its base64 itself
    (as bytes, without JSON scanning it)."""
    if isinstance(message, Event):
        obj: dict[str, Any] = {
            "kind": "event",
            "timestamp": message.timestamp,
            "uuid": message.uuid,
            "src_ip": message.src_ip,
            "src_port": message.src_port,
            "dst_ip": message.dst_ip,
            "dst_port": message.dst_port,
            "pid": message.pid,
            "pname": message.pname,
            "type": message.type,
            "type_name": event_type_name(message.type),
            "length": message.length,
        }
        if payload:
            obj["payload"] = pybase64.b64encode(message.payload).decode("ascii")
        if message.unknown_fields:
            obj["unknown_fields"] = pybase64.b64encode(message.unknown_fields).decode("ascii")
        return obj
    if isinstance(message, RunLog):
        return {"kind": "log", "run_log": message.line}
    return {
        "kind": "heartbeat",
        "timestamp": message.timestamp,
        "count": message.count,
        "message": message.message,
    }


def _b64(obj: dict[str, Any], key: str) -> bytes:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise JsonlError(f"{key!r} must be a base64 string")
    try:
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise JsonlError(f"{key!r} is not valid base64") from None


def _unknown_fields(obj: dict[str, Any]) -> bytes:
    raw = _b64(obj, "unknown_fields")
    if raw:
        # written back into the Event when it is encoded: bytes that do not parse would fail there
        probe = pb.Event()
        try:
            probe.MergeFromString(raw)
        except _PbDecodeError:
            raise JsonlError("'unknown_fields' is not protobuf wire format") from None
        if probe.ListFields():
            raise JsonlError("'unknown_fields' holds fields Event defines (they have their own keys)")
    return raw


_INTEGER_RANGES: Final = {
    FieldDescriptor.TYPE_INT64: ("a 64-bit integer", INT64_MIN, INT64_MAX),
    FieldDescriptor.TYPE_UINT32: ("an unsigned 32-bit integer", 0, 2**32 - 1),
}


def _ranges(descriptor: Descriptor) -> dict[str, tuple[str, int, int]]:
    """The range of each integer field of a proto message, from its type in event.proto."""
    return {f.name: _INTEGER_RANGES[f.type] for f in descriptor.fields if f.type in _INTEGER_RANGES}


EVENT_RANGES: Final = _ranges(pb.DESCRIPTOR.message_types_by_name["Event"])
"""Each integer field of an Event, from its type in event.proto: what it is (``an unsigned 32-bit
integer``), its lowest and its highest value."""
_HEARTBEAT_RANGES: Final = _ranges(pb.DESCRIPTOR.message_types_by_name["Heartbeat"])


def _int(obj: dict[str, Any], key: str, ranges: dict[str, tuple[str, int, int]]) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise JsonlError(f"{key!r} must be an integer, not {value!r}")
    kind, low, high = ranges[key]
    if not low <= value <= high:
        # a message the protocol cannot carry: encoding it would fail once it is being served
        raise JsonlError(f"{key!r} must be {kind}, not {value}")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise JsonlError(f"{key!r} must be a string, not {value!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON's \ud800): not text a proto string carries
            raise JsonlError(f"{key!r} is not Unicode text (a lone surrogate)") from None
    return value


def from_json(obj: Any) -> Message:
    """Build a message from one decoded JSON Lines record.

    Raises:
        JsonlError: the record is not an object, has an unknown ``kind`` or a field of the wrong type.
    """
    if not isinstance(obj, dict):
        raise JsonlError("a record must be a JSON object")
    kind = obj.get("kind")
    if kind == "event":
        payload = _b64(obj, "payload")
        return Event(
            timestamp=_int(obj, "timestamp", EVENT_RANGES),
            uuid=_str(obj, "uuid"),
            src_ip=_str(obj, "src_ip"),
            src_port=_int(obj, "src_port", EVENT_RANGES),
            dst_ip=_str(obj, "dst_ip"),
            dst_port=_int(obj, "dst_port", EVENT_RANGES),
            pid=_int(obj, "pid", EVENT_RANGES),
            pname=_str(obj, "pname"),
            type=_int(obj, "type", EVENT_RANGES),
            length=_int(obj, "length", EVENT_RANGES) if "length" in obj else len(payload),
            payload=payload,
            unknown_fields=_unknown_fields(obj),
        )
    if kind == "log":
        return RunLog(_str(obj, "run_log"))
    if kind == "heartbeat":
        timestamp = _int(obj, "timestamp", _HEARTBEAT_RANGES)
        return Heartbeat(timestamp, _int(obj, "count", _HEARTBEAT_RANGES), _str(obj, "message"))
    raise JsonlError(f"unknown kind {kind!r} (expected 'event', 'log' or 'heartbeat')")


def parse_line(text: str | bytes) -> Message:
    """Build a message from one line of JSON Lines.

    orjson (C) parses the line, about three times quicker than :func:`json.loads` on an event record. Where
    it differs from ``json`` (it refuses ``NaN`` and lone surrogates, and reads an integer beyond 64 bits
    as a float), the line is read again by ``json``: the result, and the error, are always ``json``'s.

    Raises:
        ValueError: the line is not JSON (:class:`json.JSONDecodeError`), or not a message
            (:class:`JsonlError`: nested too deeply for ``json`` too).
    """
    try:
        return from_json(orjson.loads(text))
    except (orjson.JSONDecodeError, JsonlError):
        try:
            return from_json(json.loads(text))
        except RecursionError:
            raise JsonlError("nested too deeply to be a message record") from None

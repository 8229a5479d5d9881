"""Text and JSON renderings of messages for the terminal (``watch``, ``demo``). Pure functions."""

from __future__ import annotations

from typing import Any

from ecaptureq.cli.terminal import json_line, one_line_each, visible
from ecaptureq.decode.bodies import hexdump_pieces
from ecaptureq.decode.meta import EventMeta, event_meta
from ecaptureq.protocol import Event, Heartbeat, Message, RunLog, event_type_name
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.text import looks_binary
from ecaptureq.protocol.timestamps import Timestamp, detect_timestamp


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 heartbeat``, ``2 heartbeats`` (``nouns`` for an irregular plural).

    >>> plural(1, "event"), plural(0, "malformed frame")
    ('1 event', '0 malformed frames')
    """
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def endpoint(ip: str, port: int) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6), or ``?`` when unknown."""
    if not ip and not port:
        return "?"
    host = f"[{ip}]" if ":" in ip else (ip or "?")
    return f"{host}:{port}"


def payload_lines(data: bytes) -> list[str]:
    """The payload as lines of a text block: its text (control characters are made visible later; no
    trailing newline), or a hex dump when it is binary (:func:`~ecaptureq.protocol.text.looks_binary`, as
    the store and the web UI judge it; :func:`~ecaptureq.decode.bodies.hexdump_pieces`)."""
    return hexdump_pieces(data) if looks_binary(data) else [data.decode("utf-8", "replace").rstrip("\n")]


def event_header(event: Event, meta: EventMeta | None = None, etype: int | None = None) -> list[str]:
    """The metadata lines of an event block: time, uuid, process, endpoints, type, length.

    Process and endpoints are the recovered ones (``meta``, from the event's fields, else its text header,
    else its uuid); ``etype`` is the type the decoder gave it, shown with the one it was sent with when
    they differ.
    """
    meta = meta or event_meta(event)
    ts = meta.timestamp  # detect_timestamp(event.timestamp), made once by event_meta
    if ts.raw != event.timestamp:  # metadata that could not be parsed (decode.meta.unparsed_meta)
        ts = detect_timestamp(event.timestamp)
    unit = "" if ts.unit.value in ("ns", "unset") else f" ({ts.unit.value})"
    shown_type = event.type if etype is None else etype
    sent = f"  (sent as type {event.type})" if shown_type != event.type and event.type else ""
    return one_line_each(
        [
            f"--- event {ts.isoformat()}{unit}  uuid {event.uuid or '-'}",
            f"    pid {meta.pid or '?'}  process {meta.pname or '?'}  "
            f"{endpoint(meta.src_ip, meta.src_port)} -> {endpoint(meta.dst_ip, meta.dst_port)}",
            f"    type {shown_type} ({event_type_name(shown_type)}){sent}  length {event.length}",
        ]
    )


def render_text(message: Message, verbose: bool = False) -> str | None:
    """The text ``watch`` prints for a message, or ``None`` for what it hides (heartbeats unless verbose)."""
    if isinstance(message, RunLog):
        return visible(message.line.rstrip("\r\n"), newlines=False)  # eCapture's lines end in a newline
    if isinstance(message, Heartbeat):
        if not verbose:
            return None
        when = detect_timestamp(message.timestamp).isoformat()
        return visible(f"[heartbeat] #{message.count} {when} {message.message}", newlines=False)
    return visible("\n".join(event_lines(message)))


def event_lines(event: Event) -> list[str]:
    """The lines of an event's text block (:func:`render_text` joins them and makes them visible): its
    header, its payload, an empty line."""
    return [*event_header(event), *payload_lines(event.payload), ""]


def json_record(message: Message, timestamp: Timestamp | None = None) -> dict[str, Any]:
    """The record ``watch --json`` writes: :func:`~ecaptureq.protocol.jsonl.to_json` plus ``time``.

    ``timestamp`` is the message's, detected already (the decoder's metadata has it); used when it is of
    this message's timestamp field.
    """
    obj = to_json(message)
    if isinstance(message, Event | Heartbeat):
        if timestamp is None or timestamp.raw != message.timestamp:
            timestamp = detect_timestamp(message.timestamp)
        obj["time"] = timestamp.isoformat()
    return obj


def render_json(message: Message) -> str:
    """One compact JSON line for a message (safe on a terminal: see :func:`json_line`)."""
    return json_line(json_record(message))

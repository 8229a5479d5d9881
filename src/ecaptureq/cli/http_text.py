"""Rendering and filtering of decoded items for the command line (``watch``). Pure functions, no I/O.

* :func:`format_http_text` renders one :class:`~ecaptureq.decode.model.Decoded` item for the terminal:
  request line or status, headers, the decoded body up to a limit with a clear truncation mark, binary
  bodies as a hex dump.
* :func:`http_json` is the ``http`` object of ``watch --json`` for an HTTP request or response.
* :class:`EventFilter` implements ``--pid --pname --host --port --type --grep``.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ecaptureq.cli.terminal import json_float, one_line_each
from ecaptureq.decode.bodies import hexdump_pieces
from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.meta import EventMeta, event_meta
from ecaptureq.decode.model import HttpMessage
from ecaptureq.decode.results import (
    Decoded,
    H2Control,
    MessageDone,
    RequestDone,
    ResponseDone,
    WebSocketFrames,
)
from ecaptureq.protocol.messages import Event, EventType
from ecaptureq.protocol.text import looks_binary

DEFAULT_BODY_LIMIT_SHOWN = 4096
"""Default number of body bytes (or characters) :func:`format_http_text` shows."""


def _truncation_mark(more: int) -> str:
    return f"… truncated ({more} more bytes)"


FOLD_MARK = "… {} more lines folded (--full shows them)"
"""What replaces the lines of a body beyond ``fold_lines`` in :func:`format_http_text`."""


def _fold(lines: list[str], fold_lines: int | None) -> list[str]:
    if fold_lines is None:
        return lines
    flat = "\n".join(lines).split("\n")
    if len(flat) <= fold_lines + 1:  # folding one line away would save nothing
        return lines
    return [*flat[:fold_lines], FOLD_MARK.format(len(flat) - fold_lines)]


def _body_lines(msg: HttpMessage, body_limit: int, fold_lines: int | None = None) -> list[str]:
    return _fold(_all_body_lines(msg, body_limit), fold_lines)


def _all_body_lines(msg: HttpMessage, body_limit: int) -> list[str]:
    lines: list[str] = []
    if msg.grpc_messages is not None:
        shown = 0
        for i, m in enumerate(msg.grpc_messages):
            lines.append(f"[gRPC message {i}: {len(m)} bytes]")
            room = max(0, body_limit - shown)
            if m[:room]:
                lines.extend(hexdump_pieces(m[:room]))
            if len(m) > room:
                lines.append(_truncation_mark(len(m) - room))
            shown += min(len(m), room)
    elif msg.body_text is not None:
        text = msg.pretty_text or ""
        if len(text) > body_limit:
            # counted piece by piece: no copy of a 16 MiB body to measure what is not shown
            more = sum(len(text[i : i + 65536].encode("utf-8")) for i in range(body_limit, len(text), 65536))
            lines.append(text[:body_limit])
            lines.append(_truncation_mark(more))
        elif text:
            lines.append(text)
    elif msg.body:
        lines.extend(hexdump_pieces(msg.body[:body_limit]))
        if len(msg.body) > body_limit:
            lines.append(_truncation_mark(len(msg.body) - body_limit))
    if msg.truncated:
        lines.append(
            f"… body cut by the decoder (captured {msg.body_size} bytes on the wire, decoded part shown)"
        )
    return lines


def request_target(msg: HttpMessage) -> str:
    """``METHOD URL``, with ``(method unknown)`` or ``(path unknown)`` for what a late join could not
    decode, or ``(request line not decoded)`` when neither is known."""
    where = msg.target
    if not msg.method and not where:
        return "(request line not decoded)"
    return f"{msg.method or '(method unknown)'} {where or '(path unknown)'}"


_VERSIONS: Final = {"h2": "HTTP/2", "http/1.0": "HTTP/1.0"}
"""How a message's protocol is written in its first line (any other: ``HTTP/1.1``)."""


def _message_text(item: MessageDone, body_limit: int, fold_lines: int | None = None) -> list[str]:
    msg = item.message
    proto = _VERSIONS.get(msg.protocol, "HTTP/1.1")
    where = f"pid {item.meta.pid or '?'} {item.meta.pname or '?'}"
    stream = f" stream {msg.stream_id}" if msg.stream_id is not None else ""
    ex = item.exchange
    if msg.kind == "request":
        target = request_target(msg)
        head = f"> {target} {proto}{stream}  [{where}]"
    else:
        status = f"{msg.status} {msg.reason}".rstrip() if msg.status is not None else "(status not decoded)"
        head = f"< {proto} {status}{stream}  [{where}]"
        if ex.request is not None and msg.status is not None and msg.status >= 200:
            head += f"  for {request_target(ex.request)}"
        if ex.latency is not None:
            head += f"  ({ex.latency * 1000:.1f} ms)"
    lines = one_line_each([head, *(f"  {k}: {v}" for k, v in msg.headers)])
    body = _body_lines(msg, body_limit, fold_lines)
    if body:
        lines.append("")
        lines.extend(body)
    if msg.trailers:
        lines.append("  trailers:")
        lines.extend(one_line_each([f"  {k}: {v}" for k, v in msg.trailers]))
    if msg.errors or msg.notes:
        lines.extend(one_line_each([*(f"  ! {e}" for e in msg.errors), *(f"  note: {n}" for n in msg.notes)]))
    if not msg.complete:
        lines.append("  (partial decode)")
        if msg.raw and msg.errors:
            lines.extend(hexdump_pieces(msg.raw[:body_limit]))
    return lines


def format_http_text(
    item: Decoded, body_limit: int = DEFAULT_BODY_LIMIT_SHOWN, fold_lines: int | None = None
) -> str:
    """Render a decoded item for the terminal: :func:`format_http_lines` joined by newlines."""
    return "\n".join(format_http_lines(item, body_limit, fold_lines))


def format_http_lines(
    item: Decoded, body_limit: int = DEFAULT_BODY_LIMIT_SHOWN, fold_lines: int | None = None
) -> list[str]:
    """Render a decoded item for the terminal, as the lines of a text block (one may hold several: a
    body's text, or a few hundred lines of a hex dump, so that a writer can show a large body piece by
    piece).

    A request shows ``> METHOD URL VERSION`` then its headers; a response ``< VERSION STATUS REASON``,
    the request it answers and the latency; then the body up to ``body_limit`` characters (text) or bytes
    (hex dump of binary), followed by ``… truncated (N more bytes)`` when cut. WebSocket frames, HTTP/2
    control frames and raw bytes (as text when printable, else a hex dump) get one block each. With
    ``fold_lines``, a message body longer than that many lines is folded to them (:data:`FOLD_MARK`). The
    text has no trailing newline.
    """
    if isinstance(item, RequestDone | ResponseDone):
        return _message_text(item, body_limit, fold_lines)
    lines: list[str] = []
    if isinstance(item, WebSocketFrames):
        for f in item.frames:
            flags = (
                ("FIN " if f.fin else "")
                + ("masked " if f.masked else "")
                + ("deflate " if f.compressed else "")
            )
            head = f"ws {f.opcode_name} {flags}{f.length} bytes"
            if f.close_code is not None:
                head += f" code {f.close_code}"
            lines.append(head + (" (cut short)" if f.truncated else ""))
            if f.text is not None:
                lines.append(f.text[:body_limit])
                if len(f.text) > body_limit:
                    lines.append(_truncation_mark(len(f.text[body_limit:].encode("utf-8"))))
            elif f.data:
                lines.extend(hexdump_pieces(f.data[:body_limit]))
                if len(f.data) > body_limit:
                    lines.append(_truncation_mark(len(f.data) - body_limit))
    elif isinstance(item, H2Control):
        lines.extend(f"h2 {f.type} stream {f.stream_id}: {f.summary}" for f in item.frames)
        return lines
    else:
        lines.append(f"raw {len(item.raw)} bytes" + (" (not decoded)" if not item.errors else ""))
        shown = item.raw[:body_limit]
        if shown and not looks_binary(shown):
            lines.append(shown.decode("utf-8", "replace"))
        elif shown:
            lines.extend(hexdump_pieces(shown))
        if len(item.raw) > body_limit:
            lines.append(_truncation_mark(len(item.raw) - body_limit))
    lines.extend(f"  ! {e}" for e in item.errors)
    return lines


JSON_BODY_LIMIT = 1024 * 1024
"""Most characters (text) or bytes (binary) of a body in ``watch --json``; a longer one is cut there,
with ``truncated`` set and a note, so one line does not cost 6 times a 16 MiB decoded body."""


def http_json(item: Decoded) -> dict[str, Any] | None:
    """The ``http`` object of ``watch --json`` for a request or response item, else ``None``.

    Keys: ``kind`` (request/response), ``protocol``, ``method``, ``url``, ``path``, ``authority``,
    ``status``, ``reason``, ``headers`` (list of ``[name, value]``), ``body`` (text as sent, or ``null``
    for binary), ``is_json``, ``body_b64`` (binary bodies), ``body_size``, ``content_type``, ``truncated``,
    ``complete``, ``errors``, ``notes``, ``stream_id``, ``exchange_id`` and ``latency`` (seconds). A body
    is cut at :data:`JSON_BODY_LIMIT`. The headers, trailers and errors are the message's own lists (not
    copied: a caller encodes the object, and does not change it), with pairs as tuples.
    """
    if not isinstance(item, RequestDone | ResponseDone):
        return None
    msg = item.message
    text, data = msg.body_text, msg.body
    notes = list(msg.notes)
    cut = len(text) > JSON_BODY_LIMIT if text is not None else len(data) > JSON_BODY_LIMIT
    if cut:
        notes.append(f"body cut at {JSON_BODY_LIMIT} in this JSON")
    body_b64 = None
    if text is None and data:
        body_b64 = base64.b64encode(data[:JSON_BODY_LIMIT]).decode("ascii")
    return {
        "kind": msg.kind,
        "protocol": msg.protocol,
        "method": msg.method or None,
        "url": msg.url or None,
        "path": msg.path or None,
        "authority": msg.authority or None,
        "status": msg.status,
        "reason": msg.reason or None,
        # the message's own lists (pairs as tuples): every JSON encoder writes them as the arrays they are
        "headers": msg.headers,
        "trailers": msg.trailers,
        "body": text[:JSON_BODY_LIMIT] if text is not None else None,
        "is_json": msg.is_json and not cut,
        "body_b64": body_b64,
        "body_size": msg.body_size,
        "content_type": msg.content_type or None,
        "truncated": msg.truncated or cut,
        "complete": msg.complete,
        "errors": msg.errors,
        "notes": notes,
        "stream_id": msg.stream_id,
        "exchange_id": item.exchange.id,
        "latency": json_float(item.exchange.latency),  # json_line's fast path writes it as json.dumps
    }


_KIND_TYPES: dict[tuple[str, bool], int] = {
    ("request", False): EventType.HTTP1_REQUEST,
    ("request", True): EventType.HTTP2_REQUEST,
    ("response", False): EventType.HTTP1_RESPONSE,
    ("response", True): EventType.HTTP2_RESPONSE,
}


@dataclass(slots=True)
class EventFilter:
    """The ``watch`` filters; every filter given must match (unset ones match everything).

    ``pid``: the process id (structured field, else recovered from the text header or uuid).
    ``pname_glob``: a shell glob on the process name (``curl*``). ``host``: an IP of either end or the
    HTTP host (``:authority``/``Host``), case-insensitive. ``port``: either end's port. ``types``:
    ``Event.type`` values (the event's own, or what it decoded into). ``grep``: a regular expression
    searched in the decoded bodies of the items (or, when nothing was decoded, in the payload).
    """

    pid: int | None = None
    pname_glob: str | None = None
    host: str | None = None
    port: int | None = None
    types: Iterable[int] | None = None
    grep: str | re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.grep, str):
            self.grep = re.compile(self.grep)
        if self.types is not None:
            self.types = frozenset(self.types)

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return any(
            v is not None for v in (self.pid, self.pname_glob, self.host, self.port, self.types, self.grep)
        )

    def matches(
        self,
        event: Event,
        decoded: Decoded | Sequence[Decoded] | None = None,
        *,
        meta: EventMeta | None = None,
        event_type: int | None = None,
    ) -> bool:
        """Whether ``event`` (and the items decoded from it, if given) passes every filter.

        ``meta`` is the event's metadata when already known, and ``event_type`` its type as the decoder
        knows it from the connection (:func:`~ecaptureq.decode.event_type`); without it, ``types``
        looks at the event's own ``type`` field and what its bytes look like.
        """
        items: Sequence[Decoded] = (
            [] if decoded is None else decoded if isinstance(decoded, Sequence) else [decoded]
        )
        if meta is None:
            meta = items[0].meta if items else event_meta(event)
        if self.pid is not None and meta.pid != self.pid:
            return False
        if self.pname_glob is not None and not fnmatch.fnmatchcase(meta.pname or "", self.pname_glob):
            return False
        if self.port is not None and self.port not in (meta.src_port, meta.dst_port):
            return False
        if self.host is not None and not self._host_matches(meta.src_ip, meta.dst_ip, items):
            return False
        found = {event_type} if event_type is not None else self._types(event, meta.body, items)
        if self.types is not None and not found & frozenset(self.types):
            return False
        return not (self.grep is not None and not self._grep(meta.body, items))

    def _host_matches(self, src_ip: str, dst_ip: str, items: Sequence[Decoded]) -> bool:
        assert self.host is not None
        want = self.host.lower().strip("[]")
        hosts = {src_ip.lower(), dst_ip.lower()}
        for item in items:
            if isinstance(item, RequestDone | ResponseDone):
                for msg in (item.message, item.exchange.request):
                    if msg is not None:
                        hosts.add(msg.host.lower())
        return want in hosts

    @staticmethod
    def _types(event: Event, body: bytes, items: Sequence[Decoded]) -> set[int]:
        found = {event.type if event.type else classify_payload(body)}
        for item in items:
            if isinstance(item, RequestDone | ResponseDone):
                found.add(_KIND_TYPES[(item.message.kind, item.message.protocol == "h2")])
            elif isinstance(item, WebSocketFrames):
                found.add(EventType.WEBSOCKET)
        return found

    def _grep(self, body: bytes, items: Sequence[Decoded]) -> bool:
        pattern = self.grep
        assert isinstance(pattern, re.Pattern)
        texts: list[str] = []
        for item in items:
            if isinstance(item, RequestDone | ResponseDone):
                msg = item.message
                if msg.body_text is not None:
                    texts.append(msg.body_text)
                elif msg.body:
                    texts.append(msg.body.decode("iso-8859-1"))
            elif isinstance(item, WebSocketFrames):
                for f in item.frames:
                    texts.append(f.text if f.text is not None else f.data.decode("iso-8859-1"))
        if not texts:
            texts.append(body.decode("utf-8", "replace"))
        return any(pattern.search(t) for t in texts)

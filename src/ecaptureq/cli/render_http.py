"""Decoded HTTP in ``watch``: the filter and decode options, and :class:`HttpView`, which decodes each event,
applies the filters and renders what the event completed as text or JSON fields.

``watch`` wires it in three steps::

    add_decode_options(parser)                      # in register()
    view = HttpView.from_args(args)                 # once, after parsing (raises CliError on a bad --grep)
    shown = view.feed(event)                        # for each Event: None when filtered out
    text = view.text(shown)                         # a text block (None when nothing to show yet)
    record.update(view.json_fields(shown))          # --json: adds the "http" key to the record
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ecaptureq.cli.errors import CliError
from ecaptureq.cli.http_text import EventFilter, format_http_lines, http_json
from ecaptureq.decode import (
    DEFAULT_BODY_LIMIT,
    Decoded,
    Decoder,
    EventMeta,
    H2Control,
    TypeSource,
    Undecoded,
    WebSocketFrames,
    event_meta,
    event_type,
    split_text_header,
)
from ecaptureq.protocol import EVENT_TYPE_NAMES, Event, event_type_name

TYPE_ALIASES: dict[str, int] = {
    "unknown": 0,
    "raw": 0,
    "http1-request": 1,
    "h1req": 1,
    "http2-request": 2,
    "h2req": 2,
    "http1-response": 3,
    "h1resp": 3,
    "http2-response": 4,
    "h2resp": 4,
    "websocket": 5,
    "ws": 5,
}
"""Names ``--type`` accepts beside the numbers 0-5."""

RAW_META_CACHE = 4096
"""Most connections whose ``--json --no-decode`` ``meta`` object :class:`HttpView` keeps."""

DEFAULT_SHOWN = 4096
"""Default ``--body-limit``: body bytes (or characters) shown per message."""


def _event_type(text: str) -> int:
    key = text.strip().lower()
    if key.isdigit() and int(key) in EVENT_TYPE_NAMES:
        return int(key)
    if key in TYPE_ALIASES:
        return TYPE_ALIASES[key]
    names = ", ".join(sorted(TYPE_ALIASES))
    raise argparse.ArgumentTypeError(f"unknown type {text!r} (use 0-5 or one of: {names})")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def port_number(text: str) -> int:
    """An ``argparse`` type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1 to 65535)")
    return value


def add_decode_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--pid --pname --host --port --type --grep --body-limit --max-body --no-decode``."""
    group = parser.add_argument_group("decoding and filters")
    group.add_argument("--pid", type=int, metavar="PID", help="only events of this process id")
    group.add_argument(
        "--pname", metavar="GLOB", help="only events of processes whose name matches (shell glob)"
    )
    group.add_argument("--host", metavar="HOST", help="only events to or from this IP or HTTP host")
    group.add_argument(
        "--port", type=port_number, metavar="PORT", help="only events with this source or destination port"
    )
    group.add_argument(
        "--type",
        dest="types",
        type=_event_type,
        action="append",
        metavar="TYPE",
        help="only events of this type: 0-5 or unknown, http1-request, http2-request, http1-response, "
        "http2-response, websocket (repeatable)",
    )
    group.add_argument("--grep", metavar="REGEX", help="only events whose decoded body matches REGEX")
    group.add_argument(
        "--body-limit",
        type=_non_negative,
        default=DEFAULT_SHOWN,
        metavar="N",
        help=f"show at most N bytes of each body (default {DEFAULT_SHOWN})",
    )
    group.add_argument(
        "--max-body",
        type=_non_negative,
        default=DEFAULT_BODY_LIMIT,
        metavar="N",
        help="decode (decompress) at most N bytes of each body (default 16 MiB)",
    )
    group.add_argument(
        "--no-decode",
        action="store_true",
        help="show raw payloads instead of decoded HTTP (filters still apply)",
    )


@dataclass(slots=True)
class Shown:
    """One event that passed the filters, with the items decoding it completed, its metadata (recovered
    from its text header and uuid where its fields are empty) and its type (from the decoder's view of
    the connection when it has one) with where that came from."""

    event: Event
    meta: EventMeta
    type: int
    type_source: TypeSource
    items: list[Decoded] = field(default_factory=list)


class HttpView:
    """Decode events, filter them, and render what they complete.

    ``body_limit`` is what :meth:`text` shows of each body, ``max_body`` what the decoder decompresses;
    ``verbose`` shows HTTP/2 control frames (SETTINGS, WINDOW_UPDATE...) in full instead of by name.
    """

    def __init__(
        self,
        event_filter: EventFilter | None = None,
        *,
        body_limit: int = DEFAULT_SHOWN,
        max_body: int = DEFAULT_BODY_LIMIT,
        decode: bool = True,
        verbose: bool = False,
    ) -> None:
        self.filter = event_filter or EventFilter()
        self.verbose = verbose
        self.body_limit = body_limit
        self.decode = decode
        self.decoder = Decoder(body_limit=max_body)
        self.fold_lines: int | None = None  # fold bodies longer than this many lines (on a terminal)
        self._raw_meta: dict[tuple[object, ...], dict[str, Any]] = {}

    @property
    def raw(self) -> bool:
        """Whether events are neither decoded nor filtered (``--no-decode`` without filters): then
        :meth:`raw_json_fields` gives an event's ``--json`` fields without building its :class:`Shown`."""
        return not self.decode and not self.filter.active

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> HttpView:
        """Build from the options :func:`add_decode_options` added.

        A bad ``--grep`` raises :class:`CliError` (exit code 2).
        """
        grep = getattr(args, "grep", None)
        pattern = None
        if grep is not None:
            try:
                pattern = re.compile(grep)
            except re.error as exc:
                raise CliError(f"bad --grep regular expression {grep!r}: {exc}") from None
        flt = EventFilter(
            pid=getattr(args, "pid", None),
            pname_glob=getattr(args, "pname", None),
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            types=getattr(args, "types", None),
            grep=pattern,
        )
        return cls(
            flt,
            body_limit=getattr(args, "body_limit", DEFAULT_SHOWN),
            max_body=getattr(args, "max_body", DEFAULT_BODY_LIMIT),
            decode=not getattr(args, "no_decode", False),
            verbose=getattr(args, "verbose", False),
        )

    def feed(self, event: Event) -> Shown | None:
        """Decode ``event``; return it with its items, or ``None`` when a filter rejects it."""
        if self.decode or self.filter.active:
            items = self.decoder.feed(event)
            meta = self.decoder.last_meta or event_meta(event)
            etype, source = event_type(self.decoder, event)
        else:
            items, meta = [], event_meta(event)
            etype, source = (event.type, "proto") if event.type else (0, "payload")
        if not self.filter.matches(event, items, meta=meta, event_type=etype):
            return None
        return Shown(event, meta, etype, source, items if self.decode else [])

    def text(self, shown: Shown) -> str | None:
        """The decoded items as text blocks, or ``None`` when the event completed nothing yet (a part of a
        message still in progress). With ``decode`` off, ``None``: print the raw event instead."""
        lines = self.lines(shown)
        return None if lines is None else "\n".join(lines)

    def lines(self, shown: Shown) -> list[str] | None:
        """:meth:`text` as lines (see :func:`~ecaptureq.cli.http_text.format_http_lines`; joined by
        newlines they are the text): each item's, and an empty line after each."""
        lines: list[str] | None = None
        for item in shown.items:
            if isinstance(item, H2Control) and not self.verbose:
                # Connection housekeeping: one line unless --verbose.
                names = ", ".join(dict.fromkeys(f.type for f in item.frames))
                part = [f"h2 {names}"]
            else:
                part = format_http_lines(item, self.body_limit, self.fold_lines)
            if lines is None:
                lines = part
            else:
                lines += part
            lines.append("")
        return lines

    def json_fields(self, shown: Shown) -> dict[str, Any]:
        """Fields to add to the event's ``--json`` record: ``meta`` and ``http``.

        ``meta`` is :meth:`~ecaptureq.decode.EventMeta.recovered` with the event's ``type`` and
        ``type_name`` as :class:`Shown` has them (and ``sources["type"]``).

        ``http`` is :func:`~ecaptureq.decode.http_json` of the last HTTP message the event completed
        (with ``more``: the earlier ones, when it completed several); else, for WebSocket frames,
        ``{"kind": "websocket", "frames": [...]}``; else, for bytes that could not be decoded,
        ``{"kind": "raw", "errors": [...]}``; else ``null`` (nothing completed yet, or not HTTP).
        """
        meta = shown.meta.recovered()
        sources = meta.pop("sources")
        meta["type"] = shown.type
        meta["type_name"] = event_type_name(shown.type)
        meta["sources"] = {**sources, "type": shown.type_source}
        return {"meta": meta, "http": self._http_json(shown)}

    def raw_json_fields(self, event: Event) -> dict[str, Any]:
        """``json_fields(feed(event))`` for a :attr:`raw` view, computed once per connection.

        Without a text header in its payload, an event's ``meta`` depends only on its uuid, pid, pname,
        endpoints and type, which all events of one connection and direction share; it is kept (at most
        :data:`RAW_META_CACHE` of them) and the same dict returned for each.
        """
        key: tuple[object, ...] = (event.uuid, event.pid, event.pname, event.src_ip, event.src_port)
        key += (event.dst_ip, event.dst_port, event.type)
        cached = self._raw_meta.get(key)
        if cached is not None and split_text_header(event.payload)[0] is None:
            return {"meta": cached, "http": None}
        shown = self.feed(event)
        assert shown is not None  # a raw view filters nothing
        fields = self.json_fields(shown)
        if shown.meta.header is None:
            if len(self._raw_meta) >= RAW_META_CACHE:
                self._raw_meta.clear()
            self._raw_meta[key] = fields["meta"]
        return fields

    @staticmethod
    def _http_json(shown: Shown) -> dict[str, Any] | None:
        https = [obj for obj in (http_json(item) for item in shown.items) if obj is not None]
        if https:
            last = https[-1]
            if len(https) > 1:
                last["more"] = https[:-1]
            return last
        frames = [
            f.to_dict() for item in shown.items if isinstance(item, WebSocketFrames) for f in item.frames
        ]
        if frames:
            return {"kind": "websocket", "frames": frames}
        errors = [e for item in shown.items if isinstance(item, Undecoded) for e in item.errors]
        if errors:
            return {"kind": "raw", "errors": errors}
        return None

    def flush(self) -> Sequence[Decoded]:
        """At the end: the messages still in progress, marked incomplete."""
        return self.decoder.flush()

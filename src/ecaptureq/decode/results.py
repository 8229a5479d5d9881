"""What :meth:`~ecaptureq.decode.Decoder.feed` returns: one frozen class per kind of result, as h11 and h2
return distinct event classes.

* :class:`RequestDone` and :class:`ResponseDone`: an HTTP message completed (``message``), with the
  :class:`~ecaptureq.decode.model.Exchange` it belongs to (a request's exchange gets its response set once
  paired). :data:`MessageDone` is either.
* :class:`WebSocketFrames`: RFC 6455 frames (and what stopped their parse, if anything).
* :class:`H2Control`: HTTP/2 frames outside any message (SETTINGS, PING, GOAWAY...).
* :class:`Undecoded`: bytes that could not be decoded, with why (``errors``, empty when the bytes are
  simply not HTTP or WebSocket).

:data:`Decoded` is the union; consumers tell the kinds apart with ``match`` or :func:`isinstance`. Each
class has a ``to_dict`` giving one JSON shape shared by all (``kind``, ``meta``, ``message``,
``exchange_id``, ``latency``, ``websocket``, ``h2_frames``, ``raw_b64``, ``errors``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from ecaptureq.decode.meta import EventMeta
from ecaptureq.decode.model import Exchange, H2Frame, HttpMessage, WebSocketFrame

DecodedKind = Literal["request", "response", "websocket", "h2-control", "raw"]
"""The ``kind`` key of a result's :meth:`to_dict` form."""


def _as_dict(
    kind: DecodedKind,
    meta: EventMeta,
    *,
    message: HttpMessage | None = None,
    exchange: Exchange | None = None,
    ws_frames: tuple[WebSocketFrame, ...] = (),
    h2_frames: tuple[H2Frame, ...] = (),
    raw: bytes = b"",
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "kind": kind,
        "meta": meta.to_dict(),
        "message": message.to_dict() if message else None,
        "exchange_id": exchange.id if exchange else None,
        "latency": exchange.latency if exchange else None,
        "websocket": [f.to_dict() for f in ws_frames],
        "h2_frames": [f.to_dict() for f in h2_frames],
        "raw_b64": base64.b64encode(raw).decode("ascii") if raw else None,
        "errors": list(errors),
    }


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A request completed: ``message`` is it, ``exchange`` the new exchange it opened."""

    meta: EventMeta
    message: HttpMessage
    exchange: Exchange
    kind: ClassVar[Literal["request"]] = "request"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return _as_dict(self.kind, self.meta, message=self.message, exchange=self.exchange)


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """A response completed: ``message`` is it, ``exchange`` the exchange it closes (its request is
    ``None`` when the capture missed it). An interim (1xx) response leaves the exchange open."""

    meta: EventMeta
    message: HttpMessage
    exchange: Exchange
    kind: ClassVar[Literal["response"]] = "response"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return _as_dict(self.kind, self.meta, message=self.message, exchange=self.exchange)


@dataclass(frozen=True, slots=True)
class WebSocketFrames:
    """WebSocket frames of one chunk; ``errors`` says what stopped the parse before the chunk's end."""

    meta: EventMeta
    frames: tuple[WebSocketFrame, ...]
    errors: tuple[str, ...] = ()
    kind: ClassVar[Literal["websocket"]] = "websocket"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return _as_dict(self.kind, self.meta, ws_frames=self.frames, errors=self.errors)


@dataclass(frozen=True, slots=True)
class H2Control:
    """HTTP/2 frames that are not part of a message, summarised."""

    meta: EventMeta
    frames: tuple[H2Frame, ...]
    kind: ClassVar[Literal["h2-control"]] = "h2-control"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return _as_dict(self.kind, self.meta, h2_frames=self.frames)


@dataclass(frozen=True, slots=True)
class Undecoded:
    """Bytes that were not decoded: ``errors`` says why, or is empty when they are not HTTP or WebSocket."""

    meta: EventMeta
    raw: bytes
    errors: tuple[str, ...] = ()
    kind: ClassVar[Literal["raw"]] = "raw"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return _as_dict(self.kind, self.meta, raw=self.raw, errors=self.errors)


MessageDone: TypeAlias = RequestDone | ResponseDone
"""A completed HTTP message, request or response (usable with :func:`isinstance`)."""

Decoded: TypeAlias = RequestDone | ResponseDone | WebSocketFrames | H2Control | Undecoded
"""One thing the decoder learned from an event (usable with :func:`isinstance`)."""

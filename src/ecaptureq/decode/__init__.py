"""Decoders for what eCapture captures: pure functions and small state machines fed bytes.

They do no I/O and never raise on bad input. The entry point is :class:`Decoder`: feed it events, get
:data:`Decoded` results (:class:`RequestDone`, :class:`ResponseDone`, :class:`WebSocketFrames`,
:class:`H2Control`, :class:`Undecoded`), the first two carrying :class:`HttpMessage` and :class:`Exchange`
values (the one model every sink uses). :mod:`ecaptureq.cli.http_text` renders and filters them for the
command line.
"""

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT, DecodedBody, decode_body, decompress, pretty_json
from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.decoder import ConnectionMode, Decoder, EventTyper, TypeSource, event_type
from ecaptureq.decode.meta import EventMeta, TextHeader, event_meta, split_text_header
from ecaptureq.decode.model import Exchange, H2Frame, HttpMessage, WebSocketFrame
from ecaptureq.decode.results import (
    Decoded,
    H2Control,
    MessageDone,
    RequestDone,
    ResponseDone,
    Undecoded,
    WebSocketFrames,
)

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "ConnectionMode",
    "Decoded",
    "DecodedBody",
    "Decoder",
    "EventMeta",
    "EventTyper",
    "Exchange",
    "H2Control",
    "H2Frame",
    "HttpMessage",
    "MessageDone",
    "RequestDone",
    "ResponseDone",
    "TextHeader",
    "TypeSource",
    "Undecoded",
    "WebSocketFrame",
    "WebSocketFrames",
    "classify_payload",
    "decode_body",
    "decompress",
    "event_meta",
    "event_type",
    "pretty_json",
    "split_text_header",
]

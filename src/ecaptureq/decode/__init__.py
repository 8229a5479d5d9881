"""Decoders for what eCapture captures: pure functions and small state machines fed bytes.

They do no I/O and never raise on bad input. The entry point is :class:`Decoder`: feed it events, get
:class:`Decoded` items carrying :class:`HttpMessage` and :class:`Exchange` values (the one model every
sink uses). :mod:`ecaptureq.decode.render` renders and filters them for the command line.
"""

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT, DecodedBody, decode_body, decompress, pretty_json
from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.decoder import Decoder, EventTyper, TypeSource, event_type
from ecaptureq.decode.meta import EventMeta, TextHeader, UuidInfo, event_meta, parse_uuid, split_text_header
from ecaptureq.decode.model import Decoded, Exchange, H2Frame, HttpMessage, WebSocketFrame
from ecaptureq.decode.render import EventFilter, format_http_text, http_json
from ecaptureq.decode.timestamps import Timestamp, TimeUnit, detect_timestamp

ExchangeTracker = Decoder
"""Another name for :class:`Decoder`."""

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "Decoded",
    "DecodedBody",
    "Decoder",
    "EventFilter",
    "EventMeta",
    "EventTyper",
    "Exchange",
    "ExchangeTracker",
    "H2Frame",
    "HttpMessage",
    "TextHeader",
    "TimeUnit",
    "Timestamp",
    "TypeSource",
    "UuidInfo",
    "WebSocketFrame",
    "classify_payload",
    "decode_body",
    "decompress",
    "detect_timestamp",
    "event_meta",
    "event_type",
    "format_http_text",
    "http_json",
    "parse_uuid",
    "pretty_json",
    "split_text_header",
]

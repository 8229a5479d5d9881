"""Decoders for what eCapture captures: pure functions and small state machines fed bytes.

They do no I/O and never raise on bad input. The entry point is :class:`Decoder`: feed it events, get
:class:`Decoded` items carrying :class:`HttpMessage` and :class:`Exchange` values (the one model every
sink uses). :mod:`ecaptureq.cli.http_text` renders and filters them for the command line.
"""

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT, DecodedBody, decode_body, decompress, pretty_json
from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.decoder import Decoder, EventTyper, TypeSource, event_type
from ecaptureq.decode.meta import EventMeta, TextHeader, event_meta, split_text_header
from ecaptureq.decode.model import Decoded, Exchange, H2Frame, HttpMessage, WebSocketFrame

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "Decoded",
    "DecodedBody",
    "Decoder",
    "EventMeta",
    "EventTyper",
    "Exchange",
    "H2Frame",
    "HttpMessage",
    "TextHeader",
    "TypeSource",
    "WebSocketFrame",
    "classify_payload",
    "decode_body",
    "decompress",
    "event_meta",
    "event_type",
    "pretty_json",
    "split_text_header",
]

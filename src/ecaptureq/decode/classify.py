"""Recognise what a captured plaintext chunk is, as eCapture's ``Event.type`` does.

:func:`classify_payload` is what a capture source calls to fill ``Event.type`` (0 unknown, 1 HTTP/1.x
request, 2 HTTP/2 request, 3 HTTP/1.x response, 4 HTTP/2 response, 5 WebSocket). It looks only at the
bytes (and an optional direction hint), keeps no state, does no I/O and never raises.
"""

from __future__ import annotations

import re
from typing import Final

from ecaptureq.decode.http2 import (
    FRAME_HEADER_SIZE,
    H2_PREFACE,
    KNOWN_FRAME_TYPES,
    frame_header,
    frame_plausible,
)
from ecaptureq.decode.websocket import OPCODE_NAMES, ws_frame_header
from ecaptureq.protocol.messages import EventType

__all__ = ["H2_PREFACE", "classify_payload", "h2_direction", "h2_frame_start"]

# A request line: a method token, one space, a target without spaces or control bytes, one space and
# HTTP/1.0 or HTTP/1.1. A capture is at most 16 KiB and may end inside the line, so a well-known
# method followed by a space is enough when the line is incomplete.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [^\s\x00-\x1f]{1,8192} HTTP/1\.[01]\r?\n")
_KNOWN_METHODS: Final = frozenset(
    {
        b"GET",
        b"POST",
        b"PUT",
        b"DELETE",
        b"HEAD",
        b"OPTIONS",
        b"PATCH",
        b"CONNECT",
        b"TRACE",
        b"PROPFIND",
        b"PROPPATCH",
        b"MKCOL",
        b"COPY",
        b"MOVE",
        b"LOCK",
        b"UNLOCK",
        b"REPORT",
        b"SEARCH",
        b"PURGE",
    }
)
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-9][0-9]{2}(?:[ \r\n]|$)")
_PRI_PREFIX = b"PRI * HTTP/2"

_H2_HEADERS = 0x1
_H2_PUSH_PROMISE = 0x5

_CAPTURE_LIMIT: Final = 4096
"""A chunk at least this long may end inside a WebSocket frame (eCapture cuts captures at 16 KiB)."""


def classify_payload(payload: bytes, is_write: bool | None = None) -> int:
    """Return the eCapture ``Event.type`` of a captured plaintext chunk.

    ``is_write`` says whether the traced process wrote (``True``) or read (``False``) the bytes, or
    ``None`` when that is unknown. It only decides HTTP/2 frames whose direction the bytes do not give
    away: a client preface or request pseudo-headers (``:method``, ``:path``...) make a request, a
    ``:status`` pseudo-header or a PUSH_PROMISE makes a response, and otherwise a write is read as a
    request (a client writes requests) and a read or an unknown direction as a response, as eCapture's
    own HTTP/2 response parser claims such frames.

    >>> classify_payload(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    1
    >>> classify_payload(b"HTTP/1.1 200 OK\\r\\n\\r\\n")
    3
    >>> classify_payload(b"hello")
    0
    """
    try:
        return _classify(bytes(payload), is_write)
    except Exception:  # a classifier must never break a capture loop
        return EventType.UNKNOWN


def _classify(data: bytes, is_write: bool | None) -> int:
    if not data:
        return EventType.UNKNOWN
    if data.startswith(_PRI_PREFIX) or (len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data)):
        return EventType.HTTP2_REQUEST
    if data.startswith(b"HTTP/") and (_STATUS_LINE.match(data) or (len(data) < 13 and b"\n" not in data)):
        return EventType.HTTP1_RESPONSE
    if _looks_like_request(data):
        return EventType.HTTP1_REQUEST
    h2 = h2_direction(data)
    if h2 is not None:
        if h2 == "request":
            return EventType.HTTP2_REQUEST
        if h2 == "response":
            return EventType.HTTP2_RESPONSE
        return EventType.HTTP2_REQUEST if is_write else EventType.HTTP2_RESPONSE
    if _looks_like_websocket(data):
        return EventType.WEBSOCKET
    return EventType.UNKNOWN


def _looks_like_request(data: bytes) -> bool:
    if _REQUEST_LINE.match(data):
        return True
    space = data.find(b" ", 0, 33)
    if space <= 0:
        return False
    if data[:space] not in _KNOWN_METHODS:
        return False
    line_end = data.find(b"\n")
    if line_end == -1:
        # The capture ends inside the request line: accept a known method and a plausible target.
        rest = data[space + 1 :]
        return not rest or rest[:1] in (b"/", b"*", b"h", b"H") or b"." in rest[:256]
    return False


def h2_direction(data: bytes) -> str | None:
    """Whether ``data`` is a run of HTTP/2 frames, and which way: request, response or unknown.

    Returns ``None`` when the bytes are not HTTP/2 frames. The run must start at a frame header and
    every complete frame must have a known type and a reserved bit of zero; the last frame may be cut
    short by the capture limit.
    """
    pos = 0
    n = len(data)
    frames = 0
    direction = "unknown"
    while pos + FRAME_HEADER_SIZE <= n:
        length, ftype, flags, stream, reserved = frame_header(data, pos)
        if reserved or ftype not in KNOWN_FRAME_TYPES or not frame_plausible(ftype, flags, stream, length):
            return None
        body = data[pos + FRAME_HEADER_SIZE : pos + FRAME_HEADER_SIZE + length]
        if direction == "unknown":
            if ftype == _H2_PUSH_PROMISE:
                direction = "response"
            elif ftype == _H2_HEADERS:
                direction = _hpack_direction(_headers_block(body, flags))
        frames += 1
        pos += FRAME_HEADER_SIZE + length
    complete = frames - 1 if pos > n else frames
    if complete == 0 and n < _CAPTURE_LIMIT:
        # A lone frame cut short in a short chunk (or just a stub): the capture limit does not explain
        # that, so the bytes are most likely not HTTP/2.
        return None
    return direction


def h2_frame_start(data: bytes) -> bool:
    """Whether ``data`` is the start of one HTTP/2 frame cut short: a plausible 9-byte frame header
    (or fewer than 9 bytes that could begin one) followed by less than the frame's length.

    :func:`classify_payload` does not call such a chunk HTTP/2 (too little evidence); a stateful decoder
    can hold it and classify it together with what follows.
    """
    if len(data) < FRAME_HEADER_SIZE:
        return len(data) >= 3 and (len(data) < 4 or data[3] in KNOWN_FRAME_TYPES)
    length, ftype, flags, stream, reserved = frame_header(data)
    if reserved or ftype not in KNOWN_FRAME_TYPES:
        return False
    return len(data) < FRAME_HEADER_SIZE + length and frame_plausible(ftype, flags, stream, length)


def _headers_block(body: bytes, flags: int) -> bytes:
    pos = 0
    if flags & 0x8 and body:  # PADDED
        pos += 1
    if flags & 0x20:  # PRIORITY
        pos += 5
    return body[pos:]


def _hpack_direction(block: bytes) -> str:
    """Guess request or response from the first header field of an HPACK block.

    Pseudo-headers come first; the static table has ``:authority``, ``:method``, ``:path`` and
    ``:scheme`` at indices 1-7 and ``:status`` at 8-14.
    """
    pos = 0
    while pos < len(block) and block[pos] & 0xE0 == 0x20:  # dynamic table size update
        pos += 1
        if block[pos - 1] & 0x1F == 0x1F:
            while pos < len(block) and block[pos] & 0x80:
                pos += 1
            pos += 1
    if pos >= len(block):
        return "unknown"
    b = block[pos]
    if b & 0x80:
        index = b & 0x7F
    elif b & 0xC0 == 0x40:
        index = b & 0x3F
    else:
        index = b & 0x0F
    if 1 <= index <= 7:
        return "request"
    if 8 <= index <= 14:
        return "response"
    return "unknown"


def _looks_like_websocket(data: bytes) -> bool:
    """Whether ``data`` is exactly one or more whole RFC 6455 frames (the last one may be cut short)."""
    pos = 0
    n = len(data)
    frames = 0
    while pos < n:
        header = ws_frame_header(data, pos)
        if header is None:
            return False
        fin, rsv, opcode, masked, length, size = header
        if opcode not in OPCODE_NAMES or rsv & 0x3:  # RSV2/RSV3 are never set without an extension
            return False
        if not fin and not rsv and opcode == 0 and length == 0:
            # An empty, non-final continuation frame says nothing; 00 00 is how a small HTTP/2 frame starts.
            return False
        if pos + size > n:
            return False  # the capture ended inside the header
        extended = size - 4 * masked - 2
        if (extended == 2 and length < 126) or (extended == 8 and (length < 65536 or length >> 63)):
            return False  # not the shortest length encoding: a real sender never writes that
        if opcode >= 0x8 and (length > 125 or not fin):
            return False
        end = pos + size + length
        frames += 1
        if end > n:
            # Only the last frame may be cut short, by the capture limit, after whole frames or when
            # the chunk is as long as a capture can be.
            return frames > 1 or n >= _CAPTURE_LIMIT
        pos = end
    return frames > 0

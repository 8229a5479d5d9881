"""Recognise what a captured plaintext chunk is, as eCapture's ``Event.type`` does.

:func:`classify_payload` is what a capture source calls to fill ``Event.type`` (0 unknown, 1 HTTP/1.x
request, 2 HTTP/2 request, 3 HTTP/1.x response, 4 HTTP/2 response, 5 WebSocket). It looks only at the
bytes (and an optional direction hint), keeps no state, does no I/O and never raises.
"""

from __future__ import annotations

import re
from typing import Final

from ecaptureq.protocol.messages import EventType

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The HTTP/2 client connection preface (RFC 9113 section 3.4)."""

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

# HTTP/2 frame types defined by RFC 9113 (0-9) plus ALTSVC (10), ORIGIN (12) and PRIORITY_UPDATE (16).
_H2_FRAME_TYPES: Final = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16})
_H2_HEADERS = 0x1
_H2_PUSH_PROMISE = 0x5
_H2_CONTINUATION = 0x9
_H2_SETTINGS = 0x4
_H2_PING = 0x6
_H2_GOAWAY = 0x7
_H2_MAX_FRAME = 1 << 24

_CAPTURE_LIMIT: Final = 4096
"""A chunk at least this long may end inside a WebSocket frame (eCapture cuts captures at 16 KiB)."""
_WS_OPCODES: Final = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})


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
    h2 = _h2_direction(data)
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


def _h2_direction(data: bytes) -> str | None:
    """Whether ``data`` is a run of HTTP/2 frames, and which way: request, response or unknown.

    Returns ``None`` when the bytes are not HTTP/2 frames. The run must start at a frame header and
    every complete frame must have a known type and a reserved bit of zero; the last frame may be cut
    short by the capture limit.
    """
    pos = 0
    n = len(data)
    frames = 0
    direction = "unknown"
    while pos + 9 <= n:
        length = int.from_bytes(data[pos : pos + 3], "big")
        ftype = data[pos + 3]
        flags = data[pos + 4]
        stream = int.from_bytes(data[pos + 5 : pos + 9], "big")
        if stream & 0x80000000 or ftype not in _H2_FRAME_TYPES or length >= _H2_MAX_FRAME:
            return None
        if not _h2_frame_plausible(ftype, flags, stream, length):
            return None
        body = data[pos + 9 : pos + 9 + length]
        if direction == "unknown":
            if ftype == _H2_PUSH_PROMISE:
                direction = "response"
            elif ftype == _H2_HEADERS:
                direction = _hpack_direction(_headers_block(body, flags))
        frames += 1
        pos += 9 + length
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
    if len(data) < 9:
        return (
            len(data) >= 3
            and int.from_bytes(data[:3], "big") < _H2_MAX_FRAME
            and (len(data) < 4 or data[3] in _H2_FRAME_TYPES)
        )
    length = int.from_bytes(data[:3], "big")
    ftype, flags = data[3], data[4]
    stream = int.from_bytes(data[5:9], "big")
    if stream & 0x80000000 or ftype not in _H2_FRAME_TYPES:
        return False
    return len(data) < 9 + length and _h2_frame_plausible(ftype, flags, stream, length)


def _h2_frame_plausible(ftype: int, flags: int, stream: int, length: int) -> bool:
    if ftype == _H2_SETTINGS:
        return stream == 0 and length % 6 == 0 and flags & ~0x1 == 0 and not (flags & 1 and length)
    if ftype == _H2_PING:
        return stream == 0 and length == 8 and flags & ~0x1 == 0
    if ftype == _H2_GOAWAY:
        return stream == 0 and length >= 8
    if ftype == 0x8:  # WINDOW_UPDATE
        return length == 4 and flags == 0
    if ftype == 0x3:  # RST_STREAM
        return stream != 0 and length == 4 and flags == 0
    if ftype == 0x2:  # PRIORITY
        return stream != 0 and length == 5 and flags == 0
    if ftype in (0x0, _H2_HEADERS, _H2_CONTINUATION, _H2_PUSH_PROMISE):
        return stream != 0
    return True


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
        if pos + 2 > n:
            return False
        b0, b1 = data[pos], data[pos + 1]
        opcode = b0 & 0x0F
        if opcode not in _WS_OPCODES or b0 & 0x30:  # RSV2/RSV3 are never set without an extension
            return False
        if b0 == 0 and b1 & 0x7F == 0:
            # An empty, non-final continuation frame says nothing; 00 00 is how a small HTTP/2 frame starts.
            return False
        masked = b1 & 0x80
        length = b1 & 0x7F
        hdr = 2
        if length == 126:
            if pos + 4 > n:
                return False
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            hdr = 4
            if length < 126:
                return False
        elif length == 127:
            if pos + 10 > n:
                return False
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            hdr = 10
            if length < 65536 or length >> 63:
                return False
        if opcode >= 0x8 and (length > 125 or not b0 & 0x80):
            return False
        if masked:
            hdr += 4
        end = pos + hdr + length
        frames += 1
        if end > n:
            # Only the last frame may be cut short, by the capture limit, after whole frames or when
            # the chunk is as long as a capture can be.
            return pos + hdr <= n and (frames > 1 or n >= _CAPTURE_LIMIT)
        pos = end
    return frames > 0

"""HTTP/2 decoding: frames parsed from captured bytes, HPACK decoded statefully per direction, streams
reassembled into requests and responses.

An :class:`H2Connection` holds both directions of one connection. Each direction has its own frame buffer
(a frame may be split over captures) and its own HPACK decoder (the dynamic table of one side's encoder),
so a header block is decoded only once and in order. HEADERS with CONTINUATION, DATA with padding,
trailers, SETTINGS, WINDOW_UPDATE, RST_STREAM, GOAWAY, PING, PRIORITY and PUSH_PROMISE are understood.
Bad HPACK, frames that do not add up and garbage give errors plus the raw bytes, never an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, Literal

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT
from ecaptureq.decode.hpack_tolerant import TolerantDecoder
from ecaptureq.decode.model import H2Frame, HttpMessage, absolute_url

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The HTTP/2 client connection preface (RFC 9113 section 3.4)."""

FRAME_HEADER_SIZE: Final = 9
"""Bytes in an HTTP/2 frame header: length (24 bits), type, flags, reserved bit and stream id (31 bits)."""
_FRAME_HEADER: Final = struct.Struct(">BHBBL")


def frame_header(data: bytes | bytearray, pos: int = 0) -> tuple[int, int, int, int, bool]:
    """The HTTP/2 frame header at ``data[pos:]``: ``(length, type, flags, stream_id, reserved)``.

    ``reserved`` is the bit before the stream id (always 0 on the wire: a set bit means the bytes are not
    a frame header). The caller checks that :data:`FRAME_HEADER_SIZE` bytes are there (else
    :class:`struct.error`). The one parser of frame headers, for the decoder, the classifier and the
    benchmarks.

    >>> frame_header(bytes.fromhex("00000c0401" "00000003"))
    (12, 4, 1, 3, False)
    """
    high, low, ftype, flags, stream = _FRAME_HEADER.unpack_from(data, pos)
    return high << 16 | low, ftype, flags, stream & 0x7FFFFFFF, stream > 0x7FFFFFFF


def frame_plausible(ftype: int, flags: int, stream_id: int, length: int) -> bool:
    """Whether a frame header's fields agree with RFC 9113 for its type (a SETTINGS frame on stream 0
    with a length that is a multiple of 6, a PING of 8 bytes, a DATA frame on a stream...)."""
    # DATA and HEADERS first (most frames are), then CONTINUATION and PUSH_PROMISE: all on a stream
    if ftype <= 0x1 or ftype == 0x9 or ftype == 0x5:
        return stream_id != 0
    if ftype == 0x4:  # SETTINGS
        return stream_id == 0 and length % 6 == 0 and flags & ~0x1 == 0 and not (flags & 1 and length)
    if ftype == 0x6:  # PING
        return stream_id == 0 and length == 8 and flags & ~0x1 == 0
    if ftype == 0x7:  # GOAWAY
        return stream_id == 0 and length >= 8
    if ftype == 0x8:  # WINDOW_UPDATE
        return length == 4 and flags == 0
    if ftype == 0x3:  # RST_STREAM
        return stream_id != 0 and length == 4 and flags == 0
    if ftype == 0x2:  # PRIORITY
        return stream_id != 0 and length == 5 and flags == 0
    return True


Side = Literal["client", "server"]
"""Which end of the connection sent the bytes: the client sends requests, the server responses."""

FRAME_NAMES: Final[dict[int, str]] = {
    0: "DATA",
    1: "HEADERS",
    2: "PRIORITY",
    3: "RST_STREAM",
    4: "SETTINGS",
    5: "PUSH_PROMISE",
    6: "PING",
    7: "GOAWAY",
    8: "WINDOW_UPDATE",
    9: "CONTINUATION",
    10: "ALTSVC",
    12: "ORIGIN",
    16: "PRIORITY_UPDATE",
}
"""HTTP/2 frame type names."""

ERROR_CODES: Final[dict[int, str]] = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "COMPRESSION_ERROR",
    10: "CONNECT_ERROR",
    11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY",
    13: "HTTP_1_1_REQUIRED",
}
"""HTTP/2 error code names (RST_STREAM, GOAWAY)."""

SETTING_NAMES: Final[dict[int, str]] = {
    1: "HEADER_TABLE_SIZE",
    2: "ENABLE_PUSH",
    3: "MAX_CONCURRENT_STREAMS",
    4: "INITIAL_WINDOW_SIZE",
    5: "MAX_FRAME_SIZE",
    6: "MAX_HEADER_LIST_SIZE",
    8: "ENABLE_CONNECT_PROTOCOL",
}
"""HTTP/2 SETTINGS parameter names."""

_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY = 0x20
_ONE_FRAME_BLOCK = _END_HEADERS | _PADDED | _PRIORITY
_MAX_FRAME: Final = (1 << 24) - 1
KNOWN_FRAME_TYPES: Final = frozenset(FRAME_NAMES)
"""The frame types of RFC 9113 (0-9) plus ALTSVC (10), ORIGIN (12) and PRIORITY_UPDATE (16)."""
UNKNOWN_TABLE_NOTE: Final = (
    "they refer to header table entries sent before the capture began (a late join); "
    "later ones are learned as the connection goes on"
)
"""Why a field of an HTTP/2 header block is unknown (exports cite it beside an unknown method or URL)."""
_MAX_STREAMS: Final = 256
_MAX_HEADER_LIST: Final = 1 << 20
_MAX_HEADER_BLOCK: Final = 1 << 20
"""The most bytes of one header block (HEADERS and its CONTINUATION frames) that are kept; beyond it the
block is dropped as it arrives (a HEADERS without END_HEADERS followed by endless CONTINUATION)."""


@dataclass(slots=True)
class H2Result:
    """What one chunk of HTTP/2 bytes gave: completed messages, control frames, errors and the raw bytes
    that could not be decoded."""

    messages: list[HttpMessage] = field(default_factory=list)
    frames: list[H2Frame] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: bytes = b""


class _Stream:
    """One stream's message in progress (a plain class: one is made per stream, so per message)."""

    __slots__ = (
        "body",
        "errors",
        "have_headers",
        "headers",
        "notes",
        "raw_headers",
        "size",
        "summary",
        "time_ns",
        "trailers",
        "truncated",
    )

    def __init__(self, time_ns: int | None = None) -> None:
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.have_headers = False
        self.body: bytes | bytearray = b""  # bytes while one DATA frame carried it all, then a bytearray
        self.size = 0
        self.truncated = False
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.time_ns = time_ns
        self.raw_headers = b""
        self.summary = _NO_SUMMARY


@dataclass(slots=True)
class _Block:
    stream_id: int
    fragments: bytearray
    end_stream: bool
    promised: int | None  # the promised stream of a PUSH_PROMISE
    dropped: int = 0  # bytes not kept, once the block grew beyond _MAX_HEADER_BLOCK


_CACHED_BLOCKS: Final = 8
"""Header blocks remembered per direction with what they decoded to (gRPC repeats a few, all references
to the header table; a client's request blocks, a server's response headers and trailers). Each is at most
:data:`_CACHED_BLOCK_SIZE` bytes, sent and decoded (as RFC 7541 counts them), so a direction holds a few
KiB for them at most, beside the header table's up to 1 MiB."""
_CACHED_BLOCK_SIZE: Final = 1024


class _Direction:
    """One direction of an HTTP/2 connection."""

    def __init__(self, side: Side) -> None:
        self.side: Side = side
        self.buf = bytearray()  # the start of a frame (or of the preface) not yet whole
        self.need = 0  # the bytes that frame needs in buf to be whole
        # Tolerate any table size the encoder announces: we may have missed the SETTINGS that allowed it.
        # Until the connection's start is seen, its header table may hold entries sent before the capture.
        self.decoder = TolerantDecoder(max_table_size=_MAX_FRAME, max_header_list_size=_MAX_HEADER_LIST)
        # block bytes -> (decoder generation, its fields as text, its note on unknown fields, _summary())
        self.cache: dict[bytes, tuple[int, tuple[tuple[str, str], ...], str, _Summary]] = {}
        self.frames_seen = 0
        self.block: _Block | None = None
        self.streams: dict[int, _Stream] = {}
        self.preface_done = False
        self.max_frame = _MAX_FRAME

    def restart(self) -> None:
        """The connection's start is seen: its header table starts empty."""
        self.decoder = _from_start()
        self.cache.clear()


class H2Connection:
    """Both directions of one HTTP/2 connection, fed captured bytes with :meth:`feed`.

    ``body_limit`` caps each body (before and after decompression); ``scheme`` is used for URLs when a
    request carries no ``:scheme``.
    """

    def __init__(self, *, body_limit: int = DEFAULT_BODY_LIMIT, scheme: str = "https") -> None:
        self.body_limit = body_limit
        self.scheme = scheme
        self._dirs: dict[Side, _Direction] = {"client": _Direction("client"), "server": _Direction("server")}

    @property
    def buffered(self) -> int:
        """Bytes held in frame buffers and unfinished bodies (for the tracker's memory bound)."""
        total = 0
        for d in self._dirs.values():
            if d.buf:
                total += len(d.buf)
            if d.streams:
                total += sum(len(s.body) for s in d.streams.values())
            if d.block is not None:
                total += len(d.block.fragments)
        return total

    def feed(self, side: Side, data: bytes, time_ns: int | None = None) -> H2Result:
        """Feed bytes ``side`` sent; return what they complete. Never raises."""
        result = H2Result()
        d = self._dirs[side]
        try:
            self._feed(d, data if type(data) is bytes else bytes(data), time_ns, result)
        except Exception as exc:  # the parser is defensive; this is a last resort
            result.errors.append(f"HTTP/2: {type(exc).__name__}: {exc}")
            result.raw = bytes(d.buf) or bytes(data)
            d.buf = bytearray()
        return result

    def flush(self) -> list[HttpMessage]:
        """End of capture: every stream in progress, as incomplete messages."""
        out: list[HttpMessage] = []
        for d in self._dirs.values():
            for sid, st in list(d.streams.items()):
                if st.have_headers or st.body:
                    msg = self._message(d, sid, st)
                    msg.complete = False
                    msg.notes.append("capture ended before the stream did")
                    out.append(msg)
            d.streams.clear()
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _feed(self, d: _Direction, data: bytes, time_ns: int | None, result: H2Result) -> None:
        if d.buf:
            d.buf += data
            if len(d.buf) < d.need:
                return  # the frame (or preface) held is still not whole: no copy of it until it is
            buf = bytes(d.buf)
            d.buf = bytearray()
        else:
            buf = data
        if not d.preface_done:
            if len(buf) < len(H2_PREFACE) and H2_PREFACE.startswith(buf):
                d.buf = bytearray(buf)
                d.need = 1
                return  # wait for the rest of the preface
            if buf.startswith(H2_PREFACE):
                buf = buf[len(H2_PREFACE) :]
                d.restart()
                result.frames.append(H2Frame("PREFACE", 0, 0, "client connection preface"))
            d.preface_done = True
        end = len(buf)
        pos = 0
        need = FRAME_HEADER_SIZE
        unpack = _FRAME_HEADER.unpack_from
        try:
            while end - pos >= FRAME_HEADER_SIZE:
                # frame_header(), inlined: this loop runs once a frame
                high, low, ftype, flags, sid = unpack(buf, pos)
                length = high << 16 | low
                if (
                    sid > 0x7FFFFFFF
                    or length > d.max_frame
                    # DATA and HEADERS on a stream are plausible (frame_plausible says so, uncalled)
                    or not ((ftype <= 1 and sid) or frame_plausible(ftype, flags, sid, length))
                ):
                    sid &= 0x7FFFFFFF
                    result.errors.append(
                        f"HTTP/2: not a frame boundary (type {ftype}, length {length}, stream {sid}); "
                        f"{end - pos} bytes skipped"
                    )
                    result.raw = buf[pos:]
                    pos = end
                    d.block = None
                    return
                start = pos + FRAME_HEADER_SIZE
                if end < start + length:
                    need = FRAME_HEADER_SIZE + length
                    return
                pos = start + length
                body = buf[start:pos]
                d.frames_seen += 1
                if ftype == 0 and d.block is None:  # DATA, the most frequent frame
                    self._data(d, flags, sid, body, time_ns, result)
                elif ftype == 1 and d.block is None and flags & _ONE_FRAME_BLOCK == _END_HEADERS:
                    # HEADERS in one frame, unpadded, without priority: as _frame would take it
                    self._header_block(d, sid, body, bool(flags & _END_STREAM), None, time_ns, result)
                else:
                    self._frame(d, ftype, flags, sid, body, time_ns, result)
        finally:
            if pos < end:
                d.buf = bytearray(buf[pos:])
                d.need = need

    def _data(
        self, d: _Direction, flags: int, sid: int, body: bytes, time_ns: int | None, result: H2Result
    ) -> None:
        payload, err = _unpad(body, flags) if flags & _PADDED else (body, None)
        st = d.streams.get(sid) or self._stream(d, sid, time_ns)
        if err:
            st.errors.append(err)
        st.size += len(payload)
        have = st.body
        room = self.body_limit - len(have)
        if room > 0:
            if not have:
                st.body = payload[:room] if len(payload) > room else payload
            else:
                if type(have) is bytes:
                    st.body = have = bytearray(have)
                have += payload[:room]
        if len(payload) > room:
            st.truncated = True
        if flags & _END_STREAM:
            result.messages.append(self._complete(d, sid))

    def _frame(
        self,
        d: _Direction,
        ftype: int,
        flags: int,
        sid: int,
        body: bytes,
        time_ns: int | None,
        result: H2Result,
    ) -> None:
        if d.frames_seen == 1 and d.side == "server" and ftype == 4 and not flags & _ACK:
            d.restart()  # the server's connection preface: its first frame
        if d.block is not None and ftype != 9:
            name = FRAME_NAMES.get(ftype, f"type {ftype}")
            result.errors.append(f"HTTP/2: {name} frame inside a header block of stream {d.block.stream_id}")
            d.block = None
        if ftype == 0:  # DATA
            self._data(d, flags, sid, body, time_ns, result)
        elif ftype == 1 and flags & _END_HEADERS and not flags & (_PADDED | _PRIORITY):
            # HEADERS in one frame, the usual case: no block to gather
            self._header_block(d, sid, body, bool(flags & _END_STREAM), None, time_ns, result)
        elif ftype in (1, 5):  # HEADERS, PUSH_PROMISE
            fragment, err = _unpad(body, flags)
            promised: int | None = None
            if ftype == 1 and flags & _PRIORITY:
                fragment = fragment[5:]
            if ftype == 5:
                promised = int.from_bytes(fragment[:4], "big") & 0x7FFFFFFF
                fragment = fragment[4:]
            if err:
                result.errors.append(err)
            d.block = _Block(sid, bytearray(fragment), bool(flags & _END_STREAM) and ftype == 1, promised)
            if ftype == 1:
                self._stream(d, sid, time_ns)
            if flags & _END_HEADERS:
                self._end_block(d, time_ns, result)
        elif ftype == 9:  # CONTINUATION
            if d.block is None or d.block.stream_id != sid:
                result.errors.append(f"HTTP/2: CONTINUATION on stream {sid} without HEADERS")
                d.decoder.forget()
                return
            block = d.block
            if block.dropped or len(block.fragments) + len(body) > _MAX_HEADER_BLOCK:
                block.dropped += len(block.fragments) + len(body)
                block.fragments.clear()
            else:
                block.fragments += body
            if flags & _END_HEADERS:
                self._end_block(d, time_ns, result)
        else:
            result.frames.append(self._control(d, ftype, flags, sid, body, result))

    def _control(
        self, d: _Direction, ftype: int, flags: int, sid: int, body: bytes, result: H2Result
    ) -> H2Frame:
        name = FRAME_NAMES.get(ftype, f"type {ftype}")
        summary = f"{len(body)} bytes"
        if ftype == 4:  # SETTINGS
            if flags & _ACK:
                summary = "ACK"
            else:
                items = []
                for i in range(0, len(body) - len(body) % 6, 6):
                    ident = int.from_bytes(body[i : i + 2], "big")
                    value = int.from_bytes(body[i + 2 : i + 6], "big")
                    items.append(f"{SETTING_NAMES.get(ident, f'0x{ident:x}')}={value}")
                    if ident == 5 and 16384 <= value <= _MAX_FRAME:
                        # The peer may now send frames this large; lenient anyway, so only raise.
                        other = self._dirs["server" if d.side == "client" else "client"]
                        other.max_frame = max(other.max_frame, value)
                summary = ", ".join(items) or "(none)"
        elif ftype == 8:  # WINDOW_UPDATE
            summary = f"increment {int.from_bytes(body[:4], 'big') & 0x7FFFFFFF}"
        elif ftype == 6:  # PING
            summary = ("ACK " if flags & _ACK else "") + body.hex()
        elif ftype == 3:  # RST_STREAM
            code = int.from_bytes(body[:4], "big")
            summary = ERROR_CODES.get(code, f"error 0x{code:x}")
            st = d.streams.get(sid)
            if st is not None and (st.have_headers or st.body):
                st.notes.append(f"stream reset: {summary}")
                msg = self._complete(d, sid)
                msg.complete = False
                result.messages.append(msg)
        elif ftype == 7:  # GOAWAY
            last = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(body[4:8], "big")
            debug = body[8:].decode("utf-8", "replace")
            summary = f"last stream {last}, {ERROR_CODES.get(code, f'error 0x{code:x}')}"
            if debug:
                summary += f", {debug!r}"
        elif ftype == 2:  # PRIORITY
            dep = int.from_bytes(body[:4], "big")
            summary = (
                f"depends on {dep & 0x7FFFFFFF}{' (exclusive)' if dep >> 31 else ''}, weight {body[4] + 1}"
            )
        return H2Frame(name, sid, flags, summary)

    def _stream(self, d: _Direction, sid: int, time_ns: int | None) -> _Stream:
        st = d.streams.get(sid)
        if st is None:
            if len(d.streams) >= _MAX_STREAMS:
                d.streams.pop(next(iter(d.streams)))
            st = d.streams[sid] = _Stream(time_ns)
        return st

    def _end_block(self, d: _Direction, time_ns: int | None, result: H2Result) -> None:
        block = d.block
        d.block = None
        assert block is not None
        if block.dropped:
            # Its header table updates are lost with it: later references may be to entries never seen.
            d.decoder.forget()
            st = self._stream(d, block.stream_id, time_ns)
            st.errors.append(
                f"HTTP/2: header block of {block.dropped} bytes exceeds {_MAX_HEADER_BLOCK}: dropped"
            )
            if block.end_stream:
                result.messages.append(self._complete(d, block.stream_id))
            return
        self._header_block(
            d, block.stream_id, bytes(block.fragments), block.end_stream, block.promised, time_ns, result
        )

    def _header_block(
        self,
        d: _Direction,
        sid: int,
        fragment: bytes,
        end_stream: bool,
        promised: int | None,
        time_ns: int | None,
        result: H2Result,
    ) -> None:
        """A complete header block of stream ``sid`` (or the block of a PUSH_PROMISE on it)."""
        st = self._stream(d, sid, time_ns) if promised is None else None
        decoder = d.decoder
        hit = d.cache.get(fragment)
        summary: _Summary | None = None
        if hit is not None and hit[0] == decoder.generation:
            headers = list(hit[1])
            note = hit[2]
            summary = hit[3]
        else:
            generation = decoder.generation
            decoded = decoder.decode(fragment)
            headers = []
            unknown = []
            for f in decoded.fields:
                if type(f) is tuple:
                    headers.append((f[0].decode("utf-8", "replace"), f[1].decode("utf-8", "replace")))
                else:
                    unknown.append(f.describe())  # type: ignore[union-attr]  # an UnknownField
            note = ""
            if unknown:
                note = (
                    f"{len(unknown)} header field{'s' if len(unknown) != 1 else ''} unknown: "
                    f"{UNKNOWN_TABLE_NOTE}: " + "; ".join(unknown)
                )
            if decoded.errors:
                if st is not None:
                    # The message carries the errors; its raw bytes are the header block.
                    st.errors.extend(decoded.errors)
                    st.raw_headers += fragment
                else:
                    result.errors.extend(decoded.errors)
                    result.raw = fragment
            elif (
                decoder.generation == generation
                and decoded.size <= _CACHED_BLOCK_SIZE
                and len(fragment) <= _CACHED_BLOCK_SIZE
            ):
                # The block left the table as it was: it decodes the same until the table changes.
                if len(d.cache) >= _CACHED_BLOCKS:
                    d.cache.clear()
                summary = _summary(headers)
                d.cache[fragment] = (generation, tuple(headers), note, summary)
        if st is None:
            path = dict(headers).get(":path", "?")
            result.frames.append(H2Frame("PUSH_PROMISE", sid, 0, f"promised stream {promised}: {path}"))
            return
        if note:
            st.notes.append(note)
        interim = bool(headers) and headers[0][0] == ":status" and headers[0][1].startswith("1")
        if st.have_headers and not interim:
            st.trailers.extend(headers)
        elif interim and not st.have_headers:
            st.notes.append(f"interim response {headers[0][1]}")
        else:
            st.headers = headers
            st.summary = summary if summary is not None else _summary(headers)
            st.have_headers = True
        if end_stream:
            result.messages.append(self._complete(d, sid))

    def _complete(self, d: _Direction, sid: int) -> HttpMessage:
        st = d.streams.pop(sid, None) or _Stream()
        return self._message(d, sid, st)

    def _message(self, d: _Direction, sid: int, st: _Stream) -> HttpMessage:
        request = d.side == "client"
        method, path, scheme, authority, status, ctype, cenc = st.summary
        if scheme is None:
            scheme = self.scheme if request else ""
        url = ""
        if request:
            if authority and path.startswith("/"):
                url = absolute_url(scheme, authority, path)
            elif path or method == "CONNECT":
                url = path or authority
            # else the :path is unknown (a late join): no URL rather than a made-up one
        msg = HttpMessage(
            kind="request" if request else "response",
            protocol="h2",
            stream_id=sid,
            headers=st.headers,
            time_ns=st.time_ns,
            trailers=st.trailers,
            errors=st.errors,  # the stream is done with: its lists become the message's
            notes=st.notes,
            method=method,
            url=url,
            path=path,
            scheme=scheme,
            authority=authority,
            # ASCII digits only: int() refuses some that str.isdigit() accepts ("²")
            status=int(status) if status.isascii() and status.isdigit() else None,
            content_type=ctype,
            content_encoding=cenc,
        )
        if not st.have_headers:
            msg.complete = False
            msg.errors.append("HTTP/2: stream data without its HEADERS (capture joined late?)")
        msg.set_body(bytes(st.body), st.size, st.truncated, self.body_limit)
        if msg.errors:
            msg.raw = bytes(st.raw_headers) + msg.raw_body
        return msg


_Summary = tuple[str, str, str | None, str, str, str, str]
"""What a message needs of its header block: ``:method``, ``:path``, ``:scheme`` (``None`` when absent),
the authority (``:authority``, else the first ``host``), ``:status``, the first ``content-type`` and
``content-encoding``."""
_NO_SUMMARY: Final[_Summary] = ("", "", None, "", "", "", "")


def _summary(headers: list[tuple[str, str]]) -> _Summary:
    """The :data:`_Summary` of ``headers``, in one pass: of pseudo-headers the last of a name counts (as a
    dict of them would have it); of the others the first, matched without case (``HttpMessage.header``)."""
    method = path = authority = status = ""
    scheme: str | None = None
    host: str | None = None
    ctype: str | None = None
    cenc: str | None = None
    for k, v in headers:
        if k[:1] == ":":
            if k == ":method":
                method = v
            elif k == ":path":
                path = v
            elif k == ":scheme":
                scheme = v
            elif k == ":authority":
                authority = v
            elif k == ":status":
                status = v
            continue
        lk = k.lower()
        if lk == "content-type":
            if ctype is None:
                ctype = v
        elif lk == "content-encoding":
            if cenc is None:
                cenc = v
        elif lk == "host" and host is None:
            host = v
    return method, path, scheme, authority or host or "", status, ctype or "", cenc or ""


def _from_start() -> TolerantDecoder:
    return TolerantDecoder(from_start=True, max_table_size=_MAX_FRAME, max_header_list_size=_MAX_HEADER_LIST)


def _unpad(body: bytes, flags: int) -> tuple[bytes, str | None]:
    if not flags & _PADDED:
        return body, None
    if not body:
        return b"", "HTTP/2: PADDED frame without a pad length"
    pad = body[0]
    if pad > len(body) - 1:
        return body[1:], f"HTTP/2: padding ({pad}) longer than the frame"
    return body[1 : len(body) - pad], None

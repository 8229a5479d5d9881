"""HTTP/1.x decoding with h11: one :class:`Http1Parser` per direction of a connection.

The parser is fed the bytes one side sent, in capture order, and returns each message as it completes
(several in one chunk, or one split over many). Chunked transfer coding is undone by h11; Content-Encoding,
charsets, JSON and forms by :mod:`ecaptureq.decode.bodies`. Bytes h11 rejects become a message marked
incomplete, with the error and the raw bytes, and the parser looks for the next message start in what
follows. Never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal

import h11
from h11._abnf import field_name, request_line, status_line  # h11 0.14-0.16; pinned in pyproject

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT
from ecaptureq.decode.model import HttpMessage, Protocol, absolute_url, library_error

_MAX_HEADER_BLOCK: Final = 64 * 1024
_RAW_KEEP: Final = 64 * 1024
_REQUEST_START = re.compile(rb"(?:^|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [^\s]{1,8192} HTTP/1\.[01]\r?\n)")
_RESPONSE_START = re.compile(rb"(?:^|\n)(HTTP/1\.[01] [1-9][0-9]{2}[^\n]*\n)")


_STRONG_REQUEST = re.compile(
    rb"[A-Z]{3,16} (?:/|https?://|\*)[^\s]{0,8192} HTTP/1\.[01]\r\n(?:\r\n|[!#$%&'*+.^_`|~0-9A-Za-z-]+:)"
)
_STRONG_RESPONSE = re.compile(
    rb"HTTP/1\.[01] [1-5][0-9]{2}(?: [^\r\n]*)?\r\n(?:\r\n|[!#$%&'*+.^_`|~0-9A-Za-z-]+:)"
)


# h11's own grammar (its _abnf module), so the fast path accepts exactly the heads h11 accepts.
# What h11's header_field allows after the colon (OWS, a field-value, OWS) is any run of characters that
# are not NUL, CR, LF, VT or FF; so a head's header lines are one match, read as ISO-8859-1 text (one
# character a byte; re.ASCII keeps \s to the bytes regex's six), and its start line another (h11's start
# lines hold no CR or LF, so the first CRLF ends one). tests/decode/test_http1_fast.py checks this line
# grammar against h11's header_field.
FIELD_LINE: Final = f"{field_name}:[^\\x00\\n\\r\\x0b\\x0c]*"
"""One header line as h11's grammar accepts it, in a simpler form that matches the same lines."""
# Each header line of header lines _FIELD_LINES matched: its name and its value with the leading OWS dropped
# (the trailing OWS is stripped after, when a line has any).
_FIELD_PAIRS: Final = re.compile(r"\r\n([^:]*):[ \t]*([^\r]*)")
_FIELD_LINES: Final = re.compile(f"(?:\\r\\n{FIELD_LINE})*", re.ASCII)
_REQUEST_LINE: Final = re.compile(request_line, re.ASCII)
_STATUS_LINE: Final = re.compile(status_line, re.ASCII)
_FAST_HEAD_MAX: Final = 16 * 1024
_FAST_METHOD_HINTS: Final = frozenset({None, "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A head naming one of these goes to h11: connection state h11 tracks. (Transfer-Encoding: see _read_fields.)
_FAST_REFUSED: Final = frozenset({"upgrade", "expect", "connection"})
_CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")
"""A chunk-size line the fast path takes: no extension, no whitespace (h11 takes more; those go to it)."""
_CHUNK_HEADER_START: Final = re.compile(rb"[0-9A-Fa-f]{0,16}\r?")
"""What of such a line may have come so far, when the rest is in a later read."""
_CHUNK_DATA, _CHUNK_CRLF, _CHUNK_SIZE, _CHUNK_LAST = 0, 1, 2, 3
"""Where the fast path is in a chunked body: in a chunk's data, at the CRLF after it, at a chunk-size
line, at the blank line after the last chunk."""
_CONTENT_LENGTH_DIGITS: Final = 20


class _Fields:
    """What the fast path needs of a head's header lines, worked out once per distinct text of them
    (a client repeats its header lines on every request of a connection; only the start line changes)."""

    __slots__ = ("chunked", "content_encoding", "content_type", "headers", "host", "hosts", "names", "size")

    def __init__(
        self, headers: list[tuple[str, str]], names: list[str], size: int, chunked: bool = False
    ) -> None:
        self.headers = tuple(headers)
        self.names = tuple(names)
        self.size = size
        """The Content-Length, or -1 when there is none."""
        self.chunked = chunked
        """The body is chunked (``Transfer-Encoding: chunked``, and no Content-Length)."""
        self.hosts = names.count("host")
        self.host = headers[names.index("host")][1] if self.hosts else ""
        self.content_type = headers[names.index("content-type")][1] if "content-type" in names else ""
        self.content_encoding = (
            headers[names.index("content-encoding")][1] if "content-encoding" in names else ""
        )


def _read_fields(lines: str) -> _Fields | None:
    """The :class:`_Fields` of a head's header lines (``lines``: each ``\\r\\n`` and a line, as in the
    head), or ``None`` when the fast path must leave the head to h11: a line h11's grammar refuses, a
    header of :data:`_FAST_REFUSED`, several Content-Lengths or one that is not plain digits, a
    Transfer-Encoding other than one ``chunked`` alone."""
    if _FIELD_LINES.fullmatch(lines) is None:
        return None
    headers: list[tuple[str, str]] = _FIELD_PAIRS.findall(lines)
    if headers and (lines.find(" \r") >= 0 or lines.find("\t\r") >= 0 or lines[-1] in " \t"):
        headers = [(name, value.rstrip(" \t")) for name, value in headers]
    names = [name.lower() for name, _ in headers]
    if not _FAST_REFUSED.isdisjoint(names):
        return None
    lengths = names.count("content-length")
    if lengths > 1:
        return None
    if "transfer-encoding" in names:
        if lengths or names.count("transfer-encoding") > 1:
            return None
        if headers[names.index("transfer-encoding")][1] != "chunked":
            return None  # h11 writes another spelling of chunked in lower case: left to h11
        return _Fields(headers, names, -1, chunked=True)
    size = -1
    if lengths:
        length = headers[names.index("content-length")][1]
        if not (length.isascii() and length.isdigit() and len(length) <= _CONTENT_LENGTH_DIGITS):
            return None
        size = int(length)
    return _Fields(headers, names, size)


_KNOWN_FIELDS: dict[str, _Fields | None] = {}
"""Header lines (as text) -> their :func:`_read_fields`; bounded, for the whole process."""
_KNOWN_FIELDS_MAX: Final = 128
_KNOWN_FIELDS_KEY_MAX: Final = 2048
"""Header lines longer than this are read each time, not remembered (so the cache holds at most
:data:`_KNOWN_FIELDS_MAX` times this much text)."""


def _fields_of(lines: str) -> _Fields | None:
    try:
        return _KNOWN_FIELDS[lines]
    except KeyError:
        pass
    fields = _read_fields(lines)
    if len(lines) <= _KNOWN_FIELDS_KEY_MAX:
        if len(_KNOWN_FIELDS) >= _KNOWN_FIELDS_MAX:  # bounded whatever a capture sends
            _KNOWN_FIELDS.clear()
        _KNOWN_FIELDS[lines] = fields
    return fields


_KNOWN_STATUS: dict[str, tuple[int, str] | None] = {}
"""HTTP/1.1 status lines -> their status and reason (``None``: not one by h11's grammar, or another
version); bounded, for the whole process: a server answers with a few."""
_KNOWN_STATUS_MAX: Final = 64
_KNOWN_STATUS_KEY_MAX: Final = 256


def _status_of(line: str) -> tuple[int, str] | None:
    try:
        return _KNOWN_STATUS[line]
    except KeyError:
        pass
    m = _STATUS_LINE.fullmatch(line)
    found = None
    if m is not None and m["http_version"] == "1.1":
        found = (int(m["status_code"]), m["reason"] or "")
    if len(line) <= _KNOWN_STATUS_KEY_MAX:
        if len(_KNOWN_STATUS) >= _KNOWN_STATUS_MAX:  # bounded whatever a capture sends
            _KNOWN_STATUS.clear()
        _KNOWN_STATUS[line] = found
    return found


def starts_message(data: bytes, kind: Literal["request", "response"]) -> bool:
    """Whether ``data`` plainly begins an HTTP/1.x request (or response): a whole start line followed by a
    header line or the blank line. Used to notice that captured bytes were lost inside a body."""
    pattern = _STRONG_REQUEST if kind == "request" else _STRONG_RESPONSE
    return pattern.match(data) is not None


def _text(value: bytes) -> str:
    return value.decode("iso-8859-1")


class Http1Parser:
    """Decode one direction of an HTTP/1.x connection: ``kind`` says whether it carries requests or
    responses.

    ``method_hint(n)`` gives the method of the request the ``n``-th response completed by the current
    :meth:`feed` call answers (``None`` when unknown): h11 needs it to know that a response to HEAD has no
    body. ``body_limit`` caps each body, before and after decompression.
    """

    # One parser a direction of every tracked connection: slots keep each small.
    __slots__ = (
        "_body",
        "_chunk",
        "_chunk_left",
        "_chunk_tail",
        "_conn",
        "_done_this_feed",
        "_fast_left",
        "_msg",
        "_pending",
        "_pending_overflow",
        "_time_ns",
        "body_limit",
        "buffered",
        "kind",
        "method_hint",
        "scheme",
    )

    def __init__(
        self,
        kind: Literal["request", "response"],
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
        scheme: str = "https",
        method_hint: Callable[[int], str | None] | None = None,
    ) -> None:
        self.kind: Literal["request", "response"] = kind
        self.body_limit = body_limit
        self.scheme = scheme
        self.method_hint = method_hint
        self._conn: h11.Connection | None = None
        self._pending = bytearray()  # raw bytes of the message in progress (capped at _RAW_KEEP)
        self._pending_overflow = False
        self._msg: HttpMessage | None = None
        self._body = bytearray()
        self._fast_left = -1  # body bytes a message the fast path began still expects (-1: none)
        self._chunk = -1  # where the fast path is in a chunked body (_CHUNK_*; -1: in none)
        self._chunk_left = 0  # bytes of the current chunk still expected
        self._chunk_tail = b""  # the start of a chunk-size line or CRLF whose rest is still expected
        self._done_this_feed = 0
        self._time_ns: int | None = None
        self.buffered = 0
        """Bytes held for the message in progress (for the tracker's memory bound)."""

    @property
    def in_message(self) -> bool:
        """Whether a message has started and not yet completed."""
        return self._msg is not None or bool(self._pending)

    @property
    def in_body(self) -> bool:
        """Whether the head of a message was parsed and its body is still expected."""
        return self._msg is not None

    def feed(self, data: bytes, time_ns: int | None = None) -> list[HttpMessage]:
        """Feed the next bytes of this direction; return the messages they complete. Never raises."""
        self._done_this_feed = 0
        out: list[HttpMessage] = []
        try:
            data = bytes(data)
            if self._fast_left >= 0:  # the body of a message the fast path began
                self._fast_body(data, time_ns, out)
            elif self._chunk >= 0:
                self._fast_chunked(data, time_ns, out)
            # The fast path first when no message is in progress (as _feed would, one call sooner).
            elif self._conn is not None or not data or not self._fast(data, time_ns, out):
                self._feed_h11(data, time_ns, out)
        except Exception as exc:  # h11 raises typed errors; anything else is a bug we must survive
            out.append(self._fail(f"{type(exc).__name__}: {exc}"))
            self._reset()
        return out

    def flush(self, note: str = "capture ended before the message did") -> list[HttpMessage]:
        """End of capture (or eviction): return the message in progress, marked incomplete with ``note``."""
        if self._msg is None:
            if self._pending:
                msg = self._fail("capture ended inside the message head")
                self._reset()
                return [msg]
            return []
        msg = self._finish(self._msg, trailers=[])
        msg.complete = False
        msg.notes.append(note)
        self._reset()
        return [msg]

    # -- internals ---------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._conn = None
        self._fast_left = -1
        self._chunk = -1
        self._chunk_tail = b""
        self._pending = bytearray()
        self._pending_overflow = False
        self._msg = None
        self._body = bytearray()
        self.buffered = 0

    def _new_conn(self) -> h11.Connection:
        if self.kind == "request":
            return h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BLOCK)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADER_BLOCK)
        method = (self.method_hint(self._done_this_feed) if self.method_hint else None) or "GET"
        # The stand-in request offers an upgrade so that h11 also accepts a 101 Switching Protocols.
        headers = [("Host", "x"), ("Connection", "upgrade"), ("Upgrade", "websocket")]
        try:
            conn.send(h11.Request(method=method, target="/", headers=headers))
        except h11.LocalProtocolError:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADER_BLOCK)
            conn.send(h11.Request(method="GET", target="/", headers=headers))
        conn.send(h11.EndOfMessage())
        return conn

    def _keep(self, data: bytes) -> None:
        room = _RAW_KEEP - len(self._pending)
        if room >= len(data):
            self._pending += data
        else:
            self._pending += data[: max(room, 0)]
            self._pending_overflow = True

    def _fast(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> bool:
        """The common case without h11's state machine: ``data`` begins with the whole head of an HTTP/1.1
        message framed by Content-Length (or a request without a body) or chunked, valid by h11's grammar
        and free of what h11 treats specially; the body is taken by :meth:`_fast_body` when it goes on in
        later reads, by :meth:`_fast_chunked` when chunked.
        Returns ``False``, having done nothing, for anything else: h11 then parses it, so the result is
        the same either way (tests/decode/test_http1_fast.py)."""
        end = data.find(b"\r\n\r\n", 0, _FAST_HEAD_MAX)
        if end < 0:
            return False
        head = data[:end].decode("iso-8859-1")
        # The start line ends at the first CRLF (h11's start lines hold neither CR nor LF); the header
        # lines after it are read once per distinct text (_fields_of).
        first = head.find("\r\n")
        if first < 0:
            first = len(head)
        request = self.kind == "request"
        if request:
            start = _REQUEST_LINE.fullmatch(head, 0, first)
            if start is None:
                return False
            method, target, version = start.group("method", "target", "http_version")
            if version != "1.1":
                return False
        else:
            hint = self.method_hint(self._done_this_feed) if self.method_hint is not None else None
            if hint not in _FAST_METHOD_HINTS:
                return False
            line = _status_of(head[:first])
            if line is None:
                return False
            status, reason = line
        fields = _fields_of(head[first:])
        if fields is None:
            return False
        size = fields.size
        if request:
            if method == "CONNECT" or fields.hosts != 1:
                return False
        elif status < 200 or status in (204, 304) or (size < 0 and not fields.chunked):
            return False
        body_start = end + 4
        size = max(size, 0)
        body_end = body_start + size
        self._time_ns = time_ns
        if request:
            msg = self._request(list(fields.headers), "http/1.1", method, target, fields.host)
        else:
            msg = HttpMessage(
                kind="response",
                protocol="http/1.1",
                headers=list(fields.headers),
                time_ns=time_ns,
                status=status,
                reason=reason,
            )
        msg.content_type = fields.content_type
        msg.content_encoding = fields.content_encoding
        if fields.chunked:
            self._msg = msg
            self._keep(data[:body_start])
            self._chunk, self._chunk_tail = _CHUNK_SIZE, b""
            self._fast_chunked(data[body_start:], time_ns, out)
            return True
        room = self.body_limit
        if body_end > len(data):
            # The body goes on in the next chunks (a large one comes in several reads): keep what came,
            # as h11 would, and let _fast_body take the rest.
            self._msg = msg
            self._keep(data[:body_start])
            self._fast_left = size
            self._fast_body(data[body_start:], time_ns, out)
            return True
        raw = data[body_start : body_start + room] if size > room else data[body_start:body_end]
        if size > room:
            msg.truncated = True
        size = size or len(raw)
        msg.set_body(raw, size, msg.truncated and size > len(raw), room)
        if msg.errors:
            msg.raw = data[:_RAW_KEEP]  # what the parser keeps of the bytes that began the message
        out.append(msg)
        self._done_this_feed += 1
        if body_end < len(data):
            self._feed(data[body_end:], time_ns, out)
        return True

    def _fast_body(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        """The next bytes of a body the fast path's message expects (:attr:`_fast_left` of them): what
        h11 does with its Data events and EndOfMessage, without h11 (the same fields, ``buffered`` and
        raw bytes kept)."""
        msg = self._msg
        assert msg is not None
        self._keep(data)
        part = data[: self._fast_left]
        self._add_body(part)
        self._fast_left -= len(part)
        if self._fast_left > 0:
            self.buffered = len(self._pending) + len(self._body)
            return
        out.append(self._finish(msg, []))
        self._done_this_feed += 1
        rest = data[len(part) :]
        self._reset()
        if rest:
            self._feed(rest, time_ns, out)

    def _add_body(self, part: bytes) -> None:
        """Body bytes of the message in progress, kept up to the body limit (as h11's Data events are)."""
        msg = self._msg
        assert msg is not None
        room = self.body_limit - len(self._body)
        if room > 0:
            self._body += part[:room]
        if len(part) > room:
            msg.truncated = True
        msg.body_size += len(part)

    def _fast_chunked(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        """The next bytes of a chunked body the fast path's message expects: what h11's chunked reader
        does (each chunk's data taken as it comes), for plain chunk-size lines and a last chunk without
        trailers. Anything else, or a message that outgrows the raw bytes kept (:data:`_RAW_KEEP`), goes
        to h11 with every byte of the message so far (:meth:`_chunked_to_h11`): h11 then reads it as if
        it had had it from the start."""
        before = len(self._pending)
        if before + len(data) > _RAW_KEEP:
            self._chunked_to_h11(data, time_ns, out)
            return
        self._keep(data)
        buf = self._chunk_tail + data if self._chunk_tail else data
        self._chunk_tail = b""
        at, end, state = 0, len(buf), self._chunk
        while True:
            if state == _CHUNK_DATA:
                take = min(self._chunk_left, end - at)
                self._add_body(buf[at : at + take])
                at += take
                self._chunk_left -= take
                if self._chunk_left:
                    break
                state = _CHUNK_CRLF
            if state == _CHUNK_SIZE:
                line = _CHUNK_HEADER.match(buf, at)
                if line is None:
                    if _CHUNK_HEADER_START.fullmatch(buf, at):
                        self._chunk_tail = buf[at:]
                        break
                    del self._pending[before:]
                    self._chunked_to_h11(data, time_ns, out)
                    return
                at = line.end()
                self._chunk_left = int(line[1], 16)
                state = _CHUNK_DATA if self._chunk_left else _CHUNK_LAST
                continue
            # _CHUNK_CRLF or _CHUNK_LAST: a CRLF, perhaps split across reads
            crlf = buf[at : at + 2]
            if not b"\r\n".startswith(crlf):
                del self._pending[before:]
                self._chunked_to_h11(data, time_ns, out)
                return
            if len(crlf) < 2:
                self._chunk_tail = crlf
                break
            at += 2
            if state == _CHUNK_CRLF:
                state = _CHUNK_SIZE
                continue
            msg = self._msg
            assert msg is not None
            out.append(self._finish(msg, []))
            self._done_this_feed += 1
            self._reset()
            if at < end:
                self._feed(buf[at:], time_ns, out)
            return
        self._chunk = state
        self.buffered = len(self._pending) + len(self._body)

    def _chunked_to_h11(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        """Give the chunked message in progress to h11: every byte of it before ``data`` (with the time
        of the read that began it), then ``data`` (with its own)."""
        msg = self._msg
        assert msg is not None
        so_far = bytes(self._pending)
        self._reset()
        self._feed_h11(so_far, msg.time_ns, out)
        self._feed(data, time_ns, out)

    def _feed(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        if not data:
            return
        if self._conn is None and self._fast(data, time_ns, out):
            return
        self._feed_h11(data, time_ns, out)

    def _feed_h11(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        """``data`` through h11 (the fast path declined it, or a message is in progress)."""
        if not data:
            return
        if self._conn is None:
            self._conn = self._new_conn()
            self._time_ns = time_ns
        self._keep(data)
        self._conn.receive_data(data)
        while self._conn is not None:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                out.append(self._fail(library_error(exc)))
                self._resync(out, time_ns)
                return
            if event is h11.NEED_DATA:
                self.buffered = len(self._pending) + len(self._body)
                return
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                self._restart(out, time_ns)
                return
            if isinstance(event, h11.Request | h11.Response | h11.InformationalResponse):
                msg = self._start(event, time_ns)
                if isinstance(event, h11.InformationalResponse):
                    msg.raw = b""
                    out.append(self._finish(msg, []))  # a 1xx does not answer the request
                else:
                    self._msg = msg
            elif isinstance(event, h11.Data):
                if self._msg is not None:
                    self._add_body(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self._msg is not None:
                    trailers = [(_text(k), _text(v)) for k, v in event.headers.raw_items()]
                    out.append(self._finish(self._msg, trailers))
                    self._done_this_feed += 1
                # Start afresh on what follows, whatever state h11 is left in (keep-alive or close).
                self._restart(out, time_ns)
                return

    def _restart(self, out: list[HttpMessage], time_ns: int | None) -> None:
        """The message ended: start a fresh h11 connection on the bytes that followed it."""
        assert self._conn is not None
        leftover, _closed = self._conn.trailing_data
        self._reset()
        if leftover:
            self._feed(bytes(leftover), time_ns, out)

    def _resync(self, out: list[HttpMessage], time_ns: int | None) -> None:
        """After bad bytes, continue from the next line that starts a message, if there is one."""
        pending = bytes(self._pending)
        pattern = _REQUEST_START if self.kind == "request" else _RESPONSE_START
        m = pattern.search(pending, 1)
        self._reset()
        if m is not None and not self._pending_overflow:
            self._feed(pending[m.start(1) :], time_ns, out)

    def _start(
        self, event: h11.Request | h11.Response | h11.InformationalResponse, time_ns: int | None
    ) -> HttpMessage:
        headers = [(_text(k), _text(v)) for k, v in event.headers.raw_items()]
        names = [name.lower() for name, _ in headers]
        version = _text(event.http_version)
        if isinstance(event, h11.Request):
            return self._start_parts(
                headers, names, version, method=_text(event.method), target=_text(event.target)
            )
        return self._start_parts(
            headers, names, version, status=event.status_code, reason=_text(event.reason)
        )

    def _start_parts(
        self,
        headers: list[tuple[str, str]],
        names: list[str],
        version: str,
        *,
        method: str | None = None,
        target: str = "",
        status: int = 0,
        reason: str = "",
    ) -> HttpMessage:
        """The message a head starts: ``headers`` as text, ``names`` their names in lower case."""
        protocol: Protocol = "http/1.0" if version == "1.0" else "http/1.1"
        fields = _Fields(headers, names, -1)  # the same reading of Host and the content headers
        content_type, content_encoding = fields.content_type, fields.content_encoding
        if method is None:
            return HttpMessage(
                kind="response",
                protocol=protocol,
                headers=headers,
                time_ns=self._time_ns,
                status=status,
                reason=reason,
                content_type=content_type,
                content_encoding=content_encoding,
            )
        msg = self._request(headers, protocol, method, target, fields.host)
        msg.content_type = content_type
        msg.content_encoding = content_encoding
        return msg

    def _request(
        self, headers: list[tuple[str, str]], protocol: Protocol, method: str, target: str, host: str
    ) -> HttpMessage:
        """A request message of these parts (its URL made from the target, the scheme and ``host``)."""
        if target.startswith(("http://", "https://")):
            scheme, _, rest = target.partition("://")
            url = target
            path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        elif target.startswith("/"):
            path = target
            scheme = self.scheme
            url = absolute_url(scheme, host, target) if host else target
        else:  # authority-form (CONNECT) or asterisk-form (OPTIONS *)
            path = url = target
            scheme = ""
        return HttpMessage(
            kind="request",
            protocol=protocol,
            headers=headers,
            time_ns=self._time_ns,
            method=method,
            url=url,
            path=path,
            scheme=scheme,
            authority=host,
        )

    def _finish(self, msg: HttpMessage, trailers: list[tuple[str, str]]) -> HttpMessage:
        msg.trailers = trailers
        raw = bytes(self._body)
        size = msg.body_size or len(raw)
        msg.set_body(raw, size, msg.truncated and size > len(raw), self.body_limit)
        if msg.errors:
            msg.raw = bytes(self._pending)
        self._body = bytearray()
        return msg

    def _fail(self, error: str) -> HttpMessage:
        """The message in progress (or the bytes that were to start one) could not be parsed."""
        if self._msg is not None:
            msg = self._finish(self._msg, [])
        else:
            msg = HttpMessage(kind=self.kind, time_ns=self._time_ns)
        msg.complete = False
        msg.errors.append(f"HTTP/1.x: {error}")
        msg.raw = bytes(self._pending)
        if self._pending_overflow:
            msg.notes.append(f"raw bytes cut at {_RAW_KEEP}")
        self._msg = None
        return msg

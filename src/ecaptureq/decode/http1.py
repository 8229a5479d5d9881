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
from h11._abnf import header_field, request_line, status_line  # h11 0.14-0.16; pinned in pyproject

from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT
from ecaptureq.decode.model import HttpMessage, Protocol, absolute_url

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
_REQUEST_LINE: Final = re.compile(request_line.encode("ascii"))
_STATUS_LINE: Final = re.compile(status_line.encode("ascii"))
_HEADER_FIELD: Final = re.compile(header_field.encode("ascii"))
_DIGITS: Final = re.compile(rb"[0-9]{1,20}")
_FAST_HEAD_MAX: Final = 16 * 1024
_FAST_METHOD_HINTS: Final = frozenset({None, "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A head naming one of these goes to h11: framing (transfer-encoding), or connection state h11 tracks.
_FAST_REFUSED: Final = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"connection"})


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
            self._feed(bytes(data), time_ns, out)
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
        """The common case without h11's state machine: ``data`` begins with a whole HTTP/1.1 message
        framed by Content-Length (or a request without a body), its head valid by h11's grammar and free
        of what h11 treats specially. Returns ``False``, having done nothing, for anything else: h11
        then parses it, so the result is the same either way (tests/decode/test_http1_fast.py)."""
        end = data.find(b"\r\n\r\n", 0, _FAST_HEAD_MAX)
        if end < 0:
            return False
        lines = data[:end].split(b"\r\n")
        request = self.kind == "request"
        if request:
            start = _REQUEST_LINE.fullmatch(lines[0])
        else:
            hint = self.method_hint(self._done_this_feed) if self.method_hint is not None else None
            if hint not in _FAST_METHOD_HINTS:
                return False
            start = _STATUS_LINE.fullmatch(lines[0])
        if start is None or start["http_version"] != b"1.1":
            return False
        headers: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        hosts = 0
        for line in lines[1:]:
            m = _HEADER_FIELD.fullmatch(line)
            if m is None:
                return False
            name, value = m["field_name"], m["field_value"]
            lower = name.lower()
            if lower in _FAST_REFUSED:
                return False
            if lower == b"content-length":
                if length is not None or _DIGITS.fullmatch(value) is None:
                    return False
                length = value
            elif lower == b"host":
                hosts += 1
            headers.append((name, value))
        if request:
            if hosts != 1 or start["method"] == b"CONNECT":
                return False
        else:
            status = int(start["status_code"])
            if status < 200 or status in (204, 304) or length is None:
                return False
        size = int(length) if length is not None else 0
        body_start = end + 4
        body_end = body_start + size
        if body_end > len(data):
            return False
        self._time_ns = time_ns
        self._keep(data)
        if request:
            msg = self._start_parts(headers, method=start["method"], target=start["target"])
        else:
            msg = self._start_parts(headers, status=status, reason=start["reason"] or b"")
        msg.body_size += size
        room = self.body_limit
        self._body += data[body_start : body_start + room] if size > room else data[body_start:body_end]
        if size > room:
            msg.truncated = True
        out.append(self._finish(msg, []))
        self._done_this_feed += 1
        self._reset()
        if body_end < len(data):
            self._feed(data[body_end:], time_ns, out)
        return True

    def _feed(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> None:
        if not data:
            return
        if self._conn is None and self._fast(data, time_ns, out):
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
                out.append(self._fail(str(exc)))
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
                    self._msg.body_size += len(event.data)
                    room = self.body_limit - len(self._body)
                    if room > 0:
                        self._body += event.data[:room]
                    if len(event.data) > room:
                        self._msg.truncated = True
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
        if isinstance(event, h11.Request):
            return self._start_parts(
                event.headers.raw_items(), event.http_version, method=event.method, target=event.target
            )
        return self._start_parts(
            event.headers.raw_items(), event.http_version, status=event.status_code, reason=event.reason
        )

    def _start_parts(
        self,
        raw_headers: list[tuple[bytes, bytes]],
        http_version: bytes = b"1.1",
        *,
        method: bytes | None = None,
        target: bytes = b"",
        status: int = 0,
        reason: bytes = b"",
    ) -> HttpMessage:
        version = _text(http_version)
        protocol: Protocol = "http/1.0" if version == "1.0" else "http/1.1"
        headers = [(_text(k), _text(v)) for k, v in raw_headers]
        if method is not None:
            msg = HttpMessage(kind="request", protocol=protocol, headers=headers, time_ns=self._time_ns)
            msg.method = _text(method)
            url_target = _text(target)
            host = msg.header("host")
            msg.authority = host
            if url_target.startswith(("http://", "https://")):
                msg.url = url_target
                rest = url_target.split("://", 1)[1]
                msg.scheme = url_target.split("://", 1)[0]
                msg.path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
            elif url_target.startswith("/"):
                msg.path = url_target
                msg.scheme = self.scheme
                msg.url = absolute_url(self.scheme, host, url_target) if host else url_target
            else:  # authority-form (CONNECT) or asterisk-form (OPTIONS *)
                msg.path = url_target
                msg.url = url_target
        else:
            msg = HttpMessage(kind="response", protocol=protocol, headers=headers, time_ns=self._time_ns)
            msg.status = status
            msg.reason = _text(reason)
        msg.content_type = msg.header("content-type")
        msg.content_encoding = msg.header("content-encoding")
        return msg

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

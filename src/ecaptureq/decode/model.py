"""The one exchange model every sink uses: :class:`HttpMessage` and :class:`Exchange` (what the decoder
returns is in :mod:`ecaptureq.decode.results`).

Like mitmproxy's flow, an :class:`Exchange` is one request and its response on one connection. The
terminal view, JSON Lines, the SQLite store, HAR export and the web UI all read these plain dataclasses,
and each has a :meth:`to_dict` form that :func:`json.dumps` accepts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

from ecaptureq.decode.bodies import decode_body, pretty_json

Protocol = Literal["http/1.1", "http/1.0", "h2"]
"""The HTTP version an exchange was carried by."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(slots=True)
class HttpMessage:
    """One HTTP request or response, decoded as far as the captured bytes allow.

    ``headers`` are ``(name, value)`` pairs in wire order (HTTP/2 pseudo-headers such as ``:path`` are
    kept at the front). ``raw_body`` is the body as carried (de-chunked, HTTP/2 DATA joined, still
    content-encoded); ``body`` is it with Content-Encoding undone, capped at the body limit; ``body_text``
    is ``body`` as text or ``None`` for binary (:attr:`pretty_text` pretty-prints JSON). ``truncated``
    says a cap cut the body; ``complete`` says the whole message was seen; ``errors`` says what could
    not be decoded (the undecodable bytes are in ``raw``).
    """

    kind: Literal["request", "response"]
    protocol: Protocol = "http/1.1"
    method: str = ""
    url: str = ""
    path: str = ""
    scheme: str = ""
    authority: str = ""
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    raw_body: bytes = b""
    body: bytes = b""
    body_text: str | None = None
    body_size: int = 0
    content_type: str = ""
    content_encoding: str = ""
    charset: str | None = None
    is_json: bool = False
    form: list[tuple[str, str]] | None = None
    grpc_messages: list[bytes] | None = None
    stream_id: int | None = None
    truncated: bool = False
    complete: bool = True
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: bytes = b""
    time_ns: int | None = None

    def set_body(self, raw: bytes, size: int, cut: bool, limit: int) -> None:
        """Store the body as carried and its decoding (Content-Encoding undone, charset, JSON, form, gRPC).

        ``size`` is the body's full size and ``cut`` says the capture kept only part of it (at ``limit``):
        then decoding errors are what the cut caused and become notes, not errors.
        """
        self.raw_body = raw
        self.body_size = size
        self.truncated = self.truncated or cut
        if not raw:
            return
        decoded = decode_body(raw, self.content_type, self.content_encoding, limit)
        self.body = decoded.data
        self.body_text = decoded.text
        self.charset = decoded.charset
        self.is_json = decoded.is_json
        self.form = decoded.form
        self.grpc_messages = decoded.grpc_messages
        self.truncated = self.truncated or decoded.truncated
        if cut:
            self.notes.append(f"body cut at {limit} bytes of {size}")
            self.notes.extend(f"(after the cut) {e}" for e in decoded.errors)
        else:
            self.errors.extend(decoded.errors)
        self.notes.extend(decoded.notes)

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    @property
    def pretty_text(self) -> str | None:
        """:attr:`body_text`, pretty-printed when it is JSON (computed on each call)."""
        if self.body_text is not None and self.is_json:
            return pretty_json(self.body_text)
        return self.body_text

    @property
    def host(self) -> str:
        """The host the request went to (``:authority`` or ``Host``, without a port)."""
        authority = self.authority or self.header("host")
        if authority.startswith("["):
            return authority[1:].split("]", 1)[0]
        return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority

    @property
    def first_line(self) -> str:
        """``METHOD URL`` for a request, ``STATUS REASON`` for a response."""
        if self.kind == "request":
            return f"{self.method} {self.url or self.path}".strip()
        return f"{self.status if self.status is not None else '???'} {self.reason}".strip()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: bytes become base64 (``body_b64``), ``body_text`` stays text."""
        return {
            "kind": self.kind,
            "protocol": self.protocol,
            "method": self.method or None,
            "url": self.url or None,
            "path": self.path or None,
            "scheme": self.scheme or None,
            "authority": self.authority or None,
            "status": self.status,
            "reason": self.reason or None,
            "headers": [[k, v] for k, v in self.headers],
            "trailers": [[k, v] for k, v in self.trailers],
            "content_type": self.content_type or None,
            "content_encoding": self.content_encoding or None,
            "charset": self.charset,
            "body_size": self.body_size,
            "body_text": self.body_text,
            "body_b64": _b64(self.body) if self.body_text is None and self.body else None,
            "is_json": self.is_json,
            "form": [[k, v] for k, v in self.form] if self.form is not None else None,
            "grpc_messages": [_b64(m) for m in self.grpc_messages]
            if self.grpc_messages is not None
            else None,
            "stream_id": self.stream_id,
            "truncated": self.truncated,
            "complete": self.complete,
            "errors": list(self.errors),
            "notes": list(self.notes),
            "raw_b64": _b64(self.raw) if self.errors and self.raw else None,
            "time_ns": self.time_ns,
        }


@dataclass(slots=True)
class Exchange:
    """A request and its response on one connection (either may be missing from the capture).

    ``started_ns``/``ended_ns`` are on the events' clock (Unix-epoch ns, or ns since boot when
    ``clock`` is ``"boot"``); ``latency`` is seconds from the end of the request to the end of the
    response, when both timestamps are known. The 4-tuple is from the client's point of view when it is
    known which side was the client, else as captured.
    """

    id: int
    connection: str
    protocol: Protocol = "http/1.1"
    stream_id: int | None = None
    request: HttpMessage | None = None
    response: HttpMessage | None = None
    pid: int | None = None
    pname: str = ""
    tid: int | None = None
    fd: int | None = None
    src_ip: str = ""
    src_port: int = 0
    dst_ip: str = ""
    dst_port: int = 0
    clock: Literal["epoch", "boot", "unset"] = "unset"
    started_ns: int | None = None
    ended_ns: int | None = None
    latency: float | None = None

    @property
    def complete(self) -> bool:
        """Whether both the request and the response were seen."""
        return self.request is not None and self.response is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, messages nested with :meth:`HttpMessage.to_dict`."""
        return {
            "id": self.id,
            "connection": self.connection,
            "protocol": self.protocol,
            "stream_id": self.stream_id,
            "pid": self.pid,
            "pname": self.pname,
            "tid": self.tid,
            "fd": self.fd,
            "src_ip": self.src_ip,
            "src_port": self.src_port,
            "dst_ip": self.dst_ip,
            "dst_port": self.dst_port,
            "clock": self.clock,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "latency": self.latency,
            "request": self.request.to_dict() if self.request else None,
            "response": self.response.to_dict() if self.response else None,
        }


@dataclass(slots=True)
class WebSocketFrame:
    """One RFC 6455 frame: opcode and its name, FIN, whether it was masked, and the unmasked data.

    ``text`` is the data as text for a text frame (or a close frame's reason), else ``None``.
    ``truncated`` says the capture ended inside the frame; ``compressed`` that it was sent with
    permessage-deflate (``data`` is then inflated when that worked without earlier context).
    """

    opcode: int
    opcode_name: str
    fin: bool
    masked: bool
    data: bytes
    text: str | None = None
    length: int = 0
    close_code: int | None = None
    truncated: bool = False
    compressed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "opcode": self.opcode,
            "opcode_name": self.opcode_name,
            "fin": self.fin,
            "masked": self.masked,
            "length": self.length,
            "text": self.text,
            "data_b64": _b64(self.data) if self.text is None else None,
            "close_code": self.close_code,
            "truncated": self.truncated,
            "compressed": self.compressed,
        }


@dataclass(slots=True)
class H2Frame:
    """An HTTP/2 frame that is not part of a message (SETTINGS, PING, GOAWAY, RST_STREAM...), summarised."""

    type: str
    stream_id: int
    flags: int
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"type": self.type, "stream_id": self.stream_id, "flags": self.flags, "summary": self.summary}

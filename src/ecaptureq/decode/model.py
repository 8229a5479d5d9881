"""The one exchange model every sink uses: :class:`HttpMessage` and :class:`Exchange` (what the decoder
returns is in :mod:`ecaptureq.decode.results`).

Like mitmproxy's flow, an :class:`Exchange` is one request and its response on one connection. The
terminal view, JSON Lines, the SQLite store, HAR export and the web UI all read these plain dataclasses,
and each has a :meth:`to_dict` form that :func:`json.dumps` accepts. An exchange round-trips:
``Exchange.from_dict(x.to_dict()) == x``. Its dict carries :data:`FLOW_FORMAT` (key ``format_version``);
one without it is format 1 (written before the key existed) and still loads. A malformed dict, or one of
a format this version does not know, raises :class:`FlowFormatError` saying which field and what value.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args
from urllib.parse import SplitResult, urlsplit

from ecaptureq.decode.bodies import decode_body, json_body, plain_body, pretty_body, pretty_json
from ecaptureq.protocol.messages import INT64_MAX, INT64_MIN

Protocol = Literal["http/1.1", "http/1.0", "h2"]
"""The HTTP version an exchange was carried by."""


_BUFFER_REPR: Final = re.compile(r"bytearray\((b(['\"])(?:\\.|(?!\2).)*\2)\)|:? ?<memory at 0x[0-9a-fA-F]+>")
"""The Python reprs parsing libraries put in their messages: h11's ``bytearray(b'...')`` and hpack's
``<memory at 0x...>``."""


def library_error(exc: BaseException) -> str:
    """A parsing library's error message for a person: h11's ``bytearray(b'GET /x')`` becomes ``'GET /x'``
    (the bytes as Python writes them, escapes and all), and hpack's ``<memory at 0x...>``, which says
    nothing of the bytes, is left out."""
    return _BUFFER_REPR.sub(lambda m: m[1][1:] if m[1] else "", str(exc))


FLOW_FORMAT: Final = 2
"""The format of :meth:`Exchange.to_dict` (its ``format_version``). Format 1 had no such key, kept a
message's ``body`` only when it had no text, and no ``raw_body``; format 2 keeps everything an exchange
holds (each byte string once: ``body_b64`` only when the body is not its text's UTF-8, ``raw_body_b64``
only when the body as carried differs from the decoded one)."""

STORED_FORMAT: Final = 3
"""The ``format_version`` of an exchange as a capture database's ``detail`` column holds it: format 2 without
the fields the row's other columns hold, and without the fields at their defaults (the store puts the
columns back before :meth:`Exchange.from_dict` reads it; read alone, it lacks them). Its own number, so
that a release that reads only formats 1 and 2 says the row was written by a newer ecaptureq instead of
naming a field it misses."""

FLOW_FORMATS: Final = (1, FLOW_FORMAT, STORED_FORMAT)
"""The formats :meth:`Exchange.from_dict` reads."""

Clock = Literal["epoch", "boot", "unset"]
"""What an exchange's times count from: the Unix epoch, the boot of the captured host, or unknown."""

_PROTOCOLS: Final = get_args(Protocol)
_CLOCKS: Final = get_args(Clock)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FlowFormatError(ValueError):
    """A dict that :meth:`Exchange.from_dict` or :meth:`HttpMessage.from_dict` cannot read.

    ``field`` is where (``request.headers[2]``), ``value`` what was found there (``None`` when the field
    is missing) and ``expected`` what it should have been.
    """

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: expected {expected}, found {shown}")


class UnknownFlowFormat(FlowFormatError):
    """The dict's ``format_version`` is not one this version reads (:data:`FLOW_FORMATS`): it was
    written by a newer ecaptureq. ``version`` is the value found."""

    def __init__(self, version: object) -> None:
        self.version = version
        super().__init__("format_version", version, f"one of {', '.join(map(str, FLOW_FORMATS))}")


_TEXT: Final = ((str,), "text")
_INT: Final = ((int,), "an integer")  # type(v) is int: a bool is not one
_BOOL: Final = ((bool,), "true or false")
_PAIRS: Final = ((list, tuple), "a list of [name, value] pairs")
_TEXTS: Final = ((list, tuple), "a list of text")
_BLOBS: Final = ((list, tuple), "a list of base64 text")
_NUMBER: Final = ((int, float), "a number")

_MESSAGE_FIELDS: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    **dict.fromkeys(
        ("method", "url", "path", "scheme", "authority", "reason", "content_type", "content_encoding"), _TEXT
    ),
    **dict.fromkeys(("body_text", "charset", "body_b64", "raw_body_b64", "raw_b64"), _TEXT),
    **dict.fromkeys(("status", "body_size", "stream_id", "time_ns"), _INT),
    **dict.fromkeys(("is_json", "truncated", "complete"), _BOOL),
    **dict.fromkeys(("headers", "trailers", "form"), _PAIRS),
    **dict.fromkeys(("errors", "notes"), _TEXTS),
    "grpc_messages": _BLOBS,
}
"""The type of each field of :meth:`HttpMessage.to_dict` (any may be missing or ``null``)."""

_EXCHANGE_FIELDS: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    **dict.fromkeys(("pname", "src_ip", "dst_ip"), _TEXT),
    **dict.fromkeys(
        ("stream_id", "pid", "tid", "fd", "src_port", "dst_port", "started_ns", "ended_ns"), _INT
    ),
    "latency": _NUMBER,
}
"""The type of each scalar field of :meth:`Exchange.to_dict` (any may be missing or ``null``)."""


def _fields(
    data: object, schema: dict[str, tuple[tuple[type, ...], str]], where: str, what: str
) -> Mapping[str, Any]:
    """``data`` as a mapping whose fields in ``schema`` have their types (or are missing or ``null``)."""
    if not isinstance(data, Mapping):
        raise FlowFormatError(where or what, data, "an object")
    get = data.get
    for key, kind in schema.items():
        value = get(key)
        if value is None:
            continue
        if type(value) not in kind[0]:
            raise FlowFormatError(_name(where, key), value, kind[1])
        if kind is _INT and not INT64_MIN <= value <= INT64_MAX:
            # what to_dict writes is an SQLite INTEGER or a nanosecond clock: a larger one is damage
            raise FlowFormatError(_name(where, key), value, "a 64-bit integer")
        if kind is _NUMBER and not _finite(value):
            raise FlowFormatError(_name(where, key), value, "a finite number")
    return data


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond a double
        return False


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _choice(
    data: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str | None, where: str
) -> Any:
    """The field's value when it is one of ``allowed``; ``default`` when missing (required when ``None``)."""
    value = data.get(key)
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise FlowFormatError(_name(where, key), value, f"one of {', '.join(allowed)}")
    return value


def _required(data: Mapping[str, Any], key: str, kind: tuple[tuple[type, ...], str], where: str) -> Any:
    value = data.get(key)
    if type(value) not in kind[0]:
        raise FlowFormatError(_name(where, key), value, kind[1])
    _fields(data, {key: kind}, where, "")  # its range
    return value


def _pairs(items: Any, where: str, key: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items or ()):
        if (
            type(item) not in (list, tuple)
            or len(item) != 2
            or type(item[0]) is not str
            or type(item[1]) is not str
        ):
            raise FlowFormatError(f"{_name(where, key)}[{i}]", item, "a [name, value] pair of text")
        out.append((item[0], item[1]))
    return out


def _texts(items: Any, where: str, key: str) -> list[str]:
    for i, item in enumerate(items or ()):
        if type(item) is not str:
            raise FlowFormatError(f"{_name(where, key)}[{i}]", item, "text")
    return list(items or ())


def _blobs(items: Any, where: str, key: str) -> list[bytes]:
    out: list[bytes] = []
    for i, item in enumerate(items):
        if type(item) is not str:
            raise FlowFormatError(f"{_name(where, key)}[{i}]", item, "base64 text")
        out.append(_unb64(item, f"{_name(where, key)}[{i}]"))
    return out


def _bytes(text: str | None, where: str, key: str) -> bytes | None:
    return None if text is None else _unb64(text, _name(where, key))


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise FlowFormatError(where, text, "base64 text") from None


def absolute_url(scheme: str, netloc: str, path: str) -> str:
    """``scheme://netloc/path``: the one way a request's absolute URL is made from its parts (a path that
    does not start with ``/`` gets one)."""
    return f"{scheme}://{netloc}{path if path.startswith('/') else '/' + path}"


def split_url(url: str) -> SplitResult | None:
    """``url`` split into its parts, or ``None`` when it cannot be (a captured authority such as ``[``, an
    unclosed IPv6 bracket, makes :func:`urllib.parse.urlsplit` raise): such a URL is carried as text."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


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
    _is_json: bool | None = field(default=None, init=False, repr=False, compare=False)
    """:attr:`is_json` once worked out or set (``None``: not yet)."""
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
        if not self.content_encoding and len(raw) <= limit:
            plain = plain_body(raw, self.content_type)
            if plain is not None:  # the common case, decoded as decode_body would
                self.body = raw
                self.body_text, self.charset, self.grpc_messages = plain
                self._is_json = None  # worked out when asked (a parse: watch's text view never asks)
                if cut:
                    self.notes.append(f"body cut at {limit} bytes of {size}")
                return
        decoded = decode_body(raw, self.content_type, self.content_encoding, limit, judge_json=False)
        self.body = decoded.data
        self.body_text = decoded.text
        self.charset = decoded.charset
        self._is_json = None  # worked out from the text when asked, as on the path above
        self.form = decoded.form
        self.grpc_messages = decoded.grpc_messages
        self.truncated = self.truncated or decoded.truncated
        if cut:
            self.notes.append(f"body cut at {limit} bytes of {size}")
            self.notes.extend(f"(after the cut) {e}" for e in decoded.errors)
        elif decoded.errors:
            self.errors.extend(decoded.errors)
        if decoded.notes:
            self.notes.extend(decoded.notes)

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    @property
    def is_json(self) -> bool:
        """Whether :attr:`body_text` is JSON (:func:`~ecaptureq.decode.bodies.json_body`), worked out on the
        first call and kept; it can also be set (a stored message says what it was)."""
        known = self._is_json
        if known is None:
            text = self.body_text
            known = self._is_json = text is not None and json_body(self.content_type, text)
        return known

    @is_json.setter
    def is_json(self, value: bool) -> None:
        self._is_json = value

    @property
    def is_json_known(self) -> bool | None:
        """:attr:`is_json` when it was worked out or set, else ``None`` (asking does not parse)."""
        return self._is_json

    @property
    def pretty_text(self) -> str | None:
        """:attr:`body_text`, pretty-printed when it is JSON (computed on each call; one parse)."""
        text = self.body_text
        if text is None or self._is_json is False:
            return text
        if self._is_json is None:
            return pretty_body(self.content_type, text)
        return pretty_json(text)

    @property
    def netloc(self) -> str:
        """Where the request went as sent: ``:authority``, else the ``Host`` header (with any port)."""
        return self.authority or self.header("host")

    @property
    def host(self) -> str:
        """The host the request went to (:attr:`netloc` without a port or IPv6 brackets)."""
        netloc = self.netloc
        if netloc.startswith("["):
            return netloc[1:].split("]", 1)[0]
        return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc

    @property
    def target(self) -> str:
        """The request's URL as decoded, else its path (``""`` when a late join lost both)."""
        return self.url or self.path

    def to_dict(self, *, with_content: bool = True) -> dict[str, Any]:
        """A JSON-able form that :meth:`from_dict` reads back equal (format :data:`FLOW_FORMAT`).

        Bytes become base64, each once: ``body_b64`` only when ``body`` is not ``body_text`` in UTF-8
        (binary, or another charset), ``raw_body_b64`` only when ``raw_body`` differs from ``body``
        (content-encoded or cut), ``raw_b64`` when there are undecodable bytes. ``with_content=False``
        leaves out the headers, the bodies, what is derived from them (form fields, gRPC messages) and the
        undecodable bytes: for a store that keeps those in columns of their own.
        """
        d = {
            "kind": self.kind,
            "protocol": self.protocol,
            "method": self.method or None,
            "url": self.url or None,
            "path": self.path or None,
            "scheme": self.scheme or None,
            "authority": self.authority or None,
            "status": self.status,
            "reason": self.reason or None,
            "trailers": [[k, v] for k, v in self.trailers],
            "content_type": self.content_type or None,
            "content_encoding": self.content_encoding or None,
            "charset": self.charset,
            "body_size": self.body_size,
            # the store's form leaves it unknown (null) where nobody asked: it is worked out from the text
            "is_json": self.is_json if with_content else self._is_json,
            "stream_id": self.stream_id,
            "truncated": self.truncated,
            "complete": self.complete,
            "errors": list(self.errors),
            "notes": list(self.notes),
            "time_ns": self.time_ns,
        }
        if with_content:
            text_bytes = (
                self.body_text.encode("utf-8", "surrogatepass") if self.body_text is not None else b""
            )
            d["headers"] = [[k, v] for k, v in self.headers]
            d["body_text"] = self.body_text
            d["body_b64"] = _b64(self.body) if self.body != text_bytes else None
            d["raw_body_b64"] = _b64(self.raw_body) if self.raw_body != self.body else None
            d["form"] = [[k, v] for k, v in self.form] if self.form is not None else None
            d["grpc_messages"] = (
                [_b64(m) for m in self.grpc_messages] if self.grpc_messages is not None else None
            )
            d["raw_b64"] = _b64(self.raw) if self.raw else None
        return d

    @classmethod
    def from_dict(cls, data: object, version: int = FLOW_FORMAT, where: str = "") -> HttpMessage:
        """The message :meth:`to_dict` made ``data`` from (format ``version``; see :data:`FLOW_FORMAT`).

        A missing or ``null`` field takes its default (stored messages leave out what has its own column).
        ``where`` names the message in errors (``request``).

        Raises:
            FlowFormatError: a field has the wrong type or is not valid base64; ``kind`` is missing.
        """
        d = _fields(data, _MESSAGE_FIELDS, where, "message")
        kind = _choice(d, "kind", ("request", "response"), None, where)
        body_text = d.get("body_text")
        body = _bytes(d.get("body_b64"), where, "body_b64")
        if body is None:  # format 1 kept no body beside its text; format 2 leaves out the text's UTF-8
            body = body_text.encode("utf-8", "surrogatepass") if body_text is not None else b""
        raw_body = _bytes(d.get("raw_body_b64"), where, "raw_body_b64") if version >= 2 else None
        complete = d.get("complete")
        form, grpc = d.get("form"), d.get("grpc_messages")
        message = cls(
            kind=kind,
            protocol=_choice(d, "protocol", _PROTOCOLS, "http/1.1", where),
            method=d.get("method") or "",
            url=d.get("url") or "",
            path=d.get("path") or "",
            scheme=d.get("scheme") or "",
            authority=d.get("authority") or "",
            status=d.get("status"),
            reason=d.get("reason") or "",
            headers=_pairs(d.get("headers"), where, "headers"),
            trailers=_pairs(d.get("trailers"), where, "trailers"),
            raw_body=body if raw_body is None else raw_body,
            body=body,
            body_text=body_text,
            body_size=d.get("body_size") or 0,
            content_type=d.get("content_type") or "",
            content_encoding=d.get("content_encoding") or "",
            charset=d.get("charset"),
            form=None if form is None else _pairs(form, where, "form"),
            grpc_messages=None if grpc is None else _blobs(grpc, where, "grpc_messages"),
            stream_id=d.get("stream_id"),
            truncated=d.get("truncated") or False,
            complete=True if complete is None else complete,
            errors=_texts(d.get("errors"), where, "errors"),
            notes=_texts(d.get("notes"), where, "notes"),
            raw=_bytes(d.get("raw_b64"), where, "raw_b64") or b"",
            time_ns=d.get("time_ns"),
        )
        message._is_json = d.get("is_json")  # null (the store's form): worked out from the text when asked
        return message


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
    clock: Clock = "unset"
    started_ns: int | None = None
    ended_ns: int | None = None
    latency: float | None = None

    @property
    def complete(self) -> bool:
        """Whether both the request and the response were seen."""
        return self.request is not None and self.response is not None

    @property
    def whole(self) -> bool:
        """Whether both messages were seen and each is complete: not cut short, not damaged by bytes the
        capture lost (the store's ``complete`` column, the UI's unmarked rows)."""
        req, resp = self.request, self.response
        return req is not None and resp is not None and req.complete and resp.complete

    @property
    def url(self) -> str:
        """The request's absolute URL: as decoded when it has a scheme, else made from its scheme
        (``https`` when unknown), :attr:`HttpMessage.netloc` (the destination address when there is none)
        and path. ``""`` when there is no request or its URL and path are unknown: never made up from the
        address alone."""
        req = self.request
        if req is None:
            return ""
        parts = split_url(req.url)
        if parts is not None and parts.scheme:
            return req.url
        if not req.target:
            return ""
        netloc = req.netloc
        if not netloc:
            netloc = f"{self.dst_ip}:{self.dst_port}" if self.dst_ip else "unknown.invalid"
        path = req.path or req.url or "/"
        return absolute_url(req.scheme or "https", netloc, path)

    def to_dict(self, *, with_content: bool = True) -> dict[str, Any]:
        """A JSON-able form (format :data:`FLOW_FORMAT`), messages nested with :meth:`HttpMessage.to_dict`
        (``with_content`` is passed on); :meth:`from_dict` reads it back equal."""
        return {
            "format_version": FLOW_FORMAT,
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
            "request": self.request.to_dict(with_content=with_content) if self.request else None,
            "response": self.response.to_dict(with_content=with_content) if self.response else None,
        }

    @classmethod
    def from_dict(cls, data: object) -> Exchange:
        """The exchange :meth:`to_dict` made ``data`` from, of any format in :data:`FLOW_FORMATS` (no
        ``format_version`` is format 1). A missing or ``null`` field takes its default, but for ``id`` and
        ``connection``.

        Raises:
            UnknownFlowFormat: ``format_version`` is not one this version reads.
            FlowFormatError: ``data`` is not an object, or a field has the wrong type or value.
        """
        d = _fields(data, _EXCHANGE_FIELDS, "", "exchange")
        version = d.get("format_version", 1)
        if type(version) is not int or version not in FLOW_FORMATS:
            raise UnknownFlowFormat(version)
        request, response, latency = d.get("request"), d.get("response"), d.get("latency")
        return cls(
            id=_required(d, "id", _INT, ""),
            connection=_required(d, "connection", _TEXT, ""),
            protocol=_choice(d, "protocol", _PROTOCOLS, "http/1.1", ""),
            stream_id=d.get("stream_id"),
            request=None if request is None else HttpMessage.from_dict(request, version, "request"),
            response=None if response is None else HttpMessage.from_dict(response, version, "response"),
            pid=d.get("pid"),
            pname=d.get("pname") or "",
            tid=d.get("tid"),
            fd=d.get("fd"),
            src_ip=d.get("src_ip") or "",
            src_port=d.get("src_port") or 0,
            dst_ip=d.get("dst_ip") or "",
            dst_port=d.get("dst_port") or 0,
            clock=_choice(d, "clock", _CLOCKS, "unset", ""),
            started_ns=d.get("started_ns"),
            ended_ns=d.get("ended_ns"),
            latency=None if latency is None else float(latency),
        )


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

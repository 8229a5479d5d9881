"""Who may open the stream: the Origin allow-list, token authentication and connection limits.

Captured TLS plaintext holds passwords, cookies and tokens. The reference server accepts any browser
Origin, so any web page open on the same machine can read everything; this module is the one policy the
hub and the web UI use to refuse that, and to require a token when asked. Everything here is a pure
function or a small class fed explicit times, with no web framework: :mod:`ecaptureq.server.handshake`
turns it into the handshake hook ``websockets`` calls, and :mod:`ecaptureq.web.guard` into the web UI's ASGI
middleware. Both hand it the same :class:`HandshakeRequest` (the Origin and Authorization header values and
the request target).

The checks on each handshake, in order:

1. **Origin** (403): a request without ``Origin`` comes from a non-browser tool and passes; a request
   whose Origin is a loopback page (``http(s)://localhost`` and ``*.localhost``, ``127.0.0.0/8``, ``[::1]``,
   any port) passes;
   so does one on the allow-list (``*`` allows every origin). Everything else, ``null`` included, is a
   foreign browser page and is refused.
2. **Token** (401), when the server has one: ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` in the
   URL, compared in constant time.
3. **Capacity** (503): no more than ``max_connections`` open connections.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

ALLOW_ANY_ORIGIN: Final = "*"
"""The allow-list entry that lets every Origin through (for a server behind another gatekeeper)."""

TOKEN_QUERY_PARAMETER: Final = "token"
"""The URL query parameter that carries the token for clients that can only set a URL (the GUI)."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class BadOrigin(ValueError):
    """An allow-list entry is not an origin (``scheme://host[:port]``) nor ``*``."""


@dataclass(frozen=True, order=True)
class Origin:
    """A parsed, normalised web origin: lower-case scheme and host, and an explicit port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def parse_origin(text: str) -> Origin | None:
    """Parse an ``Origin`` header value; ``None`` when it is not a tuple origin (``null``, garbage).

    A trailing ``/`` is accepted (the reference clients send ``http://localhost/``); a path, query,
    fragment or user name is not, since no browser sends one.

    >>> parse_origin("HTTP://LocalHost:8080/")
    Origin(scheme='http', host='localhost', port=8080)
    >>> parse_origin("null") is None
    True
    """
    text = text.strip()
    if not text or len(text) > 2048 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not scheme or not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None or text.endswith("?") or "#" in text:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return Origin(scheme, host.lower(), port)


def parse_allowed_origin(text: str) -> Origin | str:
    """Parse one allow-list entry: an origin such as ``https://app.example:8443``, or ``*``.

    Raises:
        BadOrigin: the entry is neither (the message shows what to write).
    """
    if text.strip() == ALLOW_ANY_ORIGIN:
        return ALLOW_ANY_ORIGIN
    origin = parse_origin(text)
    if origin is None:
        raise BadOrigin(
            f"{text!r} is not an origin: write scheme://host[:port], e.g. https://app.example:8443"
        )
    return origin


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only.

    ``localhost``, ``127.0.0.0/8`` and ``::1`` are; any other name is not (it could resolve anywhere).
    """
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_origin(origin: Origin) -> bool:
    """Whether a page with this origin is served from this machine's loopback (``http``/``https``).

    Besides :func:`is_loopback_host`, names under ``.localhost`` count: browsers resolve them to loopback
    themselves (RFC 6761), and desktop webviews use them (Tauri's ``http://tauri.localhost``).
    """
    if origin.scheme not in ("http", "https"):
        return False
    return is_loopback_host(origin.host) or origin.host.endswith(".localhost")


def origin_allowed(header: str | None, allowed: Iterable[Origin | str] = ()) -> bool:
    """Whether a handshake with this ``Origin`` header value may proceed.

    No header (a non-browser tool) and loopback origins always may; otherwise the origin must be in
    ``allowed`` (entries from :func:`parse_allowed_origin`), or ``allowed`` must hold ``*``.

    >>> origin_allowed("http://localhost/"), origin_allowed("https://evil.example")
    (True, False)
    """
    entries = list(allowed)
    if header is None or ALLOW_ANY_ORIGIN in entries:
        return True
    origin = parse_origin(header)
    if origin is None:
        return False
    return is_loopback_origin(origin) or origin in entries


@dataclass(frozen=True)
class HandshakeRequest:
    """What the policy reads from a request, whichever framework received it.

    ``target`` is the request target (path and query, as sent); ``origins`` and ``authorization`` hold
    every value of the ``Origin`` and ``Authorization`` headers, in order (a repeated header is a fact the
    policy judges, so it is not merged).
    """

    target: str = "/"
    origins: Sequence[str] = ()
    authorization: Sequence[str] = ()


def bearer_tokens(authorization: Iterable[str]) -> list[str]:
    """The tokens in ``Authorization: Bearer TOKEN`` header values (other schemes are ignored)."""
    found: list[str] = []
    for value in authorization:
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            found.append(credentials.strip())
    return found


def presented_tokens(request: HandshakeRequest) -> list[str]:
    """The tokens a handshake presents: each ``Authorization: Bearer`` value and each ``?token=``."""
    found = bearer_tokens(request.authorization)
    # not urlsplit: a request target such as "//[" makes it raise, and this runs on untrusted input
    query = request.target.partition("?")[2].partition("#")[0]
    if query:
        found.extend(v for k, v in parse_qsl(query, keep_blank_values=True) if k == TOKEN_QUERY_PARAMETER)
    return found


def token_matches(presented: str, token: str) -> bool:
    """Compare a presented token with the server's in constant time (:func:`hmac.compare_digest`)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


def any_token_matches(presented: Iterable[str], token: str) -> bool:
    """Whether one of the presented tokens is ``token`` (every one is compared, none short-circuits)."""
    ok = False
    for value in presented:
        ok |= token_matches(value, token)
    return ok


def request_authenticated(request: HandshakeRequest, token: str) -> bool:
    """Whether the handshake presents ``token``, in a header or in the URL."""
    return any_token_matches(presented_tokens(request), token)


def generate_token() -> str:
    """A new random token (32 bytes from :mod:`secrets`, URL-safe base64), as Jupyter offers one."""
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """Validate a server token: non-empty, printable ASCII without spaces (it travels in headers/URLs).

    Raises:
        ValueError: the token is unusable; the message says why (without echoing it).
    """
    if not token:
        raise ValueError("the token is empty")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in token):
        raise ValueError("the token must be printable ASCII without spaces")
    return token


@dataclass(frozen=True)
class Refusal:
    """Why a handshake is refused: the HTTP status, a log reason (never the token) and the body sent.

    ``summary`` is the reason without anything the client sent (its Origin): what is kept in the startup
    log that every later client is sent.
    """

    status: int
    reason: str
    body: str
    summary: str = ""


def check_origins(origins: Sequence[str], allowed_origins: Iterable[Origin | str] = ()) -> Refusal | None:
    """The Origin check (403) on a request's ``Origin`` header values; ``None`` means it passes.

    No header passes (a non-browser tool); more than one is refused, whatever they say.
    """
    if len(origins) > 1:
        return Refusal(403, "more than one Origin header", "Forbidden: more than one Origin header.\n")
    header = origins[0] if origins else None
    if origin_allowed(header, allowed_origins):
        return None
    shown = _printable(header or "")
    return Refusal(
        403,
        f"Origin {shown} not allowed",
        summary="Origin not allowed",
        body=f"Forbidden: Origin {shown} is not allowed by this server "
        "(pages from loopback are; its operator can allow more origins).\n",
    )


def check_handshake(
    request: HandshakeRequest,
    *,
    allowed_origins: Iterable[Origin | str] = (),
    token: str | None = None,
    open_connections: int = 0,
    max_connections: int | None = None,
) -> Refusal | None:
    """Apply the policy to one handshake request; ``None`` means let it through.

    Order: Origin (403), then token (401), then capacity (503), so that a foreign page learns nothing
    about the token and an unauthenticated client nothing about the load.
    """
    refusal = check_origins(request.origins, allowed_origins)
    if refusal is not None:
        return refusal
    if token is not None and not request_authenticated(request, token):
        what = "wrong token" if presented_tokens(request) else "no token"
        return Refusal(
            401,
            what,
            "Unauthorized: this server requires a token "
            f"(Authorization: Bearer TOKEN, or ?{TOKEN_QUERY_PARAMETER}=TOKEN in the URL).\n",
        )
    if max_connections is not None and open_connections >= max_connections:
        return Refusal(
            503,
            f"too many connections ({open_connections} open, limit {max_connections})",
            f"Service Unavailable: too many connections (limit {max_connections}); try again later.\n",
        )
    return None


def _printable(text: str, limit: int = 100) -> str:
    shown = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text[:limit])
    return (shown + "...") if len(text) > limit else shown or '""'


class RateWindow:
    """Counts events in fixed windows of ``window`` seconds; :meth:`hit` says when over the limit.

    Used for inbound messages (a client that sends more than ``limit`` messages within ``window``
    seconds is flooding) and for refusal log lines (so a flood of bad handshakes cannot flood the
    run log that every client receives).
    """

    def __init__(self, limit: float, window: float = 1.0) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window
        self._start = -float("inf")
        self._count = 0

    def hit(self, now: float | None = None) -> bool:
        """Count one event at ``now`` (monotonic seconds); return True when it exceeds the limit."""
        now = time.monotonic() if now is None else now
        if now - self._start >= self.window:
            self._start = now
            self._count = 0
        self._count += 1
        return self._count > self.limit

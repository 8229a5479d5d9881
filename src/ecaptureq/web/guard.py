"""The web UI's gate: the same Origin and token policy as the WebSocket server, as ASGI middleware.

Checks on every HTTP request, in order:

1. **Host** (403): when the UI listens on loopback, the ``Host`` header must name loopback too
   (``localhost``, ``127.0.0.0/8``, ``[::1]``), so a DNS-rebinding page cannot reach it under its own name.
2. **Origin** (403): a request carrying a foreign ``Origin`` (not loopback, not ``--allow-origin``) is a
   page elsewhere calling the API; so is ``Sec-Fetch-Site: cross-site``. Both are refused.
3. **Token** (401), when set, on ``/api/``: ``Authorization: Bearer TOKEN``. No cookie ever carries a
   credential: cookies ignore ports, so any other service on this host would receive it. The page and
   its static files hold no data and are served to anyone who passes 1 and 2; the page takes the token
   from its URL (``?token=TOKEN``) once, keeps it in the tab's ``sessionStorage`` (per origin: another
   port cannot read it), removes it from the address bar and sends it as a header. ``EventSource`` and
   downloads cannot send headers: ``POST /api/ticket`` (with the header) returns a ticket that
   ``/api/stream`` and ``/api/har`` accept once, as ``?ticket=``, within :data:`TICKET_SECONDS`.

Every response also gets a strict Content-Security-Policy (only this origin's files; nothing from the
network) and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecaptureq.access import (
    Origin,
    any_token_matches,
    bearer_tokens,
    check_origins,
    is_loopback_host,
)

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own files only."""


TICKET_SECONDS: Final = 30.0
"""How long a ticket from ``POST /api/ticket`` stays valid (it is also single-use)."""

TICKET_PATHS: Final = ("/api/stream", "/api/har")
"""The endpoints a ticket opens (those a browser cannot call with an Authorization header)."""

MAX_TICKETS: Final = 1024


def _host_name(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware enforcing the policy above in front of ``app``.

    Parameters:
        app: the application to protect.
        token: the token, or ``None`` for none (then only Host and Origin are checked).
        allowed_origins: extra allowed origins (from :func:`~ecaptureq.access.parse_allowed_origin`).
        loopback_only: the UI listens on loopback, so the ``Host`` header must be loopback too.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_origins: Iterable[Origin | str] = (),
        loopback_only: bool = True,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed = tuple(allowed_origins)
        self.loopback_only = loopback_only
        self.refusals = 0
        self._tickets: dict[str, float] = {}

    def _issue_ticket(self) -> str:
        now = time.monotonic()
        for old, expiry in list(self._tickets.items()):
            if expiry < now:
                del self._tickets[old]
        while len(self._tickets) >= MAX_TICKETS:
            self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = now + TICKET_SECONDS
        return ticket

    def _redeem(self, scope: Scope) -> bool:
        if scope["path"] not in TICKET_PATHS:
            return False
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        for key, value in query:
            if key == "ticket":
                expiry = self._tickets.pop(value, None)
                return expiry is not None and expiry >= time.monotonic()
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request; refuse it, redirect it (token in the URL), or pass it on."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check(scope, headers)
        if refusal is not None:
            self.refusals += 1
            status, text = refusal
            await self._plain(scope, receive, send, status, text)
            return
        is_api = scope["path"].startswith("/api/")
        if self.token is not None and is_api and not self._authenticated(headers) and not self._redeem(scope):
            self.refusals += 1
            await self._plain(
                scope,
                receive,
                send,
                401,
                "Unauthorized: open the URL with ?token=TOKEN that ecaptureq ui printed, "
                "or send Authorization: Bearer TOKEN.\n",
            )
            return
        if scope["path"] == "/api/ticket" and scope.get("method") == "POST" and self.token is not None:
            await self._ticket(send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback_host(_host_name(host)):
            return 403, "Forbidden: this UI listens on loopback; open it as 127.0.0.1 or localhost.\n"
        origins = headers.getlist("origin")
        refusal = check_origins(origins, self.allowed)
        if refusal is not None:
            return refusal.status, refusal.body
        if headers.get("sec-fetch-site", "").lower() == "cross-site" and not origins:
            return 403, "Forbidden: cross-site requests are refused.\n"
        return None

    def _authenticated(self, headers: Headers) -> bool:
        # the header only: a token in an API URL does not count (only the page takes it, once)
        assert self.token is not None
        return any_token_matches(bearer_tokens(headers.getlist("authorization")), self.token)

    async def _ticket(self, send: Send) -> None:
        body = json.dumps({"ticket": self._issue_ticket(), "seconds": TICKET_SECONDS}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _plain(self, scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.http.response.start", "status": status, "headers": []})
            await send({"type": "websocket.http.response.body", "body": text.encode()})
            return
        body = text.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="ecaptureq"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

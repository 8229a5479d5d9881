"""The web UI's gate: the same Origin and token policy as the WebSocket server, as ASGI middleware.

Checks on every HTTP request, in order:

1. **Host** (403): when the UI listens on loopback, the ``Host`` header must name loopback too
   (``localhost``, ``127.0.0.0/8``, ``[::1]``), so a DNS-rebinding page cannot reach it under its own name.
2. **Origin** (403): a request carrying a foreign ``Origin`` (not loopback, not ``--allow-origin``) is a
   page elsewhere calling the API; so is ``Sec-Fetch-Site: cross-site``. Both are refused.
3. **Token** (401), when set: ``Authorization: Bearer TOKEN`` or the session cookie. A page URL with
   ``?token=TOKEN`` sets that cookie (HttpOnly, SameSite=Strict, scoped to this port by its name) and
   redirects to the same URL without the token, so it does not stay in the address bar or the history.

Every response also gets a strict Content-Security-Policy (only this origin's files; nothing from the
network) and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecaptureq.server.security import (
    TOKEN_QUERY_PARAMETER,
    Origin,
    is_loopback_host,
    origin_allowed,
    token_matches,
)

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own files only."""


def cookie_name(port: int) -> str:
    """The session cookie's name; cookies ignore ports, so the port is in the name (two UIs, two cookies)."""
    return f"ecaptureq_ui_{port}"


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
        allowed_origins: extra allowed origins (from :func:`~ecaptureq.server.security.parse_allowed_origin`).
        loopback_only: the UI listens on loopback, so the ``Host`` header must be loopback too.
        port: the listening port (names the cookie).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_origins: Iterable[Origin | str] = (),
        loopback_only: bool = True,
        port: int = 0,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed = tuple(allowed_origins)
        self.loopback_only = loopback_only
        self.port = port
        self.refusals = 0

    @property
    def cookie(self) -> str:
        """The session cookie's name."""
        return cookie_name(self.port)

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
        if self.token is not None and not self._authenticated(headers):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            presented = query.get(TOKEN_QUERY_PARAMETER)
            is_page = not scope["path"].startswith("/api/")
            if presented is not None and is_page and token_matches(presented, self.token):
                await self._login(scope, send, query)
                return
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
        if len(origins) > 1 or (origins and not origin_allowed(origins[0], self.allowed)):
            return 403, "Forbidden: requests from pages of another origin are refused (--allow-origin).\n"
        if headers.get("sec-fetch-site", "").lower() == "cross-site" and not origins:
            return 403, "Forbidden: cross-site requests are refused.\n"
        return None

    def _authenticated(self, headers: Headers) -> bool:
        assert self.token is not None
        ok = False
        for value in headers.getlist("authorization"):
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                ok |= token_matches(credentials.strip(), self.token)
        for value in headers.getlist("cookie"):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value)
            except Exception:  # a malformed Cookie header is just not a session
                continue
            morsel = jar.get(self.cookie)
            if morsel is not None:
                ok |= token_matches(morsel.value, self.token)
        return ok

    async def _login(self, scope: Scope, send: Send, query: dict[str, str]) -> None:
        assert self.token is not None
        rest = {k: v for k, v in query.items() if k != TOKEN_QUERY_PARAMETER}
        location = scope["path"] + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

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

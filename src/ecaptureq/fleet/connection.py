"""Connecting to NATS: servers, credentials, TLS, and the errors a person must act on.

:class:`NatsOptions` holds what every fleet command takes (``--nats``, ``--creds``, ``--user`` and
``--password``, ``--token``, ``--nkey``, ``--tls-ca``/``--tls-cert``/``--tls-key``); :func:`connect` opens a
``nats-py`` connection with them and remembers the server's permission and authorization errors, which
NATS reports asynchronously, so that callers can say why a request went unanswered.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from ecaptureq.fleet.subjects import STREAM


class FleetError(Exception):
    """Base class of the fleet's errors; the message says what happened and what to do."""


class NatsUnavailable(FleetError):
    """No NATS server could be reached (``.servers`` lists the URLs tried)."""

    def __init__(self, servers: list[str], reason: str) -> None:
        super().__init__(f"cannot connect to NATS at {', '.join(servers)}: {reason}")
        self.servers = servers
        self.reason = reason


class NatsAuthError(FleetError):
    """The server at ``display`` refused the credentials (authorization violation or expired credentials);
    ``detail`` is what it said."""

    def __init__(self, display: str, detail: str) -> None:
        super().__init__(f"NATS at {display} refused the credentials ({detail})")
        self.display = display
        self.detail = detail


class ConsumerRefused(FleetError):
    """NATS refused to create or bind the consumer ``durable`` (``None``: an ephemeral one) on ``stream``;
    ``description`` is its reason. A durable keeps the filter it was created with."""

    def __init__(self, stream: str, durable: str | None, description: str) -> None:
        super().__init__(f"NATS refused the consumer {durable or ''} on {stream}: {description}")
        self.stream = stream
        self.durable = durable
        self.description = description


class NatsPermissionError(FleetError):
    """The credentials are valid but may not do this (``.subject`` is the refused subject, if known)."""

    def __init__(self, message: str, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


@dataclass
class NatsOptions:
    """Where and how to connect: server URLs, one way of authenticating, and TLS.

    Attributes:
        servers: ``nats://HOST:PORT`` or ``tls://HOST:PORT`` URLs (credentials in a URL work too).
        creds: a ``.creds`` file (JWT and NKey seed, as ``nsc`` writes it).
        nkey: an NKey seed file.
        user, password: user/password authentication.
        token: token authentication.
        tls: a TLS context (``tls://`` URLs, or a server that requires TLS).
        name: the connection name shown in the server's monitoring.
        inbox_prefix: the prefix of reply subjects; agents use their own so that a locked-down
            account lets each agent read only its own replies.
    """

    servers: list[str]
    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: ssl.SSLContext | None = None
    name: str = "ecaptureq"
    inbox_prefix: str = "_INBOX"
    connect_timeout: float = 5.0
    pending_size: int = 2 * 1024 * 1024
    display: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.display:
            self.display = ", ".join(_hide_password(s) for s in self.servers)


def _hide_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def is_nats_url(url: str) -> bool:
    """Whether ``url`` names a NATS server (``nats://`` or ``tls://``) rather than a WebSocket server."""
    return url.strip().lower().startswith(("nats://", "tls://"))


class Connection:
    """An open NATS connection and the asynchronous errors the server sent on it.

    Use :func:`connect` to make one. ``nc`` is the nats-py client, ``js`` its JetStream context.
    """

    def __init__(self, nc: NatsClient, options: NatsOptions, errors: list[str]) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.options = options
        self.errors = errors

    def permission_error(self) -> str | None:
        """The last permission or authorization violation the server reported, if any."""
        for text in reversed(self.errors):
            low = text.lower()
            if "permission" in low or "authorization" in low:
                return text
        return None

    def refused(self, what: str) -> FleetError:
        """The error to raise when a request about ``what`` went unanswered: a permission error if the
        server reported one, else a timeout."""
        violation = self.permission_error()
        if violation is not None:
            return NatsPermissionError(
                f"NATS refused {what}: {violation}; these credentials may not read stream {STREAM} "
                "(publish-only agent credentials cannot read: use a reader's)"
            )
        return FleetError(f"NATS did not answer {what} in time (is JetStream enabled on the server?)")

    async def close(self) -> None:
        """Flush what is buffered (briefly) and close."""
        if self.nc.is_closed:
            return
        with contextlib.suppress(Exception):
            if self.nc.is_connected:
                await self.nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await self.nc.close()


async def connect(
    options: NatsOptions,
    *,
    reconnect: bool = True,
    on_disconnected: Callable[[], None] | None = None,
    on_reconnected: Callable[[], None] | None = None,
) -> Connection:
    """Connect; with ``reconnect`` nats-py reconnects by itself forever after the first success.

    Raises:
        NatsAuthError: the server refused the credentials.
        NatsUnavailable: no server answered (or TLS failed).
    """
    errors: list[str] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(str(exc) or type(exc).__name__)
        del errors[:-20]

    async def disconnected_cb() -> None:
        if on_disconnected is not None:
            on_disconnected()

    async def reconnected_cb() -> None:
        if on_reconnected is not None:
            on_reconnected()

    kwargs: dict[str, Any] = {
        "servers": options.servers,
        "name": options.name,
        "connect_timeout": options.connect_timeout,
        "allow_reconnect": reconnect,
        "max_reconnect_attempts": -1 if reconnect else 0,
        "reconnect_time_wait": 1,
        "error_cb": error_cb,
        "disconnected_cb": disconnected_cb,
        "reconnected_cb": reconnected_cb,
        "inbox_prefix": options.inbox_prefix,
        "pending_size": options.pending_size,
        "tls": options.tls,
        "user": options.user,
        "password": options.password,
        "token": options.token,
    }
    if options.creds is not None:
        kwargs["user_credentials"] = options.creds
    if options.nkey is not None:
        kwargs["nkeys_seed"] = options.nkey
    nc = NatsClient()
    try:
        # nats-py retries the initial connect only with allow_reconnect; we want one clear answer.
        await nc.connect(**{**kwargs, "allow_reconnect": False, "max_reconnect_attempts": 0})
    except (nats.errors.Error, OSError, TimeoutError, ssl.SSLError) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        text = " ".join(errors) or str(exc) or type(exc).__name__
        if "authorization" in text.lower() or "authentication" in text.lower():
            raise NatsAuthError(options.display, text) from None
        raise NatsUnavailable(options.servers, text) from None
    if reconnect:
        # From now on reconnect forever: the options are per client, set after the first success.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
    return Connection(nc, options, errors)

"""Connect to an eCaptureQ server (real eCapture or ours) and iterate over its messages.

:class:`Client` is the asyncio front end; :class:`SyncClient` wraps it for ordinary loops. Both send
``Origin: http://localhost/`` by default, because real eCapture answers 403 to a handshake without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import ssl as _ssl
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import Event as ProtocolEvent
from websockets.protocol import Protocol

from ecaptureq.client.session import Session, SessionStats
from ecaptureq.client.url import normalize_url, redact_url
from ecaptureq.protocol import MAX_FRAME_SIZE, DecodeError, Message

logger = logging.getLogger("ecaptureq.client")

DEFAULT_ORIGIN: Final = "http://localhost/"
"""The Origin the reference clients send; real eCapture refuses a handshake without one."""


class ClientError(Exception):
    """Base class of the errors a client reports."""


class ConnectError(ClientError):
    """The server could not be reached, or refused the handshake (``status`` holds its HTTP status).

    ``url`` is the server's URL as shown in messages (any token hidden) and ``reason`` says what went
    wrong; the message is ``cannot connect to URL: REASON``, already complete: callers print it as it is.
    """

    def __init__(self, message: str, status: int | None = None, *, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.reason = reason or message


class HandshakeRefused(ConnectError):
    """The server answered the WebSocket handshake with an HTTP error ``status`` (401: a token is missing or
    wrong, 403: its Origin policy, 503: too many connections).

    ``token_sent`` says whether this client presented a token, ``origin`` is the Origin it sent (``None``:
    none), ``body`` the start of the server's answer. The message says what happened in the protocol's
    terms; what a person should do about it is the caller's to say.
    """

    def __init__(self, url: str, status: int, *, body: str, token_sent: bool, origin: str | None) -> None:
        self.body = body
        self.token_sent = token_sent
        self.origin = origin
        detail = {
            401: "authentication failed: the server did not accept the token"
            if token_sent
            else "authentication failed: the server wants a valid token",
            403: f"refused by the server's origin policy (this client sent Origin: {origin})"
            if origin
            else "refused by the server (403 Forbidden)",
            503: "the server has too many connections; try again later",
        }.get(status, body[:200])
        reason = f"the server refused the handshake with HTTP {status}" + (f" ({detail})" if detail else "")
        super().__init__(f"cannot connect to {url}: {reason}", status, url=url, reason=reason)


class CertificateNotTrusted(ConnectError):
    """A ``wss://`` server's certificate did not verify; ``verify_message`` is OpenSSL's reason."""

    def __init__(self, url: str, verify_message: str) -> None:
        self.verify_message = verify_message
        reason = f"TLS certificate not trusted ({verify_message})"
        super().__init__(f"cannot connect to {url}: {reason}", url=url, reason=reason)


def _connect_error(url: str, reason: str, status: int | None = None) -> ConnectError:
    return ConnectError(f"cannot connect to {url}: {reason}", status, url=url, reason=reason)


def _os_error_reason(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused (is the server running, on this port?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class ConnectionLost(ClientError):
    """An established connection ended and reconnecting is off."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Connected:
    """Status: a connection opened. ``gap`` is the seconds without a connection before it (reconnects)."""

    url: str
    attempt: int
    gap: float | None


@dataclass(frozen=True)
class Disconnected:
    """Status: a connection ended or an attempt failed; ``retry_in`` is ``None`` when giving up; ``error``
    is the failed attempt's error (``None`` when an open connection ended)."""

    reason: str
    retry_in: float | None
    error: ConnectError | None = None


Status = Connected | Disconnected
"""Connection status changes reported to ``on_status``."""


RECEIVE_HIGH_FRAMES: Final = 4096
"""Frames received and not yet taken by the reader at which the client stops reading the socket."""
RECEIVE_HIGH_BYTES: Final = 4 * 1024 * 1024
"""The same limit in bytes: a slow reader slows the server down (TCP flow control), memory stays bounded."""


class _BatchConnection(ClientConnection):
    """A websockets client connection that hands its reader every message received so far at once.

    websockets parses the frames (its sans-I/O protocol: limits, pings, close handshake, UTF-8); the
    messages go to a list that :meth:`recv_batch` takes whole, instead of one ``await recv()`` each
    through websockets' message assembler. Reading pauses while :data:`RECEIVE_HIGH_FRAMES` frames or
    :data:`RECEIVE_HIGH_BYTES` bytes wait, and resumes when the reader takes them.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._ready: list[bytes | str] = []
        self._ready_bytes = 0
        self._fragments: list[Frame] = []
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._failed = False

    def process_event(self, event: ProtocolEvent) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake response
            return
        opcode = event.opcode
        if opcode is not Opcode.BINARY and opcode is not Opcode.TEXT and opcode is not Opcode.CONT:
            super().process_event(event)  # ping, pong, close
            return
        if self._failed:
            return  # after a message that failed the connection, nothing more is delivered
        if not event.fin or self._fragments:
            self._fragments.append(event)
            if not event.fin:
                return
            frames, self._fragments = self._fragments, []
            opcode = frames[0].opcode
            data = b"".join(frame.data for frame in frames)
        else:
            data = bytes(event.data)
        message: bytes | str = data
        if opcode is Opcode.TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:  # as websockets' own recv() does
                self._failed = True
                self.set_connection_exc(exc)
                self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                self.send_data()
                return
        self._ready.append(message)
        self._ready_bytes += len(data)
        if not self._paused and (
            len(self._ready) >= RECEIVE_HIGH_FRAMES or self._ready_bytes >= RECEIVE_HIGH_BYTES
        ):
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    @property
    def pending(self) -> int:
        """Messages received and not yet taken by :meth:`recv_batch`."""
        return len(self._ready)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

    async def recv_batch(self) -> list[bytes | str]:
        """Every message received and not yet taken (at least one: waits for it), in order.

        Raises:
            ConnectionClosed: the connection ended and every message before the end was taken.
        """
        while not self._ready:
            if self.connection_lost_waiter.done():
                raise self.protocol.close_exc
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch, self._ready, self._ready_bytes = self._ready, [], 0
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        return batch


def _default_malformed(error: DecodeError) -> None:
    logger.warning("skipped %s", error)


class Client:
    """An eCaptureQ client: ``async for message in Client(url)`` yields typed messages.

    Parameters:
        url: the server's URL (normalised by :func:`~ecaptureq.client.url.normalize_url`).
        origin: the Origin header to send, or ``None`` to send none.
        reconnect: reconnect with capped exponential backoff when the connection ends or fails.
        initial_backoff, max_backoff: the backoff's first and largest delay in seconds.
        open_timeout: seconds allowed for one connection attempt (TCP, TLS and handshake).
        headers: extra handshake headers (for instance ``Authorization``).
        ssl: the TLS context for ``wss://`` (the default verifies certificates).
        on_malformed: called with each skipped malformed frame (default: a logged warning).
        on_status: called with :class:`Connected` and :class:`Disconnected` status changes.
    """

    def __init__(
        self,
        url: str,
        *,
        origin: str | None = DEFAULT_ORIGIN,
        reconnect: bool = False,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        open_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
        on_malformed: Callable[[DecodeError], None] | None = None,
        on_status: Callable[[Status], None] | None = None,
    ) -> None:
        self.url, self.url_warnings = normalize_url(url)
        self.display_url = redact_url(self.url)
        """The URL with any ``?token=`` value hidden: what messages show."""
        self.url_warnings = [re.sub(r"(token=)[^&\s#]*", r"\1***", w) for w in self.url_warnings]
        self.origin = origin
        self.reconnect = reconnect
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.headers = dict(headers or {})
        self.ssl = ssl
        self.session = Session()
        self._on_malformed = on_malformed or _default_malformed
        self._on_status = on_status
        self._conn: _BatchConnection | None = None
        self._closed = False

    @property
    def stats(self) -> SessionStats:
        """Counters over all connections: frames, messages, malformed, suppressed logs, connections."""
        return self.session.stats

    @property
    def pending(self) -> int:
        """Messages received from the server and not yet handed to the reader (0 between connections):
        at most about :data:`RECEIVE_HIGH_FRAMES` or :data:`RECEIVE_HIGH_BYTES`, as reading pauses there."""
        return 0 if self._conn is None else self._conn.pending

    def _status(self, status: Status) -> None:
        if self._on_status is not None:
            self._on_status(status)

    async def _open(self) -> _BatchConnection:
        kwargs: dict[str, Any] = {
            "origin": self.origin,
            "additional_headers": self.headers,
            "open_timeout": self.open_timeout,
            "compression": None,
            "max_size": MAX_FRAME_SIZE,
            "user_agent_header": "ecaptureq",
            "create_connection": _BatchConnection,
        }
        if self.url.startswith("wss://"):
            kwargs["ssl"] = self.ssl or _ssl.create_default_context()
        try:
            return cast(_BatchConnection, await connect(self.url, **kwargs))
        except InvalidStatus as exc:
            raise HandshakeRefused(
                self.display_url,
                exc.response.status_code,
                body=exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else "",
                token_sent=bool(self.headers.get("Authorization")) or "token=" in self.url,
                origin=self.origin,
            ) from None
        except InvalidURI as exc:
            raise _connect_error(self.display_url, str(exc)) from None
        except InvalidHandshake as exc:
            tls_hint = "; if it serves TLS, use wss://" if self.url.startswith("ws://") else ""
            raise _connect_error(self.display_url, f"not a WebSocket server ({exc}{tls_hint})") from None
        except _ssl.SSLCertVerificationError as exc:
            raise CertificateNotTrusted(self.display_url, exc.verify_message) from None
        except (_ssl.SSLError, ConnectionResetError, ConnectionAbortedError, EOFError) as exc:
            if not self.url.startswith("wss://"):
                raise _connect_error(self.display_url, _os_error_reason(exc)) from None
            plain = redact_url("ws://" + self.url[len("wss://") :])
            raise _connect_error(
                self.display_url, f"the TLS handshake failed (is it a plain ws:// server? then use {plain})"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise _connect_error(self.display_url, _os_error_reason(exc)) from None

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Yield messages until the connection ends (or forever, reconnecting, with ``reconnect``)."""
        async with contextlib.aclosing(self.batches()) as batches:
            async for batch in batches:
                for message in batch:
                    yield message

    async def batches(self) -> AsyncGenerator[list[Message], None]:
        """Like iterating over the client, but yield at once every message that arrived together (one
        read of the socket; never an empty list): a reader that handles them in one go, and flushes
        its output once for them, spends less per message than one ``await`` each."""
        session = self.session
        async with contextlib.aclosing(self.frames()) as reads:
            async for frames in reads:
                batch: list[Message] = []
                for frame in frames:
                    msg = session.receive(frame)
                    if msg is None:
                        continue
                    if isinstance(msg, DecodeError):
                        self._on_malformed(msg)
                        continue
                    batch.append(msg)
                if batch:
                    yield batch

    async def frames(self) -> AsyncGenerator[list[bytes | str], None]:
        """The frames of each read of the socket, as received (never an empty list), with the same
        connecting, reconnecting and status changes as :meth:`batches`: for a reader that decodes them
        elsewhere, with a :class:`~ecaptureq.client.Session` of its own told of each connection (the
        :class:`Connected` status comes before a connection's first frame). This client's own session
        is told too, and decodes nothing: its counters stay at zero frames."""
        attempt = 0
        delay = self.initial_backoff
        lost_at: float | None = None
        while not self._closed:
            attempt += 1
            try:
                conn = await self._open()
            except ConnectError as exc:
                if not self.reconnect or (exc.status is not None and exc.status in (401, 403)):
                    raise
                self._status(Disconnected(str(exc), delay, exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            self._conn = conn
            self.session.connection_opened()
            gap = None if lost_at is None else time.monotonic() - lost_at
            self._status(Connected(self.display_url, attempt, gap))
            received = 0
            try:
                while True:
                    frames = await conn.recv_batch()
                    received += len(frames)
                    yield frames
            except ConnectionClosed:
                pass
            finally:
                self._conn = None
            if self._closed:
                return
            why, close = _why_closed(conn.protocol)
            code, reason = (close.code, close.reason) if close is not None else (None, "")
            lost_at = time.monotonic()
            if received:
                delay = self.initial_backoff
            if not self.reconnect:
                raise ConnectionLost(f"{self.display_url}: {why}", code, reason)
            self._status(Disconnected(why, delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def close(self) -> None:
        """Close the connection and stop iterating."""
        self._closed = True
        if self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _why_closed(protocol: Protocol) -> tuple[str, Close | None]:
    """Why a connection ended, for a person, and the close frame that says so (``None`` when none did).

    The server's close frame, unless this client sent one first: websockets fails the connection itself
    on a frame over :data:`~ecaptureq.protocol.MAX_FRAME_SIZE` (1009), text that is not UTF-8 (1007) or a
    protocol violation (1002), and a server may echo that code back.
    """
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    if sent is not None and sent.code != CloseCode.NORMAL_CLOSURE and not protocol.close_rcvd_then_sent:
        return f"this client closed the connection: {sent}", sent
    if rcvd is not None:
        return f"closed by the server with {rcvd}", rcvd
    return "connection lost (no close frame)", None


async def _next(agen: AsyncIterator[Message]) -> Message:
    return await anext(agen)


class SyncClient:
    """A blocking wrapper: ``for message in SyncClient(url): ...``.

    It runs a :class:`Client` on an event loop in a background thread; each step of the iteration runs
    one step of the async iterator there, so errors (:class:`ConnectError`, :class:`ConnectionLost`)
    surface in the caller's thread. Takes the same keyword arguments as :class:`Client`.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.client = Client(url, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ecaptureq-client", daemon=True)
        self._thread.start()
        self._agen: AsyncIterator[Message] = self.client.__aiter__()

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        future = asyncio.run_coroutine_threadsafe(_next(self._agen), self._loop)
        try:
            return future.result()
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

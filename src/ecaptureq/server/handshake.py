"""The access policy (:mod:`ecaptureq.access`) as the handshake hook ``websockets`` calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ecaptureq.access import HandshakeRequest, Origin, Refusal, check_handshake


def handshake_request(request: Request) -> HandshakeRequest:
    """The parts of a ``websockets`` handshake request the access policy reads."""
    return HandshakeRequest(
        target=request.path,
        origins=tuple(request.headers.get_all("Origin")),
        authorization=tuple(request.headers.get_all("Authorization")),
    )


def refusal_response(conn: ServerConnection, refusal: Refusal) -> Response:
    """The HTTP response for a refusal (401 carries ``WWW-Authenticate: Bearer``; 503 ``Retry-After``)."""
    response = conn.respond(refusal.status, refusal.body)
    headers: Headers = response.headers
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ecaptureq"'
    elif refusal.status == 503:
        headers["Retry-After"] = "5"
    return response


HandshakeHook = Callable[[ServerConnection, Request], Response | None]
"""The shape of a ``websockets`` ``process_request`` hook (synchronous)."""


def build_process_request(
    *,
    allowed_origins: Iterable[Origin | str] = (),
    token: str | None = None,
    max_connections: int | None = None,
    open_connections: Callable[[], int] = lambda: 0,
    on_refuse: Callable[[ServerConnection, Refusal], None] | None = None,
    then: HandshakeHook | None = None,
) -> HandshakeHook:
    """Build the ``process_request`` hook that enforces the policy, then runs ``then`` (if given).

    ``open_connections`` returns how many connections are open now; it is read synchronously inside the
    hook, and ``websockets`` opens an accepted connection before running anything else, so concurrent
    handshakes cannot slip past ``max_connections`` together. ``on_refuse`` is told about each refusal.
    """
    entries = tuple(allowed_origins)

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        refusal = check_handshake(
            handshake_request(request),
            allowed_origins=entries,
            token=token,
            open_connections=open_connections(),
            max_connections=max_connections,
        )
        if refusal is not None:
            if on_refuse is not None:
                on_refuse(conn, refusal)
            return refusal_response(conn, refusal)
        return then(conn, request) if then is not None else None

    return process_request

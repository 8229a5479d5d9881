"""Command-line options for the lock-down: tokens, Origin allow-list, TLS and limits (server and client).

``serve`` (and every command that serves) takes :func:`add_server_security_options` and turns them into
:class:`~ecaptureq.server.Server` keyword arguments with :func:`server_security_kwargs`. ``ui`` serves its
page over plain HTTP with its own options. Both make the same :func:`decide_listen`: refuse to listen beyond
loopback without a token (unless ``--insecure``), warn when serving beyond loopback without a token or
without TLS, and when any origin is allowed. ``watch`` takes :func:`add_client_security_options` and
:func:`client_security_kwargs`.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Final

from ecaptureq.access import (
    ALLOW_ANY_ORIGIN,
    BadOrigin,
    Origin,
    check_token,
    generate_token,
    is_loopback_host,
    parse_allowed_origin,
)
from ecaptureq.cli.errors import CliError, ExitCode

TOKEN_ENV: Final = "ECAPTUREQ_TOKEN"
"""The environment variable that holds the token (safer than ``--token``, which ``ps`` shows)."""


def _warn(command: str, text: str) -> None:
    print(f"ecaptureq {command}: warning: {text}", file=sys.stderr, flush=True)


def token_option(value: str | None, option: str = "--token") -> str | None:
    """The token given as ``option`` (its ``value``), else ``$ECAPTUREQ_TOKEN``, else ``None``.

    Raises:
        CliError: the token is unusable (exit 2); the message names where it came from.
    """
    token = value if value is not None else os.environ.get(TOKEN_ENV) or None
    if token is None:
        return None
    source = option if value is not None else TOKEN_ENV
    try:
        return check_token(token)
    except ValueError as exc:
        raise CliError(f"{source}: {exc}", ExitCode.USAGE) from None


def _token_from(args: argparse.Namespace) -> str | None:
    return token_option(args.token)


# -- listening -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenDecision:
    """What :func:`decide_listen` decided: the token, whether the address is loopback, the allow-list."""

    token: str | None
    loopback: bool
    allowed_origins: tuple[Origin | str, ...]


def decide_listen(args: argparse.Namespace, host: str, *, tls: bool, command: str) -> ListenDecision:
    """The one decision of every command that listens (``serve``, ``tls``, ``demo``, ``ui``).

    Reads ``--token`` (or ``$ECAPTUREQ_TOKEN``), ``--insecure`` and ``--allow-origin`` from ``args``.
    Listening on a non-loopback ``host`` without a token is refused (exit 2) unless ``--insecure``; the
    message offers a freshly generated token, the way Jupyter does. Beyond loopback, serving without a
    token or without TLS (``tls`` false) is warned about on stderr, and so is ``--allow-origin '*'``.

    Raises:
        CliError: the refusal above, a bad token or a bad ``--allow-origin`` (exit 2).
    """
    token = _token_from(args)
    try:
        allowed = tuple(parse_allowed_origin(origin) for origin in args.allow_origin)
    except BadOrigin as exc:
        raise CliError(f"--allow-origin {exc}", ExitCode.USAGE) from None
    loopback = is_loopback_host(host)
    if not loopback:
        if token is None and not args.insecure:
            raise CliError(
                f"refusing to listen on {host} without a token: anyone who can reach it would read the "
                f"captured plaintext. Set one, e.g. {TOKEN_ENV}={generate_token()} (clients then use "
                "watch --token or ?token=), or pass --insecure to serve without one",
                ExitCode.USAGE,
            )
        if token is None:
            _warn(
                command, f"serving on {host} without a token (--insecure): anyone who can reach it reads all"
            )
        elif not tls:
            _warn(
                command, f"serving on {host} without TLS: the token and the data cross the network in clear"
            )
    if ALLOW_ANY_ORIGIN in allowed:
        _warn(command, "--allow-origin '*': any web page open in a browser here can read the stream")
    return ListenDecision(token=token, loopback=loopback, allowed_origins=allowed)


# -- server ----------------------------------------------------------------------------------------


def add_server_security_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--token``, ``--allow-origin``, ``--insecure``, ``--tls-cert/--tls-key`` and the limits."""
    group = parser.add_argument_group("security and limits")
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"require this token from every client (Authorization: Bearer TOKEN, or ?token=TOKEN); "
        f"default: ${TOKEN_ENV}, which ps does not show",
    )
    group.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept browser pages from ORIGIN (scheme://host[:port], or * for any); repeatable. "
        "Tools that send no Origin and pages from localhost/127.0.0.1/[::1] are always accepted",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without a token (anyone who can reach the port "
        "reads the captured plaintext)",
    )
    group.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this PEM certificate (chain)")
    group.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    group.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client has to complete the WebSocket handshake (default 10)",
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=128,
        metavar="N",
        help="most open connections; more are refused with HTTP 503 (default 128)",
    )
    group.add_argument(
        "--max-message-size",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="largest message a client may send; larger closes it with 1009 (default 65536)",
    )
    group.add_argument(
        "--max-message-rate",
        type=float,
        default=50.0,
        metavar="N",
        help="most messages per second a client may send; more closes it with 1008 (default 50)",
    )


def server_tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from ``--tls-cert``/``--tls-key`` (``None`` without them).

    Raises:
        CliError: a key without a certificate, or files that cannot be loaded (exit 2).
    """
    if cert is None:
        if key is not None:
            raise CliError("--tls-key needs --tls-cert", ExitCode.USAGE)
        return None
    for name, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not os.path.isfile(path):
            raise CliError(f"{name} {path}: no such file", ExitCode.USAGE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        what = f"{cert} and {key}" if key else cert
        raise CliError(
            f"--tls-cert/--tls-key: cannot load a PEM certificate and its matching private key from {what} "
            f"({getattr(exc, 'reason', None) or exc})",
            ExitCode.USAGE,
        ) from None
    return ctx


def server_security_kwargs(
    args: argparse.Namespace, host: str, scheme: str, command: str = "serve"
) -> dict[str, Any]:
    """Check the security options and return them as :class:`~ecaptureq.server.Server` keyword arguments.

    Where it may listen is :func:`decide_listen`'s decision.
    """
    ctx = server_tls_context(args.tls_cert, args.tls_key)
    if scheme == "wss" and ctx is None:
        raise CliError("a wss:// address needs --tls-cert FILE and --tls-key FILE", ExitCode.USAGE)
    for name, value in (
        ("--handshake-timeout", args.handshake_timeout),
        ("--max-connections", args.max_connections),
        ("--max-message-size", args.max_message_size),
        ("--max-message-rate", args.max_message_rate),
    ):
        if value <= 0:
            raise CliError(f"{name} must be positive", ExitCode.USAGE)
    decision = decide_listen(args, host, tls=ctx is not None, command=command)
    return {
        "token": decision.token,
        "allowed_origins": tuple(args.allow_origin),
        "ssl": ctx,
        "open_timeout": args.handshake_timeout,
        "max_connections": args.max_connections,
        "max_message_size": args.max_message_size,
        "max_inbound_rate": args.max_message_rate,
    }


# -- client ----------------------------------------------------------------------------------------


def add_client_security_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--token``, ``--ca`` and ``--insecure`` to a command that connects."""
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"send Authorization: Bearer TOKEN (default: ${TOKEN_ENV}, which ps does not show)",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="wss://: trust the certificates in this PEM file (e.g. a self-signed one)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="wss://: do not verify the server's certificate (anyone in the path can read and forge)",
    )


def client_tls_context(ca: str | None, insecure: bool) -> ssl.SSLContext | None:
    """The client's TLS context: ``None`` (system trust store) unless ``--ca`` or ``--insecure``.

    Raises:
        CliError: both given, or an unreadable ``--ca`` file (exit 2).
    """
    if ca is not None and insecure:
        raise CliError("--ca and --insecure exclude each other", ExitCode.USAGE)
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise CliError(f"--ca {ca}: no such file", ExitCode.USAGE) from None
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--ca {ca}: not a PEM certificate file ({exc})", ExitCode.USAGE) from None


def client_security_kwargs(args: argparse.Namespace, url: str, command: str = "watch") -> dict[str, Any]:
    """Check ``--token``, ``--ca`` and ``--insecure``; return ``headers`` and ``ssl`` for a Client."""
    token = _token_from(args)
    ctx = client_tls_context(args.ca, args.insecure)
    is_wss = url.strip().lower().startswith(("wss://", "https://"))
    if not is_wss and (args.ca is not None or args.insecure):
        _warn(command, "--ca and --insecure only matter for wss:// URLs")
    if is_wss and args.insecure:
        _warn(command, "--insecure: the server's certificate is not verified")
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return {"headers": headers, "ssl": ctx}

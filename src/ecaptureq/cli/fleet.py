"""The options every fleet command shares (``--nats`` credentials and TLS, retention), and their errors.

Not a command itself: ``agent``, ``collect``, ``watch``, ``record`` and ``ui`` use it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ecaptureq.cli.errors import CliError, ExitCode
from ecaptureq.cli.runtime import Lifecycle
from ecaptureq.fleet import (
    BadSince,
    ConsumerRefused,
    FleetError,
    NatsAuthError,
    NatsOptions,
    NatsPermissionError,
    NatsUnavailable,
    Retention,
)
from ecaptureq.fleet.subjects import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    parse_duration,
    parse_since,
    parse_size,
)
from ecaptureq.store import StoreError

if TYPE_CHECKING:
    from ecaptureq.fleet import Collector

PASSWORD_ENV: Final = "ECAPTUREQ_NATS_PASSWORD"
"""The NATS password when ``--nats-password`` is not given (``ps`` does not show the environment)."""
TOKEN_ENV: Final = "ECAPTUREQ_NATS_TOKEN"
"""The NATS token when ``--nats-token`` is not given."""

NATS_EXIT_CODES: Final[tuple[tuple[ExitCode, str], ...]] = (
    (ExitCode.CONNECTION, "cannot reach NATS (or it has no JetStream)"),
    (ExitCode.AUTH, "NATS refused the credentials"),
    (ExitCode.FORBIDDEN, "the credentials may not do this (an agent's publish-only credentials cannot read)"),
)
"""What a command reading the fleet's stream ends with when NATS refuses or cannot be reached."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_nats_options(parser: argparse.ArgumentParser, *, url: bool = True) -> None:
    """``--nats URL`` (unless the command takes the URL itself) and the NATS credential and TLS options."""
    group = parser.add_argument_group("NATS connection")
    if url:
        group.add_argument(
            "--nats",
            metavar="URL",
            required=True,
            action="append",
            help="the NATS server: nats://HOST:4222 or tls://HOST:4222 (repeat for a cluster; "
            "nats://USER:PASSWORD@HOST:4222 works too)",
        )
    group.add_argument("--creds", metavar="FILE", help="a NATS .creds file (JWT and NKey seed, from nsc)")
    group.add_argument("--nkey", metavar="FILE", help="an NKey seed file")
    group.add_argument("--nats-user", metavar="USER", help="user name (with the password)")
    group.add_argument(
        "--nats-password",
        metavar="PASSWORD",
        help=f"password (default ${PASSWORD_ENV}, which ps does not show)",
    )
    group.add_argument("--nats-token", metavar="TOKEN", help=f"token authentication (default ${TOKEN_ENV})")
    group.add_argument("--nats-ca", metavar="FILE", help="trust this CA for the server's TLS certificate")
    group.add_argument("--nats-cert", metavar="FILE", help="client certificate for TLS (mutual TLS)")
    group.add_argument("--nats-key", metavar="FILE", help="the client certificate's key")


def add_retention_options(parser: argparse.ArgumentParser) -> None:
    """``--max-age`` and ``--max-bytes``: the stream's retention when the command creates it."""
    group = parser.add_argument_group("stream retention (when the stream is created; changed if given)")
    group.add_argument(
        "--max-age",
        type=_duration,
        metavar="AGE",
        help=f"keep messages this long: seconds, or 30m, 24h, 7d (default {DEFAULT_MAX_AGE / 86400:g}d)",
    )
    group.add_argument(
        "--max-bytes",
        type=_size,
        metavar="SIZE",
        help=f"keep at most this much, oldest dropped first: bytes, or 512M, 10G (default "
        f"{DEFAULT_MAX_BYTES // 1024**3}G)",
    )


def retention_from_args(args: argparse.Namespace) -> Retention:
    """The :class:`Retention` the options ask for."""
    return Retention(max_age=args.max_age, max_bytes=args.max_bytes)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.nats_ca is None and args.nats_cert is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=args.nats_ca)
        if args.nats_cert is not None:
            ctx.load_cert_chain(args.nats_cert, args.nats_key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--nats-ca/--nats-cert: cannot load ({exc})", ExitCode.USAGE) from None
    return ctx


def nats_options_from_args(
    args: argparse.Namespace, servers: list[str], *, name: str, inbox_prefix: str = "_INBOX"
) -> NatsOptions:
    """The :class:`NatsOptions` of the parsed options.

    Raises:
        CliError: a bad URL or an unreadable TLS file (exit 2).
    """
    for url in servers:
        if not url.strip().lower().startswith(("nats://", "tls://")):
            raise CliError(f"{url!r}: expected a NATS URL such as nats://127.0.0.1:4222", ExitCode.USAGE)
    password = args.nats_password if args.nats_password is not None else os.environ.get(PASSWORD_ENV)
    token = args.nats_token if args.nats_token is not None else os.environ.get(TOKEN_ENV)
    return NatsOptions(
        servers=servers,
        creds=args.creds,
        nkey=args.nkey,
        user=args.nats_user,
        password=password if args.nats_user else None,
        token=token or None,
        tls=_tls(args),
        name=name,
        inbox_prefix=inbox_prefix,
    )


def since_from_args(text: str | None) -> datetime.datetime | None:
    """``--since`` parsed (``None`` when not given).

    Raises:
        CliError: not a time or an age (exit 2).
    """
    if text is None:
        return None
    try:
        return parse_since(text)
    except BadSince as exc:
        raise CliError(f"--since {exc}", ExitCode.USAGE) from None


def fleet_error(exc: FleetError) -> CliError:
    """The CLI error (message and exit code) for a fleet error."""
    if isinstance(exc, NatsAuthError):
        return CliError(
            f"{exc}: check --creds, --nats-user/--nats-password, --nats-token or --nkey", ExitCode.AUTH
        )
    if isinstance(exc, ConsumerRefused) and exc.durable:
        return CliError(
            f"{exc} (a durable keeps its first --node and --since: use another --durable)",
            ExitCode.CONNECTION,
        )
    if isinstance(exc, NatsPermissionError):
        return CliError(str(exc), ExitCode.FORBIDDEN)
    if isinstance(exc, NatsUnavailable):
        return CliError(str(exc), ExitCode.CONNECTION)
    return CliError(str(exc), ExitCode.CONNECTION)


async def run_collector(
    collector: Collector, command: str, kept: str, opened: Callable[[], None] | None = None
) -> ExitCode:
    """Run ``collector`` (its store started, its reader opened, then ``opened`` called) until Ctrl-C,
    SIGTERM or its end; close it; return the exit code (11 when the last batch cannot be written).

    ``command`` names the command in messages; ``kept`` says what a failed write leaves in the database.
    """
    reader = collector.reader
    code = ExitCode.OK
    try:
        await collector.start()  # the database is opened (or refused) before connecting
    except StoreError as exc:
        raise CliError(str(exc), ExitCode.STORAGE) from None
    try:
        async with Lifecycle() as life:  # a signal while the reader opens stops it right after
            await reader.open()
            if opened is not None:
                opened()
            await life.wait(life.start(collector.run()))
    except FleetError as exc:
        raise fleet_error(exc) from None
    except StoreError as exc:
        raise CliError(f"stopped: {exc}; {kept}", ExitCode.STORAGE) from None
    finally:
        try:
            await collector.close()
        except StoreError as exc:
            print(f"ecaptureq {command}: could not write the last batch: {exc}", file=sys.stderr)
            code = ExitCode.STORAGE
    return code

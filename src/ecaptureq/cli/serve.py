"""``ecaptureq serve``: an eCaptureQ server fed by the demo source or a replayed recording."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.explain import replay_error
from ecaptureq.cli.render import plural
from ecaptureq.cli.runtime import Lifecycle, run_event_loop
from ecaptureq.cli.security import add_server_security_options, server_security_kwargs
from ecaptureq.cli.stats import StatsReporter, format_stats
from ecaptureq.protocol import run_log_line
from ecaptureq.protocol.banner import startup_banner
from ecaptureq.server import SHUTDOWN_GRACE, Server, ServerStats, ShutdownReport
from ecaptureq.sources.base import Sink
from ecaptureq.sources.demo import DemoSource
from ecaptureq.sources.replay import ReplayError, ReplaySource, load_recording

DEFAULT_PORT = 28257
"""eCaptureQ's port: real eCapture's default, and ours."""
DEFAULT_LISTEN = f"ws://127.0.0.1:{DEFAULT_PORT}/"

EXAMPLES = """\
examples:
  ecaptureq serve --demo                                # then: ecaptureq watch ws://127.0.0.1:28257/
  ecaptureq serve --replay capture.jsonl --speed 0      # a watch --json recording, as fast as possible,
                                                        # starting when the first client connects
  ecaptureq serve --demo --listen ws://127.0.0.1:9999/ --heartbeat-interval 5
  ecaptureq serve --demo --stats 2                      # counters on stderr every 2 seconds
  ECAPTUREQ_TOKEN=$(openssl rand -hex 24) ecaptureq serve --demo --listen wss://0.0.0.0:28257/ \
      --tls-cert cert.pem --tls-key key.pem             # clients: watch --token ... (--ca cert.pem)

""" + command_exit_codes(
    (
        (ExitCode.OK, "stopped (Ctrl-C or SIGTERM)"),
        (ExitCode.USAGE, "usage error or unreadable recording"),
        (ExitCode.CONNECTION, "cannot listen"),
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    parser = sub.add_parser(
        "serve",
        help="run an eCaptureQ server fed by the demo source or a recording",
        description="Serve the eCaptureQ WebSocket protocol, exactly as eCapture does, from the demo source "
        "or from a watch --json recording. Stops on Ctrl-C or SIGTERM, sending clients what is queued.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="URL", help=f"where to listen (default {DEFAULT_LISTEN})"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", action="store_true", help="synthetic HTTP/1.1 and HTTP/2 traffic")
    source.add_argument("--replay", type=Path, metavar="FILE", help="replay a watch --json recording")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="replay pace: 1 as recorded, 2 twice as fast, 0 as fast as clients read (default 1)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="replay: start at once instead of when the first client connects",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.5,
        metavar="S",
        help="demo: seconds between exchanges (default 0.5)",
    )
    add_server_options(parser)
    parser.set_defaults(func=run)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Options of the server itself, shared by every command that serves."""
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds between heartbeats on each connection (default 15, as eCapture)",
    )
    parser.add_argument(
        "--stats",
        type=float,
        nargs="?",
        const=5.0,
        metavar="S",
        help="print throughput, queue depths and disconnections on stderr every S seconds (default 5)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=SHUTDOWN_GRACE,
        metavar="S",
        help="on Ctrl-C or SIGTERM, clients get everything queued for them; one that reads nothing for S "
        f"seconds is closed, and what it missed is counted (default {SHUTDOWN_GRACE:g})",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=100_000,
        metavar="N",
        help="messages queued for one client before it is closed as too slow (default 100000)",
    )
    add_server_security_options(parser)


LISTEN_OPTIONS: dict[str, str] = {"serve": "--listen", "tls": "--ecaptureq"}
"""The option that gives the listen URL, per command (messages name the option the user typed)."""


def parse_listen(url: str, option: str = "--listen") -> tuple[str, int]:
    """Split a ``ws://HOST:PORT/`` (or ``wss://``) listen URL into host and port (default port 28257).

    ``option`` is the option the URL came from, named in the messages.
    """
    text = url if "://" in url else f"ws://{url}"
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss"):
        raise CliError(f"{option} {url!r}: expected ws://HOST:PORT/, e.g. {DEFAULT_LISTEN}")
    try:
        port = parts.port if parts.port is not None else DEFAULT_PORT
    except ValueError:
        raise CliError(f"{option} {url!r}: the port must be a number from 0 to 65535") from None
    host = parts.hostname
    if not host:
        raise CliError(f"{option} {url!r}: no host; use 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    return host, port


def cannot_listen(exc: OSError, host: str, port: int, option: str, scheme: str) -> CliError:
    """The one-line error (exit 3) for a failed bind, with what to do about a port in use.

    ``option`` is the option that sets the address, ``scheme`` the one of its URLs (``ws``, ``http``).
    """
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        shown = f"[{host}]" if ":" in host else host
        why = "the address is already in use by another program"
        if port == DEFAULT_PORT:
            why += (
                f" ({DEFAULT_PORT} is also real eCapture's eCaptureQ port: "
                "is `ecapture ... --ecaptureq` running?)"
            )
        text = f"{why}; choose another port with {option} ({scheme}://{shown}:0/ picks a free one)"
    else:
        text = exc.strerror or str(exc)
    return CliError(f"cannot listen on {where}: {text}", ExitCode.CONNECTION)


def server_from_args(
    args: argparse.Namespace, listen: str | None = None, command: str = "serve", option: str | None = None
) -> Server:
    """Build a :class:`Server` from the ``--listen`` (or ``listen``, given as ``option``) URL and the
    server options.

    The security options are checked here: a non-loopback address without a token is refused.
    Messages about the URL name the option it came from (:data:`LISTEN_OPTIONS` of ``command``).
    """
    listen = args.listen if listen is None else listen
    host, port = parse_listen(listen, option or LISTEN_OPTIONS.get(command, "--listen"))
    if args.heartbeat_interval <= 0:
        raise CliError("--heartbeat-interval must be positive")
    if args.queue_size < 1:
        raise CliError("--queue-size must be at least 1")
    if args.stats is not None and args.stats <= 0:
        raise CliError("--stats takes a positive number of seconds")
    if args.shutdown_grace <= 0:
        raise CliError("--shutdown-grace must be positive")
    scheme = urlsplit(listen if "://" in listen else f"ws://{listen}").scheme
    security = server_security_kwargs(args, host, scheme, command)
    return Server(
        host,
        port,
        heartbeat_interval=args.heartbeat_interval,
        queue_size=args.queue_size,
        shutdown_grace=args.shutdown_grace,
        **security,
    )


async def serve_until_stopped(
    server: Server,
    source_name: str,
    feed: Callable[[Sink], Coroutine[Any, Any, None]] | None,
    first_logs: list[str] | None = None,
    stats_interval: float | None = None,
) -> ExitCode:
    """Start ``server``, run ``feed`` into it, and serve until Ctrl-C or SIGTERM; then stop gracefully.

    ``first_logs`` are published before the server's own banner (a recording's run log, which must keep
    its place among the first 128 lines). With ``stats_interval``, counters are printed on stderr that often.
    """
    try:
        await server.start()
    except OSError as exc:
        raise cannot_listen(exc, server.host, server.requested_port, "--listen", "ws") from None
    for line in first_logs or []:
        server.publish_log(line)
    for line in startup_banner(source_name, listen_url=server.url):
        server.publish_log(line)
    print(f"ecaptureq: serving {source_name} on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if server.requires_token:
        print("ecaptureq: clients must present the token (watch --token, or ?token=)", file=sys.stderr)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with Lifecycle() as life:
            task = life.start(feed(server)) if feed is not None else None
            if stats_interval:
                life.start(
                    StatsReporter().add(lambda: server.stats, format_stats).every(stats_interval, life.stop)
                )
            # a failing source ends the server (raised here), after the graceful stop below
            if task is not None and await life.wait(task):
                server.publish_log(run_log_line(f"Source {source_name} finished; still serving"))
            await life.stop.wait()
    finally:
        shutdown = await server.stop()
        report_shutdown(shutdown)
        print(summary(server.stats, shutdown, loop.time() - started), file=sys.stderr, flush=True)
    return ExitCode.OK


def summary(stats: ServerStats, shutdown: ShutdownReport, seconds: float) -> str:
    """The line ``serve`` prints when it stops: how long it ran, what it published, to how many clients."""
    refused = stats.refused_origin + stats.refused_token + stats.refused_capacity
    return (
        f"ecaptureq serve: stopped after {seconds:.1f} s: {plural(stats.events_published, 'event')} "
        f"({stats.bytes_published / 1024:,.1f} KiB) and {plural(stats.logs_published, 'run log line')} "
        f"published; {plural(stats.connections, 'client connection')} "
        f"({shutdown.clients} open at the stop, {len(shutdown.stalled)} of them stalled), "
        f"{stats.overflow_closes} closed as too slow, {plural(refused, 'connection')} refused"
    )


def report_shutdown(report: ShutdownReport, command: str = "serve") -> None:
    """Print, on stderr, each client closed on shutdown before it had read everything queued for it."""
    for client in report.stalled:
        print(
            f"ecaptureq {command}: client {client.remote} did not read for {report.grace:g} s while "
            f"stopping: closed with {client.undelivered} of its queued messages not delivered",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq serve``."""
    server = server_from_args(args)
    if args.replay is not None:
        if args.speed < 0:
            raise CliError("--speed must be 0 (as fast as possible) or positive")
        try:
            recording = load_recording(args.replay)
        except ReplayError as exc:
            raise replay_error(exc) from None
        replay = ReplaySource(recording, speed=args.speed)
        name = f"replay file={args.replay} events={len(recording.events)}"

        async def play(sink: Sink) -> None:
            if not args.no_wait:
                await server.wait_for_client()  # the run log is cached; the events wait for a reader
            await replay.play(sink)

        return run_event_loop(
            serve_until_stopped(server, name, play, first_logs=recording.logs, stats_interval=args.stats)
        )
    if args.interval < 0:
        raise CliError("--interval must be 0 or positive")
    source = DemoSource(interval=args.interval)
    return run_event_loop(serve_until_stopped(server, "demo", source.run, stats_interval=args.stats))

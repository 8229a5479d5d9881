"""``ecaptureq ui``: the web UI, recording a live server while it shows it, or browsing a database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ecaptureq.access import TOKEN_QUERY_PARAMETER
from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes, database_error
from ecaptureq.cli.explain import connect_error
from ecaptureq.cli.fleet import fleet_error
from ecaptureq.cli.render import plural
from ecaptureq.cli.runtime import Lifecycle, run_event_loop
from ecaptureq.cli.security import TOKEN_ENV, decide_listen, token_option
from ecaptureq.cli.serve import cannot_listen
from ecaptureq.client import (
    DEFAULT_ORIGIN,
    BadURL,
    Connected,
    ConnectError,
    Disconnected,
    Status,
    normalize_url,
)
from ecaptureq.fleet import Collector, FleetError
from ecaptureq.store import SqlError, StoreError
from ecaptureq.store.writer import QUIET_COMMIT
from ecaptureq.tuning import tune_for_recording

DEFAULT_LISTEN = "http://127.0.0.1:8080/"
LIVE_POLL = 5.0
"""Seconds between two reads of the database by the page's stream when commits are announced (a live
source): only what no announcement covered waits for it."""

EXAMPLES = f"""\
examples:
  ecaptureq ui --source ws://127.0.0.1:28257/            # record into ./ecaptureq-ui-<time>.db and show it
  ecaptureq ui --source ws://127.0.0.1:28257/ --db capture.db --listen http://127.0.0.1:9000/
  ecaptureq ui --db capture.db                            # browse a recorded database (read-only)
  ecaptureq ui --nats nats://reader:PASSWORD@nats.example:4222 --node 'web-*' --since 1h   # the fleet, live
  {TOKEN_ENV}=$(openssl rand -hex 24) ecaptureq ui --db capture.db --listen http://0.0.0.0:8080/

Open the URL it prints (with ?token=... when there is a token: the page keeps it in the tab's
sessionStorage, never in a cookie).
Pages from other origins are refused (--allow-origin adds one), and so is a Host that is not loopback
while the UI listens on loopback.

""" + command_exit_codes(
    (
        (ExitCode.OK, "stopped (Ctrl-C or SIGTERM)"),
        (ExitCode.USAGE, "usage error (bad URL)"),
        (ExitCode.CONNECTION, "cannot listen"),
        (ExitCode.AUTH, "the source refused the handshake (401)"),
        (ExitCode.FORBIDDEN, "the source refused the handshake (403)"),
        (ExitCode.STORAGE, "not a capture database, or it cannot be written"),
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ui`` subcommand."""
    parser = sub.add_parser(
        "ui",
        help="a web UI: live capture table, SQL filter and exchange details in the browser",
        description="Serve a local web page with a live table of the decoded HTTP exchanges, the eCaptureQ "
        "GUI's SQL filter, a packets view, exchange details, copy as curl and HAR download. With --source it "
        "records everything into a capture database while it shows it; with only --db it browses one.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", metavar="URL", help="an eCaptureQ server to record, e.g. ws://127.0.0.1:28257/"
    )
    parser.add_argument(
        "--nats",
        metavar="URL",
        help="a fleet's NATS server to record and show, e.g. nats://127.0.0.1:4222 (with a node column)",
    )
    parser.add_argument("--node", metavar="GLOB", help="--nats: only these nodes (a name or a glob: 'web-*')")
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="--nats: start at this time within the stream's retention "
        "(2026-01-02T10:00:00Z, or 15m, 2h, 7d)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help="with --source or --nats: the database to record into (default ./ecaptureq-ui-<time>.db); "
        "alone: the database to browse, read-only",
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="URL",
        help=f"where to serve the UI (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"require this token (open the page with ?token=TOKEN, or send Authorization: Bearer TOKEN); "
        f"default: ${TOKEN_ENV}",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept API calls from pages of ORIGIN (scheme://host[:port]); repeatable",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without a token (anyone who can reach it reads all)",
    )
    parser.add_argument(
        "--source-token", metavar="TOKEN", help=f"the source server's token (default: ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--origin", default=DEFAULT_ORIGIN, help="Origin header sent to the source (default %(default)s)"
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        metavar="S",
        help=f"commit (and so show) new rows at least this often, and {QUIET_COMMIT * 1000:g} ms after the "
        "last message (default 0.5)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=None,
        metavar="S",
        help="re-read the database for new rows this often besides the commits announced: a --source's "
        "or --nats's commits are pushed to the page at once, so the default is then "
        f"{LIVE_POLL:g}; browsing --db alone (another process may be writing it), the flush interval, "
        "at most 0.5",
    )
    from ecaptureq.cli.fleet import add_nats_options

    add_nats_options(parser, url=False)
    parser.set_defaults(func=run)


def parse_listen(url: str) -> tuple[str, int]:
    """Split ``http://HOST:PORT/`` into host and port (default port 8080)."""
    text = url if "://" in url else f"http://{url}"
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise CliError(f"--listen {url!r}: expected http://HOST:PORT/, e.g. {DEFAULT_LISTEN}")
    try:
        port = parts.port if parts.port is not None else 8080
    except ValueError:
        raise CliError(f"--listen {url!r}: the port must be a number from 0 to 65535") from None
    if not parts.hostname:
        raise CliError(f"--listen {url!r}: no host; use 127.0.0.1 (this machine only)")
    return parts.hostname, port


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise cannot_listen(exc, host, port, "--listen", "http") from None
    sock.setblocking(False)
    return sock


def _waiting_printer() -> Callable[[Status], None]:
    """An ``on_status`` hook that says once on stderr that the source is not up yet (the page says more)."""
    said = False

    def on_status(status: Status) -> None:
        nonlocal said
        if isinstance(status, Disconnected) and not said:
            said = True
            print(
                f"ecaptureq ui: waiting for source {status.reason.removeprefix('cannot connect to ')}; "
                "retrying with backoff (the page shows the status)",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(status, Connected):
            said = True

    return on_status


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield


async def serve_ui(args: argparse.Namespace) -> ExitCode:
    """Run the UI until Ctrl-C or SIGTERM; return the exit code."""
    import uvicorn  # imported here: the other commands do not need the web stack

    from ecaptureq.pipeline.recorder import LiveRecorder
    from ecaptureq.pipeline.store_process import StoreProcess
    from ecaptureq.web.app import CommitSignal, UiState, create_app
    from ecaptureq.web.guard import Guard
    from ecaptureq.web.queries import check_capture_database

    host, port = parse_listen(args.listen)
    listen = decide_listen(args, host, tls=False, command="ui")  # the page is served over plain HTTP
    token = listen.token
    if args.flush_interval <= 0:
        raise CliError("--flush-interval must be positive")
    live_source = args.source is not None or args.nats is not None
    poll = args.poll if args.poll is not None else LIVE_POLL if live_source else min(args.flush_interval, 0.5)
    if not poll > 0:
        raise CliError("--poll must be positive")
    commits = CommitSignal()

    recorder: LiveRecorder | None = None
    collector: Collector | None = None
    if args.source is not None and args.nats is not None:
        raise CliError("give --source URL or --nats URL, not both")
    if args.nats is None and (args.node is not None or args.since is not None):
        raise CliError("--node and --since are for --nats")
    db: Path
    if args.nats is not None:
        db = args.db or Path(f"ecaptureq-ui-{time.strftime('%Y%m%d-%H%M%S')}.db")
        collector = _fleet_collector(args, db, commits.notify)
    elif args.source is None:
        if args.db is None:
            raise CliError("give --source URL (record and show), --nats URL (a fleet) or --db FILE (browse)")
        try:
            check_capture_database(args.db)
        except SqlError as exc:  # NotCaptureDatabase and DamagedDatabase are SqlErrors
            raise database_error(exc) from None
        db = args.db
    else:
        db = args.db or Path(f"ecaptureq-ui-{time.strftime('%Y%m%d-%H%M%S')}.db")
        source_token = token_option(args.source_token, "--source-token")
        headers = {"Authorization": f"Bearer {source_token}"} if source_token else None
        try:
            normalize_url(args.source)  # before the database is created: a bad URL leaves no file
        except BadURL as exc:
            raise CliError(str(exc)) from None
    # Listening comes before the database is created, so that a port in use leaves no file behind.
    sock = _bind(host, port)
    if collector is not None:
        try:
            await collector.start()
        except StoreError as exc:
            sock.close()
            raise CliError(str(exc), ExitCode.STORAGE) from None
    if args.source is not None:
        live_store = StoreProcess(db, flush_interval=args.flush_interval, on_commit=commits.notify)
        try:
            await live_store.start()
        except StoreError as exc:
            sock.close()
            raise CliError(str(exc), ExitCode.STORAGE) from None
        recorder = LiveRecorder(
            args.source,
            live_store,
            origin=args.origin or None,
            headers=headers,
            on_status=_waiting_printer(),
        )

    life = Lifecycle().open()
    code = ExitCode.OK
    try:
        if collector is not None:
            try:
                await collector.reader.open()
            except FleetError as exc:
                raise fleet_error(exc) from None
            life.start(collector.run())
            print(
                f"ecaptureq ui: recording the fleet ({collector.reader.filter}) from {collector.url} "
                f"into {db}",
                file=sys.stderr,
                flush=True,
            )
        if recorder is not None:
            # Not waited for: a source that is not up yet is retried with backoff, as watch --reconnect
            # does, while the page shows "waiting for source".
            life.start(recorder.run())
            print(f"ecaptureq ui: recording {recorder.url} into {db}", file=sys.stderr, flush=True)

        bound_port = sock.getsockname()[1]
        live = collector if collector is not None else recorder
        state = UiState(db=db, recorder=live, poll=poll, commits=commits)
        app = Guard(create_app(state), token=token, allowed_origins=listen.allowed_origins,
                    loopback_only=listen.loopback)  # fmt: skip
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False
        )
        server = uvicorn.Server(config)
        server.capture_signals = _no_signals  # type: ignore[method-assign]  # our handlers stop it
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/" + (f"?{TOKEN_QUERY_PARAMETER}={token}" if token else "")
        mode = "live" if live is not None else f"browsing {db} (read-only)"
        print(f"ecaptureq ui: {mode}; open {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)

        serving = life.start(server.serve(sockets=[sock]))
        try:
            await life.wait()  # a stop, or the end of a task (its error raised once the UI is told)
        finally:
            state.stop()
            state.interrupt_all()
            server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(serving), 5)
    except StoreError as exc:
        raise CliError(f"stopped: {exc}; what was written before is kept", ExitCode.STORAGE) from None
    except ConnectError as exc:  # the source refused the handshake (401, 403): retrying cannot help
        raise connect_error(exc) from None
    finally:
        await life.close()
        sock.close()
        closing = recorder.store if recorder is not None else collector.store if collector else None
        if closing is not None:
            try:
                if collector is not None:
                    await collector.close()
                else:
                    closing.connection_closed("ui stopped")
                    await closing.close()
            except StoreError as exc:
                print(f"ecaptureq ui: could not write the last batch: {exc}", file=sys.stderr)
                code = ExitCode.STORAGE
            print(
                f"ecaptureq ui: {plural(closing.stats.packets, 'event')}, "
                f"{closing.stats.exchanges_text()} written to {db}",
                file=sys.stderr,
            )
    return code


def _fleet_collector(args: argparse.Namespace, db: Path, on_commit: Callable[[], None]) -> Collector:
    from ecaptureq.cli.fleet import nats_options_from_args, since_from_args
    from ecaptureq.fleet import FleetReader
    from ecaptureq.fleet.subjects import BadNodeName, filter_subject

    try:
        filter_subject(args.node)
    except BadNodeName as exc:
        raise CliError(f"--node: {exc}") from None
    options = nats_options_from_args(args, [args.nats], name="ecaptureq-ui")
    reader = FleetReader(options, node_glob=args.node, since=since_from_args(args.since), create_stream=False)
    return Collector(reader, db, flush_interval=args.flush_interval, on_commit=on_commit)


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq ui``."""
    if (args.source or args.nats) is not None and args.db is not None and not args.db.parent.exists():
        raise CliError(f"--db {args.db}: the directory {args.db.parent} does not exist", ExitCode.USAGE)
    tune_for_recording()
    return run_event_loop(serve_ui(args))

"""``ecaptureq record URL --db FILE``: stream an eCaptureQ server into a SQLite capture database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.explain import connect_error, filter_error
from ecaptureq.cli.render import plural
from ecaptureq.cli.runtime import run_event_loop, run_until_signal, watching
from ecaptureq.cli.security import add_client_security_options, client_security_kwargs
from ecaptureq.cli.terminal import warn
from ecaptureq.cli.watch import add_fleet_read_options
from ecaptureq.client import DEFAULT_ORIGIN, BadURL, Connected, ConnectError, Disconnected, Status
from ecaptureq.fleet import Collector, FleetReader, is_nats_url
from ecaptureq.pipeline.recorder import LiveRecorder
from ecaptureq.pipeline.store_process import StoreProcess
from ecaptureq.store import FilterError, PacketFilter, StoreError
from ecaptureq.store.writer import QUIET_COMMIT
from ecaptureq.tuning import tune_for_recording

EXAMPLES = """\
examples:
  ecaptureq record ws://127.0.0.1:28257/ --db capture.db
  ecaptureq record ws://127.0.0.1:28257/ --db capture.db --filter "dst_port = 443 AND pname = 'curl'"
  ecaptureq query --db capture.db "payload_utf8 LIKE '%password%'"     # while recording goes on
  ecaptureq record nats://reader:PASSWORD@nats.example:4222 --db fleet.db --node 'web-*' --since 1h

Recording into an existing database appends. Ctrl-C or SIGTERM flushes and closes; a crash loses at most
the last --flush-interval. The connection is re-opened with backoff whenever it ends.

""" + command_exit_codes(
    (
        (ExitCode.OK, "stopped (Ctrl-C or SIGTERM)"),
        (ExitCode.USAGE, "usage error (bad URL, bad --filter)"),
        (ExitCode.CONNECTION, "cannot connect at start"),
        (ExitCode.AUTH, "token refused (HTTP 401)"),
        (ExitCode.FORBIDDEN, "refused by the server's origin policy (HTTP 403)"),
        (ExitCode.STORAGE, "cannot write the database (disk full, read-only, not a capture database)"),
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``record`` subcommand."""
    parser = sub.add_parser(
        "record",
        help="stream a server into a SQLite capture database",
        description="Record everything an eCaptureQ server streams (events, run logs, heartbeats, and the "
        "HTTP exchanges decoded from the events) into a SQLite database with the eCaptureQ GUI's schema.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        metavar="URL",
        help="the server, e.g. ws://127.0.0.1:28257/, or a fleet's NATS server, e.g. nats://127.0.0.1:4222 "
        "(a temporary consumer; ecaptureq collect is the durable one)",
    )
    parser.add_argument(
        "--db", type=Path, required=True, metavar="FILE", help="the database (created or appended)"
    )
    parser.add_argument(
        "--filter", metavar="COND", help="keep only events matching this condition on packets"
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        metavar="S",
        help=f"commit at least this often, and {QUIET_COMMIT * 1000:g} ms after the last message; a crash "
        "loses at most this much (default 1)",
    )
    parser.add_argument("--no-decode", action="store_true", help="do not decode HTTP exchanges")
    parser.add_argument(
        "--origin", default=DEFAULT_ORIGIN, help="Origin header to send (default %(default)s)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    add_client_security_options(parser)
    add_fleet_read_options(parser)
    parser.set_defaults(func=run)


class _Progress:
    """The live progress line on stderr (only when stderr is a terminal)."""

    def __init__(self, recorder: LiveRecorder, enabled: bool) -> None:
        self.recorder = recorder
        self.enabled = enabled

    def show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        store, counters = self.recorder.store, self.recorder.stats
        stats = store.stats
        line = (
            f"recording: {stats.packets} events ({counters.events_per_s:,.0f}/s), "
            f"{stats.payload_bytes / 1024 / 1024:,.1f} MiB, {stats.exchanges} exchanges, "
            f"{counters.reconnects} reconnects, {store.malformed} skipped"
        )
        sys.stderr.write("\r\x1b[K" + line + ("\n" if final else ""))
        sys.stderr.flush()


async def record(args: argparse.Namespace) -> ExitCode:
    """Record until a signal; return the exit code."""
    if args.flush_interval <= 0:
        raise CliError("--flush-interval must be positive")
    try:
        if args.filter:
            PacketFilter(args.filter)  # checked here; the store's process applies it
    except FilterError as exc:
        raise filter_error(exc) from None
    if is_nats_url(args.url):
        return await record_fleet(args)
    if args.node is not None or args.since is not None:
        raise CliError("--node and --since are for a fleet's nats:// URL")

    def on_status(status: Status) -> None:
        if isinstance(status, Connected) and status.gap is not None:
            warn("record", f"reconnected after {status.gap:.1f} s; events during the gap were not received")
        elif isinstance(status, Disconnected) and status.error is None:  # an open connection ended
            warn("record", f"{recorder.client.display_url}: {status.reason}; reconnecting")

    try:
        security = client_security_kwargs(args, args.url, "record")  # --token, --ca, --insecure
        recorder = LiveRecorder(
            args.url,
            StoreProcess(
                args.db,
                decode=not args.no_decode,
                event_filter=args.filter,
                flush_interval=args.flush_interval,
            ),
            origin=args.origin or None,
            headers=security["headers"],
            ssl_context=security["ssl"],
            on_status=on_status,
            on_flush=lambda: progress.show(),
        )
    except BadURL as exc:
        raise CliError(str(exc)) from None
    store = recorder.store
    try:
        await store.start()  # the database is opened (or refused) before connecting
    except StoreError as exc:
        raise CliError(str(exc), ExitCode.STORAGE) from None
    for text in recorder.client.url_warnings:
        warn("record", text)
    progress = _Progress(recorder, sys.stderr.isatty() and not args.quiet)

    code = ExitCode.OK
    try:
        # a failed first attempt (ConnectError) ends it; reconnects after a first success do not
        await run_until_signal(recorder.run(), watching(recorder.wait_first_connection()))
    except ConnectError as exc:
        raise connect_error(exc) from None
    except StoreError as exc:
        raise CliError(f"stopped: {exc}; what was written before is kept", ExitCode.STORAGE) from None
    finally:
        store.connection_closed("recorder stopped")
        try:
            await store.close()
        except StoreError as exc:
            print(f"ecaptureq record: could not write the last batch: {exc}", file=sys.stderr)
            code = ExitCode.STORAGE
        progress.show(final=True)
    if not args.quiet:
        print(
            f"ecaptureq record: {plural(store.stats.packets, 'event')}, "
            f"{plural(store.stats.logs, 'log line')}, "
            f"{store.stats.exchanges_text()} written to {args.db}",
            file=sys.stderr,
        )
    return code


async def record_fleet(args: argparse.Namespace) -> ExitCode:
    """``record nats://...``: the fleet's stream into the database, with the node column."""
    from ecaptureq.cli.fleet import nats_options_from_args, run_collector, since_from_args
    from ecaptureq.fleet.subjects import BadNodeName, filter_subject

    try:
        filter_subject(args.node)
        options = nats_options_from_args(args, [args.url], name="ecaptureq-record")
        since = since_from_args(args.since)
    except BadNodeName as exc:
        raise CliError(f"--node: {exc}") from None
    reader = FleetReader(options, node_glob=args.node, since=since, create_stream=False)
    collector = Collector(
        reader,
        args.db,
        decode=not args.no_decode,
        flush_interval=args.flush_interval,
        event_filter=args.filter,
    )
    code = await run_collector(collector, "record", "what was written before is kept")
    if not args.quiet:
        store = collector.store
        print(
            f"ecaptureq record: {store.stats.packets} events from {len(collector.stats.nodes)} nodes, "
            f"{store.stats.logs} log lines, {store.stats.exchanges_text()} written to {args.db}",
            file=sys.stderr,
        )
    return code


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq record``."""
    tune_for_recording()
    return run_event_loop(record(args))

"""``ecaptureq collect --nats URL --db FILE``: a durable JetStream consumer writing the fleet's database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.fleet import (
    NATS_EXIT_CODES,
    add_nats_options,
    add_retention_options,
    nats_options_from_args,
    retention_from_args,
    run_collector,
    since_from_args,
)
from ecaptureq.cli.runtime import run_event_loop
from ecaptureq.fleet import Collector, FleetReader
from ecaptureq.fleet.reader import DEFAULT_ACK_WAIT
from ecaptureq.fleet.subjects import BadNodeName, filter_subject
from ecaptureq.store.writer import QUIET_COMMIT
from ecaptureq.tuning import tune_for_recording

DEFAULT_DURABLE = "ecaptureq-collect"

EPILOG = """\
examples:
  ecaptureq collect --nats nats://127.0.0.1:4222 --db fleet.db
  ecaptureq collect --nats nats://nats.example:4222 --db web.db --node 'web-*' --durable collect-web
  ecaptureq collect --nats nats://127.0.0.1:4222 --db fleet.db --max-age 3d --max-bytes 50G
  ecaptureq query --db fleet.db "node = 'web-1' AND dst_port = 443"   # while it collects
  ecaptureq ui --db fleet.db                                          # browse it, with a node column

Every message is committed to the database before it is acknowledged, and its stream sequence is kept
with it: killed (even with kill -9) and restarted, the collector loses nothing and stores nothing twice
(unacknowledged messages come again after --ack-wait). The durable consumer (--durable) remembers where it
was; its --node and --since are fixed when it is created. The stream ECAPTUREQ is created when missing,
with the retention options.

""" + command_exit_codes(
    (
        (ExitCode.OK, "stopped (Ctrl-C or SIGTERM)"),
        (ExitCode.USAGE, "usage error (bad --node, --since)"),
        *NATS_EXIT_CODES,
        (
            ExitCode.STORAGE,
            "the database cannot be written (what was committed is kept; nothing uncommitted was "
            "acknowledged)",
        ),
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``collect`` subcommand."""
    parser = sub.add_parser(
        "collect",
        help="collect the fleet from NATS JetStream into a capture database",
        description="Read what the fleet's agents publish to NATS JetStream (a durable consumer) and write "
        "it into a capture database, with a node column on packets, exchanges and run logs; acknowledge each "
        "message only once it is committed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_nats_options(parser)
    parser.add_argument(
        "--db", type=Path, required=True, metavar="FILE", help="the database (created or appended)"
    )
    parser.add_argument(
        "--node", metavar="GLOB", help="only these nodes: a name, or a shell glob such as 'web-*'"
    )
    parser.add_argument(
        "--durable",
        default=DEFAULT_DURABLE,
        metavar="NAME",
        help=f"the durable consumer's name (default {DEFAULT_DURABLE}); one per collector",
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="when the durable is created: start at this time (2026-01-02T10:00:00Z, or an age: 15m, 2h, 7d) "
        "instead of the oldest message kept",
    )
    parser.add_argument(
        "--ack-wait",
        type=float,
        default=DEFAULT_ACK_WAIT,
        metavar="S",
        help=f"seconds before an unacknowledged message is delivered again (default {DEFAULT_ACK_WAIT:g})",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        metavar="S",
        help=f"commit at least this often (default 0.5), and {QUIET_COMMIT * 1000:g} ms after the last "
        "message",
    )
    parser.add_argument("--no-decode", action="store_true", help="do not decode HTTP exchanges")
    add_retention_options(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no start and end lines on stderr")
    parser.set_defaults(func=run)


async def collect(args: argparse.Namespace) -> ExitCode:
    """Collect until a signal; return the exit code."""
    if args.flush_interval <= 0 or args.ack_wait <= 0:
        raise CliError("--flush-interval and --ack-wait must be positive", ExitCode.USAGE)
    try:
        filter_subject(args.node)
    except BadNodeName as exc:
        raise CliError(f"--node: {exc}", ExitCode.USAGE) from None
    options = nats_options_from_args(args, args.nats, name="ecaptureq-collect")
    reader = FleetReader(
        options,
        node_glob=args.node,
        durable=args.durable,
        since=since_from_args(args.since),
        ack_wait=args.ack_wait,
        retention=retention_from_args(args),
    )
    collector = Collector(reader, args.db, decode=not args.no_decode, flush_interval=args.flush_interval)

    def opened() -> None:
        if not args.quiet:
            print(f"ecaptureq collect: {reader.filter} from {options.display} into {args.db} "
                  f"(durable {args.durable})", file=sys.stderr, flush=True)  # fmt: skip

    code = await run_collector(collector, "collect", "what was committed is kept", opened)
    if not args.quiet:
        store = collector.store
        nodes = ", ".join(f"{name} {n.events}" for name, n in sorted(collector.stats.nodes.items())) or "none"
        print(
            f"ecaptureq collect: {store.stats.packets} events, {store.stats.logs} log lines, "
            f"{store.stats.exchanges_text()} written to {args.db} (events by node: {nodes}; "
            f"{store.duplicates} redeliveries already stored; {store.malformed} malformed "
            f"and {reader.stats.foreign} foreign messages skipped)",
            file=sys.stderr,
        )
    return code


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq collect``."""
    tune_for_recording()
    return run_event_loop(collect(args))

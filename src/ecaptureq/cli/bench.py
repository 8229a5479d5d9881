"""``ecaptureq bench``: throughput, loss and latency of the server and client, beside a baseline."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ecaptureq.bench.consumers import decoder_memory, format_memory, summary
from ecaptureq.bench.runner import format_table, machine_line, run_all
from ecaptureq.bench.workloads import WORKLOADS
from ecaptureq.cli.errors import ExitCode

EXAMPLES = """\
examples:
  ecaptureq bench --quick            # about a minute
  ecaptureq bench --json > bench.jsonl
  ecaptureq bench --consumers --quick  # watch, record and ui processes only

Every row has a baseline measured in the same run: a bare websockets server sending frames encoded
beforehand to the same clients (or, for the client row, a bare websockets receive loop). Clients run in a
separate process on 127.0.0.1. 'delivered' is the worst client's delivered/published ratio.
The consumer rows run watch, record and ui as processes fed HTTP/1.1 and HTTP/2 captures by this
project's server (as serve --replay FILE --speed 0), each beside a bare websockets receive loop (its own
process) measured just before and after it against the same server. Their notes also give the ratio to
the receive limit: the bare loop fed by a sender that only writes frames encoded beforehand.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    parser = sub.add_parser(
        "bench",
        help="benchmark the server and client against a bare websockets baseline",
        description="Run the benchmark suite on loopback: bursts to 1, 10 and 100 clients, paced rates, "
        "a stalled client among fast ones, and the client's receive and decode rate.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs")
    parser.add_argument("--json", action="store_true", help="one JSON object per row on stdout")
    parser.add_argument(
        "--consumers",
        action="store_true",
        help="only the consumer rows: watch, record and ui processes on HTTP/1.1 and HTTP/2 workloads",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq bench``."""

    def progress(text: str) -> None:
        print(f"ecaptureq bench: {text}", file=sys.stderr, flush=True)

    progress(machine_line())
    rows = asyncio.run(run_all(args.quick, progress, consumers_only=args.consumers))
    memory = [decoder_memory(w) for w in WORKLOADS]
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
        for obj in memory:
            print(json.dumps({"scenario": "decoder memory", **obj}))
    else:
        print(format_table(rows))
        print()
        print(summary(rows))
        print(format_memory(memory))
    return ExitCode.OK

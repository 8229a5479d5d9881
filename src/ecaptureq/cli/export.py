"""``ecaptureq export --db FILE --format har|jsonl -o FILE``: HAR 1.2 or a replayable recording."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ecaptureq.cli.errors import EXIT_STORAGE, CliError
from ecaptureq.store import NotCaptureDatabase, SqlError, open_readonly
from ecaptureq.store.export import write_har, write_jsonl

EXAMPLES = """\
examples:
  ecaptureq export --db capture.db --format har -o capture.har        # open in Chrome DevTools > Network
  ecaptureq export --db capture.db --format har -o curl.har --filter "pname = 'curl'"
  ecaptureq export --db capture.db --format jsonl -o capture.jsonl    # for: ecaptureq serve --replay

--filter is a condition on the exchanges table for HAR (method, url, host, path, status, pid, pname,
src_ip, dst_port, latency, ...) and on packets for JSON Lines. -o - writes to stdout.

exit codes: 0 done, 2 bad arguments or invalid --filter, 11 not a capture database, or cannot write FILE
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` subcommand."""
    parser = sub.add_parser(
        "export",
        help="export a capture database as HAR 1.2 or as JSON Lines that serve --replay plays",
        description="Export the decoded HTTP exchanges as HAR 1.2, or the packets and run log as "
        "watch --json lines.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the capture database")
    parser.add_argument("--format", choices=("har", "jsonl"), required=True, help="har or jsonl")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write (- for stdout)")
    parser.add_argument("--filter", metavar="COND", help="a condition on exchanges (har) or packets (jsonl)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq export``."""
    try:
        db = open_readonly(args.db, ("packets", "exchanges") if args.format == "har" else ("packets",))
    except NotCaptureDatabase as exc:
        raise CliError(str(exc), EXIT_STORAGE) from None
    except SqlError as exc:
        raise CliError(str(exc)) from None
    to_stdout = args.output == "-"
    target = Path(args.output)
    try:
        # Written to a temporary file beside the target and renamed, so a failed export leaves no half file.
        if to_stdout:
            handle = sys.stdout
        else:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", dir=target.parent if str(target.parent) else "."
            )
            handle = os.fdopen(fd, "w", encoding="utf-8")
        try:
            if args.format == "har":
                summary = f"{write_har(db, handle, args.filter)} exchanges"
            else:
                summary = f"{write_jsonl(db, handle, args.filter)} events"
        except BaseException:
            if not to_stdout:
                handle.close()
                os.unlink(tmp)
            raise
        if not to_stdout:
            handle.close()
            os.replace(tmp, target)
    except SqlError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_STORAGE) from None
    if not to_stdout:
        print(f"ecaptureq export: {summary} written to {target}", file=sys.stderr)
    return 0

"""``ecaptureq export --db FILE --format har|jsonl|pcapng -o FILE``: HAR 1.2, a replayable recording, or
pcapng for Wireshark."""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes, database_error
from ecaptureq.cli.explain import filter_error
from ecaptureq.cli.pcapng import add_keep_ports_option, refuse_terminal
from ecaptureq.cli.render import plural
from ecaptureq.cli.runtime import stop_on_signals
from ecaptureq.cli.terminal import visible
from ecaptureq.sinks.tcp import MSS, PLAINTEXT_PORT
from ecaptureq.store import FilterError, SqlError, StoreError, open_readonly
from ecaptureq.store.export import har_chunks, har_entries, write_jsonl, write_pcapng

EXAMPLES = f"""\
examples:
  ecaptureq export --db capture.db --format har -o capture.har        # open in Chrome DevTools > Network
  ecaptureq export --db capture.db --format har -o curl.har --filter "pname = 'curl'"
  ecaptureq export --db capture.db --format jsonl -o capture.jsonl    # for: ecaptureq serve --replay
  ecaptureq export --db capture.db --format pcapng -o capture.pcapng  # for: wireshark capture.pcapng
  ecaptureq export --db capture.db --format pcapng -o - | tshark -r - -Y http2

--filter is a condition on the exchanges table for HAR (method, url, host, path, status, pid, pname,
src_ip, dst_port, latency, ...) and on packets for JSON Lines and pcapng. -o - writes to stdout.

pcapng: each connection's plaintext as a synthetic TCP stream (SYN, data in {MSS[4]}-byte segments, FIN)
that Wireshark dissects as HTTP/1.x, HTTP/2 and WebSocket with no keys. The captured addresses are
kept (made-up ones from 198.18.0.0/15 or 2001:db8::/32 where unknown); the server port is written as
{PLAINTEXT_PORT}, where Wireshark looks for plaintext HTTP, unless --keep-ports. Every packet's comment says
pid=, comm=, uuid= and real= (the captured client->server addresses).

""" + command_exit_codes(
    (
        (ExitCode.OK, "done"),
        (ExitCode.USAGE, "bad arguments or invalid --filter"),
        (ExitCode.STORAGE, "not a capture database (or a damaged one), or cannot write FILE"),
        (ExitCode.INTERRUPTED, "stopped by Ctrl-C or SIGTERM: FILE is left as it was"),
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` subcommand."""
    parser = sub.add_parser(
        "export",
        help="export a capture database as HAR 1.2, JSON Lines that serve --replay plays, or pcapng",
        description="Export the decoded HTTP exchanges as HAR 1.2, the packets and run log as "
        "watch --json lines, or the packets as pcapng for Wireshark.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the capture database")
    parser.add_argument(
        "--format", choices=("har", "jsonl", "pcapng"), required=True, help="har, jsonl or pcapng"
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write (- for stdout)")
    parser.add_argument(
        "--filter", metavar="COND", help="a condition on exchanges (har) or packets (jsonl, pcapng)"
    )
    add_keep_ports_option(parser)
    parser.set_defaults(func=run)


class _Progress:
    """How far an export has read, as a line on stderr that rewrites itself; nothing unless stderr is a
    terminal. Cleared when the export ends."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __call__(self, read: int, total: int) -> None:
        if self.enabled:
            done = f" ({100 * read // total}%)" if total >= read else ""
            sys.stderr.write(f"\r\x1b[Kexporting: {read:,} of {total:,} {self.noun}{done}")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _export(args: argparse.Namespace, db: sqlite3.Connection, handle: BinaryIO) -> tuple[str, str | None]:
    """Write the export to ``handle``; return what was written and what was left out, for a person."""
    progress = _Progress("exchanges" if args.format == "har" else "packets")
    try:
        return _write(args, db, handle, progress)
    finally:
        progress.clear()


def _write(
    args: argparse.Namespace, db: sqlite3.Connection, handle: BinaryIO, progress: _Progress
) -> tuple[str, str | None]:
    if args.format == "pcapng":
        stats, events = write_pcapng(db, handle, args.filter, keep_ports=args.keep_ports, progress=progress)
        return (
            f"{plural(stats.connections, 'connection')}, {plural(stats.packets, 'packet')}",
            events.comment(),
        )
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    try:
        if args.format == "har":
            rows = har_entries(db, args.filter, progress)
            text.writelines(har_chunks(rows))
            left_out = None
            if rows.skipped:
                left_out = (
                    f"{plural(rows.skipped, 'exchange')} left out, unreadable as stored (the HAR's log "
                    "comment names them)"
                )
            return plural(rows.count, "exchange"), left_out
        written = write_jsonl(db, text, args.filter, progress)
        return plural(written.count, "event"), written.comment()
    finally:
        text.flush()
        text.detach()  # the caller closes (or, for stdout, keeps) the binary stream


def _interrupt() -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq export``."""
    try:
        db = open_readonly(args.db, ("packets", "exchanges") if args.format == "har" else ("packets",))
    except SqlError as exc:  # NotCaptureDatabase and DamagedDatabase are SqlErrors
        raise database_error(exc) from None
    to_stdout = args.output == "-"
    target = Path(args.output)
    if args.format == "pcapng" and to_stdout:
        refuse_terminal()
    try:
        # A file is written to a temporary file beside it and renamed, so a failed export leaves no half
        # file. What is not a regular file (/dev/null, a FIFO) is written in place: renamed over, a device
        # node would become a file.
        tmp = ""
        handle: BinaryIO
        if to_stdout:
            handle = sys.stdout.buffer
        elif target.exists() and not target.is_file() and not target.is_dir():
            handle = target.open("wb")
        else:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", dir=target.parent if str(target.parent) else "."
            )
            handle = os.fdopen(fd, "wb")
        try:
            with stop_on_signals(_interrupt):  # SIGTERM too goes through the removal below
                summary, left_out = _export(args, db, handle)
        except BaseException:
            if not to_stdout:
                handle.close()
            if tmp:
                os.unlink(tmp)
            raise
        if not to_stdout:
            handle.close()
        if tmp:
            os.replace(tmp, target)
    except FilterError as exc:
        raise filter_error(exc) from None
    except StoreError as exc:  # the file is damaged (a DamagedDatabase is a SqlError too)
        raise CliError(str(exc), ExitCode.STORAGE) from None
    except SqlError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}", ExitCode.STORAGE) from None
    if not to_stdout:
        print(f"ecaptureq export: {summary} written to {target}", file=sys.stderr)
    if left_out:
        print(f"ecaptureq export: warning: {visible(left_out)}", file=sys.stderr)
    return ExitCode.OK

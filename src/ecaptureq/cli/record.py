"""``ecaptureq record URL --db FILE``: stream an eCaptureQ server into a SQLite capture database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from ecaptureq.cli.errors import EXIT_CONNECTION, EXIT_OK, EXIT_STORAGE, CliError
from ecaptureq.cli.watch import warn
from ecaptureq.client import BadURL, Client, Connected, ConnectError, Disconnected, Status
from ecaptureq.protocol import DecodeError, Event
from ecaptureq.store import CaptureStore, PacketFilter, SqlError, StoreError

EXAMPLES = """\
examples:
  ecaptureq record ws://127.0.0.1:28257/ --db capture.db
  ecaptureq record ws://127.0.0.1:28257/ --db capture.db --filter "dst_port = 443 AND pname = 'curl'"
  ecaptureq query --db capture.db "payload_utf8 LIKE '%password%'"     # while recording goes on

Recording into an existing database appends. Ctrl-C or SIGTERM flushes and closes; a crash loses at most
the last --flush-interval. The connection is re-opened with backoff whenever it ends.

exit codes: 0 stopped (Ctrl-C or SIGTERM), 2 usage error (bad URL, bad --filter), 3 cannot connect at
            start, 11 cannot write the database (disk full, read-only, not a capture database)
"""


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
    parser.add_argument("url", metavar="URL", help="the server, e.g. ws://127.0.0.1:28257/")
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
        help="commit at least this often; a crash loses at most this much (default 1)",
    )
    parser.add_argument("--no-decode", action="store_true", help="do not decode HTTP exchanges")
    parser.add_argument("--origin", default="http://localhost/", help="Origin header to send")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


class _Progress:
    """The live progress line on stderr (only when stderr is a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.last_events = 0
        self.last_time = self.started

    def show(self, store: CaptureStore, reconnects: int, skipped: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        rate = (store.stats.packets - self.last_events) / max(now - self.last_time, 1e-6)
        self.last_events, self.last_time = store.stats.packets, now
        mib = store.stats.payload_bytes / 1024 / 1024
        line = (
            f"recording: {store.stats.packets} events ({rate:,.0f}/s), {mib:,.1f} MiB, "
            f"{store.stats.exchanges} exchanges, {reconnects} reconnects, {skipped} skipped"
        )
        sys.stderr.write("\r\x1b[K" + line + ("\n" if final else ""))
        sys.stderr.flush()


async def record(args: argparse.Namespace) -> int:
    """Record until a signal; return the exit code."""
    if args.flush_interval <= 0:
        raise CliError("--flush-interval must be positive")
    try:
        flt = PacketFilter(args.filter) if args.filter else None
    except SqlError as exc:
        raise CliError(str(exc)) from None
    try:
        store = CaptureStore(args.db, decode=not args.no_decode)
    except StoreError as exc:
        raise CliError(str(exc), EXIT_STORAGE) from None

    reconnects = 0
    connected_once = False

    def on_status(status: Status) -> None:
        nonlocal reconnects, connected_once
        if isinstance(status, Connected):
            connected_once = True
            store.connection_opened(status.url)
            if status.gap is not None:
                reconnects += 1
                warn(
                    "record", f"reconnected after {status.gap:.1f} s; events during the gap were not received"
                )
        elif isinstance(status, Disconnected):
            if not connected_once:
                raise ConnectError(status.reason)
            store.connection_closed(status.reason)

    skipped = 0

    def on_malformed(err: DecodeError) -> None:
        nonlocal skipped
        skipped += 1

    try:
        client = Client(args.url, origin=args.origin or None, reconnect=True, on_status=on_status,
                        on_malformed=on_malformed)  # fmt: skip
    except BadURL as exc:
        store.close()
        raise CliError(str(exc)) from None
    for text in client.url_warnings:
        warn("record", text)

    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def consume() -> None:
        index = 0
        async for message in client:
            if isinstance(message, Event):
                index += 1
                if flt is not None and not flt.matches(message, index):
                    continue
            store.add(message)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(args.flush_interval)
            store.flush()
            progress.show(store, reconnects, skipped)

    consumer = asyncio.create_task(consume())
    periodic = asyncio.create_task(flusher())
    waiter = asyncio.create_task(stop.wait())
    code = EXIT_OK
    try:
        done, _ = await asyncio.wait({consumer, periodic, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter:
                task.result()
    except ConnectError as exc:
        raise CliError(f"cannot connect to {client.url}: {exc}", EXIT_CONNECTION) from None
    except StoreError as exc:
        raise CliError(f"stopped: {exc}; what was written before is kept", EXIT_STORAGE) from None
    finally:
        for task in (consumer, periodic, waiter):
            task.cancel()
        await client.close()
        with contextlib.suppress(StoreError):
            store.connection_closed("recorder stopped")
        try:
            store.close()
        except StoreError as exc:
            print(f"ecaptureq record: could not write the last batch: {exc}", file=sys.stderr)
            code = EXIT_STORAGE
        progress.show(store, reconnects, skipped, final=True)
    if not args.quiet:
        print(
            f"ecaptureq record: {store.stats.packets} events, {store.stats.logs} log lines, "
            f"{store.stats.exchanges} exchanges written to {args.db}",
            file=sys.stderr,
        )
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq record``."""
    return asyncio.run(record(args))

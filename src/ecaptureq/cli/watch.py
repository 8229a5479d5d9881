"""``ecaptureq watch URL``: show what an eCaptureQ server (real eCapture or ours) streams."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from ecaptureq.cli.errors import (
    EXIT_AUTH,
    EXIT_CONNECTION,
    EXIT_FORBIDDEN,
    EXIT_INCOMPLETE,
    EXIT_OK,
    CliError,
)
from ecaptureq.cli.render import event_header, json_record, plural, render_json, render_text
from ecaptureq.cli.render_http import HttpView, add_decode_options
from ecaptureq.cli.security import add_client_security_options, client_security_kwargs
from ecaptureq.cli.terminal import json_line, visible
from ecaptureq.client import BadURL, Client, Connected, ConnectError, ConnectionLost, Status
from ecaptureq.decode.render import format_http_text, http_json
from ecaptureq.protocol import Event, Heartbeat, Message
from ecaptureq.store.sql import PacketFilter, SqlError

EXAMPLES = """\
examples:
  ecaptureq watch ws://127.0.0.1:28257/                 # real eCapture: sudo ecapture tls --ecaptureq ws://127.0.0.1:28257/
  ecaptureq watch ws://127.0.0.1:28257/ --json > capture.jsonl
  ecaptureq watch ws://127.0.0.1:28257/ --count 10 --timeout 30
  ecaptureq watch ws://127.0.0.1:28257/ --reconnect --verbose
  ECAPTUREQ_TOKEN=... ecaptureq watch wss://10.0.0.5:28257/ --ca cert.pem   # serve --token, --tls-cert
  ecaptureq watch ws://127.0.0.1:28257/ --filter "dst_port = 443 AND pname = 'curl'"
  ecaptureq watch ws://127.0.0.1:28257/ --pname 'curl*' --port 443 --grep 'pass(word)?='
  ecaptureq watch ws://127.0.0.1:28257/ --type http2-request --type http2-response --body-limit 512

exit codes: 0 done, 2 usage error or bad URL, 3 cannot connect or connection lost,
            4 --count not reached before --timeout, 9 authentication failed (HTTP 401: no or wrong
            token), 10 refused by the server's origin policy (HTTP 403), 130 interrupted
"""


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """The output options ``watch`` and ``demo`` share."""
    parser.add_argument(
        "--json", action="store_true", help="write JSON Lines (one object per message) to stdout"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="also show heartbeats and connection counters"
    )
    parser.add_argument("--count", type=_positive_int, metavar="N", help="exit 0 after N events")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="exit after S seconds without an event or run log (heartbeats do not count)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``watch`` subcommand."""
    parser = sub.add_parser(
        "watch",
        help="show what an eCaptureQ server streams (run logs, events, heartbeats)",
        description="Connect to an eCaptureQ WebSocket server (real eCapture, or ecaptureq serve) and show "
        "its run logs and captured events as they arrive.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="the server, e.g. ws://127.0.0.1:28257/")
    add_watch_options(parser)
    parser.add_argument(
        "--reconnect", action="store_true", help="reconnect with backoff when the connection fails or ends"
    )
    parser.add_argument(
        "--origin",
        default="http://localhost/",
        help="Origin header to send (default: http://localhost/, which real eCapture requires)",
    )
    parser.add_argument(
        "--filter",
        metavar="COND",
        help='show only events matching this SQL condition on packets, as in query (e.g. "dst_port = 443")',
    )
    add_client_security_options(parser)
    add_decode_options(parser)
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def warn(command: str, text: str) -> None:
    """Print one warning line on stderr."""
    print(f"ecaptureq {command}: warning: {visible(text, newlines=False)}", file=sys.stderr, flush=True)


class Printer:
    """Writes messages to a stream as text blocks or JSON Lines, and counts what it wrote.

    With a ``view``, events are decoded and filtered by it: an event its filters reject is neither
    written nor counted, text output shows the decoded HTTP instead of the raw payload, and JSON
    records gain an ``http`` object (see :meth:`HttpView.json_fields`).
    """

    def __init__(
        self,
        out: TextIO,
        json_lines: bool,
        verbose: bool,
        view: HttpView | None = None,
        packet_filter: PacketFilter | None = None,
    ) -> None:
        self.out = out
        self.json_lines = json_lines
        self.verbose = verbose
        self.view = view
        self.packet_filter = packet_filter
        self.events = 0
        self.received = 0
        self.defer_flush: Callable[[Callable[[], None]], object] | None = None
        """When set (``loop.call_soon``), output is flushed once the loop goes back to waiting for
        input instead of after every message: :func:`consume` sets it."""
        self._flush_due = False

    def _flush(self) -> None:
        if self.defer_flush is None:
            self.out.flush()
        elif not self._flush_due:
            self._flush_due = True
            self.defer_flush(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        self.out.flush()

    def _write_decoded(self, event: Event, view: HttpView) -> None:
        shown = view.feed(event)
        if shown is None:
            return
        self.events += 1
        if self.json_lines:
            record = json_record(event)
            record.update(view.json_fields(shown))
            self.out.write(json_line(record) + "\n")
        else:
            decoded = view.text(shown)
            if decoded is None and not view.decode:
                text = render_text(event, self.verbose) or ""
            else:
                note = f"    ({len(event.payload)} bytes: part of a message still in progress)"
                header = event_header(event, shown.meta, shown.type)
                text = "\n".join([*header, decoded.rstrip("\n") if decoded else note, ""])
            self.out.write(visible(text) + "\n")
        self._flush()

    def write(self, message: Message) -> None:
        """Write one message (heartbeats only when verbose or in JSON; events that pass the filters)."""
        if isinstance(message, Event):
            self.received += 1
            if self.packet_filter is not None and not self.packet_filter.matches(message, self.received):
                return
        if isinstance(message, Event) and self.view is not None:
            self._write_decoded(message, self.view)
            return
        if isinstance(message, Event):
            self.events += 1
        if self.json_lines:
            if isinstance(message, Heartbeat) and not self.verbose:
                return
            self.out.write(render_json(message) + "\n")
        else:
            text = render_text(message, self.verbose)
            if text is None:
                return
            self.out.write(visible(text) + "\n")
        self._flush()

    def finish(self) -> None:
        """At the end: write the decoded messages still in progress (for instance an HTTP/1.x response
        that ends when its connection closes), marked incomplete."""
        if self.view is None or not self.view.decode:
            return
        for item in self.view.flush():
            if item.message is None:
                continue
            if self.json_lines:
                record = {"kind": "incomplete", "http": http_json(item)}
                self.out.write(json_line(record) + "\n")
            else:
                text = visible(format_http_text(item).rstrip())
                self.out.write(f"--- still in progress at exit\n{text}\n\n")
        self.out.flush()


async def consume(
    messages: AsyncIterator[Message],
    printer: Printer,
    count: int | None,
    timeout: float | None,
    command: str = "watch",
) -> int:
    """Print messages until ``count`` events, ``timeout`` idle seconds or the end; return the exit code.

    Idle means no event and no run-log line: heartbeats are printed (with ``--verbose``) but do not
    count as activity, so a server that sends them more often than ``timeout`` still times out.
    """
    it = aiter(messages)
    loop = asyncio.get_running_loop()
    last_activity = loop.time()
    printer.defer_flush = loop.call_soon  # one flush per burst of messages, not one per message
    try:
        return await _consume(it, printer, count, timeout, command, loop, last_activity)
    finally:
        printer.defer_flush = None
        printer.out.flush()


async def _consume(
    it: AsyncIterator[Message],
    printer: Printer,
    count: int | None,
    timeout: float | None,
    command: str,
    loop: asyncio.AbstractEventLoop,
    last_activity: float,
) -> int:
    while count is None or printer.events < count:
        try:
            left = None if timeout is None else last_activity + timeout - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError
            if left is None:
                message = await anext(it)
            else:
                async with asyncio.timeout(left):  # no task per message, unlike wait_for
                    message = await anext(it)
        except StopAsyncIteration:
            break
        except TimeoutError:
            idle = f"ecaptureq {command}: no event or log for {timeout:g} s"
            if count is not None:
                print(f"{idle}; got {printer.events} of {count} events", file=sys.stderr)
                return EXIT_INCOMPLETE
            print(f"{idle}; stopping", file=sys.stderr)
            return EXIT_OK
        printer.write(message)
        if not isinstance(message, Heartbeat):
            last_activity = loop.time()
    return EXIT_OK


def connect_exit_code(exc: ConnectError) -> int:
    """The exit code for a failed connection: 9 for HTTP 401, 10 for HTTP 403, else 3."""
    return {401: EXIT_AUTH, 403: EXIT_FORBIDDEN}.get(exc.status or 0, EXIT_CONNECTION)


def status_printer(command: str) -> Callable[[Status], None]:
    """An ``on_status`` callback that reports reconnects and the gap on stderr."""

    def on_status(status: Status) -> None:
        if isinstance(status, Connected):
            if status.gap is not None:
                warn(
                    command,
                    f"reconnected to {status.url} after {status.gap:.1f} s; "
                    "events published during the gap were not received",
                )
        elif status.retry_in is not None:
            warn(command, f"{status.reason}; retrying in {status.retry_in:.1f} s")

    return on_status


async def watch(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``watch`` with parsed arguments, writing to ``out``."""
    view = HttpView.from_args(args)  # a bad --grep ends here, before connecting
    try:
        packet_filter = PacketFilter(args.filter) if args.filter else None
    except SqlError as exc:
        raise CliError(str(exc)) from None
    try:
        client = Client(
            args.url,
            origin=args.origin or None,
            reconnect=args.reconnect,
            on_malformed=lambda err: warn("watch", f"skipped {err}"),
            on_status=status_printer("watch"),
            **client_security_kwargs(args, args.url),
        )
    except BadURL as exc:
        raise CliError(str(exc)) from None
    for text in client.url_warnings:
        warn("watch", text)
    printer = Printer(out, args.json, args.verbose, view, packet_filter)
    try:
        code = await consume(aiter(client), printer, args.count, args.timeout)
        if args.count is None or printer.events < args.count:
            printer.finish()  # the stream went quiet: show what it left unfinished (not after --count N)
    except ConnectError as exc:
        raise CliError(str(exc), connect_exit_code(exc)) from None
    except ConnectionLost as exc:
        raise CliError(str(exc), EXIT_CONNECTION) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        if args.verbose:
            st = client.stats
            counts = [
                plural(st.events, "event"),
                plural(st.logs, "log"),
                plural(st.heartbeats, "heartbeat"),
                plural(st.malformed, "malformed frame") + " skipped",
                plural(st.connections, "connection"),
            ]
            print(f"ecaptureq watch: {', '.join(counts)}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq watch``."""
    return asyncio.run(watch(args, sys.stdout))

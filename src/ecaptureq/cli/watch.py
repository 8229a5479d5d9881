"""``ecaptureq watch URL``: show what an eCaptureQ server (real eCapture or ours) streams."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, BinaryIO, TextIO

from ecaptureq.cli.errors import (
    EXIT_AUTH,
    EXIT_CONNECTION,
    EXIT_FORBIDDEN,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_STORAGE,
    CliError,
)
from ecaptureq.cli.pcapng import add_keep_ports_option, refuse_terminal
from ecaptureq.cli.render import event_header, json_record, render_json, render_text
from ecaptureq.cli.render_http import HttpView, add_decode_options
from ecaptureq.cli.security import add_client_security_options, client_security_kwargs
from ecaptureq.client import BadURL, Client, Connected, ConnectError, ConnectionLost, Status
from ecaptureq.decode.render import format_http_text, http_json
from ecaptureq.protocol import Event, Heartbeat, Message
from ecaptureq.store.sql import PacketFilter, SqlError

if TYPE_CHECKING:
    from ecaptureq.sinks.pcapng import PcapngWriter

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
  ecaptureq watch ws://127.0.0.1:28257/ --pcapng - | wireshark -k -i -   # a live view in Wireshark
  ecaptureq watch ws://127.0.0.1:28257/ --pcapng capture.pcapng           # shown, and kept as pcapng

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
    parser.add_argument(
        "--pcapng",
        metavar="FILE",
        help="also write the events that pass --filter as pcapng (synthetic TCP streams that Wireshark "
        "dissects; see export --help), flushed per packet; - writes to stdout and shows nothing else",
    )
    add_keep_ports_option(parser)
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
    print(f"ecaptureq {command}: warning: {text}", file=sys.stderr, flush=True)


class PcapngOutputError(Exception):
    """Writing the ``--pcapng`` output failed (a full disk...); ``error`` is the ``OSError``."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class Printer:
    """Writes messages to a stream as text blocks or JSON Lines, and counts what it wrote.

    With a ``view``, events are decoded and filtered by it: an event its filters reject is neither
    written nor counted, text output shows the decoded HTTP instead of the raw payload, and JSON
    records gain an ``http`` object (see :meth:`HttpView.json_fields`). With a ``pcapng`` writer, every
    event that passes ``packet_filter`` is also written to it; ``out=None`` shows nothing (and counts
    every such event).
    """

    def __init__(
        self,
        out: TextIO | None,
        json_lines: bool,
        verbose: bool,
        view: HttpView | None = None,
        packet_filter: PacketFilter | None = None,
        pcapng: PcapngWriter | None = None,
    ) -> None:
        self.out = out
        self.json_lines = json_lines
        self.verbose = verbose
        self.view = view
        self.packet_filter = packet_filter
        self.pcapng = pcapng
        self.events = 0
        self.received = 0

    def _write_decoded(self, event: Event, view: HttpView, out: TextIO) -> None:
        shown = view.feed(event)
        if shown is None:
            return
        self.events += 1
        if self.json_lines:
            record = json_record(event)
            record.update(view.json_fields(shown))
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            decoded = view.text(shown)
            if decoded is None and not view.decode:
                text = render_text(event, self.verbose) or ""
            else:
                note = f"    ({len(event.payload)} bytes: part of a message still in progress)"
                text = "\n".join([*event_header(event), decoded.rstrip("\n") if decoded else note, ""])
            out.write(text + "\n")
        out.flush()

    def write(self, message: Message) -> None:
        """Write one message (heartbeats only when verbose or in JSON; events that pass the filters)."""
        if isinstance(message, Event):
            self.received += 1
            if self.packet_filter is not None and not self.packet_filter.matches(message, self.received):
                return
            if self.pcapng is not None:
                try:
                    self.pcapng.write_event(message)
                except BrokenPipeError:
                    raise  # the reader went away: the command ends quietly
                except OSError as exc:
                    raise PcapngOutputError(exc) from None
        out = self.out
        if out is None:
            self.events += isinstance(message, Event)
            return
        if isinstance(message, Event) and self.view is not None:
            self._write_decoded(message, self.view, out)
            return
        if isinstance(message, Event):
            self.events += 1
        if self.json_lines:
            if isinstance(message, Heartbeat) and not self.verbose:
                return
            out.write(render_json(message) + "\n")
        else:
            text = render_text(message, self.verbose)
            if text is None:
                return
            out.write(text + "\n")
        out.flush()

    def finish(self) -> None:
        """At the end: write the decoded messages still in progress (for instance an HTTP/1.x response
        that ends when its connection closes), marked incomplete."""
        out = self.out
        if out is None or self.view is None or not self.view.decode:
            return
        for item in self.view.flush():
            if item.message is None:
                continue
            if self.json_lines:
                record = {"kind": "incomplete", "http": http_json(item)}
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            else:
                out.write(f"--- still in progress at exit\n{format_http_text(item).rstrip()}\n\n")
        out.flush()


async def consume(
    messages: AsyncIterator[Message], printer: Printer, count: int | None, timeout: float | None
) -> int:
    """Print messages until ``count`` events, ``timeout`` idle seconds or the end; return the exit code."""
    it = aiter(messages)
    while count is None or printer.events < count:
        try:
            while True:
                message = await asyncio.wait_for(anext(it), timeout) if timeout else await anext(it)
                printer.write(message)
                if not isinstance(message, Heartbeat):
                    break
        except StopAsyncIteration:
            break
        except TimeoutError:
            if count is not None:
                print(
                    f"ecaptureq: no event or log for {timeout:g} s; got {printer.events} of {count} events",
                    file=sys.stderr,
                )
                return EXIT_INCOMPLETE
            print(f"ecaptureq: no event or log for {timeout:g} s; stopping", file=sys.stderr)
            return EXIT_OK
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


_SHOWING_FILTERS = ("pid", "pname", "host", "port", "types", "grep")


def _open_pcapng(args: argparse.Namespace) -> tuple[PcapngWriter | None, BinaryIO | None]:
    """The ``--pcapng`` writer and the file it owns (``None`` for stdout), or ``(None, None)``."""
    if args.pcapng is None:
        return None, None
    from ecaptureq.sinks.pcapng import PcapngWriter  # here: its packet library only when it is used

    if args.pcapng == "-":
        if args.json:
            raise CliError("--pcapng - and --json both write to stdout: give --pcapng a file name")
        given = [f"--{n.rstrip('s')}" for n in _SHOWING_FILTERS if getattr(args, n) is not None]
        if given:
            raise CliError(
                f"{', '.join(given)} choose what is shown, and --pcapng - shows nothing: "
                "select the packets with --filter (e.g. --filter \"pname = 'curl'\")"
            )
        refuse_terminal()
        return PcapngWriter(sys.stdout.buffer, keep_ports=args.keep_ports, flush=True), None
    try:
        handle = open(args.pcapng, "wb")  # noqa: SIM115 - closed by _close_pcapng
    except OSError as exc:
        raise CliError(f"cannot write {args.pcapng}: {exc.strerror or exc}", EXIT_STORAGE) from None
    try:
        return PcapngWriter(handle, keep_ports=args.keep_ports, flush=True), handle
    except OSError as exc:
        with contextlib.suppress(OSError):
            handle.close()  # may fail again flushing what it holds
        raise CliError(f"cannot write {args.pcapng}: {exc.strerror or exc}", EXIT_STORAGE) from None


def _close_pcapng(writer: PcapngWriter, handle: BinaryIO | None) -> None:
    """Close the streams (FIN) and the file; a reader that went away (a closed pipe) is no error here."""
    try:
        writer.close()
    except OSError:
        pass  # the packets written so far are all there; a failed write during watch already said so
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


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
    pcapng, pcapng_file = _open_pcapng(args)
    shown_to = None if args.pcapng == "-" else out
    printer = Printer(shown_to, args.json, args.verbose, view, packet_filter, pcapng)
    try:
        code = await consume(aiter(client), printer, args.count, args.timeout)
        if args.count is None or printer.events < args.count:
            printer.finish()  # the stream went quiet: show what it left unfinished (not after --count N)
    except ConnectError as exc:
        raise CliError(str(exc), connect_exit_code(exc)) from None
    except ConnectionLost as exc:
        raise CliError(str(exc), EXIT_CONNECTION) from None
    except PcapngOutputError as exc:
        text = exc.error.strerror or str(exc.error)
        raise CliError(
            f"cannot write {args.pcapng}: {text} (the packets before are kept)", EXIT_STORAGE
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        if pcapng is not None:
            _close_pcapng(pcapng, pcapng_file)
        if args.verbose:
            st = client.stats
            print(
                f"ecaptureq: {st.events} events, {st.logs} logs, {st.heartbeats} heartbeats, "
                f"{st.malformed} malformed frames skipped, {st.connections} connection(s)",
                file=sys.stderr,
            )
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq watch``."""
    return asyncio.run(watch(args, sys.stdout))

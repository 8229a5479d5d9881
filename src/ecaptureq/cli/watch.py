"""``ecaptureq watch URL``: show what an eCaptureQ server (real eCapture or ours) streams."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from ecaptureq.cli.colour import Palette, add_color_option, use_color
from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.explain import connect_error, connect_message, filter_error
from ecaptureq.cli.http_text import format_http_text, http_json
from ecaptureq.cli.oneline import exchange_line, pending_line
from ecaptureq.cli.pcapng import add_keep_ports_option, refuse_terminal
from ecaptureq.cli.render import (
    event_header,
    event_lines,
    json_record,
    plural,
    render_json,
    render_text,
)
from ecaptureq.cli.render_http import HttpView, add_decode_options
from ecaptureq.cli.runtime import run_event_loop
from ecaptureq.cli.security import add_client_security_options, client_security_kwargs
from ecaptureq.cli.terminal import json_line, warn
from ecaptureq.client import DEFAULT_ORIGIN, BadURL, Client, Connected, ConnectError, ConnectionLost, Status
from ecaptureq.decode.decoder import Decoder
from ecaptureq.decode.results import Decoded, RequestDone, ResponseDone
from ecaptureq.fleet import FleetError, FleetReader, is_nats_url
from ecaptureq.protocol import DecodeError, Event, Heartbeat, Message, RunLog
from ecaptureq.protocol.gap import parse_gap
from ecaptureq.protocol.timestamps import Timestamp
from ecaptureq.store.sql import FilterError, PacketFilter

if TYPE_CHECKING:
    from ecaptureq.sinks.pcapng import PcapngWriter

EXAMPLES = """\
examples:
  ecaptureq watch ws://127.0.0.1:28257/                 # real eCapture: sudo ecapture tls --ecaptureq ws://127.0.0.1:28257/
  ecaptureq watch ws://127.0.0.1:28257/ --oneline        # one line per exchange, coloured on a terminal
  ecaptureq watch ws://127.0.0.1:28257/ --full           # whole bodies (a terminal folds long ones)
  ecaptureq watch ws://127.0.0.1:28257/ --oneline --color always | less -R
  ecaptureq watch ws://127.0.0.1:28257/ --json > capture.jsonl
  ecaptureq watch ws://127.0.0.1:28257/ --count 10 --timeout 30
  ecaptureq watch ws://127.0.0.1:28257/ --reconnect --verbose
  ECAPTUREQ_TOKEN=... ecaptureq watch wss://10.0.0.5:28257/ --ca cert.pem   # serve --token, --tls-cert
  ecaptureq watch ws://127.0.0.1:28257/ --filter "dst_port = 443 AND pname = 'curl'"
  ecaptureq watch ws://127.0.0.1:28257/ --pname 'curl*' --port 443 --grep 'pass(word)?='
  ecaptureq watch ws://127.0.0.1:28257/ --type http2-request --type http2-response --body-limit 512
  ecaptureq watch nats://reader:PASSWORD@nats.example:4222 --node 'web-*' --since 15m   # the fleet
  ecaptureq watch ws://127.0.0.1:28257/ --pcapng - | wireshark -k -i -   # a live view in Wireshark
  ecaptureq watch ws://127.0.0.1:28257/ --pcapng capture.pcapng           # shown, and kept as pcapng

""" + command_exit_codes(
    (
        (ExitCode.OK, "done"),
        (ExitCode.USAGE, "usage error or bad URL"),
        (ExitCode.CONNECTION, "cannot connect or connection lost"),
        (ExitCode.INCOMPLETE, "--count not reached before --timeout"),
        (ExitCode.AUTH, "authentication failed (HTTP 401: no or wrong token)"),
        (ExitCode.FORBIDDEN, "refused by the server's origin policy (HTTP 403)"),
        (ExitCode.INTERRUPTED, "interrupted"),
    )
)


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """The output options ``watch`` and ``demo`` share."""
    parser.add_argument(
        "--json", action="store_true", help="write JSON Lines (one object per message) to stdout"
    )
    parser.add_argument(
        "--oneline",
        action="store_true",
        help="one line per exchange: time, process, method, URL, status, size, latency",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"show whole bodies: on a terminal, bodies over {FOLD_LINES} lines are folded, and "
        "--body-limit does not apply",
    )
    add_color_option(parser)
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


FOLD_LINES = 24
"""On a terminal (without ``--full``), a body longer than this many lines is folded to them."""

BLOCK_JOINED_LINES: Final = 1024
"""Lines of a text block ``watch`` joins before writing it (a piece of a hex dump, 4 KiB of a body, counts as
one): a block of more is written piece by piece."""


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
    parser.add_argument(
        "url",
        metavar="URL",
        help="the server, e.g. ws://127.0.0.1:28257/, or a fleet's NATS server, e.g. nats://127.0.0.1:4222",
    )
    add_watch_options(parser)
    parser.add_argument(
        "--reconnect", action="store_true", help="reconnect with backoff when the connection fails or ends"
    )
    parser.add_argument(
        "--origin",
        default=DEFAULT_ORIGIN,
        help=f"Origin header to send (default: {DEFAULT_ORIGIN}, which real eCapture requires)",
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
    add_fleet_read_options(parser)
    parser.set_defaults(func=run)


def add_fleet_read_options(parser: argparse.ArgumentParser) -> None:
    """``--node``, ``--since`` and the NATS credentials, for a ``nats://`` URL (``watch``, ``record``)."""
    from ecaptureq.cli.fleet import add_nats_options

    fleet = parser.add_argument_group("fleet (nats:// URLs)")
    fleet.add_argument(
        "--node", metavar="GLOB", help="only these nodes: a name, or a shell glob such as 'web-*'"
    )
    fleet.add_argument(
        "--since",
        metavar="TIME",
        help="start at this time within the stream's retention (2026-01-02T10:00:00Z, or an age: 15m, 2h, "
        "7d); default: new messages only",
    )
    add_nats_options(parser, url=False)


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


class PcapngOutputError(Exception):
    """Writing the ``--pcapng`` output failed (a full disk...); ``error`` is the ``OSError``."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


WAITING_KEPT: Final = 4096
"""Requests ``watch --oneline`` keeps while they wait for their response, to give each a ``(no response)``
line at the end; beyond, the oldest is forgotten (a server that never answers cannot grow it)."""


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
        *,
        palette: Palette | None = None,
        oneline: bool = False,
    ) -> None:
        self.out = out
        self.palette = palette or Palette(False)
        self.oneline = oneline and not json_lines
        self.json_lines = json_lines
        self.verbose = verbose
        self.view = view
        self.packet_filter = packet_filter
        self.pcapng = pcapng
        self.events = 0
        self.received = 0
        self._node_decoders: dict[str, Decoder] = {}
        self._raw_json = json_lines and view is not None and view.raw  # see HttpView.raw_json_fields
        self._waiting: collections.OrderedDict[int, tuple[RequestDone, str | None]]
        self._waiting = collections.OrderedDict()
        """``--oneline``: the requests waiting for their response (by exchange), oldest first."""
        self.batched = False
        """While set (by :func:`consume_batches`), output is not flushed after each message: the caller
        flushes it with :meth:`flush` after each list of messages that arrived together."""

    def _flush(self) -> None:
        if not self.batched and self.out is not None:
            self.out.flush()

    def flush(self) -> None:
        """Flush the output (what was written is on its way to the terminal or pipe)."""
        if self.out is not None:
            self.out.flush()

    def _node_view(self, view: HttpView, node: str | None) -> HttpView:
        # The fleet's nodes are decoded apart: their connection uuids may collide.
        if node is not None:
            decoder = self._node_decoders.get(node)
            if decoder is None:
                decoder = self._node_decoders[node] = Decoder(body_limit=view.decoder.body_limit)
            view.decoder = decoder
        return view

    def _write_decoded(self, event: Event, view: HttpView, out: TextIO, node: str | None = None) -> None:
        shown = self._node_view(view, node).feed(event)
        if shown is None:
            return
        self.events += 1
        if self.oneline:
            for item in shown.items:
                if isinstance(item, RequestDone):
                    self._wait(item, node)
                elif isinstance(item, ResponseDone):
                    self._waiting.pop(id(item.exchange), None)
                    line = exchange_line(item, self.palette)
                    out.write(_with_node(line or "", node) + "\n")
        elif self.json_lines:
            self._write_json(event, view.json_fields(shown), out, node, shown.meta.timestamp)
        else:
            decoded = view.lines(shown)
            if decoded is None and not view.decode:
                lines = event_lines(event)
            else:
                lines = event_header(event, shown.meta, shown.type)
                if decoded:
                    # the items' lines end in "" (their text, then one newline): unless that text ends in
                    # newlines of its own, which are dropped
                    last = decoded[-2] if len(decoded) > 1 else ""
                    if not last or last[-1] == "\n":
                        _drop_trailing_newlines(decoded)
                        decoded.append("")
                    lines += decoded
                else:
                    lines.append(f"    ({len(event.payload)} bytes: part of a message still in progress)")
                    lines.append("")
            self._write_block(lines, out, node)
        self._flush()

    def _write_block(self, lines: list[str], out: TextIO, node: str | None) -> None:
        """Write the lines of a text block (joined by newlines) and a newline, coloured and made visible.

        A block of more than :data:`BLOCK_JOINED_LINES` (a large binary body's hex dump, in pieces of a few
        hundred lines) is written piece by piece, not joined first: the dump of a 16 MiB body is five times
        its bytes, and every copy of it would count."""
        if len(lines) <= BLOCK_JOINED_LINES:
            out.write(_with_node(self.palette.block("\n".join(lines)), node) + "\n")
            return
        for i, line in enumerate(lines):
            text = self.palette.block(line)  # line by line, as for the whole block
            out.write(_with_node(text, node) if i == 0 else text)
            out.write("\n")

    def _write_json(
        self,
        event: Event,
        fields: dict[str, Any],
        out: TextIO,
        node: str | None,
        timestamp: Timestamp | None = None,
    ) -> None:
        record = json_record(event, timestamp)
        record.update(fields)
        if node is not None:
            record["node"] = node
        # The record's only floats are the latencies of its http object, made by http_json with json_float.
        out.write(json_line(record, floats_checked=True) + "\n")

    def write(self, message: Message, node: str | None = None) -> None:
        """Write one message (heartbeats only when verbose or in JSON; events that pass the filters).

        ``node`` is the fleet node it came from: a ``[node]`` column in text, a ``node`` key in JSON.
        """
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
            if self._raw_json:
                self.events += 1
                self._write_json(message, self.view.raw_json_fields(message), out, node)
                self._flush()
            else:
                self._write_decoded(message, self.view, out, node)
            return
        if isinstance(message, Event):
            self.events += 1
        if self.json_lines:
            if isinstance(message, Heartbeat) and not self.verbose:
                return
            if node is None:
                out.write(render_json(message) + "\n")
            else:
                out.write(json_line({**json_record(message), "node": node}) + "\n")
        elif isinstance(message, Event):
            self._write_block(event_lines(message), out, node)
        else:
            text = render_text(message, self.verbose)
            if text is None:
                return
            out.write(_with_node(self.palette.block(text), node) + "\n")
        if isinstance(message, RunLog) and self.view is not None and self.view.decode:
            self._gap(message.line, self.view, out, node)
        self._flush()

    def _gap(self, line: str, view: HttpView, out: TextIO, node: str | None) -> None:
        """A ``capture lost N bytes`` run-log line: the exchange it damaged, marked incomplete with that
        note (as ``record`` stores it), shown now rather than never (its end will not come)."""
        gap = parse_gap(line)
        if gap is not None:
            items = self._node_view(view, node).decoder.lost(gap)
            self._write_unfinished(items, out, "cut short by a capture gap", node)

    def finish(self) -> None:
        """At the end: write the decoded messages still in progress (for instance an HTTP/1.x response
        that ends when its connection closes), marked incomplete."""
        out = self.out
        if out is None or self.view is None or not self.view.decode:
            return
        items = [*self.view.flush(), *(i for d in self._node_decoders.values() for i in d.flush())]
        self._write_unfinished(items, out, "still in progress at exit")
        waiting = [(pending_line(item, self.palette), node) for item, node in self._waiting.values()]
        out.writelines(_with_node(line, node) + "\n" for line, node in waiting if line is not None)
        self._waiting.clear()  # --oneline: the requests no response came for, above
        out.flush()

    def _wait(self, item: RequestDone, node: str | None) -> None:
        self._waiting[id(item.exchange)] = (item, node)  # the item keeps its exchange (and so the id) alive
        if len(self._waiting) > WAITING_KEPT:
            self._waiting.popitem(last=False)

    def finish_after(self, count: int | None) -> None:
        """:meth:`finish` when the stream ended or went quiet, not after ``--count N`` (its output is the N
        events); but ``--oneline`` shows a line per exchange, so there the requests of those N events still
        waiting for their response get theirs (``--count 1`` would otherwise print nothing)."""
        if count is None or self.events < count or self.oneline:
            self.finish()

    def _write_unfinished(
        self, items: Sequence[Decoded], out: TextIO, why: str, node: str | None = None
    ) -> None:
        """Requests and responses that will not complete (``why``): one line each with ``--oneline``,
        an ``incomplete`` record in JSON, a text block headed ``--- WHY`` otherwise."""
        for item in items:
            if not isinstance(item, RequestDone | ResponseDone):
                continue
            if self.oneline:
                line = exchange_line(item, self.palette) or pending_line(item, self.palette)
                self._waiting.pop(id(item.exchange), None)  # its line is this one
                if line is not None:
                    out.write(_with_node(line, node) + "\n")
            elif self.json_lines:
                record: dict[str, Any] = {"kind": "incomplete", "http": http_json(item)}
                if node is not None:
                    record["node"] = node
                out.write(json_line(record) + "\n")
            else:
                text = self.palette.block(format_http_text(item).rstrip())
                out.write(_with_node(f"--- {why}\n{text}\n\n", node))


def _with_node(text: str, node: str | None) -> str:
    return text if node is None else f"[{node}] {text}"


def _drop_trailing_newlines(lines: list[str]) -> None:
    """Make the join of ``lines`` end without a newline (as ``.rstrip("\\n")`` would), in place."""
    while lines and not lines[-1].rstrip("\n"):
        lines.pop()
    if lines and lines[-1].endswith("\n"):
        lines[-1] = lines[-1].rstrip("\n")


def printer_from_args(
    args: argparse.Namespace,
    out: TextIO | None,
    view: HttpView,
    packet_filter: PacketFilter | None = None,
    pcapng: PcapngWriter | None = None,
) -> Printer:
    """The :class:`Printer` of the options :func:`add_watch_options` added: colour (``--color``), folding
    on a terminal unless ``--full``, ``--oneline``; ``out`` is None when only ``pcapng`` is written.
    ``--oneline`` with ``--json`` raises :class:`CliError`."""
    if args.oneline and args.json:
        raise CliError("--oneline and --json cannot be combined: choose one line per exchange, or JSON Lines")
    if args.full:
        view.body_limit = args.max_body
    elif out is not None and out.isatty():
        view.fold_lines = FOLD_LINES
    palette = Palette(out is not None and use_color(args.color, out))
    return Printer(
        out, args.json, args.verbose, view, packet_filter, pcapng, palette=palette, oneline=args.oneline
    )


Item = Message | tuple[str, Message]
"""What :func:`consume` prints: a message, or a fleet node's ``(node, message)``."""


async def consume(
    messages: AsyncIterator[Message] | AsyncIterator[tuple[str, Message]],
    printer: Printer,
    count: int | None,
    timeout: float | None,
    command: str = "watch",
) -> ExitCode:
    """Print messages until ``count`` events, ``timeout`` idle seconds or the end; return the exit code.

    ``messages`` yields messages, or ``(node, message)`` pairs from a fleet. Idle means no event and no
    run-log line: heartbeats are printed (with ``--verbose``) but do not count as activity, so a server that
    sends them more often than ``timeout`` still times out. Output is flushed when the loop goes back to
    waiting for input (once per burst of messages), not after each one.
    """
    loop = asyncio.get_running_loop()
    try:
        return await _consume(_one_each(messages), printer, count, timeout, command, loop, per_burst=True)
    finally:
        printer.flush()


async def _one_each(
    items: AsyncIterator[Message] | AsyncIterator[tuple[str, Message]],
) -> AsyncIterator[list[Item]]:
    async for item in items:
        yield [item]


async def consume_batches(
    batches: AsyncIterator[Sequence[Message]] | AsyncIterator[Sequence[Item]],
    printer: Printer,
    count: int | None,
    timeout: float | None,
    command: str = "watch",
) -> ExitCode:
    """:func:`consume` for lists of items that arrived together (:meth:`Client.batches`): each list is
    printed in one go and the output flushed once after it, so ``watch`` stays live and a slow stdout
    still slows the reading down (the next list is read only after this one is written)."""
    it = aiter(batches)
    loop = asyncio.get_running_loop()
    try:
        return await _consume(it, printer, count, timeout, command, loop)
    finally:
        printer.flush()


async def _consume(
    it: AsyncIterator[Sequence[Item]],
    printer: Printer,
    count: int | None,
    timeout: float | None,
    command: str,
    loop: asyncio.AbstractEventLoop,
    *,
    per_burst: bool = False,
) -> ExitCode:
    last_activity = loop.time()
    flush_due = False

    def flush() -> None:
        nonlocal flush_due
        flush_due = False
        printer.flush()

    printer.batched = True  # one flush per list (below), not one per message
    try:
        while count is None or printer.events < count:
            try:
                left = None if timeout is None else last_activity + timeout - loop.time()
                if left is not None and left <= 0:
                    raise TimeoutError
                if left is None:
                    batch = await anext(it)
                else:
                    async with asyncio.timeout(left):  # no task per message, unlike wait_for
                        batch = await anext(it)
            except StopAsyncIteration:
                break
            except TimeoutError:
                idle = f"ecaptureq {command}: no event or log for {timeout:g} s"
                if count is not None:
                    print(f"{idle}; got {printer.events} of {count} events", file=sys.stderr)
                    return ExitCode.INCOMPLETE
                print(f"{idle}; stopping", file=sys.stderr)
                return ExitCode.OK
            write = printer.write
            active = False
            for item in batch:
                if isinstance(item, tuple):
                    write(item[1], item[0])
                    active = active or not isinstance(item[1], Heartbeat)
                else:
                    write(item)
                    active = active or not isinstance(item, Heartbeat)
                if count is not None and printer.events >= count:
                    break
            if not per_burst:
                printer.flush()
            elif not flush_due:
                flush_due = True
                loop.call_soon(flush)
            if active:
                last_activity = loop.time()
    finally:
        printer.batched = False
    return ExitCode.OK


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
            reason = status.reason if status.error is None else connect_message(status.error)
            warn(command, f"{reason}; retrying in {status.retry_in:.1f} s")

    return on_status


async def _fleet_batches(reader: FleetReader) -> AsyncIterator[list[Item]]:
    async for batch in reader.batches():
        items: list[Item] = []
        for fm, msg in batch:
            with contextlib.suppress(Exception):
                await msg.ack()
            if fm is None:
                continue
            if isinstance(fm.message, DecodeError):
                warn("watch", f"skipped a message from {fm.node}: {fm.message}")
                continue
            items.append((fm.node, fm.message))
        if items:
            yield items


async def watch_fleet(args: argparse.Namespace, out: TextIO, printer: Printer) -> ExitCode:
    """``watch nats://...``: a temporary consumer on the fleet's stream, with a node column."""
    from ecaptureq.cli.fleet import fleet_error, nats_options_from_args, since_from_args
    from ecaptureq.fleet.subjects import BadNodeName, filter_subject

    try:
        filter_subject(args.node)
    except BadNodeName as exc:
        raise CliError(f"--node: {exc}") from None
    options = nats_options_from_args(args, [args.url], name="ecaptureq-watch")
    reader = FleetReader(options, node_glob=args.node, since=since_from_args(args.since), create_stream=False)
    try:
        await reader.open()
        code = await consume_batches(_fleet_batches(reader), printer, args.count, args.timeout)
        printer.finish_after(args.count)
    except FleetError as exc:
        raise fleet_error(exc) from None
    finally:
        await reader.close()
    return code


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
        raise CliError(f"cannot write {args.pcapng}: {exc.strerror or exc}", ExitCode.STORAGE) from None
    try:
        return PcapngWriter(handle, keep_ports=args.keep_ports, flush=True), handle
    except OSError as exc:
        with contextlib.suppress(OSError):
            handle.close()  # may fail again flushing what it holds
        raise CliError(f"cannot write {args.pcapng}: {exc.strerror or exc}", ExitCode.STORAGE) from None


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


async def watch(args: argparse.Namespace, out: TextIO) -> ExitCode:
    """Run ``watch`` with parsed arguments, writing to ``out``."""
    view = HttpView.from_args(args)  # a bad --grep ends here, before connecting
    try:
        packet_filter = PacketFilter(args.filter) if args.filter else None
    except FilterError as exc:
        raise filter_error(exc) from None
    if is_nats_url(args.url):
        if args.pcapng is not None:
            raise CliError("--pcapng takes a ws:// or wss:// source, not a fleet's nats:// URL")
        return await watch_fleet(args, out, printer_from_args(args, out, view, packet_filter))
    if args.node is not None or args.since is not None:
        raise CliError("--node and --since are for a fleet's nats:// URL")
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
    printer = printer_from_args(args, shown_to, view, packet_filter, pcapng)
    try:
        code = await consume_batches(client.batches(), printer, args.count, args.timeout)
        printer.finish_after(args.count)
    except ConnectError as exc:
        raise connect_error(exc) from None
    except ConnectionLost as exc:
        raise CliError(str(exc), ExitCode.CONNECTION) from None
    except PcapngOutputError as exc:
        text = exc.error.strerror or str(exc.error)
        raise CliError(
            f"cannot write {args.pcapng}: {text} (the packets before are kept)", ExitCode.STORAGE
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        if pcapng is not None:
            _close_pcapng(pcapng, pcapng_file)
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


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq watch``."""
    return run_event_loop(watch(args, sys.stdout))

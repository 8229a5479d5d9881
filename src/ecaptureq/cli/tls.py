"""``ecaptureq tls``: capture OpenSSL plaintext with eBPF and serve it (or print it as JSON Lines)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, TextIO

import pybase64

from ecaptureq.cli.capture_options import add_capture_options
from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.render import plural
from ecaptureq.cli.runtime import Lifecycle, run_event_loop, stop_on_signals
from ecaptureq.cli.stats import StatsReporter, format_capture_stats, format_stats
from ecaptureq.cli.terminal import json_line
from ecaptureq.protocol import Event, run_log_line
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.messages import RunLog
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import (
    DEFAULT_BUFFER_MIB,
    BpfUnsupportedError,
    CaptureError,
    LibsslNotFoundError,
    NoPrivilegeError,
    PidNotFoundError,
    TlsCapture,
    banner,
    find_libssl,
)
from ecaptureq.sources.tls.discover import NotTlsError, discover, format_listing
from ecaptureq.sources.tls.hooks import ProcessInfo
from ecaptureq.sources.tls.keylog import OFFSETS as KEYLOG_OFFSETS
from ecaptureq.sources.tls.keylog import KeylogCapture, offsets_for
from ecaptureq.sources.tls.locate import check_pid

if TYPE_CHECKING:
    from ecaptureq.sources.tls.packets import EncryptedCapture

DEFAULT_ECAPTUREQ = "ws://127.0.0.1:28257/"

EPILOG = """\
examples:
  sudo ecaptureq tls --ecaptureq ws://127.0.0.1:28257/   # then: ecaptureq watch ws://127.0.0.1:28257/
  sudo ecaptureq tls --json > capture.jsonl             # JSON Lines, as watch --json prints them
  sudo ecaptureq tls --json --pid 1234                  # one process (its libraries from /proc/1234/maps)
  sudo ecaptureq tls --list                             # what would be hooked, and what cannot be
  sudo ecaptureq tls --keylog keys.log                  # also the TLS secrets, for Wireshark (NSS key log)
  sudo ecaptureq tls --pcapng tls.pcapng --interface lo # the encrypted packets, keys inside (wireshark)
  sudo ecaptureq tls --json --comm curl --port 443      # filters run in the kernel: nothing else is copied
  sudo ecaptureq tls --json --stats 2 | head -n 100     # counters on stderr; a closed stdout stops cleanly

""" + command_exit_codes(
    (
        (ExitCode.OK, "stopped (Ctrl-C, SIGTERM, or stdout closed with --json)"),
        (ExitCode.USAGE, "usage error"),
        (ExitCode.CONNECTION, "cannot listen on the --ecaptureq address"),
        (ExitCode.NO_PRIVILEGE, "not root / not permitted to load eBPF"),
        (ExitCode.NO_BPF, "no eBPF support (no BTF, or the kernel refuses the program or its probes)"),
        (
            ExitCode.NO_LIBSSL,
            "no TLS library to hook (or a --libssl file that is not one; or, with --keylog, an OpenSSL\n"
            "version without known offsets)",
        ),
        (ExitCode.NO_PID, "--pid process not found"),
    )
)

_EXIT_CODES: Final[dict[type[CaptureError], ExitCode]] = {
    NoPrivilegeError: ExitCode.NO_PRIVILEGE,
    BpfUnsupportedError: ExitCode.NO_BPF,
    LibsslNotFoundError: ExitCode.NO_LIBSSL,
    PidNotFoundError: ExitCode.NO_PID,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tls`` subcommand."""
    parser = sub.add_parser(
        "tls",
        help="capture TLS plaintext with eBPF (as `ecapture tls`) and serve it",
        description="Hook the TLS libraries of every process (OpenSSL/BoringSSL, GnuTLS, NSS, Go crypto/tls; "
        "programs started later included) with eBPF uprobes and publish the plaintext as eCaptureQ "
        "events: served on --ecaptureq, or printed as JSON Lines with --json. "
        "Needs root. Stops on Ctrl-C or SIGTERM, detaching every probe.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ecaptureq",
        metavar="URL",
        default=None,
        help=f"serve the eCaptureQ protocol here (default {DEFAULT_ECAPTUREQ} unless --json)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print what would be hooked (pid, comm, kind and version, how it was found, file) and "
        "the processes using TLS code that cannot be hooked, then exit",
    )
    add_capture_options(parser)
    parser.add_argument(
        "--json", action="store_true", help="print JSON Lines (as watch --json) on stdout instead of serving"
    )
    parser.add_argument(
        "--keylog",
        metavar="FILE",
        help="also append the TLS secrets of the hooked processes to FILE in NSS key log format "
        "(SSLKEYLOGFILE; Wireshark: TLS protocol preferences), created mode 0600. OpenSSL "
        f"{', '.join(sorted(KEYLOG_OFFSETS))} only",
    )
    parser.add_argument(
        "--pcapng",
        metavar="FILE",
        help="also write the encrypted TCP packets of the hooked processes' TLS connections to FILE as "
        "pcapng, each connection's keys in a Decryption Secrets Block ahead of its packets, so Wireshark "
        "decrypts it with no key file (same OpenSSL versions as --keylog)",
    )
    parser.add_argument(
        "--interface", metavar="IF", help="--pcapng: capture on this interface only (default: all)"
    )
    from ecaptureq.cli.serve import add_server_options

    add_server_options(parser)
    parser.set_defaults(func=run)


class JsonLinesSink:
    """A thread-safe sink printing each log line and event as one ``watch --json`` style JSON object.

    When the reader goes away (``| head``), writing stops, ``on_closed`` is called once and stdout is
    pointed at ``/dev/null`` so that the interpreter's last flush cannot fail either.
    """

    def __init__(
        self, out: TextIO, on_closed: Callable[[], None] | None = None, *, batched: bool = False
    ) -> None:
        self._out = out
        # Lines are written as bytes to the text stream's binary layer when it has one: an event's base64
        # payload (tens of KiB) is then copied once into the line, not decoded, joined and encoded again.
        self._binary: BinaryIO | None = getattr(out, "buffer", None)
        if self._binary is not None:
            out.flush()
        self.batched = batched
        """Leave flushing to :meth:`flush` (one write per batch of events instead of one per line)."""
        self._lock = threading.Lock()
        self.describe: Callable[[int], ProcessInfo | None] | None = None
        """Where the process's cgroup and container id come from (added as ``cgroup``, ``container_id``)."""
        self._on_closed = on_closed
        self.closed = False
        """The reader closed the output."""

    def _stream(self) -> BinaryIO | TextIO:
        return self._binary if self._binary is not None else self._out

    def _write(self, obj: dict[str, object]) -> None:
        self._write_line(json_line(obj).encode() + b"\n")

    def _write_line(self, line: bytes) -> None:
        """Write one line (UTF-8, ending in a newline)."""
        with self._lock:
            if self.closed:
                return
            try:
                if self._binary is not None:
                    self._binary.write(line)
                else:
                    self._out.write(line.decode())
                if not self.batched:
                    self._stream().flush()
            except (BrokenPipeError, ValueError) as exc:
                self._closed_by_reader(exc)
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self._closed_by_reader(exc)

    def flush(self) -> None:
        """Write out what is buffered (with ``batched``, call it after each batch of events)."""
        with self._lock:
            if self.closed:
                return
            try:
                self._stream().flush()
            except (BrokenPipeError, ValueError) as exc:
                self._closed_by_reader(exc)
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self._closed_by_reader(exc)

    def _closed_by_reader(self, _exc: Exception) -> None:
        self.closed = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._out.fileno())
            os.close(devnull)
        if self._on_closed is not None:
            self._on_closed()

    def publish_log(self, line: str) -> None:
        """Print ``{"kind": "log", "run_log": line}``."""
        self._write(to_json(RunLog(line)))

    def publish_event(self, event: Event) -> None:
        """Print the event with its proto field names, payload in base64, and the process's cgroup."""
        obj = to_json(event, payload=False)
        info = self.describe(event.pid) if self.describe else None
        if info is not None:
            obj["cgroup"] = info.cgroup
            obj["container_id"] = info.container_id
        # base64 needs no JSON escaping: splice it in rather than have json scan 20 KiB per event.
        head = json_line(obj, floats_checked=True)  # an event's fields hold no float
        payload = pybase64.b64encode(event.payload)
        self._write_line(b"".join((head[:-1].encode(), b', "payload": "', payload, b'"}\n')))


def _capture_reporter(capture: TlsCapture) -> StatsReporter:
    """A ``--stats`` reporter of the capture (its ring buffer's fill read at each line)."""
    return StatsReporter().add(
        lambda: capture.stats,
        lambda now, before, s: format_capture_stats(now, before, s, capture.ring_fill()),
    )


def capture_error(exc: CaptureError) -> CliError:
    """The CLI error of a capture error, with its exit code (5-8; a subclass counts as its base)."""
    code = next((_EXIT_CODES[c] for c in type(exc).__mro__ if c in _EXIT_CODES), ExitCode.NO_BPF)
    if isinstance(exc, LibsslNotFoundError) and exc.searched == "ldconfig":
        return CliError(f"{exc}; use --libssl PATH", code)
    return CliError(str(exc), code)


def check_capture_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) in the options of :func:`add_capture_options`, found before anything is
    loaded."""
    if args.pid is not None and args.pid <= 0:
        raise CliError("--pid must be a positive process id")
    if args.uid is not None and args.uid < 0:
        raise CliError("--uid must be 0 or positive")
    if args.comm is not None and not 0 < len(args.comm.encode()) < 16:
        raise CliError("--comm takes a command name of 1 to 15 bytes (the kernel keeps 15), e.g. curl")
    if args.port is not None and not 0 < args.port < 65536:
        raise CliError("--port must be from 1 to 65535")
    size = args.buffer_size
    if size < 1 or size > 4096 or size & (size - 1):
        raise CliError(f"--buffer-size takes a power of two from 1 to 4096 (MiB), e.g. {DEFAULT_BUFFER_MIB}")


def _check_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2), found before anything is loaded."""
    check_capture_options(args)
    if args.stats is not None and args.stats <= 0:
        raise CliError("--stats takes a positive number of seconds")
    if not (args.json and args.ecaptureq is None):
        from ecaptureq.cli.serve import parse_listen

        parse_listen(args.ecaptureq or DEFAULT_ECAPTUREQ, "--ecaptureq")


def make_capture(args: argparse.Namespace, sink: Sink) -> TlsCapture:
    """The capture of the options of :func:`add_capture_options`, publishing into ``sink`` (not started)."""
    try:
        for path in args.libssl or ():
            find_libssl(path, args.pid)
        if args.pid is not None:
            check_pid(args.pid)
    except CaptureError as exc:
        raise capture_error(exc) from None
    return TlsCapture(
        sink,
        libssl=args.libssl or None,
        pid=args.pid,
        uid=args.uid,
        comm=args.comm,
        port=args.port,
        buffer_size=args.buffer_size << 20,
        ring_full_advice=RING_FULL_ADVICE,
    )


RING_FULL_ADVICE: Final = "try a larger --buffer-size"
"""How the ring-buffer-full line published into the stream ends: what the reader of the stream can do."""


def describe_capture(capture: TlsCapture) -> str:
    """What ``capture`` hooks, for a person ("3 TLS files (libraries or programs) and new programs")."""
    files = capture.hooker.hooked if capture.hooker else {}
    watching = " and new programs" if capture.libssl is None else ""
    return f"{plural(len(files), 'TLS file')} (libraries or programs){watching}"


def _list(args: argparse.Namespace) -> ExitCode:
    """``--list``: print the discovery as a table and exit."""
    if args.pid is not None:
        try:
            check_pid(args.pid)
        except CaptureError as exc:
            raise capture_error(exc) from None
    try:
        found = discover(libssl=args.libssl or (), pid=args.pid, uid=args.uid)
    except OSError as exc:
        raise CliError(f"libssl not found: {exc.filename}", ExitCode.NO_LIBSSL) from None
    except NotTlsError as exc:
        raise CliError(f"{exc}: nothing to hook", ExitCode.NO_LIBSSL) from None
    print(format_listing(found), end="")
    return ExitCode.OK


@dataclass
class _Keys:
    """The key capture of ``--keylog`` and ``--pcapng``, with its key log file and packet capture."""

    capture: KeylogCapture
    out: TextIO | None
    packets: EncryptedCapture | None


def _open_keylog(args: argparse.Namespace) -> _Keys | None:
    """The key capture for ``--keylog`` and ``--pcapng`` (not started), its OpenSSL version checked, the
    ``--keylog`` file opened 0600 and the ``--pcapng`` packet capture made. Keys are read from one
    OpenSSL: the first ``--libssl``, else the one of ``--pid`` or of ``ldconfig -p``."""
    if not args.keylog and not args.pcapng:
        return None
    if args.uid is not None:
        raise CliError("--keylog and --pcapng cannot be limited to a --uid (only to a --pid): drop one")
    try:
        libssl = find_libssl(args.libssl[0] if args.libssl else None, args.pid)
        offsets_for(libssl)  # refuse an unknown version before creating the file
    except CaptureError as exc:
        raise capture_error(exc) from None
    out: TextIO | None = None
    packets: EncryptedCapture | None = None
    try:
        if args.keylog:
            fd = os.open(args.keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            out = os.fdopen(fd, "a", encoding="ascii")
        if args.pcapng:
            from ecaptureq.sources.tls.packets import EncryptedCapture  # its packet library when used

            fd = os.open(args.pcapng, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            packets = EncryptedCapture(os.fdopen(fd, "wb"), interface=args.interface)
    except OSError as exc:
        if out is not None:
            out.close()
        name = args.pcapng if out is not None or not args.keylog else args.keylog
        raise CliError(f"cannot write {name}: {exc.strerror or exc}", ExitCode.STORAGE) from None
    on_lines = None if packets is None else (lambda r, lines: packets.add_keys(r.client_random, lines))
    try:
        keylog = KeylogCapture(out, libssl=libssl, pid=args.pid, on_lines=on_lines)
    except CaptureError as exc:
        if out is not None:
            out.close()
        raise capture_error(exc) from None
    return _Keys(keylog, out, packets)


def _start_keylog(keys: _Keys | None, sink: Sink, args: argparse.Namespace) -> None:
    if keys is None:
        return
    packets = keys.packets
    if packets is not None:
        try:
            packets.start()
        except OSError as exc:
            where = f" on {args.interface}" if args.interface else ""
            raise CliError(f"cannot capture packets{where}: {exc.strerror or exc}", ExitCode.NO_BPF) from None
        sink.publish_log(run_log_line(f"pcapng={args.pcapng} interface={args.interface or 'all'}"))
    try:
        keys.capture.start()
    except CaptureError as exc:
        raise capture_error(exc) from None
    if args.keylog:
        sink.publish_log(run_log_line(f"keylog={args.keylog} OpenSSL {keys.capture.version}"))


def _stop_keylog(keys: _Keys | None) -> None:
    if keys is None:
        return
    keys.capture.stop()  # hands over the last keys first, so that held packets can go out
    if keys.out is not None:
        keys.out.close()
    if keys.packets is not None:
        keys.packets.stop()
        keys.packets.out.close()


def preflight() -> None:
    """Refuse (exit 5) to start without root."""
    if os.geteuid() != 0:
        raise CliError("must run as root (eBPF uprobes need CAP_BPF and CAP_PERFMON)", ExitCode.NO_PRIVILEGE)


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq tls``."""
    _check_options(args)
    preflight()
    if args.list:
        return _list(args)
    if args.json and args.ecaptureq is None:
        return _run_json(args)
    return run_event_loop(_run_server(args))


def _run_json(args: argparse.Namespace) -> ExitCode:
    stop = threading.Event()
    sink = JsonLinesSink(sys.stdout, on_closed=stop.set, batched=True)
    capture = make_capture(args, sink)
    keylog = _open_keylog(args)
    sink.describe = capture.process_info
    capture.on_batch = sink.flush  # one write per drained batch, not per event
    with stop_on_signals(stop.set):
        try:
            for line in banner():
                sink.publish_log(line)
            try:
                capture.start()
            except CaptureError as exc:
                raise capture_error(exc) from None
            finally:
                sink.flush()
            _start_keylog(keylog, sink, args)
            print(
                f"ecaptureq: capturing {describe_capture(capture)} (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            reporter = _capture_reporter(capture)
            while not stop.wait(args.stats or 0.5):
                if args.stats is not None:
                    reporter.tick()
        finally:
            _stop_keylog(keylog)
            capture.stop()
            sink.flush()
    return ExitCode.OK


async def _run_server(args: argparse.Namespace) -> ExitCode:
    from ecaptureq.cli.serve import cannot_listen, report_shutdown, server_from_args

    url = args.ecaptureq or DEFAULT_ECAPTUREQ
    # the same checks as serve: options, token, Origin allow-list, TLS and limits
    server = server_from_args(args, url, "tls", option="--ecaptureq")
    capture = make_capture(args, server)
    keylog = _open_keylog(args)
    try:
        await server.start()
    except OSError as exc:
        raise cannot_listen(exc, server.host, server.requested_port, "--ecaptureq", "ws") from None
    try:
        for line in banner(server.url):
            server.publish_log(line)
        try:
            await asyncio.to_thread(capture.start)
        except CaptureError as exc:
            raise capture_error(exc) from None
        await asyncio.to_thread(_start_keylog, keylog, server, args)
        print(
            f"ecaptureq: capturing {describe_capture(capture)}, serving on {server.url} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        async with Lifecycle() as life:
            if args.stats is None:
                await life.wait()
            else:
                reporter = _capture_reporter(capture).add(lambda: server.stats, format_stats)
                await reporter.every(args.stats, life.stop)
    finally:
        await asyncio.to_thread(_stop_keylog, keylog)
        await asyncio.to_thread(capture.stop)
        report_shutdown(await server.stop(), "tls")  # the server writes its totals line itself
    return ExitCode.OK

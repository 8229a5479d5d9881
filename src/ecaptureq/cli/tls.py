"""``ecaptureq tls``: capture OpenSSL plaintext with eBPF and serve it (or print it as JSON Lines)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TextIO

from ecaptureq.cli.errors import EXIT_OK, EXIT_STORAGE, CliError
from ecaptureq.cli.render import plural
from ecaptureq.cli.terminal import json_line
from ecaptureq.protocol import Event, run_log_line
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.messages import RunLog
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import (
    DEFAULT_BUFFER_MIB,
    BpfUnsupportedError,
    CaptureError,
    CaptureStats,
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
    from ecaptureq.server.hub import Server, ServerStats
    from ecaptureq.sources.tls.packets import EncryptedCapture

EXIT_NO_PRIVILEGE: Final = 5
"""Not root (eBPF needs CAP_BPF and CAP_PERFMON)."""
EXIT_NO_BPF: Final = 6
"""The kernel or libbpf cannot load or attach the eBPF program."""
EXIT_NO_LIBSSL: Final = 7
"""No OpenSSL libssl found (or it has no SSL_write/SSL_read)."""
EXIT_NO_PID: Final = 8
"""The --pid process does not exist."""

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

exit codes:
  0  stopped (Ctrl-C, SIGTERM, or stdout closed with --json)
  2  usage error
  3  cannot listen on the --ecaptureq address
  5  not root / not permitted to load eBPF
  6  no eBPF support (no BTF, or the kernel refuses the program or its probes)
  7  no TLS library to hook (or a --libssl file that is not one; or, with --keylog, an OpenSSL
     version without known offsets)
  8  --pid process not found
"""

_EXIT_CODES: Final[dict[type[CaptureError], int]] = {
    NoPrivilegeError: EXIT_NO_PRIVILEGE,
    BpfUnsupportedError: EXIT_NO_BPF,
    LibsslNotFoundError: EXIT_NO_LIBSSL,
    PidNotFoundError: EXIT_NO_PID,
}


def add_capture_options(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """Add the options that choose what the capture hooks and keeps (``ecaptureq tls`` and ``agent --tls``);
    ``prefix`` starts each help text (``"--tls: "``)."""
    parser.add_argument(
        "--libssl",
        metavar="PATH",
        action="append",
        help=f"{prefix}hook only this file (repeatable): a libssl, a program with OpenSSL/BoringSSL linked "
        "statically, a GnuTLS or NSPR library, or a Go program. Default: every TLS library any process "
        "maps (containers and private copies included), the system's, and new ones as programs start",
    )
    parser.add_argument("--pid", type=int, metavar="PID", help=f"{prefix}capture only this process")
    parser.add_argument("--uid", type=int, metavar="UID", help=f"{prefix}capture only processes of this user")
    parser.add_argument(
        "--comm",
        metavar="NAME",
        help=f"{prefix}capture only processes with this command name (as in ps -o comm)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help=f"{prefix}capture only TCP connections with this port at either end",
    )
    parser.add_argument(
        "--buffer-size",
        type=int,
        default=DEFAULT_BUFFER_MIB,
        metavar="MiB",
        help=f"{prefix}kernel ring buffer in MiB, a power of two (default {DEFAULT_BUFFER_MIB}); larger "
        "rides out longer bursts, and the bytes it cannot hold are reported as 'capture lost' gaps",
    )


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
        self.batched = batched
        """Leave flushing to :meth:`flush` (one write per batch of events instead of one per line)."""
        self._lock = threading.Lock()
        self.describe: Callable[[int], ProcessInfo | None] | None = None
        """Where the process's cgroup and container id come from (added as ``cgroup``, ``container_id``)."""
        self._on_closed = on_closed
        self.closed = False
        """The reader closed the output."""

    def _write(self, obj: dict[str, object]) -> None:
        self._write_line(json_line(obj))

    def _write_line(self, line: str) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self._out.write(line + "\n")
                if not self.batched:
                    self._out.flush()
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
                self._out.flush()
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
        obj = to_json(event)
        info = self.describe(event.pid) if self.describe else None
        if info is not None:
            obj["cgroup"] = info.cgroup
            obj["container_id"] = info.container_id
        # base64 needs no JSON escaping: splice it in rather than have json scan 20 KiB per event.
        payload = obj.pop("payload")
        head = json_line(obj)
        self._write_line(f'{head[:-1]}, "payload": "{payload}"}}')


def format_capture_stats(
    now: CaptureStats, before: CaptureStats | None, seconds: float, ring_fill: float
) -> str:
    """One ``--stats`` line of the capture: rates since ``before``, losses, gaps, ring-buffer fill."""
    events = now.events - (before.events if before else 0)
    captured = now.bytes - (before.bytes if before else 0)
    return (
        f"ecaptureq tls: stats: {now.events} events ({events / seconds:,.0f}/s), {now.chunks} records, "
        f"{now.bytes / 2**20:,.1f} MiB captured ({captured / seconds / 2**20:,.1f} MiB/s), "
        f"lost {now.drop_chunks} records ({now.drop_bytes} bytes) + {now.oversized_bytes} bytes of oversized "
        f"calls, {now.gaps} gaps ({now.gap_bytes} bytes), ring buffer {100 * ring_fill:.0f}% full"
    )


class _StatsPrinter:
    """Prints :func:`format_capture_stats` on stderr every ``interval`` seconds (call :meth:`tick`)."""

    def __init__(self, capture: TlsCapture, interval: float | None) -> None:
        self.capture = capture
        self.interval = interval
        self._before: CaptureStats | None = None
        self._last = time.monotonic()

    def tick(self) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        stats = self.capture.stats()
        line = format_capture_stats(
            stats, self._before, max(now - self._last, 1e-6), self.capture.ring_fill()
        )
        print(line, file=sys.stderr, flush=True)
        self._before, self._last = stats, now


def capture_error(exc: CaptureError) -> CliError:
    """The CLI error of a capture error, with its exit code (5-8; a subclass counts as its base)."""
    code = next((_EXIT_CODES[c] for c in type(exc).__mro__ if c in _EXIT_CODES), EXIT_NO_BPF)
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
    )


def describe_capture(capture: TlsCapture) -> str:
    """What ``capture`` hooks, for a person ("3 TLS files (libraries or programs) and new programs")."""
    files = capture.hooker.hooked if capture.hooker else {}
    watching = " and new programs" if capture.libssl is None else ""
    return f"{plural(len(files), 'TLS file')} (libraries or programs){watching}"


def _list(args: argparse.Namespace) -> int:
    """``--list``: print the discovery as a table and exit."""
    if args.pid is not None:
        try:
            check_pid(args.pid)
        except CaptureError as exc:
            raise capture_error(exc) from None
    try:
        found = discover(libssl=args.libssl or (), pid=args.pid, uid=args.uid)
    except OSError as exc:
        raise CliError(f"libssl not found: {exc.filename}", EXIT_NO_LIBSSL) from None
    except NotTlsError as exc:
        raise CliError(f"{exc}: nothing to hook", EXIT_NO_LIBSSL) from None
    print(format_listing(found), end="")
    return EXIT_OK


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
        raise CliError(f"cannot write {name}: {exc.strerror or exc}", EXIT_STORAGE) from None
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
            raise CliError(f"cannot capture packets{where}: {exc.strerror or exc}", EXIT_NO_BPF) from None
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
        raise CliError("must run as root (eBPF uprobes need CAP_BPF and CAP_PERFMON)", EXIT_NO_PRIVILEGE)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq tls``."""
    _check_options(args)
    preflight()
    if args.list:
        return _list(args)
    if args.json and args.ecaptureq is None:
        return _run_json(args)
    return asyncio.run(_run_server(args))


def _run_json(args: argparse.Namespace) -> int:
    stop = threading.Event()
    sink = JsonLinesSink(sys.stdout, on_closed=stop.set, batched=True)
    capture = make_capture(args, sink)
    keylog = _open_keylog(args)
    sink.describe = capture.process_info
    capture.on_batch = sink.flush  # one write per drained batch, not per event
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
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
            f"ecaptureq: capturing {describe_capture(capture)} (Ctrl-C to stop)", file=sys.stderr, flush=True
        )
        stats = _StatsPrinter(capture, args.stats)
        while not stop.wait(args.stats or 0.5):
            stats.tick()
    finally:
        _stop_keylog(keylog)
        capture.stop()
        sink.flush()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


async def _run_server(args: argparse.Namespace) -> int:
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if args.stats is None:
            await stop.wait()
        else:
            await _report_until(stop, capture, server, args.stats)
    finally:
        await asyncio.to_thread(_stop_keylog, keylog)
        await asyncio.to_thread(capture.stop)
        report_shutdown(await server.stop(), "tls")  # the server writes its totals line itself
    return EXIT_OK


async def _report_until(stop: asyncio.Event, capture: TlsCapture, server: Server, interval: float) -> None:
    """Print the capture's and the server's ``--stats`` lines every ``interval`` seconds until ``stop``."""
    from ecaptureq.cli.serve import format_stats

    printer = _StatsPrinter(capture, interval)
    before: ServerStats | None = None
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        printer.tick()
        now = server.stats()
        print(format_stats(now, before, interval), file=sys.stderr, flush=True)
        before = now

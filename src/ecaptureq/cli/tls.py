"""``ecaptureq tls``: capture OpenSSL plaintext with eBPF and serve it (or print it as JSON Lines)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TextIO

from ecaptureq.cli.errors import EXIT_CONNECTION, EXIT_OK, EXIT_STORAGE, CliError
from ecaptureq.cli.terminal import json_line
from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.messages import RunLog
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import (
    BpfUnsupportedError,
    CaptureError,
    LibsslNotFoundError,
    NoPrivilegeError,
    PidNotFoundError,
    TlsCapture,
    banner,
    find_libssl,
    log_line,
)
from ecaptureq.sources.tls.keylog import OFFSETS as KEYLOG_OFFSETS
from ecaptureq.sources.tls.keylog import KeylogCapture, UnsupportedOpenSSLError, offsets_for

if TYPE_CHECKING:
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
  sudo ecaptureq tls --json --pid 1234                  # one process (its libssl from /proc/1234/maps)
  sudo ecaptureq tls --keylog keys.log                  # also the TLS secrets, for Wireshark (NSS key log)
  sudo ecaptureq tls --pcapng tls.pcapng --interface lo # the encrypted packets, keys inside (wireshark)

exit codes:
  0  stopped (Ctrl-C or SIGTERM)
  2  usage error
  3  cannot listen on the --ecaptureq address
  5  not root / not permitted to load eBPF
  6  no eBPF support (no BTF, or the kernel refuses the program or its probes)
  7  libssl not found (or not OpenSSL; or, with --keylog, an OpenSSL version without known offsets)
  8  --pid process not found
"""

_EXIT_CODES: Final[dict[type[CaptureError], int]] = {
    NoPrivilegeError: EXIT_NO_PRIVILEGE,
    BpfUnsupportedError: EXIT_NO_BPF,
    LibsslNotFoundError: EXIT_NO_LIBSSL,
    UnsupportedOpenSSLError: EXIT_NO_LIBSSL,
    PidNotFoundError: EXIT_NO_PID,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tls`` subcommand."""
    parser = sub.add_parser(
        "tls",
        help="capture OpenSSL plaintext with eBPF (as `ecapture tls`) and serve it",
        description="Hook SSL_write/SSL_read(_ex) of OpenSSL's libssl with eBPF uprobes and publish the "
        "plaintext as eCaptureQ events: served on --ecaptureq, or printed as JSON Lines with --json. "
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
    parser.add_argument("--libssl", metavar="PATH", help="the libssl to hook (default: from ldconfig -p)")
    parser.add_argument("--pid", type=int, metavar="PID", help="capture only this process")
    parser.add_argument("--uid", type=int, metavar="UID", help="capture only processes of this user")
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
    """A thread-safe sink printing each log line and event as one ``watch --json`` style JSON object."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def _write(self, obj: dict[str, object]) -> None:
        line = json_line(obj)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def publish_log(self, line: str) -> None:
        """Print ``{"kind": "log", "run_log": line}``."""
        self._write(to_json(RunLog(line)))

    def publish_event(self, event: Event) -> None:
        """Print the event with its proto field names, payload in base64."""
        self._write(to_json(event))


def _capture_error(exc: CaptureError) -> CliError:
    return CliError(str(exc), _EXIT_CODES.get(type(exc), EXIT_NO_BPF))


def _make_capture(args: argparse.Namespace, sink: Sink) -> TlsCapture:
    if args.pid is not None and args.pid <= 0:
        raise CliError("--pid must be a positive process id")
    if args.uid is not None and args.uid < 0:
        raise CliError("--uid must be 0 or positive")
    try:
        libssl = find_libssl(args.libssl, args.pid)
    except CaptureError as exc:
        raise _capture_error(exc) from None
    return TlsCapture(sink, libssl=libssl, pid=args.pid, uid=args.uid)


@dataclass
class _Keys:
    """The key capture of ``--keylog`` and ``--pcapng``, with its key log file and packet capture."""

    capture: KeylogCapture
    out: TextIO | None
    packets: EncryptedCapture | None


def _open_keylog(args: argparse.Namespace, libssl: str) -> _Keys | None:
    """The key capture for ``--keylog`` and ``--pcapng`` (not started), its OpenSSL version checked, the
    ``--keylog`` file opened 0600 and the ``--pcapng`` packet capture made."""
    if not args.keylog and not args.pcapng:
        return None
    if args.uid is not None:
        raise CliError("--keylog and --pcapng cannot be limited to a --uid (only to a --pid): drop one")
    try:
        offsets_for(libssl)  # refuse an unknown version before creating the file
    except CaptureError as exc:
        raise _capture_error(exc) from None
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
        raise _capture_error(exc) from None
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
        sink.publish_log(log_line("INF", f"pcapng={args.pcapng} interface={args.interface or 'all'}"))
    try:
        keys.capture.start()
    except CaptureError as exc:
        raise _capture_error(exc) from None
    if args.keylog:
        sink.publish_log(log_line("INF", f"keylog={args.keylog} OpenSSL {keys.capture.version}"))


def _stop_keylog(keys: _Keys | None) -> None:
    if keys is None:
        return
    keys.capture.stop()  # hands over the last keys first, so that held packets can go out
    if keys.out is not None:
        keys.out.close()
    if keys.packets is not None:
        keys.packets.stop()
        keys.packets.out.close()


def _preflight() -> None:
    if os.geteuid() != 0:
        raise CliError("must run as root (eBPF uprobes need CAP_BPF and CAP_PERFMON)", EXIT_NO_PRIVILEGE)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq tls``."""
    _preflight()
    if args.json and args.ecaptureq is None:
        return _run_json(args)
    return asyncio.run(_run_server(args))


def _run_json(args: argparse.Namespace) -> int:
    sink = JsonLinesSink(sys.stdout)
    capture = _make_capture(args, sink)
    keylog = _open_keylog(args, capture.libssl)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for line in banner():
            sink.publish_log(line)
        try:
            capture.start()
        except CaptureError as exc:
            raise _capture_error(exc) from None
        _start_keylog(keylog, sink, args)
        print(f"ecaptureq: capturing {capture.libssl} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        _stop_keylog(keylog)
        capture.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


async def _run_server(args: argparse.Namespace) -> int:
    from ecaptureq.cli.serve import server_from_args

    url = args.ecaptureq or DEFAULT_ECAPTUREQ
    # the same checks as serve: options, token, Origin allow-list, TLS and limits
    server = server_from_args(args, url, "tls")
    capture = _make_capture(args, server)
    keylog = _open_keylog(args, capture.libssl)
    try:
        await server.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {url}: {exc.strerror or exc}", EXIT_CONNECTION) from None
    try:
        for line in banner(server.url):
            server.publish_log(line)
        try:
            await asyncio.to_thread(capture.start)
        except CaptureError as exc:
            raise _capture_error(exc) from None
        await asyncio.to_thread(_start_keylog, keylog, server, args)
        print(
            f"ecaptureq: capturing {capture.libssl}, serving on {server.url} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await asyncio.to_thread(_stop_keylog, keylog)
        await asyncio.to_thread(capture.stop)
        await server.stop()  # writes the totals line itself
    return EXIT_OK

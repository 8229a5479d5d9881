"""``ecaptureq tls``: capture OpenSSL plaintext with eBPF and serve it (or print it as JSON Lines)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Final, TextIO

from ecaptureq.cli.errors import EXIT_CONNECTION, EXIT_OK, CliError
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
)
from ecaptureq.sources.tls.discover import NotTlsError, discover, format_listing
from ecaptureq.sources.tls.hooks import ProcessInfo
from ecaptureq.sources.tls.locate import check_pid

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

exit codes:
  0  stopped (Ctrl-C or SIGTERM)
  2  usage error
  3  cannot listen on the --ecaptureq address
  5  not root / not permitted to load eBPF
  6  no eBPF support (no BTF, or the kernel refuses the program or its probes)
  7  no TLS library to hook (or a --libssl file that is not one)
  8  --pid process not found
"""

_EXIT_CODES: Final[dict[type[CaptureError], int]] = {
    NoPrivilegeError: EXIT_NO_PRIVILEGE,
    BpfUnsupportedError: EXIT_NO_BPF,
    LibsslNotFoundError: EXIT_NO_LIBSSL,
    PidNotFoundError: EXIT_NO_PID,
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
        "--libssl",
        metavar="PATH",
        action="append",
        help="hook only this file (repeatable): a libssl, a program with OpenSSL/BoringSSL linked "
        "statically, a GnuTLS or NSPR library, or a Go program. Default: every TLS library any process "
        "maps (containers and private copies included), the system's, and new ones as programs start",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print what would be hooked (pid, comm, kind and version, how it was found, file) and "
        "the processes using TLS code that cannot be hooked, then exit",
    )
    parser.add_argument("--pid", type=int, metavar="PID", help="capture only this process")
    parser.add_argument("--uid", type=int, metavar="UID", help="capture only processes of this user")
    parser.add_argument(
        "--json", action="store_true", help="print JSON Lines (as watch --json) on stdout instead of serving"
    )
    from ecaptureq.cli.serve import add_server_options

    add_server_options(parser)
    parser.set_defaults(func=run)


class JsonLinesSink:
    """A thread-safe sink printing each log line and event as one ``watch --json`` style JSON object."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.describe: Callable[[int], ProcessInfo | None] | None = None
        """Where the process's cgroup and container id come from (added as ``cgroup``, ``container_id``)."""

    def _write(self, obj: dict[str, object]) -> None:
        line = json.dumps(obj, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

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
        self._write(obj)


def _capture_error(exc: CaptureError) -> CliError:
    return CliError(str(exc), _EXIT_CODES.get(type(exc), EXIT_NO_BPF))


def _make_capture(args: argparse.Namespace, sink: Sink) -> TlsCapture:
    if args.pid is not None and args.pid <= 0:
        raise CliError("--pid must be a positive process id")
    if args.uid is not None and args.uid < 0:
        raise CliError("--uid must be 0 or positive")
    try:
        for path in args.libssl or ():
            find_libssl(path, args.pid)
        if args.pid is not None:
            check_pid(args.pid)
    except CaptureError as exc:
        raise _capture_error(exc) from None
    return TlsCapture(sink, libssl=args.libssl or None, pid=args.pid, uid=args.uid)


def _what(capture: TlsCapture) -> str:
    files = capture.hooker.hooked if capture.hooker else {}
    watching = " and new programs" if capture.libssl is None else ""
    return f"{len(files)} TLS libraries/programs{watching}"


def _list(args: argparse.Namespace) -> int:
    """``--list``: print the discovery as a table and exit."""
    if args.pid is not None:
        try:
            check_pid(args.pid)
        except CaptureError as exc:
            raise _capture_error(exc) from None
    try:
        found = discover(libssl=args.libssl or (), pid=args.pid, uid=args.uid)
    except OSError as exc:
        raise CliError(f"libssl not found: {exc.filename}", EXIT_NO_LIBSSL) from None
    except NotTlsError as exc:
        raise CliError(f"{exc}: nothing to hook", EXIT_NO_LIBSSL) from None
    print(format_listing(found), end="")
    return EXIT_OK


def _preflight() -> None:
    if os.geteuid() != 0:
        raise CliError("must run as root (eBPF uprobes need CAP_BPF and CAP_PERFMON)", EXIT_NO_PRIVILEGE)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ecaptureq tls``."""
    _preflight()
    if args.list:
        return _list(args)
    if args.json and args.ecaptureq is None:
        return _run_json(args)
    return asyncio.run(_run_server(args))


def _run_json(args: argparse.Namespace) -> int:
    sink = JsonLinesSink(sys.stdout)
    capture = _make_capture(args, sink)
    sink.describe = capture.process_info
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for line in banner():
            sink.publish_log(line)
        try:
            capture.start()
        except CaptureError as exc:
            raise _capture_error(exc) from None
        print(f"ecaptureq: capturing {_what(capture)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
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
        print(
            f"ecaptureq: capturing {_what(capture)}, serving on {server.url} (Ctrl-C to stop)",
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
        await asyncio.to_thread(capture.stop)
        await server.stop()  # writes the totals line itself
    return EXIT_OK

"""Exit codes and their meanings (one enum for every command, ``--help`` and the README), and the one
exception type commands raise to end with a clear message."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class ExitCode(enum.IntEnum):
    """Every exit code of every command, each with what it means (``ecaptureq --help`` and the README)."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "done"
    INTERNAL = 1, "internal error (a bug; set ECAPTUREQ_DEBUG=1 for the traceback, and please report it)"
    USAGE = 2, "usage error: bad arguments, bad URL, invalid SQL, unreadable recording"
    CONNECTION = 3, "cannot connect, connection lost, or (serve, ui, tls) cannot listen"
    INCOMPLETE = 4, "--count not reached before --timeout; (agent) stopped with messages still in its spool"
    NO_PRIVILEGE = 5, "tls: not root (eBPF needs CAP_BPF and CAP_PERFMON)"
    NO_BPF = 6, "tls: no eBPF support (no BTF, or the kernel refuses the program or its probes)"
    NO_LIBSSL = 7, "tls: libssl not found (or not OpenSSL)"
    NO_PID = 8, "tls: the --pid process not found"
    AUTH = 9, "the server refused the handshake with HTTP 401: no token, or the wrong one"
    FORBIDDEN = (
        10,
        "the server refused the handshake with HTTP 403: its Origin policy; (fleet) the NATS credentials "
        "may not do this",
    )
    STORAGE = (
        11,
        "not a capture database, or the capture database cannot be written (disk full, read-only)",
    )
    INTERRUPTED = 130, "interrupted (Ctrl-C)"


def exit_codes_help() -> str:
    """The ``exit codes:`` block of ``ecaptureq --help``."""
    return "exit codes:\n" + "".join(f"  {code:<3} {code.meaning}\n" for code in ExitCode)


def exit_codes_markdown() -> str:
    """The README's table of exit codes (a test checks that the README has exactly this)."""
    rows = "".join(f"| {int(code)} | {code.meaning} |\n" for code in ExitCode)
    return "| code | meaning |\n| --- | --- |\n" + rows


def command_exit_codes(codes: Iterable[tuple[ExitCode, str]]) -> str:
    """The ``exit codes:`` block of one command's ``--help``: each code it can end with, and what that means
    for this command (continuation lines of a meaning are indented under it)."""
    lines = ["exit codes:"]
    for code, meaning in codes:
        first, *rest = meaning.splitlines()
        lines.append(f"  {int(code):<3} {first}")
        lines.extend(f"      {line}" for line in rest)
    return "\n".join(lines) + "\n"


class CliError(Exception):
    """An error a user can cause: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def database_error(exc: Exception) -> CliError:
    """The error of a capture database that could not be opened for reading (a SqlError): exit 11 when the
    file itself is the trouble (another program's, damaged, or left mid-transaction), else 2 (no such
    file, a directory)."""
    from ecaptureq.store import DamagedDatabase, NotCaptureDatabase  # imported by a failure only: start-up

    trouble = isinstance(exc, NotCaptureDatabase | DamagedDatabase)
    return CliError(str(exc), ExitCode.STORAGE if trouble else ExitCode.USAGE)

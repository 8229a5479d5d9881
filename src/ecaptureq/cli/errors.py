"""Exit codes, their meanings (one table for ``--help`` and the README), and the one exception type
commands raise to end with a clear message."""

from __future__ import annotations

from typing import Final

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INCOMPLETE = 4
EXIT_NO_PRIVILEGE = 5
"""``ecaptureq tls``: not root (eBPF needs CAP_BPF and CAP_PERFMON)."""
EXIT_NO_BPF = 6
"""``ecaptureq tls``: the kernel or libbpf cannot load or attach the eBPF program."""
EXIT_NO_LIBSSL = 7
"""``ecaptureq tls``: no OpenSSL libssl found (or it has no SSL_write/SSL_read)."""
EXIT_NO_PID = 8
"""``ecaptureq tls``: the --pid process does not exist."""
EXIT_AUTH = 9
"""The server refused the handshake with HTTP 401: no token, or the wrong one."""
EXIT_FORBIDDEN = 10
"""The server refused the handshake with HTTP 403: its Origin policy (or another access rule)."""
EXIT_STORAGE = 11
"""The file is not a capture database, or the capture database cannot be written (disk full, read-only)."""
EXIT_INTERRUPTED = 130

EXIT_CODES: Final[tuple[tuple[int, str], ...]] = (
    (EXIT_OK, "done"),
    (EXIT_INTERNAL, "internal error (a bug; set ECAPTUREQ_DEBUG=1 for the traceback, and please report it)"),
    (EXIT_USAGE, "usage error: bad arguments, bad URL, invalid SQL, unreadable recording"),
    (EXIT_CONNECTION, "cannot connect, connection lost, or (serve, ui, tls) cannot listen"),
    (
        EXIT_INCOMPLETE,
        "--count not reached before --timeout; (agent) stopped with messages still in its spool",
    ),
    (EXIT_NO_PRIVILEGE, "tls: not root (eBPF needs CAP_BPF and CAP_PERFMON)"),
    (EXIT_NO_BPF, "tls: no eBPF support (no BTF, or the kernel refuses the program or its probes)"),
    (EXIT_NO_LIBSSL, "tls: libssl not found (or not OpenSSL)"),
    (EXIT_NO_PID, "tls: the --pid process not found"),
    (EXIT_AUTH, "the server refused the handshake with HTTP 401: no token, or the wrong one"),
    (
        EXIT_FORBIDDEN,
        "the server refused the handshake with HTTP 403: its Origin policy; (fleet) the NATS credentials "
        "may not do this",
    ),
    (
        EXIT_STORAGE,
        "not a capture database, or the capture database cannot be written (disk full, read-only)",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
"""Every exit code of every command and what it means: ``ecaptureq --help`` and the README's table."""


def exit_codes_help() -> str:
    """The ``exit codes:`` block of ``ecaptureq --help``."""
    return "exit codes:\n" + "".join(f"  {code:<3} {meaning}\n" for code, meaning in EXIT_CODES)


def exit_codes_markdown() -> str:
    """The README's table of exit codes (a test checks that the README has exactly this)."""
    rows = "".join(f"| {code} | {meaning} |\n" for code, meaning in EXIT_CODES)
    return "| code | meaning |\n| --- | --- |\n" + rows


class CliError(Exception):
    """An error a user can cause: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

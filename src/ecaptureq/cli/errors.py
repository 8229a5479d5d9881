"""Exit codes and the one exception type commands raise to end with a clear message."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INCOMPLETE = 4
# 5 to 8 are ``ecaptureq tls``'s capture errors (see cli/tls.py).
EXIT_AUTH = 9
"""The server refused the handshake with HTTP 401: no token, or the wrong one."""
EXIT_FORBIDDEN = 10
"""The server refused the handshake with HTTP 403: its Origin policy (or another access rule)."""
EXIT_STORAGE = 11
"""The capture database cannot be written: disk full, read-only, not a capture database."""
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error a user can cause: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

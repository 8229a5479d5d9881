"""Exit codes and the one exception type commands raise to end with a clear message."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error a user can cause: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

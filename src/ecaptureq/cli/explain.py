"""Library errors and notices worded for a person, in the options of our commands.

The library's exceptions carry data (the HTTP status of a refused handshake and whether a token was sent,
a filter's text and SQLite's reason, a recording's file and line ...) and say what happened in their own
terms; what to do about it, naming ``--token`` or ``--filter``, is said here and only here: nothing
below ``cli`` names a command-line option (``tests/test_layers.py`` checks).
"""

from __future__ import annotations

from ecaptureq.cli.errors import CliError, ExitCode
from ecaptureq.cli.security import TOKEN_ENV
from ecaptureq.client import CertificateNotTrusted, ConnectError, HandshakeRefused
from ecaptureq.fleet import SpoolOverflow
from ecaptureq.sources.replay import NotARecording, ReplayError
from ecaptureq.store import FilterError


def connect_exit_code(exc: ConnectError) -> ExitCode:
    """The exit code for a failed connection: 9 for HTTP 401, 10 for HTTP 403, else 3."""
    return {401: ExitCode.AUTH, 403: ExitCode.FORBIDDEN}.get(exc.status or 0, ExitCode.CONNECTION)


def connect_message(exc: ConnectError) -> str:
    """What went wrong (the library's message) and, where an option of ours is the way out, which."""
    advice = ""
    if isinstance(exc, HandshakeRefused):
        if exc.status == 401 and not exc.token_sent:
            advice = f"pass --token or set ${TOKEN_ENV}"
        elif exc.status == 403 and exc.origin:
            advice = "use --origin with an allowed one, or serve --allow-origin"
    elif isinstance(exc, CertificateNotTrusted):
        advice = "pass --ca FILE or --insecure"
    return f"{exc}; {advice}" if advice else str(exc)


def connect_error(exc: ConnectError, option: str = "") -> CliError:
    """The CLI error for a failed connection (``option`` names the URL's option, e.g. ``--source``)."""
    prefix = f"{option}: " if option else ""
    return CliError(prefix + connect_message(exc), connect_exit_code(exc))


def filter_error(exc: FilterError) -> CliError:
    """``invalid --filter: REASON`` (exit 2)."""
    on = "" if exc.table == "packets" else f" for {exc.table}"
    return CliError(f"invalid --filter{on}: {exc.reason}", ExitCode.USAGE)


def replay_error(exc: ReplayError) -> CliError:
    """A recording that cannot be read (exit 2); one that is not a recording says which file format is."""
    hint = " (a recording is what watch --json writes)" if isinstance(exc, NotARecording) else ""
    return CliError(f"{exc}{hint}", ExitCode.USAGE)


def agent_notice(notice: str | SpoolOverflow) -> str:
    """An agent's notice as one warning line."""
    if isinstance(notice, SpoolOverflow):
        return f"{notice}; raise --spool-size or fix the NATS link"
    return notice

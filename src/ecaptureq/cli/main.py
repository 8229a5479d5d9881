"""The ``ecaptureq`` command: one subcommand per module listed in :data:`COMMANDS`.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ecaptureq import __version__
from ecaptureq.cli.errors import CliError, ExitCode, exit_codes_help
from ecaptureq.cli.terminal import visible

COMMANDS: tuple[str, ...] = (
    "ecaptureq.cli.watch",
    "ecaptureq.cli.serve",
    "ecaptureq.cli.demo",
    "ecaptureq.cli.record",
    "ecaptureq.cli.query",
    "ecaptureq.cli.export",
    "ecaptureq.cli.bench",
    "ecaptureq.cli.tls",
    "ecaptureq.cli.ui",
    "ecaptureq.cli.agent",
    "ecaptureq.cli.collect",
)
"""The modules that each add one subcommand, in the order ``--help`` lists them; each module is named as
its command (``ecaptureq.cli.watch`` adds ``watch``)."""

EPILOG = exit_codes_help()


class _CommandFormatter(logging.Formatter):
    """Library warnings on stderr in the commands' own style: ``ecaptureq serve: warning: ...``."""

    command = ""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"ecaptureq {self.command}" if self.command else "ecaptureq"
        return f"{prefix}: {record.levelname.lower()}: {record.getMessage()}"


_LOG_FORMATTER = _CommandFormatter()


def _route_library_logs(command: str) -> None:
    """Send the library's warnings to stderr once, prefixed like every other message of ``command``."""
    _LOG_FORMATTER.command = command
    root = logging.getLogger("ecaptureq")
    if not any(getattr(h, "formatter", None) is _LOG_FORMATTER for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(_LOG_FORMATTER)
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        root.propagate = False


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand, or with ``command``'s alone (importing
    only its module: a command starts in about half the time of importing them all)."""
    parser = argparse.ArgumentParser(
        prog="ecaptureq",
        description="Serve, watch, decode and keep the TLS plaintext that eCapture captures "
        "(the eCaptureQ WebSocket protocol).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ecaptureq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if command is None or name.rpartition(".")[2] == command:
            importlib.import_module(name).register(sub)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs when its first word is one (the top-level parser has options only before
    it: ``--help`` and ``--version``, which list or name every command)."""
    first = argv[0] if argv else ""
    return first if f"ecaptureq.cli.{first}" in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> ExitCode:
    """Run the command line; returns (and, as a console script, exits with) the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_named(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return ExitCode.USAGE
    _route_library_logs(args.command)
    try:
        code: ExitCode = args.func(args)
    except CliError as exc:
        # one line, as CliError promises: a server's close reason or HTTP body is in some of them
        print(f"ecaptureq {args.command}: {visible(str(exc), newlines=False)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (``| head``): not an error worth a traceback.
        sys.stderr.close()
        return ExitCode.OK
    except Exception as exc:  # a bug must still end in one line, not a traceback
        if os.environ.get("ECAPTUREQ_DEBUG"):
            raise
        text = visible(str(exc), newlines=False)
        print(
            f"ecaptureq {args.command}: internal error: {type(exc).__name__}: {text} "
            "(set ECAPTUREQ_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

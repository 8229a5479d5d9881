"""The ``ecaptureq`` command: one subcommand per module listed in :data:`COMMANDS`.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ecaptureq import __version__
from ecaptureq.cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CliError

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
"""The modules that each add one subcommand, in the order ``--help`` lists them."""

EPILOG = """\
exit codes:
  0  done
  1  internal error (a bug: please report it)
  2  usage error (bad arguments, bad URL)
  3  cannot connect, or the connection was lost
  4  --count not reached before --timeout
  9  authentication failed: the server wants a (valid) token (HTTP 401)
  10 refused by the server's origin policy (HTTP 403)
  130 interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
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
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a console script, exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"ecaptureq {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (``| head``): not an error worth a traceback.
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug must still end in one line, not a traceback
        if os.environ.get("ECAPTUREQ_DEBUG"):
            raise
        print(
            f"ecaptureq {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set ECAPTUREQ_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

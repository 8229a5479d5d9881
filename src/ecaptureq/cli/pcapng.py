"""The pcapng options ``export`` and ``watch`` share."""

from __future__ import annotations

import argparse
import sys

from ecaptureq.cli.errors import CliError
from ecaptureq.sinks.tcp import PLAINTEXT_PORT


def add_keep_ports_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--keep-ports``."""
    parser.add_argument(
        "--keep-ports",
        action="store_true",
        help=f"pcapng: write the captured server ports instead of {PLAINTEXT_PORT} (Wireshark then needs "
        "Decode As, e.g. tshark -d tcp.port==443,http2, to see HTTP where it expects TLS)",
    )


def refuse_terminal() -> None:
    """Refuse to write pcapng to stdout when it is a terminal (binary would garble it)."""
    if sys.stdout.isatty():
        raise CliError("refusing to write pcapng to a terminal: pipe it (| tshark -r -) or give a file name")

"""The options that choose what the TLS capture hooks and keeps: ``ecaptureq tls``'s and ``agent --tls``'s.

A module of their own, light to import: ``agent`` builds its parser with them whatever its source, and the
capture's own modules (pyelftools, libbpf's bindings) load only when it captures.
"""

from __future__ import annotations

import argparse

from ecaptureq.sources.tls import DEFAULT_BUFFER_MIB


def add_capture_options(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """Add the options that choose what the capture hooks and keeps (``ecaptureq tls`` and ``agent --tls``);
    ``prefix`` starts each help text (``"--tls: "``)."""
    parser.add_argument(
        "--libssl",
        metavar="PATH",
        action="append",
        help=f"{prefix}hook only this file (repeatable): a libssl, a program with OpenSSL/BoringSSL linked "
        "statically, a GnuTLS or NSPR library, or a Go program. Default: every TLS library any process "
        "maps (containers and private copies included), the system's, and new ones as programs start",
    )
    parser.add_argument("--pid", type=int, metavar="PID", help=f"{prefix}capture only this process")
    parser.add_argument("--uid", type=int, metavar="UID", help=f"{prefix}capture only processes of this user")
    parser.add_argument(
        "--comm",
        metavar="NAME",
        help=f"{prefix}capture only processes with this command name (as in ps -o comm)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help=f"{prefix}capture only TCP connections with this port at either end",
    )
    parser.add_argument(
        "--buffer-size",
        type=int,
        default=DEFAULT_BUFFER_MIB,
        metavar="MiB",
        help=f"{prefix}kernel ring buffer in MiB, a power of two (default {DEFAULT_BUFFER_MIB}); larger "
        "rides out longer bursts, and the bytes it cannot hold are reported as 'capture lost' gaps",
    )

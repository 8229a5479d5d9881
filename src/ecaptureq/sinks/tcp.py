"""The facts of the synthetic TCP streams that :mod:`ecaptureq.sinks.pcapng` writes, kept apart from it so
that the command line can name them without importing the packet library."""

from __future__ import annotations

from typing import Final

MSS: Final[dict[int, int]] = {4: 1460, 6: 1440}
"""Segment size by IP version: what an Ethernet MTU of 1500 leaves after the IP and TCP headers."""
PLAINTEXT_PORT: Final = 80
"""The server port written unless the captured ones are kept: Wireshark dissects HTTP/1.x, HTTP/2 (from
its preface) and WebSocket (after the upgrade) on it with no options."""

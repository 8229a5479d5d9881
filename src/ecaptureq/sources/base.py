"""What every capture source publishes into: anything with ``publish_log`` and ``publish_event``.

A source knows nothing about WebSockets; :class:`ecaptureq.server.Server` is one such sink, a
JSON Lines writer is another.
"""

from __future__ import annotations

from typing import Protocol

from ecaptureq.protocol import Event


class Sink(Protocol):
    """Where a source sends its run-log lines and captured events. Both calls are thread-safe."""

    def publish_log(self, line: str) -> None:
        """Publish one run-log line."""

    def publish_event(self, event: Event) -> None:
        """Publish one captured event."""

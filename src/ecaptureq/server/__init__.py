"""The eCaptureQ server (the hub): clients, the startup-log cache, heartbeats and backpressure.

:mod:`ecaptureq.server.fanout` is the policy with no I/O; :mod:`ecaptureq.server.hub` its asyncio adapter.
"""

from ecaptureq.server.fanout import (
    CLOSE_FLOOD,
    CLOSE_QUEUE_OVERFLOW,
    CLOSE_SHUTDOWN,
    CLOSE_TOO_BIG,
    LOG_CACHE_SIZE,
    ClientStats,
    Fanout,
    ServerStats,
    StalledClient,
)
from ecaptureq.server.hub import SHUTDOWN_GRACE, Server, ShutdownReport

__all__ = [
    "CLOSE_FLOOD",
    "CLOSE_QUEUE_OVERFLOW",
    "CLOSE_SHUTDOWN",
    "CLOSE_TOO_BIG",
    "LOG_CACHE_SIZE",
    "SHUTDOWN_GRACE",
    "ClientStats",
    "Fanout",
    "Server",
    "ServerStats",
    "ShutdownReport",
    "StalledClient",
]

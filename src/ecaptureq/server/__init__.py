"""The eCaptureQ server (the hub): clients, the startup-log cache, heartbeats and backpressure."""

from ecaptureq.server.hub import (
    CLOSE_FLOOD,
    CLOSE_QUEUE_OVERFLOW,
    CLOSE_SHUTDOWN,
    CLOSE_TOO_BIG,
    LOG_CACHE_SIZE,
    SHUTDOWN_GRACE,
    ClientStats,
    Server,
    ServerStats,
    ShutdownReport,
    StalledClient,
)

__all__ = [
    "CLOSE_FLOOD",
    "CLOSE_QUEUE_OVERFLOW",
    "CLOSE_SHUTDOWN",
    "CLOSE_TOO_BIG",
    "LOG_CACHE_SIZE",
    "SHUTDOWN_GRACE",
    "ClientStats",
    "Server",
    "ServerStats",
    "ShutdownReport",
    "StalledClient",
]

"""The eCaptureQ server (the hub): clients, the startup-log cache, heartbeats and backpressure."""

from ecaptureq.server.hub import (
    CLOSE_QUEUE_OVERFLOW,
    CLOSE_SHUTDOWN,
    LOG_CACHE_SIZE,
    ClientStats,
    Server,
    ServerStats,
)

__all__ = ["CLOSE_QUEUE_OVERFLOW", "CLOSE_SHUTDOWN", "LOG_CACHE_SIZE", "ClientStats", "Server", "ServerStats"]

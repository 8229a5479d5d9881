"""Capture sources: they produce events and run-log lines into a :class:`~ecaptureq.sources.base.Sink`."""

from ecaptureq.sources.base import Sink

__all__ = ["Sink"]

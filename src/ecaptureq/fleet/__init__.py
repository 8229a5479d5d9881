"""Fleet collection on NATS JetStream: node agents publish, collectors and readers consume.

Agents (:class:`Agent`) publish each ``LogEntry`` unchanged to ``ecaptureq.<node>.<kind>`` through a
bounded durable :class:`Spool`; the collector (:class:`Collector`) is a durable consumer that writes into
the capture database and acknowledges after the commit; :class:`FleetReader` also serves ``watch``,
``record`` and ``ui`` with ``nats://`` URLs. The wire layout is in :mod:`ecaptureq.fleet.subjects`.

The names are imported from their modules when first used (PEP 562): an agent needs neither the collector
nor, through it, the store and the HTTP decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ecaptureq.lazy import lazy_attributes

if TYPE_CHECKING:
    from ecaptureq.fleet.agent import Agent, AgentStats, SpoolOverflow
    from ecaptureq.fleet.collector import Collector, CollectorStats, NodeStatus
    from ecaptureq.fleet.connection import (
        Connection,
        ConsumerRefused,
        FleetError,
        NatsAuthError,
        NatsOptions,
        NatsPermissionError,
        NatsUnavailable,
        connect,
        is_nats_url,
    )
    from ecaptureq.fleet.reader import FleetMessage, FleetReader
    from ecaptureq.fleet.spool import Spool, SpoolError, SpoolStats
    from ecaptureq.fleet.stream import Retention, ensure_stream
    from ecaptureq.fleet.subjects import STREAM, BadNodeName, BadSince, check_node, default_node, parse_since

__all__ = [
    "STREAM",
    "Agent",
    "AgentStats",
    "BadNodeName",
    "BadSince",
    "Collector",
    "CollectorStats",
    "Connection",
    "ConsumerRefused",
    "FleetError",
    "FleetMessage",
    "FleetReader",
    "NatsAuthError",
    "NatsOptions",
    "NatsPermissionError",
    "NatsUnavailable",
    "NodeStatus",
    "Retention",
    "Spool",
    "SpoolError",
    "SpoolOverflow",
    "SpoolStats",
    "check_node",
    "connect",
    "default_node",
    "ensure_stream",
    "is_nats_url",
    "parse_since",
]

_MODULES: Final = ("subjects", "connection", "stream", "spool", "agent", "reader", "collector")
"""Where the names of ``__all__`` are defined, the lightest first."""

__getattr__ = lazy_attributes(__name__, _MODULES, __all__)

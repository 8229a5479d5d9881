"""Typed values for the three kinds of eCaptureQ message.

These are plain frozen dataclasses: they carry no wire format and do no I/O. The codec
(:mod:`ecaptureq.protocol.codec`) turns them into frame bytes and back.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Final


class LogType(enum.IntEnum):
    """The ``log_type`` of a ``LogEntry``: which member of its ``payload`` oneof is set."""

    HEARTBEAT = 0
    PROCESS_LOG = 1
    EVENT = 2


INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""The range of a 64-bit signed integer: the proto's int64 fields (timestamps, pids), and SQLite's
INTEGER, which cannot store, bind or compare a larger one."""


class EventType(enum.IntEnum):
    """The parser eCapture recognised an event's payload with (``Event.type``)."""

    UNKNOWN = 0
    HTTP1_REQUEST = 1
    HTTP2_REQUEST = 2
    HTTP1_RESPONSE = 3
    HTTP2_RESPONSE = 4
    WEBSOCKET = 5


EVENT_TYPE_NAMES: Final[dict[int, str]] = {
    0: "unknown",
    1: "HTTP/1.x request",
    2: "HTTP/2 request",
    3: "HTTP/1.x response",
    4: "HTTP/2 response",
    5: "WebSocket",
}
"""Human names of the ``Event.type`` values eCapture defines."""


def event_type_name(value: int) -> str:
    """Return the human name of an ``Event.type`` value, or ``"type N"`` for an undefined one."""
    name = EVENT_TYPE_NAMES.get(value)
    return name if name is not None else f"type {value}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A keep-alive the server sends right after connect and then periodically.

    ``timestamp`` is Unix seconds, ``count`` starts at 0 for each connection, ``message`` is
    ``heartbeat:<count>`` on the reference server.
    """

    timestamp: int = 0
    count: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class RunLog:
    """One line of the server's own run log (``LogEntry.run_log``)."""

    line: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One captured chunk of plaintext (``LogEntry.event_payload``).

    The keyword arguments are named as the proto fields. ``unknown_fields`` holds the raw wire bytes of
    any fields this schema does not know (newer eCapture builds add fields 12-15); they are written back
    unchanged when the event is encoded again.
    """

    timestamp: int = 0
    uuid: str = ""
    src_ip: str = ""
    src_port: int = 0
    dst_ip: str = ""
    dst_port: int = 0
    pid: int = 0
    pname: str = ""
    type: int = 0
    length: int = 0
    payload: bytes = b""
    unknown_fields: bytes = field(default=b"", repr=False)

    @property
    def type_name(self) -> str:
        """The human name of :attr:`type`."""
        return event_type_name(self.type)


Message = Heartbeat | RunLog | Event
"""Any decoded eCaptureQ message."""


def run_log_line(message: str, level: str = "INF", at: float | None = None) -> str:
    """Format a run-log line as eCapture's zerolog console writer does: ``2025-08-02T14:16:10Z INF msg``
    and a newline. ``at`` is the line's time in Unix seconds (now when not given)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return with_newline(f"{stamp} {level} {message}")


def with_newline(line: str) -> str:
    """``line`` ending in one ``\\n``, as zerolog ends every run-log line (added only when missing)."""
    return line if line.endswith("\n") else line + "\n"

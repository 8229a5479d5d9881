"""The client's protocol state, without I/O: frames in, messages out.

A :class:`Session` lives across reconnects. It decodes frames, counts the malformed ones, and after a
reconnect hides the startup log the server replays, so the user does not see it twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecaptureq.protocol import DecodeError, ErrorKind, Event, Message, RunLog, decode

_SEEN_LOG_LIMIT = 4096
# A leading timestamp (zerolog console: "2025-08-02T14:16:10Z INF ...") and colour codes differ between
# two runs of the same server; the rest of a banner line does not.
_LOG_PREFIX = re.compile(r"^\s*(?:\d{4}-\d{2}-\d{2}[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?\s+)?")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _log_key(line: str) -> str:
    return _LOG_PREFIX.sub("", _ANSI.sub("", line), count=1).strip()


@dataclass
class SessionStats:
    """What a client has received, over all its connections."""

    frames: int = 0
    messages: int = 0
    events: int = 0
    logs: int = 0
    heartbeats: int = 0
    malformed: int = 0
    suppressed_logs: int = 0
    connections: int = 0


class Session:
    """Decode frames across one or more connections to the same server."""

    def __init__(self) -> None:
        self.stats = SessionStats()
        self._seen_logs: set[str] = set()
        self._replaying = False

    def connection_opened(self) -> None:
        """Call when a connection opens; from the second one on, the replayed startup log is hidden."""
        self.stats.connections += 1
        self._replaying = self.stats.connections > 1

    def receive(self, data: bytes | str) -> Message | DecodeError | None:
        """Decode one frame.

        Returns the message, a :class:`DecodeError` for a malformed frame (counted), or ``None`` for a
        run-log line the server replayed after a reconnect that this session has already delivered.
        """
        self.stats.frames += 1
        if isinstance(data, str):
            self.stats.malformed += 1
            return DecodeError(
                ErrorKind.NOT_PROTOBUF, "text frame (eCaptureQ sends binary frames)", data.encode()
            )
        msg = decode(data)
        if isinstance(msg, DecodeError):
            self.stats.malformed += 1
            return msg
        if isinstance(msg, RunLog):
            key = _log_key(msg.line)
            if self._replaying:
                if key in self._seen_logs:
                    self.stats.suppressed_logs += 1
                    return None
                self._replaying = False
            if len(self._seen_logs) < _SEEN_LOG_LIMIT:
                self._seen_logs.add(key)
            self.stats.logs += 1
        elif isinstance(msg, Event):
            self._replaying = False
            self.stats.events += 1
        else:
            self.stats.heartbeats += 1
        self.stats.messages += 1
        return msg

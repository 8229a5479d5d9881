"""Capture gaps: bytes of one connection that the capture lost, named by a run-log line.

eCapture's wire format (a ``LogEntry`` of an ``Event`` or a run-log line) has no field for "bytes
missing here", and adding one would break real eCapture clients. So a capture that loses bytes
publishes, between the events before and after the hole, one warning run-log line in a fixed form::

    2026-11-27T15:00:00Z WRN capture lost 16384 bytes: uuid=1234_1234_curl_5_0 bytes=1048576-1064960

``uuid`` is the uuid of the events of that connection and direction; ``bytes`` the half-open range
of the stream offsets lost. Any eCaptureQ client shows it as a warning; ours parse it back with
:func:`parse_gap` so the decoder can mark the exchange incomplete ("capture lost N bytes").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ecaptureq.protocol.messages import run_log_line

_GAP_LINE: Final = re.compile(r"\bcapture lost (\d+) bytes: uuid=(\S+) bytes=(\d+)-(\d+)")


@dataclass(frozen=True, slots=True)
class CaptureGap:
    """Bytes ``start`` (included) to ``end`` (excluded) of the stream ``uuid`` were not captured."""

    uuid: str
    start: int
    end: int

    @property
    def lost(self) -> int:
        """How many bytes are missing."""
        return self.end - self.start

    def message(self) -> str:
        """The run-log message (without time stamp and level)."""
        return f"capture lost {self.lost} bytes: uuid={self.uuid} bytes={self.start}-{self.end}"

    def log_line(self) -> str:
        """The whole run-log line, level ``WRN``."""
        return run_log_line(self.message(), "WRN")


def parse_gap(line: str) -> CaptureGap | None:
    """The gap a run-log line announces, or ``None`` when it announces none."""
    m = _GAP_LINE.search(line)
    if m is None:
        return None
    start, end = int(m.group(3)), int(m.group(4))
    if end - start != int(m.group(1)) or end < start:
        return None
    return CaptureGap(m.group(2), start, end)

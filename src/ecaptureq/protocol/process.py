"""A captured process's cgroup and container, named by a run-log line.

eCapture's ``Event`` has no field for a process's cgroup or container, and adding one would break real
eCapture clients. So ``ecaptureq tls`` publishes, before the first event of each process, one info
run-log line in a fixed form::

    2026-11-27T15:00:00Z INF process pid=1234 cgroup=/docker-0f3c….scope container_id=0f3c… comm=curl

``cgroup`` is the process's cgroup v2 path (quoted as a shell word when it holds spaces),
``container_id`` the id a container runtime wrote into it (empty when none), ``comm`` the rest of the
line. Any eCaptureQ client shows it as a log line; ours parse it back with :func:`parse_process` (the
store keeps it in its ``processes`` table).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Final

from ecaptureq.protocol.messages import run_log_line

_PROCESS_LINE: Final = re.compile(r"\bINF process pid=(\d+) cgroup=(.*?) container_id=([0-9a-f]*) comm=(.*)$")


@dataclass(frozen=True, slots=True)
class ProcessLabel:
    """What a capture knows of process ``pid`` beyond its events."""

    pid: int
    comm: str
    cgroup: str
    container_id: str

    def message(self) -> str:
        """The run-log message (without time stamp and level)."""
        cgroup = shlex.quote(self.cgroup) if self.cgroup else "''"
        return f"process pid={self.pid} cgroup={cgroup} container_id={self.container_id} comm={self.comm}"

    def log_line(self) -> str:
        """The whole run-log line, level ``INF``."""
        return run_log_line(self.message(), "INF")


def parse_process(line: str) -> ProcessLabel | None:
    """The process a run-log line describes, or ``None`` when it describes none."""
    m = _PROCESS_LINE.search(line)
    if m is None:
        return None
    try:
        words = shlex.split(m.group(2))
    except ValueError:
        return None
    if len(words) > 1:
        return None
    return ProcessLabel(int(m.group(1)), m.group(4), words[0] if words else "", m.group(3))

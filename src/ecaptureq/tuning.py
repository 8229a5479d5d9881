"""Process-wide interpreter settings of ecaptureq's long-running processes.

They apply to the whole process (the cyclic garbage collector, the GIL), so the command that owns the
process sets them, once, at start: ``record``, ``ui`` and ``collect`` (and the store's process they start)
with :func:`tune_for_recording`, ``agent`` with :func:`tune_gc`.
"""

from __future__ import annotations

import gc
import sys
from typing import Final

GC_THRESHOLD: Final = (50_000, 20, 20)
"""The cyclic garbage collector's thresholds in a process that handles every captured message (Python's
default: 700, 10, 10).

Each message allocates several container objects (a recording's decoded messages, their headers, the rows
waiting for the next commit; an agent's spooled messages, their headers, the acknowledgements' futures),
almost none of them in a cycle: at the default, the collector ran every few messages and took about a tenth
of a recording's CPU, and 2.4 of an agent's 36 µs per message replaying at full speed (every run of it also
walks the whole recording the agent holds). Reference counting frees them either way."""

SWITCH_INTERVAL: Final = 0.001
"""Seconds a thread may hold the GIL while another waits for it, in a recording process (Python's default:
0.005). The store's writer thread needs it for moments between long waits (for the committing process's
answer), and at the default it waited up to 5 ms behind the decoding thread each time: storing 20,000
HTTP/1.1 events in batches of 2,000 took 27 µs per event, 23 at this value. In ``ecaptureq bench
--consumers`` the difference is within the noise of one run to the next."""


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLD` for this process."""
    gc.set_threshold(*GC_THRESHOLD)


def tune_for_recording() -> None:
    """Set :data:`GC_THRESHOLD` and :data:`SWITCH_INTERVAL` for this process."""
    tune_gc()
    sys.setswitchinterval(SWITCH_INTERVAL)

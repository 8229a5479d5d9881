"""The drain thread's priority, set from the ring buffer's fill by a small process of its own.

The thread that drains the ring buffer runs at the lowest priority (:data:`DRAIN_NICE_CALM`) while the
buffer stays nearly empty, so the applications it watches run first, and at :data:`DRAIN_NICE_BUSY` once
it fills. The switch cannot be left to the drain thread (at nice 19 among busy processes it gets almost no
CPU, so it would not notice the buffer filling) nor to another thread of the capture's process: a drain
thread preempted while holding the GIL would hold that thread up too. So a separate interpreter does it: it
maps the ring buffer's two position pages read-only, looks at them every :data:`INTERVAL` seconds and
renices the drain thread (by its tid). It ends when the capture closes the pipe it was given (or exits).

This file runs as a script (``python -I -S governor.py``, the standard library only: no package import at
start-up) and is imported by :mod:`~ecaptureq.sources.tls.capture` for its constants.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
import sys
import time
from typing import Final

DRAIN_NICE_CALM: Final = 19
"""Nice value of the drain thread while the buffer stays nearly empty: the lowest, so the applications it
watches run first and the buffer holds what waits (at nice 0 the drain took its share of a core in the
middle of their request/response ping-pong: 1,000 keep-alive 1 KB requests took 1.22-1.26x the time with
empty probes, 1.04-1.09x at 19)."""

DRAIN_NICE_BUSY: Final = -19
"""Nice value once the buffer fills (root may raise a thread's priority). Under CPU contention a consumer
at an ordinary priority gets one fair share among every busy process (one among fifty curls), the buffer
fills and records are lost; at -19 it runs whenever records wait, still below real-time. The governor
itself runs at this value."""

BUSY_FILL: Final = 1 / 4
"""Ring-buffer fill at which the drain thread switches to :data:`DRAIN_NICE_BUSY`. Up to there a burst
waits in the buffer while the applications run first. At 1/4 rather than 1/64, one curl fetching 10 x 10
MB read 3.83x and 4.19x the time without capture (HTTP/1.1, HTTP/2) where the run before read 4.19x and
4.42x. Runs vary by about that much (a later one read 4.54x and 4.14x), and 50 x 20 x 1 MB stayed exact."""

CALM_FILL: Final = 1 / 256
"""Fill under which it may go back to :data:`DRAIN_NICE_CALM`..."""

CALM_AFTER: Final = 2.0
"""... once it has stayed there this many seconds (a burst often comes back)."""

INTERVAL: Final = 0.005
"""Seconds between two looks at the fill: at loopback speed (2 GB/s), 10 MiB of a 256 MiB buffer."""

_U64: Final = struct.Struct("Q")  # native: one load (see ringbuf.py)


def govern(map_fd: int, size: int, tid: int, until_fd: int) -> None:
    """Renice thread ``tid`` from the fill of the ring buffer ``map_fd`` (``size`` bytes of data) until
    ``until_fd`` (a pipe's read end) reports its writer closed, or the thread is gone."""
    page = mmap.PAGESIZE
    consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
    producer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, DRAIN_NICE_BUSY)
    until = select.poll()
    until.register(until_fd, select.POLLIN)
    busy: bool | None = None
    calm_since = 0.0
    while not until.poll(INTERVAL * 1000):
        fill = (_U64.unpack_from(producer, 0)[0] - _U64.unpack_from(consumer, 0)[0]) / size
        now = time.monotonic()
        if fill >= CALM_FILL:
            calm_since = now
        wanted = fill >= BUSY_FILL or (busy is True and now - calm_since < CALM_AFTER)
        if wanted != busy:
            busy = wanted
            try:
                os.setpriority(os.PRIO_PROCESS, tid, DRAIN_NICE_BUSY if busy else DRAIN_NICE_CALM)
            except ProcessLookupError:
                return  # the drain thread ended
            except OSError:
                pass  # not allowed: the thread keeps its priority; the capture goes on


if __name__ == "__main__":
    govern(*(int(arg) for arg in sys.argv[1:5]))

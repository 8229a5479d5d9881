"""The drain thread's priority governor (sources/tls/governor.py), run as the capture runs it: a process of
its own renicing a real thread from the positions in two shared pages (here a file standing in for the ring
buffer's mapping, laid out as the kernel lays out its consumer and producer pages)."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecaptureq.sources.tls import governor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="raising a thread's priority needs root"),
]

RING = 1 << 20
POSITION = struct.Struct("Q")


def _nice_becomes(tid: int, nice: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.getpriority(os.PRIO_PROCESS, tid) == nice:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def drain_thread() -> Iterator[int]:
    """A live thread (its tid) standing for the drain thread, at nice 0."""
    started, stop = threading.Event(), threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        started.set()
        stop.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    os.setpriority(os.PRIO_PROCESS, tids[0], 0)
    yield tids[0]
    stop.set()
    thread.join(5)


def test_the_drain_thread_is_reniced_as_the_ring_fills_and_drains(tmp_path: Path, drain_thread: int) -> None:
    pages = tmp_path / "ring-positions"
    pages.write_bytes(bytes(2 * mmap.PAGESIZE))
    fd = os.open(pages, os.O_RDWR)
    shared = mmap.mmap(fd, 2 * mmap.PAGESIZE)
    until_r, until_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", governor.__file__, str(fd), str(RING), str(drain_thread), str(until_r)],
        pass_fds=(fd, until_r),
    )
    os.close(until_r)
    try:
        # Empty: the lowest priority, so the watched applications run first.
        assert _nice_becomes(drain_thread, governor.DRAIN_NICE_CALM)
        # The producer runs ahead by more than BUSY_FILL of the buffer: the highest.
        POSITION.pack_into(shared, mmap.PAGESIZE, int(RING * governor.BUSY_FILL) + 4096)
        assert _nice_becomes(drain_thread, governor.DRAIN_NICE_BUSY)
        # Drained: calm again once it stayed under CALM_FILL for CALM_AFTER seconds, not before.
        POSITION.pack_into(shared, 0, int(RING * governor.BUSY_FILL) + 4096)
        time.sleep(governor.CALM_AFTER / 2)
        assert os.getpriority(os.PRIO_PROCESS, drain_thread) == governor.DRAIN_NICE_BUSY
        assert _nice_becomes(drain_thread, governor.DRAIN_NICE_CALM, timeout=governor.CALM_AFTER + 3)
    finally:
        os.close(until_w)  # the capture's signal to end
        assert proc.wait(timeout=5) == 0
        shared.close()
        os.close(fd)

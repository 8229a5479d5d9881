"""The ``--stats`` lines of ``serve`` and ``tls``: each component's typed stats (``server.stats``,
``capture.stats``), worded with their rates since the previous line by one :class:`StatsReporter`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ecaptureq.cli.render import plural

if TYPE_CHECKING:
    from ecaptureq.server import ServerStats
    from ecaptureq.sources.tls import CaptureStats

S = TypeVar("S")


def format_stats(now: ServerStats, before: ServerStats | None, seconds: float) -> str:
    """The server's ``--stats`` line: rates since ``before``, clients, queue depths, disconnections,
    refusals."""
    published = now.events_published - (before.events_published if before else 0)
    sent_bytes = now.bytes_published - (before.bytes_published if before else 0)
    depths = [c.queued for c in now.clients]
    return (
        f"ecaptureq serve: stats: {now.events_published} events ({published / seconds:,.0f}/s, "
        f"{sent_bytes / seconds / 1024:,.0f} KiB/s published), {plural(len(now.clients), 'client')}, "
        f"queue max {max(depths, default=0)} total {sum(depths)}, "
        f"{now.disconnections} disconnections ({now.overflow_closes} too slow, {now.flood_closes} flooding), "
        f"refused {now.refused_origin} origin / {now.refused_token} token / {now.refused_capacity} capacity"
    )


def format_capture_stats(
    now: CaptureStats, before: CaptureStats | None, seconds: float, ring_fill: float
) -> str:
    """The capture's ``--stats`` line: rates since ``before``, losses, gaps, ring-buffer fill."""
    events = now.events - (before.events if before else 0)
    captured = now.bytes - (before.bytes if before else 0)
    return (
        f"ecaptureq tls: stats: {now.events} events ({events / seconds:,.0f}/s), {now.chunks} records, "
        f"{now.bytes / 2**20:,.1f} MiB captured ({captured / seconds / 2**20:,.1f} MiB/s), "
        f"lost {now.drop_chunks} records ({now.drop_bytes} bytes) + {now.oversized_bytes} bytes of oversized "
        f"calls, {now.gaps} gaps ({now.gap_bytes} bytes), ring buffer {100 * ring_fill:.0f}% full"
    )


@dataclass
class _Component(Generic[S]):
    read: Callable[[], S]
    line: Callable[[S, S | None, float], str]
    before: S | None = None


class StatsReporter:
    """Prints, on stderr, one ``--stats`` line per component each :meth:`tick`: its stats now and its rates
    since the previous tick. Components are added with the way to read their stats and to word them."""

    def __init__(self) -> None:
        self._components: list[_Component[Any]] = []
        self._last = time.monotonic()

    def add(self, read: Callable[[], S], line: Callable[[S, S | None, float], str]) -> StatsReporter:
        """Report the stats ``read`` returns, worded by ``line(now, before, seconds)``."""
        self._components.append(_Component(read, line))
        return self

    def tick(self) -> None:
        """Print each component's line now."""
        now = time.monotonic()
        seconds = max(now - self._last, 1e-6)
        self._last = now
        for component in self._components:
            stats = component.read()
            print(component.line(stats, component.before, seconds), file=sys.stderr, flush=True)
            component.before = stats

    async def every(self, interval: float, stop: asyncio.Event) -> None:
        """:meth:`tick` every ``interval`` seconds until ``stop`` is set."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            self.tick()

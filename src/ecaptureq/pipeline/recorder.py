"""Record a live eCaptureQ server into a capture database: what ``ecaptureq record`` and the web UI run.

:class:`LiveRecorder` is a reconnecting :class:`~ecaptureq.client.Client` whose frames go, undecoded, to a
:class:`~ecaptureq.pipeline.store_process.StoreProcess`: a process of its own that decodes them into a
:class:`~ecaptureq.store.CaptureStore`, committed every ``flush_interval`` seconds (so a crash loses at most
that much, and read-only readers see new rows within it) and as soon as the stream goes quiet. The recorder
keeps the counters a status line shows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecaptureq.client import DEFAULT_ORIGIN, Client, Connected, ConnectError, Disconnected, Status
from ecaptureq.pipeline.store_process import StoreProcess
from ecaptureq.pipeline.tasks import until_first_ends


@dataclass
class LiveStats:
    """The live source's state and counters: what the status bar and ``record``'s progress line show."""

    connected: bool = False
    waiting: bool = True
    """No connection to the source yet: it is retried with backoff."""
    status: str = "waiting for source: connecting"
    reconnects: int = 0
    disconnections: int = 0
    events_per_s: float = 0.0


class LiveRecorder:
    """Stream ``url`` into ``store`` until cancelled, reconnecting with backoff whenever it ends.

    This process only receives: each read's frames go as they came to the :class:`StoreProcess`, which
    decodes, filters and stores them (and decides when to commit). Start the store first
    (:meth:`StoreProcess.start`) and close it after :meth:`run`.

    Call :meth:`wait_first_connection` before relying on it: it raises :class:`ConnectError` when the
    first attempt fails. ``on_status`` sees each status change, ``on_flush`` runs every flush interval of
    the store (a progress line). :meth:`run` raises :class:`~ecaptureq.store.StoreError` when the database
    cannot be written.
    """

    def __init__(
        self,
        url: str,
        store: StoreProcess,
        *,
        origin: str | None = DEFAULT_ORIGIN,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_status: Callable[[Status], None] | None = None,
        on_flush: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._on_status_hook = on_status
        self._on_flush_hook = on_flush
        self.stats = LiveStats()
        self._first: asyncio.Future[None] | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=8)
        self.client = Client(
            url,
            origin=origin,
            reconnect=True,
            headers=headers,
            ssl=ssl_context,
            on_status=self._on_status,
        )

    @property
    def url(self) -> str:
        """The normalised URL of the source."""
        return self.client.url

    def _on_status(self, status: Status) -> None:
        c = self.stats
        if self._on_status_hook is not None:
            self._on_status_hook(status)
        if isinstance(status, Connected):
            c.connected = True
            c.waiting = False
            c.status = f"connected to {status.url}"
            if status.gap is not None:
                c.reconnects += 1
            self.store.connection_opened(status.url)
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        elif isinstance(status, Disconnected):
            if c.connected:
                c.disconnections += 1
            c.connected = False
            retry = f"; retrying in {status.retry_in:.1f} s" if status.retry_in is not None else ""
            if c.waiting:
                reason = status.reason.removeprefix(f"cannot connect to {self.client.display_url}: ")
                c.status = f"waiting for source {self.client.display_url}: {reason}{retry}"
            else:
                c.status = f"disconnected: {status.reason}{retry}"
            self.store.connection_closed(status.reason)
            if self._first is not None and not self._first.done():
                self._first.set_exception(ConnectError(status.reason))

    async def wait_first_connection(self) -> None:
        """Wait for the first connection; raise :class:`ConnectError` if the first attempt fails."""
        if self._first is None:
            self._first = asyncio.get_running_loop().create_future()
        await self._first

    def _sample(self) -> None:
        now = time.monotonic()
        packets = self.store.stats.packets
        self._samples.append((now, packets))
        first_t, first_n = self._samples[0]
        if now - first_t > 0:
            self.stats.events_per_s = (packets - first_n) / (now - first_t)

    async def _consume(self) -> None:
        store = self.store
        async with contextlib.aclosing(self.client.frames()) as reads:
            async for frames in reads:
                store.send_frames(frames)
                await store.drain()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.store.flush_interval)
            self._sample()
            if self._on_flush_hook is not None:
                self._on_flush_hook()

    async def run(self) -> None:
        """Receive until cancelled (or until the store fails, which is raised).

        A source that is not up yet, or goes away, is retried with backoff for ever; only a refused
        handshake (HTTP 401 or 403) raises :class:`ConnectError`.
        """
        try:
            await until_first_ends(self._consume(), self._tick(), self.store.failed())
        finally:
            await self.client.close()

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON for ``/api/status``."""
        c, store = self.stats, self.store
        s = store.stats
        return {
            "connected": c.connected,
            "waiting": c.waiting,
            "status": c.status,
            "events": s.packets,
            "events_per_s": round(c.events_per_s, 1),
            "exchanges": s.exchanges,
            "bytes": s.payload_bytes,
            "run_logs": s.logs,
            "heartbeats": s.heartbeats,
            "frames": store.frames,
            "malformed": store.malformed,
            "reconnects": c.reconnects,
            "disconnections": c.disconnections,
        }

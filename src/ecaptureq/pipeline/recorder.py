"""Record a live eCaptureQ server into a capture database: what ``ecaptureq record`` and the web UI run.

:class:`LiveRecorder` is a reconnecting :class:`~ecaptureq.client.Client` feeding a
:class:`~ecaptureq.store.CaptureStore`, committed every ``flush_interval`` seconds (so a crash loses at
most that much, and read-only readers see new rows within it) and as soon as the stream goes quiet, with the
counters a status line shows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ecaptureq.client import DEFAULT_ORIGIN, Client, Connected, ConnectError, Disconnected, Status
from ecaptureq.protocol import DecodeError, Event
from ecaptureq.store.sql import PacketFilter
from ecaptureq.store.writer import QUIET_COMMIT, CaptureStore

YIELD_EVERY = 16
"""Messages recorded between two turns given to the event loop's other tasks."""

RENDER_STEP: Final = 128
"""Exchanges rendered into rows between two turns given to the event loop's other tasks, when a batch is
taken for commit (a 5,000-event batch's exchanges take about 25 ms to render: the UI's requests would wait
for all of it)."""

GC_THRESHOLD: Final = (50_000, 20, 20)
"""The cyclic garbage collector's thresholds in a recording process (Python's default: 700, 10, 10).

Recording allocates several container objects per event (the decoded messages, their headers, the rows
waiting for the next commit), almost none of them in a cycle: at the default, the collector ran every few
events and took about a tenth of the CPU. Reference counting frees them either way."""


SWITCH_INTERVAL: Final = 0.001
"""Seconds a thread may hold the GIL while another waits for it, in a recording process (Python's default:
0.005). The store's writer thread needs it for moments between long waits (for the committing process's
answer), and at the default it waited up to 5 ms behind the decoding thread each time: storing 20,000
HTTP/1.1 events in batches of 2,000 took 27 µs per event, 23 at this value. In ``ecaptureq bench
--consumers`` the difference is within the noise of one run to the next."""


def tune_for_recording() -> None:
    """Set :data:`GC_THRESHOLD` and :data:`SWITCH_INTERVAL` for this process (``record``, ``ui`` and
    ``collect`` call it at start)."""
    gc.set_threshold(*GC_THRESHOLD)
    sys.setswitchinterval(SWITCH_INTERVAL)


@dataclass
class LiveStats:
    """The live source's state and counters: what the status bar and ``record``'s progress line show."""

    connected: bool = False
    waiting: bool = True
    """No connection to the source yet: it is retried with backoff."""
    status: str = "waiting for source: connecting"
    reconnects: int = 0
    disconnections: int = 0
    malformed: int = 0
    events_per_s: float = 0.0


class LiveRecorder:
    """Stream ``url`` into ``store`` until cancelled, reconnecting with backoff whenever it ends.

    Call :meth:`wait_first_connection` before relying on it: it raises :class:`ConnectError` when the
    first attempt fails. ``event_filter`` keeps only the events it matches (``index`` counts every
    event received); ``on_status`` sees each status change, ``on_flush`` runs after each timed commit, and
    ``on_commit`` (on the event loop) after each batch the writer thread committed, as soon as it did, and
    after the commits a connection's opening and closing make.
    :meth:`run` raises :class:`~ecaptureq.store.StoreError` when the database cannot be written.
    """

    def __init__(
        self,
        url: str,
        store: CaptureStore,
        *,
        origin: str | None = DEFAULT_ORIGIN,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        flush_interval: float = 0.5,
        event_filter: PacketFilter | None = None,
        on_status: Callable[[Status], None] | None = None,
        on_flush: Callable[[], None] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.event_filter = event_filter
        self._on_status_hook = on_status
        self._on_flush_hook = on_flush
        self._on_commit_hook = on_commit
        self.stats = LiveStats()
        self._first: asyncio.Future[None] | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=8)
        self._inflight: asyncio.Future[None] | None = None
        self._committing = asyncio.Lock()  # batches are taken and handed over one at a time, in order
        self._received = 0  # messages buffered so far (the flush task sees when they stop coming)
        self.client = Client(
            url,
            origin=origin,
            reconnect=True,
            headers=headers,
            ssl=ssl_context,
            on_status=self._on_status,
            on_malformed=self._on_malformed,
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
            self.store.connection_opened(status.url)  # commits what was buffered: announced below
            if self._on_commit_hook is not None:
                self._on_commit_hook()
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
            if self._on_commit_hook is not None:
                self._on_commit_hook()
            if self._first is not None and not self._first.done():
                self._first.set_exception(ConnectError(status.reason))

    def _on_malformed(self, error: DecodeError) -> None:
        self.stats.malformed += 1

    async def wait_first_connection(self) -> None:
        """Wait for the first connection; raise :class:`ConnectError` if the first attempt fails."""
        if self._first is None:
            self._first = asyncio.get_running_loop().create_future()
        await self._first

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self.store.stats.packets))
        first_t, first_n = self._samples[0]
        if now - first_t > 0:
            self.stats.events_per_s = (self.store.stats.packets - first_n) / (now - first_t)

    async def _consume(self) -> None:
        index = 0
        flt = self.event_filter
        store = self.store
        # Every message one socket read brought comes at once (no await per message).
        async with contextlib.aclosing(self.client.batches()) as batches:
            async for batch in batches:
                for message in batch:
                    if isinstance(message, Event):
                        index += 1
                        if flt is not None and not flt.matches(message, index):
                            continue
                    store.buffer(message)
                    self._received += 1
                    if store.pending >= store.batch_size:
                        await self._commit()
                    elif self._received % YIELD_EVERY == 0:
                        # Let the other tasks of the loop (the UI's requests) in between, or they wait
                        # for a whole socket read's worth.
                        await asyncio.sleep(0)

    async def _commit(self) -> None:
        """Hand what is buffered to the store's writer thread, after the previous batch is committed: the
        event loop goes on receiving (and the UI answering) while SQLite writes."""
        async with self._committing:
            await self._settle()
            batch = self.store.take()
            if batch is None:
                return
            try:
                while not batch.render(RENDER_STEP):
                    await asyncio.sleep(0)
            except BaseException:  # cancelled at shutdown: the store's close() commits it
                self.store.put_back(batch)
                raise
            future = self.store.commit_in_background(batch)
            self._inflight = asyncio.wrap_future(future)
            if self._on_commit_hook is not None:
                self._inflight.add_done_callback(self._committed)

    def _committed(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None and self._on_commit_hook is not None:
            self._on_commit_hook()

    async def _settle(self) -> None:
        """Wait for the commit in progress, if any (its StoreError is raised here)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    async def _flush(self) -> None:
        """Commit every ``flush_interval`` (then ``on_flush``), and as soon as the stream has been quiet
        for :data:`~ecaptureq.store.writer.QUIET_COMMIT` with something buffered."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.flush_interval
        seen = self._received
        while True:
            await asyncio.sleep(min(QUIET_COMMIT, self.flush_interval))
            if loop.time() >= due:
                due = loop.time() + self.flush_interval
                await self._commit()
                await self._settle()
                self._sample()
                if self._on_flush_hook is not None:
                    self._on_flush_hook()
            elif self._received == seen and self.store.pending:
                await self._commit()  # nothing came since the last look: the burst is over
            seen = self._received

    async def run(self) -> None:
        """Receive and commit until cancelled (or until the store fails, which is raised).

        A source that is not up yet, or goes away, is retried with backoff for ever; only a refused
        handshake (HTTP 401 or 403) raises :class:`ConnectError`.
        """
        tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._flush())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.close()
            # A batch still being written is committed (or kept buffered, if it fails) before the
            # caller closes the store; the caller's close() reports a failure.
            inflight, self._inflight = self._inflight, None
            if inflight is not None:
                await asyncio.gather(inflight, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON for ``/api/status``."""
        c, s, cs = self.stats, self.store.stats, self.client.stats
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
            "frames": cs.frames,
            "malformed": c.malformed,
            "reconnects": c.reconnects,
            "disconnections": c.disconnections,
        }

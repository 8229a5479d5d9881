"""A live recording's decoding and storing, in a process of its own: what ``record``, ``ui --source`` and the
fleet's collector (``collect``, ``record nats://``, ``ui --nats``) run.

A recording receives frames (websockets), decodes them (protobuf, then HTTP), renders the exchanges into rows
and hands the rows to the store's committing process. In one process the receiving and the decoding share
the GIL, and that process was the bottleneck: on ``ecaptureq bench --consumers``' HTTP/1.1 workload it spent
30 µs per event while the committing process spent 18. Here the recording's process only receives, and
sends each read's frames as they came to this process, which decodes and buffers them into a
:class:`~ecaptureq.store.CaptureStore` (which commits through its own committing process, as before). The
three stages run on the machine's cores side by side.

:class:`StoreProcess` (on the recording's event loop) starts the process (:func:`main`) and talks to it
over its stdin and stdout. Each message is an 8-byte length (native order) and a ``marshal`` of a tuple:

* to the process: first ``("open", database, decode, condition or None, flush_interval, commit_every or
  None)``; then
  * from a WebSocket source: ``("frames", received_ns, [frame, ...])`` (one read of the socket:
    ``bytes``, or ``str`` for a text frame, which is counted as malformed), ``("opened", url)``,
    ``("closed", reason)``;
  * from the fleet's stream: ``("messages", received_ns, [(node, key or None, redelivered, body), ...])``
    (each ``body`` a ``LogEntry``; a message whose ``key`` is stored already is counted as a duplicate and
    skipped), ``("forget", key)`` (drop the keys up to it);

  the end of its input closes the store (it commits what is left) and ends it;
* from it: ``("ready",)`` once the database is open, or ``("refused", text)``; ``("committed",
  counters)`` after each commit; ``("failed", text)`` when a commit failed (its rows stay buffered for the
  next one); ``("closed", counters, text or None)`` at the end, with the final commit's error if any.
  The counters say how many ``messages`` the commit covers (:attr:`StoreProcess.handled`): the fleet's
  collector acknowledges those.

The process decides when to commit, as a recording in one process did: when
:attr:`~ecaptureq.store.CaptureStore.batch_size` rows wait, when ``commit_every`` messages came since the
last commit, :data:`~ecaptureq.store.writer.QUIET_COMMIT` after the last frame, and every flush interval.
It runs in a session of its own, so that the terminal's Ctrl-C reaches only the recording's process, which
then ends its input: what was sent is committed. When the recording's process is killed, the end of input
does the same.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import functools
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Final

from ecaptureq.client.session import Session
from ecaptureq.protocol import DecodeError, Event, Heartbeat, decode
from ecaptureq.store.committer import PIPE_BYTES
from ecaptureq.store.schema import FilterError, StoreError
from ecaptureq.store.sql import PacketFilter
from ecaptureq.store.writer import QUIET_COMMIT, CaptureStore, StoreStats
from ecaptureq.tuning import tune_for_recording

_LENGTH: Final = struct.Struct("Q")

SEND_BUFFER: Final = 1024 * 1024
"""Bytes of frames the recording's process may have written and the store's process not yet read, beyond
the pipe's own buffer, before :meth:`StoreProcess.drain` waits (then the recording stops reading its socket,
and the server sees a slow client, as it did when one process did everything)."""

IN_FLIGHT: Final = 2
"""Batches handed to the store's writer thread and not yet committed, at most: one being written by the
committing process, the next waiting for it. With one, decoding stopped for each commit: a fifth of the
process's time, on an HTTP/1.1 burst."""

_START: Final = "from ecaptureq.pipeline.store_process import main; main()"
"""The process's program (``python -c``: not ``-m``, which would run this module a second time beside the
copy the package imports). Its settings come on stdin, not as arguments: a filter is not shown by ``ps``."""

SETTINGS_WAIT: Final = 60.0
"""Seconds the process waits for its settings before ending."""

Counters = tuple[Any, ...]
"""What the process reports: the fields of its :class:`StoreStats`, in order, then the frames (or messages)
received, the malformed ones, the messages the commit covers, the duplicates skipped, and each node's
events and run-log lines stored (``{node: [events, logs]}``)."""


class _Answers:
    """Writes the process's messages to the recording's process, from the main thread and the store's
    writer thread (a commit's answer); once the reader is gone, writes nothing."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._gone = False

    def send(self, message: tuple[Any, ...]) -> None:
        body = marshal.dumps(message)
        data = memoryview(_LENGTH.pack(len(body)) + body)
        with self._lock:
            while data and not self._gone:
                try:
                    data = data[os.write(self._fd, data) :]
                except OSError:  # the recording's process is gone: go on storing what it sent
                    self._gone = True


class _Requests:
    """Reads the recording's messages from a file descriptor, with a timeout."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self.ended = False
        with contextlib.suppress(OSError):  # not a pipe, or above the system's limit: as it is
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def next(self, timeout: float) -> tuple[Any, ...] | None:
        """The next message; ``None`` when none came within ``timeout`` seconds or the input ended
        (:attr:`ended`)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None or self.ended:
                return message
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._fd], [], [], wait)[0]:
                return None
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                self.ended = True
            self._buffer += chunk

    def _parse(self) -> tuple[Any, ...] | None:
        buffer = self._buffer
        if len(buffer) < _LENGTH.size:
            return None
        (size,) = _LENGTH.unpack_from(buffer)
        end = _LENGTH.size + size
        if len(buffer) < end:
            return None
        message: tuple[Any, ...] = marshal.loads(memoryview(buffer)[_LENGTH.size : end])
        del buffer[:end]
        return message


class _Recording:
    """The process's state: the store, the client session that decodes the frames, the filter."""

    def __init__(
        self,
        store: CaptureStore,
        event_filter: PacketFilter | None,
        answers: _Answers,
        commit_every: int | None = None,
    ) -> None:
        self.store = store
        self.session = Session()
        self.event_filter = event_filter
        self.answers = answers
        self.commit_every = commit_every
        self.index = 0  # events received, for the filter's ``index``
        self.messages_received = 0
        self.malformed_messages = 0
        self.handled = 0  # fleet messages stored or skipped: a commit covers those handled before it
        self.handed = 0  # handled when the last commit was asked for
        self.covered = 0  # handled when the last commit that succeeded was asked for: what answers report
        self.duplicates = 0
        self.nodes: dict[str, list[int]] = {}  # node -> [events, run-log lines] stored
        self._high = -1  # the highest key stored (read from the database with the first key)
        self._inflight: collections.deque[Future[None]] = collections.deque()
        self._failures = 0

    def counters(self, handled: int) -> Counters:
        """What a commit answer reports, ``handled`` messages covered."""
        received = self.session.stats.frames + self.messages_received
        malformed = self.session.stats.malformed + self.malformed_messages
        stats = dataclasses.astuple(self.store.stats)
        return (*stats, received, malformed, handled, self.duplicates, self.nodes)

    @property
    def due(self) -> bool:
        """Whether anything waits for a commit (rows, or fleet messages skipped since the last one)."""
        return bool(self.store.pending) or self.handled > self.handed

    def frames(self, received_ns: int, frames: list[bytes | str]) -> None:
        store, session, flt = self.store, self.session, self.event_filter
        for frame in frames:
            message = session.receive(frame)
            if message is None or isinstance(message, DecodeError):
                continue
            if isinstance(message, Event):
                self.index += 1
                if flt is not None and not flt.matches(message, self.index):
                    continue
            store.buffer(message, received_ns=received_ns)
        if store.pending >= store.batch_size:
            self.commit()

    def messages(self, received_ns: int, items: list[tuple[str, int | None, bool, bytes]]) -> None:
        """Store the fleet's messages: decoded, filtered, skipped when their key is stored already.

        New messages come in stream order, above every key kept: only one at or below the highest, or one
        the server says it delivered before, can be stored already (after a restart of the collector, or of
        the server, which may deliver again what it had delivered without counting it as a redelivery)."""
        store, flt = self.store, self.event_filter
        self.messages_received += len(items)
        for node, key, redelivered, body in items:
            self.handled += 1
            message = decode(body)
            if isinstance(message, DecodeError):
                self.malformed_messages += 1
                continue
            if isinstance(message, Heartbeat):  # the agent's own: its node's last_seen is enough
                continue
            is_event = isinstance(message, Event)
            if isinstance(message, Event) and flt is not None:
                self.index += 1
                if not flt.matches(message, self.index):
                    continue
            if key is not None:
                if self._high < 0:
                    self._high = store.delivered_high()
                if (redelivered or key <= self._high) and store.delivered(key):
                    self.duplicates += 1
                    continue
                self._high = max(self._high, key)
            store.buffer(message, node, key, received_ns)
            counts = self.nodes.get(node)
            if counts is None:
                counts = self.nodes[node] = [0, 0]
            counts[0 if is_event else 1] += 1
        if store.pending >= store.batch_size or (
            self.commit_every is not None and self.handled - self.handed >= self.commit_every
        ):
            self.commit()

    def forget(self, through: int) -> None:
        """Drop the keys up to ``through``."""
        self._settle()
        self._written(lambda: self.store.forget_delivered(through))

    def opened(self, url: str) -> None:
        self.session.connection_opened()
        self._settle()
        self._written(lambda: self.store.connection_opened(url))

    def closed(self, reason: str) -> None:
        self._settle()
        self._written(lambda: self.store.connection_closed(reason))

    def _written(self, write: Callable[[], None]) -> None:
        try:
            write()
        except StoreError as exc:
            self.answers.send(("failed", str(exc)))
        else:
            self.answers.send(("committed", self.counters(self.covered)))

    def commit(self) -> None:
        """Hand what is buffered to the store's writer thread, behind at most one batch still waiting: while
        the committing process writes one batch, the next is ready for it. After a failure, once every
        batch handed over has been answered (they are kept, in order, for the next commit).

        Fleet messages skipped (duplicates, heartbeats) are answered as covered once everything handed
        over before them is committed."""
        while len(self._inflight) >= IN_FLIGHT or (self._inflight and self._failures):
            self._settle_one()
        handled = self.handled
        future = self.store.flush_in_background()
        if future is None and handled == self.handed:
            return  # nothing new
        self.handed = handled
        if future is not None:
            self._inflight.append(future)
        elif self._inflight:
            future = self._inflight[-1]  # its answer comes first: this one follows it
        else:
            self.covered = handled  # nothing in flight, nothing kept from a failed commit: all of it is in
            self.answers.send(("committed", self.counters(handled)))
            return
        future.add_done_callback(functools.partial(self._committed, handled))

    def _committed(self, handled: int, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            self._failures += 1
            self.answers.send(("failed", str(error)))
        else:
            self.covered = handled  # the commits end in the order asked for
            self.answers.send(("committed", self.counters(handled)))

    def _settle_one(self) -> None:
        with contextlib.suppress(StoreError):  # answered by _committed; the rows stay buffered
            self._inflight.popleft().result()

    def _settle(self) -> None:
        while self._inflight:
            self._settle_one()

    def close(self) -> None:
        self._settle()
        error: str | None = None
        try:
            self.store.close()
        except StoreError as exc:
            error = str(exc)
        if error is None:
            self.covered = self.handled
        self.answers.send(("closed", self.counters(self.covered), error))


def serve(rfd: int = 0, wfd: int = 1) -> None:
    """The process: read its settings from ``rfd`` (the first message), open the store, then store what
    comes on ``rfd`` until it ends; answer on ``wfd``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the recording's process ends the input instead
    tune_for_recording()
    answers = _Answers(wfd)
    requests = _Requests(rfd)
    settings = requests.next(SETTINGS_WAIT)
    if settings is None or settings[0] != "open":
        return  # not started by a StoreProcess: nothing to do
    _, db, decode_http, condition, interval, commit_every = settings
    try:
        flt = PacketFilter(condition) if condition is not None else None
        store = CaptureStore(Path(db), decode=decode_http)
    except (StoreError, FilterError) as exc:
        answers.send(("refused", str(exc)))
        return
    store.start_background()  # its committing process: started before the source is read
    answers.send(("ready",))
    recording = _Recording(store, flt, answers, commit_every)
    due = time.monotonic() + interval
    try:
        while not requests.ended:
            now = time.monotonic()
            if now >= due:
                due = now + interval
                recording.commit()
            wait = due - now
            if recording.due:
                wait = min(wait, QUIET_COMMIT)
            message = requests.next(wait)
            if message is None:
                if recording.due:
                    recording.commit()  # nothing came for a moment: the burst is over
                continue
            kind = message[0]
            if kind == "frames":
                recording.frames(message[1], message[2])
            elif kind == "messages":
                recording.messages(message[1], message[2])
            elif kind == "forget":
                recording.forget(message[1])
            elif kind == "opened":
                recording.opened(message[1])
            elif kind == "closed":
                recording.closed(message[1])
    finally:
        recording.close()


class StoreProcess:
    """A capture database recorded by a process of its own (see the module): the recording's side.

    Call :meth:`start` (it returns once the database is open) and :meth:`close` on one event loop.
    ``event_filter`` is a condition on packets (as ``record --filter``), checked before anything runs;
    ``on_commit`` runs on the event loop after each commit. ``commit_every``: commit at least every so
    many fleet messages (:meth:`send_messages`).

    :attr:`stats` holds the store's counters as of the last commit (final after :meth:`close`);
    :attr:`frames` and :attr:`malformed` count the frames (or fleet messages) received and the malformed ones
    skipped; :attr:`handled` the fleet messages sent that are committed (or were skipped), in the order
    sent; :attr:`duplicates` those skipped because their key was stored already; :attr:`nodes` each node's
    events and run-log lines stored (``{node: [events, logs]}``).
    """

    def __init__(
        self,
        path: Path,
        *,
        decode: bool = True,
        event_filter: str | None = None,
        flush_interval: float = 1.0,
        commit_every: int | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.stats = StoreStats()
        self.frames = 0
        self.malformed = 0
        self.handled = 0
        self.duplicates = 0
        self.nodes: dict[str, list[int]] = {}
        self._settings = ("open", str(path), decode, event_filter, flush_interval, commit_every)
        self._on_commit = on_commit
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[None] | None = None
        self._final_error: str | None = None
        self._answered_close = False
        self._failure_raised = False
        self._closed = False

    async def start(self) -> None:
        """Start the process and wait until it has opened the database.

        Raises:
            StoreError: it could not (its text says why: not a capture database, unwritable...).
        """
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _START,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise StoreError(f"{self.path}: the store's process did not start ({exc})") from None
        assert self._proc.stdin is not None
        self._proc.stdin.transport.set_write_buffer_limits(high=SEND_BUFFER)
        self._send(self._settings)
        answer = await self._receive()
        if answer is None or answer[0] != "ready":
            await self._proc.wait()
            text = answer[1] if answer is not None else self._ended()
            raise StoreError(text)
        self._failure = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_answers())

    def _ended(self) -> str:
        code = None if self._proc is None else self._proc.returncode
        return f"{self.path}: the store's process ended (exit code {code})"

    async def _receive(self) -> tuple[Any, ...] | None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            head = await self._proc.stdout.readexactly(_LENGTH.size)
            body = await self._proc.stdout.readexactly(_LENGTH.unpack(head)[0])
        except (asyncio.IncompleteReadError, OSError):
            return None
        message: tuple[Any, ...] = marshal.loads(body)
        return message

    def _count(self, counters: Counters) -> None:
        *stats, self.frames, self.malformed, self.handled, self.duplicates, self.nodes = counters
        self.stats = StoreStats(*stats)

    async def _read_answers(self) -> None:
        while True:
            answer = await self._receive()
            if answer is None:
                assert self._proc is not None
                await self._proc.wait()
                self._fail(self._ended())
                return
            kind = answer[0]
            if kind == "committed":
                self._count(answer[1])
                if self._on_commit is not None:
                    self._on_commit()
            elif kind == "failed":
                self._fail(answer[1])
            elif kind == "closed":
                self._count(answer[1])
                self._final_error = answer[2]
                self._answered_close = True
                return

    def _fail(self, text: str) -> None:
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(StoreError(text))

    async def failed(self) -> None:
        """Wait until a commit fails or the process ends unasked, and raise that
        :class:`~ecaptureq.store.StoreError` (the rows not committed stay in the process, for its next
        commit and the last one at :meth:`close`)."""
        assert self._failure is not None, "start() first"
        try:
            await asyncio.shield(self._failure)
        except StoreError:
            self._failure_raised = True
            raise

    def _send(self, message: tuple[Any, ...]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        if self._closed or self._proc.stdin.is_closing():
            return  # the process ended: failed() says so
        body = marshal.dumps(message)
        self._proc.stdin.write(_LENGTH.pack(len(body)) + body)

    def send_frames(self, frames: list[bytes | str]) -> None:
        """Send one read's frames, stamped with the time now (the rows' ``received_ns``)."""
        self._send(("frames", time.time_ns(), frames))

    def send_messages(self, messages: list[tuple[str, int | None, bool, bytes]]) -> None:
        """Send fleet messages: ``(node, key, redelivered, body)``, each ``body`` a ``LogEntry`` and
        ``key`` its stream sequence (``None``: no de-duplication), stamped with the time now."""
        self._send(("messages", time.time_ns(), messages))

    def forget(self, through: int) -> None:
        """Drop the stored keys up to ``through`` (the stream will not deliver them again)."""
        self._send(("forget", through))

    def connection_opened(self, url: str) -> None:
        """Record that a connection to ``url`` opened (after the frames sent before)."""
        self._send(("opened", url))

    def connection_closed(self, reason: str) -> None:
        """Record that the current connection ended, and why."""
        self._send(("closed", reason))

    async def drain(self) -> None:
        """Wait while more than :data:`SEND_BUFFER` bytes wait to be read by the process."""
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(ConnectionError):  # the process ended: failed() says so
            await self._proc.stdin.drain()

    async def close(self) -> None:
        """End the input; wait until the process has committed everything and closed the database.

        Raises:
            StoreError: the last commit failed, or the process ended before (what it committed stays).
        """
        if self._closed or self._proc is None:
            return
        self._closed = True
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.close()
        with contextlib.suppress(ConnectionError):
            await stdin.wait_closed()
        if self._reader is not None:
            await self._reader
        await self._proc.wait()
        if self._failure is not None and self._failure.done():
            self._failure.exception()  # retrieved: a failure after run() ended is not logged at exit
        if self._final_error is not None:
            raise StoreError(self._final_error)
        if not self._answered_close and not self._failure_raised:
            raise StoreError(self._ended())


def main() -> None:
    """The process (stdin and stdout are the recording's pipes; its settings come first on stdin)."""
    answers = os.dup(1)
    os.dup2(2, 1)  # what anything prints goes to stderr, not into the answers
    serve(0, answers)

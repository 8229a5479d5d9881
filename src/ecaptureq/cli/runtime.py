"""One lifecycle for every long-running command: SIGINT and SIGTERM ask it to stop, its tasks run until
then (or until one of them ends), and whatever is still running is cancelled and awaited before the
command closes what it opened and returns its exit code.

``record``, ``serve``, ``tls``, ``ui``, ``agent``, ``collect`` and ``record nats://`` all stop this way:
a signal is a request to stop cleanly (exit 0 after draining and closing), never a ``KeyboardInterrupt``
in the middle of a write. Only a Ctrl-C that arrives before a command installed its handlers ends it with
:attr:`~ecaptureq.cli.errors.ExitCode.INTERRUPTED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Final, TypeVar

import uvloop

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""The signals that ask a command to stop cleanly."""

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to its end, as :func:`asyncio.run` does, on uvloop's event loop (libuv):
    the socket and pipe handling that the receiving, publishing and collecting processes spend much of their
    time in costs less there. Measured: ``record`` and ``ui`` about 6% less CPU per event on
    ``bench --consumers``' HTTP/1.1 workload, a fleet's collector and agents 3-4%; ``watch --json
    --no-decode``, which only copies frames to its output, about 4% more."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """For a command whose work runs in threads, with no event loop (``tls --json``): while inside,
    :data:`STOP_SIGNALS` call ``stop`` instead of ending the process; on exit the previous handlers come
    back."""
    previous = {sig: signal.signal(sig, lambda *_: stop()) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def watching(first: Awaitable[object]) -> None:
    """Await ``first`` and then nothing more: as one of :meth:`Lifecycle.wait`'s tasks, its failure ends the
    wait while its success does not (``record``'s first connection: refused is fatal, made is not the end).
    """
    await first
    await asyncio.Event().wait()


class Lifecycle:
    """The signal handlers and tasks of one command run (an ``async with`` block).

    From :meth:`open` on, :data:`STOP_SIGNALS` set :attr:`stop`; :meth:`start` runs a coroutine as a task
    of the block; :meth:`wait` waits for a stop or the end of a task; :meth:`close` (leaving the block,
    normally or by an exception) cancels the tasks still running and awaits them. The handlers stay until
    the event loop closes: a second Ctrl-C while the command drains and closes what it opened is ignored,
    so it cannot cut a graceful stop short.
    """

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        """Set by SIGINT or SIGTERM (or by anyone who wants the command to stop)."""
        self._tasks: list[asyncio.Task[Any]] = []

    def open(self) -> Lifecycle:
        """Install the signal handlers (what entering the ``async with`` block does)."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or Windows
                loop.add_signal_handler(sig, self.stop.set)
        return self

    async def close(self) -> None:
        """Cancel and await the tasks still running (what leaving the ``async with`` block does)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Lifecycle:
        return self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task of this block (cancelled when the block ends, if still running)."""
        task = asyncio.create_task(work)
        self._tasks.append(task)
        return task

    async def wait(self, *tasks: asyncio.Task[Any]) -> set[asyncio.Task[Any]]:
        """Wait until :attr:`stop` is set or one of ``tasks`` (default: every task started) ends.

        Returns the tasks that ended (empty when stopped while all were running); the first of them, in the
        order given, that failed has its exception raised here.
        """
        watched = list(tasks) if tasks else list(self._tasks)
        stopping = asyncio.create_task(self.stop.wait())
        try:
            done, _ = await asyncio.wait({*watched, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
        ended = {task for task in watched if task in done}
        for task in watched:
            if task in ended and not task.cancelled():
                task.result()
        return ended


async def run_until_signal(*work: Coroutine[Any, Any, object]) -> bool:
    """Run ``work`` concurrently until SIGINT or SIGTERM, or until one of them ends (its exception is raised
    here); cancel and await the others. Returns whether a signal stopped it.

    The caller closes what it opened (a store, a server) after this returns or raises, and returns its exit
    code: :attr:`~ecaptureq.cli.errors.ExitCode.OK` for a stop by signal.
    """
    async with Lifecycle() as life:
        for item in work:
            life.start(item)
        return not await life.wait()

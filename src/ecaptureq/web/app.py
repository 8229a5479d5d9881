"""The web UI's ASGI application (Starlette): the page, its static files and the JSON API.

Endpoints (all reads go through read-only connections, one per request, in a worker thread):

* ``GET /``: the page; ``/static/...``: its script and style (committed, no build step).
* ``GET /api/exchanges?filter=COND&after_id=N&limit=N``: exchange rows with ``id > after_id`` matching a
  condition on ``exchanges``, as ``{"columns": [...], "rows": [[...]]}``.
* ``GET /api/stream?filter=COND&after_id=N``: Server-Sent Events: ``rows`` (new exchanges) and ``update``
  (exchanges that were waiting for their response) as soon as the live source commits a batch (or every
  ``poll`` seconds, for a source that does not announce its commits), ``status`` (the counters) every second.
* ``GET /api/exchange/{id}``: the detail pane: headers, decoded bodies (JSON pretty-printed, hex for
  binary), ``curl``.
* ``GET /api/packets?sql=TEXT&limit=N``: the GUI's two SQL modes on ``packets``; ``GET /api/packet/{index}``.
* ``GET /api/har?filter=COND``: a HAR 1.2 download of the exchanges matching the condition.
* ``GET /api/status``: mode, source, database, connection and counters.

Invalid SQL is answered with 400 and ``{"error": "invalid SQL: <SQLite's message> (in: ...)"}`` (a value
beyond the limit on one value: ``"a value would be larger than ..."``); an
exchange whose stored detail cannot be read (damaged, or written by a newer ecaptureq) with 422 and what
is wrong with it (a HAR download leaves it out and says so in the log's ``comment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ecaptureq import __version__
from ecaptureq.decode.model import FlowFormatError
from ecaptureq.store import QUERY_SECONDS, Deadline, SqlError
from ecaptureq.store.export import har_chunks, har_entries
from ecaptureq.web import queries

T = TypeVar("T")

QUERY_SLOTS = 4
"""The most queries of the user's SQL (filters, the packets view, HAR) running at once; more wait up to
:data:`~ecaptureq.store.QUERY_SECONDS` for a slot, then get 503. ``/api/status`` never waits for one."""

HAR_SECONDS = 300.0
"""Time limit of one HAR download (it reads every exchange that matches)."""

MAX_LIMIT = 20_000
"""The most rows one ``/api/exchanges`` or ``/api/packets`` answer carries."""

STREAM_BATCH = 5_000
"""The most new rows one ``rows`` event carries (the next tick sends the rest)."""

PENDING_TRACKED = 2_000
"""How many incomplete exchanges one stream keeps re-reading for their responses."""


STATUS_SECONDS = 1.0
"""How often a stream sends the counters (``status``)."""


class CommitSignal:
    """Announces each batch the live source commits, so streams read the new rows at once.

    :attr:`generation` counts the commits announced; :meth:`wait` returns as soon as it differs from the
    one the caller saw before reading (a commit during the read is not missed), or after ``timeout``.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        """A batch was committed (call it on the event loop's thread)."""
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait for a commit after generation ``seen``, at most ``timeout`` seconds; whether one came."""
        if self.generation != seen:
            return True
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.generation != seen


class LiveSource(Protocol):
    """What the UI shows of a live source: a ``LiveRecorder``, or a fleet ``Collector``."""

    @property
    def url(self) -> str:
        """The source, as shown to a person."""

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON."""


@dataclass
class UiState:
    """What the app serves: the database, and the live recorder when there is a source."""

    db: Path
    recorder: LiveSource | None = None
    poll: float = 0.5
    """Seconds between two reads of the database by a stream when no commit is announced: the fallback for
    a source that does not announce its commits (or another process writing the database)."""
    commits: CommitSignal = field(default_factory=CommitSignal)
    """Announced by the live source after each commit: streams read the new rows then, not at the poll."""
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    active: set[sqlite3.Connection] = field(default_factory=set)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(QUERY_SLOTS))

    def stop(self) -> None:
        """End the streams (at shutdown); then :meth:`interrupt_all`."""
        self.stopping.set()
        self.commits.notify()

    def interrupt_all(self) -> None:
        """Interrupt every query still running (at shutdown)."""
        for conn in list(self.active):
            conn.interrupt()


class Busy(Exception):
    """Every query slot stayed taken for :data:`~ecaptureq.store.QUERY_SECONDS`."""


def _static_dir() -> Path:
    return Path(str(resources.files("ecaptureq.web") / "static"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _whole(text: str) -> int:
    """``text`` as an integer when it is ASCII digits with an optional ``-`` (``int()`` also takes spaces,
    ``_`` and other scripts' digits: ``\u0663`` would be exchange 3).

    Raises:
        ValueError: it is not.
    """
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(text)
    return int(text)


def _int(request: Request, name: str, default: int, low: int = 0, high: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = _whole(text)
    except ValueError:
        raise SqlError(f"{name} must be a whole number, not {text[:40]!r}") from None
    if abs(value) > queries.SQLITE_MAX_INT:
        raise SqlError(f"{name} is out of range (at most {queries.SQLITE_MAX_INT})")
    value = max(low, value)
    return min(value, high) if high is not None else value


def _ids(request: Request, name: str, most: int) -> list[int]:
    """A comma-separated list of row ids (the first ``most`` of them)."""
    text = request.query_params.get(name) or ""
    parts = [part for part in text.split(",", most)[:most] if part.strip()]
    try:
        ids = [_whole(part.strip()) for part in parts]
    except ValueError:
        raise SqlError(f"{name} must be row ids separated by commas, not {text[:40]!r}") from None
    return [i for i in ids if 0 <= i <= queries.SQLITE_MAX_INT]


def create_app(state: UiState) -> Starlette:
    """Build the Starlette application serving ``state`` (wrap it in :class:`~ecaptureq.web.guard.Guard`)."""

    def read(fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = queries.connect(state.db)
        state.active.add(conn)
        try:
            with Deadline(conn, QUERY_SECONDS):
                return fn(conn)
        finally:
            state.active.discard(conn)
            conn.close()

    async def direct(fn: Callable[[sqlite3.Connection], T]) -> T:
        """A fixed query (by id, the totals): bounded by itself, it never waits for a slot."""
        return await run_in_threadpool(read, fn)

    async def in_thread(fn: Callable[[sqlite3.Connection], T]) -> T:
        """A query of the user's SQL: at most QUERY_SLOTS run at once."""
        try:
            await asyncio.wait_for(state.slots.acquire(), QUERY_SECONDS)
        except TimeoutError:
            raise Busy from None
        try:
            return await run_in_threadpool(read, fn)
        finally:
            state.slots.release()

    def busy() -> JSONResponse:
        return _error(503, f"{QUERY_SLOTS} queries are already running; try again when one has finished")

    def row_id(request: Request, name: str) -> int | None:
        try:
            value = _whole(request.path_params[name])
        except ValueError:
            return None
        return value if 0 <= value <= queries.SQLITE_MAX_INT else -1

    async def page(request: Request) -> Response:
        html = (_static_dir() / "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    async def exchanges(request: Request) -> Response:
        """Rows in id order: after ``after_id`` (the default), before ``before_id``, or from position
        ``offset``; with ``count=1``, also ``total`` and ``last_id`` of the rows matching ``filter``."""
        params = request.query_params
        try:
            cond = params.get("filter")
            limit = _int(request, "limit", 5000, 1, MAX_LIMIT)
            fetch: Callable[[sqlite3.Connection], list[list[Any]]]
            if "offset" in params:
                offset = _int(request, "offset", 0, 0, queries.SQLITE_MAX_INT)
                fetch = functools.partial(queries.exchange_window, condition=cond, offset=offset, limit=limit)
            elif "before_id" in params:
                before = _int(request, "before_id", 0, 0, queries.SQLITE_MAX_INT)
                fetch = functools.partial(
                    queries.exchange_rows_before, condition=cond, before_id=before, limit=limit
                )
            else:
                after = _int(request, "after_id", 0)
                fetch = functools.partial(queries.exchange_rows, condition=cond, after_id=after, limit=limit)
            counted = params.get("count") == "1"

            def read_rows(c: sqlite3.Connection) -> dict[str, Any]:
                # the count first: rows committed meanwhile come after its last_id, not before
                count = queries.exchange_count(c, cond) if counted else None
                body = queries.rows_json(queries.EXCHANGE_COLUMNS, fetch(c))
                if count is not None:
                    body["total"], body["last_id"] = count
                return body

            body = await in_thread(read_rows)
        except SqlError as exc:
            return _error(400, str(exc))
        except Busy:
            return busy()
        return _json(body)

    async def exchange(request: Request) -> Response:
        ex_id = row_id(request, "id")
        if ex_id is None:
            return _error(400, "the exchange id must be a number")
        try:
            detail = await direct(lambda c: queries.exchange_detail(c, ex_id)) if ex_id >= 0 else None
        except SqlError as exc:
            return _error(400, str(exc))
        except FlowFormatError as exc:
            return _error(422, f"exchange {ex_id} cannot be shown, its stored detail is unreadable: {exc}")
        if detail is None:
            return _error(404, f"no exchange {request.path_params['id'][:40]}")
        return _json(detail)

    async def packets(request: Request) -> Response:
        text = request.query_params.get("sql") or "1"
        try:
            limit = _int(request, "limit", 5000, 1, MAX_LIMIT)
            body = await in_thread(lambda c: queries.packet_rows(c, text, limit))
        except SqlError as exc:
            return _error(400, str(exc))
        except Busy:
            return busy()
        return _json(body)

    async def packet(request: Request) -> Response:
        index = row_id(request, "index")
        if index is None:
            return _error(400, "the packet index must be a number")
        try:
            info = await direct(lambda c: queries.packet_detail(c, index)) if index >= 0 else None
        except SqlError as exc:
            return _error(400, str(exc))
        if info is None:
            return _error(404, f"no packet {request.path_params['index'][:40]}")
        return _json(info)

    async def har(request: Request) -> Response:
        cond = request.query_params.get("filter") or None
        try:
            await in_thread(lambda c: queries.check_condition(c, cond))
        except SqlError as exc:
            return _error(400, str(exc))
        except Busy:
            return busy()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            _har_stream(cond),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="ecaptureq-{stamp}.har"',
                "Cache-Control": "no-store",
            },
        )

    def _har_stream(cond: str | None) -> Iterator[str]:
        # Read and sent entry by entry (Starlette runs this iterator in worker threads, hence any_thread).
        conn = queries.connect(state.db, any_thread=True)
        state.active.add(conn)
        try:
            with Deadline(conn, HAR_SECONDS):
                try:
                    yield from har_chunks(har_entries(conn, cond))
                except SqlError as exc:  # the answer has begun: end it as broken JSON, not a 500
                    yield f"\n/* export stopped: {exc} */"
        finally:
            state.active.discard(conn)
            conn.close()

    async def status_body() -> dict[str, Any]:
        counts = await direct(queries.totals)
        body: dict[str, Any] = {
            "version": __version__,
            "mode": "live" if state.recorder is not None else "database",
            "db": str(state.db),
            "totals": counts,
        }
        if state.recorder is not None:
            body["source"] = state.recorder.url
            body["live"] = state.recorder.snapshot()
        return body

    async def status(request: Request) -> Response:
        try:
            body = await status_body()
        except SqlError as exc:  # the database went away or is damaged, as every other read answers it
            return _error(400, str(exc))
        return _json(body)

    async def stream(request: Request) -> Response:
        """Server-sent events: ``rows`` committed after ``after_id``, ``update`` of the incomplete ones sent
        and of those listed in ``waiting`` (ids the reader fetched itself, comma-separated), ``status``."""
        cond = request.query_params.get("filter")
        try:
            after = _int(request, "after_id", 0)
            waiting = _ids(request, "waiting", PENDING_TRACKED)
            await in_thread(lambda c: queries.check_condition(c, cond))
        except SqlError as exc:
            return _error(400, str(exc))
        except Busy:
            return busy()
        return StreamingResponse(
            _events(cond, after, waiting),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(cond: str | None, after: int, waiting: list[int]) -> AsyncIterator[str]:
        last: Any = after  # an integer, or another program's text id (see queries.page_after)
        # incomplete exchanges the reader has, oldest first, with the row it has: those it fetched itself
        # (waiting: their row is not known here), then those this stream sent
        pending: dict[int, list[Any] | None] = dict.fromkeys(sorted(waiting))
        loop = asyncio.get_running_loop()
        read_at = status_at = -math.inf
        announced = True  # read at once
        while not state.stopping.is_set():
            seen = state.commits.generation
            new: list[list[Any]] = []
            if announced or loop.time() - read_at >= state.poll:

                def tick(
                    c: sqlite3.Connection, since: Any = last, waiting: tuple[int, ...] = tuple(pending)
                ) -> tuple[list[list[Any]], list[list[Any]]]:
                    new = queries.exchange_rows(c, cond, since, STREAM_BATCH)
                    return new, queries.exchange_rows_by_id(c, waiting, cond)

                read_at = loop.time()
                try:
                    new, updated = await in_thread(tick)
                except SqlError as exc:
                    yield f"event: failure\ndata: {json.dumps({'error': str(exc)})}\n\n"
                    return
                except Busy:
                    new, updated = [], []  # the next tick tries again
                complete_col = queries.EXCHANGE_COLUMNS.index("complete")
                changed = [row for row in updated if row[0] in pending and pending[row[0]] != row]
                for row in changed:
                    if row[complete_col]:
                        del pending[row[0]]
                    else:
                        pending[row[0]] = row
                if changed:  # rows the reader has in another state (not those unchanged since sent)
                    yield f"event: update\ndata: {json.dumps({'rows': changed})}\n\n"
                if new:
                    last = queries.page_after(new[-1][0])
                    for row in new:
                        if not row[complete_col]:
                            pending[row[0]] = row
                    while len(pending) > PENDING_TRACKED:
                        pending.pop(next(iter(pending)))
                    yield f"event: rows\ndata: {json.dumps({'rows': new})}\n\n"
            if loop.time() - status_at >= STATUS_SECONDS:
                status_at = loop.time()
                try:
                    body = await status_body()
                except SqlError as exc:
                    yield f"event: failure\ndata: {json.dumps({'error': str(exc)})}\n\n"
                    return
                yield f"event: status\ndata: {json.dumps(body)}\n\n"
            if len(new) == STREAM_BATCH:
                announced = True  # more rows wait: read on at once
                continue
            # Until the next commit is announced, the next poll, or the next status, whichever is first.
            now = loop.time()
            timeout = max(0.0, min(read_at + state.poll, status_at + STATUS_SECONDS) - now)
            announced = await state.commits.wait(seen, timeout)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", page),
        Route("/favicon.ico", no_icon),
        Route("/api/exchanges", exchanges),
        Route("/api/exchange/{id}", exchange),
        Route("/api/packets", packets),
        Route("/api/packet/{index}", packet),
        Route("/api/har", har),
        Route("/api/status", status),
        Route("/api/stream", stream),
        Mount("/static", StaticFiles(directory=_static_dir()), name="static"),
    ]
    return Starlette(routes=routes)

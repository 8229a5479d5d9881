"""The web UI's ASGI application (Starlette): the page, its static files and the JSON API.

Endpoints (all reads go through read-only connections, one per request, in a worker thread):

* ``GET /``: the page; ``/static/...``: its script and style (committed, no build step).
* ``GET /api/exchanges?filter=COND&after_id=N&limit=N``: exchange rows with ``id > after_id`` matching a
  condition on ``exchanges``, as ``{"columns": [...], "rows": [[...]]}``.
* ``GET /api/stream?filter=COND&after_id=N``: Server-Sent Events: ``rows`` (new exchanges), ``update``
  (exchanges that were waiting for their response), ``status`` (the counters), every ``poll`` seconds.
* ``GET /api/exchange/{id}``: the detail pane: headers, decoded bodies (JSON pretty-printed, hex for
  binary), ``curl``.
* ``GET /api/packets?sql=TEXT&limit=N``: the GUI's two SQL modes on ``packets``; ``GET /api/packet/{index}``.
* ``GET /api/har?filter=COND``: a HAR 1.2 download of the exchanges matching the condition.
* ``GET /api/status``: mode, source, database, connection and counters.

Invalid SQL is answered with 400 and ``{"error": "invalid SQL: <SQLite's message> (in: ...)"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
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
from ecaptureq.store import SqlError
from ecaptureq.store.export import har_document
from ecaptureq.web import queries

T = TypeVar("T")

MAX_LIMIT = 20_000
"""The most rows one ``/api/exchanges`` or ``/api/packets`` answer carries."""

STREAM_BATCH = 5_000
"""The most new rows one ``rows`` event carries (the next tick sends the rest)."""

PENDING_TRACKED = 2_000
"""How many incomplete exchanges one stream keeps re-reading for their responses."""


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
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def _static_dir() -> Path:
    return Path(str(resources.files("ecaptureq.web") / "static"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _int(request: Request, name: str, default: int, low: int = 0, high: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SqlError(f"{name} must be a whole number, not {text!r}") from None
    value = max(low, value)
    return min(value, high) if high is not None else value


def create_app(state: UiState) -> Starlette:
    """Build the Starlette application serving ``state`` (wrap it in :class:`~ecaptureq.web.guard.Guard`)."""

    def read(fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = queries.connect(state.db)
        try:
            return fn(conn)
        finally:
            conn.close()

    async def in_thread(fn: Callable[[sqlite3.Connection], T]) -> T:
        return await run_in_threadpool(read, fn)

    async def page(request: Request) -> Response:
        html = (_static_dir() / "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    async def exchanges(request: Request) -> Response:
        try:
            cond = request.query_params.get("filter")
            after = _int(request, "after_id", 0)
            limit = _int(request, "limit", 5000, 1, MAX_LIMIT)
            rows = await in_thread(lambda c: queries.exchange_rows(c, cond, after, limit))
        except SqlError as exc:
            return _error(400, str(exc))
        return _json(queries.rows_json(queries.EXCHANGE_COLUMNS, rows))

    async def exchange(request: Request) -> Response:
        try:
            ex_id = int(request.path_params["id"])
        except ValueError:
            return _error(400, "the exchange id must be a number")
        try:
            detail = await in_thread(lambda c: queries.exchange_detail(c, ex_id))
        except SqlError as exc:
            return _error(400, str(exc))
        if detail is None:
            return _error(404, f"no exchange {ex_id}")
        return _json(detail)

    async def packets(request: Request) -> Response:
        text = request.query_params.get("sql") or "1"
        try:
            limit = _int(request, "limit", 5000, 1, MAX_LIMIT)
            body = await in_thread(lambda c: queries.packet_rows(c, text, limit))
        except SqlError as exc:
            return _error(400, str(exc))
        return _json(body)

    async def packet(request: Request) -> Response:
        try:
            index = int(request.path_params["index"])
        except ValueError:
            return _error(400, "the packet index must be a number")
        info = await in_thread(lambda c: queries.packet_detail(c, index))
        if info is None:
            return _error(404, f"no packet {index}")
        return _json(info)

    async def har(request: Request) -> Response:
        cond = request.query_params.get("filter") or None
        try:
            doc = await in_thread(lambda c: har_document(c, cond))
        except SqlError as exc:
            return _error(400, str(exc))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        return Response(
            json.dumps(doc, ensure_ascii=False),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="ecaptureq-{stamp}.har"',
                "Cache-Control": "no-store",
            },
        )

    async def status_body() -> dict[str, Any]:
        counts = await in_thread(queries.totals)
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
        return _json(await status_body())

    async def stream(request: Request) -> Response:
        cond = request.query_params.get("filter")
        try:
            after = _int(request, "after_id", 0)
            await in_thread(lambda c: queries.check_condition(c, cond))
        except SqlError as exc:
            return _error(400, str(exc))
        return StreamingResponse(
            _events(cond, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(cond: str | None, after: int) -> AsyncIterator[str]:
        last = after
        pending: dict[int, None] = {}  # incomplete exchange ids sent, oldest first
        ticks = 0
        while not state.stopping.is_set():

            def tick(
                c: sqlite3.Connection, since: int = last, waiting: tuple[int, ...] = tuple(pending)
            ) -> tuple[list[list[Any]], list[list[Any]]]:
                new = queries.exchange_rows(c, cond, since, STREAM_BATCH)
                return new, queries.exchange_rows_by_id(c, waiting, cond)

            try:
                new, updated = await in_thread(tick)
            except SqlError as exc:
                yield f"event: failure\ndata: {json.dumps({'error': str(exc)})}\n\n"
                return
            complete_col = queries.EXCHANGE_COLUMNS.index("complete")
            for row in updated:
                if row[complete_col]:
                    pending.pop(row[0], None)
            if updated:
                yield f"event: update\ndata: {json.dumps({'rows': updated})}\n\n"
            if new:
                last = new[-1][0]
                for row in new:
                    if not row[complete_col]:
                        pending[row[0]] = None
                while len(pending) > PENDING_TRACKED:
                    pending.pop(next(iter(pending)))
                yield f"event: rows\ndata: {json.dumps({'rows': new})}\n\n"
            if ticks % 2 == 0:
                yield f"event: status\ndata: {json.dumps(await status_body())}\n\n"
            ticks += 1
            if len(new) < STREAM_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.stopping.wait(), state.poll)

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

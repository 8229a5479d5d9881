"""Export a capture database: HAR 1.2 built from the decoded exchanges, JSON Lines that replay, or pcapng.

HAR follows the 1.2 specification (http://www.softwareishard.com/blog/har-12-spec/) as Chrome DevTools
imports it: absolute URLs, headers as name/value objects, binary bodies base64 with ``encoding``.
Extra fields start with ``_`` as the specification allows (``_pid``, ``_pname``, ``_ecaptureq``).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Generic, TextIO, TypeVar

from ecaptureq import __version__
from ecaptureq.decode.bodies import form_fields, parse_form
from ecaptureq.decode.model import Exchange, FlowFormatError, HttpMessage, split_url
from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.jsonl import EVENT_RANGES, to_json
from ecaptureq.store.schema import PACKET_COLUMNS, read_failure, table_names
from ecaptureq.store.sql import VALUE_BYTES, FilterError, quote_index

if TYPE_CHECKING:
    from ecaptureq.sinks.pcapng import PcapngStats


def _where(condition: str | None) -> str:
    if not condition or not condition.strip():
        return ""
    return f" WHERE ({quote_index(condition.strip().rstrip(';'))})"


def _iso(ns: int | None) -> str:
    # HAR needs a date; a boot-relative clock has none, so its offset is shown as one from the epoch.
    stamp = dt.datetime.fromtimestamp((ns or 0) / 1e9, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _http_version(protocol: str) -> str:
    return {"h2": "h2", "http/1.0": "HTTP/1.0"}.get(protocol, "HTTP/1.1")


def _name_values(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


def _cookies(msg: HttpMessage | None, name: str) -> list[dict[str, str]]:
    cookies = []
    for key, value in msg.headers if msg is not None else []:
        if key.lower() != name:
            continue
        for part in value.split(";") if name == "cookie" else [value.split(";", 1)[0]]:
            if "=" in part:
                k, v = part.strip().split("=", 1)
                cookies.append({"name": k, "value": v})
    return cookies


def _body_text(msg: HttpMessage) -> str:
    # HAR carries text as text and anything else as base64 (with "encoding": "base64").
    if msg.body_text is not None:
        return msg.body_text
    return b64(msg.body) if msg.body else ""


def _content(msg: HttpMessage | None) -> dict[str, Any]:
    if msg is None:
        return {"size": 0, "mimeType": "x-unknown", "text": ""}
    content: dict[str, Any] = {"size": msg.body_size, "mimeType": msg.content_type or "x-unknown"}
    content["text"] = _body_text(msg)
    if msg.body_text is None and msg.body:
        content["encoding"] = "base64"
    return content


def _query(url: str) -> list[dict[str, str]]:
    parts = split_url(url)
    if parts is None:
        return []
    return _name_values(parse_form(parts.query)[0])


UNKNOWN_NOTE: Final = (
    "not captured: the capture began after the connection did (HTTP/2 header table entries sent "
    "before it are unknown), or the message was not seen"
)
"""The HAR comment beside an unknown method, URL or status (exported as ``""`` or ``0``, never guessed)."""


def unknown_fields(ex: Exchange) -> list[str]:
    """Which of ``method``, ``url`` and ``status`` an exchange does not know."""
    req, resp = ex.request, ex.response
    missing = []
    if req is None or not req.method:
        missing.append("method")
    if req is None or not req.target:
        missing.append("url")
    if resp is not None and resp.status is None:
        missing.append("status")
    return missing


def _request(ex: Exchange, version: str) -> dict[str, Any]:
    req = ex.request
    url = ex.url
    request: dict[str, Any] = {
        "method": req.method if req is not None else "",
        "url": url,
        "httpVersion": version,
        "cookies": _cookies(req, "cookie"),
        "headers": _name_values(req.headers if req is not None else []),
        "queryString": _query(url),
        "headersSize": -1,
        "bodySize": req.body_size if req is not None else 0,
    }
    if req is not None and req.body_size:
        post: dict[str, Any] = {"mimeType": req.content_type or "application/octet-stream"}
        post["text"] = _body_text(req)
        if req.form:
            post["params"] = _name_values(req.form)
        request["postData"] = post
    return request


def _response(resp: HttpMessage | None, version: str) -> dict[str, Any]:
    return {
        "status": (resp.status if resp is not None else None) or 0,
        "statusText": resp.reason if resp is not None else "",
        "httpVersion": version,
        "cookies": _cookies(resp, "set-cookie"),
        "headers": _name_values(resp.headers if resp is not None else []),
        "content": _content(resp),
        "redirectURL": resp.header("location") if resp is not None else "",
        "headersSize": -1,
        "bodySize": resp.body_size if resp is not None else -1,
    }


def har_entry(ex: Exchange) -> dict[str, Any]:
    """One HAR entry of an exchange."""
    unknown = unknown_fields(ex)
    latency_ms = round((ex.latency or 0) * 1000, 3)
    version = _http_version(ex.protocol)
    request = _request(ex, version)
    response = _response(ex.response, version)
    lost = [f for f in unknown if f != "status"]
    if lost:
        request["comment"] = f"{' and '.join(lost)} unknown, exported as empty: {UNKNOWN_NOTE}"
    if "status" in unknown:
        response["comment"] = f"status unknown, exported as 0: {UNKNOWN_NOTE}"
    return {
        "startedDateTime": _iso(ex.started_ns),
        "time": latency_ms,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": latency_ms,
            "receive": 0,
        },
        "serverIPAddress": ex.dst_ip,
        "connection": ex.connection,
        "_pid": ex.pid,
        "_pname": ex.pname,
        "_ecaptureq": {"exchange_id": ex.id, "complete": ex.complete, "unknown": unknown},
    }


_EXCHANGE_COLUMNS: Final = (
    "id",
    "connection",
    "protocol",
    "stream_id",
    "pid",
    "pname",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "started_ns",
    "ended_ns",
    "latency",
)
"""The exchange's fields that have columns of the same name, and no place in its stored ``detail``."""

_MESSAGE_COLUMNS: Final = (
    ("request", "method", "method"),
    ("request", "url", "url"),
    ("request", "path", "path"),
    ("request", "content_type", "request_content_type"),
    ("request", "body_size", "request_size"),
    ("response", "status", "status"),
    ("response", "content_type", "response_content_type"),
    ("response", "body_size", "response_size"),
)
"""(message, field, column) for the messages' fields that have columns."""

STORED_SELECT: Final = (
    "SELECT detail, request_headers, response_headers, request_body, response_body, request_body_text,"
    f" response_body_text, {', '.join(_EXCHANGE_COLUMNS)}, {', '.join(c for _, _, c in _MESSAGE_COLUMNS)}"
    " FROM exchanges"
)
"""The columns :func:`load_exchange` takes, in order."""


def _json_value(text: Any) -> Any:
    if not isinstance(text, str | bytes):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _with_columns(msg: HttpMessage, headers: Any, body: Any, text: Any) -> None:
    # A stored message's headers and bodies are in their own columns (capped), not in detail; its form
    # fields are derived from its text again. The body as carried is not stored (the packets have it).
    pairs = _json_value(headers)
    msg.headers = [
        (p[0], p[1])
        for p in (pairs if isinstance(pairs, list) else [])
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str)
    ]
    msg.body_text = text if isinstance(text, str) else None
    msg.body = body if isinstance(body, bytes) else b""
    msg.raw_body = b""
    msg.form = form_fields(msg.content_type, msg.body_text)


_STORED_WIDTH: Final = 7 + len(_EXCHANGE_COLUMNS) + len(_MESSAGE_COLUMNS)


def _with_fields(detail: dict[str, Any], cells: Sequence[Any]) -> None:
    # The fields the store keeps in columns, not in detail (each fact once; see the writer's
    # _stored_message): put back where detail has no value of its own (rows written before, and the values
    # a column would have cut, keep theirs). from_dict checks their types as it checks detail's.
    split = len(_EXCHANGE_COLUMNS)
    for key, value in zip(_EXCHANGE_COLUMNS, cells[:split], strict=True):
        detail.setdefault(key, value)
    for (which, key, _), value in zip(_MESSAGE_COLUMNS, cells[split:], strict=True):
        msg = detail.get(which)
        if isinstance(msg, dict):
            msg.setdefault(key, value)
    for which in ("request", "response"):
        msg = detail.get(which)
        if isinstance(msg, dict):
            msg.setdefault("protocol", detail.get("protocol"))
            msg.setdefault("stream_id", detail.get("stream_id"))


def load_exchange(row: Sequence[Any]) -> Exchange:
    """The exchange of a row of :data:`STORED_SELECT` (bodies as stored: capped).

    Raises:
        FlowFormatError: ``detail`` is not an exchange: not a JSON object (damaged: SQLite writes an
            infinity as ``Inf``; or a ``UNION`` in a filter put something else in the column), an object
            that is not an exchange, or one of a newer format
            (:class:`~ecaptureq.decode.model.UnknownFlowFormat`).
    """
    cell = row[0] if row else None
    detail = _json_value(cell)
    if not isinstance(detail, dict):
        shown = cell[:100] if isinstance(cell, str | bytes) else cell  # the error shows a part
        raise FlowFormatError("detail", shown, "a JSON object")
    if len(row) >= _STORED_WIDTH:
        _with_fields(detail, row[7:_STORED_WIDTH])
    ex = Exchange.from_dict(detail)
    if len(row) >= 7:
        stored = (
            (ex.request, "request", row[1], row[3], row[5]),
            (ex.response, "response", row[2], row[4], row[6]),
        )
        for msg, key, headers, body, text in stored:
            # Databases written before bodies had their own columns keep them in detail: those stay.
            if msg is not None and "headers" not in detail[key]:
                _with_columns(msg, headers, body, text)
    return ex


T = TypeVar("T")

SKIPPED_SHOWN: Final = 10
"""Rows left out that an export names, with why (the count of them is whole)."""


Progress = Callable[[int, int], None]
"""An export's progress: called with the rows read so far and how many match, every :data:`PROGRESS_ROWS`
rows."""

PROGRESS_ROWS: Final = 2000
"""Rows an export reads between two calls of its progress."""


def _count(db: sqlite3.Connection, table: str, condition: str | None) -> int:
    """How many rows of ``table`` match ``condition`` (what an export's progress counts up to)."""
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}{_where(condition)}").fetchone()[0])
    except sqlite3.Error as exc:  # the condition was checked by the export's own query: the file failed
        raise read_failure(exc, "export") from None


Row = Sequence[Any]
"""A row as sqlite3 gives it."""


TOO_LARGE: Final = f"a value of more than {VALUE_BYTES} bytes, not read"
"""Why a row is left out when SQLite refused to read one of its values (see :func:`_rows_within_limit`)."""


def _too_big(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG"


def _rows_within_limit(
    db: sqlite3.Connection, columns: str, table: str, where: str, order: str
) -> Iterator[Row | int]:
    """The rows of ``SELECT columns FROM table where ORDER BY order``, none holding a value larger than
    :data:`~ecaptureq.store.sql.VALUE_BYTES`: a row that holds one comes as its rowid, nothing of it read.

    ecaptureq stores no value that large; another program's database, or a damaged one, may hold a
    gigabyte in one cell, which would be read whole (and written three times over as base64 in JSON).
    The rows are read by one query; once SQLite refuses a value (``SQLITE_TOOBIG``), the rest are read one
    by one, by rowid, so that such a row is left out and the export goes on.

    Raises (while iterating): sqlite3.Error, any other failure of the query.
    """
    old_limit = db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_BYTES)
    try:
        read = 0
        try:
            for row in db.execute(f"SELECT {columns} FROM {table}{where} ORDER BY {order}"):
                read += 1
                yield row
            return
        except sqlite3.DataError as exc:
            if not _too_big(exc):
                raise
        rowids = db.execute(f"SELECT rowid FROM {table}{where} ORDER BY {order} LIMIT -1 OFFSET {read}")
        one = f"SELECT {columns} FROM {table} WHERE rowid = ?"
        for (rowid,) in rowids:
            try:
                row = db.execute(one, (rowid,)).fetchone()
            except sqlite3.DataError as exc:
                if not _too_big(exc):
                    raise
                yield int(rowid)
                continue
            if row is not None:
                yield row
    finally:
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old_limit)


def _first_read(rows: Iterator[Row | int], condition: str | None, table: str) -> Iterator[Row | int]:
    """``rows`` with its query run now: a condition that is not valid SQL for ``table`` raises
    :class:`~ecaptureq.store.sql.FilterError` before anything is exported."""
    try:
        first = next(rows, None)
    except sqlite3.Error as exc:
        raise FilterError(condition or "", str(exc), table) from None
    return rows if first is None else itertools.chain([first], rows)


class _RowsRead(Generic[T]):
    """The items of the rows a query selects, read one at a time (memory does not grow with their number).
    A row that holds no item (:meth:`_item` says why) is left out and counted, and why is kept for the
    first :data:`SKIPPED_SHOWN`: what is exported says what is not.

    Raises (while iterating):
        DamagedDatabase: the database file is damaged.
        SqlError: the query failed on the way.
    """

    noun = "row"
    """What a row holds, in the reasons a row is left out (``exchange 12: ...``)."""

    def __init__(self, rows: Iterable[Row | int], progress: Callable[[int], None] | None = None) -> None:
        self._rows = rows
        self._progress = progress
        self.count = 0
        """Items yielded so far."""
        self.skipped = 0
        """Rows left out so far."""
        self.reasons: list[str] = []
        """Why, for the first :data:`SKIPPED_SHOWN` of them (``packet 12: timestamp is TEXT 'x'``...)."""

    def _item(self, row: Sequence[Any]) -> T | str:
        """The item of a row (its first column is its id), or why it holds none."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[T]:
        progress, read = self._progress, 0
        try:
            for row in self._rows:
                read += 1
                if progress is not None and read % PROGRESS_ROWS == 0:
                    progress(read)
                if isinstance(row, int):
                    self.skip(f"{self.noun} {row}: {TOO_LARGE}")
                    continue
                item = self._item(row)
                if isinstance(item, str):
                    self.skip(item)
                    continue
                self.count += 1
                yield item
        except sqlite3.Error as exc:
            raise read_failure(exc, "export") from None

    def skip(self, reason: str) -> None:
        """Count a row left out, and keep why if it is among the first (the run-log lines of a JSON Lines
        export count theirs here too)."""
        self.skipped += 1
        if len(self.reasons) < SKIPPED_SHOWN:
            self.reasons.append(reason)

    def _reasons_text(self) -> str:
        """The reasons kept, and how many more rows were left out."""
        more = self.skipped - len(self.reasons)
        return "; ".join(self.reasons) + (f"; {more} more" if more > 0 else "")


class HarRows(_RowsRead[dict[str, Any]]):
    """The HAR entries of the exchanges a query selects (see :class:`_RowsRead`). A row whose ``detail`` is
    damaged or of a newer format is left out, its :class:`FlowFormatError` kept as the reason."""

    noun = "exchange"

    def _item(self, row: Sequence[Any]) -> dict[str, Any] | str:
        try:
            return har_entry(load_exchange(row[1:]))
        except FlowFormatError as exc:
            return f"exchange {row[0]}: {exc}"

    def comment(self) -> str | None:
        """What the document says of the rows left out, or ``None`` when none was."""
        if not self.skipped:
            return None
        rows = "1 exchange" if self.skipped == 1 else f"{self.skipped} exchanges"
        return f"{rows} left out, unreadable as stored ({self._reasons_text()})"


def har_entries(
    db: sqlite3.Connection, condition: str | None = None, progress: Progress | None = None
) -> HarRows:
    """The HAR entries of the exchanges matching ``condition`` (a condition on ``exchanges``), one at a
    time: memory does not grow with the number of exchanges (see :class:`HarRows`). ``progress`` is
    called with the rows read and how many match, every :data:`PROGRESS_ROWS`.

    Raises:
        SqlError: the condition is not valid SQL for the ``exchanges`` table (raised before the first
            entry), or the query failed on the way.
    """
    columns = "id, " + STORED_SELECT.removeprefix("SELECT ").removesuffix(" FROM exchanges")
    rows = _rows_within_limit(db, columns, "exchanges", _where(condition), "started_ns, id")
    return HarRows(_first_read(rows, condition, "exchanges"), _counting(db, "exchanges", condition, progress))


def har_chunks(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A HAR 1.2 document as text, written entry by entry (for a file or an HTTP response). When
    ``entries`` is :class:`HarRows` and rows were left out, the log's ``comment`` (after the entries)
    says which."""
    creator = json.dumps({"name": "ecaptureq", "version": __version__})
    yield f'{{"log": {{"version": "1.2", "creator": {creator}, "pages": [], "entries": ['
    for i, entry in enumerate(entries):
        yield ("\n" if i == 0 else ",\n") + json.dumps(entry, ensure_ascii=False)
    comment = entries.comment() if isinstance(entries, HarRows) else None
    yield "\n]" + (f", {json.dumps('comment')}: {json.dumps(comment, ensure_ascii=False)}" if comment else "")
    yield "}}\n"


def har_document(db: sqlite3.Connection, condition: str | None = None) -> dict[str, Any]:
    """A HAR 1.2 document of the exchanges matching ``condition``, in memory (small captures, tests).

    Raises:
        SqlError: the condition is not valid SQL for the ``exchanges`` table.
    """
    rows = har_entries(db, condition)
    log: dict[str, Any] = {
        "version": "1.2",
        "creator": {"name": "ecaptureq", "version": __version__},
        "pages": [],
        "entries": list(rows),
    }
    comment = rows.comment()
    if comment:
        log["comment"] = comment
    return {"log": log}


def write_har(db: sqlite3.Connection, out: TextIO, condition: str | None = None) -> int:
    """Write the HAR document of the exchanges matching ``condition`` to ``out`` as it is read; return
    how many exchanges it holds."""
    rows = har_entries(db, condition)
    for chunk in har_chunks(rows):
        out.write(chunk)
    return rows.count


_EVENT_COLUMNS: Final = tuple(c for c in PACKET_COLUMNS if c not in ("index", "is_binary", "payload_utf8"))
"""The ``packets`` columns an :class:`Event` is made of, in its fields' order."""


def _sql_value(value: object) -> str:
    kind = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}.get(type(value), "NULL")
    if isinstance(value, bytes):
        return f"a {len(value)}-byte {kind}"
    shown = repr(value)
    return f"{kind} {shown[:40] + '...' if len(shown) > 40 else shown}"


def _event_of(row: Sequence[Any]) -> Event | str:
    """The event a ``packets`` row (:data:`_EVENT_COLUMNS`) holds, or why it holds none: a value of another
    type than the schema's, or beyond its proto field's range (a database written by another program,
    or damaged: an INTEGER payload would have been read as that many zero bytes)."""
    for name, value in zip(_EVENT_COLUMNS, row, strict=True):
        if name in EVENT_RANGES:
            kind, low, high = EVENT_RANGES[name]
            if type(value) is not int or not low <= value <= high:
                return f"{name} is {_sql_value(value)}, not {kind}"
        elif name == "payload_binary":
            if type(value) is not bytes:
                return f"{name} is {_sql_value(value)}, not a BLOB"
        elif type(value) is not str:
            return f"{name} is {_sql_value(value)}, not TEXT"
    return Event(*row)  # the columns in the order of its fields


class StoredEvents(_RowsRead[Event]):
    """The events of the packets a query selects (see :class:`_RowsRead`). A row that holds no event (see
    :func:`_event_of`) is left out."""

    noun = "packet"

    def _item(self, row: Sequence[Any]) -> Event | str:
        event = _event_of(row[1:])
        return f"packet {row[0]}: {event}" if isinstance(event, str) else event

    def comment(self) -> str | None:
        """What was left out and why, or ``None`` when nothing was."""
        if not self.skipped:
            return None
        rows = "1 row" if self.skipped == 1 else f"{self.skipped} rows"
        return f"{rows} left out, not what the schema stores: {self._reasons_text()}"


def stored_events(
    db: sqlite3.Connection, condition: str | None = None, progress: Progress | None = None
) -> StoredEvents:
    """The stored events matching ``condition`` (a condition on ``packets``), in arrival order (see
    :class:`StoredEvents`); ``progress`` as for :func:`har_entries`.

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table.
    """
    columns = ", ".join(('"index"', *_EVENT_COLUMNS))
    rows = _first_read(
        _rows_within_limit(db, columns, "packets", _where(condition), '"index"'), condition, "packets"
    )
    return StoredEvents(rows, _counting(db, "packets", condition, progress))


def _counting(
    db: sqlite3.Connection, table: str, condition: str | None, progress: Progress | None
) -> Callable[[int], None] | None:
    """``progress`` given the number of rows of ``table`` matching ``condition`` too (counted once, here)."""
    if progress is None:
        return None
    total = _count(db, table, condition)
    return lambda read: progress(read, total)


def _run_log_lines(db: sqlite3.Connection, events: StoredEvents) -> Iterator[str]:
    """The stored run-log lines, oldest first: none when there is no ``run_logs`` table (the eCaptureQ GUI's
    databases have ``packets`` alone); a line that is not TEXT is left out and counted in ``events``."""
    if "run_logs" not in table_names(db):
        return
    try:
        for row in _rows_within_limit(db, "id, line", "run_logs", "", "id"):
            if isinstance(row, int):
                events.skip(f"run log {row}: {TOO_LARGE}")
            elif type(row[1]) is str:
                yield row[1]
            else:
                events.skip(f"run log {row[0]}: line is {_sql_value(row[1])}, not TEXT")
    except sqlite3.Error as exc:
        raise read_failure(exc, "export") from None


def write_jsonl(
    db: sqlite3.Connection,
    out: TextIO,
    condition: str | None = None,
    progress: Progress | None = None,
) -> StoredEvents:
    """Write ``watch --json`` records to ``out``: every run-log line first, then the packets matching
    ``condition``. Returns what was read (:attr:`StoredEvents.count` events written, what was left out).
    ``progress`` as for :func:`har_entries`.

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table (raised before anything is
            written), or the database failed on the way.
    """
    events = stored_events(db, condition, progress)
    messages: Iterator[RunLog | Event] = itertools.chain(map(RunLog, _run_log_lines(db, events)), events)
    out.writelines(json.dumps(to_json(m), ensure_ascii=False, separators=(",", ":")) + "\n" for m in messages)
    return events


def write_pcapng(
    db: sqlite3.Connection,
    out: BinaryIO,
    condition: str | None = None,
    *,
    keep_ports: bool = False,
    progress: Progress | None = None,
) -> tuple[PcapngStats, StoredEvents]:
    """Write the packets matching ``condition`` as pcapng (see :mod:`ecaptureq.sinks.pcapng`); return what
    was written and what was read (its rows left out). ``progress`` as for :func:`har_entries`.

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table, or the database failed on
            the way.
    """
    from ecaptureq.sinks.pcapng import PcapngWriter  # here: its packet library only when it is used

    writer = PcapngWriter(out, keep_ports=keep_ports)
    events = stored_events(db, condition, progress)
    for event in events:
        writer.write_event(event)
    writer.close()
    return writer.stats, events


def b64(data: bytes) -> str:
    """Base64 text of ``data`` (for the ``--json`` and ``--csv`` forms of binary cells)."""
    return base64.b64encode(data).decode("ascii")

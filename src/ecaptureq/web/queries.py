"""What the web UI reads from a capture database: exchange rows, packets, details, counts. No I/O but SQLite.

Every function takes a connection opened by :func:`connect` (read-only, with a time limit on each query and
``ATTACH`` refused), so nothing the browser sends can change the database or hold it for long. The user's
SQL keeps the eCaptureQ GUI's meaning: a condition on ``exchanges`` for the exchange table, and the GUI's two
modes (a condition on ``packets``, or a full ``SELECT``) for the packets view.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from ecaptureq.decode.bodies import JSON_PARSE_LIMIT, hexdump
from ecaptureq.decode.model import HttpMessage
from ecaptureq.protocol.jsonl import EVENT_RANGES
from ecaptureq.protocol.messages import INT64_MAX, INT64_MIN
from ecaptureq.protocol.timestamps import Timestamp, detect_timestamp
from ecaptureq.store import QUERY_SECONDS, SqlError, open_readonly, quote_index, run_query
from ecaptureq.store.export import STORED_SELECT, load_exchange
from ecaptureq.store.schema import read_failure, table_names
from ecaptureq.store.sql import packets_sql, sql_error
from ecaptureq.web.curl import curl_command

RESULT_BYTES: Final = 8 * 1024 * 1024
"""About the most bytes of cells one answer carries; the rows after that are left out (``truncated``)."""

BODY_SHOWN: Final = 256 * 1024
"""Characters of a text body, or bytes of a binary one, that a detail carries (the rest is marked)."""

SQLITE_MAX_INT: Final = INT64_MAX
"""The largest integer SQLite stores (and binds: a larger one raises ``OverflowError``; ids and indexes
beyond it are no row)."""

JS_SAFE_INT: Final = 2**53 - 1
"""Integers beyond this lose digits in a browser (a double): cells send them as decimal text instead."""

CELL_SHOWN: Final = 300
"""Characters of one cell in the packets view (payloads are long; the detail shows them whole)."""

EXCHANGE_COLUMNS: Final = (
    "id",
    "time",
    "pname",
    "pid",
    "src",
    "dst",
    "method",
    "host",
    "path",
    "status",
    "size",
    "latency",
    "protocol",
    "complete",
    "node",
)
"""The columns of one exchange row sent to the browser, in order (rows are arrays, to stay small).

``time`` is sent as :func:`time_text` of ``started_ns`` (the browser does not guess units)."""

TIME_COLUMNS: Final = frozenset({"timestamp", "started_ns", "ended_ns", "received_ns"})
"""Columns of the packets view whose integers are event times: the answer adds them as :func:`time_text`."""

_TIME_AT: Final = EXCHANGE_COLUMNS.index("time")

_EXCHANGE_SELECT = (
    "SELECT id, started_ns AS time, pname, pid, src_ip || ':' || src_port AS src,"
    " dst_ip || ':' || dst_port AS dst, method, host, path, status, response_size AS size, latency, protocol,"
    " complete, {node} AS node FROM exchanges"
)
"""The exchange columns of :data:`EXCHANGE_COLUMNS`, named so (:func:`_page` names them; ``ORDER BY id`` also
orders a ``UNION`` a condition adds)."""

_PAGE_CELL: Final = (
    "CASE typeof({c})"
    " WHEN 'blob' THEN json_object('blob', hex(substr({c}, 1, {blob})))"
    " WHEN 'text' THEN iif(instr(CAST({c} AS BLOB), x'00'), json_object('nul', 1),"
    " iif(substr({c}, {text}, 1) = '', {c}, substr({c}, 1, {text})))"
    " WHEN 'real' THEN iif({c} BETWEEN -{huge} AND {huge}, {c}, NULL)"
    " ELSE {c} END"
)
"""One cell of :func:`_page` in SQL: as it is, or as much of it as :func:`_cell` looks at (one byte or
character more than it shows, so that it knows to mark the cut). A blob is an object with its hex, text
with a NUL an object that says so (SQLite's text functions stop at a NUL), and a real number that JSON
cannot hold (infinity) is null."""


def _page_select(names: Sequence[str]) -> str:
    """The query that makes the rows of a query with these result columns one JSON text (the query in
    place of ``{sql}``; see :data:`_PAGE_CELL`)."""
    quoted = ['"' + name.replace('"', '""') + '"' for name in names]
    cells = ", ".join(
        _PAGE_CELL.format(c=name, blob=CELL_SHOWN // 2 + 1, text=CELL_SHOWN + 1, huge=sys.float_info.max)
        for name in quoted
    )
    return f"SELECT json_group_array(json_array({cells})) FROM ({{sql}})"


_PAGE_SELECT: Final = _page_select(EXCHANGE_COLUMNS)
"""The query :func:`_page` wraps around a query of :data:`_EXCHANGE_SELECT`."""


def event_time(raw: object) -> Timestamp | None:
    """A cell read as an event time (its unit detected as everywhere else), or ``None`` when it is no time:
    neither an integer nor an integer's exact decimal text (ASCII digits with an optional ``-``, as a
    cell beyond :data:`JS_SAFE_INT` is sent), or beyond the 64 bits of the timestamp field. Any cell may
    come here: another program's table holds any type in any column, and a filter's ``UNION`` can put any
    value in a time column (a date has at most four digits of year)."""
    if isinstance(raw, str) and _INT_TEXT.fullmatch(raw):
        raw = int(raw)
    _, low, high = EVENT_RANGES["timestamp"]
    if type(raw) is not int or not low <= raw <= high:
        return None
    return detect_timestamp(raw)


def time_text(raw: object) -> str | None:
    """An event time for people (UTC ISO 8601, or since boot) of a cell, or ``None`` for a cell that is no
    time (see :func:`event_time`)."""
    time = event_time(raw)
    return time.isoformat() if time is not None else None


_INT_TEXT: Final = re.compile(r"-?[0-9]{1,19}")
"""The text of an integer :func:`event_time` reads: a longer one is beyond 64 bits (``int()`` would also
take spaces, ``_`` and other scripts' digits, and refuse ``--1`` or ``²`` that ``str.isdigit`` lets by)."""


def _with_time(rows: list[list[Any]]) -> list[list[Any]]:
    for row in rows:
        if len(row) > _TIME_AT:
            row[_TIME_AT] = time_text(row[_TIME_AT])
    return rows


def _has_node(conn: sqlite3.Connection) -> bool:
    # Databases written before the fleet's node column are browsed read-only, so not migrated.
    sql = "SELECT EXISTS (SELECT 1 FROM pragma_table_info('exchanges') WHERE name = 'node')"
    return bool(conn.execute(sql).fetchone()[0])  # one row: each row waits for the GIL (see _page)


def _exchange_select(conn: sqlite3.Connection) -> str:
    return _EXCHANGE_SELECT.format(node="node" if _has_node(conn) else "NULL")


def nodes(conn: sqlite3.Connection, limit: int = 1000) -> list[str]:
    """The fleet nodes of the exchanges (none for a database recorded from one source).

    One index lookup per node (a skip scan of ``exchanges_node``), so it stays fast on big databases.
    """
    if not _has_node(conn):
        return []
    rows = conn.execute(
        "WITH RECURSIVE n(v) AS (SELECT min(node) FROM exchanges UNION ALL"
        " SELECT (SELECT min(node) FROM exchanges WHERE node > v) FROM n WHERE v IS NOT NULL)"
        " SELECT v FROM n WHERE v IS NOT NULL LIMIT ?",
        (limit,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    # Read-only already forbids writes; ATTACH could still open (or create) another file.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def connect(path: Path, *, any_thread: bool = False) -> sqlite3.Connection:
    """Open ``path`` read-only for the browser's queries, with ``ATTACH`` denied.

    Bound what its queries may cost with a :class:`~ecaptureq.store.Deadline` around them.

    Raises:
        SqlError: the file is missing or not a readable SQLite database.
    """
    conn = open_readonly(path, any_thread=any_thread)
    conn.set_authorizer(_authorize)
    return conn


def _sql_error(exc: sqlite3.Error, text: str) -> SqlError:
    return sql_error(exc, text, QUERY_SECONDS)


def _cells(row: Iterable[Any]) -> list[Any]:
    return [_cell(v) for v in row]


def exchanges_where(condition: str | None) -> str:
    """The ``AND (...)`` clause for a user's condition on ``exchanges`` (empty for none)."""
    text = (condition or "").strip().rstrip(";").strip()
    return f" AND ({quote_index(text)})" if text else ""


def _json_rows(conn: sqlite3.Connection, select: str, params: Sequence[Any]) -> list[list[Any]] | None:
    """The rows a query of :func:`_page_select` made one JSON text, each cell as :func:`_cell` makes it;
    ``None`` when they must be read row by row: the text would pass the value limit (long cells of control
    characters, escaped), or a cell is text with a NUL, or text that is not UTF-8 (another program's file:
    read row by row, the error names its column).

    SQLite makes the text in one step of its virtual machine. Python's sqlite3 lets go of the GIL for each
    step and takes it again for each row; in ``ui`` the recording holds it most of the time, and each row
    waited for it (200 rows: 0.4 ms alone, 120 ms beside a busy thread). Real numbers come with SQLite's 15
    significant digits.
    """
    try:
        (text,) = conn.execute(select, params).fetchone()
    except sqlite3.Error as exc:
        if isinstance(exc, sqlite3.DataError) or "Could not decode" in str(exc):
            return None
        raise
    rows: list[list[Any]] = orjson.loads(text)
    for row in rows:
        for i, cell in enumerate(row):
            if type(cell) is dict:
                if "nul" in cell:
                    return None
                cell = bytes.fromhex(cell["blob"])
            row[i] = _cell(cell)
    return rows


def _page(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[list[Any]]:
    """The rows of ``sql`` (a query of :data:`_EXCHANGE_SELECT`), each cell as :func:`_cell` makes it, at
    most about :data:`RESULT_BYTES`, with their times as text: one row from SQLite (:func:`_json_rows`),
    or else row by row."""
    rows = _json_rows(conn, _PAGE_SELECT.format(sql=sql), params)
    if rows is None:
        return _with_time(_bounded(conn.execute(sql, params)))
    return _with_time(_within(rows))


def exchange_rows(
    conn: sqlite3.Connection, condition: str | None = None, after_id: int = 0, limit: int = 5000
) -> list[list[Any]]:
    """Exchange rows (lists, see :data:`EXCHANGE_COLUMNS`) with ``id > after_id`` matching ``condition``.

    Raises:
        SqlError: the condition is not valid SQL on ``exchanges``, or took too long.
    """
    sql = f"{_exchange_select(conn)} WHERE id > ?{exchanges_where(condition)} ORDER BY id LIMIT ?"
    try:
        return _page(conn, sql, (after_id, limit))
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None


def exchange_rows_before(
    conn: sqlite3.Connection, condition: str | None, before_id: int, limit: int
) -> list[list[Any]]:
    """The last ``limit`` exchange rows with ``id < before_id`` matching ``condition``, in id order (the page
    before one the browser has: keyset, as cheap deep in the table as at its start).

    Raises:
        SqlError: the condition is not valid SQL on ``exchanges``, or took too long.
    """
    sql = f"{_exchange_select(conn)} WHERE id < ?{exchanges_where(condition)} ORDER BY id DESC LIMIT ?"
    try:
        return _page(conn, sql, (before_id, limit))[::-1]
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None


def exchange_window(
    conn: sqlite3.Connection, condition: str | None, offset: int, limit: int
) -> list[list[Any]]:
    """The exchange rows matching ``condition`` at positions ``offset`` to ``offset + limit`` in id order:
    the page of a table the browser jumped into (next to a page it has, it asks by id instead).

    Without a condition, when the ids have no gap (the store numbers exchanges 1, 2, 3...: see
    :func:`totals`), the position gives the id: one index lookup. Otherwise SQLite steps over ``offset``
    rows (about 0.4 s for 900,000 exchanges here).

    Raises:
        SqlError: the condition is not valid SQL on ``exchanges``, or took too long.
    """
    sql = f"{_exchange_select(conn)} WHERE id > 0{exchanges_where(condition)} ORDER BY id LIMIT ? OFFSET ?"
    try:
        if not exchanges_where(condition):
            low, high, count = conn.execute(
                "SELECT (SELECT min(id) FROM exchanges), (SELECT max(id) FROM exchanges),"
                " (SELECT count(*) FROM exchanges)"
            ).fetchone()
            ids = type(low) is int and type(high) is int  # not so in another program's table
            if count and ids and low > 0 and high - low + 1 == count:
                # past the last position there is no row (and low + offset may be beyond 64 bits)
                return exchange_rows(conn, None, low + offset - 1, limit) if offset < count else []
        return _page(conn, sql, (limit, offset))
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None


def exchange_count(conn: sqlite3.Connection, condition: str | None) -> tuple[int, int]:
    """How many exchanges match ``condition``, and the highest id among them (0 when none).

    Raises:
        SqlError: the condition is not valid SQL on ``exchanges``, or took too long.
    """
    sql = f"SELECT count(*), coalesce(max(id), 0) FROM exchanges WHERE id > 0{exchanges_where(condition)}"
    if not exchanges_where(condition):  # count(*) alone reads the smallest index; max(id) is one lookup
        sql = "SELECT (SELECT count(*) FROM exchanges), (SELECT coalesce(max(id), 0) FROM exchanges)"
    try:
        count, last = conn.execute(sql).fetchone()
        if type(last) is not int:  # a text id sorts above every integer: another program's table
            typed = "SELECT coalesce(max(id), 0) FROM exchanges WHERE typeof(id) = 'integer'"
            last = conn.execute(typed + exchanges_where(condition)).fetchone()[0]
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None
    return int(count), int(last)


def _bounded(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    # A condition may add a UNION of anything: every cell is made JSON-able and short, and the answer
    # stops at RESULT_BYTES.
    return _within(map(_cells, rows))


def _within(rows: Iterable[list[Any]]) -> list[list[Any]]:
    """The rows up to the one that brings their cells past :data:`RESULT_BYTES`."""
    out: list[list[Any]] = []
    size = 0
    for cells in rows:
        out.append(cells)
        size += sum(len(c) if isinstance(c, str) else 8 for c in cells)
        if size > RESULT_BYTES:
            break
    return out


IDS_PER_QUERY: Final = 900
"""Ids one ``IN (...)`` asks for (SQLite's default limit on host parameters is 999); more take more
queries."""


def row_id(cell: object) -> int | None:
    """The row id a cell of the ``id`` column holds: an integer, or its exact text (as a cell beyond
    :data:`JS_SAFE_INT` is sent); ``None`` for any other value (another program's table may hold text or
    a blob there, or text beyond 64 bits), which no query by id can find again."""
    if isinstance(cell, str) and _INT_TEXT.fullmatch(cell):
        cell = int(cell)
    return cell if type(cell) is int and INT64_MIN <= cell <= SQLITE_MAX_INT else None


def page_after(cell: object) -> object:
    """What to read the rows after (``after_id``), from the ``id`` cell of the last row sent: the integer
    of a cell beyond :data:`JS_SAFE_INT` (sent as its decimal text, which ``id > ?`` would compare as text,
    after every integer), else the cell as it is (another program's text id compares as text)."""
    number = row_id(cell)
    if isinstance(cell, str) and number is not None and abs(number) > JS_SAFE_INT:
        return number
    return cell


def exchange_rows_by_id(
    conn: sqlite3.Connection, ids: Iterable[object], condition: str | None = None
) -> list[list[Any]]:
    """The current rows of the given exchange ids that match ``condition`` (to update incomplete ones);
    an id that is no row id (see :func:`row_id`) is passed over."""
    wanted = [i for i in map(row_id, ids) if i is not None]
    rows: list[list[Any]] = []
    for at in range(0, len(wanted), IDS_PER_QUERY):
        part = wanted[at : at + IDS_PER_QUERY]
        marks = ", ".join("?" * len(part))
        sql = f"{_exchange_select(conn)} WHERE id IN ({marks}){exchanges_where(condition)} ORDER BY id"
        try:
            rows += _page(conn, sql, part)
        except sqlite3.Error as exc:
            raise _sql_error(exc, condition or "") from None
    return rows


def check_condition(conn: sqlite3.Connection, condition: str | None) -> None:
    """Raise :class:`SqlError` when ``condition`` is not a valid condition on ``exchanges``."""
    exchange_rows(conn, condition, after_id=0, limit=0)


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        shown = value[: CELL_SHOWN // 2].hex()
        return f"x'{shown}{'…' if len(value) > CELL_SHOWN // 2 else ''}'"
    if isinstance(value, str) and len(value) > CELL_SHOWN:
        return value[:CELL_SHOWN] + "…"
    if isinstance(value, int) and abs(value) > JS_SAFE_INT:
        return str(value)  # nanosecond times: exact, not rounded to a double
    if isinstance(value, float) and not math.isfinite(value):
        return None  # 1e999 is infinite in SQLite; JSON has no such number
    return value


def packet_rows(conn: sqlite3.Connection, text: str, limit: int = 5000) -> dict[str, Any]:
    """The GUI's packets query (condition on ``packets`` or a full ``SELECT``), at most ``limit`` rows.

    Returns ``{"columns": [...], "rows": [[...]], "truncated": bool, "times": {...}}``; blobs become
    ``x'hex'``, long text is cut to :data:`CELL_SHOWN` characters, and ``times`` maps the position of each
    column of :data:`TIME_COLUMNS` to its cells as :func:`time_text`. The rows come from SQLite as one
    JSON text where they can (:func:`_json_rows`).

    Raises:
        SqlError: SQLite refused the query (its message is kept), or it took too long.
    """
    try:
        sql = f"SELECT * FROM (\n{packets_sql(text)}\n)"  # on lines of its own: a -- comment ends there
        names = [d[0] for d in conn.execute(f"{sql} LIMIT 0").description or ()]
        rows = _json_rows(conn, _page_select(names).format(sql=f"{sql} LIMIT ?"), (limit + 1,))
    except sqlite3.Error as exc:
        if str(exc) == "interrupted":
            raise _sql_error(exc, text) from None
        rows = None  # not a query that can be wrapped (WITH ... DELETE): as it is, with its own error
    if rows is None:
        return _packet_rows_one_by_one(conn, text, limit)
    return _packet_page(_result_names(names), iter(rows), limit)


def _result_names(names: list[str]) -> list[str]:
    """The columns of a query as it names them, from the names the same query has in a ``FROM (...)``:
    there SQLite makes them unique, the second ``a`` becoming ``a:1``."""
    shown: list[str] = []
    for name in names:
        base, colon, number = name.rpartition(":")
        shown.append(base if colon and number.isdigit() and base in shown else name)
    return shown


def _packet_rows_one_by_one(conn: sqlite3.Connection, text: str, limit: int) -> dict[str, Any]:
    try:
        columns, rows = run_query(conn, text, QUERY_SECONDS)
        return _packet_page(columns, map(_cells, rows), limit)
    except sqlite3.Error as exc:  # run_query maps most errors; an interrupt can escape mid-iteration
        raise _sql_error(exc, text) from None


def _packet_page(columns: list[str], rows: Iterator[list[Any]], limit: int) -> dict[str, Any]:
    """The answer of the packets view: at most ``limit`` rows and about :data:`RESULT_BYTES` (read no
    further than that), ``truncated`` when another row follows."""
    kept = _within(itertools.islice(rows, limit))
    return _packet_answer(columns, kept, truncated=next(rows, None) is not None)


def _packet_answer(columns: list[str], rows: list[list[Any]], *, truncated: bool) -> dict[str, Any]:
    times = {
        str(i): [time_text(row[i]) for row in rows]
        for i, name in enumerate(columns)
        if name.lower() in TIME_COLUMNS
    }
    return {"columns": columns, "rows": rows, "truncated": truncated, "times": times}


def body_view(message: HttpMessage | None) -> dict[str, Any]:
    """How a decoded body is shown: ``kind`` is ``empty``, ``json`` (pretty-printed), ``text`` or ``hex``."""
    if message is None:
        return {"kind": "empty", "text": "", "size": 0, "truncated": False}
    size = message.body_size
    text = message.body_text
    if text is not None:
        kind = "text"
        if message.is_json and len(text) <= JSON_PARSE_LIMIT:
            try:
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                kind = "json"
            except (ValueError, RecursionError):
                pass
        cut = len(text) > BODY_SHOWN
        return {"kind": kind if text else "empty", "text": text[:BODY_SHOWN], "size": size, "truncated": cut}
    data = message.body
    if data:
        cut = len(data) > BODY_SHOWN
        return {"kind": "hex", "text": hexdump(data[:BODY_SHOWN]), "size": size, "truncated": cut}
    return {"kind": "empty", "text": "", "size": size, "truncated": False}


def _message_view(message: HttpMessage | None) -> dict[str, Any] | None:
    if message is None:
        return None
    if message.kind == "request":
        first = f"{message.method} {message.target}".strip()
    else:
        first = f"{message.status or ''} {message.reason}".strip()
    return {
        "first_line": first,
        "headers": [[k, v] for k, v in message.headers],
        "trailers": [[k, v] for k, v in message.trailers],
        "content_type": message.content_type or None,
        "content_encoding": message.content_encoding or None,
        "body": body_view(message),
        "complete": message.complete,
        "errors": list(message.errors),
        "notes": list(message.notes),
    }


def exchange_detail(conn: sqlite3.Connection, exchange_id: int) -> dict[str, Any] | None:
    """Everything the detail pane shows about one exchange, or ``None`` when there is no such id.

    Raises:
        SqlError: the query failed or took too long.
        FlowFormatError: the row's stored detail is damaged, or of a newer format.
    """
    try:
        row = conn.execute(f"{STORED_SELECT} WHERE id = ?", (exchange_id,)).fetchone()
    except sqlite3.Error as exc:
        raise _sql_error(exc, f"exchange {exchange_id}") from None
    if row is None:
        return None
    ex = load_exchange(row)
    url = ex.url if ex.request is not None else None
    return {
        "id": exchange_id,
        "protocol": ex.protocol,
        "stream_id": ex.stream_id,
        "pid": ex.pid,
        "pname": ex.pname,
        "src": f"{ex.src_ip}:{ex.src_port}",
        "dst": f"{ex.dst_ip}:{ex.dst_port}",
        "started_ns": ex.started_ns,
        "time": time_text(ex.started_ns),
        "latency": ex.latency,
        "url": url,
        "request": _message_view(ex.request),
        "response": _message_view(ex.response),
        "curl": curl_command(ex, url or "", "posix"),
        "curl_fish": curl_command(ex, url or "", "fish"),
        **_process_labels(conn, ex.pid, exchange_id),
    }


def _process_labels(conn: sqlite3.Connection, pid: object, exchange_id: int) -> dict[str, str]:
    """The cgroup and container id ``ecaptureq tls`` named for ``pid`` (the latest), if any: on the
    exchange's own fleet node, where the database has nodes (the same pid on two hosts is two processes)."""
    try:
        if _has_node(conn):
            row = conn.execute(
                "SELECT cgroup, container_id FROM processes WHERE pid = ?"
                " AND node IS (SELECT node FROM exchanges WHERE id = ?) ORDER BY received_ns DESC LIMIT 1",
                (pid, exchange_id),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT cgroup, container_id FROM processes WHERE pid = ? ORDER BY received_ns DESC LIMIT 1",
                (pid,),
            ).fetchone()
    except sqlite3.OperationalError:  # a database written before the processes table (or its node) existed
        return {}
    return {"cgroup": _cell(row[0]), "container_id": _cell(row[1])} if row else {}


def packet_detail(conn: sqlite3.Connection, index: int) -> dict[str, Any] | None:
    """One packet's metadata and its payload as text (when printable) or a hex dump."""
    try:
        row = conn.execute(
            'SELECT "index", timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length,'
            ' is_binary, payload_binary FROM packets WHERE "index" = ?',
            (index,),
        ).fetchone()
    except sqlite3.Error as exc:
        raise _sql_error(exc, f"packet {index}") from None
    if row is None:
        return None
    keys = ("index", "timestamp", "uuid", "src_ip", "src_port", "dst_ip", "dst_port", "pid", "pname")
    # each cell as the packets view shows it: another program's database may hold any type in any column
    info = {key: _cell(value) for key, value in zip(keys, row, strict=False)}
    info.update(type=_cell(row[9]), length=_cell(row[10]))
    time = event_time(row[1])
    if time is None:
        info.update(time=None, time_unit="not a time")
    else:
        info.update(time=time.isoformat(), time_unit=time.unit.value)
    payload = row[12] if isinstance(row[12], bytes) else str(row[12] or "").encode("utf-8", "replace")
    shown = payload[:BODY_SHOWN]
    # Both views of the bytes: the page starts on hex + ASCII for a binary payload, on text otherwise.
    info["payload"] = {
        "kind": "hex" if row[11] else "text",
        "text": shown.decode("utf-8", "replace"),
        "hex": hexdump(shown),
        "size": len(payload),
        "truncated": len(payload) > BODY_SHOWN,
    }
    return info


def totals(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts of the database: packets, exchanges, run-log lines, connections.

    Packets and exchanges are estimated by their highest id (one index lookup, where ``count(*)`` reads a
    whole index: 25 ms a status at 1,000,000 exchanges). The store numbers both 1, 2, 3... in the order
    it writes them (the decoder numbers an exchange when it first hands it over), so it is their count
    unless rows were deleted; the same order makes paging by ``after_id`` skip nothing.

    Raises:
        SqlError: a count failed (:class:`~ecaptureq.store.DamagedDatabase` when the file is damaged).
    """
    try:
        tables = set(table_names(conn))  # run_logs and connections are ours: not in another program's file
        counts = {
            "packets": ('coalesce(max("index"), 0)', "packets"),
            "exchanges": ("coalesce(max(id), 0)", "exchanges"),
            "run_logs": ("count(*)", "run_logs"),
            "connections": ("count(*)", "connections"),
        }
        # one statement, one row (see table_names)
        sql = ", ".join(
            f"(SELECT {what} FROM {table})" if table in tables else "0" for what, table in counts.values()
        )
        row = conn.execute(f"SELECT {sql}").fetchone()
        return {**dict(zip(counts, map(_cell, row), strict=True)), "nodes": nodes(conn)}
    except sqlite3.Error as exc:
        raise read_failure(exc, "counting the rows") from None


def check_capture_database(path: Path) -> None:
    """Check that ``path`` is a readable capture database with ``packets`` and ``exchanges``.

    Raises:
        SqlError: the file is missing or unreadable.
        NotCaptureDatabase: it is another program's database.
    """
    open_readonly(path, ("packets", "exchanges")).close()


def rows_json(columns: Sequence[str], rows: list[list[Any]]) -> dict[str, Any]:
    """The JSON body of a row list: column names once, then the rows as arrays."""
    return {"columns": list(columns), "rows": rows}

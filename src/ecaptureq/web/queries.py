"""What the web UI reads from a capture database: exchange rows, packets, details, counts. No I/O but SQLite.

Every function takes a connection opened by :func:`connect` (read-only, with a time limit on each query and
``ATTACH`` refused), so nothing the browser sends can change the database or hold it for long. The user's
SQL keeps the eCaptureQ GUI's meaning: a condition on ``exchanges`` for the exchange table, and the GUI's two
modes (a condition on ``packets``, or a full ``SELECT``) for the packets view.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from ecaptureq.decode.render import hexdump
from ecaptureq.store import SqlError, open_readonly, quote_index, run_query
from ecaptureq.store.export import har_entry

QUERY_SECONDS: Final = 10.0
"""A query from the browser that runs longer than this is interrupted (and reported as an error)."""

BODY_SHOWN: Final = 256 * 1024
"""Characters of a text body, or bytes of a binary one, that a detail carries (the rest is marked)."""

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
)
"""The columns of one exchange row sent to the browser, in order (rows are arrays, to stay small)."""

_EXCHANGE_SELECT = (
    "SELECT id, started_ns, pname, pid, src_ip || ':' || src_port, dst_ip || ':' || dst_port, method, host,"
    " path, status, response_size, latency, protocol, complete FROM exchanges"
)


def _authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    # Read-only already forbids writes; ATTACH could still open (or create) another file.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def connect(path: Path, seconds: float = QUERY_SECONDS) -> sqlite3.Connection:
    """Open ``path`` read-only for the browser's queries: ``ATTACH`` denied, each query limited in time.

    Raises:
        SqlError: the file is missing or not a readable SQLite database.
    """
    conn = open_readonly(path)
    conn.set_authorizer(_authorize)
    started = time.monotonic()

    def too_long() -> int:
        return int(time.monotonic() - started > seconds)

    conn.set_progress_handler(too_long, 20_000)
    return conn


def _sql_error(exc: sqlite3.Error, text: str) -> SqlError:
    message = str(exc)
    if message == "interrupted":
        message = f"the query took longer than {QUERY_SECONDS:g} s and was stopped"
    return SqlError(f"invalid SQL: {message} (in: {text.strip()})")


def exchanges_where(condition: str | None) -> str:
    """The ``AND (...)`` clause for a user's condition on ``exchanges`` (empty for none)."""
    text = (condition or "").strip().rstrip(";").strip()
    return f" AND ({quote_index(text)})" if text else ""


def exchange_rows(
    conn: sqlite3.Connection, condition: str | None = None, after_id: int = 0, limit: int = 5000
) -> list[list[Any]]:
    """Exchange rows (lists, see :data:`EXCHANGE_COLUMNS`) with ``id > after_id`` matching ``condition``.

    Raises:
        SqlError: the condition is not valid SQL on ``exchanges``, or took too long.
    """
    sql = f"{_EXCHANGE_SELECT} WHERE id > ?{exchanges_where(condition)} ORDER BY id LIMIT ?"
    try:
        return [list(row) for row in conn.execute(sql, (after_id, limit))]
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None


def exchange_rows_by_id(
    conn: sqlite3.Connection, ids: Iterable[int], condition: str | None = None
) -> list[list[Any]]:
    """The current rows of the given exchange ids that match ``condition`` (to update incomplete ones)."""
    wanted = [int(i) for i in ids][:900]  # SQLite's default limit on host parameters is 999
    if not wanted:
        return []
    marks = ", ".join("?" * len(wanted))
    sql = f"{_EXCHANGE_SELECT} WHERE id IN ({marks}){exchanges_where(condition)} ORDER BY id"
    try:
        return [list(row) for row in conn.execute(sql, wanted)]
    except sqlite3.Error as exc:
        raise _sql_error(exc, condition or "") from None


def check_condition(conn: sqlite3.Connection, condition: str | None) -> None:
    """Raise :class:`SqlError` when ``condition`` is not a valid condition on ``exchanges``."""
    exchange_rows(conn, condition, after_id=0, limit=0)


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        shown = value[: CELL_SHOWN // 2].hex()
        return f"x'{shown}{'…' if len(value) > CELL_SHOWN // 2 else ''}'"
    if isinstance(value, str) and len(value) > CELL_SHOWN:
        return value[:CELL_SHOWN] + "…"
    return value


def packet_rows(conn: sqlite3.Connection, text: str, limit: int = 5000) -> dict[str, Any]:
    """The GUI's packets query (condition on ``packets`` or a full ``SELECT``), at most ``limit`` rows.

    Returns ``{"columns": [...], "rows": [[...]], "truncated": bool}``; blobs become ``x'hex'`` and long
    text is cut to :data:`CELL_SHOWN` characters.

    Raises:
        SqlError: SQLite refused the query (its message is kept), or it took too long.
    """
    try:
        columns, rows = run_query(conn, text)
        out: list[list[Any]] = []
        for row in rows:
            if len(out) == limit:
                return {"columns": columns, "rows": out, "truncated": True}
            out.append([_cell(v) for v in row])
    except sqlite3.Error as exc:  # run_query maps most errors; an interrupt can escape mid-iteration
        raise _sql_error(exc, text) from None
    except SqlError as exc:
        if "interrupted" in str(exc):
            raise SqlError(f"the query took longer than {QUERY_SECONDS:g} s and was stopped") from None
        raise
    return {"columns": columns, "rows": out, "truncated": False}


def body_view(message: dict[str, Any] | None) -> dict[str, Any]:
    """How a decoded body is shown: ``kind`` is ``empty``, ``json`` (pretty-printed), ``text`` or ``hex``."""
    if message is None:
        return {"kind": "empty", "text": "", "size": 0, "truncated": False}
    size = int(message.get("body_size") or 0)
    text = message.get("body_text")
    if text is not None:
        kind = "text"
        if message.get("is_json"):
            try:
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                kind = "json"
            except ValueError:
                pass
        cut = len(text) > BODY_SHOWN
        return {"kind": kind if text else "empty", "text": text[:BODY_SHOWN], "size": size, "truncated": cut}
    encoded = message.get("body_b64")
    if encoded:
        try:
            data = base64.b64decode(encoded)
        except (binascii.Error, ValueError):
            data = b""
        cut = len(data) > BODY_SHOWN
        return {"kind": "hex", "text": hexdump(data[:BODY_SHOWN]), "size": size, "truncated": cut}
    return {"kind": "empty", "text": "", "size": size, "truncated": False}


_CURL_SKIPPED: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


def curl_command(detail: dict[str, Any]) -> str | None:
    """The request as a ``curl`` command line (POSIX shell quoting), or ``None`` without a request.

    The body is the decoded one, so ``Content-Encoding`` is left out when the capture had one; a binary
    body is piped in with ``printf``.
    """
    req = detail.get("request")
    if not req:
        return None
    url = har_entry(detail)["request"]["url"]
    method = req.get("method") or "GET"
    parts = ["curl"]
    if detail.get("protocol") == "h2":
        parts.append("--http2")
    if method != "GET":
        parts += ["-X", shlex.quote(method)]
    parts.append(shlex.quote(url))
    decoded = bool(req.get("content_encoding"))
    for name, value in req.get("headers") or []:
        lower = name.lower()
        if lower.startswith(":") or lower in _CURL_SKIPPED or (decoded and lower == "content-encoding"):
            continue
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    prefix = ""
    if req.get("body_text"):
        parts += ["--data-raw", shlex.quote(req["body_text"])]
    elif req.get("body_b64"):
        data = base64.b64decode(req["body_b64"])
        escaped = "".join(f"\\x{b:02x}" for b in data)
        prefix = f"printf '%b' '{escaped}' | "
        parts += ["--data-binary", "@-"]
    lines: list[str] = []
    line = prefix + parts[0]
    i = 1
    while i < len(parts):  # one option (with its value) per line
        take = 2 if parts[i].startswith("-") and parts[i] not in ("--http2",) else 1
        lines.append(line)
        line = "  " + " ".join(parts[i : i + take])
        i += take
    lines.append(line)
    return " \\\n".join(lines)


def _message_view(message: dict[str, Any] | None) -> dict[str, Any] | None:
    if message is None:
        return None
    if message.get("kind") == "request":
        first = f"{message.get('method') or ''} {message.get('url') or message.get('path') or ''}".strip()
    else:
        first = f"{message.get('status') or ''} {message.get('reason') or ''}".strip()
    return {
        "first_line": first,
        "headers": message.get("headers") or [],
        "trailers": message.get("trailers") or [],
        "content_type": message.get("content_type"),
        "content_encoding": message.get("content_encoding"),
        "body": body_view(message),
        "complete": message.get("complete", True),
        "errors": message.get("errors") or [],
        "notes": message.get("notes") or [],
    }


def exchange_detail(conn: sqlite3.Connection, exchange_id: int) -> dict[str, Any] | None:
    """Everything the detail pane shows about one exchange, or ``None`` when there is no such id."""
    row = conn.execute("SELECT detail FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
    if row is None:
        return None
    detail: dict[str, Any] = json.loads(row[0])
    return {
        "id": exchange_id,
        "protocol": detail.get("protocol"),
        "stream_id": detail.get("stream_id"),
        "pid": detail.get("pid"),
        "pname": detail.get("pname"),
        "src": f"{detail.get('src_ip') or ''}:{detail.get('src_port') or 0}",
        "dst": f"{detail.get('dst_ip') or ''}:{detail.get('dst_port') or 0}",
        "started_ns": detail.get("started_ns"),
        "latency": detail.get("latency"),
        "url": har_entry(detail)["request"]["url"] if detail.get("request") else None,
        "request": _message_view(detail.get("request")),
        "response": _message_view(detail.get("response")),
        "curl": curl_command(detail),
        **_process_labels(conn, detail.get("pid")),
    }


def _process_labels(conn: sqlite3.Connection, pid: object) -> dict[str, str]:
    """The cgroup and container id ``ecaptureq tls`` named for ``pid`` (the latest), if any."""
    try:
        row = conn.execute(
            "SELECT cgroup, container_id FROM processes WHERE pid = ? ORDER BY received_ns DESC LIMIT 1",
            (pid,),
        ).fetchone()
    except sqlite3.OperationalError:  # a database written before the processes table existed
        return {}
    return {"cgroup": row[0], "container_id": row[1]} if row else {}


def packet_detail(conn: sqlite3.Connection, index: int) -> dict[str, Any] | None:
    """One packet's metadata and its payload as text (when printable) or a hex dump."""
    row = conn.execute(
        'SELECT "index", timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length,'
        ' is_binary, payload_binary FROM packets WHERE "index" = ?',
        (index,),
    ).fetchone()
    if row is None:
        return None
    keys = ("index", "timestamp", "uuid", "src_ip", "src_port", "dst_ip", "dst_port", "pid", "pname")
    info = dict(zip(keys, row, strict=False))
    info.update(type=row[9], length=row[10])
    payload: bytes = row[12]
    shown = payload[:BODY_SHOWN]
    if row[11]:
        info["payload"] = {"kind": "hex", "text": hexdump(shown)}
    else:
        info["payload"] = {"kind": "text", "text": shown.decode("utf-8", "replace")}
    info["payload"].update(size=len(payload), truncated=len(payload) > BODY_SHOWN)
    return info


def totals(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts of the database: packets, exchanges, run-log lines, connections (fast: max ids)."""
    one = conn.execute(
        'SELECT (SELECT coalesce(max("index"), 0) FROM packets), (SELECT count(*) FROM exchanges),'
        " (SELECT count(*) FROM run_logs), (SELECT count(*) FROM connections)"
    ).fetchone()
    return {"packets": one[0], "exchanges": one[1], "run_logs": one[2], "connections": one[3]}


def check_capture_database(path: Path) -> None:
    """Raise :class:`SqlError` unless ``path`` is a readable capture database (it has ``exchanges``)."""
    conn = open_readonly(path)
    try:
        conn.execute("SELECT id FROM exchanges LIMIT 1").fetchall()
        conn.execute('SELECT "index" FROM packets LIMIT 1').fetchall()
    except sqlite3.Error as exc:
        raise SqlError(f"{path}: not a capture database ({exc})") from None
    finally:
        conn.close()


def rows_json(columns: Sequence[str], rows: list[list[Any]]) -> dict[str, Any]:
    """The JSON body of a row list: column names once, then the rows as arrays."""
    return {"columns": list(columns), "rows": rows}

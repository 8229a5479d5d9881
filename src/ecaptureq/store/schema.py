"""The SQLite schema of a capture database, and how a message becomes a ``packets`` row.

``packets`` has exactly the columns the eCaptureQ GUI exposes to its users' SQL, so a filter written for
that GUI works here unchanged. The other tables keep what the GUI does not: run logs, connections and
their heartbeats, the decoded HTTP exchanges, and each captured process's cgroup and container.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path
from typing import Any, Final

from ecaptureq.protocol import Event
from ecaptureq.protocol.text import looks_binary, payload_text

SCHEMA_VERSION: Final = 1
"""Stored in ``PRAGMA user_version``; a database with a newer version is refused."""

PACKET_COLUMNS: Final = (
    "index",
    "timestamp",
    "uuid",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "pid",
    "pname",
    "type",
    "length",
    "is_binary",
    "payload_utf8",
    "payload_binary",
)
"""The columns of ``packets``, in the GUI's order."""

DDL: Final = """
CREATE TABLE IF NOT EXISTS packets (
    "index"        INTEGER PRIMARY KEY,   -- 1, 2, 3 ... in arrival order
    timestamp      INTEGER NOT NULL,      -- as sent by the server (unit detected by magnitude)
    uuid           TEXT NOT NULL,
    src_ip         TEXT NOT NULL,
    src_port       INTEGER NOT NULL,
    dst_ip         TEXT NOT NULL,
    dst_port       INTEGER NOT NULL,
    pid            INTEGER NOT NULL,
    pname          TEXT NOT NULL,
    type           INTEGER NOT NULL,      -- 0 raw, 1/2 HTTP/1, HTTP/2 request, 3/4 response, 5 WebSocket
    length         INTEGER NOT NULL,
    is_binary      INTEGER NOT NULL,      -- 1 when the payload is binary (protocol.text.looks_binary)
    payload_utf8   TEXT NOT NULL,         -- the payload as UTF-8 (invalid bytes and NUL as U+FFFD)
    payload_binary BLOB NOT NULL,         -- the payload bytes, exactly
    connection_id  INTEGER,               -- connections.id the packet arrived on
    received_ns    INTEGER NOT NULL       -- when the recorder received it (Unix ns)
);
CREATE INDEX IF NOT EXISTS packets_uuid ON packets(uuid);
CREATE TABLE IF NOT EXISTS run_logs (
    id            INTEGER PRIMARY KEY,
    connection_id INTEGER,
    received_ns   INTEGER NOT NULL,
    line          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS processes (   -- from ecaptureq tls's "process pid=... cgroup=..." run-log lines
    pid           INTEGER NOT NULL,
    comm          TEXT NOT NULL,
    cgroup        TEXT NOT NULL,          -- cgroup v2 path
    container_id  TEXT NOT NULL,          -- as the container runtime named it; '' when none
    connection_id INTEGER,
    received_ns   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS processes_pid ON processes(pid);
CREATE TABLE IF NOT EXISTS connections (
    id           INTEGER PRIMARY KEY,
    url          TEXT NOT NULL,
    opened_ns    INTEGER NOT NULL,
    closed_ns    INTEGER,
    close_reason TEXT
);
CREATE TABLE IF NOT EXISTS heartbeats (
    id            INTEGER PRIMARY KEY,
    connection_id INTEGER,
    received_ns   INTEGER NOT NULL,
    timestamp     INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    message       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exchanges (
    id                     INTEGER PRIMARY KEY,
    connection             TEXT NOT NULL,  -- the uuid without its direction suffix
    protocol               TEXT NOT NULL,  -- http/1.1, http/1.0, h2
    stream_id              INTEGER,
    pid                    INTEGER,
    pname                  TEXT,
    src_ip                 TEXT,
    src_port               INTEGER,
    dst_ip                 TEXT,
    dst_port               INTEGER,
    started_ns             INTEGER,
    ended_ns               INTEGER,
    latency                REAL,           -- seconds, request end to response end
    method                 TEXT,
    url                    TEXT,
    host                   TEXT,
    path                   TEXT,
    status                 INTEGER,
    request_headers        TEXT,           -- JSON [[name, value], ...]
    response_headers       TEXT,
    request_content_type   TEXT,
    response_content_type  TEXT,
    request_body           BLOB,           -- decoded (Content-Encoding undone), capped
    response_body          BLOB,
    request_body_text      TEXT,
    response_body_text     TEXT,
    request_size           INTEGER,
    response_size          INTEGER,
    complete               INTEGER NOT NULL,
    errors                 TEXT,           -- JSON list
    detail                 TEXT NOT NULL   -- JSON: the rest of Exchange.to_dict() (not what has a column)
);
CREATE INDEX IF NOT EXISTS exchanges_started ON exchanges(started_ns);
CREATE TABLE IF NOT EXISTS delivered (
    key INTEGER PRIMARY KEY  -- an at-least-once source's message key (the NATS stream sequence)
);
"""

NODE_TABLES: Final = ("packets", "exchanges", "run_logs", "processes")
"""Tables with a ``node`` column: the fleet node (agent) a row came from, NULL for a direct source.

Added to existing databases by :func:`initialise` (an additive change: the schema version stays)."""


class StoreError(Exception):
    """The database cannot be used: not SQLite, a newer schema, unwritable. The message says which."""


class SqlError(ValueError):
    """The SQL is invalid; the message is SQLite's, with the text that failed."""


class FilterError(SqlError):
    """A filter condition is not valid on ``table`` (``packets`` or ``exchanges``): ``condition`` is its
    text and ``reason`` says why (SQLite's message, or that a whole query is not a condition)."""

    def __init__(self, condition: str, reason: str, table: str = "packets") -> None:
        on = "" if table == "packets" else f" for {table}"
        super().__init__(f"invalid filter{on}: {reason}")
        self.condition = condition
        self.reason = reason
        self.table = table


class NotCaptureDatabase(StoreError, SqlError):
    """The file is an SQLite database, but not a capture database (another program's, or ours damaged).

    ``path`` is the file, ``tables`` the tables it has (``None`` when it could not be read at all), and
    ``writing`` says whether it was opened to record into it. Nothing was written to it. It is both a
    :class:`StoreError` and a :class:`SqlError`, so that readers and writers see it as theirs.
    """

    def __init__(self, path: Path, tables: list[str] | None, *, writing: bool, detail: str = "") -> None:
        self.path = path
        self.tables = tables
        self.writing = writing
        found = f"its tables: {', '.join(tables) or 'none'}" if tables is not None else detail
        text = f"{path}: not a capture database ({found})"
        if writing:
            text += "; give a new file, or a database that ecaptureq record or ui wrote"
        super().__init__(text)


def table_names(conn: sqlite3.Connection) -> list[str]:
    """The tables of a database, sorted (SQLite's own ``sqlite_*`` tables left out)."""
    # One row (a JSON list): a reading thread takes the GIL back for each row, which the UI's recording
    # thread holds most of the time.
    sql = "SELECT json_group_array(name) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    names: list[str] = json.loads(conn.execute(sql).fetchone()[0])
    return sorted(names)


def check_capture_database(
    conn: sqlite3.Connection, path: Path, *, writing: bool, required: tuple[str, ...] = ("packets",)
) -> bool:
    """Check that ``conn`` is a capture database before anything is written to it; return whether it is
    empty (a new database, which :func:`initialise` then creates).

    To record into it (``writing``), a database must be empty or carry the schema version this
    ecaptureq writes. To read it, it must have the ``required`` tables (``packets`` is the eCaptureQ
    GUI's table, so the GUI's own databases can be queried too). Only reads are made.

    Raises:
        NotCaptureDatabase: another program's database, or a file that is not SQLite at all.
        StoreError: a capture database written by a newer ecaptureq.
    """
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = table_names(conn)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") == _UNFINISHED_TRANSACTION:
            example = f"sqlite3 {shlex.quote(str(path))} 'PRAGMA quick_check'"
            raise DamagedDatabase(f"{path}: {describe(exc)} (for example: {example})") from None
        raise NotCaptureDatabase(path, None, writing=writing, detail=f"{exc}") from None
    if not tables and version == 0:
        if writing:
            return True
        raise NotCaptureDatabase(path, tables, writing=writing)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this ecaptureq's ({SCHEMA_VERSION})"
        )
    if writing and (version < 1 or "packets" not in tables):
        raise NotCaptureDatabase(path, tables, writing=writing)
    if not set(required) <= set(tables):
        raise NotCaptureDatabase(path, tables, writing=writing)
    return False


def packet_values(event: Event) -> tuple[Any, ...]:
    """The values of ``packets`` for an event, from ``timestamp`` to ``length``, then the payload: what
    :func:`packet_row` computes ``is_binary`` and ``payload_utf8`` from (the store's committing process
    computes them itself)."""
    return (
        event.timestamp,
        event.uuid,
        event.src_ip,
        event.src_port,
        event.dst_ip,
        event.dst_port,
        event.pid,
        event.pname,
        int(event.type),
        event.length,
        event.payload,
    )


def packet_row(event: Event) -> tuple[Any, ...]:
    """The values of ``packets`` for an event, from ``timestamp`` to ``payload_binary`` (no ``index``)."""
    *values, payload = packet_values(event)
    return (*values, int(looks_binary(payload)), payload_text(payload), payload)


def initialise(conn: sqlite3.Connection) -> None:
    """Create the tables in a new database, or check an existing one's schema version.

    Raises:
        StoreError: the file is not a SQLite database, or was written by a newer ecaptureq.
    """
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"schema version {version} is newer than this ecaptureq's ({SCHEMA_VERSION})")
        conn.executescript(DDL)
        for table in NODE_TABLES:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if "node" not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN node TEXT")
        conn.execute("CREATE INDEX IF NOT EXISTS exchanges_node ON exchanges(node)")  # the UI's node list
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(describe(exc)) from None


_FILE_ERRORS: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR})


class DamagedDatabase(StoreError, SqlError):
    """A read failed on the way because the database file is damaged or unreadable (SQLite's corrupt,
    not-a-database or I/O error). Both a :class:`StoreError` and a :class:`SqlError`, as
    :class:`NotCaptureDatabase` is, so that a reader's handling of failed queries takes it too."""


def read_failure(exc: sqlite3.Error, what: str) -> SqlError:
    """The error of a read that failed on the way (``what`` says which read): :class:`DamagedDatabase`
    when the file is damaged, else a :class:`SqlError` (the SQL failed: an overflow in a filter's
    arithmetic, say)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = f"{what} failed: {describe(exc)}"
    return DamagedDatabase(text) if code is not None and code & 0xFF in _FILE_ERRORS else SqlError(text)


_UNFINISHED_TRANSACTION: Final = "SQLITE_READONLY_ROLLBACK"
"""SQLite's error when a read-only connection meets a hot rollback journal: a program stopped while
writing the database, and the journal that undoes its last transaction can only be played back by a
connection that may write."""


def describe(exc: sqlite3.Error) -> str:
    """A user-facing sentence for a SQLite error."""
    text = str(exc)
    if getattr(exc, "sqlite_errorname", "") == _UNFINISHED_TRANSACTION:
        return (
            "a program stopped while writing it, and its last transaction must be rolled back (the "
            "-journal file beside it) before it can be read: open it once for writing, then try again"
        )
    if "file is not a database" in text or "malformed" in text:
        return f"not a capture database, or a corrupt one ({text})"
    if "readonly" in text:
        return f"cannot write: the database or its directory is read-only ({text})"
    if "disk is full" in text or "disk I/O error" in text:
        return f"cannot write: {text}"
    if "unable to open" in text:
        return f"cannot open the database ({text})"
    return text

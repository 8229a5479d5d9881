"""The eCaptureQ GUI's two SQL modes, over a capture database or over live events.

A text that starts with ``SELECT`` (or ``WITH``) is a full query; anything else is a condition on
``packets``, as in ``dst_port = 443 AND pname = 'curl'``. ``index`` is a keyword in SQLite, so a bare
``index`` in the user's text is quoted before it runs (``index > 100`` works as in the GUI).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ecaptureq.protocol import Event
from ecaptureq.store.schema import (
    PACKET_COLUMNS,
    FilterError,
    NotCaptureDatabase,
    SqlError,
    check_capture_database,
    describe,
    packet_row,
)

__all__ = [
    "QUERY_SECONDS",
    "VALUE_BYTES",
    "Deadline",
    "FilterError",
    "PacketFilter",
    "QueryTimeout",
    "SqlError",
    "is_full_query",
    "open_readonly",
    "packets_sql",
    "quote_index",
    "run_query",
    "sql_error",
]

_TOKEN = re.compile(
    r"""
    (?P<skip> '(?:[^']|'')*'            # string literal
            | "(?:[^"]|"")*"            # quoted identifier
            | `[^`]*` | \[[^\]]*\]      # other identifier quotes
            | --[^\n]* | /\*.*?\*/      # comments
    )
    | (?P<word> \b[A-Za-z_][A-Za-z0-9_$]*\b )
    """,
    re.VERBOSE | re.DOTALL,
)
_FULL_QUERY = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|with|values)\b", re.IGNORECASE | re.DOTALL
)
_SELECT_COLUMNS = ", ".join(f'"{c}"' for c in PACKET_COLUMNS)


QUERY_SECONDS: Final = 10.0
"""Default time limit of one query (``query --timeout``, and each query of the web UI)."""

VALUE_BYTES: Final = 32 * 1024 * 1024
"""Largest string or blob a query may make or read (``SQLITE_LIMIT_LENGTH``): twice the largest payload a
frame carries, so every stored value is readable while ``printf('%.*c', 999999999, 'x')`` is refused."""


class QueryTimeout(SqlError):
    """A query ran longer than its limit and was interrupted; ``seconds`` is the limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the query took longer than {seconds:g} s and was stopped")
        self.seconds = seconds


def sql_error(exc: sqlite3.Error, text: str, seconds: float | None = None) -> SqlError:
    """The :class:`SqlError` for SQLite's error ``exc`` on ``text`` (:class:`QueryTimeout` if interrupted)."""
    message = str(exc)
    if message == "interrupted" and seconds is not None:
        return QueryTimeout(seconds)
    what = "invalid SQL: "
    if "too big" in message:  # valid SQL: a value stored, or made by it, is beyond the limit
        what = ""
        message = f"a value would be larger than {VALUE_BYTES} bytes, the limit on one value ({message})"
    return SqlError(f"{what}{message} (in: {text.strip()})")


REINTERRUPT_SECONDS: Final = 0.01
"""How often an expired :class:`Deadline`'s connection is interrupted again until the deadline is cancelled:
SQLite forgets an interrupt that comes between two statements, so the next statement is stopped within
this."""


class _Watchdog:
    """One thread that interrupts the connection of each :class:`Deadline` whose time is up (started with
    the first deadline). ``sqlite3.Connection.interrupt`` is the one call meant for another thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._due: list[tuple[float, int, Deadline]] = []  # a heap: (when, ticket, deadline)
        self._tickets = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline, when: float) -> int:
        """Interrupt ``deadline.conn`` at ``when`` (monotonic), and again every :data:`REINTERRUPT_SECONDS`
        after it, while ``deadline.ticket`` is the ticket returned; the caller holds :attr:`lock`."""
        ticket = next(self._tickets)
        heapq.heappush(self._due, (when, ticket, deadline))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ecaptureq-deadlines", daemon=True)
            self._thread.start()
        if self._due[0][1] == ticket:  # the first due now; else the thread wakes in time for it anyway
            self._wake.notify()
        return ticket

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                while self._due and (self._due[0][2].ticket != self._due[0][1] or self._due[0][0] <= now):
                    _, ticket, deadline = heapq.heappop(self._due)
                    if deadline.ticket == ticket:
                        deadline.expired = True
                        with contextlib.suppress(sqlite3.Error):
                            deadline.conn.interrupt()
                        deadline.ticket = self.watch(deadline, now + REINTERRUPT_SECONDS)
                self._wake.wait(self._due[0][0] - now if self._due else None)


_WATCHDOG: Final = _Watchdog()


class Deadline:
    """Bound what the queries of ``conn`` may cost: each value at most :data:`VALUE_BYTES`, and every query
    interrupted once ``seconds`` have passed since :meth:`start`. Use as a context manager around the
    query and the reading of its rows.

    One thread watches every deadline of the process and interrupts the connection when the time is up.
    Nothing runs in the querying thread meanwhile: a progress handler (Python called every thousand steps
    of SQLite's virtual machine) needs the GIL each time, and while a recording process decodes in its
    main thread, each call waited for it (a filter over 50,000 exchanges: 41 ms alone, 264 ms beside a
    busy thread; 50 ms beside it with the watchdog).
    """

    def __init__(self, conn: sqlite3.Connection, seconds: float | None) -> None:
        self.conn = conn
        self.seconds = seconds
        self.expired = False
        """Whether the time ran out (the connection was interrupted)."""
        self.ticket: int | None = None
        """While the clock runs, the watchdog's entry for it (see :meth:`_Watchdog.watch`)."""
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_BYTES)

    def start(self) -> Deadline:
        """Start the clock."""
        if self.seconds is not None and self.ticket is None:
            with _WATCHDOG.lock:
                self.ticket = _WATCHDOG.watch(self, time.monotonic() + self.seconds)
        return self

    def cancel(self) -> None:
        """Stop the clock (the queries are done): once this returns, the connection is not interrupted."""
        if self.ticket is not None:
            with _WATCHDOG.lock:
                self.ticket = None

    def __enter__(self) -> Deadline:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


def quote_index(sql: str) -> str:
    """Quote every bare ``index`` identifier (outside strings, quotes and comments)."""

    def repl(match: re.Match[str]) -> str:
        word = match.group("word")
        if word is not None and word.lower() == "index":
            return f'"{word}"'
        return match.group(0)

    return _TOKEN.sub(repl, sql)


def is_full_query(text: str) -> bool:
    """Whether ``text`` is a full query (``SELECT``/``WITH``/``VALUES``) rather than a condition."""
    return bool(_FULL_QUERY.match(text))


def packets_sql(text: str) -> str:
    """The SQL to run for the user's text: the full query, or the GUI columns of matching packets."""
    text = text.strip().rstrip(";")
    if not text:
        raise SqlError("empty query: give a condition such as dst_port = 443, or a SELECT")
    if is_full_query(text):
        return quote_index(text)
    return f'SELECT {_SELECT_COLUMNS} FROM packets WHERE ({quote_index(text)}) ORDER BY "index"'


def open_readonly(
    path: Path, required: tuple[str, ...] = ("packets",), *, any_thread: bool = False
) -> sqlite3.Connection:
    """Open a capture database read-only (the file must exist, and have the ``required`` tables);
    ``any_thread`` lets another thread use the connection.

    Raises:
        SqlError: the file is missing or cannot be opened.
        NotCaptureDatabase: it is not a capture database (another program's, or not SQLite at all).
    """
    if not path.is_file():
        if path.is_dir():
            raise SqlError(f"{path}: a directory, not a database file")
        if path.exists():  # a FIFO or a device: SQLite would read it as a file, or wait on it
            raise SqlError(f"{path}: not a regular file (a database is one)")
        raise SqlError(f"{path}: no such database file")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, check_same_thread=not any_thread)
    except sqlite3.Error as exc:
        raise SqlError(f"{path}: {describe(exc)}") from None
    try:
        check_capture_database(conn, path, writing=False, required=required)
    except (NotCaptureDatabase, SqlError):
        conn.close()
        raise
    except Exception as exc:  # StoreError: a newer schema
        conn.close()
        raise SqlError(str(exc)) from None
    return conn


def run_query(
    conn: sqlite3.Connection, text: str, seconds: float | None = None
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run the user's text (see :func:`packets_sql`); return the column names and a row iterator.

    ``seconds`` is the :class:`Deadline` the caller set on ``conn`` (it names the limit in the error).

    Raises:
        SqlError: SQLite refused the query; :class:`QueryTimeout` when it was interrupted.
    """
    sql = packets_sql(text)
    try:
        cursor = conn.execute(sql)
    except sqlite3.Error as exc:
        raise sql_error(exc, text, seconds) from None
    columns = [d[0] for d in cursor.description or ()]

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            yield from cursor
        except sqlite3.Error as exc:
            if str(exc) == "interrupted" and seconds is not None:
                raise QueryTimeout(seconds) from None
            if "too big" in str(exc):
                raise sql_error(exc, text, seconds) from None
            raise SqlError(f"query failed: {describe(exc)}") from None

    return columns, rows()


class PacketFilter:
    """A GUI condition applied to live events, before anything is stored.

    The condition runs in an in-memory SQLite against a one-row ``packets`` made from the event, so it
    means exactly what it means in ``query``. ``index`` is the event's arrival number.

    Raises:
        FilterError: the condition is not valid SQL, or is a full query.
    """

    def __init__(self, condition: str) -> None:
        condition = condition.strip().rstrip(";")
        if not condition or is_full_query(condition):
            raise FilterError(
                condition, "a condition on packets is expected, such as: dst_port = 443 AND pname = 'curl'"
            )
        values = ", ".join(f'? AS "{c}"' for c in PACKET_COLUMNS)
        self.condition = condition
        self._sql = f"SELECT 1 FROM (SELECT {values}) AS packets WHERE ({quote_index(condition)})"
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            self._db.execute(self._sql, (0, 0, "", "", 0, "", 0, 0, "", 0, 0, 0, "", b"")).fetchall()
        except sqlite3.Error as exc:
            raise FilterError(condition, f"{exc} (in: {condition})") from None

    def matches(self, event: Event, index: int = 0) -> bool:
        """Whether the event satisfies the condition (a runtime SQL error counts as no match)."""
        params = (index, *packet_row(event))
        try:
            return self._db.execute(self._sql, params).fetchone() is not None
        except sqlite3.Error:
            return False

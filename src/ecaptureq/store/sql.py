"""The eCaptureQ GUI's two SQL modes, over a capture database or over live events.

A text that starts with ``SELECT`` (or ``WITH``) is a full query; anything else is a condition on
``packets``, as in ``dst_port = 443 AND pname = 'curl'``. ``index`` is a keyword in SQLite, so a bare
``index`` in the user's text is quoted before it runs (``index > 100`` works as in the GUI).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ecaptureq.protocol import Event
from ecaptureq.store.schema import (
    PACKET_COLUMNS,
    NotCaptureDatabase,
    SqlError,
    check_capture_database,
    describe,
    packet_row,
)

__all__ = [
    "PacketFilter",
    "SqlError",
    "is_full_query",
    "open_readonly",
    "packets_sql",
    "quote_index",
    "run_query",
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


def open_readonly(path: Path, required: tuple[str, ...] = ("packets",)) -> sqlite3.Connection:
    """Open a capture database read-only (the file must exist, and have the ``required`` tables).

    Raises:
        SqlError: the file is missing or cannot be opened.
        NotCaptureDatabase: it is not a capture database (another program's, or not SQLite at all).
    """
    if not path.is_file():
        raise SqlError(f"{path}: no such database file")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
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


def run_query(conn: sqlite3.Connection, text: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run the user's text (see :func:`packets_sql`); return the column names and a row iterator.

    Raises:
        SqlError: SQLite refused the query.
    """
    sql = packets_sql(text)
    try:
        cursor = conn.execute(sql)
    except sqlite3.Error as exc:
        raise SqlError(f"invalid SQL: {exc} (in: {text.strip()})") from None
    columns = [d[0] for d in cursor.description or ()]

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            yield from cursor
        except sqlite3.Error as exc:
            raise SqlError(f"query failed: {describe(exc)}") from None

    return columns, rows()


class PacketFilter:
    """A GUI condition applied to live events, before anything is stored.

    The condition runs in an in-memory SQLite against a one-row ``packets`` made from the event, so it
    means exactly what it means in ``query``. ``index`` is the event's arrival number.

    Raises:
        SqlError: the condition is not valid SQL, or is a full query.
    """

    def __init__(self, condition: str) -> None:
        condition = condition.strip().rstrip(";")
        if not condition or is_full_query(condition):
            raise SqlError(
                "--filter takes a condition on packets, such as: dst_port = 443 AND pname = 'curl'"
            )
        values = ", ".join(f'? AS "{c}"' for c in PACKET_COLUMNS)
        self.condition = condition
        self._sql = f"SELECT 1 FROM (SELECT {values}) AS packets WHERE ({quote_index(condition)})"
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            self._db.execute(self._sql, (0, 0, "", "", 0, "", 0, 0, "", 0, 0, 0, "", b"")).fetchall()
        except sqlite3.Error as exc:
            raise SqlError(f"invalid --filter: {exc} (in: {condition})") from None

    def matches(self, event: Event, index: int = 0) -> bool:
        """Whether the event satisfies the condition (a runtime SQL error counts as no match)."""
        params = (index, *packet_row(event))
        try:
            return self._db.execute(self._sql, params).fetchone() is not None
        except sqlite3.Error:
            return False

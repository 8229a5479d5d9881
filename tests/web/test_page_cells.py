"""The exchange table's pages, made one JSON text by SQLite, hold what reading the rows one by one gives.

Another program's ``exchanges`` table (no types, no constraints) holds every kind of cell in every column:
blobs, long text, text with control characters and NULs, integers beyond a double, infinities. The page
is compared with the rows read one by one and made cells in Python (the way it is read when the page
cannot be made in SQL), and with what the browser must get for each kind of cell.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_support import get, h1_exchange, response

from ecaptureq.store import CaptureStore, Deadline
from ecaptureq.web import queries
from ecaptureq.web.queries import CELL_SHOWN, EXCHANGE_COLUMNS, JS_SAFE_INT

COLUMNS: tuple[str, ...] = ("pname", "pid", "src_ip", "dst_ip", "method", "host", "path", "status")
COLUMNS += ("response_size", "latency", "protocol", "complete", "started_ns", "src_port", "dst_port", "node")

CELLS: list[Any] = [
    b"\x00\xff" * 200,  # a long blob: its first bytes, marked
    b"ab",
    "x" * (CELL_SHOWN - 1),
    "y" * CELL_SHOWN,
    "z" * (CELL_SHOWN + 1),  # one character too many: cut and marked
    "\x01\u202e\x1b" * 150,  # control characters (escaped in JSON)
    "é" * 400,  # two bytes each: cut by characters, not bytes
    2**53,  # beyond a double: sent as its decimal text
    JS_SAFE_INT,
    -(2**63),
    2**63 - 1,
    1e999,  # infinity: JSON has none
    -1e999,
    1e-06,
    0.1,
    None,
    "",
    "1760495631000000000",
]


def foreign_database(path: Path, cells: list[Any]) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE packets (x)")
    conn.execute(f"CREATE TABLE exchanges (id, connection, detail, {', '.join(COLUMNS)})")
    row_id = 0
    for value in cells:
        for column in COLUMNS:
            row_id += 1
            conn.execute(f"INSERT INTO exchanges (id, {column}) VALUES (?, ?)", (row_id, value))
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = queries.connect(foreign_database(tmp_path / "foreign.db", CELLS))
    with Deadline(conn, 30):
        yield conn
    conn.close()


def rows_one_by_one(conn: sqlite3.Connection) -> list[list[Any]]:
    sql = f"{queries._exchange_select(conn)} WHERE id > ? ORDER BY id LIMIT ?"
    return queries._with_time(queries._bounded(conn.execute(sql, (0, 10_000))))


def rows_fetched(conn: sqlite3.Connection) -> list[int]:
    """A list that gets an item for each row ``conn`` hands to Python from now on (each of which takes the
    GIL back: in ui, the recording's thread holds it most of the time)."""
    fetched: list[int] = []

    def counted(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> tuple[Any, ...]:
        fetched.append(1)
        return row

    conn.row_factory = counted
    return fetched


def test_a_page_holds_the_cells_the_rows_one_by_one_give(reader: sqlite3.Connection) -> None:
    page = queries.exchange_rows(reader, None, 0, 10_000)
    assert len(page) == len(CELLS) * len(COLUMNS)
    assert page == rows_one_by_one(reader)


def test_a_page_comes_from_sqlite_as_one_row(tmp_path: Path) -> None:
    # Python's sqlite3 takes the GIL again for each row (in ui, each waited for the recording's thread):
    # a page of 200 exchanges is one row, and asking whether the table has a node column another.
    conn = queries.connect(foreign_database(tmp_path / "rows.db", ["a"] * 20))
    fetched = rows_fetched(conn)
    with Deadline(conn, 30):
        assert len(queries.exchange_rows(conn, None, 0, 200)) == 200
    assert len(fetched) == 2
    conn.close()


def test_each_kind_of_cell_as_the_browser_gets_it(reader: sqlite3.Connection) -> None:
    at = {name: i for i, name in enumerate(EXCHANGE_COLUMNS)}
    page = queries.exchange_rows(reader, "path IS NOT NULL", 0, 10_000)
    paths = [row[at["path"]] for row in page]
    assert paths[0] == "x'" + "00ff" * 75 + "…'" and paths[1] == "x'6162'"
    assert paths[2:5] == ["x" * (CELL_SHOWN - 1), "y" * CELL_SHOWN, "z" * CELL_SHOWN + "…"]
    assert paths[5] == ("\x01\u202e\x1b" * 100) + "…" and paths[6] == "é" * CELL_SHOWN + "…"
    assert paths[7:11] == [str(2**53), JS_SAFE_INT, str(-(2**63)), str(2**63 - 1)]
    assert paths[11:] == [None, None, 1e-06, 0.1, "", "1760495631000000000"]  # NULL is no row
    # the page's ids are in order, before ones too
    before = queries.exchange_rows_before(reader, None, 100, 20)
    assert [row[0] for row in before] == list(range(80, 100))


def test_text_with_a_nul_is_read_row_by_row(tmp_path: Path) -> None:
    # SQLite's text functions stop at a NUL: such a page is read one row at a time, cut in Python.
    conn = queries.connect(foreign_database(tmp_path / "nul.db", ["a\x00b" * 200, "ok"]))
    with Deadline(conn, 30):
        page = queries.exchange_rows(conn, None, 0, 10_000)
        assert page == rows_one_by_one(conn)
        paths = [row[EXCHANGE_COLUMNS.index("path")] for row in page if row[EXCHANGE_COLUMNS.index("path")]]
        assert paths == [("a\x00b" * 100)[:CELL_SHOWN] + "…", "ok"]
    conn.close()


def test_a_page_too_long_for_one_text_is_read_row_by_row(tmp_path: Path) -> None:
    # Control characters take six bytes each in JSON: 20,000 cells of 300 would pass the 32 MiB limit.
    conn = sqlite3.connect(tmp_path / "long.db")
    conn.execute("CREATE TABLE packets (x)")
    conn.execute(f"CREATE TABLE exchanges (id, connection, detail, {', '.join(COLUMNS)})")
    cell = "\x01" * CELL_SHOWN
    conn.executemany(
        f"INSERT INTO exchanges (id, {', '.join(COLUMNS[:10])}) VALUES (?{', ?' * 10})",
        [(i, *[cell] * 10) for i in range(1, 2_001)],
    )
    conn.commit()
    conn.close()
    reader = queries.connect(tmp_path / "long.db")
    with Deadline(reader, 30):
        page = queries.exchange_rows(reader, None, 0, 20_000)
        assert page == rows_one_by_one(reader)[: len(page)] and len(page) > 100
    reader.close()


def test_the_status_counts_come_from_sqlite_as_few_rows(tmp_path: Path) -> None:
    db = tmp_path / "ours.db"
    store = CaptureStore(db)
    store.connection_opened("ws://127.0.0.1:1/")
    for event in h1_exchange(get("/a"), response(b"{}")) + h1_exchange(
        get("/b"), response(b"{}"), fd=11, n=2
    ):
        store.add(event)
    store.close()
    conn = queries.connect(db)
    fetched = rows_fetched(conn)
    with Deadline(conn, 30):
        totals = queries.totals(conn)
    assert totals == {"packets": 4, "exchanges": 2, "run_logs": 0, "connections": 1, "nodes": []}
    assert len(fetched) <= 3  # the tables, the counts, whether there is a node column (was 12)
    conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM exchanges",
        'SELECT id, 1, 1, path, path, x\'00ff\' AS "a""b" FROM exchanges -- a comment at the end',
        "WITH q AS (SELECT id, path, latency FROM exchanges WHERE id > 20) SELECT * FROM q ORDER BY id DESC",
        "SELECT path FROM exchanges WHERE 0",
    ],
)
@pytest.mark.parametrize("limit", [1, 7, 5000])
def test_the_packets_view_holds_what_the_rows_one_by_one_give(
    reader: sqlite3.Connection, sql: str, limit: int
) -> None:
    answer = queries.packet_rows(reader, sql, limit)
    assert answer == queries._packet_rows_one_by_one(reader, sql, limit)
    assert answer["truncated"] == (limit < 5000 and "WHERE 0" not in sql)


def test_the_packets_view_comes_from_sqlite_as_two_rows(reader: sqlite3.Connection) -> None:
    fetched = rows_fetched(reader)
    answer = queries.packet_rows(reader, "SELECT id, path FROM exchanges", 200)
    assert len(answer["rows"]) == 200 and answer["truncated"]
    assert len(fetched) == 1  # the page (the column names come without a row); 201 before


def test_the_rows_after_an_id_beyond_a_double_are_read_after_its_integer(tmp_path: Path) -> None:
    # An id beyond 2**53 is sent as its decimal text; read after as text, it would be after every integer.
    conn = sqlite3.connect(tmp_path / "big.db")
    conn.execute("CREATE TABLE packets (x)")
    conn.execute(f"CREATE TABLE exchanges (id INTEGER PRIMARY KEY, connection, detail, {', '.join(COLUMNS)})")
    big = [2**53 + 1, 2**53 + 2, 2**63 - 1]
    conn.executemany("INSERT INTO exchanges (id, path) VALUES (?, 'p')", [(i,) for i in big])
    conn.commit()
    conn.close()
    reader = queries.connect(tmp_path / "big.db")
    with Deadline(reader, 30):
        first = queries.exchange_rows(reader, None, 0, 1)
        assert [row[0] for row in first] == [str(big[0])]
        after = queries.page_after(first[0][0])
        assert after == big[0]
        assert [row[0] for row in queries.exchange_rows(reader, None, after, 5)] == [str(i) for i in big[1:]]
    reader.close()
    assert queries.page_after(12) == 12 and queries.page_after("12") == "12"  # a text id stays text
    assert queries.page_after("abc") == "abc" and queries.page_after(str(2**64)) == str(2**64)

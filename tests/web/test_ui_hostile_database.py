"""A database another program wrote, or damaged: every value of the wrong type or size in it is shown as
well as it can be, or answered with a 4xx naming it, never a 500 (each case was one)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_support import Ui, make_demo_database, start_ui, stop_ui


def _tamper(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


@contextlib.contextmanager
def _ui_over(db: Path) -> Iterator[Ui]:
    """The UI browsing ``db``, stopped after: whatever the database holds, it ends without a traceback."""
    served = start_ui("--db", str(db))
    yield served
    _code, err = stop_ui(served)
    assert "Traceback" not in err, err


_ADD_KEY = "substr(detail, 1, length(detail) - 1) || ',\"{key}\":{value}}}'"
"""SQL of ``detail`` with one more key at the end of its object (the one a JSON reader keeps)."""


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    db = make_demo_database(tmp_path_factory.mktemp("ui") / "tampered.db", 120)
    _tamper(
        db,
        "UPDATE packets SET timestamp = 'abc' WHERE \"index\" = 1",
        "UPDATE packets SET timestamp = 1795844619.5, payload_binary = 'text' WHERE \"index\" = 2",
        "UPDATE packets SET uuid = x'00', payload_binary = 12345 WHERE \"index\" = 3",
        "UPDATE packets SET timestamp = '99999999999999999999999' WHERE \"index\" = 4",
        # an infinite latency, and a start beyond 64 bits
        f"UPDATE exchanges SET detail = {_ADD_KEY.format(key='latency', value='1e400')} WHERE id = 1",
        f"UPDATE exchanges SET detail = {_ADD_KEY.format(key='started_ns', value=10**30)} WHERE id = 2",
        "UPDATE exchanges SET started_ns = '99999999999999999999999' WHERE id = 3",
        "UPDATE exchanges SET detail = 'Inf' WHERE id = 5",  # not JSON (SQLite's json_set writes Inf)
        "INSERT INTO processes SELECT pid, 'c', x'01', x'02', NULL, 1, NULL FROM exchanges WHERE id = 4",
        "DROP TABLE run_logs",
        "DROP TABLE connections",
    )
    with _ui_over(db) as served:
        yield served


@pytest.mark.e2e
@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_a_packet_of_other_types_is_shown_as_its_cells(tampered: Ui, index: int) -> None:
    answer = httpx.get(f"{tampered.base}/api/packet/{index}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["index"] == index and body["payload"]["kind"] in ("hex", "text")
    if index in (1, 2, 4):
        assert body["time"] is None and body["time_unit"] == "not a time"
    if index == 3:
        assert body["uuid"] == "x'00'" and body["payload"]["text"] == "12345"


@pytest.mark.e2e
def test_a_detail_beyond_its_types_is_a_422_and_the_other_rows_are_shown(tampered: Ui) -> None:
    for exchange_id, field in ((1, "latency"), (2, "started_ns"), (5, "detail: expected a JSON object")):
        answer = httpx.get(f"{tampered.base}/api/exchange/{exchange_id}")
        assert answer.status_code == 422 and field in answer.json()["error"], answer.text
    labels = httpx.get(f"{tampered.base}/api/exchange/4")
    assert labels.status_code == 200 and labels.json()["cgroup"] == "x'01'"
    rows = httpx.get(f"{tampered.base}/api/exchanges", params={"count": 1, "offset": 0}).json()
    assert rows["rows"][2][0] == 3 and rows["rows"][2][1] is None  # its started_ns is no time
    har = httpx.get(f"{tampered.base}/api/har")
    assert har.status_code == 200 and "exchange 1: latency" in har.text and "export stopped" not in har.text
    assert "exchange 5: detail: expected a JSON object" in har.text  # named, not dropped in silence


@pytest.mark.e2e
def test_status_counts_a_missing_table_as_empty(tampered: Ui) -> None:
    answer = httpx.get(f"{tampered.base}/api/status")
    assert answer.status_code == 200, answer.text
    totals = answer.json()["totals"]
    assert totals["run_logs"] == 0 and totals["connections"] == 0 and totals["exchanges"] > 3


@pytest.mark.e2e
def test_a_query_putting_a_huge_number_in_a_time_column_shows_no_time(tampered: Ui) -> None:
    answer = httpx.get(
        f"{tampered.base}/api/packets", params={"sql": "SELECT '99999999999999999999999' AS ended_ns"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["times"] == {"0": [None]}


@pytest.mark.e2e
def test_a_query_putting_other_text_in_a_time_column_shows_no_time(tampered: Ui) -> None:
    # str.isdigit() takes '²', lstrip('-') takes '--5': int() refused both (a 500)
    sql = "SELECT '²' AS timestamp, '--5' AS ended_ns, '-5' AS started_ns"
    answer = httpx.get(f"{tampered.base}/api/packets", params={"sql": sql})
    assert answer.status_code == 200, answer.text
    assert answer.json()["times"] == {"0": [None], "1": [None], "2": ["-"]}
    union = "0) UNION SELECT 1,'--1',3,4,5,6,7,8,9,10,11,12,13,14,15 WHERE (1"
    rows = httpx.get(f"{tampered.base}/api/exchanges", params={"filter": union})
    assert rows.status_code == 200, rows.text
    assert rows.json()["rows"] == [[1, None, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]


def _loosen(conn: sqlite3.Connection, table: str) -> None:
    """Make ``table`` a table without column types (as another program may write one): any cell keeps
    the type it is given."""
    names = ", ".join(f'"{row[1]}"' for row in conn.execute(f"PRAGMA table_info({table})"))
    conn.execute(f"CREATE TABLE loose ({names})")
    conn.execute(f"INSERT INTO loose SELECT {names} FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE loose RENAME TO {table}")


@pytest.fixture(scope="module")
def untyped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    db = make_demo_database(tmp_path_factory.mktemp("ui") / "untyped.db", 120)
    conn = sqlite3.connect(db)
    with conn:
        _loosen(conn, "packets")
        _loosen(conn, "exchanges")
    conn.close()
    _tamper(
        db,
        "UPDATE packets SET timestamp = '1795845462063107265' WHERE \"index\" = 1",  # text, not an integer
        "UPDATE packets SET timestamp = '--5' WHERE \"index\" = 2",
        "UPDATE packets SET timestamp = '²' WHERE \"index\" = 3",
        "UPDATE exchanges SET started_ns = '--1' WHERE id = 3",
        # incomplete rows a stream re-reads by id: one that is no number, one beyond 64 bits
        "UPDATE exchanges SET id = 'abc', complete = 0 WHERE id = 5",
        "UPDATE exchanges SET id = '9999999999999999999', complete = 0 WHERE id = 6",
    )
    with _ui_over(db) as served:
        yield served


@pytest.mark.e2e
def test_a_packet_time_stored_as_text_is_read_as_its_digits(untyped: Ui) -> None:
    shown = {}
    for index in (1, 2, 3):
        answer = httpx.get(f"{untyped.base}/api/packet/{index}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        shown[index] = (body["timestamp"], body["time"], body["time_unit"])
    assert shown == {
        1: ("1795845462063107265", "2026-11-28T05:57:42.063107Z", "ns"),
        2: ("--5", None, "not a time"),
        3: ("²", None, "not a time"),
    }
    rows = httpx.get(f"{untyped.base}/api/packets", params={"sql": '"index" <= 3'})
    assert rows.status_code == 200, rows.text
    assert rows.json()["times"]["1"] == ["2026-11-28T05:57:42.063107Z", None, None]


@pytest.mark.e2e
def test_rows_whose_id_or_time_is_text_are_listed_and_streamed(untyped: Ui) -> None:
    rows = httpx.get(f"{untyped.base}/api/exchanges", params={"count": 1})
    assert rows.status_code == 200, rows.text
    by_id = {row[0]: row for row in rows.json()["rows"]}
    assert by_id[3][1] is None and "abc" in by_id and "9999999999999999999" in by_id
    # the stream re-reads its incomplete rows by id at each tick: it went on, not broke off
    events: list[str] = []
    with httpx.stream("GET", f"{untyped.base}/api/stream", timeout=10) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if events.count("status") == 3:
                break
    assert events[0] == "rows" and "failure" not in events, events


@pytest.mark.e2e
def test_a_position_past_the_last_id_of_64_bits_is_no_row(tmp_path: Path) -> None:
    db = make_demo_database(tmp_path / "last-id.db", 40)
    _tamper(db, "DELETE FROM exchanges WHERE id > 1", f"UPDATE exchanges SET id = {2**63 - 1}")
    served = start_ui("--db", str(db))
    try:
        for offset in (0, 1, 2**63 - 1):
            answer = httpx.get(f"{served.base}/api/exchanges", params={"offset": offset, "count": 1})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["total"] == 1 and len(body["rows"]) == (1 if offset == 0 else 0)
    finally:
        _code, err = stop_ui(served)
    assert "Traceback" not in err, err


@pytest.mark.e2e
def test_status_of_a_damaged_or_removed_database_is_a_400(tmp_path: Path) -> None:
    db = make_demo_database(tmp_path / "damaged.db", 40)
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'exchanges'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    served = start_ui("--db", str(db))
    try:
        with db.open("r+b") as file:  # the table's first page, after the UI checked the file
            file.seek((root - 1) * page)
            file.write(b"\xff" * page)
        damaged = httpx.get(f"{served.base}/api/status")
        assert damaged.status_code == 400 and "malformed" in damaged.json()["error"], damaged.text
        db.unlink()
        removed = httpx.get(f"{served.base}/api/status")
        assert removed.status_code == 400 and "no such database file" in removed.json()["error"], removed.text
    finally:
        _code, err = stop_ui(served)
    assert "Traceback" not in err, err

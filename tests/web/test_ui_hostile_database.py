"""A database another program wrote, or damaged: every value of the wrong type or size in it is shown as
well as it can be, or answered with a 4xx naming it, never a 500 (each case was one)."""

from __future__ import annotations

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
        "INSERT INTO processes SELECT pid, 'c', x'01', x'02', NULL, 1, NULL FROM exchanges WHERE id = 4",
        "DROP TABLE run_logs",
        "DROP TABLE connections",
    )
    served = start_ui("--db", str(db))
    yield served
    _code, err = stop_ui(served)
    assert "Traceback" not in err, err


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
    for exchange_id, field in ((1, "latency"), (2, "started_ns")):
        answer = httpx.get(f"{tampered.base}/api/exchange/{exchange_id}")
        assert answer.status_code == 422 and field in answer.json()["error"], answer.text
    labels = httpx.get(f"{tampered.base}/api/exchange/4")
    assert labels.status_code == 200 and labels.json()["cgroup"] == "x'01'"
    rows = httpx.get(f"{tampered.base}/api/exchanges", params={"count": 1, "offset": 0}).json()
    assert rows["rows"][2][0] == 3 and rows["rows"][2][1] is None  # its started_ns is no time
    har = httpx.get(f"{tampered.base}/api/har")
    assert har.status_code == 200 and "exchange 1: latency" in har.text and "export stopped" not in har.text


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

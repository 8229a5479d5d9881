"""Rows of every age and state in one capture database, read by every sink that reads exchanges:
``ecaptureq export --format har`` and ``ecaptureq ui``'s detail and HAR download (real processes).

An exchange written today, two written before the flow format had a version (format 1: one with
everything in ``detail``, one as the store of that time wrote it, headers and bodies in columns), one
whose ``detail`` is damaged and one written by a newer ecaptureq: the readable ones are exported and
shown, the others are named with what is wrong with them, and nothing fails.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_cli
from flow_support import FORMAT_1, FORMAT_1_ROW
from haralyzer import HarParser
from ui_support import Ui, sample_exchange, start_ui, stop_ui

from ecaptureq.decode.model import FLOW_FORMATS
from ecaptureq.store import CaptureStore
from ecaptureq.store.writer import exchange_row

pytestmark = pytest.mark.e2e

NEWER_FORMAT = max(FLOW_FORMATS) + 1

DAMAGED = 2
NEWER = 3
OLD = FORMAT_1["id"]
OLD_STORED = 8


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flows") / "flows.db"
    CaptureStore(path).close()  # the schema as record writes it
    conn = sqlite3.connect(path)
    marks = ", ".join("?" * len(conn.execute("SELECT * FROM exchanges LIMIT 0").description))
    damaged = list(exchange_row(DAMAGED, sample_exchange(DAMAGED)))
    detail = json.loads(damaged[-2])
    detail["request"]["trailers"] = "X-Sum: 1"  # not a list of pairs
    damaged[-2] = json.dumps(detail)
    newer = list(exchange_row(NEWER, sample_exchange(NEWER)))
    newer[-2] = json.dumps({**json.loads(newer[-2]), "format_version": NEWER_FORMAT})
    old_stored = list(FORMAT_1_ROW)  # as the store wrote it before the format had a version, renumbered
    old_stored[0] = OLD_STORED
    old_stored[-2] = json.dumps({**json.loads(old_stored[-2]), "id": OLD_STORED})
    with conn:
        conn.execute(f"INSERT INTO exchanges VALUES ({marks})", exchange_row(1, sample_exchange(1)))
        conn.execute(f"INSERT INTO exchanges VALUES ({marks})", damaged)
        conn.execute(f"INSERT INTO exchanges VALUES ({marks})", newer)
        conn.execute(
            "INSERT INTO exchanges (id, connection, protocol, complete, started_ns, detail)"
            " VALUES (?, ?, 'http/1.1', 1, ?, ?)",
            (OLD, FORMAT_1["connection"], FORMAT_1["started_ns"], json.dumps(FORMAT_1)),
        )
        conn.execute(f"INSERT INTO exchanges VALUES ({marks})", old_stored)
    conn.close()
    return path


@pytest.fixture(scope="module")
def ui(db: Path) -> Iterator[Ui]:
    served = start_ui("--db", str(db))
    yield served
    code, err = stop_ui(served)
    assert code == 0, err


def _check_har(doc: dict) -> None:  # type: ignore[type-arg]
    HarParser(doc)  # an independent HAR reader takes it
    entries = doc["log"]["entries"]
    assert sorted(e["_ecaptureq"]["exchange_id"] for e in entries) == [1, OLD, OLD_STORED]
    for old in (e for e in entries if e["_ecaptureq"]["exchange_id"] in (OLD, OLD_STORED)):
        assert old["request"]["url"] == "https://api.example.com/v1/login?next=/a"
        assert old["request"]["postData"]["params"] == [
            {"name": "user", "value": "o'neil"},
            {"name": "pass", "value": "hunter2"},
        ]
        assert old["response"]["content"] == {
            "size": 30,
            "mimeType": "application/octet-stream",
            "text": "AAECYmluYXJ5/w==",
            "encoding": "base64",
        }
    comment = doc["log"]["comment"]
    assert comment.startswith("2 exchanges left out")
    assert f"exchange {DAMAGED}: request.trailers: expected a list of [name, value] pairs" in comment
    assert (
        f"exchange {NEWER}: format_version: expected one of {', '.join(map(str, FLOW_FORMATS))},"
        f" found {NEWER_FORMAT}" in comment
    )


def test_export_har_keeps_what_it_can_read_and_names_the_rest(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "flows.har"
    result = run_cli("export", "--db", str(db), "--format", "har", "-o", str(out))
    assert result.returncode == 0, result.stderr
    _check_har(json.loads(out.read_text()))
    assert "3 exchanges written to" in result.stderr
    # said, not only filed
    assert "warning: 2 exchanges left out, unreadable as stored" in result.stderr


def test_ui_shows_old_rows_and_says_what_is_wrong_with_the_others(ui: Ui) -> None:
    _check_har(httpx.get(f"{ui.base}/api/har", timeout=30).json())
    rows = httpx.get(f"{ui.base}/api/exchanges", timeout=30).json()["rows"]
    assert [row[0] for row in rows] == [1, DAMAGED, NEWER, OLD, OLD_STORED]  # the table lists every row
    for ex_id in (OLD, OLD_STORED):
        old = httpx.get(f"{ui.base}/api/exchange/{ex_id}", timeout=30)
        assert old.status_code == 200, old.text
        detail = old.json()
        assert detail["url"] == "https://api.example.com/v1/login?next=/a"
        assert detail["request"]["first_line"] == "POST https://api.example.com/v1/login?next=/a"
        assert detail["request"]["headers"][2] == ["X-Odd", "caf\u00e9 \u0001"]
        assert detail["response"]["body"]["kind"] == "hex"
        assert "--data-raw 'user=o%27neil&pass=hunter2'" in detail["curl"]
    for ex_id, field in ((DAMAGED, "request.trailers"), (NEWER, "format_version")):
        answer = httpx.get(f"{ui.base}/api/exchange/{ex_id}", timeout=30)
        assert answer.status_code == 422, answer.text
        assert field in answer.json()["error"]

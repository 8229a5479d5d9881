"""A SQLite file that is not a capture database is refused by every command, and left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, start_serve, stop_serve

from ecaptureq.store import CaptureStore, NotCaptureDatabase


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """Another program's SQLite database: a users table with one row."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.commit()
    conn.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.e2e
def test_record_into_a_foreign_database_exits_11_and_leaves_it_byte_identical(foreign: Path) -> None:
    before = _digest(foreign)
    served = start_serve("--demo", "--interval", "0.05")  # a live source: record would write at once
    try:
        result = run_cli("record", served.url, "--db", str(foreign), timeout=30)
    finally:
        stop_serve(served)
    assert result.returncode == 11, result.stderr
    assert result.stderr.splitlines() == [
        f"ecaptureq record: {foreign}: not a capture database (its tables: users); "
        "give a new file, or a database that ecaptureq record or ui wrote"
    ]
    assert _digest(foreign) == before
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["other.db"]  # no -wal or -shm either


def test_capture_store_refuses_it_with_the_tables_it_found(foreign: Path) -> None:
    before = _digest(foreign)
    with pytest.raises(NotCaptureDatabase) as info:
        CaptureStore(foreign)
    assert info.value.path == foreign and info.value.tables == ["users"]
    assert _digest(foreign) == before


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args",
    [
        ["query", "pid = 1"],
        ["query", "SELECT * FROM users"],
        ["export", "--format", "har", "-o", "out.har"],
    ],
)
def test_reading_commands_say_it_is_not_a_capture_database(foreign: Path, args: list[str]) -> None:
    before = _digest(foreign)
    command, *rest = args
    rest = [str(foreign.parent / a) if a == "out.har" else a for a in rest]
    result = run_cli(command, "--db", str(foreign), *rest)
    assert result.returncode == 11, result.stderr
    assert result.stderr.splitlines() == [
        f"ecaptureq {command}: {foreign}: not a capture database (its tables: users)"
    ]
    assert _digest(foreign) == before
    assert not (foreign.parent / "out.har").exists()


@pytest.mark.e2e
def test_ui_refuses_it_to_browse_or_to_record(foreign: Path) -> None:
    before = _digest(foreign)
    browse = run_cli("ui", "--db", str(foreign), "--listen", "http://127.0.0.1:0/")
    assert browse.returncode == 11, browse.stderr
    assert browse.stderr.splitlines() == [
        f"ecaptureq ui: {foreign}: not a capture database (its tables: users)"
    ]
    live = run_cli(
        "ui", "--source", "ws://127.0.0.1:9/", "--db", str(foreign), "--listen", "http://127.0.0.1:0/"
    )
    assert live.returncode == 11, live.stderr
    assert live.stderr.splitlines() == [
        f"ecaptureq ui: {foreign}: not a capture database (its tables: users); "
        "give a new file, or a database that ecaptureq record or ui wrote"
    ]
    assert _digest(foreign) == before


def test_an_empty_file_is_a_new_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    CaptureStore(empty).close()
    conn = sqlite3.connect(empty)
    assert {"packets", "exchanges"} <= {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()

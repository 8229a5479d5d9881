"""export shows how far it has read on a terminal (stderr), and nothing on a pipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli, run_on_terminal

sys.path.insert(0, str(Path(__file__).resolve().parent / "web"))
from ui_support import make_demo_database

from ecaptureq.store.export import PROGRESS_ROWS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_database(tmp_path_factory.mktemp("export") / "demo.db", 3 * PROGRESS_ROWS)


@pytest.mark.parametrize(("fmt", "noun"), [("jsonl", "packets"), ("pcapng", "packets"), ("har", "exchanges")])
def test_export_shows_its_progress_on_a_terminal(db: Path, tmp_path: Path, fmt: str, noun: str) -> None:
    out = tmp_path / f"out.{fmt}"
    code, shown = run_on_terminal(
        ["export", "--db", str(db), "--format", fmt, "-o", str(out)], stream="stderr"
    )
    assert code == 0, shown
    updates = [line for line in shown.split("\r\x1b[K") if line.startswith("exporting: ")]
    read = [int(u.split()[1].replace(",", "")) for u in updates]
    assert read and read == sorted(read) and read[0] == PROGRESS_ROWS, shown
    total = int(updates[0].split()[3].replace(",", ""))
    assert all(f" of {total:,} {noun} (" in u for u in updates) and total >= read[-1]
    # the line is cleared before the summary
    assert shown.rstrip().split("\r\x1b[K")[-1].startswith("ecaptureq export: ")
    assert out.stat().st_size > 0


def test_export_to_a_pipe_shows_no_progress(db: Path, tmp_path: Path) -> None:
    result = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0 and "exporting" not in result.stderr and "\x1b" not in result.stderr

"""Queries cannot be made to run long, eat memory or fail with 500; a bad Host cannot break HAR.

Against real processes: ``ecaptureq query``, ``ecaptureq export`` and ``ecaptureq ui`` (uvicorn).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import CLI, ENV, run_cli
from haralyzer import HarParser
from hostile_support import get, h1_exchange, h2_exchange, peak_rss_of, response

from ecaptureq.cli.query import TABLE_BLOCK
from ecaptureq.store import CaptureStore
from ecaptureq.store.sql import VALUE_BYTES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from ui_support import Ui, start_ui, stop_ui

pytestmark = pytest.mark.e2e

SLOW = "SELECT length(replace(printf('%.*c', 100000000, 'x'), 'x', 'yy')) FROM packets"
HUGE = "SELECT length(printf('%.*c', 999999999, 'x')) FROM packets"
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
BAD_HOSTS = ["[", "[::1", "]", "a]b[", "http://[", "%zz", "\x00", "é" * 3]


def hostile_db(path: Path) -> Path:
    """Exchanges whose Host, :authority and URL no URL parser accepts, and a normal one."""
    store = CaptureStore(path)
    store.connection_opened("ws://127.0.0.1:1/")
    n = 0
    for i, host in enumerate(BAD_HOSTS):
        for ev in h1_exchange(get(f"/p{i}?a=1&b", [("Host", host)]), response(b"{}"), fd=10 + i, n=n):
            store.add(ev)
        n += 2
    req = [(":method", "GET"), (":scheme", "-o/tmp/x"), (":authority", "["), (":path", "//[/")]
    for ev in h2_exchange(req, [(":status", "200")], b"x", n=n):
        store.add(ev)
    for ev in h1_exchange(
        get("/ok"), response(b'{"ok": true}', [("Content-Type", "application/json")]), fd=99
    ):
        store.add(ev)
    store.close()
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_db(tmp_path_factory.mktemp("q") / "hostile.db")


@pytest.fixture(scope="module")
def ui(db: Path) -> Iterator[Ui]:
    served = start_ui("--db", str(db))
    yield served
    code, err = stop_ui(served)
    assert code == 0, err


def test_export_har_carries_bad_hosts_as_text(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.har"
    result = run_cli("export", "--db", str(db), "--format", "har", "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    urls = [e["request"]["url"] for e in doc["log"]["entries"]]
    assert len(urls) == len(BAD_HOSTS) + 2
    assert "https://[/p0?a=1&b" in urls
    HarParser(doc)  # an independent HAR reader takes it


def test_ui_har_and_details_never_answer_500(ui: Ui) -> None:
    har = httpx.get(f"{ui.base}/api/har", timeout=30)
    assert har.status_code == 200, har.text
    assert len(har.json()["log"]["entries"]) == len(BAD_HOSTS) + 2
    rows = httpx.get(f"{ui.base}/api/exchanges").json()["rows"]
    for row in rows:
        detail = httpx.get(f"{ui.base}/api/exchange/{row[0]}")
        assert detail.status_code == 200, detail.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/exchange/99999999999999999999999999", 404),
        ("/api/exchange/-1", 404),
        ("/api/exchange/%F0%9F%92%A5", 400),
        ("/api/exchange/1%00", 400),
        ("/api/packet/9223372036854775808", 404),
        ("/api/packet/%ff", 400),
        ("/api/exchanges?after_id=99999999999999999999999999", 400),
        ("/api/exchanges?after_id=-99999999999999999999999999", 400),
        ("/api/exchanges?limit=1e9", 400),
        ("/api/stream?after_id=99999999999999999999999999", 400),
        ("/api/exchanges?filter=1) UNION SELECT x'00ff',1,2,3,4,5,6,7,8,9,10,1e999,12,13,14 WHERE (1", 200),
        ("/api/exchanges?filter=1) UNION SELECT x'00ff',1,2,3,4,5,6,7,8,9,10,11,12,13 --", 400),
        ("/api/har?filter=1) UNION SELECT 'not json', 1, 2 WHERE (1", 400),
        ("/api/stream?filter=1) UNION SELECT 1 --", 400),
        ("/api/packets?sql=SELECT x'00ff', 1e999, -1e999", 200),
        ("/api/packets?sql=SELECT 'x' UNION SELECT x'00'", 200),
    ],
)
def test_ui_hostile_parameters_answer_400_or_404(ui: Ui, path: str, status: int) -> None:
    answer = httpx.get(f"{ui.base}{path}", timeout=30)
    assert answer.status_code == status, answer.text
    answer.json()  # always JSON, never a traceback page


def test_query_cli_timeout_and_value_limit(db: Path) -> None:
    forever = run_cli("query", "--db", str(db), "--timeout", "1", FOREVER, timeout=60)
    assert forever.returncode == 2
    assert "took longer than 1 s and was stopped (--timeout 1)" in forever.stderr
    assert "Traceback" not in forever.stderr
    slow = run_cli("query", "--db", str(db), SLOW, timeout=60)  # limited to 32 MiB values: quick NULLs
    assert slow.returncode == 0, slow.stderr
    assert run_cli("query", "--db", str(db), "--timeout", "0", "1").returncode == 2
    assert run_cli("query", "--db", str(db), "--timeout", "nan", "1").returncode == 2


ENDLESS_ROWS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, 'y' AS pad FROM c"


def test_query_table_streams_rows_until_the_timeout_in_bounded_memory(db: Path, tmp_path: Path) -> None:
    out, err = tmp_path / "table.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [*CLI, "query", "--db", str(db), "--timeout", "3", ENDLESS_ROWS],
            stdout=stdout,
            stderr=stderr,
            env=ENV,
        )
        # The process's own high-water mark (VmHWM), read until it exits: wait4's ru_maxrss would count
        # this test process's memory, which the child had before it ran the program.
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _rss_kib(proc.pid))
            time.sleep(0.05)
    assert proc.returncode == 2 and "took longer than 3 s" in err.read_text(), err.read_text()
    lines = out.read_text().splitlines()
    assert lines[0].split() == ["x", "pad"] and set(lines[1]) <= {"-", " "}
    shown = [int(line.split()[0]) for line in lines[2:]]
    assert len(shown) > 2 * TABLE_BLOCK and shown == list(range(1, len(shown) + 1))
    # A later block widens the column (1000 -> 10000); its rows stay one cell per column.
    assert lines[2 + 9999].split() == ["10000", "y"] and len(lines[2 + 9999]) > len(lines[2 + 998])
    # Every row was held until the end before (700 MB in 5 s): now a block at a time.
    assert 0 < peak < 150 * 1024, f"query grew to {peak} KiB"


def test_ui_attack_queries_are_bounded_and_status_keeps_answering(ui: Ui) -> None:
    answers: list[httpx.Response] = []

    def attack(sql: str) -> None:
        answers.append(httpx.get(f"{ui.base}/api/packets", params={"sql": sql}, timeout=60))

    attackers = [threading.Thread(target=attack, args=(sql,)) for sql in (FOREVER, FOREVER, HUGE, SLOW)]
    attackers += [threading.Thread(target=attack, args=(FOREVER,)) for _ in range(3)]  # over the slots
    for t in attackers:
        t.start()
    statuses = 0
    while any(t.is_alive() for t in attackers):
        status = httpx.get(f"{ui.base}/api/status", timeout=5)  # answers within 5 s while they run
        assert status.status_code == 200
        statuses += 1
        time.sleep(0.2)
    for t in attackers:
        t.join()
    assert statuses >= 5  # the attacks ran for seconds; status answered all along
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 400, 503}, codes
    stopped = [a.json()["error"] for a in answers if a.status_code == 400]
    assert any("took longer than 10 s" in e for e in stopped), stopped
    rss = _rss_kib(ui.proc.pid)
    assert rss < 1024 * 1024, f"the UI grew to {rss} KiB"  # 12-14 GB before the value limit


def test_ui_stops_promptly_while_a_query_runs(db: Path) -> None:
    served = start_ui("--db", str(db))
    thread = threading.Thread(
        target=lambda: httpx.get(f"{served.base}/api/packets", params={"sql": FOREVER}, timeout=60)
    )
    thread.start()
    time.sleep(0.5)  # let the query start; nothing to wait on from outside
    code, err = stop_ui(served)  # SIGTERM: the running query is interrupted, not waited for
    thread.join()
    assert code == 0, err


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


OVERSIZED = VALUE_BYTES + 1
"""A value one byte beyond what SQLite gives an export (ecaptureq never stores one so large)."""


def _oversized_db(path: Path) -> Path:
    """The exchanges of the hostile database, and cells of another program beyond the value limit: the
    first and a middle packet, the first exchange (by time) and a run-log line."""
    hostile_db(path)
    conn = sqlite3.connect(path)
    first = "(SELECT id FROM exchanges ORDER BY started_ns, id LIMIT 1)"
    big = "printf('%.*c', ?, 'x')"
    with conn:
        conn.execute(
            f"INSERT INTO run_logs (received_ns, line) VALUES (1, 'a line'), (2, {big})", (OVERSIZED,)
        )
        conn.execute(
            'UPDATE packets SET payload_binary = zeroblob(?) WHERE "index" IN (1, 9)',
            (OVERSIZED,),
        )
        conn.execute(f"UPDATE exchanges SET detail = {big} WHERE id = {first}", (OVERSIZED,))
    conn.close()
    return path


@pytest.mark.parametrize("form", ["har", "jsonl", "pcapng"])
def test_export_leaves_out_a_row_whose_value_is_too_large_and_goes_on(tmp_path: Path, form: str) -> None:
    db = _oversized_db(tmp_path / "oversized.db")
    conn = sqlite3.connect(db)
    packets, exchanges = (
        conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("packets", "exchanges")
    )
    first_exchange = conn.execute("SELECT id FROM exchanges ORDER BY started_ns, id LIMIT 1").fetchone()[0]
    conn.close()
    out = tmp_path / f"out.{form}"
    peak, result = peak_rss_of([*CLI, "export", "--db", str(db), "--format", form, "-o", str(out)])
    assert result.returncode == 0, result.stderr
    warning = result.stderr.partition("warning: ")[2]
    too_large = f"a value of more than {VALUE_BYTES} bytes, not read"  # said in these words
    if form == "har":
        entries = json.loads(out.read_text())["log"]["entries"]
        assert len(entries) == exchanges - 1  # every other exchange, after the one left out
        assert warning.startswith("1 exchange left out")
        assert f"exchange {first_exchange}: {too_large}" in json.loads(out.read_text())["log"]["comment"]
    elif form == "jsonl":
        assert len(out.read_text().splitlines()) == packets - 2 + 1  # the other packets and run-log line
        assert f"packet 1: {too_large}" in warning and f"packet 9: {too_large}" in warning
        assert f"run log 2: {too_large}" in warning
    else:
        assert f"packet 1: {too_large}" in warning and f"packet 9: {too_large}" in warning
        assert out.stat().st_size > 0
    assert peak < 3 * VALUE_BYTES, peak  # none of them was read (one would be read whole, and copied)


def test_query_of_a_value_beyond_the_limit_says_so_and_not_invalid_sql(tmp_path: Path) -> None:
    db = _oversized_db(tmp_path / "oversized.db")
    result = run_cli("query", "--db", str(db), '"index" < 12')
    assert result.returncode == 2, result.stderr
    assert f"a value would be larger than {VALUE_BYTES} bytes, the limit on one value" in result.stderr
    assert "invalid SQL" not in result.stderr  # the SQL is valid: packet 1 holds the value

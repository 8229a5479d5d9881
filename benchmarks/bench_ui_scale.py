"""Benchmark the web UI on a database of 1,000,000 exchanges: the table's pages, filters, counts, status, and
the page in a browser.

    python benchmarks/bench_ui_scale.py [--exchanges N] [--db FILE]

The database is generated in SQLite itself (:func:`make_big_database`: a few hundred real rendered rows,
cloned by one ``INSERT ... SELECT`` with new ids, times, processes and statuses), in well under a minute.
A real ``ecaptureq ui --db`` process serves it; each row is the median and the worst of a few GETs of
one endpoint, beside the same SQL on a plain ``sqlite3`` connection in this process (the baseline: what
SQLite alone takes for it). The table pages by ``after_id`` (keyset: ``WHERE id > ?``), so a deep page
costs what the first one does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from ecaptureq.bench.workloads import workload_events
from ecaptureq.decode.decoder import Decoder
from ecaptureq.decode.results import RequestDone, ResponseDone
from ecaptureq.store import CaptureStore
from ecaptureq.store.writer import _INSERT_EXCHANGE, STORE_DECODE_LIMIT, exchange_row

TEMPLATES = 400
"""Distinct exchanges (decoded from the HTTP/1.1 and HTTP/2 workloads) the big database is cloned from."""

REPEAT = 7
"""GETs per row (the first warms the page cache; the median and worst of all are shown)."""


def make_big_database(path: Path, exchanges: int) -> Path:
    """A capture database with ``exchanges`` rows, cloned from :data:`TEMPLATES` decoded ones.

    Ids are 1..N, ``started_ns`` grows with the id, ``pname`` takes 8 values and ``status`` 200, 201, 404
    and 500 (404 on one row in 50), so filters select a known share.
    """
    CaptureStore(path).close()  # the schema, exactly as record writes it
    templates = []
    for workload in ("http1", "http2"):
        decoder = Decoder(body_limit=STORE_DECODE_LIMIT)
        for event in workload_events(workload, TEMPLATES):
            for item in decoder.feed(event):
                if isinstance(item, RequestDone | ResponseDone) and item.exchange.complete:
                    templates.append(item.exchange)
    templates = templates[:TEMPLATES]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TEMP TABLE t AS SELECT * FROM exchanges LIMIT 0")
    db.executemany(_INSERT_EXCHANGE.replace("INTO exchanges", "INTO temp.t"),
                   [exchange_row(i + 1, ex) for i, ex in enumerate(templates)])  # fmt: skip
    columns = [row[1] for row in db.execute("PRAGMA table_info(exchanges)")]
    varied = {
        "id": "n.i",
        "started_ns": "1760000000000000000 + n.i * 1000000",
        "ended_ns": "1760000000000000000 + n.i * 1000000 + 250000",
        "pname": "'proc' || (n.i % 8)",
        "pid": "1000 + n.i % 8",
        "status": "CASE WHEN n.i % 50 = 0 THEN 404 WHEN n.i % 97 = 0 THEN 500 WHEN n.i % 3 = 0 THEN 201"
        " ELSE 200 END",
    }
    select = ", ".join(varied.get(c, f"t.{c}") for c in columns)
    db.execute("BEGIN")
    db.execute(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        f" INSERT INTO exchanges ({', '.join(columns)}) SELECT {select} FROM n"
        f" JOIN temp.t ON t.id = 1 + n.i % {len(templates)}",
        (exchanges,),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def _start_ui(db: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecaptureq", "ui", "--db", str(db), "--listen", "http://127.0.0.1:0/"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return proc, int(match.group(1))
    proc.kill()
    raise RuntimeError("ecaptureq ui did not start")


def _times(fn: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="keep (or reuse) the generated database here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecaptureq-bench-") as tmp:
        path = args.db or Path(tmp) / "big.db"
        built = ""
        if not path.exists():
            t0 = time.perf_counter()
            make_big_database(path, args.exchanges)
            built = f", generated in {time.perf_counter() - t0:.1f} s"
        plain = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        n = plain.execute("SELECT max(id) FROM exchanges").fetchone()[0]
        size = path.stat().st_size / 2**20
        print(f"bench_ui_scale: {n:,} exchanges, {size:,.0f} MiB{built}; python {sys.version.split()[0]},"
              f" {os.cpu_count()} cores")  # fmt: skip
        proc, port = _start_ui(path)
        try:

            def get(url: str) -> Callable[[], object]:
                def run() -> object:
                    # A connection per GET, as a browser's fresh fetch (a kept-alive http.client one waits
                    # out the peer's delayed ACK: +40 ms a request, nothing of the UI's)
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    conn.request("GET", url)
                    answer = conn.getresponse()
                    body = answer.read()
                    conn.close()
                    if answer.status != 200:
                        raise RuntimeError(f"{url}: {answer.status} {body[:200]!r}")
                    return json.loads(body)

                return run

            def sql(text: str, *params: object) -> Callable[[], object]:
                return lambda: plain.execute(text, params).fetchall()

            page = "SELECT id, started_ns, pname, status FROM exchanges WHERE id > ?{} ORDER BY id LIMIT 200"
            deep = n - 1000
            api = "/api/exchanges?limit=200"

            def table(
                label: str, after: int, condition: str = ""
            ) -> tuple[str, Callable[[], object], Callable[[], object]]:
                url = f"{api}&after_id={after}" + (f"&filter={quote(condition)}" if condition else "")
                return label, get(url), sql(page.format(f" AND {condition}" if condition else ""), after)

            rows = [
                table("table: first page (200 rows)", 0),
                table(f"table: deep page (after_id={deep:,})", deep),
                table("filter status = 404: first page", 0, "status = 404"),
                table("filter status = 404: deep page", deep - 20000, "status = 404"),
                table(
                    "filter pname + path LIKE: first page", 0, "pname = 'proc3' AND path LIKE '/v1/orders/%'"
                ),
                table("filter matching nothing (whole table read)", 0, "path LIKE '%no-such-path%'"),
                ("/api/status (counts)", get("/api/status"), sql("SELECT count(*) FROM exchanges")),
            ]
            print(f"{'request':<44} {'p50 ms':>8} {'max ms':>8} {'SQLite p50 ms':>14} {'ratio':>7}")
            print("-" * 85)
            for label, ours, base in rows:
                p50, worst = _times(ours)
                b50, _ = _times(base)
                print(f"{label:<44} {p50:>8.1f} {worst:>8.1f} {b50:>14.1f} {p50 / max(b50, 0.01):>6.1f}x")
            _browser_rows(f"http://127.0.0.1:{port}/", n)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            plain.close()
    return 0


def _browser_rows(url: str, n: int) -> None:
    """The page in headless Chromium (when Playwright and Debian's chromium are here): time to the count and
    the first rows, jumps to the end and the middle, a scroll through the whole table in 100 jumps, and the
    script heap after it; beside fetching one page of rows as JSON in this process (the baseline: the
    transfer alone)."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright import sync_api
    except ImportError:
        chromium = None
    if chromium is None:
        print("(browser rows skipped: no chromium or playwright)")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import CHROMIUM_FLAGS

    host, port = url.removeprefix("http://").rstrip("/").split(":")

    def fetch_page(offset: int) -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("GET", f"/api/exchanges?limit=200&offset={offset}")
        json.loads(conn.getresponse().read())
        conn.close()
        return (time.perf_counter() - t0) * 1000

    one_page = statistics.median(fetch_page(n // 2) for _ in range(REPEAT))
    shown = (
        "() => document.querySelectorAll('#exchanges .vrow:not([hidden])').length > 10"
        " && !document.querySelector('#exchanges .vrow.loading:not([hidden])')"
    )
    scroll = "f => { const c = table.container; c.scrollTop = c.scrollHeight * f; table.render(); }"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_function("n => rows.total >= n", arg=n, timeout=120_000)
        page.wait_for_function(shown, timeout=120_000)
        first = time.perf_counter() - t0

        def jump(fraction: float) -> float:
            t0 = time.perf_counter()
            page.evaluate(scroll, fraction)
            page.wait_for_function(shown, timeout=120_000, polling="raf")
            return (time.perf_counter() - t0) * 1000

        to_end = jump(1.0)
        to_middle = jump(0.5)
        steps = [jump(k / 100) for k in range(101)]
        heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0") / 2**20
        held = page.evaluate("() => rows.loadedIds().length")
        browser.close()
    print()
    print(f"{'page in headless Chromium':<44} {'value':>12} {'baseline':>14}")
    print("-" * 72)
    print(f"{f'count of {n:,} rows and the first ones shown':<44} {first:>10.2f} s")
    print(f"{'jump to the last row, shown':<44} {to_end:>9.0f} ms {one_page:>11.0f} ms  (one page as JSON)")
    print(f"{'jump to the middle, shown':<44} {to_middle:>9.0f} ms {one_page:>11.0f} ms")
    steps_text = f"{statistics.median(steps):.0f}, {max(steps):.0f} ms"
    print(f"{'scroll through all in 100 jumps: p50, max':<44} {steps_text:>12}")
    print(f"{'rows held by the page after it':<44} {held:>12,}")
    print(f"{'script heap after it':<44} {heap:>8.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())

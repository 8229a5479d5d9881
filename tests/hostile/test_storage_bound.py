"""What an exchange costs on disk is bounded by its captured bytes, whatever its bodies expand to.

The bomb corpus through real ``serve --replay`` and ``record`` processes (database bytes and peak RSS), and
generated exchanges through the store (hypothesis).
"""

from __future__ import annotations

import gzip
import sqlite3
import sys
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import httpx
import pytest
from hostile_support import watch_peak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.bench.bombs import BUDGET_SLACK, DECODED, bomb_corpus, format_table, measure_corpus
from ecaptureq.store import CaptureStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from ui_support import start_ui, stop_ui

STORED_BYTES = (
    "SELECT (SELECT coalesce(sum(length(CAST(payload_utf8 AS BLOB)) + length(payload_binary)), 0)"
    " FROM packets)"
    " + (SELECT coalesce(sum(coalesce(length(CAST(request_headers AS BLOB)), 0)"
    " + coalesce(length(CAST(response_headers AS BLOB)), 0) + coalesce(length(request_body), 0)"
    " + coalesce(length(response_body), 0) + coalesce(length(CAST(request_body_text AS BLOB)), 0)"
    " + coalesce(length(CAST(response_body_text AS BLOB)), 0) + coalesce(length(CAST(url AS BLOB)), 0)"
    " + coalesce(length(CAST(path AS BLOB)), 0) + length(CAST(detail AS BLOB))"
    " + coalesce(length(CAST(errors AS BLOB)), 0)), 0) FROM exchanges)"
)
"""The bytes of every stored value (what the file holds beyond SQLite's own per-row overhead)."""


@pytest.mark.e2e
def test_bomb_corpus_recorded_within_budget() -> None:
    costs = measure_corpus()
    print(format_table(costs))
    assert {c.name for c in costs} >= {"gzip", "nested gzip", "br", "zstd", "deflate", "control text", "form"}
    base = next(c.peak_rss for c in costs if "baseline" in c.name)
    for cost in costs:
        assert cost.db_bytes <= cost.budget, format_table(costs)
        # no memory that grows with a 16 MiB decoded body (it was 2.86 GB for 20 of them)
        assert cost.peak_rss <= base + 32 * 1024 * 1024, format_table(costs)


def _stored(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(STORED_BYTES).fetchone()[0])
    finally:
        conn.close()


codings = st.sampled_from(["", "gzip", "br", "gzip, gzip", "identity"])
ctypes = st.sampled_from(
    ["text/plain", "application/json", "application/x-www-form-urlencoded", "application/octet-stream", ""]
)
bodies = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=2000).map(str.encode),
    st.builds(lambda c, n: c * n, st.sampled_from([b"\x01", b"a&", b"\x00", b"\xff", b"[", b"\x1b[2K"]),
              st.integers(0, 200_000)),
)  # fmt: skip
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=3000)


def _encode(body: bytes, coding: str) -> bytes:
    for c in [c.strip() for c in coding.split(",") if c.strip()]:
        if c == "gzip":
            body = gzip.compress(body)
        elif c == "br":
            body = brotli.compress(body)
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    coding=codings,
    ctype=ctypes,
    value=header_values,
    count=st.integers(1, 40),
)
def test_generated_exchanges_stored_within_budget(
    tmp_path: Path, body: bytes, coding: str, ctype: str, value: str, count: int
) -> None:
    from hostile_support import h1_exchange, post, response

    wire = _encode(body, coding)
    headers = [("Host", "api.example.com"), ("Content-Type", ctype)]
    if coding:
        headers.append(("Content-Encoding", coding))
    headers += [(f"X-H{i}", value) for i in range(count)]
    events = h1_exchange(post(wire, headers), response(wire, headers))
    path = tmp_path / f"g{abs(hash((body, coding, ctype, value, count)))}.db"
    store = CaptureStore(path)
    for ev in events:
        store.add(ev)
    store.close()
    wire_bytes = sum(len(e.payload) for e in events)
    assert _stored(path) <= 2 * wire_bytes + BUDGET_SLACK


@pytest.mark.e2e
@pytest.mark.parametrize("mode", [(), ("--json",)])
def test_watch_memory_does_not_follow_decoded_bodies(tmp_path: Path, mode: tuple[str, ...]) -> None:
    base, plain = watch_peak(tmp_path, ["plain (baseline)"], *mode)
    assert plain.returncode == 0, plain.stderr
    bombs = [n for n in bomb_corpus() if "baseline" not in n]
    peak, result = watch_peak(tmp_path, bombs, *mode)
    assert result.returncode == 0, result.stderr
    # decoding is capped at 16 MiB per body; a few copies of that, never 6x for JSON escapes (was 276 MB)
    assert peak <= base + 6 * DECODED, (base, peak)
    assert len(result.stdout) <= 16 * 1024 * 1024  # 9 exchanges of ~16 KB: no 246 MB of JSON


@pytest.mark.e2e
def test_ui_serves_har_of_bombs_streaming(tmp_path: Path) -> None:
    db = tmp_path / "bombs.db"
    store = CaptureStore(db)
    store.connection_opened("ws://127.0.0.1:1/")
    for events in bomb_corpus().values():
        for ev in events:
            store.add(ev)
    store.close()
    ui = start_ui("--db", str(db))
    try:
        har = httpx.get(f"{ui.base}/api/har", timeout=60)
        assert har.status_code == 200
        assert len(har.json()["log"]["entries"]) == len(bomb_corpus())
        assert len(har.content) < 1024 * 1024  # was 2 GB for 20 such exchanges
        rss = 0
        for line in Path(f"/proc/{ui.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
        assert 0 < rss < 200 * 1024 * 1024, rss  # was 5.9 GB
    finally:
        stop_ui(ui)

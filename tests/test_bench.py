"""The benchmark machinery itself, on small counts: rows are well formed and measure what they claim.

No wall-clock assertion: only delivery, ordering and close codes, which must hold at any speed.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from ecaptureq.bench.consumers import bench_consumers, decoder_memory, summary
from ecaptureq.bench.runner import bench_burst, bench_client, bench_stalled, format_table
from ecaptureq.bench.workloads import workload_events
from ecaptureq.decode import Decoder, ResponseDone


@pytest.mark.e2e
async def test_burst_row_delivers_everything_to_every_client() -> None:
    row = await bench_burst(clients=3, size=512, events=500)
    assert row.delivered_ratio == 1.0 and row.baseline_delivered_ratio == 1.0
    assert row.events_per_s > 0 and row.baseline_events_per_s > 0
    assert row.p50_ms is not None and row.p99_ms is not None and row.p50_ms <= row.p99_ms
    obj = row.to_json()
    for key in ("scenario", "clients", "delivered_ratio", "events_per_s", "baseline_events_per_s"):
        assert key in obj
    assert json.loads(json.dumps(obj)) == obj
    assert "burst" in format_table([row])


@pytest.mark.e2e
async def test_stalled_row_closes_the_stalled_client_with_1013() -> None:
    row = await bench_stalled(events=3000, queue_size=500, hold=1.5)
    assert row.delivered_ratio == 1.0, "the nine fast clients got everything"
    assert row.extra["stalled_close_code"] == 1013
    assert row.extra["stalled_received"] < 3000


@pytest.mark.e2e
async def test_client_row_receives_every_event() -> None:
    row = await bench_client(events=2000)
    assert row.delivered_ratio == 1.0


@pytest.mark.e2e
def test_bench_help() -> None:
    result = run_cli("bench", "--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "baseline" in result.stdout


def test_workloads_decode_to_complete_exchanges() -> None:
    for name, method in (("http1", "POST"), ("http2", "POST")):
        decoder = Decoder()
        items = [item for ev in workload_events(name, 600) for item in decoder.feed(ev)]
        done = [i.exchange for i in items if isinstance(i, ResponseDone) and i.exchange is not None]
        assert len(done) >= 200, name
        assert all(ex.complete and ex.request is not None and ex.request.method == method for ex in done)


@pytest.mark.e2e
async def test_consumer_rows_run_real_processes_to_the_last_event() -> None:
    rows = await bench_consumers("http1", 400, ["watch --json", "record"], lambda _text: None)
    assert [r.scenario for r in rows] == ["watch --json HTTP/1.1", "record HTTP/1.1"]
    for row in rows:
        assert row.events_per_s > 0 and row.baseline_events_per_s > 0
        assert row.extra["receive_limit_events_per_s"] > 0, "the frames-only sender was measured too"
    assert rows[0].extra["output_bytes"] > 400 * 100, "watch wrote a JSON line per event"
    assert "goal 0.35x" in summary(rows) and "of the receive limit" in summary(rows)


def test_decoder_memory_counts_every_open_connection() -> None:
    for workload in ("http1", "http2"):
        report = decoder_memory(workload, connections=200)
        assert report["open_connections"] == 200
        assert 0 < report["bytes_per_connection"] < 1024 * 1024
        assert report["buffered_per_connection"] > 0, "each connection has a message in progress"

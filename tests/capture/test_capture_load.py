"""The capture benchmark's workloads on smaller counts, as correctness tests: every body byte-exact (sha256
of what each client's own SSL_read returned), and where bytes are lost, the loss named, never silent.

Nothing here asserts on time (``benchmarks/bench_capture.py`` measures that). The capture has no filter,
as with default options: other processes' TLS traffic on the host is captured too and ignored here
(only the processes these tests start are checked).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_support import requires_bpf

from ecaptureq.bench.tlsload import Captured, Site, verify
from ecaptureq.cli.tls import RING_FULL_ADVICE
from ecaptureq.protocol import Event
from ecaptureq.protocol.gap import parse_gap
from ecaptureq.sources.tls import TlsCapture, find_libssl

pytestmark = [pytest.mark.e2e, pytest.mark.capture, requires_bpf]


class CapturedSink:
    """A sink keeping the streams of every process (by uuid) and the gaps announced."""

    def __init__(self) -> None:
        self.captured = Captured()
        self.logs: list[str] = []
        self._lock = threading.Lock()

    def publish_log(self, line: str) -> None:
        with self._lock:
            self.logs.append(line)
            gap = parse_gap(line)
            if gap is not None:
                self.captured.add_gap(gap)

    def publish_event(self, event: Event) -> None:
        with self._lock:
            self.captured.add_event(event.pid, event.uuid, event.payload)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx not installed (apt install nginx-light)")
    with Site(tmp_path_factory.mktemp("site")) as running:
        yield running


def test_lossless_under_load(site: Site) -> None:
    """Parallel keep-alive curls, large HTTP/1.1 and HTTP/2 downloads, one 40 MB write, 1 KB requests."""
    sink = CapturedSink()
    cap = TlsCapture(sink, libssl=find_libssl())
    cap.start()
    try:
        runs = [
            site.curls("1m", clients=10, requests=5),
            site.curls("100k", clients=10, requests=5),
            site.curls("10m", clients=1, requests=3),
            site.curls("10m", clients=1, requests=3, http2=True),
            site.sendall(40_000_000),
            site.keepalive("1k", 200),
        ]
    finally:
        cap.stop()
    assert cap.attached == 0
    for run in runs:
        verdict = verify(sink.captured, run.expect)
        # Every body is exact, or its connection's loss was announced: never silent, never smeared. Whether
        # the default ring buffer rides out these bursts depends on the CPU the consumer gets, which a test
        # cannot promise; benchmarks/bench_capture.py measures how often it does.
        assert verdict.total > 0 and verdict.damaged_unmarked == 0, (run.expect[0].kind, verdict)
        assert verdict.exact == verdict.total or verdict.gaps > 0, (
            run.expect[0].kind,
            verdict,
            sink.logs[-3:],
        )
    final = sink.logs[-1]
    assert "capture stopped" in final and " gaps=" in final


def test_loss_is_named_never_silent(site: Site) -> None:
    """A ring buffer far too small for the load: damaged bodies, each client's holes announced exactly."""
    headers = subprocess.run(
        [
            "curl",
            "-sS",
            "--http1.1",
            "--cacert",
            str(site.cert),
            "-D",
            "-",
            "-o",
            "/dev/null",
            site.url("10m"),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    sink = CapturedSink()
    cap = TlsCapture(sink, libssl=find_libssl(), buffer_size=64 * 1024, ring_full_advice=RING_FULL_ADVICE)
    cap.start()
    try:
        run = site.curls("10m", clients=1, requests=3)
    finally:
        cap.stop()
    [expect] = run.expect
    verdict = verify(sink.captured, run.expect)
    assert verdict.exact < verdict.total, "64 KiB should not hold 3 x 10 MB"
    assert verdict.damaged_unmarked == 0 and verdict.gaps > 0
    # Every byte curl read is accounted for: captured, or inside an announced gap of its read stream.
    reads = [b for (pid, _), b in sink.captured.reads.items() if pid == expect.pid]
    lost = [g for g in sink.captured.gaps if g.uuid.startswith(f"{expect.pid}_") and g.uuid.endswith("_0")]
    assert sum(map(len, reads)) + sum(g.lost for g in lost) == 3 * (len(headers) + 10_000_000)
    # Gaps are ordered, disjoint byte ranges of that stream.
    ranges = sorted((g.start, g.end) for g in lost)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
    stats = cap.stats
    assert stats.drop_chunks > 0 and stats.gaps >= len(lost) and stats.gap_bytes > 0
    assert any("ring buffer full" in line and "--buffer-size" in line for line in sink.logs)  # tls's advice

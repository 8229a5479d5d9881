"""``watch`` and capture gaps: a ``capture lost N bytes`` run-log line ends the exchange it damaged, shown
marked incomplete as ``record`` stores it (a real server, a real ``watch`` process)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import CLI, ENV
from server_support import server_thread

from ecaptureq.protocol import Event
from ecaptureq.protocol.gap import CaptureGap
from ecaptureq.protocol.uuid import format_uuid

pytestmark = pytest.mark.e2e

BASE_NS = 1_760_495_631_000_000_000
BODY_SENT = 100
BODY_SEEN = 10


def _event(data_type: int, payload: bytes, n: int, fd: int = 5) -> Event:
    return Event(
        timestamp=BASE_NS + n * 1_000_000,
        uuid=format_uuid(4242, 4242, "curl", fd, data_type),
        src_ip="10.0.0.5",
        src_port=40000 + fd,
        dst_ip="93.184.216.34",
        dst_port=443,
        pid=4242,
        pname="curl",
        payload=payload,
    )


def _watch_through_a_gap(*options: str) -> str:
    """Run ``watch`` while a server sends a request, the first bytes of its response, a gap line for the
    rest of the response and one more event (the third, which ends ``--count 3``); return stdout."""
    request = b"GET /report HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {BODY_SENT}\r\n\r\n".encode()
    response = head + b"x" * BODY_SEEN
    gap = CaptureGap(format_uuid(4242, 4242, "curl", 5, 0), len(response), len(head) + BODY_SENT)
    with server_thread() as server:
        proc = subprocess.Popen(
            [*CLI, "watch", server.url, "--count", "3", "--timeout", "30", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            server.wait_clients(1)
            server.publish_event(_event(1, request, 0))
            server.publish_event(_event(0, response, 1))
            server.publish_log(gap.log_line())
            server.publish_event(_event(1, b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n", 2, fd=6))
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out


def test_watch_json_shows_the_exchange_a_gap_cut_short() -> None:
    records = [json.loads(line) for line in _watch_through_a_gap("--json").splitlines()]
    lost = BODY_SENT - BODY_SEEN
    log = next(i for i, r in enumerate(records) if r["kind"] == "log" and "capture lost" in r["run_log"])
    cut = [r for r in records if r["kind"] == "incomplete"]
    assert len(cut) == 1, records
    http = cut[0]["http"]
    assert http["kind"] == "response" and http["status"] == 200 and not http["complete"]
    assert f"capture lost {lost} bytes" in http["notes"]
    assert http["body"] == "x" * BODY_SEEN
    assert records.index(cut[0]) == log + 1  # shown when the gap is announced, not at the end
    assert [r["kind"] for r in records[log + 2 :]] == ["event"]


def test_watch_text_shows_the_exchange_a_gap_cut_short() -> None:
    out = _watch_through_a_gap()
    block = out[out.index("--- cut short by a capture gap") :]
    assert "200 OK" in block and "api.example.com/report" in block
    assert f"capture lost {BODY_SENT - BODY_SEEN} bytes" in block
    assert block.index("capture lost") < block.index("/next")


def test_watch_oneline_shows_the_exchange_a_gap_cut_short() -> None:
    out = _watch_through_a_gap("--oneline")
    lines = [line for line in out.splitlines() if "/report" in line]
    assert len(lines) == 1 and " 200 " in lines[0], out

"""The aggregator that turns ring-buffer records into events (pure; runs without root)."""

from __future__ import annotations

import pytest

from ecaptureq.decode import MessageDone
from ecaptureq.protocol.gap import CaptureGap, parse_gap
from ecaptureq.protocol.messages import EventType
from ecaptureq.sources.tls import Aggregator, Chunk

OFFSET = 1_700_000_000 * 10**9

_next_seq: dict[tuple[int, int], int] = {}


@pytest.fixture(autouse=True)
def _fresh_streams() -> None:
    _next_seq.clear()


def chunk(
    data: bytes,
    direction: int = 0,
    *,
    ssl: int = 0x1000,
    ts: int = 1,
    tid: int = 42,
    skip: int = 0,
) -> Chunk:
    """A record of connection ``ssl``, numbered after the previous one of its stream.

    ``skip``: bytes lost before it."""
    seq = _next_seq.get((ssl, direction), 0) + skip
    _next_seq[(ssl, direction)] = seq + len(data)
    return Chunk(
        ts_boot_ns=ts,
        conn=ssl,
        seq=seq,
        pid=42,
        tid=tid,
        uid=0,
        fd=5,
        direction=direction,
        comm="curl",
        data=data,
        src=("127.0.0.1", 40000),
        dst=("127.0.0.1", 443),
    )


def test_consecutive_chunks_join_until_direction_changes() -> None:
    agg = Aggregator(OFFSET)
    assert agg.feed(chunk(b"GET / HTTP/1.1\r\n", ts=10), now=0) == []
    assert agg.feed(chunk(b"Host: x\r\n\r\n", ts=11), now=0) == []
    [request] = agg.feed(chunk(b"HTTP/1.1 200 OK\r\n\r\n", 1, ts=20), now=0)
    assert request.payload == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert request.uuid == "42_42_curl_5_1"
    assert request.timestamp == OFFSET + 10
    assert request.type == EventType.HTTP1_REQUEST
    assert (request.src_ip, request.src_port, request.dst_ip, request.dst_port) == (
        "127.0.0.1",
        40000,
        "127.0.0.1",
        443,
    )
    [response] = agg.flush_all()
    assert response.uuid == "42_42_curl_5_0" and response.type == EventType.HTTP1_RESPONSE


def test_split_at_cap_never_drops() -> None:
    agg = Aggregator(OFFSET, cap=16384)
    data = bytes(range(256)) * 200  # 51200 bytes
    events = agg.feed(chunk(data[:30000]), now=0) + agg.feed(chunk(data[30000:]), now=0) + agg.flush_all()
    assert [e.length for e in events] == [16384, 16384, 16384, 51200 - 3 * 16384]
    assert b"".join(e.payload for e in events) == data


def test_idle_flush_and_connections_kept_apart() -> None:
    agg = Aggregator(OFFSET, idle=0.05)
    agg.feed(chunk(b"a", ssl=1), now=0.0)
    agg.feed(chunk(b"b", ssl=2), now=0.04)
    assert agg.flush_idle(now=0.03) == []
    [first] = agg.flush_idle(now=0.06)
    assert first.payload == b"a"
    [second] = agg.flush_idle(now=0.2)
    assert second.payload == b"b"
    assert agg.flush_all() == []


def test_thread_change_starts_a_new_event() -> None:
    agg = Aggregator(OFFSET)
    agg.feed(chunk(b"one", tid=1), now=0)
    [first] = agg.feed(chunk(b"two", tid=2), now=0)
    assert first.uuid == "42_1_curl_5_1" and first.payload == b"one"


def test_a_hole_in_the_stream_is_named_and_never_joined() -> None:
    agg = Aggregator(OFFSET)
    assert agg.feed(chunk(b"HTTP/1.1 200 OK\r\n", 1), now=0) == []
    before, gap = agg.feed(chunk(b"tail", 1, skip=16384), now=0)
    assert isinstance(gap, CaptureGap)
    assert before.payload == b"HTTP/1.1 200 OK\r\n"  # published before the hole, not joined across it
    assert gap == CaptureGap("42_42_curl_5_0", 17, 17 + 16384)
    assert parse_gap(gap.log_line()) == gap
    assert "WRN capture lost 16384 bytes: uuid=42_42_curl_5_0 bytes=17-16401" in gap.log_line()
    [after] = agg.flush_all()
    assert after.payload == b"tail"
    assert (agg.gaps, agg.gap_bytes) == (1, 16384)


def test_lost_first_records_and_tail() -> None:
    agg = Aggregator(OFFSET)
    [gap] = agg.feed(chunk(b"late", 0, skip=100), now=0)
    assert isinstance(gap, CaptureGap) and (gap.start, gap.end) == (0, 100)
    agg.flush_all()
    assert agg.tail_gap((42, 0x1000, 0), 104) is None  # the kernel counted nothing more
    tail = agg.tail_gap((42, 0x1000, 0), 204)
    assert tail == CaptureGap("42_42_curl_5_1", 104, 204)
    assert agg.tail_gap((42, 0x1000, 0), 204) is None  # named once


def test_parse_gap_rejects_other_lines() -> None:
    assert parse_gap("2026-01-01T00:00:00Z INF capture stopped: events=1") is None
    assert parse_gap("WRN capture lost 5 bytes: uuid=1_1_x_3_0 bytes=10-12") is None  # inconsistent


def test_decoder_marks_the_exchange_a_gap_damaged() -> None:
    """Aggregator events and gap lines, in order, through the decoder: the response is incomplete."""
    from ecaptureq.decode.decoder import Decoder
    from ecaptureq.protocol.messages import Event

    agg = Aggregator(OFFSET)
    body = bytes(range(256)) * 200
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    items = agg.feed(chunk(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 0), now=0)
    items += agg.feed(chunk(head + body[:1000], 1), now=0)
    items += agg.feed(chunk(body[5000:], 1, skip=4000), now=0)
    items += agg.flush_all()
    decoder = Decoder()
    done = []
    for item in items:
        if isinstance(item, Event):
            done += decoder.feed(item)
        else:
            done += decoder.lost(parse_gap(item.log_line()) or item)
    done += decoder.flush()
    exchanges = [d.exchange for d in done if isinstance(d, MessageDone) and d.exchange.response is not None]
    assert exchanges, done
    response = exchanges[0].response
    assert response is not None and not response.complete
    assert "capture lost 4000 bytes" in response.notes

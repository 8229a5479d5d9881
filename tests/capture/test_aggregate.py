"""The aggregator that turns ring-buffer records into events (pure; runs without root)."""

from __future__ import annotations

from ecaptureq.protocol.messages import EventType
from ecaptureq.sources.tls import Aggregator, Chunk

OFFSET = 1_700_000_000 * 10**9


def chunk(data: bytes, direction: int = 0, *, ssl: int = 0x1000, ts: int = 1, tid: int = 42) -> Chunk:
    return Chunk(
        ts_boot_ns=ts,
        ssl=ssl,
        offset=0,
        total=len(data),
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

"""The codec: round trips, unknown fields kept, malformed frames reported and never raised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecaptureq.protocol import (
    DecodeError,
    ErrorKind,
    Event,
    Heartbeat,
    RunLog,
    decode,
    encode,
    event_type_name,
)
from ecaptureq.protocol import event_pb2 as pb

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uint32 = st.integers(min_value=0, max_value=2**32 - 1)

events = st.builds(
    Event,
    timestamp=int64,
    uuid=st.text(max_size=40),
    src_ip=st.text(max_size=40),
    src_port=uint32,
    dst_ip=st.text(max_size=40),
    dst_port=uint32,
    pid=int64,
    pname=st.text(max_size=20),
    type=uint32,
    length=uint32,
    payload=st.binary(max_size=2048),
)
heartbeats = st.builds(Heartbeat, timestamp=int64, count=int64, message=st.text(max_size=30))
logs = st.builds(RunLog, line=st.text(max_size=200))


@given(st.one_of(events, heartbeats, logs))
def test_round_trip(message: Event | Heartbeat | RunLog) -> None:
    assert decode(encode(message)) == message


@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = decode(data)
    assert isinstance(result, (Event, Heartbeat, RunLog, DecodeError))


@given(events, st.binary(max_size=64))
def test_event_bytes_with_trailing_garbage_never_raise(event: Event, garbage: bytes) -> None:
    result = decode(encode(event) + garbage)
    assert isinstance(result, (Event, Heartbeat, RunLog, DecodeError))


def test_bytes_match_the_reference_schema() -> None:
    """What we encode is what a generated LogEntry parses, field by field."""
    ev = Event(
        timestamp=1760495631914807673,
        uuid="2746_2746_curl_5_0",
        src_ip="10.0.0.5",
        src_port=40522,
        dst_ip="93.184.216.34",
        dst_port=443,
        pid=2746,
        pname="curl",
        type=1,
        length=3,
        payload=b"GET",
    )
    entry = pb.LogEntry()
    entry.ParseFromString(encode(ev))
    assert entry.log_type == pb.LOG_TYPE_EVENT
    assert entry.event_payload.uuid == "2746_2746_curl_5_0"
    assert entry.event_payload.dst_port == 443
    assert entry.event_payload.payload == b"GET"
    hb = pb.LogEntry()
    hb.ParseFromString(encode(Heartbeat(1754144170, 3, "heartbeat:3")))
    assert (hb.log_type, hb.heartbeat_payload.count, hb.heartbeat_payload.message) == (0, 3, "heartbeat:3")


def test_unknown_fields_are_kept_and_written_back() -> None:
    """Fields 12-15 (tid, fd, version, data_type on newer eCapture) survive decode and re-encode."""
    ev = pb.Event(uuid="1_2_curl_3_0", payload=b"x", length=1)
    extra = b"\x60\x07" + b"\x68\x05" + b"\x72\x03v2x" + b"\x78\x01"  # 12:7, 13:5, 14:"v2x", 15:1
    ev.MergeFromString(extra)
    entry = pb.LogEntry(log_type=pb.LOG_TYPE_EVENT, event_payload=ev)
    raw = entry.SerializeToString()
    decoded = decode(raw)
    assert isinstance(decoded, Event)
    assert decoded.uuid == "1_2_curl_3_0"
    assert decoded.unknown_fields == extra
    again = pb.LogEntry()
    again.ParseFromString(encode(decoded))
    assert again.event_payload.SerializeToString() == ev.SerializeToString()


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"\xff\xff\xff", ErrorKind.NOT_PROTOBUF),
        (b"GET / HTTP/1.1\r\n\r\n", ErrorKind.NOT_PROTOBUF),
        (b"", ErrorKind.EMPTY_PAYLOAD),
        (pb.LogEntry(log_type=pb.LOG_TYPE_EVENT).SerializeToString(), ErrorKind.EMPTY_PAYLOAD),
        (pb.LogEntry(log_type=7, run_log="x").SerializeToString(), ErrorKind.UNKNOWN_LOG_TYPE),
        (
            pb.LogEntry(log_type=pb.LOG_TYPE_EVENT, run_log="x").SerializeToString(),
            ErrorKind.LOG_TYPE_MISMATCH,
        ),
        (
            pb.LogEntry(log_type=pb.LOG_TYPE_HEARTBEAT, event_payload=pb.Event()).SerializeToString(),
            ErrorKind.LOG_TYPE_MISMATCH,
        ),
    ],
)
def test_malformed_frames_are_typed_errors(raw: bytes, kind: ErrorKind) -> None:
    result = decode(raw)
    assert isinstance(result, DecodeError)
    assert result.kind is kind
    assert result.raw == raw
    assert kind.value in str(result)


def test_type_names() -> None:
    assert [event_type_name(t) for t in range(6)] == [
        "unknown",
        "HTTP/1.x request",
        "HTTP/2 request",
        "HTTP/1.x response",
        "HTTP/2 response",
        "WebSocket",
    ]
    assert event_type_name(9) == "type 9"

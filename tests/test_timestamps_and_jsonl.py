"""Timestamp units by magnitude, and the JSON Lines form of messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecaptureq.cli.render import json_record
from ecaptureq.protocol import Event, Heartbeat, RunLog
from ecaptureq.protocol.jsonl import JsonlError, from_json, parse_line, to_json
from ecaptureq.protocol.timestamps import TimeUnit, detect_timestamp

NOW_S = 1760495631  # 2025-10-15T02:33:51Z


@pytest.mark.parametrize(
    ("raw", "unit", "epoch_ns"),
    [
        (NOW_S, TimeUnit.SECONDS, NOW_S * 10**9),
        (NOW_S * 10**3 + 914, TimeUnit.MILLISECONDS, (NOW_S * 10**3 + 914) * 10**6),
        (NOW_S * 10**6 + 914807, TimeUnit.MICROSECONDS, (NOW_S * 10**6 + 914807) * 10**3),
        (1760495631914807673, TimeUnit.NANOSECONDS, 1760495631914807673),
        (83_123_456_789, TimeUnit.BOOT_NANOSECONDS, None),  # 83 s after boot
        (5 * 86400 * 10**9, TimeUnit.BOOT_NANOSECONDS, None),  # 5 days of uptime
        (0, TimeUnit.ZERO, None),
    ],
)
def test_units_by_magnitude(raw: int, unit: TimeUnit, epoch_ns: int | None) -> None:
    ts = detect_timestamp(raw)
    assert ts.unit is unit
    assert ts.epoch_ns == epoch_ns


def test_rendering() -> None:
    assert detect_timestamp(1760495631914807673).isoformat() == "2025-10-15T02:33:51.914807Z"
    assert detect_timestamp(NOW_S).isoformat() == "2025-10-15T02:33:51.000000Z"
    assert detect_timestamp(83_123_456_789).isoformat() == "+83.123457s since boot"
    assert detect_timestamp(0).isoformat() == "-"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_int64_renders(raw: int) -> None:
    assert detect_timestamp(raw).isoformat()


events = st.builds(
    Event,
    timestamp=st.integers(min_value=0, max_value=2**63 - 1),
    uuid=st.text(max_size=30),
    src_ip=st.text(max_size=20),
    src_port=st.integers(0, 65535),
    pid=st.integers(0, 2**31),
    pname=st.text(max_size=16),
    type=st.integers(0, 5),
    payload=st.binary(max_size=512),
    length=st.integers(0, 2**32 - 1),
    unknown_fields=st.sampled_from([b"", b"\x60\x07"]),
)


@given(
    st.one_of(
        events,
        st.builds(RunLog, st.text()),
        st.builds(Heartbeat, st.integers(0, 2**40), st.integers(0, 99), st.text()),
    )
)
def test_json_round_trip(message: Event | RunLog | Heartbeat) -> None:
    assert from_json(to_json(message)) == message
    assert parse_line(json.dumps(to_json(message))) == message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        # orjson refuses a lone surrogate, which json reads: a text no proto string can carry
        ('{"kind": "log", "run_log": "a\\ud800b"}', "'run_log' is not Unicode text"),
        # orjson reads an integer beyond 64 bits as a float; the error gives json's exact value
        ('{"kind": "heartbeat", "timestamp": 18446744073709551616}', "not 18446744073709551616"),
    ],
)
def test_what_orjson_reads_otherwise_fails_as_json_reads_it(line: str, fragment: str) -> None:
    with pytest.raises(JsonlError) as err:
        parse_line(line)
    assert fragment in str(err.value)


def test_a_line_that_is_no_message_is_a_value_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_line("not json")
    with pytest.raises(JsonlError) as deep:  # json's RecursionError, which a replay reported as a crash
        parse_line("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in str(deep.value)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ([], "JSON object"),
        ({"kind": "nope"}, "unknown kind"),
        ({"kind": "event", "pid": "12"}, "'pid' must be an integer"),
        ({"kind": "event", "payload": "!!"}, "base64"),
        ({"kind": "log", "run_log": 5}, "'run_log' must be a string"),
        # out of their proto types' ranges: a replay served them until the encoding failed (a crash)
        ({"kind": "event", "src_port": 99999999999}, "'src_port' must be an unsigned 32-bit integer"),
        ({"kind": "event", "type": -1}, "'type' must be an unsigned 32-bit integer, not -1"),
        ({"kind": "event", "timestamp": 2**63}, "'timestamp' must be a 64-bit integer"),
        ({"kind": "heartbeat", "count": -(2**63) - 1}, "'count' must be a 64-bit integer"),
        ({"kind": "event", "pname": "\udcff"}, "'pname' is not Unicode text"),
        ({"kind": "event", "unknown_fields": "//8="}, "not protobuf wire format"),  # b"\xff\xff"
        ({"kind": "event", "unknown_fields": "CAE="}, "fields Event defines"),  # field 1 (timestamp) = 1
    ],
)
def test_bad_records(record: object, fragment: str) -> None:
    with pytest.raises(JsonlError) as err:
        from_json(record)
    assert fragment in str(err.value)


def test_a_json_record_takes_the_detected_time_only_when_it_is_the_events() -> None:
    event = Event(timestamp=1760495631914807673, uuid="1_1_c_3_1", payload=b"x")
    own = detect_timestamp(event.timestamp)
    assert json_record(event)["time"] == own.isoformat() == "2025-10-15T02:33:51.914807Z"
    assert json_record(event, own)["time"] == own.isoformat()
    other = detect_timestamp(83_000_000_000)  # a text header's time, not this field's: not taken
    assert json_record(event, other)["time"] == own.isoformat()

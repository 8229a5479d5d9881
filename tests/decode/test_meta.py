"""uuid parsing and metadata recovery from the text headers current eCapture releases send."""

from __future__ import annotations

from ecaptureq.decode import event_meta, split_text_header
from ecaptureq.decode.meta import MetaReader
from ecaptureq.protocol import Event
from ecaptureq.protocol.timestamps import TimeUnit
from ecaptureq.protocol.uuid import parse_uuid


def test_uuid_with_data_type() -> None:
    u = parse_uuid("2746_2746_curl_5_0")
    assert (u.pid, u.tid, u.comm, u.fd, u.data_type, u.parsed) == (2746, 2746, "curl", 5, 0, True)
    assert u.connection == "2746_2746_curl_5"


def test_uuid_without_data_type_and_comm_with_underscores() -> None:
    u = parse_uuid("10_11_my_fancy_app_7")
    assert (u.pid, u.tid, u.comm, u.fd, u.data_type) == (10, 11, "my_fancy_app", 7, None)
    u = parse_uuid("10_11_my_fancy_app_7_1")
    assert (u.comm, u.fd, u.data_type) == ("my_fancy_app", 7, 1)
    assert parse_uuid("10_11_my_fancy_app_7_1").connection == parse_uuid("10_11_my_fancy_app_7_0").connection


def test_uuid_garbage() -> None:
    for raw in ("", "abc", "1_2", "x_1_curl_5", "1_2_curl_x"):
        u = parse_uuid(raw)
        assert not u.parsed and u.connection == raw


def test_header_with_comma_format() -> None:
    ev = Event(
        payload=b"PID:2746, Comm:curl, Src:10.0.0.5:40522, Dest:93.184.216.34:443,\nGET / HTTP/1.1\r\n\r\n"
    )
    m = event_meta(ev)
    assert (m.pid, m.pname) == (2746, "curl")
    assert (m.src_ip, m.src_port, m.dst_ip, m.dst_port) == ("10.0.0.5", 40522, "93.184.216.34", 443)
    assert m.body == b"GET / HTTP/1.1\r\n\r\n"
    assert m.header is not None and m.header.text.startswith("PID:2746")


def test_header_with_bracketed_time_and_direction() -> None:
    payload = b"[2026-01-02 10:00:00.000] PID:2746 TID:2747 Comm:Web Content FD:5 WRITE (79 bytes):\nHELLO"
    m = event_meta(Event(payload=payload))
    assert (m.pid, m.tid, m.pname, m.fd, m.direction) == (2746, 2747, "Web Content", 5, "write")
    assert m.body == b"HELLO"
    assert m.header is not None and m.header.length == 79
    read = event_meta(Event(payload=b"PID:1 TID:1 Comm:x FD:3 READ (2 bytes):\nhi"))
    assert read.direction == "read" and read.body == b"hi"


def test_ipv6_endpoints() -> None:
    m = event_meta(Event(payload=b"PID:1, Comm:x, Src:[::1]:5000, Dest:[2001:db8::1]:443,\nbody"))
    assert (m.src_ip, m.src_port, m.dst_ip, m.dst_port) == ("::1", 5000, "2001:db8::1", 443)


def test_structured_fields_win_over_header() -> None:
    ev = Event(
        pid=9,
        pname="wget",
        src_ip="1.1.1.1",
        src_port=1,
        payload=b"PID:2746, Comm:curl, Src:10.0.0.5:40522,\nx",
    )
    m = event_meta(ev)
    assert (m.pid, m.pname, m.src_ip, m.src_port) == (9, "wget", "1.1.1.1", 1)
    assert m.body == b"x"


def test_no_header_is_left_alone() -> None:
    for payload in (b"GET / HTTP/1.1\r\n", b"PIDX:1\n", b"PID:1 but no newline", b""):
        header, body = split_text_header(payload)
        assert header is None and body == payload


def test_direction_and_connection_from_uuid() -> None:
    # eCapture's numbering: data_type 1 is SSL_write, 0 is SSL_read.
    w = event_meta(Event(uuid="5_5_curl_3_1", timestamp=1760495631914807673, payload=b"x"))
    r = event_meta(Event(uuid="5_5_curl_3_0", payload=b"x"))
    assert w.direction == "write" and r.direction == "read"
    assert w.connection == r.connection and w.stream != r.stream
    assert w.pid == 5 and w.pname == "curl" and w.fd == 3
    assert w.timestamp.unit is TimeUnit.NANOSECONDS and w.time_ns == 1760495631914807673


def test_connection_from_header_when_uuid_empty() -> None:
    a = event_meta(Event(payload=b"PID:7, Comm:c, Src:10.0.0.1:1000, Dest:10.0.0.2:443,\nx"))
    b = event_meta(Event(payload=b"PID:7, Comm:c, Src:10.0.0.2:443, Dest:10.0.0.1:1000,\ny"))
    assert a.connection == b.connection


def test_meta_reader_gives_what_event_meta_gives() -> None:
    """The reader remembers each origin's facts; every event's metadata must still equal event_meta's,
    whether its origin is new, remembered, or forgotten (a reader of two origins forgets them all)."""
    origins = [
        {"uuid": "2746_2746_curl_5_1"},
        {"uuid": "2746_2746_curl_5_0"},
        {"uuid": "9_10_my_app_7", "pid": 9, "pname": "app"},
        {
            "uuid": "",
            "pid": 3,
            "pname": "x",
            "src_ip": "10.0.0.5",
            "src_port": 1,
            "dst_ip": "::1",
            "dst_port": 443,
        },
        {"uuid": "not a uuid", "src_ip": "10.0.0.5", "src_port": 2},
        {"uuid": ""},
    ]
    payloads = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"",
        b"PID:7 Comm:curl WRITE (3 bytes):\nabc",
        b"\x00\x01",
        b"POST /p HTTP/1.1\r\n\r\n",  # begins as a header may, is not one
        b"[2026-01-02 10:00:00.000] PID:8 TID:9 Comm:wget FD:5 READ (2 bytes):\nhi",
    ]
    events = [
        Event(timestamp=t, type=t % 3, payload=payloads[t % len(payloads)], **origins[t % len(origins)])  # type: ignore[arg-type]
        for t in range(90)
    ]
    for write in (0, 1):
        for size in (2, 100):
            reader = MetaReader(write_data_type=write, size=size)
            for ev in events:
                assert reader.read(ev) == event_meta(ev, write_data_type=write), ev


def test_recovered_says_none_for_what_no_source_had() -> None:
    # An event with no fields, no text header and no uuid: its zeros and empty strings are not values.
    meta = event_meta(Event(payload=b"GET / HTTP/1.1\r\n\r\n")).recovered()
    for key in ("pid", "pname", "src_ip", "src_port", "dst_ip", "dst_port"):
        assert meta[key] is None and meta["sources"][key] is None, key
    known = event_meta(Event(pid=7, pname="curl", src_ip="10.0.0.1", src_port=1, payload=b"x")).recovered()
    assert (known["pid"], known["pname"], known["src_port"], known["dst_port"]) == (7, "curl", 1, None)

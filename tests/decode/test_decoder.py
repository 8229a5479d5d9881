"""The stateful Decoder: eCapture 2.x header-only events, direction numbering, and bounded state."""

from __future__ import annotations

from ecaptureq.decode import Decoder, MessageDone, RequestDone, ResponseDone
from ecaptureq.protocol import Event

REQ = b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_header_only_events_are_paired() -> None:
    """eCapture 2.x: only payload and length, the metadata in a text header."""
    d = Decoder()
    req = Event(payload=b"PID:2746, Comm:curl, Src:10.0.0.5:40522, Dest:93.184.216.34:443,\n" + REQ)
    resp = Event(payload=b"PID:2746, Comm:curl, Src:93.184.216.34:443, Dest:10.0.0.5:40522,\n" + RESP)
    (a,) = d.feed(req)
    (b,) = d.feed(resp)
    assert isinstance(a, RequestDone) and isinstance(b, ResponseDone)
    assert b.exchange is a.exchange and b.exchange is not None
    assert b.exchange.pid == 2746 and b.exchange.pname == "curl" and b.exchange.dst_port == 443
    assert b.message is not None and b.message.body == b"ok"


def test_data_type_numbering_only_changes_the_direction() -> None:
    for write_type in (0, 1):
        d = Decoder(write_data_type=write_type)
        (a,) = d.feed(Event(uuid=f"1_1_c_3_{write_type}", payload=REQ))
        (b,) = d.feed(Event(uuid=f"1_1_c_3_{1 - write_type}", payload=RESP))
        assert a.meta.direction == "write" and b.meta.direction == "read"
        assert b.exchange is a.exchange


def test_connections_are_bounded_and_evicted_oldest_first() -> None:
    d = Decoder(max_connections=2)
    # Three connections, each with a request whose body is still to come.
    head = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345"
    assert d.feed(Event(uuid="1_1_a_3_0", payload=head)) == []
    assert d.feed(Event(uuid="2_2_b_3_0", payload=head)) == []
    evicted = d.feed(Event(uuid="3_3_c_3_0", payload=head))
    assert d.connections == 2
    assert len(evicted) == 1 and evicted[0].message is not None and not evicted[0].message.complete
    assert evicted[0].meta.pid == 1 and evicted[0].message.body == b"12345"


def test_buffered_bytes_are_bounded() -> None:
    d = Decoder(max_buffered=10_000)
    for n in range(5):
        d.feed(
            Event(
                uuid=f"{n}_{n}_a_3_0",
                payload=b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n",
            )
        )
        d.feed(Event(uuid=f"{n}_{n}_a_3_0", payload=b"x" * 4000))
    assert d.buffered <= 10_000
    assert d.evicted >= 3


def test_unmatched_response_is_an_exchange_without_request() -> None:
    (item,) = Decoder().feed(Event(uuid="1_1_c_3_1", payload=RESP))
    assert isinstance(item, ResponseDone) and item.exchange is not None and item.exchange.request is None
    assert item.exchange.latency is None


def test_lost_bytes_inside_a_body_do_not_swallow_the_next_message() -> None:
    d = Decoder()
    d.feed(Event(uuid="1_1_c_3_0", payload=REQ))
    d.feed(Event(uuid="1_1_c_3_0", payload=REQ))
    first = d.feed(
        Event(uuid="1_1_c_3_1", payload=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly 20 of 100 bytes")
    )
    assert first == []
    # The rest of the first body was lost; the next response arrives.
    items = d.feed(Event(uuid="1_1_c_3_1", payload=RESP))
    assert [i.message.status for i in items if isinstance(i, MessageDone)] == [200, 200]
    cut, whole = (i.message for i in items if isinstance(i, MessageDone))
    assert not cut.complete and cut.body == b"only 20 of 100 bytes" and any("lost" in n for n in cut.notes)
    assert whole.complete and whole.body == b"ok"


def test_parser_errors_show_the_bytes_not_python_reprs() -> None:
    # h11 words a bad line as bytearray(b'...') and hpack a bad integer with <memory at 0x...>: a person
    # reading watch or the UI gets the bytes as a quoted string, and no address.
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    block = b"\x3f" + b"\xff" * 9 + b"\x7f"  # an HPACK integer longer than any
    headers = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    cases = (
        (
            "1_1_c_3_0",
            b"GET /x HTTP/1.1\r\nHost: h.test\r\nBad Header\r\n\r\n",
            "illegal header line: 'Bad Header'",
        ),
        ("2_2_c_3_0", preface + headers, "HPACK: Variable integer representation is too long"),
    )
    for uuid, payload, expected in cases:
        shown = repr([item.to_dict() for item in Decoder().feed(Event(uuid=uuid, payload=payload))])
        assert expected in shown, shown
        assert "bytearray(" not in shown and "<memory at" not in shown, shown

"""Property tests: whatever the bytes, the decoders return values and never raise."""

from __future__ import annotations

import gzip
import json
import os

import h2.config
import h2.connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.cli.http_text import EventFilter, format_http_text, http_json
from ecaptureq.decode import Decoder, MessageDone, RequestDone, decode_body, event_meta, split_text_header
from ecaptureq.decode.http1 import Http1Parser
from ecaptureq.decode.http2 import H2Connection
from ecaptureq.decode.websocket import parse_websocket
from ecaptureq.protocol import Event


def _h2_capture() -> list[bytes]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    hdrs = [
        (":method", "POST"),
        (":path", "/a"),
        (":scheme", "https"),
        (":authority", "x"),
        ("x-k", "v" * 50),
    ]
    client.send_headers(1, hdrs)
    client.send_data(1, gzip.compress(b'{"a": 1}'), end_stream=True)
    client.send_headers(3, hdrs, end_stream=True)
    return [client.data_to_send()]


H2_BYTES = _h2_capture()[0]
H1_BYTES = (
    b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    + b"%x\r\n" % len(gzip.compress(b"abc"))
    + gzip.compress(b"abc")
    + b"\r\n0\r\n\r\n"
)

SEEDS = [H2_BYTES, H1_BYTES, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"\x81\x85abcd12345"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real capture with bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[i] = draw(st.integers(0, 255))
        elif op == 1:
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=8))
    return bytes(data)


payloads = st.one_of(st.binary(max_size=600), mutated())
events = st.builds(
    Event,
    timestamp=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    uuid=st.one_of(st.just("1_1_c_3_0"), st.just("1_1_c_3_1"), st.text(max_size=20)),
    pid=st.integers(min_value=0, max_value=2**31),
    type=st.integers(min_value=0, max_value=9),
    payload=payloads,
)
FAST = settings(
    max_examples=int(os.environ.get("DECODE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FAST
@given(st.lists(events, max_size=8))
def test_decoder_never_raises_and_outputs_are_json_able(evs: list[Event]) -> None:
    d = Decoder(max_connections=3, body_limit=4096, max_buffered=2048)
    flt = EventFilter(pid=1, pname_glob="c*", host="x", port=443, types=[1, 2], grep="a+")
    for ev in evs:
        items = d.feed(ev)
        flt.matches(ev, items)
        for item in items:
            json.dumps(item.to_dict())
            format_http_text(item, body_limit=64)
            obj = http_json(item)
            if obj is not None:
                json.dumps(obj)
            if isinstance(item, MessageDone):
                json.dumps(item.exchange.to_dict())
    for item in d.flush():
        json.dumps(item.to_dict())
    assert d.connections == 0


odd = st.one_of(st.none(), st.text(max_size=8), st.integers(min_value=-(2**70), max_value=2**70), st.floats())
ill_typed_events = st.builds(
    Event,
    timestamp=st.one_of(st.integers(min_value=0, max_value=2**64), odd),
    uuid=st.one_of(st.just("1_1_c_3_0"), st.just("1_1_c_3_1"), odd),
    src_ip=st.one_of(st.just("10.0.0.1"), odd),
    src_port=st.one_of(st.just(443), odd),
    pid=st.one_of(st.integers(min_value=0, max_value=2**31), odd),
    pname=st.one_of(st.just("curl"), odd),
    type=st.one_of(st.integers(min_value=0, max_value=9), odd),
    payload=st.one_of(payloads, odd, st.builds(bytearray, payloads)),
)


@FAST
@given(st.lists(st.one_of(events, ill_typed_events), max_size=8))
def test_decoder_never_raises_on_ill_typed_events(evs: list[Event]) -> None:
    """Fields of the wrong type (a caller's bug, not the wire's) never make ``feed`` or ``flush`` raise,
    and the decoder goes on. (What such a field then looks like in ``to_dict`` is not promised: a float
    timestamp has no ISO form.)"""
    d = Decoder(max_connections=3, body_limit=4096, max_buffered=2048)
    for ev in [*evs, Event(uuid="9_9_c_3_1", payload=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")]:
        items = d.feed(ev)
    assert isinstance(items[-1], RequestDone), items
    d.flush()
    assert d.connections == 0


@FAST
@given(st.lists(payloads, max_size=5))
def test_http1_parsers_never_raise(chunks: list[bytes]) -> None:
    for kind in ("request", "response"):
        p = Http1Parser(kind, body_limit=1024)  # type: ignore[arg-type]
        for c in chunks:
            for m in p.feed(c):
                assert m.kind == kind
        p.flush()


@FAST
@given(st.lists(st.tuples(st.sampled_from(["client", "server"]), payloads), max_size=6))
def test_h2_never_raises(chunks: list[tuple[str, bytes]]) -> None:
    conn = H2Connection(body_limit=1024)
    for side, c in chunks:
        r = conn.feed(side, c)  # type: ignore[arg-type]
        assert isinstance(r.errors, list)
    conn.flush()


@FAST
@given(payloads)
def test_websocket_and_meta_never_raise(data: bytes) -> None:
    parse_websocket(data)
    split_text_header(b"PID:1, Comm:x," + data)
    event_meta(Event(payload=b"[t] PID:" + data))


@FAST
@given(
    st.binary(max_size=300),
    st.sampled_from(["", "gzip", "deflate", "br", "zstd", "gzip, br", "bogus"]),
    st.sampled_from(["", "text/plain; charset=bogus", "application/json", "application/grpc", "x/y"]),
)
def test_decode_body_never_raises(data: bytes, coding: str, ctype: str) -> None:
    out = decode_body(data, ctype, coding, limit=1000)
    assert len(out.data) <= max(1000, len(data))


def test_mutation_strategy_can_fail() -> None:
    """The seeds themselves decode cleanly, so a decoder that returned nothing would fail the tests above."""
    r = H2Connection().feed("client", H2_BYTES)
    assert [m.path for m in r.messages] == ["/a", "/a"] and not r.errors
    (msg,) = Http1Parser("request").feed(H1_BYTES)
    assert msg.body == b"abc"

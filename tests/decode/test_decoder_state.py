"""The decoder's explicit connection modes, its results as classes, its one-time fallback, and the one
parser of each frame header checked against the libraries that write those frames (hyperframe, websockets).
"""

from __future__ import annotations

import gc
import json

import h2.config
import h2.connection
import hyperframe.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from ecaptureq.decode import (
    ConnectionMode,
    Decoder,
    H2Control,
    RequestDone,
    ResponseDone,
    Undecoded,
    WebSocketFrames,
)
from ecaptureq.decode.decoder import MODE_TRANSITIONS, Seen
from ecaptureq.decode.http2 import FRAME_HEADER_SIZE, frame_header
from ecaptureq.decode.websocket import ws_frame_header
from ecaptureq.protocol import Event

UPGRADE_REQUEST = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
UPGRADE_RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CONN = "1_1_app_3"


def ev(data_type: int, payload: bytes, **fields: object) -> Event:
    return Event(uuid=f"{CONN}_{data_type}", payload=payload, **fields)  # type: ignore[arg-type]


def h2_client_bytes() -> bytes:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "a")])
    client.end_stream(1)
    return client.data_to_send()


def test_every_mode_and_sighting_has_one_transition() -> None:
    assert set(MODE_TRANSITIONS) == {(m, s) for m in ConnectionMode for s in Seen}
    # HTTP/2 is for good; nothing leads back to UNKNOWN once something was decoded.
    assert {MODE_TRANSITIONS[(ConnectionMode.HTTP2, s)] for s in Seen} == {ConnectionMode.HTTP2}
    assert all(
        nxt is not ConnectionMode.UNKNOWN
        for (mode, _), nxt in MODE_TRANSITIONS.items()
        if mode is not ConnectionMode.UNKNOWN
    )


def test_http1_then_websocket_after_101() -> None:
    d = Decoder()
    assert d.mode(CONN) is None
    (req,) = d.feed(ev(0, UPGRADE_REQUEST))
    assert isinstance(req, RequestDone) and d.mode(CONN) is ConnectionMode.HTTP1
    (resp,) = d.feed(ev(1, UPGRADE_RESPONSE))
    assert isinstance(resp, ResponseDone) and resp.exchange is req.exchange
    assert d.mode(CONN) is ConnectionMode.WEBSOCKET
    frame = Frame(Opcode.TEXT, b"hello").serialize(mask=True, extensions=[])
    (ws,) = d.feed(ev(0, frame))
    assert isinstance(ws, WebSocketFrames) and [f.text for f in ws.frames] == ["hello"]
    # Upgraded: bytes that are not frames are reported as what stopped the frame parse.
    (bad,) = d.feed(ev(1, b"\x0f\x00"))
    assert isinstance(bad, Undecoded) and bad.errors and "reserved opcode" in bad.errors[0]


def test_frames_without_the_upgrade_do_not_make_the_connection_websocket() -> None:
    d = Decoder()
    (ws,) = d.feed(ev(0, Frame(Opcode.TEXT, b"x").serialize(mask=True, extensions=[]), type=5))
    assert isinstance(ws, WebSocketFrames) and d.mode(CONN) is ConnectionMode.UNKNOWN
    (raw,) = d.feed(ev(1, b"\x0f\x00"))
    assert isinstance(raw, Undecoded) and raw.errors == ()  # not HTTP, not taken for frames


def test_http2_is_for_good() -> None:
    d = Decoder()
    items = d.feed(ev(1, h2_client_bytes()))
    assert d.mode(CONN) is ConnectionMode.HTTP2
    assert [type(i) for i in items] == [RequestDone, H2Control]
    # Later bytes go to the HTTP/2 decoder whatever they look like: it says where they are no frame.
    (raw,) = d.feed(ev(1, b"\xff" * 40))
    assert isinstance(raw, Undecoded) and "not a frame boundary" in raw.errors[0]
    assert d.mode(CONN) is ConnectionMode.HTTP2
    assert d.feed(ev(0, OK)) == []  # a status line is read as the start of a frame, not as HTTP/1.x


def test_results_are_frozen_and_keep_the_json_shape() -> None:
    d = Decoder()
    (req,) = d.feed(ev(1, GET))
    (resp,) = d.feed(ev(0, OK))
    with pytest.raises(AttributeError):
        req.meta = resp.meta  # type: ignore[misc]
    keys = [
        "kind",
        "meta",
        "message",
        "exchange_id",
        "latency",
        "websocket",
        "h2_frames",
        "raw_b64",
        "errors",
    ]
    for item, kind in ((req, "request"), (resp, "response")):
        obj = item.to_dict()
        assert list(obj) == keys and obj["kind"] == kind and obj["exchange_id"] == req.exchange.id
        assert obj["websocket"] == [] and obj["h2_frames"] == [] and obj["raw_b64"] is None
    (raw,) = d.feed(Event(uuid="2_2_x_4_0", payload=b"\x00\x01hello"))
    obj = raw.to_dict()
    assert (
        list(obj) == keys
        and obj["kind"] == "raw"
        and obj["raw_b64"] == "AAFoZWxsbw=="
        and obj["message"] is None
    )
    json.dumps(obj)


@pytest.mark.parametrize(
    "event",
    [
        Event(payload=None),  # type: ignore[arg-type]
        Event(payload="GET / HTTP/1.1\r\n\r\n"),  # type: ignore[arg-type]
        Event(uuid=None, payload=b"GET / HTTP/1.1\r\n\r\n"),  # type: ignore[arg-type]
        Event(timestamp="soon", payload=b"abc"),  # type: ignore[arg-type]
    ],
)
def test_metadata_failure_is_reported_once_and_the_decoder_goes_on(event: Event) -> None:
    d = Decoder()
    (item,) = d.feed(event)
    assert isinstance(item, Undecoded) and len(item.errors) == 1 and item.errors[0].startswith("metadata: ")
    json.dumps(item.to_dict())
    (req,) = d.feed(ev(1, GET))
    assert isinstance(req, RequestDone) and req.message.path == "/"


def test_h2_frame_header_agrees_with_hyperframe() -> None:
    frames: list[hyperframe.frame.Frame] = [
        hyperframe.frame.SettingsFrame(0, settings={4: 65535}),
        hyperframe.frame.HeadersFrame(1, data=b"\x82", flags=["END_HEADERS", "END_STREAM"]),
        hyperframe.frame.DataFrame(2**31 - 1, data=b"x" * 70000, flags=["PADDED"], pad_length=3),
        hyperframe.frame.PingFrame(0, opaque_data=b"12345678", flags=["ACK"]),
        hyperframe.frame.WindowUpdateFrame(7, window_increment=1000),
    ]
    for frame in frames:
        wire = frame.serialize()
        parsed, length = hyperframe.frame.Frame.parse_frame_header(memoryview(wire[:FRAME_HEADER_SIZE]))
        got = frame_header(b"pad" + wire, 3)
        assert got == (length, parsed.type, wire[4], parsed.stream_id, False)
    assert frame_header(bytes.fromhex("000000000080000001"))[3:] == (1, True)


@given(
    st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PING, Opcode.CLOSE]),
    st.integers(min_value=0, max_value=70000),
    st.booleans(),
    st.booleans(),
)
def test_websocket_frame_header_agrees_with_websockets(
    opcode: Opcode, size: int, fin: bool, mask: bool
) -> None:
    if opcode in (Opcode.PING, Opcode.CLOSE):
        size, fin = min(size, 123), True
    data = Close(1000, "x" * (size - 3)).serialize() if opcode is Opcode.CLOSE and size >= 3 else b"y" * size
    wire = Frame(opcode, data, fin=fin).serialize(mask=mask, extensions=[])
    header = ws_frame_header(b"z" + wire, 1)
    assert header is not None
    assert (header.fin, header.rsv, header.opcode, header.masked, header.length) == (
        fin,
        0,
        opcode.value,
        mask,
        len(data),
    )
    assert header.size == len(wire) - len(data)
    assert ws_frame_header(wire[:1]) is None


def test_connections_leave_no_reference_cycles() -> None:
    """A connection's state is freed by reference counting when it is evicted or flushed: a cycle would
    leave each short connection to the garbage collector, whose passes cost more than decoding did."""
    events = []
    for n in range(60):
        conn = f"{n}_{n}_curl_5"
        events += [Event(uuid=f"{conn}_1", payload=GET), Event(uuid=f"{conn}_0", payload=OK)]
    events.append(
        Event(uuid="99_99_curl_5_1", payload=b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab")
    )
    gc.collect()
    gc.disable()
    try:
        d = Decoder(max_connections=8)
        done = [item for e in events for item in d.feed(e)] + d.flush()
        assert sum(isinstance(item, ResponseDone) for item in done) == 60
        del d, done
        assert gc.collect() == 0
    finally:
        gc.enable()

"""classify_payload on bytes from real HTTP/1.1, HTTP/2 and WebSocket implementations."""

from __future__ import annotations

import h2.config
import h2.connection
import h11
from hypothesis import given
from hypothesis import strategies as st

from ecaptureq.decode.classify import H2_PREFACE, classify_payload
from ecaptureq.protocol import EventType


def _h11_request() -> bytes:
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(
        h11.Request(method="POST", target="/api?q=1", headers=[("Host", "x"), ("Content-Length", "2")])
    )
    return (data or b"") + (conn.send(h11.Data(data=b"{}")) or b"")


def _h11_response() -> bytes:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    return conn.send(h11.Response(status_code=404, headers=[("Content-Length", "0")])) or b""


def _h2_pair() -> tuple[bytes, bytes, bytes]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    preface = client.data_to_send()
    client.send_headers(
        1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "a")], end_stream=True
    )
    headers = client.data_to_send()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(preface + headers)
    server.data_to_send()
    server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    server.send_data(1, b"hello", end_stream=True)
    return preface, headers, server.data_to_send()


def test_http1_request_and_response() -> None:
    assert classify_payload(_h11_request()) == EventType.HTTP1_REQUEST
    assert classify_payload(_h11_response()) == EventType.HTTP1_RESPONSE


def test_http1_request_cut_inside_request_line() -> None:
    assert classify_payload(b"GET /index.ht") == EventType.HTTP1_REQUEST
    assert classify_payload(b"HTTP/1.1 2") == EventType.HTTP1_RESPONSE


def test_http2_preface_is_a_request() -> None:
    preface, _, _ = _h2_pair()
    assert preface.startswith(H2_PREFACE)
    assert classify_payload(preface) == EventType.HTTP2_REQUEST
    assert classify_payload(preface, is_write=False) == EventType.HTTP2_REQUEST


def test_http2_headers_direction_from_pseudo_headers() -> None:
    _, headers, response = _h2_pair()
    assert classify_payload(headers) == EventType.HTTP2_REQUEST
    assert classify_payload(headers, is_write=False) == EventType.HTTP2_REQUEST
    assert classify_payload(response) == EventType.HTTP2_RESPONSE
    assert classify_payload(response, is_write=True) == EventType.HTTP2_RESPONSE


def test_http2_without_headers_uses_the_hint() -> None:
    settings_ack = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
    assert classify_payload(settings_ack, is_write=True) == EventType.HTTP2_REQUEST
    assert classify_payload(settings_ack, is_write=False) == EventType.HTTP2_RESPONSE
    assert classify_payload(settings_ack) == EventType.HTTP2_RESPONSE


def test_websocket_frames() -> None:
    assert classify_payload(b"\x81\x05hello") == EventType.WEBSOCKET
    assert classify_payload(b"\x82\x83abcd" + bytes(3)) == EventType.WEBSOCKET
    assert classify_payload(b"\x88\x02\x03\xe8") == EventType.WEBSOCKET


def test_unknown() -> None:
    assert classify_payload(b"") == EventType.UNKNOWN
    assert classify_payload(b"hello world, this is not a protocol") == EventType.UNKNOWN
    assert classify_payload(b"GETTING / HTTP/1.1") == EventType.UNKNOWN


@given(st.binary(max_size=512), st.sampled_from([None, True, False]))
def test_random_bytes_never_raise(data: bytes, is_write: bool | None) -> None:
    assert classify_payload(data, is_write) in {0, 1, 2, 3, 4, 5}

"""WebSocket frames from the websockets library's sans-I/O protocol, rendering and the watch filters."""

from __future__ import annotations

import json

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from ecaptureq.cli.http_text import EventFilter, format_http_text, http_json
from ecaptureq.decode import Decoded, Decoder
from ecaptureq.decode.websocket import parse_websocket
from ecaptureq.protocol import Event


def _client_frames() -> bytes:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    client.state = State.OPEN  # skip the handshake: we want frame bytes
    client.send_text(b"hello \xc3\xa9")
    client.send_binary(bytes(range(10)))
    client.send_ping(b"p")
    client.send_close(1000, "bye")
    return b"".join(client.data_to_send())


def _server_frames() -> bytes:
    server = ServerProtocol()
    server.state = State.OPEN
    server.send_text(b"x" * 70000)
    return b"".join(server.data_to_send())


def test_masked_client_frames() -> None:
    frames, errors = parse_websocket(_client_frames())
    assert not errors
    assert [f.opcode_name for f in frames] == ["text", "binary", "ping", "close"]
    assert all(f.masked for f in frames)
    assert frames[0].text == "hello é"
    assert frames[1].data == bytes(range(10)) and frames[1].text is None
    assert frames[3].close_code == 1000 and frames[3].text == "bye"


def test_unmasked_server_frame_with_64_bit_length_and_cut() -> None:
    data = _server_frames()
    (frame,), _ = parse_websocket(data)
    assert not frame.masked and frame.length == 70000 and frame.text == "x" * 70000 and not frame.truncated
    (cut,), _ = parse_websocket(data[:5000])
    assert cut.truncated and cut.length == 70000 and len(cut.data) == 5000 - 10


def test_garbage_is_an_error_not_an_exception() -> None:
    frames, errors = parse_websocket(b"\x83\x00")
    assert not frames and errors


def _decode(events: list[Event]) -> list[Decoded]:
    d = Decoder()
    return [item for ev in events for item in d.feed(ev)]


def test_websocket_after_upgrade_and_type_5() -> None:
    up_req = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    up_resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    items = _decode(
        [
            Event(uuid="1_1_app_3_0", payload=up_req),
            Event(uuid="1_1_app_3_1", payload=up_resp),
            Event(uuid="1_1_app_3_0", payload=_client_frames()),
            Event(uuid="1_1_app_3_1", type=5, payload=_server_frames()),
        ]
    )
    kinds = [i.kind for i in items]
    assert kinds == ["request", "response", "websocket", "websocket"]
    assert items[1].message is not None and items[1].message.status == 101
    assert "ws text FIN masked" in format_http_text(items[2])


def test_format_http_text_truncates_with_a_clear_mark() -> None:
    body = json.dumps({"k": "v" * 500}).encode()
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    items = _decode(
        [
            Event(uuid="1_1_c_3_0", payload=b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            Event(uuid="1_1_c_3_1", payload=resp),
        ]
    )
    text = format_http_text(items[1], body_limit=100)
    assert text.startswith("< HTTP/1.1 200 OK")
    assert "for GET https://example.com/x" in text
    assert "  Content-Type: application/json" in text
    pretty = json.dumps({"k": "v" * 500}, indent=2)
    assert text.rstrip().endswith(f"… truncated ({len(pretty) - 100} more bytes)")
    full = format_http_text(items[1], body_limit=10_000)
    assert "truncated" not in full
    req_text = format_http_text(items[0])
    assert req_text.splitlines()[0].startswith("> GET https://example.com/x HTTP/1.1")


def test_binary_body_is_a_hex_dump() -> None:
    body = bytes(range(64))
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 64\r\n\r\n" + body
    (item,) = _decode([Event(uuid="1_1_c_3_1", payload=resp)])
    text = format_http_text(item, body_limit=32)
    assert "00000000  00 01 02 03" in text and "00000010  10 11" in text and "00000020" not in text
    assert "… truncated (32 more bytes)" in text


def test_http_json() -> None:
    (item,) = _decode(
        [Event(uuid="1_1_c_3_0", payload=b"POST /f HTTP/1.1\r\nHost: a.b\r\nContent-Length: 3\r\n\r\nx=1")]
    )
    found = http_json(item)
    assert found is not None
    obj = json.loads(json.dumps(found))
    assert obj["method"] == "POST" and obj["url"] == "https://a.b/f" and obj["path"] == "/f"
    assert obj["headers"] == [["Host", "a.b"], ["Content-Length", "3"]] and obj["body"] == "x=1"
    json.dumps(item.to_dict())
    assert item.exchange is not None
    json.dumps(item.exchange.to_dict())


def test_event_filter() -> None:
    ev = Event(
        uuid="77_77_curl_3_0",
        pid=77,
        pname="curl",
        src_ip="10.0.0.1",
        src_port=5555,
        dst_ip="10.0.0.2",
        dst_port=443,
        type=1,
        payload=b"POST /login HTTP/1.1\r\nHost: bank.example\r\nContent-Length: 12\r\n\r\npassword=hu2",
    )
    items = Decoder().feed(ev)
    assert EventFilter().matches(ev, items)
    assert not EventFilter().active
    assert EventFilter(pid=77).matches(ev, items) and not EventFilter(pid=78).matches(ev, items)
    assert EventFilter(pname_glob="cu*").matches(ev, items) and not EventFilter(pname_glob="wget").matches(
        ev, items
    )
    assert EventFilter(host="bank.example").matches(ev, items) and EventFilter(host="10.0.0.2").matches(
        ev, items
    )
    assert not EventFilter(host="other.example").matches(ev, items)
    assert EventFilter(port=443).matches(ev, items) and EventFilter(port=5555).matches(ev, items)
    assert not EventFilter(port=80).matches(ev, items)
    assert EventFilter(types=[1]).matches(ev, items) and not EventFilter(types=[3, 4]).matches(ev, items)
    assert EventFilter(grep=r"pass\w+=hu\d").matches(ev, items)
    assert not EventFilter(grep="bank").matches(ev, items)  # the body only, not the headers
    assert not EventFilter(pid=77, port=80).matches(ev, items)
    assert EventFilter(grep="hu2").matches(ev)  # nothing decoded: the payload is searched

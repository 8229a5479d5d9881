"""pcapng out on hostile and odd captures, judged by tshark: huge payloads, unknown or garbage addresses,
one uuid for both directions, reused fds, evictions, a capture that began mid-connection, garbage; and
WebSocket after its upgrade."""

from __future__ import annotations

import io
import ipaddress
import random
import sys
import threading
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from tshark_support import fields, h2_streams, needs_tshark
from websockets.sync.client import connect
from websockets.sync.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from decode_taps import TapProxy, events_from_chunks

from ecaptureq.decode.classify import H2_PREFACE
from ecaptureq.protocol import Event
from ecaptureq.sinks.pcapng import COMMENT_FIELD_MAX, MSS, PcapngWriter

pytestmark = needs_tshark
T0 = 1_760_495_631_000_000_000
REQUEST = b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLEAN = 'tcp.analysis.flags || tcp.checksum.status == "Bad" || ip.checksum.status == "Bad" || _ws.malformed'
"""What must match no packet: tshark's TCP analysis warnings, bad checksums, malformed packets."""


def write(path: Path, events: list[Event], **options: object) -> PcapngWriter:
    with path.open("wb") as f:
        writer = PcapngWriter(f, **options)  # type: ignore[arg-type]
        for ev in events:
            writer.write_event(ev)
        writer.close()
    assert fields(path, CLEAN, "frame.number", "_ws.expert.message") == []
    return writer


def ev(uuid: str, payload: bytes, i: int = 0, **kw: object) -> Event:
    return Event(timestamp=T0 + i * 1000, uuid=uuid, payload=payload, **kw)  # type: ignore[arg-type]


@pytest.mark.e2e
def test_huge_payloads_span_many_segments_and_acks(tmp_path: Path) -> None:
    body = random.Random(1).randbytes(5 * 1024 * 1024)
    head = f"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    tuple_ = {"src_ip": "10.0.0.5", "src_port": 40522, "dst_ip": "10.0.0.9", "dst_port": 443}
    out = tmp_path / "huge.pcapng"
    write(out, [ev("1_1_up_3_1", head + body, 0, **tuple_), ev("1_1_up_3_0", RESPONSE, 1, **tuple_)])
    rows = fields(out, "tcp", "tcp.srcport", "tcp.len", "tcp.flags.str")
    data = [int(r[1]) for r in rows if r[0] == "40522" and int(r[1])]
    assert sum(data) == len(head) + len(body)
    assert len(data) == -(-(len(head) + len(body)) // MSS[4]) and max(data) == MSS[4]
    # The server acknowledges as the upload goes, so the window is never overrun.
    pure_acks = [r for r in rows if r[0] == "80" and r[1] == "0" and r[2].replace("·", "") == "A"]
    assert len(pure_acks) >= len(body) // 65535
    (request,) = fields(out, "http.request", "http.request.uri", "http.content_length")
    assert request == ["/upload", str(len(body))]
    assert fields(out, "http.response", "http.response.code") == [["200"]]


@pytest.mark.e2e
def test_unknown_and_garbage_addresses_are_made_up_stable_and_distinct(tmp_path: Path) -> None:
    events = [
        ev("5_5_a_3_1", REQUEST, 0),  # nothing known
        ev("5_5_a_3_0", RESPONSE, 1),
        ev("6_6_b_4_1", REQUEST, 2, src_ip="not-an-ip", src_port=70000, dst_ip="999.1.1.1", dst_port=0),
        ev("7_7_c_5_1", REQUEST, 3, src_ip="::1", src_port=40000, dst_ip="10.0.0.1", dst_port=443),  # mixed
        ev(
            "8_8_d_6_1", REQUEST, 4, src_ip="::ffff:10.1.1.1", src_port=40001, dst_ip="10.2.2.2", dst_port=443
        ),
    ]
    first, second = tmp_path / "1.pcapng", tmp_path / "2.pcapng"
    write(first, events)
    write(second, events)
    assert first.read_bytes() == second.read_bytes()  # stable: the same capture, the same file
    syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0"
    syns = fields(first, syn, "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
                  "frame.comment")  # fmt: skip
    assert len(syns) == 4
    made_up_clients, made_up_servers = (
        ipaddress.ip_network("198.18.0.0/16"),
        ipaddress.ip_network("198.19.0.0/16"),
    )
    for row in syns[:2]:  # nothing usable: both ends made up
        assert (
            ipaddress.ip_address(row[0]) in made_up_clients
            and ipaddress.ip_address(row[2]) in made_up_servers
        )
        assert 49152 <= int(row[4]) < 65536 and row[5] == "80"
        assert row[6].endswith("real=?:?->?:?")
    assert syns[0][0] != syns[1][0]  # two connections, two clients
    # An IPv6 client and an IPv4 server are not one tuple: the client is kept, the server made up.
    assert syns[2][1] == "::1" and ipaddress.ip_address(syns[2][3]) in ipaddress.ip_network("2001:db8:5::/48")
    assert syns[2][6].endswith("real=[::1]:40000->?:443")
    # An IPv4-mapped IPv6 address is the IPv4 address.
    assert syns[3][0] == "10.1.1.1" and syns[3][2] == "10.2.2.2"
    assert [r[0] for r in fields(first, "http.request", "http.request.uri")] == ["/a"] * 4


@pytest.mark.e2e
def test_one_uuid_for_both_directions_is_sorted_by_content(tmp_path: Path) -> None:
    # No data_type suffix and no text header: which way each event went is read from the bytes.
    out = tmp_path / "both.pcapng"
    tuple_ = {"src_ip": "10.0.0.5", "src_port": 40522, "dst_ip": "10.0.0.9", "dst_port": 8443}
    write(out, [ev("9_9_app_4", REQUEST, 0, **tuple_), ev("9_9_app_4", RESPONSE, 1, **tuple_),
                ev("9_9_app_4", REQUEST.replace(b"/a", b"/b"), 2, **tuple_),
                ev("9_9_app_4", RESPONSE, 3, **tuple_)])  # fmt: skip
    requests = fields(out, "http.request", "ip.src", "tcp.srcport", "http.request.uri")
    responses = fields(out, "http.response", "ip.src", "tcp.srcport", "http.response_for.uri")
    assert requests == [["10.0.0.5", "40522", "/a"], ["10.0.0.5", "40522", "/b"]]
    assert responses == [
        ["10.0.0.9", "80", "http://example.test/a"],
        ["10.0.0.9", "80", "http://example.test/b"],
    ]


@pytest.mark.e2e
def test_a_traced_server_is_the_server(tmp_path: Path) -> None:
    # nginx's view: it reads (data_type 0) the request on its port 443 from a client's port 51000.
    out = tmp_path / "server.pcapng"
    tuple_ = {"src_ip": "10.0.0.9", "src_port": 443, "dst_ip": "10.0.0.5", "dst_port": 51000}
    write(out, [ev("80_80_nginx_9_0", REQUEST, 0, **tuple_), ev("80_80_nginx_9_1", RESPONSE, 1, **tuple_)])
    (syn,) = fields(out, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "ip.src", "tcp.srcport", "ip.dst")
    assert syn == ["10.0.0.5", "51000", "10.0.0.9"]
    assert fields(out, "http.response", "http.response.code", "tcp.srcport") == [["200", "80"]]


@pytest.mark.e2e
def test_a_reused_fd_on_a_new_tuple_is_a_new_stream(tmp_path: Path) -> None:
    out = tmp_path / "reuse.pcapng"
    a = {"src_ip": "10.0.0.5", "src_port": 40001, "dst_ip": "10.0.0.9", "dst_port": 443}
    b = {**a, "src_port": 40002}
    write(out, [ev("3_3_curl_5_1", REQUEST, 0, **a), ev("3_3_curl_5_0", RESPONSE, 1, **a),
                ev("3_3_curl_5_1", REQUEST, 2, **b), ev("3_3_curl_5_0", RESPONSE, 3, **b)])  # fmt: skip
    rows = fields(out, "tcp", "tcp.stream", "tcp.srcport", "tcp.flags.str")
    flags = [(r[0], r[2].replace("·", "")) for r in rows]
    assert flags.index(("0", "AF")) < flags.index(("1", "S"))  # the first closed before the second opened
    assert {r[1] for r in rows if r[0] == "1"} == {"40002", "80"}
    assert len(fields(out, "http.response", "http.response.code")) == 2


@pytest.mark.e2e
def test_eviction_closes_the_oldest_and_keeps_every_byte(tmp_path: Path) -> None:
    out = tmp_path / "evict.pcapng"
    events = []
    for i in range(3):
        for n in range(3):  # three connections in turn, two tracked at a time
            uuid = f"{n + 10}_{n + 10}_w_{n}"
            events.append(ev(uuid + "_1", REQUEST.replace(b"/a", f"/{n}/{i}".encode()), len(events)))
            events.append(ev(uuid + "_0", RESPONSE, len(events)))
    writer = write(out, events, max_connections=2)
    assert writer.stats.connections > 3  # evicted ones came back as new streams
    uris = [r[0] for r in fields(out, "http.request", "http.request.uri")]
    assert uris == [f"/{n}/{i}" for i in range(3) for n in range(3)]
    assert len(fields(out, "http.response", "http.response.code")) == 9


def h2_exchange() -> tuple[bytes, bytes]:
    """The bytes a python-hyper h2 client and server exchange for one GET (preface included)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/late"), (":scheme", "https"),
                            (":authority", "example.test")], end_stream=True)  # fmt: skip
    request = client.data_to_send()
    server.initiate_connection()
    for event in server.receive_data(request):
        if isinstance(event, h2.events.RequestReceived):
            server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
            server.send_data(1, b"late join", end_stream=True)
    return request, server.data_to_send()


@pytest.mark.e2e
def test_a_capture_that_began_after_the_h2_preface_gets_a_synthetic_one(tmp_path: Path) -> None:
    request, response = h2_exchange()
    out = tmp_path / "late.pcapng"
    # The capture saw the request's frames, not the preface before them.
    write(out, [ev("4_4_grpc_7_1", request[len(H2_PREFACE) :], 0), ev("4_4_grpc_7_0", response, 1)])
    (stream,) = h2_streams(out).values()
    assert dict(stream.request)[":path"] == "/late" and dict(stream.response)[":status"] == "200"
    assert stream.body == b"late join"
    (preface,) = fields(out, "http2.magic", "frame.comment")
    assert "synthetic=HTTP/2-connection-preface-not-captured" in preface[0]


@pytest.mark.e2e
def test_a_preface_that_comes_after_the_server_settings_is_not_doubled(tmp_path: Path) -> None:
    request, response = h2_exchange()
    out = tmp_path / "server-first.pcapng"
    # The server's SETTINGS were captured before the client's preface: one preface in the stream.
    settings_len = 9 + int.from_bytes(response[:3], "big")
    write(out, [ev("4_4_grpc_7_0", response[:settings_len], 0), ev("4_4_grpc_7_1", request, 1),
                ev("4_4_grpc_7_0", response[settings_len:], 2)])  # fmt: skip
    assert len(fields(out, "http2.magic", "frame.number")) == 1
    (stream,) = h2_streams(out).values()
    assert dict(stream.request)[":path"] == "/late" and stream.body == b"late join"


@pytest.mark.e2e
def test_garbage_odd_metadata_and_text_headers(tmp_path: Path) -> None:
    rng = random.Random(16)
    huge_uuid = "1_1_" + 'x\n\x00"' * 250_000 + "_3_1"
    events = [
        ev(huge_uuid, rng.randbytes(3000), 0, pname='evil "name"\n\x1b[31m'),
        ev("2_2_z_3_1", b"", 1),  # nothing to write
        Event(timestamp=0, uuid="2_2_z_3_1", payload=rng.randbytes(100)),  # no timestamp: the previous one
        Event(timestamp=-5, uuid="2_2_z_3_0", payload=rng.randbytes(100)),
        Event(timestamp=1_760_495_700, uuid="2_2_z_3_0", payload=rng.randbytes(100)),  # seconds
        Event(timestamp=83_000_000_000, uuid="2_2_z_3_0", payload=rng.randbytes(100)),  # since boot
        ev("", rng.randbytes(50), 2),  # no uuid at all
        # eCapture 2.x: everything in a text header before the payload.
        Event(payload=b"PID:2746, Comm:curl, Src:10.0.0.5:40522, Dest:93.184.216.34:443,\n" + REQUEST),
    ]
    events += [ev(f"{i}_{i}_r_{i}_{i % 2}", rng.randbytes(rng.randrange(1, 5000)), i) for i in range(50)]
    out = tmp_path / "garbage.pcapng"
    writer = write(out, events)
    assert writer.stats.events == len(events) and writer.stats.empty_events == 1
    comments = [r[0] for r in fields(out, "frame.comment", "frame.comment")]
    assert max(len(c) for c in comments) < 3 * COMMENT_FIELD_MAX
    assert any(c.startswith('pid=1 comm="evil \\"name\\"\\n\\u001b[31m" uuid="1_1_x\\n') for c in comments)
    # The text header gave the tuple and was taken off the payload.
    assert fields(out, "http.request", "ip.src", "ip.dst", "http.request.uri") == [
        ["10.0.0.5", "93.184.216.34", "/a"]
    ]
    stamps = [float(r[0]) for r in fields(out, "tcp.stream == 1", "frame.time_epoch")]
    assert stamps[0] == T0 / 1e9 and 1_760_495_700.0 in stamps and 83.0 in stamps


def test_only_the_stream_errors_reach_the_caller() -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        PcapngWriter(Full())  # type: ignore[arg-type]


@pytest.mark.e2e
def test_websocket_after_the_upgrade(tmp_path: Path) -> None:
    # A real WebSocket conversation (the websockets library on both ends) through a tapped socket.
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        tap = TapProxy(server.socket.getsockname()[1])
        with connect(f"ws://127.0.0.1:{tap.port}/chat", compression=None) as ws:
            ws.send("hello over websocket")
            assert ws.recv(timeout=10) == "hello over websocket"
            ws.send(b"\x00\x01binary")
            assert ws.recv(timeout=10) == b"\x00\x01binary"
        server.shutdown()
    tap.close()
    out = tmp_path / "ws.pcapng"
    write(out, events_from_chunks(tap.chunks, src=tap.client_addrs[0], dst=("127.0.0.1", tap.port)))
    assert fields(out, "http.request", "http.request.uri", "http.upgrade") == [["/chat", "websocket"]]
    frames = fields(out, "websocket.opcode == 1 || websocket.opcode == 2", "tcp.srcport", "websocket.opcode",
                    "websocket.payload.text", "data.data")  # fmt: skip
    client = str(tap.client_addrs[0][1])
    assert [(r[0] == client, r[1], r[2] or r[3]) for r in frames] == [
        (True, "1", "hello over websocket"),
        (False, "1", "hello over websocket"),
        (True, "2", "000162696e617279"),
        (False, "2", "000162696e617279"),
    ]


@pytest.mark.e2e
def test_both_ends_of_one_connection_are_two_conversations(tmp_path: Path) -> None:
    # curl and nginx on one host, both traced: one TCP connection, two views of it.
    client_view = {"src_ip": "127.0.0.1", "src_port": 50000, "dst_ip": "127.0.0.1", "dst_port": 8443}
    server_view = {"src_ip": "127.0.0.1", "src_port": 8443, "dst_ip": "127.0.0.1", "dst_port": 50000}
    out = tmp_path / "both-ends.pcapng"
    events = [
        ev("10_10_curl_5_1", REQUEST, 0, **client_view),
        ev("20_20_nginx_9_0", REQUEST, 1, **server_view),
        ev("20_20_nginx_9_1", RESPONSE, 2, **server_view),
        ev("10_10_curl_5_0", RESPONSE, 3, **client_view),
    ]
    write(out, events)
    rows = fields(out, "http.request", "tcp.stream", "tcp.srcport", "frame.comment")
    assert len({r[0] for r in rows}) == 2 and rows[0][1] == "50000" and rows[1][1] != "50000"
    assert "comm=nginx" in rows[1][2] and rows[1][2].endswith("real=127.0.0.1:50000->127.0.0.1:8443")
    assert len(fields(out, "http.response", "http.response.code")) == 2

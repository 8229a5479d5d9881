"""Captured-traffic workloads for the consumer benchmarks: real HTTP/1.1 and HTTP/2 bytes as LogEntry frames.

- ``http1``: POST requests with a small JSON body and their ``200`` JSON responses (about 600 B an event,
  headers included), 50 exchanges per keep-alive connection, written by h11.
- ``http2``: gRPC-like unary calls (``POST``, ``application/grpc``, length-prefixed messages, trailers),
  250 streams per connection, written by h2.

Events carry the uuid, addresses and pid an eCapture probe gives them (``pid_tid_comm_fd_datatype``), so
the decoder pairs the two directions of a connection as it does live.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import h2.config
import h2.connection
import h11

from ecaptureq.decode import classify_payload
from ecaptureq.protocol import Event, encode_event
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid

BASE_NS = 1_760_495_631_000_000_000
HTTP1_PER_CONNECTION = 50
H2_STREAMS_PER_CONNECTION = 250
WORKLOADS = ("http1", "http2")


def _http1_exchange(n: int) -> tuple[bytes, bytes]:
    body = json.dumps(
        {
            "id": n,
            "user": f"user{n % 97}",
            "action": "update",
            "items": [{"sku": f"sku-{n % 500 + k}", "qty": k} for k in range(8)],
        }
    ).encode()
    client = h11.Connection(h11.CLIENT)
    headers = [
        ("Host", "api.example.com"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Authorization", "Bearer " + "t" * 32),
    ]
    req = client.send(h11.Request(method="POST", target=f"/v1/orders/{n}", headers=headers)) or b""
    req += client.send(h11.Data(data=body)) or b""
    req += client.send(h11.EndOfMessage()) or b""
    server = h11.Connection(h11.SERVER)
    server.receive_data(req)
    while server.next_event() not in (h11.NEED_DATA, h11.PAUSED):
        pass
    answer = json.dumps(
        {
            "id": n,
            "status": "ok",
            "version": n * 7 % 1000,
            "lines": [{"sku": f"sku-{k}", "ok": True} for k in range(8)],
        }
    ).encode()
    rh = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(answer))),
        ("Date", "Mon, 27 Oct 2025 10:00:00 GMT"),
        ("Server", "nginx"),
    ]
    resp = server.send(h11.Response(status_code=200, headers=rh)) or b""
    resp += server.send(h11.Data(data=answer)) or b""
    resp += server.send(h11.EndOfMessage()) or b""
    return req, resp


def _http1_chunks(n: int) -> Iterator[tuple[int, bool, bytes]]:
    pairs = [_http1_exchange(i) for i in range(HTTP1_PER_CONNECTION)]
    for i in range(n):
        exchange = i // 2
        req, resp = pairs[exchange % HTTP1_PER_CONNECTION]
        yield exchange // HTTP1_PER_CONNECTION, i % 2 == 0, req if i % 2 == 0 else resp


def _grpc_message(n: int) -> bytes:
    msg = b"\x0a\x08order-%03d\x10" % (n % 1000) + bytes([n % 128]) + b"\x1a\x20" + b"p" * 32
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def h2_pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection, list[tuple[bool, bytes]]]:
    """An h2 client and server that have exchanged their prefaces, and those bytes as ``(is_write, bytes)``
    (the client writes): the start of every HTTP/2 workload."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    out: list[tuple[bool, bytes]] = [(True, client.data_to_send())]
    server.receive_data(out[0][1])
    out.append((False, server.data_to_send()))
    client.receive_data(out[-1][1])
    return client, server, out


def _h2_connection() -> list[tuple[bool, bytes]]:
    client, server, out = h2_pair()
    acks = client.data_to_send()
    if acks:
        out.append((True, acks))
        server.receive_data(acks)
    for n in range(H2_STREAMS_PER_CONNECTION):
        sid = 1 + 2 * n
        hdrs = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/orders.v1.Orders/Get"),
            (":authority", "api.example.com:443"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "5S"),
            ("user-agent", "grpc-go/1.64.0"),
        ]
        client.send_headers(sid, hdrs)
        client.send_data(sid, _grpc_message(n), end_stream=True)
        req = client.data_to_send()
        server.receive_data(req)
        server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        server.send_data(sid, _grpc_message(n + 1))
        server.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)
        resp = server.data_to_send()
        client.receive_data(resp)
        out += [(True, req), (False, resp)]
        acks = client.data_to_send()  # WINDOW_UPDATEs the client owes
        if acks:
            out.append((True, acks))
            server.receive_data(acks)
        acks = server.data_to_send()
        if acks:
            out.append((False, acks))
            client.receive_data(acks)
    return out


def _http2_chunks(n: int) -> Iterator[tuple[int, bool, bytes]]:
    per_conn = _h2_connection()
    i = 0
    conn = 0
    while True:
        for is_write, payload in per_conn:
            if i == n:
                return
            yield conn, is_write, payload
            i += 1
        conn += 1


def workload_events(name: str, n: int) -> list[Event]:
    """``n`` events of the workload ``name`` (``http1`` or ``http2``), in capture order."""
    chunks = _http1_chunks(n) if name == "http1" else _http2_chunks(n)
    events = []
    for i, (conn, is_write, payload) in enumerate(chunks):
        pid = 2000 + conn
        events.append(
            Event(
                timestamp=BASE_NS + i * 1000,
                uuid=format_uuid(pid, pid, "client", 7, DATA_TYPE_WRITE if is_write else DATA_TYPE_READ),
                src_ip="10.0.0.5",
                src_port=30000 + conn % 30000,
                dst_ip="93.184.216.34",
                dst_port=443,
                pid=pid,
                pname="client",
                type=classify_payload(payload, is_write),
                length=len(payload),
                payload=payload,
            )
        )
    return events


def workload_frames(name: str, n: int) -> list[bytes]:
    """The events of :func:`workload_events` as encoded LogEntry frames."""
    return [encode_event(ev) for ev in workload_events(name, n)]

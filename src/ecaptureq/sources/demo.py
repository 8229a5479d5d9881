"""A demo source: synthetic but realistic traffic, for trying ecaptureq without root or eBPF.

A few made-up processes make HTTPS requests. The bytes are produced by real HTTP implementations
(h11 for HTTP/1.1, h2 for HTTP/2 with connections that close after a few exchanges and reopen, each with
its own HPACK state, as real clients' do), so what the
demo publishes looks to a decoder like what eCapture captures: one event per write or read, uuids
``<pid>_<tid>_<comm>_<fd>_<data_type>`` (eCapture's numbers: 1 = write, 0 = read) that stay the same for
a connection, the connection's 4-tuple, and Unix-epoch nanosecond timestamps. Its run log says that it
is a demo.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import h2.config
import h2.connection
import h2.events
import h11

from ecaptureq.protocol import Event, EventType
from ecaptureq.protocol.banner import startup_banner
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid
from ecaptureq.sources.base import Sink

WRITE, READ = DATA_TYPE_WRITE, DATA_TYPE_READ  # eCapture's numbers: 0 SSL_read, 1 SSL_write


def demo_banner() -> list[str]:
    """The demo source's startup run log (the server it runs in publishes its own banner, and home page)."""
    return startup_banner(
        "demo processes=curl,python3,grpc-gateway",
        app="ecaptureq demo",
        variant="demo",
        homepage=False,
        details=[
            'Description="Synthetic traffic for trying ecaptureq: '
            'nothing here was captured from a real process."'
        ],
    )


@dataclass
class _Conn:
    """One TLS connection of a made-up process."""

    pid: int
    tid: int
    comm: str
    fd: int
    src: tuple[str, int]
    dst: tuple[str, int]

    def event(self, direction: int, etype: int, payload: bytes) -> Event:
        return Event(
            timestamp=time.time_ns(),
            uuid=format_uuid(self.pid, self.tid, self.comm, self.fd, direction),
            src_ip=self.src[0],
            src_port=self.src[1],
            dst_ip=self.dst[0],
            dst_port=self.dst[1],
            pid=self.pid,
            pname=self.comm,
            type=etype,
            length=len(payload),
            payload=payload,
        )


def _h11_bytes(conn: h11.Connection, *events: h11.Event) -> bytes:
    return b"".join(conn.send(ev) or b"" for ev in events)


class _Http1Client:
    """A process speaking HTTP/1.1 over one keep-alive connection."""

    def __init__(self, conn: _Conn, host: str, rng: random.Random) -> None:
        self.conn = conn
        self.host = host
        self.rng = rng

    def exchange(self) -> Iterator[Event]:
        client = h11.Connection(h11.CLIENT)
        server = h11.Connection(h11.SERVER)
        rng = self.rng
        kind = rng.choice(("list", "get", "login", "chunked"))
        headers = [("Host", self.host), ("User-Agent", f"{self.conn.comm}/8.5.0"), ("Accept", "*/*")]
        body = b""
        if kind == "login":
            body = b"username=alice&password=correct+horse+battery+staple"
            target = "/login"
            method = "POST"
            headers += [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", str(len(body))),
            ]
        elif kind == "get":
            target = f"/v1/users/{rng.randint(1, 999)}"
            method = "GET"
        else:
            target = "/v1/users?page=" + str(rng.randint(1, 9))
            method = "GET"
            headers.append(("Accept-Encoding", "gzip"))
        request = h11.Request(method=method, target=target, headers=headers)
        req_events: list[h11.Event] = [request]
        if body:
            req_events.append(h11.Data(data=body))
        req_events.append(h11.EndOfMessage())
        req_bytes = _h11_bytes(client, *req_events)
        server.receive_data(req_bytes)
        yield self.conn.event(WRITE, EventType.HTTP1_REQUEST, req_bytes)

        if kind == "login":
            resp_body = json.dumps({"token": "eyJhbGciOiJIUzI1NiJ9.demo", "expires_in": 3600}).encode()
            resp_headers = [("Content-Type", "application/json"), ("Content-Length", str(len(resp_body)))]
            status = 200
        elif kind == "get":
            uid = target.rsplit("/", 1)[1]
            resp_body = json.dumps({"id": int(uid), "name": f"user{uid}", "roles": ["reader"]}).encode()
            resp_headers = [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(resp_body))),
            ]
            status = 200 if int(uid) % 7 else 404
        else:
            users = [{"id": i, "name": f"user{i}", "active": i % 3 != 0} for i in range(1, 41)]
            resp_body = gzip.compress(json.dumps({"users": users}).encode(), mtime=0)
            resp_headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
            if kind == "chunked":
                resp_headers.append(("Transfer-Encoding", "chunked"))
            else:
                resp_headers.append(("Content-Length", str(len(resp_body))))
            status = 200
        resp_headers.append(("Server", "nginx/1.22.1"))
        response = h11.Response(
            status_code=status, headers=resp_headers, reason=b"OK" if status == 200 else b"Not Found"
        )
        while server.next_event() not in (h11.NEED_DATA, h11.PAUSED):
            pass
        if kind == "chunked":
            half = len(resp_body) // 2
            resp_bytes = _h11_bytes(
                server,
                response,
                h11.Data(data=resp_body[:half]),
                h11.Data(data=resp_body[half:]),
                h11.EndOfMessage(),
            )
        else:
            resp_bytes = _h11_bytes(server, response, h11.Data(data=resp_body), h11.EndOfMessage())
        # A large response arrives in more than one read, as it does from a real socket.
        cut = len(resp_bytes) // 2 if len(resp_bytes) > 300 else len(resp_bytes)
        yield self.conn.event(READ, EventType.HTTP1_RESPONSE, resp_bytes[:cut])
        if cut < len(resp_bytes):
            yield self.conn.event(READ, EventType.UNKNOWN, resp_bytes[cut:])


CONNECTION_EXCHANGES: Final = (3, 8)
"""How many exchanges a demo HTTP/2 connection carries before the client closes it (GOAWAY) and opens a
new one, as real clients do: a capture that starts late sees a connection begin within seconds."""


class _Http2Client:
    """A process speaking HTTP/2 over connections that come and go (one HPACK state per connection)."""

    def __init__(self, conn: _Conn, host: str, rng: random.Random, ports: Iterator[int]) -> None:
        self.conn = conn
        self.host = host
        self.rng = rng
        self.ports = ports
        self._open()

    def _open(self) -> None:
        self.left = self.rng.randint(*CONNECTION_EXCHANGES)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.client.initiate_connection()
        self.server.initiate_connection()

    def _close(self) -> Iterator[Event]:
        """The client ends the connection with a GOAWAY; the next exchange opens a new one (new port and
        file descriptor: a new uuid), with the connection preface and an empty header table."""
        self.client.close_connection()
        yield self.conn.event(WRITE, EventType.UNKNOWN, self.client.data_to_send())
        c = self.conn
        self.conn = _Conn(c.pid, c.tid, c.comm, c.fd + 1, (c.src[0], next(self.ports)), c.dst)
        self._open()

    def exchange(self) -> Iterator[Event]:
        client, server, rng = self.client, self.server, self.rng
        stream_id = client.get_next_available_stream_id()
        is_grpc = rng.random() < 0.3
        if is_grpc:
            path = "/helloworld.Greeter/SayHello"
            name = f"demo-{rng.randint(1, 99)}".encode()
            message = b"\x0a" + bytes([len(name)]) + name
            body = b"\x00" + len(message).to_bytes(4, "big") + message
            headers = [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", self.host),
                (":path", path),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            client.send_headers(stream_id, headers)
            client.send_data(stream_id, body, end_stream=True)
        else:
            path = f"/api/v2/items/{rng.randint(1, 500)}"
            headers = [
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", self.host),
                (":path", path),
                ("user-agent", "grpc-gateway/1.4"),
                ("accept", "application/json"),
            ]
            client.send_headers(stream_id, headers, end_stream=True)
        out = client.data_to_send()
        yield self.conn.event(WRITE, EventType.HTTP2_REQUEST, out)
        _acknowledge(server, server.receive_data(out))

        if is_grpc:
            reply = b"\x0a\x0bHello demo!"
            data = b"\x00" + len(reply).to_bytes(4, "big") + reply
            server.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
            server.send_data(stream_id, data)
            server.send_headers(stream_id, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)
        else:
            item = json.dumps({"id": path.rsplit("/", 1)[1], "price": round(rng.uniform(1, 99), 2)}).encode()
            server.send_headers(
                stream_id,
                [
                    (":status", "200"),
                    ("content-type", "application/json"),
                    ("content-length", str(len(item))),
                ],
            )
            server.send_data(stream_id, item, end_stream=True)
        back = server.data_to_send()
        _acknowledge(client, client.receive_data(back))
        yield self.conn.event(READ, EventType.HTTP2_RESPONSE, back)
        ack = client.data_to_send()  # SETTINGS ACK and WINDOW_UPDATEs, as a real client writes them
        if ack:
            server.receive_data(ack)
            yield self.conn.event(WRITE, EventType.UNKNOWN, ack)
        self.left -= 1
        if self.left <= 0:
            yield from self._close()


def _acknowledge(conn: h2.connection.H2Connection, events: list[h2.events.Event]) -> None:
    """Return flow-control credit for received DATA, as a real peer does (WINDOW_UPDATE frames)."""
    for ev in events:
        if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)


def _processes(rng: random.Random) -> list[_Http1Client | _Http2Client]:
    client_ip = "10.0.0.5"
    ports = itertools.count(rng.randint(40000, 50000))
    return [
        _Http1Client(
            _Conn(2746, 2746, "curl", 5, (client_ip, next(ports)), ("93.184.216.34", 443)),
            "api.example.com",
            rng,
        ),
        _Http1Client(
            _Conn(3101, 3107, "python3", 7, (client_ip, next(ports)), ("104.18.32.7", 443)),
            "auth.example.org",
            rng,
        ),
        _Http2Client(
            _Conn(4410, 4415, "grpc-gateway", 12, (client_ip, next(ports)), ("142.250.74.46", 443)),
            "shop.example.net",
            rng,
            ports,
        ),
    ]


class DemoSource:
    """Synthetic traffic: ``await DemoSource().run(sink)`` publishes the banner, then exchanges forever.

    Parameters:
        interval: seconds between two exchanges (0 for as fast as possible).
        limit: stop after this many events (``None``: never).
        seed: seed of the random choices, for a reproducible stream.
    """

    def __init__(self, interval: float = 0.5, limit: int | None = None, seed: int | None = None) -> None:
        self.interval = interval
        self.limit = limit
        self.rng = random.Random(seed)

    def events(self) -> Iterator[Event]:
        """Yield demo events forever (the timestamps are taken as they are made)."""
        for exchange in self._exchanges():
            yield from exchange

    def _exchanges(self) -> Iterator[Iterator[Event]]:
        procs = _processes(self.rng)
        while True:
            yield self.rng.choice(procs).exchange()

    async def run(self, sink: Sink) -> None:
        """Publish the banner, then events until ``limit`` (or until cancelled)."""
        for line in demo_banner():
            sink.publish_log(line)
        sent = 0
        for exchange in self._exchanges():
            # An exchange's events are made (and stamped) together: the pause is between exchanges, as
            # between a real client's requests, not inside one (a response split over two reads).
            for event in list(exchange):
                if self.limit is not None and sent >= self.limit:
                    return
                sink.publish_event(event)
                sent += 1
                if self.interval == 0:
                    await asyncio.sleep(0)
            if self.interval:
                await asyncio.sleep(self.interval * self.rng.uniform(0.5, 1.5))

"""HTTP/2 decoding on bytes real implementations exchanged: curl and nginx (h2c) through a tapped loopback
socket, and python-hyper's h2 client and server over a real TCP connection."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest
from decode_taps import (
    C2S,
    S2C,
    curl,
    decode_all,
    events_from_chunks,
    h2_client_get,
    nginx,
    rechunk,
)

from ecaptureq.cli.http_text import format_http_text
from ecaptureq.decode import Exchange, H2Control, RequestDone, ResponseDone, Undecoded, event_meta
from ecaptureq.decode.http2 import H2Connection
from ecaptureq.protocol import Event

pytestmark = pytest.mark.e2e

DOC = {"items": [{"id": i, "name": f"item {i}"} for i in range(200)]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    root = tmp_path_factory.mktemp("www")
    (root / "data.json").write_text(json.dumps(DOC))
    (root / "page.txt").write_text("plain text page\n" * 50)
    (root / "blob.bin").write_bytes(bytes(range(256)) * 64)
    with nginx(root, tmp_path_factory.mktemp("nginx")) as (p1, p2):
        yield p1, p2, root


def test_curl_h2_to_nginx(site: tuple[int, int, Path]) -> None:
    _, p2, _root = site
    tap = curl(p2, ["/data.json"], "--http2-prior-knowledge", "--compressed")
    items = decode_all(events_from_chunks(tap.chunks))
    (req,) = [i.message for i in items if isinstance(i, RequestDone) and i.message]
    (resp,) = [i for i in items if isinstance(i, ResponseDone) and i.message]
    assert req.method == "GET" and req.url == f"http://127.0.0.1:{tap.port}/data.json" and req.stream_id == 1
    assert req.header("user-agent").startswith("curl/")
    assert resp.message is not None and resp.message.status == 200 and resp.message.content_encoding == "gzip"
    assert json.loads(resp.message.body_text or "") == DOC
    assert resp.exchange is not None and resp.exchange.request is req and resp.exchange.protocol == "h2"
    controls = [f.type for i in items if isinstance(i, H2Control) for f in i.frames]
    assert "PREFACE" in controls and "SETTINGS" in controls
    assert not [i for i in items if isinstance(i, Undecoded)]


def test_h2_streams_to_nginx_paired_by_stream_id(site: tuple[int, int, Path]) -> None:
    _, p2, root = site
    paths = ["/data.json", "/blob.bin", "/page.txt", "/missing"]
    tap = h2_client_get(p2, paths)
    items = decode_all(events_from_chunks(tap.chunks))
    reqs = [i for i in items if isinstance(i, RequestDone)]
    resps = [i for i in items if isinstance(i, ResponseDone)]
    assert [r.message.path for r in reqs if r.message] == paths
    assert [r.message.stream_id for r in reqs if r.message] == [1, 3, 5, 7]
    by_path = {r.exchange.request.path: r for r in resps if r.exchange and r.exchange.request}
    assert set(by_path) == set(paths)
    data = by_path["/data.json"].message
    assert data is not None and data.status == 200 and data.protocol == "h2"
    assert data.content_encoding == "gzip" and data.body_size < len(json.dumps(DOC))
    assert data.is_json and json.loads(data.body_text or "") == DOC
    blob = by_path["/blob.bin"].message
    assert blob is not None and blob.body == (root / "blob.bin").read_bytes() and blob.body_text is None
    page = by_path["/page.txt"].message
    assert page is not None and page.body_text == "plain text page\n" * 50
    missing = by_path["/missing"].message
    assert missing is not None and missing.status == 404
    for r in resps:
        assert r.exchange is not None and r.exchange.protocol == "h2" and r.exchange.latency is not None
        assert r.message is not None and not r.message.errors
    # Requests 2-4 reuse HPACK dynamic-table entries request 1 created: decoded statefully.
    assert all(r.message.header("user-agent") == "h2-test" for r in reqs if r.message)
    assert not [i for i in items if isinstance(i, Undecoded)]


def test_h2_split_into_tiny_captures(site: tuple[int, int, Path]) -> None:
    _, p2, _root = site
    tap = h2_client_get(p2, ["/data.json", "/page.txt"])
    items = decode_all(events_from_chunks(rechunk(tap.chunks, 5)))
    resps = [i for i in items if isinstance(i, ResponseDone) and i.message]
    bodies = {
        r.exchange.request.path: r.message.body_text
        for r in resps
        if r.exchange and r.exchange.request and r.message
    }
    assert bodies["/page.txt"] == "plain text page\n" * 50
    assert json.loads(bodies["/data.json"] or "") == DOC
    assert len(resps) == 2 and not [i for i in items if isinstance(i, Undecoded)]


def test_curl_http11_gzip_chunked_from_nginx(site: tuple[int, int, Path]) -> None:
    p1, _, _root = site
    tap = curl(p1, ["/data.json", "/page.txt"], "--http1.1", "--compressed")
    resp_bytes = tap.direction(S2C)
    assert b"Transfer-Encoding: chunked" in resp_bytes and b"Content-Encoding: gzip" in resp_bytes
    items = decode_all(events_from_chunks(tap.chunks))
    resps = [i.message for i in items if isinstance(i, ResponseDone) and i.message]
    assert [m.status for m in resps] == [200, 200]
    assert json.loads(resps[0].body_text or "") == DOC
    assert resps[1].body_text == "plain text page\n" * 50


def test_late_join_decodes_what_it_can_and_marks_the_rest(site: tuple[int, int, Path]) -> None:
    _, p2, _root = site
    tap = h2_client_get(p2, ["/page.txt", "/page.txt"])
    # Find the second request's HEADERS: it refers to dynamic-table entries the first one created.
    c2s = tap.direction(C2S)
    d = H2Connection()
    frames = []
    pos = 24
    while pos + 9 <= len(c2s):
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(c2s[pos : pos + 9]))
        frames.append((frame.type, frame.stream_id, c2s[pos : pos + 9 + length]))
        pos += 9 + length
    second = next(raw for ftype, sid, raw in frames if ftype == 1 and sid == 3)
    result = d.feed("client", second)
    (late,) = result.messages  # reported, with what the static table and literals give
    assert late.method == "GET" and late.scheme == "http"  # both from the static table
    assert not late.path and not late.url and not late.errors  # its :path was an entry never seen
    assert any("sent before the capture began" in n for n in late.notes)
    text = format_http_text(RequestDone(event_meta(Event()), late, Exchange(id=1, connection="")))
    assert "> GET (path unknown)" in text
    first = next(raw for ftype, sid, raw in frames if ftype == 1 and sid == 1)
    ok = H2Connection().feed("client", first)
    assert not ok.errors and ok.messages[0].path == "/page.txt"


# -- python-hyper h2 client and server over a real TCP connection ---------------------------------------


class Recorder:
    """Wraps a socket and records every chunk sendall() writes (what an SSL_write probe would see)."""

    def __init__(
        self, sock: socket.socket, name: str, log: list[tuple[str, bytes]], lock: threading.Lock
    ) -> None:
        self.sock, self.name, self.log, self.lock = sock, name, log, lock

    def send(self, data: bytes) -> None:
        if data:
            with self.lock:
                self.log.append((self.name, data))
            self.sock.sendall(data)


def _serve_h2(listener: socket.socket, log: list[tuple[str, bytes]], lock: threading.Lock) -> None:
    sock, _ = listener.accept()
    rec = Recorder(sock, S2C, log, lock)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    rec.send(conn.data_to_send())
    bodies: dict[int, bytes] = {}
    while True:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                sid = ev.stream_id
                if sid == 1:  # gRPC: length-prefixed reply and grpc-status trailers
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    conn.send_data(sid, b"\x00\x00\x00\x00\x05reply\x00\x00\x00\x00\x02ok")
                    conn.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "OK")], end_stream=True)
                elif sid == 3:  # padded, gzip'd JSON
                    body = gzip.compress(b'{"big": "' + b"x" * 30000 + b'"}')
                    conn.send_headers(
                        sid,
                        [
                            (":status", "200"),
                            ("content-type", "application/json"),
                            ("content-encoding", "gzip"),
                        ],
                    )
                    conn.send_data(sid, body, end_stream=True, pad_length=17)
                elif sid == 5:
                    conn.reset_stream(sid, error_code=8)
            elif isinstance(ev, h2.events.PingReceived):
                pass
            elif isinstance(ev, h2.events.ConnectionTerminated):
                rec.send(conn.data_to_send())
                sock.close()
                return
        rec.send(conn.data_to_send())
    sock.close()


def h2_pair_capture() -> list[tuple[str, bytes]]:
    log: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    listener = socket.create_server(("127.0.0.1", 0))
    t = threading.Thread(target=_serve_h2, args=(listener, log, lock), daemon=True)
    t.start()
    sock = socket.create_connection(listener.getsockname(), timeout=10)
    rec = Recorder(sock, C2S, log, lock)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    rec.send(conn.data_to_send())
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/pkg.Svc/Call"),
            (":scheme", "https"),
            (":authority", "grpc.test"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    conn.send_data(1, b"\x00\x00\x00\x00\x03abc", end_stream=True)
    # Headers larger than one frame: HEADERS + CONTINUATION.
    big = [(f"x-big-{i}", "v" * 200) for i in range(120)]
    conn.send_headers(
        3,
        [(":method", "GET"), (":path", "/big"), (":scheme", "https"), (":authority", "grpc.test"), *big],
        end_stream=True,
    )
    conn.send_headers(
        5,
        [(":method", "GET"), (":path", "/reset"), (":scheme", "https"), (":authority", "grpc.test")],
        end_stream=True,
    )
    conn.ping(b"pingpong")
    rec.send(conn.data_to_send())
    done: set[int] = set()
    while len(done) < 3:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                done.add(ev.stream_id)
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        rec.send(conn.data_to_send())
    conn.close_connection()
    rec.send(conn.data_to_send())
    t.join(timeout=10)
    sock.close()
    listener.close()
    return log


def frame_types(data: bytes) -> list[int]:
    """The types of the whole frames in ``data``."""
    types, pos = [], 0
    while pos + 9 <= len(data):
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        types.append(frame.type)
        pos += 9 + length
    return types


def test_h2_pair_grpc_continuation_padding_reset_goaway() -> None:
    log = h2_pair_capture()
    c2s = b"".join(d for n, d in log if n == C2S)
    assert 9 in frame_types(c2s[24:])  # the big header block really was split into CONTINUATION frames
    for chunks in (log, rechunk(log, 11)):
        items = decode_all(events_from_chunks(chunks))
        reqs = {i.message.stream_id: i.message for i in items if isinstance(i, RequestDone) and i.message}
        resps = {i.message.stream_id: i for i in items if isinstance(i, ResponseDone) and i.message}
        assert reqs[1].grpc_messages == [b"abc"]
        assert reqs[3].header("x-big-119") == "v" * 200  # reassembled from CONTINUATION
        g = resps[1].message
        assert g is not None and g.grpc_messages == [b"reply", b"ok"] and ("grpc-status", "0") in g.trailers
        assert resps[1].exchange is not None and resps[1].exchange.request is reqs[1]
        j = resps[3].message
        assert j is not None and j.is_json and json.loads(j.body_text or "")["big"] == "x" * 30000
        assert not j.errors
        frames = [f for i in items if isinstance(i, H2Control) for f in i.frames]
        types = {f.type for f in frames}
        assert {"PREFACE", "SETTINGS", "PING", "RST_STREAM", "GOAWAY"} <= types
        assert any(f.type == "RST_STREAM" and f.stream_id == 5 and f.summary == "CANCEL" for f in frames)
        assert not [i for i in items if isinstance(i, Undecoded)]


def test_h2_truncated_frame_is_flushed_incomplete() -> None:
    log = h2_pair_capture()
    s2c = b"".join(d for n, d in log if n == S2C)
    c2s = b"".join(d for n, d in log if n == C2S)
    cut = s2c.find(b"reply") + 2
    items = decode_all(events_from_chunks([(C2S, c2s), (S2C, s2c[:cut])]))
    partial = [i.message for i in items if isinstance(i, ResponseDone) and i.message]
    assert partial and not partial[0].complete and partial[0].status == 200


def test_garbage_on_an_h2_connection_is_reported_raw() -> None:
    log = h2_pair_capture()
    c2s = b"".join(d for n, d in log if n == C2S)
    items = decode_all(events_from_chunks([(C2S, c2s[:24]), (C2S, b"\xff" * 40)]))
    raws = [i for i in items if isinstance(i, Undecoded)]
    assert raws and raws[0].errors and raws[0].raw == b"\xff" * 40


def test_server_settings_split_and_first_are_held_until_recognised() -> None:
    log = h2_pair_capture()
    server_first = next(d for n, d in log if n == S2C)
    rest = [(n, d) for n, d in log if d is not server_first]
    chunks = [(S2C, server_first[i : i + 5]) for i in range(0, len(server_first), 5)] + rest
    items = decode_all(events_from_chunks(chunks))
    assert not [i for i in items if isinstance(i, Undecoded)]
    # Streams 1 and 3 are answered; stream 5 is reset before any response headers.
    assert sorted(i.message.stream_id or 0 for i in items if isinstance(i, ResponseDone)) == [1, 3]

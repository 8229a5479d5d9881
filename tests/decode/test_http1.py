"""HTTP/1.x decoding on bytes a real http.server and real clients exchanged over a tapped loopback socket."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import brotli
import pytest
import zstandard
from decode_taps import C2S, S2C, TapProxy, decode_all, events_from_chunks, rechunk

from ecaptureq.decode import Decoded, Decoder, RequestDone, ResponseDone, Undecoded

pytestmark = pytest.mark.e2e

TEXT = ("héllo wörld " * 400).encode()
NOISY = b"".join(hashlib.sha256(b"%d" % i).hexdigest().encode() for i in range(400))

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def _bomb() -> bytes:
    """1 GiB of zeros, gzip'd (about 1 MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(1024)]
    parts.append(c.flush())
    return b"".join(parts)


BOMB = _bomb()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/json":
            self._send(json.dumps({"user": "ünï", "ids": [1, 2, 3]}).encode(), "application/json")
        elif path.startswith("/enc/"):
            coding = path[5:]
            self._send(ENCODERS[coding](TEXT), "text/plain; charset=utf-8", {"Content-Encoding": coding})
        elif path == "/latin1":
            self._send("café crème".encode("iso-8859-1"), "text/plain; charset=iso-8859-1")
        elif path == "/bin":
            self._send(bytes(range(256)) * 4, "application/octet-stream")
        elif path == "/bomb":
            self._send(BOMB, "text/plain", {"Content-Encoding": "gzip"})
        elif path == "/badgzip":
            good = gzip.compress(NOISY)
            self._send(good[:3000] + b"\xff" * 20 + good[3020:], "text/plain", {"Content-Encoding": "gzip"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first piece,", b" second piece,", b" last"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._send(body, self.headers.get("Content-Type", "application/octet-stream"))


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def capture(port: int, requests: list[tuple[str, str, bytes | None, dict[str, str]]]) -> TapProxy:
    """Send ``requests`` with http.client on one keep-alive connection through a tap; return the tap."""
    tap = TapProxy(port)
    conn = http.client.HTTPConnection("127.0.0.1", tap.port, timeout=10)
    for method, path, body, headers in requests:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
    conn.close()
    tap.close()
    return tap


def responses(items: list[Decoded]) -> list[Decoded]:
    return [i for i in items if isinstance(i, ResponseDone)]


def test_keepalive_exchanges_are_paired_in_order(server: int) -> None:
    tap = capture(
        server, [("GET", "/json", None, {}), ("HEAD", "/json", None, {}), ("GET", "/latin1", None, {})]
    )
    items = decode_all(events_from_chunks(tap.chunks))
    reqs = [i for i in items if isinstance(i, RequestDone)]
    resps = responses(items)
    assert [r.message.method for r in reqs if r.message] == ["GET", "HEAD", "GET"]
    assert next(r.message.url for r in reqs if r.message) == f"https://127.0.0.1:{tap.port}/json"
    assert [r.exchange.request.path for r in resps if r.exchange and r.exchange.request] == [
        "/json",
        "/json",
        "/latin1",
    ]
    json_resp = resps[0].message
    assert json_resp is not None and json_resp.is_json
    assert json.loads(json_resp.body_text or "") == {"user": "ünï", "ids": [1, 2, 3]}
    assert "\n  " in (json_resp.pretty_text or "") and "\n" not in (json_resp.body_text or "")
    head_resp = resps[1].message
    assert head_resp is not None and head_resp.body == b"" and head_resp.header("content-length") != "0"
    assert resps[2].message is not None and resps[2].message.body_text == "café crème"
    assert resps[2].message.charset == "iso-8859-1"
    for r in resps:
        assert r.exchange is not None and r.exchange.latency is not None and r.exchange.latency >= 0
        assert r.exchange.pid == 4242 and r.exchange.pname == "curl"
    assert not [i for i in items if isinstance(i, Undecoded)]


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_content_encodings(server: int, coding: str) -> None:
    tap = capture(server, [("GET", f"/enc/{coding}", None, {"Accept-Encoding": coding})])
    (resp,) = responses(decode_all(events_from_chunks(tap.chunks)))
    assert resp.message is not None
    assert resp.message.content_encoding == coding
    assert resp.message.body == TEXT
    assert resp.message.body_text == TEXT.decode()
    assert resp.message.body_size < len(TEXT)
    assert not resp.message.errors


def test_split_into_small_captures(server: int) -> None:
    tap = capture(
        server,
        [
            ("POST", "/echo", b'{"k": "v"}', {"Content-Type": "application/json"}),
            ("GET", "/enc/br", None, {}),
        ],
    )
    items = decode_all(events_from_chunks(rechunk(tap.chunks, 7)))
    resps = responses(items)
    assert len(resps) == 2
    assert resps[0].exchange is not None and resps[0].exchange.request is not None
    assert resps[0].exchange.request.body_text == '{"k": "v"}'
    assert resps[0].exchange.request.pretty_text == '{\n  "k": "v"\n}'
    assert resps[1].message is not None and resps[1].message.body == TEXT
    assert not [i for i in items if isinstance(i, Undecoded)]


def test_several_messages_in_one_payload(server: int) -> None:
    tap = capture(
        server, [("GET", "/json", None, {}), ("GET", "/bin", None, {}), ("GET", "/chunked", None, {})]
    )
    joined = [(C2S, tap.direction(C2S)), (S2C, tap.direction(S2C))]
    items = decode_all(events_from_chunks(joined))
    assert [i.message.method for i in items if isinstance(i, RequestDone) and i.message] == ["GET"] * 3
    resps = responses(items)
    assert [r.message.status for r in resps if r.message] == [200, 200, 200]
    assert resps[1].message is not None and resps[1].message.body_text is None
    assert resps[1].message.body == bytes(range(256)) * 4
    assert resps[2].message is not None and resps[2].message.body_text == "first piece, second piece, last"


def test_pipelined_requests_over_a_raw_socket(server: int) -> None:
    tap = TapProxy(server)
    with socket.create_connection(("127.0.0.1", tap.port)) as s:
        s.sendall(b"".join(b"GET /json?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(3)))
        got = b""
        while got.count(b"HTTP/1.1 200") < 3:
            got += s.recv(65536)
    tap.close()
    items = decode_all(events_from_chunks(tap.chunks))
    resps = responses(items)
    assert [r.exchange.request.path for r in resps if r.exchange and r.exchange.request] == [
        "/json?n=0",
        "/json?n=1",
        "/json?n=2",
    ]


def test_form_body(server: int) -> None:
    form = urlencode({"user": "alice", "pass": "s3cr&t"})
    tap = capture(
        server, [("POST", "/login", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})]
    )
    req = next(i for i in decode_all(events_from_chunks(tap.chunks)) if isinstance(i, RequestDone))
    assert req.message is not None and req.message.form == [("user", "alice"), ("pass", "s3cr&t")]


def test_decompression_bomb_is_capped_and_reported(server: int) -> None:
    tap = capture(server, [("GET", "/bomb", None, {})])
    (resp,) = responses(decode_all(events_from_chunks(tap.chunks), Decoder(body_limit=4 * 1024 * 1024)))
    msg = resp.message
    assert msg is not None
    assert msg.truncated
    assert len(msg.body) == 4 * 1024 * 1024
    assert any("bomb" in n for n in msg.notes)
    assert msg.body_size == len(BOMB)


def test_default_cap_is_16_mib(server: int) -> None:
    tap = capture(server, [("GET", "/bomb", None, {})])
    (resp,) = responses(decode_all(events_from_chunks(tap.chunks)))
    assert resp.message is not None and len(resp.message.body) == 16 * 1024 * 1024 and resp.message.truncated


def test_broken_gzip_gives_partial_decode_with_error(server: int) -> None:
    tap = capture(server, [("GET", "/badgzip", None, {})])
    (resp,) = responses(decode_all(events_from_chunks(tap.chunks)))
    msg = resp.message
    assert msg is not None
    assert msg.errors and "compressed" in msg.errors[0]
    assert msg.raw  # the raw bytes are kept
    assert msg.body and NOISY.startswith(msg.body) and len(msg.body) < len(NOISY)


def test_garbage_then_a_message_resynchronises(server: int) -> None:
    tap = capture(server, [("GET", "/json", None, {})])
    chunks = [(S2C, b"\x00\x01garbage that is no status line\r\n"), *tap.chunks]
    items = decode_all(events_from_chunks(chunks))
    raws = [i for i in items if isinstance(i, Undecoded)]
    assert raws and raws[0].raw.startswith(b"\x00\x01garbage")
    assert [r.message.status for r in responses(items) if r.message] == [200]


def test_response_cut_short_is_flushed_as_incomplete(server: int) -> None:
    tap = capture(server, [("GET", "/bin", None, {})])
    resp_bytes = tap.direction(S2C)
    chunks = [(C2S, tap.direction(C2S)), (S2C, resp_bytes[: len(resp_bytes) - 100])]
    items = decode_all(events_from_chunks(chunks))
    (resp,) = responses(items)
    assert resp.message is not None and not resp.message.complete
    assert len(resp.message.body) == 1024 - 100

"""The HTTP/1.x fast path (whole Content-Length messages parsed without h11's state machine) gives exactly
what h11 gives: every input here is decoded by the parser as it is and by one that always uses h11, in
several splits, and the messages must be equal field by field."""

from __future__ import annotations

import random
import re
from typing import Literal

from h11._abnf import header_field

from ecaptureq.bench.workloads import workload_events
from ecaptureq.decode import http1
from ecaptureq.decode.http1 import FIELD_LINE, Http1Parser
from ecaptureq.decode.model import HttpMessage


class H11Only(Http1Parser):
    """The reference: the same parser with the fast path off."""

    def _fast(self, data: bytes, time_ns: int | None, out: list[HttpMessage]) -> bool:
        return False


def _req(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


REQUESTS = [
    _req("GET / HTTP/1.1\nHost: a\n"),
    _req("POST /x?y=1 HTTP/1.1\nHost: a.example\nContent-Length: 5\nContent-Type: text/plain\n", b"hello"),
    _req("POST /x HTTP/1.1\nHost: a\nContent-Length: 3\n", b"abcGET /next HTTP/1.1\r\nHost: b\r\n\r\n"),
    _req("POST /x HTTP/1.1\nHost: a\nContent-Length: 10\n", b"abc"),  # body continues later
    _req("POST /x HTTP/1.1\nHost: a\nContent-Length: 3\nContent-Length: 3\n", b"abc"),
    _req("POST /x HTTP/1.1\nHost: a\nContent-Length: 3, 3\n", b"abc"),
    _req("POST /x HTTP/1.1\nHost: a\nContent-Length: +3\n", b"abc"),
    _req("POST /x HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n"),
    _req("GET / HTTP/1.1\n"),  # no Host
    _req("GET / HTTP/1.1\nHost: a\nHost: b\n"),
    _req("GET / HTTP/1.0\n"),
    _req("GET / HTTP/2.0\nHost: a\n"),
    _req("GET http://a.example/p HTTP/1.1\nHost: a.example\n"),
    _req("CONNECT a.example:443 HTTP/1.1\nHost: a.example:443\n"),
    _req("OPTIONS * HTTP/1.1\nHost: a\n"),
    _req("GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n"),
    _req("GET / HTTP/1.1\nHost: a\nX-Folded: one\n two\n"),
    _req("GET / HTTP/1.1\nHost: a\nBad Header: x\n"),
    _req("GET / HTTP/1.1\nHost: a\nX-Trail:   spaced value \t\n"),
    _req("GET / HTTP/1.1\nHost: a\nX-Empty:\n"),
    _req("GET / HTTP/1.1\nHost: a\nX-Latin: caf\xe9\n"),
    _req("GET /\x7f HTTP/1.1\nHost: a\n"),
    _req("get / HTTP/1.1\nhost: a\n"),
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",  # head not finished
    _req("POST /gz HTTP/1.1\nHost: a\nContent-Encoding: gzip\nContent-Length: 4\n", b"nope"),
    _req("POST /j HTTP/1.1\nHost: a\nContent-Type: application/json\nContent-Length: 7\n", b'{"a":1}'),
]

RESPONSES = [
    _req("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi"),
    _req("HTTP/1.1 200\nContent-Length: 0\n"),
    _req("HTTP/1.1 200 OK\n", b"until close"),
    _req("HTTP/1.1 204 No Content\n"),
    _req("HTTP/1.1 304 Not Modified\nContent-Length: 10\n"),
    _req("HTTP/1.1 304 Not Modified\nContent-Length: 2\n", b"hi"),
    _req("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"),
    _req("HTTP/1.1 100 Continue\n") + _req("HTTP/1.1 200 OK\nContent-Length: 1\n", b"x"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hiHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx"),
    _req("HTTP/1.0 200 OK\nContent-Length: 2\n", b"hi"),
    _req("HTTP/1.1 999 Odd\nContent-Length: 1\n", b"x"),
    _req("HTTP/1.1 20 Short\nContent-Length: 1\n", b"x"),
    _req("HTTP/1.1 200 OK\nContent-Length: 5\n", b"ab"),
    _req("HTTP/1.1 200 OK\nContent-Type: application/json; charset=utf-8\nContent-Length: 9\n", b'{"k":"v"}'),
    # Chunked: the fast path takes a whole body without trailers; everything else is h11's.
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2\r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"),
    _req(
        "HTTP/1.1 200 OK\nTransfer-Encoding: Chunked\n",
        b"a\r\n0123456789\r\n0\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
    ),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2;ext=1\r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2 \r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2\r\nhiX\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2\r\nhiXY0\r\n\r\n"),  # no CRLF after a chunk
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"2\r\nhi\r\n0\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"g\r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"12345678901234567\r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 2\n", b"2\r\nhi\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n", b"0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Encoding: gzip\n", b"4\r\nnope\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"1\r\nx\r\n" * 12 + b"0\r\n\r\n"),
]
REQUESTS += [
    _req(
        "POST /c HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
        b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ),
    _req("POST /c HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"9\r\n123456789\r\n0\r\nX-T: 1\r\n\r\n"),
]


def _decode(
    cls: type[Http1Parser], kind: Literal["request", "response"], chunks: list[bytes], hint: str | None
) -> list[tuple[list[HttpMessage], int, bool]]:
    parser = cls(kind, body_limit=8, method_hint=(lambda _n: hint) if kind == "response" else None)
    steps = [(parser.feed(c, time_ns=i), parser.buffered, parser.in_message) for i, c in enumerate(chunks)]
    steps.append((parser.flush(), parser.buffered, parser.in_message))
    return steps


def _splits(data: bytes, rng: random.Random) -> list[list[bytes]]:
    cuts = sorted(rng.sample(range(1, len(data)), min(2, len(data) - 1))) if len(data) > 2 else []
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [[data], parts, [data, data], [data[:1], data[1:]]]


def _check(kind: Literal["request", "response"], data: bytes, rng: random.Random) -> None:
    hints = [None] if kind == "request" else [None, "GET", "HEAD", "CONNECT"]
    for hint in hints:
        for chunks in _splits(data, rng):
            assert _decode(Http1Parser, kind, chunks, hint) == _decode(H11Only, kind, chunks, hint), (
                kind,
                hint,
                chunks,
            )


def test_fast_path_matches_h11_on_hand_written_messages() -> None:
    rng = random.Random(7)
    for data in REQUESTS:
        _check("request", data, rng)
    for data in RESPONSES:
        _check("response", data, rng)


def test_fast_path_matches_h11_on_mutated_messages() -> None:
    rng = random.Random(11)
    alphabet = b" \t\r\n:;,/0123456789aAzZ\x00\x7f\xe9-"
    seeds = [(k, d) for k, ds in (("request", REQUESTS), ("response", RESPONSES)) for d in ds]
    for _ in range(1500):
        kind, data = rng.choice(seeds)
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(3)
            at = rng.randrange(len(buf) + 1)
            if op == 0 and buf:
                del buf[min(at, len(buf) - 1)]
            elif op == 1:
                buf.insert(at, rng.choice(alphabet))
            elif buf:
                buf[min(at, len(buf) - 1)] = rng.choice(alphabet)
        _check(kind, bytes(buf), rng)  # type: ignore[arg-type]


def test_fast_path_matches_h11_on_the_benchmark_workload() -> None:
    rng = random.Random(3)
    for ev in workload_events("http1", 40):
        _check("request" if ev.type == 1 else "response", ev.payload, rng)


def test_fast_path_line_grammar_is_h11s() -> None:
    """The fast path's one-regex form of a header line (FIELD_LINE) accepts exactly the lines h11's
    header_field does, over every byte that matters to either (each position tries each of them)."""
    h11_line = re.compile(header_field.encode("ascii"))
    ours = re.compile(FIELD_LINE.encode("ascii"))
    alphabet = [bytes([b]) for b in (0, 9, 10, 11, 12, 13, 28, 32, 33, 58, 65, 127, 128, 133, 160, 255)]
    rng = random.Random(5)
    lines = [b"X:" + a + b for a in alphabet for b in alphabet] + [a + b":v" for a in alphabet]
    lines += [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    lines += [b"N:" + line for line in lines[-3000:]]
    for line in lines:
        assert (ours.fullmatch(line) is None) == (h11_line.fullmatch(line) is None), line


def test_remembered_header_lines_stay_bounded_and_decode_as_h11() -> None:
    """The fast path remembers what it read of each distinct text of header lines: the same lines under
    other start lines (a cache hit) decode as h11 decodes them, a refused set of lines stays refused on a
    hit, and however many distinct heads come, the memory stays within its bounds."""
    rng = random.Random(5)
    for n in range(3 * http1._KNOWN_FIELDS_MAX):
        data = _req(f"POST /o/{n} HTTP/1.1\nHost: h{n % 300}\nContent-Length: 2\n", b"{}")
        _check("request", data, rng)
        assert len(http1._KNOWN_FIELDS) <= http1._KNOWN_FIELDS_MAX
    refused = "Host: a\nContent-Length: 2\nTransfer-Encoding: chunked\n"
    for target in ("/a", "/b"):
        _check("request", _req(f"POST {target} HTTP/1.1\n{refused}", b"2\r\nhi\r\n0\r\n\r\n"), rng)
    long_lines = "\nX-Big: " + "v" * http1._KNOWN_FIELDS_KEY_MAX
    _check("request", _req(f"GET / HTTP/1.1\nHost: a{long_lines}\n"), rng)
    assert all(len(k) <= http1._KNOWN_FIELDS_KEY_MAX for k in http1._KNOWN_FIELDS)


def test_remembered_status_lines_stay_bounded_and_decode_as_h11() -> None:
    """Status lines are remembered too (a server answers with a few): a hit, a refused line and a line
    of another version decode as h11 decodes them, and the memory stays within its bounds."""
    rng = random.Random(9)
    for n in range(3 * http1._KNOWN_STATUS_MAX):
        _check("response", _req(f"HTTP/1.1 200 R{n}\nContent-Length: 2\n", b"{}"), rng)
        assert len(http1._KNOWN_STATUS) <= http1._KNOWN_STATUS_MAX
    for line in ("HTTP/1.1 200 ", "HTTP/1.0 200 OK", "HTTP/1.1 2000 No", "HTTP/1.1 200 " + "r" * 300):
        for _ in range(2):
            _check("response", _req(f"{line}\nContent-Length: 2\n", b"{}"), rng)
    assert all(len(k) <= http1._KNOWN_STATUS_KEY_MAX for k in http1._KNOWN_STATUS)


CHUNKED = [
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"),
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),  # trailer
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"3\r\nabcXY0\r\n\r\n"),  # no CRLF after a chunk
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"3;x=y\r\nabc\r\n0\r\n\r\n"),  # an extension
    _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n")
    + _req("HTTP/1.1 404 Not Found\nContent-Length: 1\n", b"x"),
]


def test_chunked_fast_path_matches_h11_in_every_split() -> None:
    """A chunked body is read across reads (each chunk's data as it comes, a chunk-size line or CRLF cut
    anywhere): every cut into two reads, and random cuts into up to six, decode as h11 decodes them, the
    read times and the held bytes included; what the fast path does not take mid-body goes to h11."""
    rng = random.Random(13)
    for data in CHUNKED:
        for hint in (None, "GET"):
            for cut in range(1, len(data)):
                chunks = [data[:cut], data[cut:]]
                assert _decode(Http1Parser, "response", chunks, hint) == _decode(
                    H11Only, "response", chunks, hint
                ), (hint, chunks)
            for _ in range(40):
                cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, 5)))
                chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
                assert _decode(Http1Parser, "response", chunks, hint) == _decode(
                    H11Only, "response", chunks, hint
                ), (hint, chunks)


def test_chunked_body_beyond_the_raw_bytes_kept_goes_to_h11_whole() -> None:
    """A chunked message that outgrows the raw bytes the parser keeps (64 KiB) is handed to h11 with all
    of it while that is still possible: a bad ending after 100 KB reads as h11 reads it."""
    chunk = b"4000\r\n" + b"z" * 0x4000 + b"\r\n"
    for ending in (b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"4\r\nabcdXY0\r\n\r\n"):
        data = _req("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", chunk * 6 + ending)
        reads = [data[i : i + 7000] for i in range(0, len(data), 7000)]
        assert _decode(Http1Parser, "response", reads, "GET") == _decode(H11Only, "response", reads, "GET")

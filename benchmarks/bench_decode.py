"""Decode rate (events/s) of the HTTP decoders beside the bare protobuf decode rate, measured in one run.

For each workload a fixed list of LogEntry frames is built (request and response events of real HTTP/1.1
and HTTP/2 bytes, produced by h11 and h2), then timed twice: ``ecaptureq.protocol.decode`` alone (the
baseline), and ``decode`` followed by ``Decoder.feed`` (protobuf plus HTTP decoding, pairing and body
decompression). Each timing is the best of ``--repeat`` rounds over the same frames; loops are bounded.

    python benchmarks/bench_decode.py [--events 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections.abc import Callable

import h11

from ecaptureq.bench.workloads import h2_pair, workload_frames
from ecaptureq.decode import Decoder, classify_payload
from ecaptureq.protocol import Event, decode, encode_event
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid

BASE_NS = 1_760_495_631_000_000_000
JSON_BODY = json.dumps({"items": [{"id": i, "name": f"item {i}", "ok": True} for i in range(40)]}).encode()
REQ_HEADERS = [
    ("Host", "api.example.com"),
    ("User-Agent", "curl/8.5.0"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip"),
    ("Authorization", "Bearer " + "t" * 40),
]


def http1_pair(gzip_body: bool) -> tuple[bytes, bytes]:
    """A GET and its JSON response, as h11 writes them."""
    client = h11.Connection(h11.CLIENT)
    req = client.send(h11.Request(method="GET", target="/v1/items?page=2", headers=REQ_HEADERS)) or b""
    req += client.send(h11.EndOfMessage()) or b""
    server = h11.Connection(h11.SERVER)
    server.receive_data(req)
    while server.next_event() is not h11.NEED_DATA:
        pass
    body = gzip.compress(JSON_BODY) if gzip_body else JSON_BODY
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if gzip_body:
        headers.append(("Content-Encoding", "gzip"))
    resp = server.send(h11.Response(status_code=200, headers=headers)) or b""
    resp += server.send(h11.Data(data=body)) or b""
    resp += server.send(h11.EndOfMessage()) or b""
    return req, resp


def h2_connection(streams: int, gzip_body: bool) -> list[tuple[bool, bytes]]:
    """One HTTP/2 connection with ``streams`` GETs and responses, as h2 writes them: (is_write, bytes)."""
    client, server, out = h2_pair()
    body = gzip.compress(JSON_BODY) if gzip_body else JSON_BODY
    for n in range(streams):
        sid = 1 + 2 * n
        hdrs = [(":method", "GET"), (":path", f"/v1/items?page={n}"), (":scheme", "https")]
        hdrs += [(":authority", "api.example.com")] + [(k.lower(), v) for k, v in REQ_HEADERS[1:]]
        client.send_headers(sid, hdrs, end_stream=True)
        req = client.data_to_send()
        server.receive_data(req)
        rh = [(":status", "200"), ("content-type", "application/json"), ("content-length", str(len(body)))]
        if gzip_body:
            rh.append(("content-encoding", "gzip"))
        server.send_headers(sid, rh)
        server.send_data(sid, body, end_stream=True)
        resp = server.data_to_send()
        client.receive_data(resp)
        out += [(True, req), (False, resp)]
        acks = client.data_to_send()  # WINDOW_UPDATEs the client owes
        if acks:
            out.append((True, acks))
            server.receive_data(acks)
    return out


def to_frames(chunks: list[tuple[int, bool, bytes]], typed: bool = True) -> list[bytes]:
    """(connection number, is_write, payload) -> encoded LogEntry frames, as our eBPF source sends them
    (``typed``), or with ``type`` 0 as a source that does not classify sends them (the decoder then
    classifies each chunk itself: the frame-header parsers on the hot path)."""
    frames = []
    for i, (conn, is_write, payload) in enumerate(chunks):
        ev = Event(
            timestamp=BASE_NS + i * 1000,
            uuid=format_uuid(
                1000 + conn, 1000 + conn, "curl", 5, DATA_TYPE_WRITE if is_write else DATA_TYPE_READ
            ),
            src_ip="10.0.0.5",
            src_port=40000 + conn % 20000,
            dst_ip="93.184.216.34",
            dst_port=443,
            pid=1000 + conn,
            pname="curl",
            type=classify_payload(payload, is_write) if typed else 0,
            length=len(payload),
            payload=payload,
        )
        frames.append(encode_event(ev))
    return frames


def workload_http1(n: int, gzip_body: bool, typed: bool = True) -> list[bytes]:
    req, resp = http1_pair(gzip_body)
    return to_frames([(i // 2, i % 2 == 0, req if i % 2 == 0 else resp) for i in range(n)], typed)


def workload_h2(n: int, gzip_body: bool, typed: bool = True) -> list[bytes]:
    per_conn = h2_connection(8, gzip_body)
    chunks: list[tuple[int, bool, bytes]] = []
    conn = 0
    while len(chunks) < n:
        chunks += [(conn, w, p) for w, p in per_conn]
        conn += 1
    return to_frames(chunks[:n], typed)


def workloads(n: int) -> list[tuple[str, list[bytes]]]:
    """Every workload of ``n`` events: its name and its encoded frames (``bench_decode_ab.py`` uses them)."""
    return [
        ("HTTP/1.1 GET + JSON response", workload_http1(n, False)),
        ("HTTP/1.1 GET + gzip JSON response", workload_http1(n, True)),
        ("HTTP/2 8 streams/conn, JSON", workload_h2(n, False)),
        ("HTTP/2 8 streams/conn, gzip JSON", workload_h2(n, True)),
        ("HTTP/1.1 JSON, untyped events", workload_http1(n, False, typed=False)),
        ("HTTP/2 8 streams/conn, untyped", workload_h2(n, False, typed=False)),
        # The consumer benchmark's workloads (ecaptureq bench --consumers): POST + JSON both ways.
        ("consumers' HTTP/1.1 POST JSON", workload_frames("http1", n)),
        ("consumers' HTTP/2 POST JSON", workload_frames("http2", n)),
    ]


def best_of(repeat: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(frames: list[bytes], repeat: int) -> tuple[float, float, int]:
    def bare() -> None:
        for f in frames:
            decode(f)

    items = 0

    def full() -> None:
        nonlocal items
        d = Decoder()
        items = 0
        for f in frames:
            msg = decode(f)
            if isinstance(msg, Event):
                items += len(d.feed(msg))

    t_bare = best_of(repeat, bare)
    t_full = best_of(repeat, full)
    return len(frames) / t_bare, len(frames) / t_full, items


def main() -> None:
    """Run every workload and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=4000, help="events per workload (default 4000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per timing, best kept (default 3)")
    args = parser.parse_args()
    n = max(2, args.events)
    head = (
        f"{'workload':<36} {'events':>7} {'avg B':>6} {'protobuf ev/s':>14} {'+HTTP ev/s':>12} "
        f"{'ratio':>7} {'items':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, frames in workloads(n):
        bare, full, items = measure(frames, args.repeat)
        avg = sum(len(f) for f in frames) // len(frames)
        row = f"{name:<36} {len(frames):>7} {avg:>6} {bare:>14,.0f} {full:>12,.0f} {full / bare:>7.3f}"
        print(f"{row} {items:>7}")
    print("\nratio = (protobuf + HTTP decode) rate / bare protobuf decode rate, same frames, same run.")


if __name__ == "__main__":
    main()

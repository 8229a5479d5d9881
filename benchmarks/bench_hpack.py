"""Header blocks/s of the tolerant HPACK decoder beside ``hpack.Decoder`` (the baseline), in one run.

The blocks are what ``hpack.Encoder`` writes for a client's requests on one connection (a few changing
fields among repeated ones, so most fields are references to the dynamic table). Each decoder decodes the
same blocks; the late joiner starts without the first 10. Best of ``--repeat`` rounds; loops are bounded.

    python benchmarks/bench_hpack.py [--blocks 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import hpack

from ecaptureq.decode.hpack_tolerant import TolerantDecoder


def blocks(n: int) -> list[bytes]:
    """``n`` request header blocks of one connection."""
    enc = hpack.Encoder()
    out = []
    for i in range(n):
        headers = [
            (":method", "POST" if i % 3 else "GET"),
            (":scheme", "https"),
            (":authority", "shop.example.net"),
            (":path", f"/api/v2/items/{i % 500}" if i % 3 else "/helloworld.Greeter/SayHello"),
            ("user-agent", "grpc-go/1.60.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("x-request-id", f"{i:08x}"),
            ("authorization", "Bearer " + "t" * 40),
        ]
        out.append(enc.encode(headers))
    return out


def best(rounds: int, run: Callable[[], int]) -> float:
    """The best rate (blocks per second) of ``rounds`` runs."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    """Time each decoder and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = blocks(args.blocks)

    def reference() -> int:
        dec = hpack.Decoder()
        for b in data:
            dec.decode(b, raw=True)
        return len(data)

    def tolerant() -> int:
        dec = TolerantDecoder(from_start=True)
        for b in data:
            dec.decode(b)
        return len(data)

    def late() -> int:
        dec = TolerantDecoder()
        for b in data[10:]:
            dec.decode(b)
        return len(data) - 10

    base = best(args.repeat, reference)
    rows = [
        ("hpack.Decoder (baseline)", base),
        ("TolerantDecoder, from the start", best(args.repeat, tolerant)),
        ("TolerantDecoder, joined late", best(args.repeat, late)),
    ]
    print(f"{'decoder':<34} {'blocks/s':>10} {'vs baseline':>12}")
    for name, rate in rows:
        print(f"{name:<34} {rate:>10,.0f} {rate / base:>11.2f}x")


if __name__ == "__main__":
    main()

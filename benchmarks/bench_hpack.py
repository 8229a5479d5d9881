"""Header blocks/s of the tolerant HPACK decoder beside ``hpack.Decoder`` (the baseline), in one run; with
``--baseline``, the HTTP/2 decoder of this tree beside another tree's (say, main's) on the HTTP/2 workload.

The blocks are what ``hpack.Encoder`` writes for a client's requests on one connection (a few changing
fields among repeated ones, so most fields are references to the dynamic table). Each decoder decodes the
same blocks; the late joiner starts without the first 10. Best of ``--repeat`` rounds; loops are bounded.

With ``--baseline SRC`` (a tree's ``src`` directory), a second table: CPU microseconds per event of the
consumer benchmark's ``http2`` workload (``ecaptureq.bench.workloads``: gRPC-like calls, 250 streams a
connection), for ``H2Connection.feed`` alone (each event's bytes fed to its connection's side, no
:class:`~ecaptureq.decode.Decoder` around it) and for ``Decoder.feed`` (all of decoding). Each of
``--rounds`` rounds runs one child process per tree, alternating, so both see the same machine load; each
keeps its best of ``--repeat`` passes in CPU time of its own process.

    python benchmarks/bench_hpack.py [--blocks 5000] [--repeat 3]
    git worktree add /tmp/base-main main
    python benchmarks/bench_hpack.py --baseline /tmp/base-main/src [--events 6000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def child(events: int, repeat: int) -> None:
    """In a child process on one tree: print ``{measure: CPU us per event}`` for the http2 workload."""
    from ecaptureq.bench.workloads import workload_events
    from ecaptureq.decode import Decoder
    from ecaptureq.decode.http2 import H2Connection, Side
    from ecaptureq.protocol.uuid import DATA_TYPE_WRITE, parse_uuid

    evs = workload_events("http2", events)
    # Which connection (pid = 2000 + connection) and side (the client writes) each event is.
    sides: dict[bool, Side] = {True: "client", False: "server"}
    chunks = [(ev.pid, sides[parse_uuid(ev.uuid).data_type == DATA_TYPE_WRITE]) for ev in evs]
    payloads = [ev.payload for ev in evs]

    def h2_alone() -> None:
        conns: dict[int, H2Connection] = {}
        for (pid, side), payload in zip(chunks, payloads, strict=True):
            conn = conns.get(pid)
            if conn is None:
                conn = conns[pid] = H2Connection()
            conn.feed(side, payload, 1)

    def decoder() -> None:
        d = Decoder()
        for ev in evs:
            d.feed(ev)

    out = {}
    for name, run in (("h2", h2_alone), ("decoder", decoder)):
        best_s = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            run()
            best_s = min(best_s, time.process_time() - t0)
        out[name] = best_s * 1e6 / len(evs)
    print(json.dumps(out))


def compare(baseline: Path, events: int, rounds: int, repeat: int) -> None:
    """Alternate child processes on the two trees; print the table of CPU us per event."""
    this_src = Path(__file__).resolve().parent.parent / "src"
    best: dict[str, dict[str, float]] = {"baseline": {}, "this": {}}
    for _ in range(max(1, rounds)):
        for side, src in (("baseline", baseline.resolve()), ("this", this_src)):
            env = {**os.environ, "PYTHONPATH": str(src)}
            cmd = [sys.executable, __file__, "--child", "--events", str(events), "--repeat", str(repeat)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=900)
            for name, us in json.loads(out.stdout.strip().splitlines()[-1]).items():
                best[side][name] = min(best[side].get(name, float("inf")), us)
    labels = {"h2": "H2Connection.feed alone", "decoder": "Decoder.feed (all of decoding)"}
    head = f"{'http2 workload, CPU us/event':<34} {'baseline':>9} {'this':>9} {'speedup':>8}"
    print(f"\n{head}\n{'-' * len(head)}")
    for name, label in labels.items():
        base, this = best["baseline"][name], best["this"][name]
        print(f"{label:<34} {base:>9.2f} {this:>9.2f} {base / this:>7.2f}x")
    print(f"\n{events} events, best of {rounds} alternating rounds per tree; baseline {baseline}")


def main() -> None:
    """Time each decoder and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another tree's src directory to compare with")
    parser.add_argument("--events", type=int, default=6000, help="http2 workload events (with --baseline)")
    parser.add_argument("--rounds", type=int, default=3, help="child runs per tree (with --baseline)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.events, args.repeat)
        return
    if args.baseline is not None and not (args.baseline / "ecaptureq" / "decode").is_dir():
        parser.error("--baseline must be a src directory holding ecaptureq/decode (e.g. /tmp/base-main/src)")
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
    if args.baseline is not None:
        compare(args.baseline, args.events, args.rounds, args.repeat)


if __name__ == "__main__":
    main()

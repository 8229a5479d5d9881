"""Frames/s through the hub's policy core (``Fanout``) beside a bare fan-out (the baseline), in one run.

Each frame is published once and taken once by every client, as the server's writers take it (``pop``
then ``sent``); no sockets, so this is the policy's own cost per frame and client. The baseline does the
least any fan-out must: append the frame to one ``deque`` per client and pop it again. A heartbeat row
times one :meth:`Fanout.heartbeats` tick over many clients beside a loop that only encodes the
heartbeats. Best of ``--repeat`` rounds; loops are bounded.

    python benchmarks/bench_hub.py [--frames 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable

from ecaptureq.protocol import Event, encode_event, encode_heartbeat
from ecaptureq.server import Fanout


def best(rounds: int, run: Callable[[], int]) -> float:
    """The best rate (items per second) of ``rounds`` runs."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def fanout_run(frames: list[bytes], clients: int) -> Callable[[], int]:
    """Publish every frame through a fresh core and drain each client after each publish."""

    def run() -> int:
        core = Fanout(queue_size=len(frames) + 10)
        ids = [core.add_client(f"127.0.0.1:{i}", 0.0, 0.0).client for i in range(clients)]
        for cid in ids:
            core.pop(cid)  # heartbeat 0
        pop, sent, publish = core.pop, core.sent, core.publish
        for frame in frames:
            publish(frame)
            for cid in ids:
                pop(cid)
                sent(cid, 0.0)
        return len(frames) * clients

    return run


def bare_run(frames: list[bytes], clients: int) -> Callable[[], int]:
    """The baseline: one deque per client, append and pop."""

    def run() -> int:
        queues: list[deque[bytes]] = [deque() for _ in range(clients)]
        for frame in frames:
            for q in queues:
                q.append(frame)
            for q in queues:
                q.popleft()
        return len(frames) * clients

    return run


def heartbeat_runs(clients: int) -> tuple[Callable[[], int], Callable[[], int]]:
    """One heartbeat tick for ``clients`` clients through the core, and the bare encoding of as many."""
    core = Fanout(heartbeat_interval=1.0)
    ids = [core.add_client(f"127.0.0.1:{i}", 0.0, 0.0).client for i in range(clients)]
    tick = [1.0]

    def through_core() -> int:
        plan = core.heartbeats(tick[0], 1_767_000_000.0)
        tick[0] += 1.0
        for cid in ids:
            core.pop(cid)
        return plan.sent

    def bare() -> int:
        for count in range(clients):
            encode_heartbeat(1_767_000_000, count, f"heartbeat:{count}")
        return clients

    for cid in ids:
        core.pop(cid)
    return through_core, bare


def main() -> None:
    """Time the core and the baseline and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frames = [
        encode_event(Event(timestamp=i, uuid="1_1_curl_5_1", payload=b"x" * 512)) for i in range(args.frames)
    ]
    print(f"{args.frames} frames of {len(frames[0])} B, best of {args.repeat}")
    print("| scenario | clients | core frames/s | bare frames/s | ratio | core µs/frame/client |")
    print("| --- | --- | --- | --- | --- | --- |")
    for clients in (1, 10, 100):
        count = max(1, args.frames // clients)
        core = best(args.repeat, fanout_run(frames[:count], clients))
        bare = best(args.repeat, bare_run(frames[:count], clients))
        print(
            f"| publish+pop | {clients} | {core:,.0f} | {bare:,.0f} | {core / bare:.2f} | {1e6 / core:.2f} |"
        )
    through_core, bare_beats = heartbeat_runs(1000)
    core = best(args.repeat, through_core)
    bare = best(args.repeat, bare_beats)
    print(f"| heartbeat tick | 1000 | {core:,.0f} | {bare:,.0f} | {core / bare:.2f} | {1e6 / core:.2f} |")


if __name__ == "__main__":
    main()

"""Decoder speed of this source tree beside a baseline tree (say, main), on the same events, in one run.

``bench_decode.py`` compares the decoder with the protobuf decode in one tree; this compares two trees'
decoders, for a change that must not slow decoding. Each round runs one child process per tree,
alternating, so both see the same machine load; a child builds the workloads of ``bench_decode.py``,
decodes the protobuf frames once, then times ``Decoder.feed`` over the events in CPU seconds of its own
process (best of ``--repeat`` passes). The table keeps each tree's best round and prints the ratio
(this tree / baseline; above 1 is faster). Loops are bounded: 2 children per ``--rounds``.

    mkdir /tmp/base && git archive main src | tar -x -C /tmp/base
    python benchmarks/bench_decode_ab.py --baseline /tmp/base/src [--events 4000] [--rounds 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THIS_TREE = HERE.parent / "src"


def child(events: int, repeat: int) -> None:
    """In the child: time ``Decoder.feed`` on every workload; print ``{name: events per CPU second}``."""
    # The workloads of bench_decode.py (loaded from its file), built with the child tree's classifier.
    spec = importlib.util.spec_from_file_location("bench_decode", HERE / "bench_decode.py")
    assert spec is not None and spec.loader is not None
    bench_decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_decode)

    from ecaptureq.decode import Decoder
    from ecaptureq.protocol import Event, decode

    rates: dict[str, float] = {}
    for name, frames in bench_decode.workloads(max(2, events)):
        evs = [m for m in (decode(f) for f in frames) if isinstance(m, Event)]
        best = float("inf")
        for _ in range(repeat):
            d = Decoder()
            t0 = time.process_time()
            for ev in evs:
                d.feed(ev)
            best = min(best, time.process_time() - t0)
        rates[name] = len(evs) / max(best, 1e-9)
    print(json.dumps(rates))


def run_tree(src: Path, events: int, repeat: int) -> dict[str, float]:
    """One child process on the tree whose package directory is ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--child", "--events", str(events), "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=900).stdout
    rates: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return rates


def main() -> None:
    """Alternate the two trees for ``--rounds`` rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, help="the baseline tree's src directory (required)")
    parser.add_argument("--events", type=int, default=4000, help="events per workload (default 4000)")
    parser.add_argument("--rounds", type=int, default=4, help="child runs per tree, alternating (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per child, best kept (default 3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.events, args.repeat)
        return
    if args.baseline is None or not (args.baseline / "ecaptureq" / "decode").is_dir():
        parser.error("--baseline must be a src directory holding ecaptureq/decode (e.g. /tmp/base/src)")
    best: dict[str, dict[str, float]] = {"baseline": {}, "this": {}}
    for _ in range(max(1, args.rounds)):
        for side, src in (("baseline", args.baseline.resolve()), ("this", THIS_TREE)):
            for name, rate in run_tree(src, args.events, args.repeat).items():
                best[side][name] = max(best[side].get(name, 0.0), rate)
    head = f"{'workload':<36} {'baseline ev/s':>14} {'this ev/s':>12} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for name, base in best["baseline"].items():
        this = best["this"].get(name, 0.0)
        print(f"{name:<36} {base:>14,.0f} {this:>12,.0f} {this / base:>7.3f}")
    print(
        f"\nDecoder.feed only (protobuf decoded beforehand), events per CPU second, best of {args.rounds} "
        f"alternating rounds per tree; ratio = this tree / baseline ({args.baseline})."
    )


if __name__ == "__main__":
    main()

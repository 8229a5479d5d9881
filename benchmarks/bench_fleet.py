"""Benchmark fleet collection: agents x events/s into the collector's database, beside bare nats-py.

    python benchmarks/bench_fleet.py [--quick]

For 1 and 3 agents, each with N demo events (the same events, encoded once), in one run:

- ``collect``: ``ecaptureq agent --replay FILE --speed 0`` processes (spool, headers, acks) publish to a
  real ``nats-server -js`` (deploy/nats-server.conf) and one ``ecaptureq collect`` process writes them into
  a capture database (decoding HTTP exchanges, acknowledging after each commit). Time: from starting the
  processes until the database holds every event.
- ``--no-decode``: the same with ``collect --no-decode`` (packets only: the work the baseline compares to).
- ``bare nats-py`` (the baseline): the same number of processes, each a bare nats-py loop publishing the
  same LogEntry bytes with ``js.publish_async`` to the same server, and one bare consumer process (a push
  consumer's callback) that acknowledges them (no database). Time: from starting the processes until the
  consumer has every message.

Every row starts a fresh server. Both sides pay the same process start-up; the ratio is ecaptureq's rate
over the baseline's (goal: at least 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "nats-server.conf"
USERS = ("node-1", "node-2", "node-3", "collector", "reader")
CLI = [sys.executable, "-m", "ecaptureq"]


class Nats:
    """A fresh ``nats-server -js`` with the repository's configuration on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.passwords = {u: "p" + secrets.token_hex(8) for u in USERS}
        env = {**os.environ, "NATS_STORE_DIR": str(root / "store")}
        env.update({u.upper().replace("-", "_") + "_PASSWORD": p for u, p in self.passwords.items()})
        self.log = root / "nats.log"
        self.proc = subprocess.Popen(
            ["nats-server", "-c", str(CONFIG), "-js", "-a", "127.0.0.1", "-p", "-1"],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "Server is ready" in text:
                self.port = int(text.split("Listening for client connections on 127.0.0.1:")[1].split()[0])
                return
            time.sleep(0.05)
        raise SystemExit(f"nats-server did not start: {self.log.read_text()}")

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)


def make_recording(path: Path, count: int, seed: int) -> None:
    from ecaptureq.protocol.jsonl import to_json
    from ecaptureq.sources.demo import DemoSource

    with path.open("w") as out:
        for _, event in zip(range(count), DemoSource(seed=seed).events(), strict=False):
            out.write(json.dumps(to_json(event)) + "\n")


def db_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute('SELECT coalesce(max("index"), 0) FROM packets').fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def run_ecaptureq(root: Path, agents: int, per_agent: int, decode: bool) -> float:
    nats = Nats(root)
    db = root / "fleet.db"
    procs = []
    collect = [*CLI, "collect", "--nats", nats.url("collector"), "--db", str(db), "--quiet"]
    try:
        t0 = time.perf_counter()
        procs.append(subprocess.Popen(collect + ([] if decode else ["--no-decode"]),
                                      stderr=(root / "collect.err").open("wb")))  # fmt: skip
        for i in range(agents):
            node = f"node-{i + 1}"
            procs.append(subprocess.Popen(
                [*CLI, "agent", "--nats", nats.url(node), "--node", node, "--spool", str(root / f"{node}.db"),
                 "--replay", str(root / f"rec-{i}.jsonl"), "--speed", "0", "--quiet"],
                stderr=(root / f"{node}.err").open("wb")))  # fmt: skip
        total = agents * per_agent
        deadline = time.monotonic() + 600
        while db_count(db) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"ecaptureq: timed out at {db_count(db)} of {total}")
            time.sleep(0.02)
        return total / (time.perf_counter() - t0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        nats.stop()


async def bare_publish(url: str, path: str) -> None:
    """The baseline publisher: the recording's LogEntry bytes with js.publish_async, acks awaited."""
    import nats

    from ecaptureq.protocol import encode
    from ecaptureq.sources.replay import load_recording

    bodies = [encode(e) for e in load_recording(Path(path)).events]
    node = url.split("//")[1].split(":")[0]
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_{node}")
    js = nc.jetstream()
    subject = f"ecaptureq.{node}.event"
    for start in range(0, len(bodies), 1000):
        futures = [await js.publish_async(subject, b) for b in bodies[start : start + 1000]]
        await asyncio.gather(*futures)
    await nc.close()


async def bare_consume(url: str, total: int) -> None:
    """The baseline consumer: nats-py's fastest way, a push consumer's callback acknowledging each message."""
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.add_stream(name="ECAPTUREQ", subjects=["ecaptureq.>"])
    done = asyncio.Event()
    got = 0

    async def on_message(msg: Any) -> None:
        nonlocal got
        await msg.ack()
        got += 1
        if got >= total:
            done.set()

    await js.subscribe("ecaptureq.>", durable="bare", stream="ECAPTUREQ", cb=on_message, manual_ack=True,
                       config=api.ConsumerConfig(max_ack_pending=4000))  # fmt: skip
    print("ready", flush=True)
    await done.wait()
    print("done", flush=True)
    await nc.close()


def run_bare(root: Path, agents: int, per_agent: int) -> float:
    nats = Nats(root)
    total = agents * per_agent
    procs = []
    try:
        t0 = time.perf_counter()
        consume = [sys.executable, __file__, "--bare-consume", nats.url("collector"), str(total)]
        consumer = subprocess.Popen(consume, stdout=subprocess.PIPE, text=True)
        assert consumer.stdout is not None
        for i in range(agents):
            publish = [
                sys.executable,
                __file__,
                "--bare-publish",
                nats.url(f"node-{i + 1}"),
                str(root / f"rec-{i}.jsonl"),
            ]
            procs.append(subprocess.Popen(publish))
        lines = [consumer.stdout.readline().strip() for _ in range(2)]
        if lines != ["ready", "done"]:
            raise SystemExit(f"bare consumer: {lines}")
        rate = total / (time.perf_counter() - t0)
        consumer.wait(30)
        for p in procs:
            p.wait(30)
        return rate
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5,000 events per agent instead of 20,000")
    parser.add_argument("--bare-publish", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-consume", nargs=2, metavar=("URL", "TOTAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_publish:
        asyncio.run(bare_publish(*args.bare_publish))
        return
    if args.bare_consume:
        asyncio.run(bare_consume(args.bare_consume[0], int(args.bare_consume[1])))
        return
    if shutil.which("nats-server") is None:
        raise SystemExit("nats-server is not installed (scripts/setup-test)")
    per_agent = 5_000 if args.quick else 20_000
    print(f"fleet: events/s delivered, {per_agent:,} demo events per agent, {os.cpu_count()} CPUs")
    print(f"{'agents':>6}  {'events':>8}  {'collect':>9}  {'--no-decode':>11}  {'bare nats-py':>12}  "
          f"{'ratio':>5}  {'ratio --no-decode':>17}   (events/s)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        for i in range(3):
            make_recording(root / f"rec-{i}.jsonl", per_agent, seed=i)
        for agents in (1, 3):
            rates = []
            for name in ("collect", "no-decode", "bare"):
                run_root = root / f"{name}-{agents}"
                run_root.mkdir()
                for i in range(agents):
                    (run_root / f"rec-{i}.jsonl").symlink_to(root / f"rec-{i}.jsonl")
                if name == "bare":
                    rates.append(run_bare(run_root, agents, per_agent))
                else:
                    rates.append(run_ecaptureq(run_root, agents, per_agent, decode=name == "collect"))
            ours, raw, bare = rates
            print(f"{agents:>6}  {agents * per_agent:>8,}  {ours:>9,.0f}  {raw:>11,.0f}  {bare:>12,.0f}  "
                  f"{ours / bare:>5.2f}  {raw / bare:>17.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""Benchmark fleet collection: agents x events/s into the collector's database, beside bare nats-py.

    python benchmarks/bench_fleet.py [--quick] [--rounds N]

For 1 and 3 agents, each with N demo events (the same events, encoded once), in one run:

- ``collect``: ``ecaptureq agent --replay FILE --speed 0`` processes (spool, headers, acks) publish to a
  real ``nats-server -js`` (deploy/nats-server.conf) and one ``ecaptureq collect`` process writes them into
  a capture database (decoding HTTP exchanges, acknowledging each message after its commit).
- ``--no-decode``: the same with ``collect --no-decode`` (packets only: the work the baseline compares to).
- ``bare nats-py`` (the baseline): the same number of processes, each a bare nats-py loop publishing the
  same LogEntry bytes with the same headers (``Nats-Msg-Id`` and the others, so the same message sizes and
  the same de-duplication work on the server) with ``js.publish_async``, 1,000 acks awaited at a time as
  the agent does; and one bare consumer process: a push consumer on the same durable configuration
  (explicit acks, the same ``max_ack_pending``) whose callback acknowledges each message (no database).

Every run starts a fresh server and its consumer (the collector, or the bare consumer), which creates the
stream and binds its durable consumer; the clock starts once it is ready, then the publishers start (both
sides pay the same publisher start-up), and stops when the database (or the bare consumer) holds every
event. Each round runs bare, collect, --no-decode, bare again; a round's ratio is ecaptureq's rate over the
mean of the two bare runs around it. The table gives the median over the rounds (and the ratios' range),
and CPU microseconds per event of the consumer process (from the clock's start to the last event) and of
the publisher processes (all of their life): on a shared machine the CPU figures are the steadier ones.
The goal: a ratio of at least 0.5.
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
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "nats-server.conf"
USERS = ("node-1", "node-2", "node-3", "collector", "reader")
CLI = [sys.executable, "-m", "ecaptureq"]
# Every process loads compiled modules, as an installed ecaptureq does: with PYTHONDONTWRITEBYTECODE set
# each start would compile the whole package again (0.4 s, where the bare loop compiles far less).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


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


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process and its descendants (the collector's committing
    process). Imported here, not at the top: the bare processes run this file too, and start light."""
    from ecaptureq.bench.consumers import tree_cpu_seconds

    return tree_cpu_seconds(pid)


def reap(proc: subprocess.Popen[Any], timeout: float) -> float:
    """Wait for ``proc`` (SIGTERM after ``timeout`` s) and return the CPU seconds it used in all."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One measured run: events/s, and CPU µs per event of the consumer and of the publishers."""

    rate: float
    consumer_us: float
    publisher_us: float


def wait_line(path: Path, text: str, proc: subprocess.Popen[Any], timeout: float) -> None:
    """Wait until ``path`` (a process's stderr) holds ``text``."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"not ready: {path.read_text(errors='replace')}")
        time.sleep(0.01)


def run_ecaptureq(root: Path, agents: int, per_agent: int, decode: bool) -> Run:
    nats = Nats(root)
    db = root / "fleet.db"
    err = root / "collect.err"
    collect = [*CLI, "collect", "--nats", nats.url("collector"), "--db", str(db)]
    collector = subprocess.Popen(
        collect + ([] if decode else ["--no-decode"]), stderr=err.open("wb"), env=CHILD_ENV
    )
    publishers: list[subprocess.Popen[Any]] = []
    try:
        wait_line(err, "ecaptureq collect:", collector, 60)  # its durable consumer is bound
        cpu0 = cpu_seconds(collector.pid)
        t0 = time.perf_counter()
        for i in range(agents):
            node = f"node-{i + 1}"
            publishers.append(subprocess.Popen(
                [*CLI, "agent", "--nats", nats.url(node), "--node", node, "--spool", str(root / f"{node}.db"),
                 "--replay", str(root / f"rec-{i}.jsonl"), "--speed", "0", "--quiet"],
                stderr=(root / f"{node}.err").open("wb"), env=CHILD_ENV))  # fmt: skip
        total = agents * per_agent
        deadline = time.monotonic() + 600
        while db_count(db) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"ecaptureq: timed out at {db_count(db)} of {total}")
            time.sleep(0.02)
        rate = total / (time.perf_counter() - t0)
        consumer = cpu_seconds(collector.pid) - cpu0
        published = sum(reap(p, 60) for p in publishers)  # replay agents exit once all is acknowledged
        return Run(rate, consumer / total * 1e6, published / total * 1e6)
    finally:
        for p in [*publishers, collector]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        collector.wait(60)
        nats.stop()


async def bare_publish(url: str, path: str) -> None:
    """The baseline publisher: the recording's LogEntry bytes, with the agent's headers, js.publish_async,
    1,000 acks awaited at a time."""
    import nats

    from ecaptureq.fleet.subjects import message_headers
    from ecaptureq.protocol import encode
    from ecaptureq.sources.replay import load_recording

    bodies = [encode(e) for e in load_recording(Path(path)).events]
    node = url.split("//")[1].split(":")[0]
    agent = secrets.token_hex(8)
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_{node}")
    js = nc.jetstream()
    subject = f"ecaptureq.{node}.event"
    for start in range(0, len(bodies), 1000):
        futures = [
            await js.publish_async(subject, b, headers=message_headers(node, "bare", agent, start + i + 1))
            for i, b in enumerate(bodies[start : start + 1000])
        ]
        await asyncio.gather(*futures)
    await nc.close()


async def bare_consume(url: str, total: int) -> None:
    """The baseline consumer: a push consumer configured as the collector's, its callback acknowledging
    each message."""
    import nats
    from nats.js import api

    from ecaptureq.fleet.reader import MAX_ACK_PENDING
    from ecaptureq.fleet.subjects import STREAM, SUBJECT_ROOT

    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.add_stream(name=STREAM, subjects=[f"{SUBJECT_ROOT}.>"])
    done = asyncio.Event()
    got = 0

    async def on_message(msg: Any) -> None:
        nonlocal got
        await msg.ack()
        got += 1
        if got >= total:
            done.set()

    config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=MAX_ACK_PENDING)
    await js.subscribe(f"{SUBJECT_ROOT}.>", durable="bare", stream=STREAM, cb=on_message, manual_ack=True,
                       config=config)  # fmt: skip
    print("ready", flush=True)
    await done.wait()
    print("done", flush=True)
    await nc.close()


def run_bare(root: Path, agents: int, per_agent: int) -> Run:
    nats = Nats(root)
    total = agents * per_agent
    publishers: list[subprocess.Popen[Any]] = []
    consume = [sys.executable, __file__, "--bare-consume", nats.url("collector"), str(total)]
    consumer = subprocess.Popen(consume, stdout=subprocess.PIPE, text=True, env=CHILD_ENV)
    assert consumer.stdout is not None
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit("bare consumer did not start")
        cpu0 = cpu_seconds(consumer.pid)
        t0 = time.perf_counter()
        for i in range(agents):
            publish = [sys.executable, __file__, "--bare-publish", nats.url(f"node-{i + 1}"),
                       str(root / f"rec-{i}.jsonl")]  # fmt: skip
            publishers.append(subprocess.Popen(publish, env=CHILD_ENV))
        if consumer.stdout.readline().strip() != "done":
            raise SystemExit("bare consumer failed")
        rate = total / (time.perf_counter() - t0)
        used = cpu_seconds(consumer.pid) - cpu0
        published = sum(reap(p, 60) for p in publishers)
        return Run(rate, used / total * 1e6, published / total * 1e6)
    finally:
        for p in [*publishers, consumer]:
            if p.poll() is None:
                p.kill()
        consumer.wait(30)
        nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5,000 events per agent instead of 20,000")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per agent count (default 3)")
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
    print(
        f"fleet: events/s delivered, {per_agent:,} demo events per agent, {os.cpu_count()} CPUs, median of "
        f"{args.rounds} rounds (ratio: to the mean of the bare runs before and after, in each round)"
    )
    print(f"{'agents':>6}  {'consumer':<13}  {'events/s':>8}  {'ratio':>5}  {'(min-max)':>11}  "
          f"{'consumer µs/ev':>14}  {'publishers µs/ev':>16}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        for i in range(3):
            make_recording(root / f"rec-{i}.jsonl", per_agent, seed=i)
        for agents in (1, 3):
            runs: dict[str, list[Run]] = {"bare nats-py": [], "collect": [], "--no-decode": []}
            ratios: dict[str, list[float]] = {"collect": [], "--no-decode": []}
            for rnd in range(args.rounds):
                got: dict[str, Run] = {}
                for name in ("bare-before", "collect", "--no-decode", "bare-after"):
                    run_root = root / f"{agents}-{rnd}-{name.strip('-')}"
                    run_root.mkdir()
                    for i in range(agents):
                        (run_root / f"rec-{i}.jsonl").symlink_to(root / f"rec-{i}.jsonl")
                    if name.startswith("bare"):
                        got[name] = run_bare(run_root, agents, per_agent)
                        runs["bare nats-py"].append(got[name])
                    else:
                        got[name] = run_ecaptureq(run_root, agents, per_agent, decode=name == "collect")
                        runs[name].append(got[name])
                bare = (got["bare-before"].rate + got["bare-after"].rate) / 2
                for name in ratios:
                    ratios[name].append(got[name].rate / bare)
            for name, measured in runs.items():
                r = ratios.get(name, [1.0])
                spread = f"({min(r):.2f}-{max(r):.2f})" if name in ratios else ""
                rate = median(m.rate for m in measured)
                consumer = median(m.consumer_us for m in measured)
                publishers = median(m.publisher_us for m in measured)
                print(f"{agents:>6}  {name:<13}  {rate:>8,.0f}  {median(r):>5.2f}  {spread:>11}  "
                      f"{consumer:>14.1f}  {publishers:>16.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

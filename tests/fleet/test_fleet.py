"""Fleet collection end to end: real nats-server (deploy/nats-server.conf), real agents and collectors.

Everything runs as the command line does, as processes on 127.0.0.1: ``ecaptureq agent``, ``collect``,
``serve`` and ``watch``. Every check waits on the database or the process itself (bounded), never on a sleep.
"""

# ruff: noqa: F401, F811  (the nats_server fixture imported from fleet_support is then named as a parameter)

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import start_serve, stop_serve, store_process_of
from fleet_support import (
    CLI,
    NatsServer,
    Proc,
    consumer_settled,
    db_rows,
    demo_events,
    identity,
    nats_server,
    packet_identities,
    reap_processes,
    start_cli,
    wait_for,
    write_recording,
)

from ecaptureq.protocol import Event
from ecaptureq.sources.replay import load_recording

pytestmark = pytest.mark.e2e

NOW_NS = 1_770_000_000_000_000_000


def _collect(tmp_path: Path, server: NatsServer, db: Path, name: str = "collect", *extra: str) -> Proc:
    return start_cli(tmp_path, name, "collect", "--nats", server.url("collector"), "--db", str(db),
                     "--ack-wait", "2", "--flush-interval", "0.2", *extra)  # fmt: skip


def _agent(tmp_path: Path, server: NatsServer, node: str, *source: str) -> Proc:
    spool = str(tmp_path / f"spool-{node}.db")
    return start_cli(tmp_path, f"agent-{node}", "agent", "--nats", server.url(node), "--node", node,
                     "--spool", spool, "--heartbeat-interval", "1", *source)  # fmt: skip


def _count(db: Path, node: str | None = None) -> int:
    if node is None:
        rows = db_rows(db, "SELECT count(*) FROM packets")
    else:
        rows = db_rows(db, "SELECT count(*) FROM packets WHERE node = ?", (node,))
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def test_three_agents_into_one_collector_exactly_once(nats_server: NatsServer, tmp_path: Path) -> None:
    """A demo agent, a replay agent and an agent relaying `ecaptureq serve`: each event stored once, with
    its node."""
    replayed = demo_events(2, 300, start_ns=NOW_NS, step_ns=1000)
    relayed = demo_events(3, 250, start_ns=NOW_NS + 10**9, step_ns=1000)
    write_recording(tmp_path / "replayed.jsonl", replayed)
    write_recording(tmp_path / "relayed.jsonl", relayed)
    db = tmp_path / "fleet.db"
    collector = _collect(tmp_path, nats_server, db)
    served = start_serve("--replay", str(tmp_path / "relayed.jsonl"), "--speed", "0")
    try:
        demo = _agent(tmp_path, nats_server, "node-1", "--demo", "--count", "200", "--interval", "0")
        replay = _agent(
            tmp_path, nats_server, "node-2", "--replay", str(tmp_path / "replayed.jsonl"), "--speed", "0"
        )
        relay = _agent(tmp_path, nats_server, "node-3", "--source", served.url)
        # demo and replay agents exit 0 once their source ended and JetStream acknowledged everything
        assert demo.proc.wait(60) == 0, demo.text()
        assert replay.proc.wait(60) == 0, replay.text()
        wait_for("the collector to store all 750 events", lambda: _count(db) >= 750, 60,
                 on_fail=lambda: collector.text() + relay.text())  # fmt: skip
        assert relay.terminate() == 0, relay.text()
    finally:
        stop_serve(served)
    assert collector.terminate() == 0, collector.text()

    assert sorted(packet_identities(db, "node-2")) == sorted(identity(e) for e in replayed)
    assert sorted(packet_identities(db, "node-3")) == sorted(identity(e) for e in relayed)
    demo_rows = packet_identities(db, "node-1")
    assert len(demo_rows) == 200 and len(set(demo_rows)) == 200
    assert _count(db) == 750  # nothing without a node, nothing twice
    # the exchanges were decoded per node, and carry it
    by_node = dict(db_rows(db, "SELECT node, count(*) FROM exchanges WHERE complete = 1 GROUP BY node"))
    assert set(by_node) == {"node-1", "node-2", "node-3"}, by_node
    # run logs too: the demo's banner, the replay's and the served recording's
    logs = db_rows(db, "SELECT node, line FROM run_logs")
    assert any(n == "node-1" and "ecaptureq demo" in str(line) for n, line in logs)
    assert any(n == "node-2" and "recording replayed.jsonl" in str(line) for n, line in logs)
    assert any(n == "node-3" and "recording relayed.jsonl" in str(line) for n, line in logs)


def _collector_stopped_mid_stream(
    nats_server: NatsServer, tmp_path: Path, node: str, seed: int, stop: Callable[[Proc], None]
) -> None:
    """A replaying agent on ``node`` and a collector; ``stop`` ends the collector once 500 events are
    stored, mid-stream; a new collector then stores the rest, and every event is in the database once."""
    events = demo_events(seed, 3000, start_ns=NOW_NS, step_ns=2_000_000)  # 6 s at the recorded pace
    write_recording(tmp_path / "rec.jsonl", events)
    db = tmp_path / "fleet.db"
    collector = _collect(tmp_path, nats_server, db)
    agent = _agent(tmp_path, nats_server, node, "--replay", str(tmp_path / "rec.jsonl"))
    wait_for("the collector to store the first 500 events", lambda: _count(db) >= 500, 60,
             on_fail=lambda: collector.text() + agent.text())  # fmt: skip
    stop(collector)
    assert _count(db) < len(events), "the stream ended before the stop: not mid-stream"
    collector = _collect(tmp_path, nats_server, db, "collect-again")
    assert agent.proc.wait(60) == 0, agent.text()
    wait_for("every event in the database", lambda: _count(db) >= len(events), 60,
             on_fail=lambda: collector.text())  # fmt: skip
    # what was committed but not acknowledged at the stop comes again after --ack-wait: wait until the
    # consumer has nothing left to deliver or to be acknowledged, then check the database
    wait_for("the consumer to settle", lambda: consumer_settled(nats_server), 30, on_fail=collector.text)
    assert collector.terminate() == 0, collector.text()
    stored = packet_identities(db, node)
    assert len(stored) == len(set(stored)), "duplicates"
    assert sorted(stored) == sorted(identity(e) for e in events)


def test_collector_kill_9_and_restart_loses_and_duplicates_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    def kill(collector: Proc) -> None:
        collector.proc.send_signal(signal.SIGKILL)
        collector.proc.wait(10)

    _collector_stopped_mid_stream(nats_server, tmp_path, "node-2", 5, kill)


def test_collector_store_process_killed_exits_11_and_a_restart_stores_everything_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The collector acknowledges only what its store process said was committed: when that process is
    killed mid-stream the collector stops with exit code 11, and a new collector stores the rest, once."""

    def kill_store_process(collector: Proc) -> None:
        os.kill(store_process_of(collector.proc.pid), signal.SIGKILL)
        assert collector.proc.wait(30) == 11, collector.text()
        assert re.search(r"the store's process ended \(exit code -9\)", collector.text()), collector.text()

    _collector_stopped_mid_stream(nats_server, tmp_path, "node-3", 6, kill_store_process)


def test_nats_down_30_s_while_agents_publish_more_than_the_client_buffer(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """nats-server stopped for 30 s; the agent captures ~7 MiB meanwhile (nats-py's reconnect buffer holds
    2 MiB): the spool keeps it and everything reaches the database once the server is back."""
    pending_size = 2 * 1024 * 1024  # nats-py's DEFAULT_PENDING_SIZE, the agent's reconnect buffer
    # 60 events in the first 0.6 s, then 450 events of ~16 KiB over the next 27 s
    first = demo_events(7, 60, start_ns=NOW_NS, step_ns=10_000_000)
    rest = demo_events(8, 450, start_ns=NOW_NS + 600_000_000, step_ns=60_000_000, pad=16_000)
    events = first + rest
    assert sum(len(e.payload) for e in rest) > 3 * pending_size
    write_recording(tmp_path / "rec.jsonl", events)
    db = tmp_path / "fleet.db"
    spool = tmp_path / "spool-node-1.db"
    collector = _collect(tmp_path, nats_server, db)
    agent = _agent(
        tmp_path, nats_server, "node-1", "--replay", str(tmp_path / "rec.jsonl"), "--drain-timeout", "60"
    )
    wait_for("the first events in the database", lambda: _count(db) >= 30, 30,
             on_fail=lambda: collector.text() + agent.text())  # fmt: skip
    nats_server.stop()
    stopped = time.monotonic()
    assert agent.proc.poll() is None
    peak = 0
    while time.monotonic() - stopped < 30:
        rows = db_rows(spool, "SELECT coalesce(sum(bytes), 0) FROM chunks")
        peak = max(peak, int(rows[0][0]) if rows else 0)  # type: ignore[call-overload]
        time.sleep(0.5)
    assert peak > pending_size, (
        f"the spool held only {peak} bytes: the outage did not outgrow the client buffer"
    )
    stored_during = _count(db)
    assert stored_during < len(events)
    nats_server.start()  # same port, same store directory
    assert agent.proc.wait(90) == 0, agent.text()
    wait_for("every event in the database", lambda: _count(db) >= len(events), 60, on_fail=collector.text)
    wait_for("the consumer to settle", lambda: consumer_settled(nats_server), 30, on_fail=collector.text)
    assert collector.terminate() == 0, collector.text()
    stored = packet_identities(db, "node-1")
    assert sorted(stored) == sorted(identity(e) for e in events)
    assert "lost NATS" in agent.text() and "dropped by a full spool" in agent.text()
    assert re.search(r", 0 dropped by a full spool", agent.text()), agent.text()


def test_publish_only_credentials_cannot_read(nats_server: NatsServer, tmp_path: Path) -> None:
    """An agent's credentials publish under its own node only: collect and watch with them are refused."""
    # the stream exists (the collector's credentials create it)
    collector = _collect(tmp_path, nats_server, tmp_path / "fleet.db")
    wait_for("the stream", lambda: "ECAPTUREQ" in collector.text() or _stream_exists(nats_server), 20,
             on_fail=collector.text)  # fmt: skip
    collector.terminate()
    for args in (
        [
            "collect",
            "--nats",
            nats_server.url("node-1"),
            "--db",
            str(tmp_path / "stolen.db"),
            "--durable",
            "thief",
        ],
        ["watch", nats_server.url("node-1"), "--timeout", "5"],
    ):
        done = subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
        )
        assert done.returncode == 10, (args[0], done.returncode, done.stderr)
        assert "refused" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
    assert not db_rows(tmp_path / "stolen.db", "SELECT * FROM packets")
    # a wrong password is refused at once (exit 9), and the password is not shown
    wrong = nats_server.url("reader").replace(nats_server.passwords["reader"], "pwrong")
    done = subprocess.run([*CLI, "watch", wrong], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 9 and "refused the credentials" in done.stderr, done.stderr
    assert "pwrong" not in done.stderr
    # ... and may not publish as another node: that agent keeps its messages spooled (exit 4)
    demo = ("--demo", "--count", "3", "--interval", "0", "--drain-timeout", "3")
    other = _agent(tmp_path, nats_server, "node-1", *demo)
    impostor = start_cli(tmp_path, "impostor", "agent", "--nats", nats_server.url("node-1"),
                         "--node", "node-2", "--spool", str(tmp_path / "impostor.db"), *demo)  # fmt: skip
    assert other.proc.wait(60) == 0, other.text()
    assert impostor.proc.wait(60) == 4, impostor.text()
    assert "still in" in impostor.text()


def _stream_exists(server: NatsServer) -> bool:
    import asyncio

    import nats
    import nats.js.errors

    async def check() -> bool:
        nc = await nats.connect(server.url("collector"), connect_timeout=5, allow_reconnect=False)
        try:
            await nc.jetstream().stream_info("ECAPTUREQ")
            return True
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await nc.close()

    return asyncio.run(check())

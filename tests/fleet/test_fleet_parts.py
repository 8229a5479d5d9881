"""The fleet's parts on their own: subjects and options, the spool (real SQLite files), the node column
added to an existing database, and a reader's view (watch, record, ui) of a real stream."""

# ruff: noqa: F401, F811  (the nats_server fixture imported from fleet_support is then named as a parameter)

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fleet_support import CLI, NatsServer, db_rows, nats_server, reap_processes, start_cli, wait_for

from ecaptureq.cli.errors import ExitCode
from ecaptureq.fleet import Agent, Spool, check_node, connect, ensure_stream, parse_since
from ecaptureq.fleet.connection import NatsOptions
from ecaptureq.fleet.spool import CHUNK_MESSAGES
from ecaptureq.fleet.subjects import (
    BadNodeName,
    filter_subject,
    node_matches,
    parse_duration,
    parse_size,
    parse_subject,
    subject,
)
from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.process import ProcessLabel
from ecaptureq.store import CaptureStore
from ecaptureq.store.schema import NODE_TABLES


def test_subjects_and_node_names() -> None:
    assert subject("web-1", "event") == "ecaptureq.web-1.event"
    parsed = parse_subject("ecaptureq.web-1.log")
    assert parsed is not None and (parsed.node, parsed.kind) == ("web-1", "log")
    assert parse_subject("ecaptureq.web-1.other") is None and parse_subject("other.web-1.event") is None
    for bad in ("a.b", "a*", "a>", "", "a b", "x" * 129):
        with pytest.raises(BadNodeName):
            check_node(bad)
    assert filter_subject("web-1") == "ecaptureq.web-1.>"
    assert filter_subject("web-*") == filter_subject(None) == "ecaptureq.>"
    assert node_matches("web-12", "web-*") and not node_matches("db-1", "web-*") and node_matches("x", None)


def test_since_sizes_and_durations() -> None:
    now = datetime.datetime(2026, 1, 2, 12, 0, tzinfo=datetime.UTC)
    assert parse_since("15m", now) == now - datetime.timedelta(minutes=15)
    assert parse_since("2026-01-02T10:00:00Z") == datetime.datetime(2026, 1, 2, 10, tzinfo=datetime.UTC)
    assert parse_since("2026-01-02T10:00:00") == datetime.datetime(2026, 1, 2, 10, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="expected a time"):
        parse_since("yesterday")
    assert parse_size("256M") == 256 * 1024**2 and parse_size("1024") == 1024 and parse_size("1.5k") == 1536
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90") == 90
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_spool_bound_overflow_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=1000)
    assert all(spool.put("event", bytes([i]) * 100) for i in range(10))
    assert not spool.put("event", b"x") and not spool.put("log", b"y" * 50)
    assert (spool.stats.overflowed, spool.stats.overflowed_bytes) == (2, 51)
    assert spool.commit() == 10
    first = spool.read(4)
    assert [m.seq for m in first] == [1, 2, 3, 4] and first[0].body == b"\0" * 100
    spool.remove(first)
    assert spool.put("log", b"z" * 300)  # room again
    agent_id = spool.agent_id
    spool.close()  # commits what was put
    again = Spool(path, max_bytes=1000)
    assert again.agent_id == agent_id
    assert (again.stats.queued, again.stats.queued_bytes) == (7, 900)
    left = again.read(100)
    assert [m.seq for m in left] == [5, 6, 7, 8, 9, 10, 11] and left[-1].kind == "log"
    again.close()


@pytest.mark.e2e
def test_spool_taken_messages_are_numbered_once_and_kept_in_order(tmp_path: Path) -> None:
    """Messages taken from memory are numbered as the file's would be, the number is in the file at once
    (a restart never reuses one, even for messages that never reached the file), and those kept go to the
    file in front of what memory still holds."""
    path = tmp_path / "spool.db"
    spool = Spool(path)
    for i in range(5):
        spool.put("event", bytes([i]))
    taken = spool.take(3)
    assert [(m.seq, m.body) for m in taken] == [(1, b"\0"), (2, b"\1"), (3, b"\2")]
    assert (spool.stored, spool.uncommitted, spool.stats.queued) == (0, 2, 5)
    spool.remove(taken[:2], stored=False)  # acknowledged: never written
    spool.keep(taken[2:])  # not acknowledged soon: to the file
    assert (spool.stored, spool.stats.queued) == (1, 3)
    assert spool.commit() == 2  # behind the kept one
    assert [(m.seq, m.body) for m in spool.read(10)] == [(3, b"\2"), (4, b"\3"), (5, b"\4")]
    spool.remove(spool.read(10))
    spool.close()
    killed = (
        "import os, sys\nfrom pathlib import Path\nfrom ecaptureq.fleet import Spool\n"
        "spool = Spool(Path(sys.argv[1]))\nspool.put('log', b'taken, then the agent died')\n"
        "print([m.seq for m in spool.take(10)], flush=True)\nos._exit(0)\n"
    )
    argv = [sys.executable, "-c", killed, str(path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[6]", out.stderr
    again = Spool(path)
    assert again.stats.queued == 0
    again.put("event", b"next")
    assert [m.seq for m in again.take(10)] == [7]  # 6 may be in the stream: not reused
    again.close()


def test_spool_chunks_many_messages_and_resumes_inside_one(tmp_path: Path) -> None:
    """More than a chunk's worth in one write: several rows; a restart after a removal that ends inside a
    chunk goes on at the next message, and the removal deletes only the chunks it empties."""
    path = tmp_path / "spool.db"
    spool = Spool(path)
    total = CHUNK_MESSAGES * 2 + 10
    for i in range(total):
        spool.put("event" if i % 7 else "log", i.to_bytes(4, "big"))
    assert spool.commit() == total
    assert db_rows(path, "SELECT count(*) FROM chunks") == [(3,)]
    spool.remove(spool.read(CHUNK_MESSAGES + 5))
    assert db_rows(path, "SELECT first FROM chunks") == [(CHUNK_MESSAGES + 1,), (2 * CHUNK_MESSAGES + 1,)]
    spool.close()
    again = Spool(path)
    left_count = total - CHUNK_MESSAGES - 5
    assert (again.stored, again.stats.queued, again.stats.queued_bytes) == (
        left_count,
        left_count,
        4 * left_count,
    )
    left = again.read(total)
    assert [m.seq for m in left] == list(range(CHUNK_MESSAGES + 6, total + 1))
    assert [int.from_bytes(m.body, "big") for m in left] == [m.seq - 1 for m in left]
    assert [m.kind for m in left] == ["event" if (m.seq - 1) % 7 else "log" for m in left]
    again.close()


OLD_SPOOL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body BLOB NOT NULL);"
    "INSERT INTO meta VALUES ('agent', 'c0ffee00c0ffee00');"
)
"""The tables of a spool file an older ecaptureq wrote: a message a row, numbered by AUTOINCREMENT."""


def _old_spool(path: Path, rows: list[tuple[str, object]]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SPOOL)
        db.executemany("INSERT INTO queue (kind, body) VALUES (?, ?)", rows)
        db.execute("DELETE FROM queue WHERE seq = 1")  # published before the upgrade
        db.commit()


def test_spool_moves_an_older_files_messages_into_chunks(tmp_path: Path) -> None:
    """An older ecaptureq's file keeps its messages, their numbers and the numbers already given; one
    holding what no spool writes (a kind, a body that is text) is refused with its name."""
    from ecaptureq.fleet import SpoolError

    path = tmp_path / "old.db"
    _old_spool(path, [("event", b"a"), ("log", b"bb"), ("event", b"c")])
    spool = Spool(path)
    assert spool.agent_id == "c0ffee00c0ffee00"
    assert (spool.stats.queued, spool.stats.queued_bytes) == (2, 3)
    assert [(m.seq, m.kind, m.body) for m in spool.read(10)] == [(2, "log", b"bb"), (3, "event", b"c")]
    spool.put("event", b"d")
    assert [m.seq for m in spool.take(10)] == [4]
    spool.close()
    assert db_rows(path, "SELECT name FROM sqlite_master WHERE name = 'queue'") == []
    for name, rows in (
        ("kind", [("event", b"a"), ("status", b"b")]),
        ("text", [("event", b"a"), ("log", "b")]),
    ):
        _old_spool(tmp_path / f"{name}.db", rows)
        with pytest.raises(SpoolError, match=rf"{name}\.db"):
            Spool(tmp_path / f"{name}.db")


def _damaged_spool(path: Path) -> None:
    """A spool file holding one message whose chunk was cut short (the file changed by something else)."""
    spool = Spool(path)
    spool.put("event", b"x" * 100)
    spool.commit()
    spool.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE chunks SET data = substr(data, 1, 50)")
        db.commit()


def test_spool_refuses_a_damaged_chunk(tmp_path: Path) -> None:
    """A damaged chunk is refused with the file's name, not read as messages."""
    from ecaptureq.fleet import SpoolError

    path = tmp_path / "spool.db"
    _damaged_spool(path)
    again = Spool(path)
    with pytest.raises(SpoolError, match=r"spool\.db: a damaged chunk"):
        again.read(10)
    again.close()
    with pytest.raises(ValueError, match="not 'status'"):
        Spool(tmp_path / "other.db").put("status", b"")


@pytest.mark.e2e
def test_agent_stops_on_a_damaged_spool_with_exit_11(nats_server: NatsServer, tmp_path: Path) -> None:
    """Once NATS answers, the agent reads its spool first: a damaged one ends it with one line naming the
    file and exit 11 (as a spool it cannot write), not a traceback."""
    path = tmp_path / "spool.db"
    _damaged_spool(path)
    agent = start_cli(tmp_path, "agent", "agent", "--nats", nats_server.url("node-1"), "--node", "node-1",
                      "--spool", str(path), "--demo", "--count", "1")  # fmt: skip
    assert agent.proc.wait(60) == ExitCode.STORAGE, agent.text()
    assert "spool.db: a damaged chunk" in agent.text() and "Traceback" not in agent.text()


async def _connected_agent(
    server: NatsServer, spool: Spool, commit_interval: float
) -> tuple[Agent, asyncio.Task[None]]:
    """An agent of node-1 (its locked-down credentials) and its running task, once it is connected."""
    reader = await connect(NatsOptions([server.url("collector")]))
    await ensure_stream(reader)
    await reader.close()
    options = NatsOptions([server.url("node-1")], inbox_prefix="_INBOX_node-1")
    agent = Agent(options, "node-1", "test", spool, commit_interval=commit_interval, ack_timeout=60)
    publishing = asyncio.create_task(agent.run())
    async with asyncio.timeout(20):  # before that, what the source captures can only wait in the file
        while not agent.stats.connected:
            await asyncio.sleep(0.01)
    return agent, publishing


async def _stop(agent: Agent, publishing: asyncio.Task[None]) -> None:
    publishing.cancel()
    await asyncio.gather(publishing, return_exceptions=True)
    await agent.close()


def _publish(agent: Agent, marker: bytes, count: int) -> None:
    for i in range(count):
        agent.publish_event(Event(timestamp=i, payload=marker + b" %d" % i, length=len(marker) + 4))


@pytest.mark.e2e
def test_agent_keeps_captured_bytes_off_the_disk_while_nats_keeps_up(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """While JetStream acknowledges in time, the agent publishes from the spool's memory: the plaintext it
    captured never reaches the spool's file (nor its WAL), which holds only the next sequence number."""
    marker = b"password=" + secrets.token_hex(8).encode()
    on_disk: dict[str, bytes] = {}
    spool = Spool(tmp_path / "spool.db")

    async def run() -> Agent:
        agent, publishing = await _connected_agent(nats_server, spool, commit_interval=1.0)
        _publish(agent, marker, 300)
        drained = await agent.wait_drained(30)
        # while it runs (at its close SQLite removes the WAL, where a row deleted lives on until then)
        on_disk.update((p.name, p.read_bytes()) for p in tmp_path.glob("spool.db*"))
        await _stop(agent, publishing)
        assert drained
        return agent

    agent = asyncio.run(run())
    spool.close()
    assert agent.stats.published == 300 and agent.stats.failed_batches == 0
    assert "spool.db-wal" in on_disk
    assert not any(marker in data for data in on_disk.values())


@pytest.mark.e2e
def test_agent_spools_what_jetstream_does_not_acknowledge_in_time(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The server paused under a batch in flight: after ``commit_interval`` the batch, and what is captured
    meanwhile, are in the spool's file (where a crash of the agent would leave them for its next run);
    once the server answers the file empties, and the stream holds each message once."""
    marker = b"token=" + secrets.token_hex(8).encode()
    spool = Spool(tmp_path / "spool.db")
    in_file: list[int] = []

    def queued_in_file() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'spool.db'}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT coalesce(sum(count), 0) FROM chunks").fetchone()[0])

    async def run() -> Agent:
        agent, publishing = await _connected_agent(nats_server, spool, commit_interval=0.1)
        assert nats_server.proc is not None
        os.kill(nats_server.proc.pid, signal.SIGSTOP)
        try:
            _publish(agent, marker, 50)
            await asyncio.sleep(0.3)
            _publish(agent, marker, 50)  # while a batch waits
            async with asyncio.timeout(20):
                while queued_in_file() < 100:
                    await asyncio.sleep(0.05)
            in_file.append(queued_in_file())
        finally:
            os.kill(nats_server.proc.pid, signal.SIGCONT)
        drained = await agent.wait_drained(60)
        in_file.append(queued_in_file())
        await _stop(agent, publishing)
        assert drained
        return agent

    agent = asyncio.run(run())
    spool.close()
    assert in_file == [100, 0]
    assert agent.stats.published - agent.stats.duplicates == 100

    async def stored() -> int:
        reader = await connect(NatsOptions([nats_server.url("collector")]))
        info = await ensure_stream(reader)
        await reader.close()
        return int(info.state.messages)

    assert asyncio.run(stored()) == 100


def test_spool_refuses_a_file_that_is_not_one(tmp_path: Path) -> None:
    from ecaptureq.fleet import SpoolError

    bad = tmp_path / "not-a-spool.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SpoolError, match=r"not-a-spool\.db"):
        Spool(bad)


def test_node_column_is_added_to_an_existing_database(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store = CaptureStore(db)
    store.add(
        Event(
            timestamp=1, uuid="1_1_curl_3_1", pid=1, pname="curl", type=1, payload=b"GET / HTTP/1.1\r\n\r\n"
        )
    )
    store.add(RunLog("old line"))
    store.close()
    conn = sqlite3.connect(db)  # make it a database written before the node column
    conn.execute("DROP INDEX IF EXISTS exchanges_node")
    for table in NODE_TABLES:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN node")
    conn.commit()
    conn.close()
    store = CaptureStore(db)
    store.add(
        Event(timestamp=2, uuid="1_1_curl_3_1", pid=1, pname="curl", type=0, payload=b"x"), node="web-1"
    )
    # an agent relaying ecaptureq tls: its process labels carry the node (pids of two nodes may collide)
    store.add(RunLog(ProcessLabel(7, "curl", "/system.slice/a.scope", "").log_line()), node="web-1")
    store.add(RunLog(ProcessLabel(7, "wget", "/system.slice/b.scope", "").log_line()), node="web-2")
    store.close()
    rows = db_rows(db, 'SELECT "index", pname, node FROM packets ORDER BY "index"')
    assert rows == [(1, "curl", None), (2, "curl", "web-1")]
    assert db_rows(db, "SELECT line, node FROM run_logs WHERE node IS NULL") == [("old line", None)]
    assert db_rows(db, "SELECT pid, comm, cgroup, node FROM processes ORDER BY node") == [
        (7, "curl", "/system.slice/a.scope", "web-1"),
        (7, "wget", "/system.slice/b.scope", "web-2"),
    ]
    for table in NODE_TABLES:
        assert "node" in {r[1] for r in db_rows(db, f"PRAGMA table_info({table})")}


@pytest.mark.e2e
def test_readers_watch_record_and_ui(nats_server: NatsServer, tmp_path: Path) -> None:
    """watch, record and ui --db on a fleet: node filter, node column, --since replays what is kept."""
    fleet_db = tmp_path / "fleet.db"
    collector = start_cli(tmp_path, "collect", "collect", "--nats", nats_server.url("collector"), "--db",
                          str(fleet_db), "--flush-interval", "0.2")  # fmt: skip
    for node in ("node-1", "node-2"):
        agent = start_cli(tmp_path, f"agent-{node}", "agent", "--nats", nats_server.url(node), "--node", node,
                          "--spool", str(tmp_path / f"{node}.db"), "--demo", "--count", "30",
                          "--interval", "0")  # fmt: skip
        assert agent.proc.wait(60) == 0, agent.text()
    wait_for("60 events collected", lambda: db_rows(fleet_db, "SELECT count(*) FROM packets") == [(60,)], 30,
             on_fail=collector.text)  # fmt: skip
    assert collector.terminate() == 0

    # watch --since replays from the stream, --node keeps one node, each record says its node
    watched = subprocess.run(
        [*CLI, "watch", nats_server.url("reader"), "--since", "1h", "--node", "node-2", "--json",
         "--count", "30", "--timeout", "20"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    records = [json.loads(line) for line in watched.stdout.splitlines()]
    events = [r for r in records if r["kind"] == "event"]
    assert len(events) == 30 and {r["node"] for r in records} == {"node-2"}
    text = subprocess.run(
        [*CLI, "watch", nats_server.url("reader"), "--since", "1h", "--node", "node-*", "--count", "60",
         "--timeout", "20", "--no-decode"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "[node-1] --- event" in text.stdout and "[node-2] --- event" in text.stdout

    # record nats:// writes the node column, with its glob
    rec_db = tmp_path / "rec.db"
    recorder = start_cli(tmp_path, "record", "record", nats_server.url("reader"), "--db", str(rec_db),
                         "--since", "1h", "--node", "node-1", "--flush-interval", "0.2")  # fmt: skip
    wait_for("30 events recorded", lambda: db_rows(rec_db, "SELECT count(*) FROM packets") == [(30,)], 30,
             on_fail=recorder.text)  # fmt: skip
    assert recorder.terminate() == 0, recorder.text()
    assert db_rows(rec_db, "SELECT DISTINCT node FROM packets") == [("node-1",)]

    # ui --db on the collected database: the nodes, and a node in each exchange row
    ui = start_cli(tmp_path, "ui", "ui", "--db", str(fleet_db), "--listen", "http://127.0.0.1:0/")
    try:
        wait_for("the UI's URL", lambda: "open http://" in ui.text(), 20, on_fail=ui.text)
        url = ui.text().split("open ", 1)[1].split()[0]
        status = httpx.get(url + "api/status", timeout=10).json()
        assert status["totals"]["nodes"] == ["node-1", "node-2"]
        body = httpx.get(url + "api/exchanges", params={"filter": "node = 'node-2'"}, timeout=10).json()
        node_col = body["columns"].index("node")
        assert body["rows"] and {r[node_col] for r in body["rows"]} == {"node-2"}
    finally:
        ui.terminate()

    # ui --nats records the fleet live into its own database and shows the node column
    live_db = tmp_path / "live.db"
    ui = start_cli(tmp_path, "ui-nats", "ui", "--nats", nats_server.url("reader"), "--since", "1h",
                   "--node", "node-1", "--db", str(live_db), "--listen", "http://127.0.0.1:0/",
                   "--flush-interval", "0.2")  # fmt: skip
    try:
        wait_for("the UI's URL", lambda: "open http://" in ui.text(), 20, on_fail=ui.text)
        url = ui.text().split("open ", 1)[1].split()[0]

        def shown() -> bool:
            status = httpx.get(url + "api/status", timeout=10).json()
            return bool(status["live"]["events"] == 30 and status["totals"]["nodes"] == ["node-1"])

        wait_for("node-1's events and exchanges", shown, 20, on_fail=ui.text)
        status = httpx.get(url + "api/status", timeout=10).json()
        assert list(status["live"]["nodes"]) == ["node-1"]
    finally:
        assert ui.terminate() == 0, ui.text()
    assert db_rows(live_db, "SELECT DISTINCT node FROM packets") == [("node-1",)]


@pytest.mark.e2e
def test_spool_overflow_is_counted_and_reported_in_the_stream(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """NATS away and a tiny spool: the agent drops what does not fit, says so on stderr, and once NATS is
    back puts a warning into the stream, where the collector stores it with the node."""
    db = tmp_path / "fleet.db"
    collector = start_cli(tmp_path, "collect", "collect", "--nats", nats_server.url("collector"),
                          "--db", str(db), "--flush-interval", "0.2")  # fmt: skip
    wait_for("the collector to start", lambda: "durable" in collector.text(), 20, on_fail=collector.text)
    nats_server.stop()
    agent = start_cli(tmp_path, "agent", "agent", "--nats", nats_server.url("node-1"), "--node", "node-1",
                      "--spool", str(tmp_path / "spool.db"), "--spool-size", "4K", "--demo", "--count", "300",
                      "--interval", "0", "--drain-timeout", "60")  # fmt: skip
    wait_for(
        "the overflow warning", lambda: "spool full (4096 bytes)" in agent.text(), 30, on_fail=agent.text
    )
    nats_server.start()
    assert agent.proc.wait(60) == 0, agent.text()
    summary = agent.text().strip().splitlines()[-1]
    dropped = int(summary.split(" still spooled, ")[1].split()[0])
    assert 0 < dropped < 300, summary
    warning = f"ecaptureq agent: spool overflowed: {dropped} messages"

    def stored() -> bool:
        return any(
            warning in str(r[0]) for r in db_rows(db, "SELECT line FROM run_logs WHERE node = 'node-1'")
        )

    wait_for("the warning in the database", stored, 30, on_fail=collector.text)
    assert collector.terminate() == 0
    # what fitted arrived: the demo's 4 banner lines and 300 events, less what was dropped
    events = db_rows(db, "SELECT count(*) FROM packets WHERE node = 'node-1'")[0][0]
    logs = db_rows(db, "SELECT count(*) FROM run_logs WHERE node = 'node-1'")[0][0]
    assert events + logs - 1 == 304 - dropped  # type: ignore[operator]


@pytest.mark.e2e
def test_collector_skips_hostile_messages(nats_server: NatsServer, tmp_path: Path) -> None:
    """Bodies that are not a LogEntry, and subjects that are not ours, are counted and skipped; the
    collector keeps collecting."""
    import asyncio

    import nats

    from ecaptureq.protocol import encode

    db = tmp_path / "fleet.db"
    collector = start_cli(tmp_path, "collect", "collect", "--nats", nats_server.url("collector"),
                          "--db", str(db), "--flush-interval", "0.2")  # fmt: skip
    wait_for("the collector to start", lambda: "durable" in collector.text(), 20, on_fail=collector.text)
    good = Event(
        timestamp=1, uuid="1_1_curl_3_1", pid=1, pname="curl", type=1, payload=b"GET / HTTP/1.1\r\n\r\n"
    )

    async def publish() -> None:
        nc = await nats.connect(nats_server.url("node-1"), inbox_prefix="_INBOX_node-1")
        js = nc.jetstream()
        for i, (kind, body) in enumerate([("event", b"\xff\x00garbage"), ("event", b""), ("log", b"\x08\x07"),
                                          ("bogus", b"x"), ("event", encode(good))]):  # fmt: skip
            await js.publish(f"ecaptureq.node-1.{kind}", body, headers={"Nats-Msg-Id": f"hostile-{i}"})
        await nc.close()

    asyncio.run(publish())
    wait_for("the good event", lambda: db_rows(db, "SELECT count(*) FROM packets") == [(1,)], 20,
             on_fail=collector.text)  # fmt: skip
    assert collector.terminate() == 0
    assert "3 malformed and 1 foreign messages skipped" in collector.text(), collector.text()
    assert "Traceback" not in collector.text()


@pytest.mark.e2e
def test_collector_commits_a_burst_as_the_stream_goes_quiet(nats_server: NatsServer, tmp_path: Path) -> None:
    """The end of a burst is in the database a moment after it, not a whole --flush-interval later."""
    import asyncio

    import nats

    from ecaptureq.protocol import encode

    db = tmp_path / "fleet.db"
    collector = start_cli(tmp_path, "collect", "collect", "--nats", nats_server.url("collector"),
                          "--db", str(db), "--flush-interval", "600")  # fmt: skip
    wait_for("the collector to start", lambda: "durable" in collector.text(), 20, on_fail=collector.text)

    async def publish() -> None:
        nc = await nats.connect(nats_server.url("node-1"), inbox_prefix="_INBOX_node-1")
        js = nc.jetstream()
        for i in range(25):
            event = Event(timestamp=i + 1, uuid=f"1_1_curl_3_{i % 2}", pid=1, pname="curl", type=1,
                          payload=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # fmt: skip
            await js.publish("ecaptureq.node-1.event", encode(event), headers={"Nats-Msg-Id": f"burst-{i}"})
        await nc.close()

    asyncio.run(publish())
    # well within the flush interval: committed because nothing more came
    wait_for("the burst", lambda: db_rows(db, "SELECT count(*) FROM packets") == [(25,)], 30,
             on_fail=collector.text)  # fmt: skip
    assert collector.terminate() == 0


def test_reader_reads_the_ack_subject_as_nats_py_does() -> None:
    """The reader reads a delivered message's stream sequence, delivery count and stream time from its
    reply subject itself (nats-py's Msg.metadata is slow); both forms agree with nats-py's reading."""
    from nats.aio.msg import Msg

    from ecaptureq.fleet import FleetReader, NatsOptions
    from ecaptureq.protocol import encode_event

    reader = FleetReader(NatsOptions(servers=["nats://127.0.0.1:1"]), node_glob="web-*")
    body = encode_event(Event(timestamp=1, uuid="1_1_curl_3_1", pid=1, pname="curl", type=0, payload=b"x"))
    stored_ns = 1_770_000_000_123_456_789
    replies = (
        f"$JS.ACK.ECAPTUREQ.collect.3.4711.120.{stored_ns}.9",  # no domain
        f"$JS.ACK.hub.ACCHASH.ECAPTUREQ.collect.1.4712.121.{stored_ns}.9.r4nd",  # a JetStream domain
    )

    def delivered(subject: str, reply: str, headers: dict[str, str] | None = None) -> Msg:
        return Msg(None, subject=subject, reply=reply, data=body, headers=headers)  # type: ignore[arg-type]

    for reply in replies:
        msg = delivered("ecaptureq.web-1.event", reply, {"Ecaptureq-Source": "tls"})
        fm = reader._message(msg)
        assert fm is not None and isinstance(fm.message, Event) and fm.message.pname == "curl"
        meta = msg.metadata
        assert (fm.node, fm.source) == ("web-1", "tls")
        assert (fm.stream_seq, fm.redelivered) == (meta.sequence.stream, meta.num_delivered > 1)
        assert abs(fm.stored_at.timestamp() - meta.timestamp.timestamp()) < 1e-6
    no_headers = reader._message(delivered("ecaptureq.web-1.log", replies[0]))
    assert no_headers is not None and no_headers.source is None
    # other nodes and foreign subjects are counted, every time (their parse is remembered)
    for _ in range(2):
        assert reader._message(delivered("ecaptureq.db-1.event", replies[0])) is None
        assert reader._message(delivered("other.web-1.event", replies[0])) is None
    assert (reader.stats.skipped_nodes, reader.stats.foreign, reader.stats.received) == (2, 2, 3)

"""A real nats-server with JetStream on 127.0.0.1, configured by deploy/nats-server.conf, and helpers.

The server runs the repository's configuration unchanged; the test gives it a free port (``-a``/``-p``),
a temporary store directory and fresh random passwords through the environment, as the README shows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.sources.demo import DemoSource

REPO = Path(__file__).resolve().parents[2]
NATS_CONFIG = REPO / "deploy" / "nats-server.conf"
CLI = [sys.executable, "-m", "ecaptureq"]
USERS = ("node-1", "node-2", "node-3", "collector", "reader")
NATS_SERVER = shutil.which("nats-server")

needs_nats = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed (scripts/setup-test)")


def _env_name(user: str) -> str:
    return user.upper().replace("-", "_") + "_PASSWORD"


@dataclass
class NatsServer:
    """``nats-server -c deploy/nats-server.conf -js`` on 127.0.0.1; stop and start it again on its port."""

    store: Path
    log: Path
    passwords: dict[str, str] = field(default_factory=lambda: {u: "p" + secrets.token_hex(12) for u in USERS})
    port: int = -1  # -1: nats-server picks a free port the first time
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "NATS_STORE_DIR": str(self.store)}
        env.update({_env_name(u): p for u, p in self.passwords.items()})
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(NATS_SERVER), "-c", str(NATS_CONFIG), "-js", "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            match = re.search(r"Listening for client connections on 127\.0\.0\.1:(\d+)", text)
            if match and "Server is ready" in text:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"nats-server did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def url(self, user: str) -> str:
        """``nats://USER:PASSWORD@127.0.0.1:PORT``."""
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server with the repository's locked-down configuration."""
    if NATS_SERVER is None:
        pytest.skip("nats-server not installed (scripts/setup-test)")
    server = NatsServer(store=tmp_path / "nats-store", log=tmp_path / "nats-server.log")
    server.start()
    yield server
    server.stop()


@dataclass
class Proc:
    """An ``ecaptureq`` process whose stderr goes to a file."""

    proc: subprocess.Popen[bytes]
    stderr: Path

    def text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def terminate(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not stop on SIGTERM:\n{self.text()[-3000:]}") from None


_STARTED: list[Proc] = []


@pytest.fixture(autouse=True)
def reap_processes() -> Iterator[None]:
    """Stop every process :func:`start_cli` started in the test, even when it failed half-way (an agent
    left running with --tls would keep its probes attached)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGTERM)
            try:
                proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.proc.kill()
                proc.proc.wait()


def start_cli(tmp_path: Path, name: str, *args: str) -> Proc:
    """Start ``ecaptureq ARGS`` in the background, stderr in ``tmp_path/name.err``; stopped after the test."""
    err = tmp_path / f"{name}.err"
    with err.open("ab") as out:
        proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
        )
    started = Proc(proc, err)
    _STARTED.append(started)
    return started


def write_recording(path: Path, events: list[Event]) -> None:
    """A ``watch --json`` recording of ``events`` (what ``serve --replay`` and ``agent --replay`` read)."""
    with path.open("w") as out:
        out.write(json.dumps({"kind": "log", "run_log": f"recording {path.name}"}) + "\n")
        for event in events:
            out.write(json.dumps(to_json(event)) + "\n")


def demo_events(seed: int, count: int, *, start_ns: int, step_ns: int, pad: int = 0) -> list[Event]:
    """``count`` demo events, timestamped ``step_ns`` apart from ``start_ns`` (the replay's pace), each
    payload padded with ``pad`` bytes (the bytes after the HTTP message are kept as they are)."""
    source = DemoSource(seed=seed)
    out = []
    for i, ev in zip(range(count), source.events(), strict=False):
        payload = ev.payload + (bytes([i % 256]) * pad if pad else b"")
        out.append(
            Event(
                timestamp=start_ns + i * step_ns,
                uuid=ev.uuid,
                src_ip=ev.src_ip,
                src_port=ev.src_port,
                dst_ip=ev.dst_ip,
                dst_port=ev.dst_port,
                pid=ev.pid,
                pname=ev.pname,
                type=ev.type,
                payload=payload,
            )
        )
    return out


def identity(ev: Event) -> tuple[int, str, str]:
    """What tells two events apart: timestamp, uuid and payload."""
    return ev.timestamp, ev.uuid, base64.b64encode(ev.payload).decode()


def db_rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of a query on the database, read-only (it may be being written); ``[]`` before it exists."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []  # no table yet
    finally:
        conn.close()


def packet_identities(db: Path, node: str) -> list[tuple[int, str, str]]:
    """``identity`` of every packet of ``node`` in the database, duplicates kept."""
    rows = db_rows(db, "SELECT timestamp, uuid, payload_binary FROM packets WHERE node = ?", (node,))
    return [(int(t), str(u), base64.b64encode(bytes(p)).decode()) for t, u, p in rows]  # type: ignore[call-overload]


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, *, on_fail: Callable[[], str] = str
) -> None:
    """Poll ``check`` until true; fail with ``what`` (and ``on_fail()``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{on_fail()}")


def consumer_settled(server: NatsServer, durable: str = "ecaptureq-collect") -> bool:
    """Whether the collector's durable consumer has nothing left to deliver and nothing unacknowledged."""
    import asyncio

    import nats

    async def check() -> bool:
        nc = await nats.connect(server.url("collector"), connect_timeout=5, allow_reconnect=False)
        try:
            info = await nc.jetstream().consumer_info("ECAPTUREQ", durable)
        finally:
            await nc.close()
        return info.num_pending == 0 and info.num_ack_pending == 0

    return asyncio.run(check())

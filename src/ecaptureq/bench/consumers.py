"""Consumer benchmarks: ``watch``, ``record`` and ``ui`` as real processes, beside a bare receive loop.

The source is this project's server replaying a workload (:mod:`ecaptureq.bench.workloads`) as
``ecaptureq serve --replay FILE --speed 0`` does, as fast as the client reads (the peer process
:func:`ecaptureq.bench.peer.serve_replay`, which prints when each client's replay starts). Each consumer is a
separate ``ecaptureq`` process; it is timed from that start (so its start-up is not counted) to its last
event: ``watch --count N`` exiting, the N-th packet committed in ``record``'s or ``ui``'s database. The
baseline is a bare websockets receive loop in its own process (``peer count``), against the same source in
the same run, just before and just after the consumer (the faster of the two is the baseline).

The same bare loop is also measured once per workload against a sender that only writes frames encoded
beforehand (``peer frames``): what a websockets client can receive at most, whatever the server. Each row's
note gives the consumer's ratio to that limit too.

While ``ui`` ingests, ``/api/status`` and ``/api/exchanges`` are asked every 100 ms and their answer
times kept (the row's ``p50``/``p99`` columns are those of ``/api/exchanges``; ``/api/status`` goes to
the note). CPU time per event is measured too, for the consumer and the bare loop, from their
connection's start (``/proc``, and ``wait4`` at exit): less disturbed by other work on the machine than
the wall clock, it is in the note beside the ratio. :func:`decoder_memory` measures the decoder's state
per open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecaptureq.bench.peer import write_frames
from ecaptureq.bench.runner import Row
from ecaptureq.bench.workloads import workload_events, workload_frames
from ecaptureq.decode import Decoder
from ecaptureq.decode.decoder import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_CONNECTIONS
from ecaptureq.protocol import Event
from ecaptureq.protocol.uuid import format_uuid, parse_uuid

CONSUMERS: dict[str, list[str]] = {
    "watch --json --no-decode": ["watch", "--json", "--no-decode"],
    "watch --json": ["watch", "--json"],
    "watch (text)": ["watch"],
    "record": ["record"],
    "ui ingest": ["ui"],
}
"""Row label -> the ``ecaptureq`` subcommand and options it runs."""

GOALS: dict[str, tuple[float, float]] = {
    "watch --json --no-decode": (0.5, 0.5),
    "watch --json": (0.35, 0.25),
    "watch (text)": (0.35, 0.25),
    "record": (0.35, 0.25),
    "ui ingest": (0.35, 0.25),
}
"""The ratio to the bare loop each consumer should reach, on (HTTP/1.1, HTTP/2)."""

TIMEOUT = 600.0
"""Seconds a consumer may take before the row is given up."""


class _Sender:
    """A sending peer process: ``replay`` (the server, as ``serve --replay --speed 0``) or ``frames``."""

    def __init__(self, path: Path, role: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ecaptureq.bench.peer", role, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("ws://"):
            self.close()
            raise RuntimeError(f"benchmark sender failed to start: {self.url!r}")

    async def started(self) -> int:
        """Wait for the next connection's first frame; its wall-clock time in ns."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        if not line.startswith("start "):
            raise RuntimeError(f"benchmark sender said {line!r}")
        return int(line.split()[1])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _committed(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        row = conn.execute("SELECT coalesce(max(rowid), 0) FROM packets").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _get(port: int, path: str) -> float:
    """GET ``path`` on the UI; the seconds its whole answer took."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"ui answered {resp.status} to {path}")
    finally:
        conn.close()
    return time.perf_counter() - t0


class _Probe:
    """Asks the UI for its status and its table every 100 ms while it ingests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status: list[float] = []
        self.table: list[float] = []

    async def run(self) -> None:
        while True:
            self.status.append(await asyncio.to_thread(_get, self.port, "/api/status"))
            self.table.append(await asyncio.to_thread(_get, self.port, "/api/exchanges?limit=200"))
            await asyncio.sleep(0.1)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a live process and its descendants have used so far: those still running
    (``record``'s and ``ui``'s committing process) and those it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile: its time is in its parent's
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    total = ticks / os.sysconf("SC_CLK_TCK")
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            total += sum(tree_cpu_seconds(int(child)) for child in children.read_text().split())
    return total


async def _wait_exit(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for ``proc`` to exit 0; the wall-clock time then (ns) and the CPU seconds it used in all."""

    def wait() -> float:
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return usage.ru_utime + usage.ru_stime

    cpu = await asyncio.wait_for(asyncio.to_thread(wait), TIMEOUT)
    end = time.time_ns()
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    return end, cpu


async def _wait_rows(db: Path, events: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if _committed(db) >= events:
            return time.time_ns()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{proc.args!r}: {events} rows not committed in {TIMEOUT:g} s")


def tree_peak_rss(pid: int) -> int:
    """The largest peak resident size (``VmHWM``, bytes) of a live process and its descendants (``record``'s
    and ``ui``'s store process and committing process, where the decoding and SQLite's work happen); 0
    when none can be read."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # ended meanwhile
        return 0
    m = re.search(r"VmHWM:\s+(\d+)", text)
    peak = int(m.group(1)) * 1024 if m else 0
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            peak = max([peak, *(tree_peak_rss(int(child)) for child in children.read_text().split())])
    return peak


async def _bare(sender: _Sender, events: int) -> tuple[float, float]:
    """The bare loop's events/s and CPU seconds per event (its start-up not counted in either)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecaptureq.bench.peer", "count", sender.url, "--events", str(events)]
    )
    start = await sender.started()
    cpu0 = tree_cpu_seconds(proc.pid)
    end, cpu1 = await _wait_exit(proc)
    return events / ((end - start) / 1e9), (cpu1 - cpu0) / events


async def _consumer(
    label: str, sender: _Sender, events: int, tmp: Path
) -> tuple[float, float | None, dict[str, Any]]:
    """Run one consumer; its events/s, its peak RSS and extra fields of the row."""
    argv = [sys.executable, "-m", "ecaptureq", *CONSUMERS[label]]
    extra: dict[str, Any] = {}
    db = tmp / f"{label.split()[0]}.db"
    for leftover in tmp.glob(f"{db.name}*"):
        leftover.unlink()
    out = open(tmp / "out.txt", "wb")  # noqa: SIM115 (closed below, after the process ends)
    probe_task: asyncio.Task[None] | None = None
    probe: _Probe | None = None
    rss: float | None = None
    try:
        if label.startswith("watch"):
            argv += [sender.url, "--count", str(events)]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
            start = await sender.started()
            cpu0 = tree_cpu_seconds(proc.pid)
            end, cpu1 = await _wait_exit(proc)
            extra["output_bytes"] = os.fstat(out.fileno()).st_size
        elif label == "record":
            argv += [sender.url, "--db", str(db), "--quiet", "--flush-interval", "0.2"]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
            start = await sender.started()
            cpu0 = tree_cpu_seconds(proc.pid)
            end = await _wait_rows(db, events, proc)
            cpu1 = tree_cpu_seconds(proc.pid)
        else:
            argv += ["--source", sender.url, "--db", str(db), "--listen", "http://127.0.0.1:0/"]
            argv += ["--flush-interval", "0.2"]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=False)
            start = await sender.started()
            cpu0 = tree_cpu_seconds(proc.pid)
            assert proc.stderr is not None
            port = None
            while port is None:
                line = (await asyncio.to_thread(proc.stderr.readline)).decode()
                if not line:
                    raise RuntimeError("ui ended before printing its URL")
                m = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
                port = int(m.group(1)) if m else None
            probe = _Probe(port)
            probe_task = asyncio.create_task(probe.run())
            end = await _wait_rows(db, events, proc)
            cpu1 = tree_cpu_seconds(proc.pid)
        rss = tree_peak_rss(proc.pid) / 2**20 or None
    finally:
        if probe_task is not None:
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await probe_task
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 60)
            except TimeoutError:
                proc.kill()
                proc.wait()
        out.close()
    if probe is not None:
        extra["status_p50_ms"] = _pct(probe.status, 0.5)
        extra["status_max_ms"] = _pct(probe.status, 1.0)
        extra["table_p50_ms"] = _pct(probe.table, 0.5)
        extra["table_max_ms"] = _pct(probe.table, 1.0)
        extra["probes"] = len(probe.table)
    extra["cpu_us_per_event"] = round((cpu1 - cpu0) / events * 1e6, 1)
    return events / ((end - start) / 1e9), rss, extra


async def bench_consumers(
    workload: str, events: int, labels: list[str], progress: Callable[[str], None]
) -> list[Row]:
    """The rows of ``labels`` on ``workload``, each beside the bare loop measured just before it."""
    with tempfile.TemporaryDirectory(prefix="ecaptureq-bench-") as name:
        tmp = Path(name)
        frames_path = tmp / "frames.bin"
        frames = workload_frames(workload, events)
        size = sum(len(f) for f in frames) // len(frames)
        write_frames(str(frames_path), frames)
        del frames
        limit = _Sender(frames_path, "frames")
        try:
            receive_limit = max([(await _bare(limit, events))[0] for _ in range(2)])
        finally:
            limit.close()
        sender = _Sender(frames_path, "replay")
        rows = []
        try:
            for label in labels:
                progress(f"  {workload}: {label} ...")
                # The bare loop just before and just after the consumer, the better kept: on a shared
                # machine one bare run alone is often slowed by a neighbour, which flatters the ratio.
                base, base_cpu = await _bare(sender, events)
                rate, rss, extra = await _consumer(label, sender, events, tmp)
                base2, base_cpu2 = await _bare(sender, events)
                base, base_cpu = max(base, base2), min(base_cpu, base_cpu2)
                extra["bare_cpu_us_per_event"] = round(base_cpu * 1e6, 1)
                extra["cpu_ratio"] = round(base_cpu * 1e6 / max(extra["cpu_us_per_event"], 0.1), 3)
                goal = GOALS[label][0 if workload == "http1" else 1]
                extra["receive_limit_events_per_s"] = round(receive_limit)
                extra["receive_limit_ratio"] = round(rate / receive_limit, 3)
                note = (
                    f"goal {goal:g}x; CPU {extra['cpu_us_per_event']:g} us/event vs bare "
                    f"{extra['bare_cpu_us_per_event']:g}: {extra['cpu_ratio']:.2f}x; "
                    f"{extra['receive_limit_ratio']:.2f}x of the receive limit ({round(receive_limit):,}/s)"
                )
                if "status_max_ms" in extra:
                    note += (
                        f"; /api/status p50 {extra['status_p50_ms']} max {extra['status_max_ms']} ms,"
                        f" /api/exchanges max {extra['table_max_ms']} ms"
                    )
                rows.append(
                    Row(
                        scenario=f"{label} {'HTTP/1.1' if workload == 'http1' else 'HTTP/2'}",
                        clients=1,
                        payload=size,
                        events=events,
                        delivered_ratio=1.0,
                        events_per_s=round(rate),
                        baseline_events_per_s=round(base),
                        baseline_delivered_ratio=1.0,
                        p50_ms=extra.get("table_p50_ms"),
                        p99_ms=extra.get("table_max_ms"),
                        peak_rss_mib=None if rss is None else round(rss, 1),
                        note=note,
                        extra={**extra, "goal_ratio": goal, "workload": workload},
                    )
                )
        finally:
            sender.close()
        return rows


def consumer_plan(quick: bool) -> list[tuple[str, int]]:
    """(workload, events) of the consumer rows."""
    return [("http1", 20_000 if quick else 100_000), ("http2", 10_000 if quick else 50_000)]


def summary(rows: list[Row]) -> str:
    """One line per row: the ratio and whether it meets its goal."""
    lines = []
    for r in rows:
        goal = r.extra.get("goal_ratio")
        if goal is None:
            continue
        verdict = "meets" if r.ratio >= goal else "below"
        lines.append(
            f"{r.scenario}: {r.ratio:.2f}x of the bare loop ({verdict} the goal {goal:g}x); "
            f"by CPU time per event {r.extra['cpu_ratio']:.2f}x; "
            f"{r.extra['receive_limit_ratio']:.2f}x of the receive limit"
        )
    return "\n".join(lines)


def decoder_memory(workload: str, connections: int = 1000) -> dict[str, Any]:
    """The decoder's memory per open connection, measured with :mod:`tracemalloc`.

    ``connections`` connections each carry two whole exchanges of ``workload`` (HTTP/2: its preface and
    settings first) and then the first half of a third request, left in progress; they stay open. The
    decoder's bounds are reported beside: at most ``max_connections`` tracked (the least recently used
    is evicted) and ``max_buffered`` bytes of unfinished messages over all of them.
    """
    per_conn = 7 if workload == "http2" else 4  # HTTP/2: preface, settings, ack, then two exchanges
    template = workload_events(workload, per_conn + 1)
    events: list[Event] = []
    for c in range(connections):
        pid = 100_000 + c
        for i, ev in enumerate(template):
            payload = ev.payload if i < per_conn else ev.payload[: len(ev.payload) // 2]
            data_type = parse_uuid(ev.uuid).data_type
            events.append(
                Event(
                    timestamp=ev.timestamp,
                    uuid=format_uuid(pid, pid, "client", 7, data_type),
                    src_ip=ev.src_ip,
                    src_port=10_000 + c % 50_000,
                    dst_ip=ev.dst_ip,
                    dst_port=ev.dst_port,
                    pid=pid,
                    pname=ev.pname,
                    type=ev.type,
                    length=len(payload),
                    payload=payload,
                )
            )
    decoder = Decoder()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for ev in events:
            decoder.feed(ev)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {
        "workload": workload,
        "open_connections": decoder.connections,
        "bytes_per_connection": round(held / max(decoder.connections, 1)),
        "buffered_per_connection": round(decoder.buffered / max(decoder.connections, 1)),
        "max_connections": DEFAULT_MAX_CONNECTIONS,
        "max_buffered": DEFAULT_MAX_BUFFERED,
    }


def format_memory(rows: list[dict[str, Any]]) -> str:
    """The decoder-memory lines of the report."""
    lines = []
    for r in rows:
        lines.append(
            f"decoder state, {r['workload']}: {r['bytes_per_connection']:,} B per open connection "
            f"({r['open_connections']} open, each with a message in progress holding "
            f"{r['buffered_per_connection']:,} B); bounded at {r['max_connections']:,} connections "
            f"(least recently used evicted) and {r['max_buffered'] // 2**20} MiB of unfinished messages"
        )
    return "\n".join(lines)

"""The benchmark scenarios of ``ecaptureq bench``; every row has a baseline measured in the same run.

The server under test runs in this process; its clients run in a separate process
(:mod:`ecaptureq.bench.peer`) so the two do not share a core. The baseline is a bare ``websockets`` server
sending frames encoded beforehand to the same clients: what any server built on the same library costs,
without ecaptureq's queues, encoding, heartbeats and bookkeeping.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from ecaptureq.client import Client
from ecaptureq.protocol import Event, encode_event
from ecaptureq.server import Server


@dataclass
class Row:
    """One line of the benchmark table."""

    scenario: str
    clients: int
    payload: int
    events: int
    delivered_ratio: float
    events_per_s: float
    baseline_events_per_s: float
    baseline_delivered_ratio: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    baseline_peak_rss_mib: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """events/s relative to the baseline's."""
        return self.events_per_s / self.baseline_events_per_s if self.baseline_events_per_s else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of this row."""
        obj = {k: v for k, v in vars(self).items() if k != "extra"}
        obj["ratio"] = round(self.ratio, 3)
        obj.update(self.extra)
        return obj


@dataclass
class Measure:
    """What one side (ours or the baseline) achieved in a scenario."""

    delivered_ratio: float
    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mib: float | None
    close_codes: list[int | None]
    stalled_received: int = 0


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0) so each scenario reports its own peak.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _Peer:
    """A receiving peer process."""

    def __init__(self, url: str, clients: int, events: int, stalled: int = 0, hold: float = 5.0) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "ecaptureq.bench.peer", "receive", url,
                "--clients", str(clients), "--events", str(events),
                "--stalled", str(stalled), "--hold", str(hold),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"benchmark peer failed to start: {line!r}")

    async def result(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            out = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.read), timeout)
        except TimeoutError:
            self.proc.kill()
            raise
        finally:
            await asyncio.to_thread(self.proc.wait)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def _summarise(result: dict[str, Any], events: int, start_ns: int) -> Measure:
    stalled = result["stalled"]
    rows = result["results"]
    fast = rows[stalled:]
    delivered = min((r["received"] for r in fast), default=0) / events if events else 1.0
    if any(not r["in_order"] for r in fast):
        delivered = min(delivered, 0.0)  # out of order counts as a failure of delivery
    end = max((r["last_recv_ns"] for r in fast), default=start_ns)
    total = sum(r["received"] for r in fast)
    per_client = total / len(fast) if fast else 0
    elapsed = max(end - start_ns, 1) / 1e9
    lat = sorted(x for r in fast for x in r["latencies_ns"])
    p50 = statistics.median(lat) / 1e6 if lat else None
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6 if lat else None
    return Measure(
        delivered,
        per_client / elapsed,
        p50,
        p99,
        _peak_rss_mib(),
        [r["close_code"] for r in rows],
        sum(r["received"] for r in rows[:stalled]),
    )


async def _run_ours(
    clients: int,
    events: int,
    size: int,
    publish: Callable[[Server, bytes], Awaitable[int]],
    stalled: int = 0,
    queue_size: int | None = None,
    hold: float = 5.0,
) -> Measure:
    payload = b"x" * size
    # Large enough for a whole burst: a back-to-back publisher never yields to the writers meanwhile.
    bound = queue_size if queue_size is not None else max(100_000, events + 1000)
    async with Server(port=0, queue_size=bound, queue_bytes=4 * 1024**3) as server:
        peer = _Peer(server.url, clients, events, stalled=stalled, hold=hold)
        await peer.ready()
        await server.wait_clients(clients, timeout=60)
        _reset_peak_rss()
        start_ns = await publish(server, payload)
        result = await peer.result(timeout=300)
        return _summarise(result, events, start_ns)


async def _run_baseline(
    clients: int,
    events: int,
    size: int,
    pace: Callable[[int], Awaitable[None]] | None,
    stalled: int = 0,
    hold: float = 5.0,
) -> Measure:
    payload = b"x" * size
    connected = 0
    go = asyncio.Event()
    done = asyncio.Event()
    frames: list[bytes] = []

    async def handler(conn: ServerConnection) -> None:
        nonlocal connected
        connected += 1
        await go.wait()
        for i, frame in enumerate(frames):
            if pace is not None:
                await pace(i)
            await conn.send(frame)
        await done.wait()

    async with serve(handler, "127.0.0.1", 0, compression=None) as ws:
        port = next(iter(ws.sockets)).getsockname()[1]
        peer = _Peer(f"ws://127.0.0.1:{port}/", clients, events, stalled=stalled, hold=hold)
        await peer.ready()
        while connected < clients:
            await asyncio.sleep(0.01)
        _reset_peak_rss()
        start_ns = time.time_ns()
        frames.extend(encode_event(Event(timestamp=start_ns, pid=i, payload=payload)) for i in range(events))
        go.set()
        try:
            result = await peer.result(timeout=300)
        finally:
            done.set()
        return _summarise(result, events, start_ns)


async def _burst_publish(server: Server, payload: bytes, events: int) -> int:
    start = time.time_ns()
    for i in range(events):
        server.publish_event(Event(timestamp=time.time_ns(), pid=i, payload=payload))
    return start


def _pacer(rate: int) -> Callable[[int], Awaitable[None]]:
    start: list[float] = []

    async def pace(i: int) -> None:
        if not start:
            start.append(time.monotonic())
        due = start[0] + i / rate
        delay = due - time.monotonic()
        if delay > 0.001:
            await asyncio.sleep(delay)

    return pace


async def _paced_publish(server: Server, payload: bytes, events: int, rate: int) -> int:
    start = time.time_ns()
    pace = _pacer(rate)
    for i in range(events):
        await pace(i)
        server.publish_event(Event(timestamp=time.time_ns(), pid=i, payload=payload))
    return start


def _row(
    scenario: str, clients: int, size: int, events: int, ours: Measure, base: Measure, note: str = ""
) -> Row:
    return Row(
        scenario=scenario,
        clients=clients,
        payload=size,
        events=events,
        delivered_ratio=round(ours.delivered_ratio, 4),
        events_per_s=round(ours.events_per_s),
        baseline_events_per_s=round(base.events_per_s),
        baseline_delivered_ratio=round(base.delivered_ratio, 4),
        p50_ms=None if ours.p50_ms is None else round(ours.p50_ms, 2),
        p99_ms=None if ours.p99_ms is None else round(ours.p99_ms, 2),
        peak_rss_mib=None if ours.peak_rss_mib is None else round(ours.peak_rss_mib, 1),
        baseline_peak_rss_mib=None if base.peak_rss_mib is None else round(base.peak_rss_mib, 1),
        note=note,
    )


async def bench_burst(clients: int, size: int, events: int) -> Row:
    """N events back-to-back to K clients."""

    async def publish(server: Server, payload: bytes) -> int:
        return await _burst_publish(server, payload, events)

    ours = await _run_ours(clients, events, size, publish)
    base = await _run_baseline(clients, events, size, None)
    return _row("burst", clients, size, events, ours, base)


async def bench_paced(rate: int, seconds: float, clients: int = 1, size: int = 512) -> Row:
    """A fixed rate for a fixed time."""
    events = int(rate * seconds)

    async def publish(server: Server, payload: bytes) -> int:
        return await _paced_publish(server, payload, events, rate)

    ours = await _run_ours(clients, events, size, publish)
    base = await _run_baseline(clients, events, size, _pacer(rate))
    return _row(f"paced {rate // 1000}k/s", clients, size, events, ours, base, note=f"{seconds:g} s")


async def bench_stalled(events: int, queue_size: int, size: int = 4096, hold: float = 5.0) -> Row:
    """One client stops reading among nine that keep up.

    The stream must outgrow what the kernel's loopback socket buffers absorb (several MiB) before the
    stalled client's queue in the server can fill: hence 4 KiB payloads. The stalled client reads
    nothing for ``hold`` seconds, then drains what reached it to see how it was closed.
    """
    clients, stalled = 10, 1

    async def publish(server: Server, payload: bytes) -> int:
        start = time.time_ns()
        for i in range(events):
            server.publish_event(Event(timestamp=time.time_ns(), pid=i, payload=payload))
            if i % 64 == 63:
                await server.wait_room()
        return start

    ours = await _run_ours(clients, events, size, publish, stalled=stalled, queue_size=queue_size, hold=hold)
    base = await _run_baseline(clients, events, size, None, stalled=stalled, hold=hold)
    code = ours.close_codes[0]
    row = _row("stalled 1 of 10", clients, size, events, ours, base)
    row.note = f"stalled client closed with {code} at queue bound {queue_size}"
    row.extra = {
        "stalled_close_code": code,
        "queue_size": queue_size,
        "stalled_received": ours.stalled_received,
    }
    return row


async def bench_client(events: int, size: int = 512) -> Row:
    """Receive and decode with ecaptureq's Client, beside a bare websockets receive loop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecaptureq.bench.peer", "send", "--events", str(events), "--size", str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.to_thread(proc.stdout.readline)).strip()

        async def bare() -> float:
            t0 = time.perf_counter()
            n = 0
            async with connect(url, compression=None, max_size=None) as conn:
                async for _frame in conn:
                    n += 1
                    if n == events:
                        break
            return n / (time.perf_counter() - t0)

        async def ours() -> tuple[float, int]:
            t0 = time.perf_counter()
            n = 0
            async for msg in Client(url):
                if isinstance(msg, Event):
                    n += 1
                    if n == events:
                        break
            return n / (time.perf_counter() - t0), n

        base_rate = await bare()
        our_rate, got = await ours()
    finally:
        proc.kill()
        proc.wait()
    ratio = got / events
    return Row(
        scenario="client receive+decode",
        clients=1,
        payload=size,
        events=events,
        delivered_ratio=ratio,
        events_per_s=round(our_rate),
        baseline_events_per_s=round(base_rate),
        baseline_delivered_ratio=1.0,
        note="typed messages vs bare websockets recv",
    )


async def run_all(quick: bool, progress: Callable[[str], None], consumers_only: bool = False) -> list[Row]:
    """Run every scenario; ``quick`` uses smaller counts and shorter paced runs."""
    from ecaptureq.bench.consumers import CONSUMERS, bench_consumers, consumer_plan

    consumer_rows: list[Row] = []
    if consumers_only:
        for workload, n in consumer_plan(quick):
            progress(f"consumers on {workload} ({n} events) ...")
            consumer_rows += await bench_consumers(workload, n, list(CONSUMERS), progress)
        return consumer_rows
    n_small = 2_000 if quick else 10_000
    n_large = 300 if quick else 2_000
    seconds = 1.0 if quick else 3.0
    plan: list[tuple[str, Callable[[], Awaitable[Row]]]] = []
    for clients in (1, 10, 100):
        plan.append((f"burst 512 B x{clients}", functools.partial(bench_burst, clients, 512, n_small)))
        plan.append((f"burst 16 KiB x{clients}", functools.partial(bench_burst, clients, 16384, n_large)))
    for rate in (1_000, 10_000, 50_000):
        plan.append((f"paced {rate}/s", functools.partial(bench_paced, rate, seconds)))
    plan.append(("stalled client", lambda: bench_stalled(5_000 if quick else 20_000, 1_000)))
    plan.append(("client side", lambda: bench_client(20_000 if quick else 100_000)))
    rows = []
    for i, (label, make) in enumerate(plan, 1):
        progress(f"[{i}/{len(plan)}] {label} ...")
        rows.append(await make())
    for workload, n in consumer_plan(quick):
        progress(f"consumers on {workload} ({n} events) ...")
        rows += await bench_consumers(workload, n, list(CONSUMERS), progress)
    return rows


def format_table(rows: list[Row]) -> str:
    """An aligned text table of the rows."""
    header = [
        "scenario", "clients", "payload", "events", "delivered", "events/s", "baseline ev/s", "ratio",
        "p50 ms", "p99 ms", "peak RSS MiB", "base RSS MiB", "note",
    ]  # fmt: skip

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"

    body = [
        [
            r.scenario, str(r.clients), f"{r.payload}", str(r.events), f"{r.delivered_ratio:.4f}",
            f"{r.events_per_s:,.0f}", f"{r.baseline_events_per_s:,.0f}", f"{r.ratio:.2f}",
            fmt(r.p50_ms), fmt(r.p99_ms), fmt(r.peak_rss_mib), fmt(r.baseline_peak_rss_mib), r.note,
        ]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body)
    return "\n".join(lines)


def machine_line() -> str:
    """A line describing where the numbers were measured."""
    return (
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"
    )

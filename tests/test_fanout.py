"""The hub's policy (:class:`ecaptureq.server.fanout.Fanout`) with no sockets, no tasks and no clock.

Every input is a method call with an explicit time; every output is a value. These tests drive it as the
asyncio adapter does (``pop`` then ``sent`` for what a writer writes) and check what it decides.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

import ecaptureq.server.fanout as fanout_module
from ecaptureq.access import Refusal
from ecaptureq.protocol import Event, Heartbeat, RunLog, decode, encode_event, encode_run_log
from ecaptureq.server.fanout import (
    CLOSE_QUEUE_OVERFLOW,
    CLOSE_SHUTDOWN,
    LOG_CACHE_SIZE,
    REFUSAL_LOG_LINES_PER_MINUTE,
    REFUSALS_CACHED,
    Close,
    Deliver,
    Fanout,
    Flood,
    Overflow,
)

T0 = 1000.0
"""A monotonic time to start from."""
UNIX = 1_767_000_000.0
"""A wall-clock time (Unix seconds) for what is written in frames."""


def log_frame(line: str) -> bytes:
    return encode_run_log(line + "\n")


def event_frame(i: int, size: int = 0) -> bytes:
    return encode_event(Event(timestamp=i, uuid="1_1_curl_5_1", payload=b"x" * size, length=size))


def drain(core: Fanout, cid: int, now: float = T0) -> list[object]:
    """Everything queued for ``cid``, decoded, as its writer would send it (a Close as itself)."""
    out: list[object] = []
    while (item := core.pop(cid)) is not None:
        if isinstance(item, Close):
            out.append(item)
        else:
            out.append(decode(item))
            core.sent(cid, now)
    return out


def test_the_core_does_no_io() -> None:
    """The core imports nothing that does I/O or reads a clock (only ``websockets.frames``' close codes)."""
    tree = ast.parse(Path(fanout_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"asyncio", "socket", "ssl", "threading", "time", "selectors", "logging"}
    assert not {name.split(".")[0] for name in imported} & forbidden, imported
    assert {name for name in imported if name.startswith("websockets")} <= {"websockets.frames"}


def test_a_joining_client_gets_the_startup_log_then_heartbeat_0() -> None:
    core = Fanout()
    for i in range(LOG_CACHE_SIZE + 20):
        assert core.publish(log_frame(f"line {i}"), log=True) == []  # nobody to deliver to yet
    joined = core.add_client("127.0.0.1:5000", T0, UNIX)
    assert joined.replayed == LOG_CACHE_SIZE
    assert joined.actions == [Deliver(joined.client)]
    got = drain(core, joined.client)
    assert got[:LOG_CACHE_SIZE] == [RunLog(f"line {i}\n") for i in range(LOG_CACHE_SIZE)]
    assert got[LOG_CACHE_SIZE:] == [Heartbeat(int(UNIX), 0, "heartbeat:0")]


def test_live_frames_follow_the_replay_exactly_once() -> None:
    core = Fanout()
    core.publish(log_frame("cached"), log=True)
    cid = core.add_client("a", T0, UNIX).client
    assert core.publish(log_frame("live"), log=True) == []  # its queue is not empty: no new Deliver
    core.publish(event_frame(1))
    got = drain(core, cid)
    assert [m for m in got if not isinstance(m, Heartbeat)] == [RunLog("cached\n"), RunLog("live\n"), got[-1]]
    assert isinstance(got[-1], Event) and got[-1].timestamp == 1
    # The queue is empty now: the next frame wakes the writer again.
    assert core.publish(event_frame(2)) == [Deliver(cid)]


def test_every_client_gets_every_frame_in_order() -> None:
    core = Fanout()
    ids = [core.add_client(f"c{i}", T0, UNIX).client for i in range(3)]
    for cid in ids:
        drain(core, cid)
    for i in range(100):
        core.publish(event_frame(i))
    for cid in ids:
        events = [m for m in drain(core, cid) if isinstance(m, Event)]
        assert [e.timestamp for e in events] == list(range(100))


def test_a_slow_client_overflows_alone_and_gets_nothing_more() -> None:
    core = Fanout(queue_size=10)
    slow = core.add_client("slow", T0, UNIX).client  # reads nothing from here on
    fast = core.add_client("fast", T0, UNIX).client
    overflows: list[Overflow] = []
    delivered: list[int] = []
    for i in range(50):
        for action in core.publish(event_frame(i)):
            if isinstance(action, Overflow):
                overflows.append(action)
            else:
                assert action == Deliver(fast)
        delivered += [m.timestamp for m in drain(core, fast) if isinstance(m, Event)]
    # heartbeat 0 and 9 events fill the slow client's 10 places; the 10th event overflows it.
    assert overflows == [
        Overflow(slow, 10, "too slow: send queue overflowed (10 messages waiting)", CLOSE_QUEUE_OVERFLOW)
    ]
    assert delivered == list(range(50))
    assert core.pop(slow) is None  # its queue was dropped
    stats = core.stats()
    assert stats.overflow_closes == 1 and stats.events_published == 50


def test_the_byte_bound_overflows_too() -> None:
    core = Fanout(queue_bytes=10_000)
    cid = core.add_client("a", T0, UNIX).client
    actions = [a for i in range(5) for a in core.publish(event_frame(i, 3000))]
    assert [type(a) for a in actions] == [Overflow]  # the first frames fit; the one over 10 000 B does not
    assert isinstance(actions[0], Overflow) and actions[0].client == cid and actions[0].dropped == 4


def test_heartbeat_schedule() -> None:
    core = Fanout(heartbeat_interval=15.0)
    assert core.heartbeats(T0, UNIX).next_at is None  # no client: nothing is due, ever
    a = core.add_client("a", T0, UNIX).client
    drain(core, a)
    b = core.add_client("b", T0 + 5, UNIX + 5).client
    drain(core, b)
    plan = core.heartbeats(T0 + 1, UNIX + 1)
    assert (plan.sent, plan.actions, plan.next_at) == (0, [], T0 + 15)
    plan = core.heartbeats(T0 + 15, UNIX + 15)
    assert (plan.sent, plan.actions, plan.next_at) == (1, [Deliver(a)], T0 + 20)
    assert drain(core, a) == [Heartbeat(int(UNIX + 15), 1, "heartbeat:1")]
    plan = core.heartbeats(T0 + 20.5, UNIX + 20.5)
    assert (plan.sent, plan.next_at) == (1, T0 + 30)  # b's next is counted from when it was sent
    assert drain(core, b) == [Heartbeat(int(UNIX + 20.5), 1, "heartbeat:1")]
    # A late tick sends one heartbeat per client, not one per missed interval.
    plan = core.heartbeats(T0 + 100, UNIX + 100)
    assert plan.sent == 2 and plan.next_at == T0 + 115
    assert [s.heartbeats for s in core.stats().clients] == [3, 3]
    core.shutdown(T0 + 101, UNIX + 101)
    assert core.heartbeats(T0 + 200, UNIX + 200).next_at is None


def test_stats_count_per_client_and_for_the_server() -> None:
    core = Fanout()
    a = core.add_client("127.0.0.1:1", T0, UNIX).client
    b = core.add_client("127.0.0.1:2", T0, UNIX + 1).client
    core.publish(log_frame("hello"), log=True)
    for i in range(4):
        core.publish(event_frame(i, 10))
    drain(core, a)
    stats = core.stats()
    assert (stats.connections, stats.events_published, stats.logs_published) == (2, 4, 1)
    assert stats.bytes_published == len(log_frame("hello")) + sum(len(event_frame(i, 10)) for i in range(4))
    by_id = {c.id: c for c in stats.clients}
    assert by_id[a].sent == 6 and by_id[a].queued == 0 and by_id[a].queued_bytes == 0
    assert by_id[b].sent == 0 and by_id[b].queued == 6 and by_id[b].remote == "127.0.0.1:2"
    assert by_id[b].connected_at == UNIX + 1
    assert by_id[b].queued_bytes == sum(len(item) for item in _queued_frames(core, b))
    core.remove_client(a)
    core.remove_client(a)  # twice is once
    after = core.stats()
    assert after.disconnections == 1 and [c.id for c in after.clients] == [b] and core.client_count == 1


def _queued_frames(core: Fanout, cid: int) -> list[bytes]:
    """Pop everything queued for ``cid`` (frames only), without counting it as sent."""
    out = []
    while isinstance(item := core.pop(cid), bytes):
        out.append(item)
    return out


def test_refusals_reach_clients_but_the_cache_keeps_at_most_a_few_without_what_was_sent() -> None:
    core = Fanout()
    cid = core.add_client("a", T0, UNIX).client
    drain(core, cid)
    refusal = Refusal(
        403, "Origin 'https://evil.example' is not allowed", "forbidden", "an Origin not allowed"
    )
    outcomes = [
        core.refuse(f"10.0.0.1:{i}", refusal, T0 + i * 0.01, UNIX) for i in range(2 * REFUSALS_CACHED)
    ]
    assert all(o.logged for o in outcomes)
    assert outcomes[0].line == "refused a handshake from 10.0.0.1:0 with HTTP 403: " + refusal.reason
    live = [m for m in drain(core, cid) if isinstance(m, RunLog)]
    assert len(live) == 2 * REFUSALS_CACHED and all("evil.example" in m.line for m in live)
    cached = [decode(frame) for frame in core.startup_log]
    assert len(cached) == REFUSALS_CACHED
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(UNIX))
    assert cached == [
        RunLog(f"{stamp} WRN refused a handshake from 10.0.0.1:{i} with HTTP 403: an Origin not allowed\n")
        for i in range(REFUSALS_CACHED)
    ]
    # The rest of the cache is still there for the real run log.
    core.publish(log_frame("a real line"), log=True)
    assert decode(core.startup_log[-1]) == RunLog("a real line\n")
    assert core.stats().refused_origin == 2 * REFUSALS_CACHED


def test_a_flood_of_refusals_is_summed_up_in_the_run_log() -> None:
    core = Fanout()
    token = Refusal(401, "no token", "unauthorized")
    outcomes = [core.refuse("10.0.0.2:1", token, T0 + i * 0.001, UNIX) for i in range(50)]
    assert sum(o.logged for o in outcomes) == REFUSAL_LOG_LINES_PER_MINUTE
    assert core.stats().refused_token == 50
    cid = core.add_client("a", T0 + 61, UNIX + 61).client
    drain(core, cid)
    core.refuse("10.0.0.2:1", Refusal(503, "too many connections", "busy"), T0 + 61, UNIX + 61)
    (line,) = [m.line for m in drain(core, cid) if isinstance(m, RunLog)]
    assert line.endswith("HTTP 503: too many connections (30 more refusals not logged)\n")
    assert core.stats().refused_capacity == 1


def test_a_flooding_client_is_told_to_close_and_gets_nothing_more() -> None:
    core = Fanout(max_inbound_rate=5)
    cid = core.add_client("a", T0, UNIX).client
    drain(core, cid)
    results = [core.received(cid, T0 + i * 0.01) for i in range(6)]
    assert results[:5] == [None] * 5
    assert results[5] == Flood(cid, "too many messages (over 5/s)")
    assert core.publish(event_frame(1)) == [] and core.pop(cid) is None
    # Five a second, spread out, is allowed.
    other = core.add_client("b", T0, UNIX).client
    assert all(core.received(other, T0 + 10 + i * 0.25) is None for i in range(40))
    stats = core.stats()
    assert stats.flood_closes == 1 and stats.inbound_messages == 46


def test_shutdown_sends_the_totals_then_close_and_reports_the_stalled() -> None:
    core = Fanout()
    reader = core.add_client("127.0.0.1:1", T0, UNIX).client
    stalled = core.add_client("127.0.0.1:2", T0, UNIX).client
    for i in range(5):
        core.publish(event_frame(i))
    actions = core.shutdown(T0 + 1, UNIX + 1)
    assert set(actions) == {Deliver(reader), Deliver(stalled)}
    assert core.publish(event_frame(99)) == []  # nothing new is queued after shutdown
    got = drain(core, reader, T0 + 2)
    assert got[-1] == Close(CLOSE_SHUTDOWN, "server shutting down")
    last_log = got[-2]
    assert isinstance(last_log, RunLog)
    assert "INF Shutting down: 5 events published, 2 connections, 0 closed as too slow" in last_log.line
    assert [m.timestamp for m in got if isinstance(m, Event)] == [0, 1, 2, 3, 4]
    # The reader finished; the other wrote nothing since shutdown began.
    assert core.stalled([stalled], T0 + 5.9, grace=5.0) == []
    assert core.stalled([stalled], T0 + 6.0, grace=5.0) == [stalled]
    missed = core.give_up(stalled)
    assert (missed.remote, missed.undelivered) == ("127.0.0.1:2", 7)  # heartbeat, 5 events, the totals line
    assert core.pop(stalled) is None
    # A client whose handshake finished while stopping gets the startup log, then the close at once.
    late = core.add_client("127.0.0.1:3", T0 + 2, UNIX + 2)
    assert late.actions == [Deliver(late.client)]
    got = drain(core, late.client)
    assert got[-1] == Close(CLOSE_SHUTDOWN, "server shutting down")
    assert not any(isinstance(m, Heartbeat) for m in got)
    assert core.stats(clients=False).clients == [] and core.stats(clients=False).connections == 3


def test_a_client_that_leaves_while_stopping_keeps_what_its_writer_still_sends() -> None:
    core = Fanout()
    cid = core.add_client("a", T0, UNIX).client
    core.shutdown(T0, UNIX)
    core.remove_client(cid)
    assert core.client_count == 0
    assert drain(core, cid)[-1] == Close(CLOSE_SHUTDOWN, "server shutting down")


def test_needs_room_waits_for_readers_only() -> None:
    core = Fanout(queue_size=10)
    cid = core.add_client("a", T0, UNIX).client
    for i in range(4):
        core.publish(event_frame(i))
    assert not core.needs_room(T0, stall=0.5)  # heartbeat 0 and 4 events: not more than half
    core.publish(event_frame(4))
    assert core.needs_room(T0 + 0.1, stall=0.5)  # 6 queued by a client that is reading
    assert not core.needs_room(T0 + 0.5, stall=0.5)  # ... or was: stalled, it is not waited for
    core.pop(cid)
    core.sent(cid, T0 + 0.6)
    core.pop(cid)
    core.sent(cid, T0 + 0.6)
    assert not core.needs_room(T0 + 0.7, stall=0.5)  # 4 left


def test_lost_client_gets_nothing_more() -> None:
    core = Fanout()
    cid = core.add_client("a", T0, UNIX).client
    core.lost(cid)
    assert core.pop(cid) is None and core.publish(event_frame(1)) == []
    assert core.stats().clients[0].queued == 0


@pytest.mark.parametrize(
    "settings",
    [{"queue_size": 0}, {"queue_bytes": 0}, {"heartbeat_interval": 0}, {"max_inbound_rate": 0}],
)
def test_bad_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Fanout(**settings)  # type: ignore[arg-type]

"""The table pages by ``after_id`` (keyset): a reader that asks for the rows after the last id it has,
after every commit, gets every exchange exactly once, whatever order the exchanges complete in.

A real ``ecaptureq ui --db`` process serves a database that a :class:`CaptureStore` in this process
writes meanwhile, commit by commit.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui_support import start_ui, stop_ui

from ecaptureq.protocol import Event
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid
from ecaptureq.store import CaptureStore
from ecaptureq.web.queries import EXCHANGE_COLUMNS


def event(fd: int, direction: int, payload: bytes, t: int) -> Event:
    return Event(
        timestamp=1_760_000_000_000_000_000 + t,
        uuid=format_uuid(4242, 4242, "client", fd, direction),
        src_ip="127.0.0.1",
        src_port=40000 + fd,
        dst_ip="127.0.0.1",
        dst_port=8080,
        pid=4242,
        pname="client",
        type=0,
        length=len(payload),
        payload=payload,
    )


def exchange_pieces(fd: int, n: int) -> list[tuple[int, bytes]]:
    """One exchange on connection ``fd`` in pieces: a request whose body comes in two captures (so it can
    span commits while other connections' exchanges complete), then its response."""
    body = b"x" * 20
    head = f"POST /item/{fd}/{n} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return [(DATA_TYPE_WRITE, head + body[:7]), (DATA_TYPE_WRITE, body[7:]), (DATA_TYPE_READ, response)]


def page_after(base: str, after: int) -> list[int]:
    answer = httpx.get(f"{base}/api/exchanges", params={"after_id": after, "limit": 7}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [row[0] for row in answer.json()["rows"]]


@pytest.mark.e2e
def test_keyset_paging_skips_and_repeats_nothing_while_rows_arrive(tmp_path: Path) -> None:
    db = tmp_path / "paging.db"
    store = CaptureStore(db)
    store.connection_opened("ws://127.0.0.1:1/")
    store.flush()
    ui = start_ui("--db", str(db))
    try:
        rng = random.Random(18)
        # 12 connections, 6 exchanges each, their captures interleaved at random: exchanges complete in
        # another order than they started
        queues = {fd: [p for n in range(6) for p in exchange_pieces(fd, n)] for fd in range(3, 15)}
        seen: list[int] = []
        t = 0
        while queues:
            for _ in range(rng.randint(1, 9)):
                fd = rng.choice(sorted(queues))
                direction, payload = queues[fd].pop(0)
                if not queues[fd]:
                    del queues[fd]
                store.add(event(fd, direction, payload, t))
                t += 1
                if not queues:
                    break
            store.flush()  # one commit; the reader pages on from the last id it has, to the end
            while page := page_after(ui.base, seen[-1] if seen else 0):
                seen += page
        store.close()
        assert len(seen) == len(set(seen)), "a row was sent twice"
        assert seen == sorted(seen)
        assert len(seen) == 12 * 6, f"{12 * 6 - len(seen)} exchanges were skipped"
    finally:
        code, err = stop_ui(ui)
    assert code == 0, err


def updates_until_statuses(lines: Iterator[str], statuses: int) -> list[list[list[Any]]]:
    """The rows of each ``update`` event a stream sends until its next ``statuses`` status events (one a
    second)."""
    updates: list[list[list[Any]]] = []
    for line in itertools.islice(lines, 10_000):
        if line == "event: update":
            updates.append(json.loads(next(lines).removeprefix("data: "))["rows"])
        elif line == "event: status":
            statuses -= 1
            if statuses == 0:
                break
    return updates


@pytest.mark.e2e
def test_a_stream_from_a_page_held_completes_its_waiting_exchanges(tmp_path: Path) -> None:
    # The page fetched the rows up to after_id itself (by pages) and streams from there, naming the rows it
    # holds that wait for their response: the stream sends each as it is when it starts (it may have
    # completed meanwhile), then again only when it changes (its response is committed), though it
    # re-reads it at every poll.
    db = tmp_path / "waiting.db"
    store = CaptureStore(db)
    store.connection_opened("ws://127.0.0.1:1/")
    for t, (direction, payload) in enumerate(exchange_pieces(3, 0)[:2]):  # the request, whole
        store.add(event(3, direction, payload, t))
    store.flush()
    ui = start_ui("--db", str(db), "--poll", "0.1")
    complete = EXCHANGE_COLUMNS.index("complete")
    try:
        waiting = page_after(ui.base, 0)
        assert len(waiting) == 1
        params = {"after_id": waiting[0], "waiting": str(waiting[0])}
        with httpx.stream("GET", f"{ui.base}/api/stream", params=params, timeout=30) as answer:
            lines = answer.iter_lines()
            before = updates_until_statuses(lines, 3)  # about 2 s: 20 polls
            direction, payload = exchange_pieces(3, 0)[2]
            store.add(event(3, direction, payload, 9))
            store.flush()
            after = updates_until_statuses(lines, 3)
        store.close()
        assert [[(r[0], r[complete]) for r in rows] for rows in before] == [[(waiting[0], 0)]]
        assert [[(r[0], r[complete]) for r in rows] for rows in after] == [[(waiting[0], 1)]]
    finally:
        code, err = stop_ui(ui)
    assert code == 0, err

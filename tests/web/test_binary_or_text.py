"""One test of binary-vs-text: the store, ``watch`` (raw and decoded) and the web UI agree at the boundary.

Two payloads sit either side of :func:`~ecaptureq.protocol.text.looks_binary`'s threshold: as many control
characters as text may hold, and one more. Both are replayed by a real ``serve`` to a real ``ui --source``
(which records them into SQLite and serves them) and to real ``watch`` processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from conftest import run_cli, start_serve, stop_serve
from ui_support import start_ui, stop_ui

from ecaptureq.decode.bodies import hexdump
from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.text import CONTROL_SHARE, looks_binary

SIZE = 200
"""Bytes of each payload: long enough that the share, not the floor of two, sets the threshold."""


def payload(controls: int) -> bytes:
    """``SIZE`` bytes of text holding ``controls`` escape characters, spread out."""
    data = bytearray(b"x" * SIZE)
    for i in range(controls):
        data[5 + i * (SIZE // (controls + 1))] = 0x1B
    return bytes(data)


AT_THE_LIMIT = payload(SIZE // CONTROL_SHARE)
OVER_THE_LIMIT = payload(SIZE // CONTROL_SHARE + 1)


def test_the_two_payloads_straddle_the_threshold() -> None:
    assert (looks_binary(AT_THE_LIMIT), looks_binary(OVER_THE_LIMIT)) == (False, True)
    # a capture used to be "binary" in the database (any control byte) and text in watch (1 in 100)
    assert looks_binary(payload(1)) is False


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A ``watch --json`` recording of the two events (type 0: nothing to decode)."""
    path = tmp_path / "boundary.jsonl"
    events = [
        Event(
            timestamp=1_760_000_000_000_000_000 + i,
            uuid=f"1_1_tool_0_{i}",
            pid=1,
            pname="tool",
            src_ip="127.0.0.1",
            src_port=40000,
            dst_ip="127.0.0.1",
            dst_port=443,
            type=0,
            length=len(data),
            payload=data,
        )
        for i, data in enumerate((AT_THE_LIMIT, OVER_THE_LIMIT))
    ]
    path.write_text("".join(json.dumps(to_json(e)) + "\n" for e in events))
    return path


def watched(recording: Path, *options: str) -> str:
    """What ``watch`` prints for the recording, replayed by its own ``serve``."""
    served = start_serve("--replay", str(recording), "--speed", "0")
    try:
        result = run_cli("watch", served.url, "--count", "2", "--color", "never", *options)
    finally:
        stop_serve(served)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("options", [(), ("--no-decode",)], ids=["decoded", "raw"])
def test_watch_shows_text_and_hex_as_looks_binary_says(recording: Path, options: tuple[str, ...]) -> None:
    out = watched(recording, *options)
    assert hexdump(OVER_THE_LIMIT) in out
    assert hexdump(AT_THE_LIMIT) not in out
    assert "xxxxx\\e" in out  # the text one, its escapes made visible


@pytest.mark.e2e
def test_store_and_web_ui_agree_with_watch(recording: Path, tmp_path: Path) -> None:
    served = start_serve("--replay", str(recording), "--speed", "0")
    db = tmp_path / "boundary.db"
    ui = start_ui("--source", served.url, "--db", str(db), "--flush-interval", "0.1")
    try:
        kinds: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until both packets are committed and served
            details = [httpx.get(f"{ui.base}/api/packet/{i}", timeout=10) for i in (1, 2)]
            if all(d.status_code == 200 for d in details):
                kinds = [d.json()["payload"]["kind"] for d in details]
                break
        assert kinds == ["text", "hex"]
    finally:
        code, err = stop_ui(ui)
        stop_serve(served)
    assert code == 0, err
    with sqlite3.connect(db) as conn:
        stored = conn.execute('SELECT payload_binary, is_binary FROM packets ORDER BY "index"').fetchall()
    assert stored == [(AT_THE_LIMIT, 0), (OVER_THE_LIMIT, 1)]

"""Replay a recording in the ``watch --json`` JSON Lines format.

All run-log lines are published first (so a client that connects later still gets the first 128 of them
from the startup cache), then the events at their recorded pace scaled by ``speed`` (``0``: as fast as
possible). Heartbeats in the recording are skipped: the server makes its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ecaptureq.protocol import Event, Heartbeat, Message, RunLog
from ecaptureq.protocol.jsonl import JsonlError, parse_line
from ecaptureq.protocol.timestamps import detect_timestamp
from ecaptureq.sources.base import Sink


class ReplayError(ValueError):
    """The recording cannot be read: ``path``, the ``line`` at fault (``None``: the whole file) and the
    ``reason``; the message names all three."""

    def __init__(self, path: Path, reason: str, line: int | None = None) -> None:
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line


class NotARecording(ReplayError):
    """The file is not a JSON Lines recording of eCaptureQ messages (not UTF-8, or a line is not one)."""


@dataclass
class Recording:
    """A recording loaded in memory: its run-log lines and its events, in file order."""

    logs: list[str]
    events: list[Event]


def read_messages(path: Path) -> Iterator[Message]:
    """Read a JSON Lines recording; blank lines are skipped.

    Raises:
        ReplayError: the file cannot be opened, or a line is not a message (with its line number).
    """
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise ReplayError(path, exc.strerror or str(exc)) from None
    with handle:
        try:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    yield parse_line(text)
                except (json.JSONDecodeError, JsonlError) as exc:
                    raise NotARecording(path, f"not a JSON Lines message record: {exc}", number) from None
        except UnicodeDecodeError:
            raise NotARecording(path, "not UTF-8 text (expected JSON Lines)") from None


def load_recording(path: Path) -> Recording:
    """Read a whole recording (see :func:`read_messages`)."""
    logs: list[str] = []
    events: list[Event] = []
    for msg in read_messages(path):
        if isinstance(msg, RunLog):
            logs.append(msg.line)
        elif isinstance(msg, Event):
            events.append(msg)
        elif isinstance(msg, Heartbeat):
            continue
    return Recording(logs, events)


def _epoch_ns(event: Event) -> int | None:
    ts = detect_timestamp(event.timestamp)
    return ts.epoch_ns if ts.epoch_ns is not None else ts.boot_ns


class ReplaySource:
    """Publish a recording: ``await ReplaySource(recording, speed=1.0).run(sink)``.

    Parameters:
        recording: what :func:`load_recording` returned.
        speed: 1.0 keeps the recorded pace, 2.0 plays twice as fast, 0 as fast as possible.
    """

    def __init__(self, recording: Recording, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError("speed must be 0 (as fast as possible) or positive")
        self.recording = recording
        self.speed = speed

    async def run(self, sink: Sink) -> None:
        """Publish the run log, then every event at the chosen pace; returns when all are published."""
        for line in self.recording.logs:
            sink.publish_log(line)
        await self.play(sink)

    async def play(self, sink: Sink) -> None:
        """Publish the events only, at the chosen pace (for callers that publish the run log themselves)."""
        start = time.monotonic()
        first: int | None = None
        for i, event in enumerate(self.recording.events):
            if self.speed > 0:
                at = _epoch_ns(event)
                if at is not None:
                    first = at if first is None else first
                    delay = (at - first) / 1e9 / self.speed - (time.monotonic() - start)
                    if delay > 0:
                        await asyncio.sleep(delay)
            elif i % 1000 == 999:
                # As fast as possible, but no faster than the clients read: a sink that can say when
                # its queues have room (the server) is waited for, so a fast replay overflows no one.
                wait_room = getattr(sink, "wait_room", None)
                await (wait_room() if wait_room is not None else asyncio.sleep(0))
            sink.publish_event(event)

"""The agent's bounded local spool: a FIFO of encoded messages, in memory while NATS keeps up and in a SQLite
file when it does not.

Everything an agent captures goes through the spool: :meth:`Spool.put` (thread-safe, from any capture
thread) queues it in memory. The publisher (one thread) then does one of two things:

* while the file holds nothing, :meth:`Spool.take` gives it messages straight from memory, numbered (the
  next number is written to the file first, so that a restarted agent never reuses one); it publishes
  them, and :meth:`Spool.keep` writes to the file those JetStream did not acknowledge soon;
* otherwise :meth:`Spool.commit` writes the memory to the file (behind what it holds), :meth:`Spool.read`
  gives the oldest messages of the file, and :meth:`Spool.remove` deletes them once JetStream acknowledged
  them.

So while NATS keeps up the disk sees one small write per batch, not every message twice; while it is down
or slow, the file holds what waits, and a restarted agent publishes what the previous run left. The spool
holds at most ``max_bytes`` of message bodies (memory and file together); what would exceed it is refused
and counted (:attr:`SpoolStats.overflowed`), never dropped silently.
"""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

DEFAULT_SPOOL_BYTES: Final = 256 * 1024 * 1024
"""Default bound of the spool (``--spool-size``): bytes of message bodies held while NATS is away."""

_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,  -- the agent's sequence number, never reused
    kind TEXT NOT NULL,                      -- event | log
    body BLOB NOT NULL                       -- the encoded LogEntry, as published
);
"""


class SpoolError(Exception):
    """The spool file cannot be opened or written; the message names the file and the reason."""


class Spooled(NamedTuple):
    """One message waiting in the spool: also the row of the queue's table, in its columns' order (a tuple:
    the file's rows are made and read without a copy each)."""

    seq: int
    kind: str
    body: bytes


@dataclass
class SpoolStats:
    """What the spool holds and has refused."""

    queued: int = 0
    queued_bytes: int = 0
    accepted: int = 0
    overflowed: int = 0
    overflowed_bytes: int = 0


class Spool:
    """A bounded FIFO in memory and in ``path``. ``put`` is thread-safe; the other methods belong to one
    thread.

    Parameters:
        path: the SQLite file (created if missing; what a previous run left is kept and sent first).
        max_bytes: the most body bytes held (committed plus queued in memory).

    Raises:
        SpoolError: the file cannot be opened or is not a spool.
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_SPOOL_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._memory: list[tuple[str, bytes, int]] = []  # kind, body, its number (0: not numbered yet)
        self._stored = 0  # messages in the file
        self.stats = SpoolStats()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_DDL)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'agent'").fetchone()
            if row is None:
                self.agent_id = secrets.token_hex(8)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('agent', ?)", (self.agent_id,))
            else:
                self.agent_id = str(row[0])
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM queue"
            ).fetchone()
            numbered = self._db.execute(
                "SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_seq'), 1),"
                " coalesce((SELECT seq + 1 FROM sqlite_sequence WHERE name = 'queue'), 1))"
            ).fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {path}: {exc}") from None
        self.stats.queued, self.stats.queued_bytes = int(count), int(size)
        self._stored = int(count)
        self._next_seq = int(numbered[0])

    def put(self, kind: str, body: bytes) -> bool:
        """Queue one message; ``False`` (and counted in ``overflowed``) when the spool is full."""
        size = len(body)
        with self._lock:
            if self.stats.queued_bytes + size > self.max_bytes:
                self.stats.overflowed += 1
                self.stats.overflowed_bytes += size
                return False
            self._memory.append((kind, body, 0))
            self.stats.queued += 1
            self.stats.queued_bytes += size
            self.stats.accepted += 1
        return True

    @property
    def uncommitted(self) -> int:
        """Messages put and neither taken nor written to the file."""
        return len(self._memory)

    @property
    def stored(self) -> int:
        """Messages in the file: while there are, the publisher reads from it (first in, first out)."""
        return self._stored

    def _pop(self, limit: int | None = None) -> list[tuple[str, bytes, int]]:
        with self._lock:
            if limit is None or limit >= len(self._memory):
                batch, self._memory = self._memory, []
            else:
                batch, self._memory[:limit] = self._memory[:limit], []
        return batch

    def _unpop(self, batch: list[tuple[str, bytes, int]]) -> None:
        with self._lock:
            self._memory[:0] = batch

    def _numbered(self, batch: list[tuple[str, bytes, int]]) -> list[Spooled]:
        """The messages with their numbers: the one they were given (taken, then put back when the file
        could not keep them), or the next ones."""
        fresh = iter(range(self._next_seq, self._next_seq + len(batch)))
        return [Spooled(seq or next(fresh), kind, body) for kind, body, seq in batch]

    def _write(self, messages: list[Spooled], store: bool) -> None:
        """One transaction: the next sequence number, and ``messages`` themselves when ``store``."""
        next_seq = max(self._next_seq, max(m.seq for m in messages) + 1)
        try:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (str(next_seq),)
            )
            if store:
                self._db.executemany("INSERT INTO queue (seq, kind, body) VALUES (?, ?, ?)", messages)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SpoolError(f"spool {self.path}: {exc}") from None
        self._next_seq = next_seq
        if store:
            self._stored += len(messages)

    def commit(self) -> int:
        """Write the messages queued in memory to the file (behind what it holds) in one transaction;
        returns how many.

        Raises:
            SpoolError: the write failed (disk full); the messages stay queued in memory.
        """
        batch = self._pop()
        if not batch:
            return 0
        try:
            self._write(self._numbered(batch), store=True)
        except SpoolError:
            self._unpop(batch)
            raise
        return len(batch)

    def take(self, limit: int) -> list[Spooled]:
        """The oldest messages in memory, at most ``limit``, numbered, to publish without writing them to
        the file (call only while :attr:`stored` is 0). They still count as queued: :meth:`keep` those
        JetStream did not acknowledge soon, :meth:`remove` the others once it did.

        Raises:
            SpoolError: the next number could not be written; the messages stay queued in memory.
        """
        batch = self._pop(limit)
        if not batch:
            return []
        messages = self._numbered(batch)
        try:
            self._write(messages, store=False)
        except SpoolError:
            self._unpop(batch)
            raise
        return messages

    def keep(self, messages: list[Spooled]) -> None:
        """Write messages :meth:`take` gave to the file (JetStream did not acknowledge them yet).

        Raises:
            SpoolError: the write failed (disk full); they are put back in memory, in front, with their
                numbers (some may be in the stream already: published again, they are recognised).
        """
        if not messages:
            return
        try:
            self._write(messages, store=True)
        except SpoolError:
            self._unpop([(m.kind, m.body, m.seq) for m in messages])
            raise

    def read(self, limit: int, after: int = 0) -> list[Spooled]:
        """The oldest committed messages with ``seq > after``, at most ``limit``, in order."""
        rows = self._db.execute(
            "SELECT seq, kind, body FROM queue WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return list(map(Spooled._make, rows))

    def remove(self, messages: list[Spooled], *, stored: bool = True) -> None:
        """Forget messages JetStream acknowledged: delete them from the file (one transaction), or only
        count them when they were taken from memory and never written (``stored=False``).

        Raises:
            SpoolError: the delete failed; the messages stay (and are published again, deduplicated).
        """
        if not messages:
            return
        if not stored:
            self._forget(messages)
            return
        try:
            self._db.execute("BEGIN")
            seqs = [m.seq for m in messages]
            if all(b == a + 1 for a, b in itertools.pairwise(seqs)):  # a run, as read gave it
                self._db.execute("DELETE FROM queue WHERE seq BETWEEN ? AND ?", (seqs[0], seqs[-1]))
            else:
                self._db.executemany("DELETE FROM queue WHERE seq = ?", [(m.seq,) for m in messages])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SpoolError(f"spool {self.path}: {exc}") from None
        self._stored -= len(messages)
        self._forget(messages)

    def _forget(self, messages: list[Spooled]) -> None:
        with self._lock:
            self.stats.queued -= len(messages)
            self.stats.queued_bytes -= sum(len(m.body) for m in messages)

    def close(self) -> None:
        """Commit what is queued in memory and close the file."""
        try:
            self.commit()
        finally:
            self._db.close()

"""The agent's bounded local spool: a durable FIFO of encoded messages in a SQLite file.

Everything an agent captures goes through the spool: :meth:`Spool.put` (thread-safe, from any capture
thread) queues it in memory, :meth:`Spool.commit` writes the queued messages in one transaction, and the
publisher reads them in order and :meth:`Spool.remove` deletes them once JetStream acknowledged
them. So nothing is lost while NATS is down or slow, and a restarted agent publishes what the previous
run left. The spool holds at most ``max_bytes`` of message bodies; what would exceed it is refused and
counted (:attr:`SpoolStats.overflowed`), never dropped silently.
"""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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


@dataclass(frozen=True, slots=True)
class Spooled:
    """One message waiting in the spool."""

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
    """A durable, bounded FIFO in ``path``. ``put`` is thread-safe; the other methods belong to one thread.

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
        self._memory: list[tuple[str, bytes]] = []
        self._memory_bytes = 0
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
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {path}: {exc}") from None
        self.stats.queued, self.stats.queued_bytes = int(count), int(size)

    def put(self, kind: str, body: bytes) -> bool:
        """Queue one message; ``False`` (and counted in ``overflowed``) when the spool is full."""
        size = len(body)
        with self._lock:
            if self.stats.queued_bytes + size > self.max_bytes:
                self.stats.overflowed += 1
                self.stats.overflowed_bytes += size
                return False
            self._memory.append((kind, body))
            self._memory_bytes += size
            self.stats.queued += 1
            self.stats.queued_bytes += size
            self.stats.accepted += 1
        return True

    @property
    def uncommitted(self) -> int:
        """Messages put but not yet written to the file."""
        return len(self._memory)

    def commit(self) -> int:
        """Write the messages queued in memory to the file in one transaction; returns how many.

        Raises:
            SpoolError: the write failed (disk full); the messages stay queued in memory.
        """
        with self._lock:
            batch, self._memory = self._memory, []
            self._memory_bytes = 0
        if not batch:
            return 0
        try:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO queue (kind, body) VALUES (?, ?)", batch)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            with self._lock:
                self._memory[:0] = batch
                self._memory_bytes += sum(len(b) for _, b in batch)
            raise SpoolError(f"spool {self.path}: {exc}") from None
        return len(batch)

    def read(self, limit: int, after: int = 0) -> list[Spooled]:
        """The oldest committed messages with ``seq > after``, at most ``limit``, in order."""
        rows = self._db.execute(
            "SELECT seq, kind, body FROM queue WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [Spooled(int(seq), str(kind), bytes(body)) for seq, kind, body in rows]

    def remove(self, messages: list[Spooled]) -> None:
        """Delete messages JetStream acknowledged (one transaction).

        Raises:
            SpoolError: the delete failed; the messages stay (and are published again, deduplicated).
        """
        if not messages:
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
        with self._lock:
            self.stats.queued -= len(messages)
            self.stats.queued_bytes -= sum(len(m.body) for m in messages)

    def close(self) -> None:
        """Commit what is queued in memory and close the file."""
        try:
            self.commit()
        finally:
            self._db.close()

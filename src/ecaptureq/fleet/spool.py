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

The file holds the messages in chunks, a row each of at most :data:`CHUNK_MESSAGES` messages in order, and
the number of the last message removed (``meta``): a write is one row per chunk, a removal deletes the
chunks it empties. (A message a row, as an older ecaptureq kept them, cost the agent as much again as the
rest of its work on a message whenever NATS was slower than ``commit_interval``; such a file's messages are
moved into chunks when it is opened.)
"""

from __future__ import annotations

import secrets
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

DEFAULT_SPOOL_BYTES: Final = 256 * 1024 * 1024
"""Default bound of the spool (``--spool-size``): bytes of message bodies held while NATS is away."""

CHUNK_MESSAGES: Final = 1000
"""The most messages in one row of the file (a read parses the chunks it reaches)."""

PAGE_BYTES: Final = 16384
"""SQLite's page size in a new spool file."""

KINDS: Final = ("event", "log", "heartbeat")
"""The kinds of message a spool holds (the last token of their subject); stored as their index."""

_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    first INTEGER PRIMARY KEY,  -- the number of its first message
    last  INTEGER NOT NULL,     -- the number of its last
    count INTEGER NOT NULL,     -- its messages
    bytes INTEGER NOT NULL,     -- their bodies' bytes
    data  BLOB NOT NULL         -- each message: number (8 bytes), kind (1), body size (4), body (_HEAD)
);
"""

_HEAD: Final = struct.Struct("<QBI")
_KIND_CODES: Final = {kind: code for code, kind in enumerate(KINDS)}


class SpoolError(Exception):
    """The spool file cannot be opened or written; the message names the file and the reason."""


class Spooled(NamedTuple):
    """One message waiting in the spool (a tuple: made once per message, it is cheap)."""

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
            # A new file's page: a chunk of the demo's 220-byte messages spans 14 of them, not 55 (writing
            # and deleting a message cost 1.5 µs at 4 KiB, 1.0 at 16 KiB). An existing file keeps its own.
            self._db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_DDL)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'agent'").fetchone()
            if row is None:
                self.agent_id = secrets.token_hex(8)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('agent', ?)", (self.agent_id,))
            else:
                self.agent_id = str(row[0])
            self._next_seq = max(self._meta_int("next_seq", 1), self._move_rows_into_chunks())
            self._removed = self._meta_int("removed", 0)  # the number of the last message removed
            count, size, last = self._db.execute(
                "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0), coalesce(max(last), 0) FROM chunks"
            ).fetchone()
            head = self._db.execute(
                "SELECT data FROM chunks WHERE first <= ? AND last > ?", (self._removed, self._removed)
            ).fetchone()
        except (sqlite3.Error, ValueError, TypeError) as exc:  # a number in meta, a body that is not one
            raise SpoolError(f"spool {path}: {exc}") from None
        gone = [m for m in self._unpack(head[0]) if m.seq <= self._removed] if head else []
        self._stored = int(count) - len(gone)
        self.stats.queued = self._stored
        self.stats.queued_bytes = int(size) - sum(len(m.body) for m in gone)
        self._next_seq = max(self._next_seq, int(last) + 1)
        self._parsed: tuple[int, list[Spooled]] = (0, [])  # the chunk read last: (first, its messages)

    def _meta_int(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _move_rows_into_chunks(self) -> int:
        """Move the messages of an older ecaptureq's file (a row each, in ``queue``) into chunks; return the
        next number it had given (1 for a file without them)."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'queue'").fetchone():
            return 1
        (numbered,) = self._db.execute(
            "SELECT coalesce((SELECT seq + 1 FROM sqlite_sequence WHERE name = 'queue'), 1)"
        ).fetchone()
        rows = self._db.execute("SELECT seq, kind, body FROM queue ORDER BY seq").fetchall()
        messages = [Spooled(int(seq), str(kind), bytes(body)) for seq, kind, body in rows]
        if any(m.kind not in _KIND_CODES for m in messages):
            raise SpoolError(f"spool {self.path}: a message of a kind a spool does not hold")
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO chunks (first, last, count, bytes, data) VALUES (?, ?, ?, ?, ?)",
                self._chunks(messages),
            )
            self._db.execute("DROP TABLE queue")
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return int(numbered)

    @staticmethod
    def _chunks(messages: Sequence[Spooled]) -> list[tuple[int, int, int, int, bytes]]:
        """The rows of ``chunks`` holding ``messages`` (in order)."""
        head, codes = _HEAD.pack, _KIND_CODES
        rows = []
        for start in range(0, len(messages), CHUNK_MESSAGES):
            part = messages[start : start + CHUNK_MESSAGES]
            data = b"".join([b for m in part for b in (head(m.seq, codes[m.kind], len(m.body)), m.body)])
            size = sum(len(m.body) for m in part)
            rows.append((part[0].seq, part[-1].seq, len(part), size, data))
        return rows

    def _unpack(self, data: bytes) -> list[Spooled]:
        """The messages of a chunk.

        Raises:
            SpoolError: the chunk is damaged (the file was changed by something else).
        """
        messages = []
        pos, end, unpack, size = 0, len(data), _HEAD.unpack_from, _HEAD.size
        try:
            while pos < end:
                seq, code, length = unpack(data, pos)
                pos += size
                messages.append(Spooled(seq, KINDS[code], data[pos : pos + length]))
                pos += length
        except (struct.error, IndexError):
            pos = end + 1
        if pos != end:
            raise SpoolError(f"spool {self.path}: a damaged chunk of messages (move the file away)")
        return messages

    def put(self, kind: str, body: bytes) -> bool:
        """Queue one message of a kind of :data:`KINDS`; ``False`` (and counted in ``overflowed``) when the
        spool is full."""
        if kind not in _KIND_CODES:
            raise ValueError(f"a spool holds {', '.join(KINDS)}, not {kind!r}")
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
                self._db.executemany(
                    "INSERT INTO chunks (first, last, count, bytes, data) VALUES (?, ?, ?, ?, ?)",
                    self._chunks(messages),
                )
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

    def read(self, limit: int) -> list[Spooled]:
        """The oldest messages of the file, at most ``limit``, in order.

        Raises:
            SpoolError: a chunk of the file is damaged.
        """
        messages: list[Spooled] = []
        first = 0
        while len(messages) < limit:
            try:
                row = self._db.execute(
                    "SELECT first, data FROM chunks WHERE first > ? AND last > ? ORDER BY first LIMIT 1",
                    (first, self._removed),
                ).fetchone()
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: {exc}") from None
            if row is None:
                break
            first = int(row[0])
            if self._parsed[0] != first:
                self._parsed = (first, self._unpack(row[1]))
            left = limit - len(messages)
            messages += [m for m in self._parsed[1] if m.seq > self._removed][:left]
        return messages

    def remove(self, messages: list[Spooled], *, stored: bool = True) -> None:
        """Forget messages JetStream acknowledged: the oldest ones :meth:`read` gave (one transaction, which
        deletes the chunks they empty), or, ``stored=False``, ones :meth:`take` gave and that were never
        written, only counted.

        Raises:
            SpoolError: the write failed; the messages stay (and are published again, deduplicated).
        """
        if not messages:
            return
        if not stored:
            self._forget(messages)
            return
        through = messages[-1].seq
        try:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM chunks WHERE last <= ?", (through,))
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('removed', ?)", (str(through),)
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SpoolError(f"spool {self.path}: {exc}") from None
        self._removed = through
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

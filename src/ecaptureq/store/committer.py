"""The store's commits, run by a small process of its own: the recording process hands it each batch's rows.

A recording (``record``, ``ui``, ``collect``) decodes in one thread and commits in another, but the two take
turns: Python's sqlite3 binds every parameter and steps every row holding the GIL, so the committing thread
and the decoding thread share one core. This process does the binding and the SQLite work on the other
core. :class:`Committer` (in the recording process) sends it a batch as one ``marshal`` message (the rows are
tuples of ints, floats, strings, bytes and ``None``: a few milliseconds for thousands of rows) and waits for
its answer; the process runs the batch's statements in one transaction on its own connection and answers.

This file runs as a script (``python -I -S committer.py DATABASE``: the standard library only, no package
import at start-up) and is imported by :mod:`~ecaptureq.store.writer` for :class:`Committer`. Two columns of
``packets`` are computed here, by SQL functions the insert calls (:func:`add_payload_functions`): whether
the payload is binary, and its text. That is a tenth of the recording process's work on an HTTP/1.1 burst,
and the text no longer goes through the pipe beside the payload.

The protocol on the process's stdin and stdout: the process first writes ``b"\\0"`` once its connection is
open; a request is an 8-byte length (native order) and a ``marshal`` of ``[(sql, rows), ...]``; the answer is
``b"\\0"`` once committed, or ``b"\\1"``, a 4-byte length and the error's text (UTF-8) after a rollback.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import marshal
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Final

_LENGTH: Final = struct.Struct("Q")
_ERROR_LENGTH: Final = struct.Struct("I")
_OK: Final = b"\0"
_FAILED: Final = b"\1"

CHECKPOINT_WAL_BYTES: Final = 4 * 1024 * 1024
"""WAL size from which the store copies the WAL into the database file (SQLite's automatic checkpoint, off
on the store's connections, runs at 1,000 pages: 4 MiB of its 4 KiB pages). The committing process does
it after answering a commit, when the WAL has grown past it; a store committing in its own process, beside
its commits (see ``_Checkpointer`` in the writer)."""

PIPE_BYTES: Final = 1024 * 1024
"""The size asked for a pipe that carries batches (Linux's default is 64 KiB; 1 MiB is the most an
unprivileged process may ask for)."""

BUSY_TIMEOUT_MS: Final = 10_000
"""How long the process's connection waits for another writer (there is none while it commits: the
recording process writes only between two of its batches)."""

Work = list[tuple[str, list[tuple[Any, ...]]]]
"""A batch: statements, each with the rows ``executemany`` runs it on, committed together."""


def add_payload_functions(db: sqlite3.Connection, text: ModuleType) -> None:
    """Define on ``db`` the SQL functions the ``packets`` insert computes two columns with:
    ``ecaptureq_is_binary(payload)`` and ``ecaptureq_payload_text(payload)``, from ``text``
    (:mod:`ecaptureq.protocol.text`)."""
    db.create_function("ecaptureq_is_binary", 1, text.looks_binary, deterministic=True)
    db.create_function("ecaptureq_payload_text", 1, text.payload_text, deterministic=True)


def _text_module() -> ModuleType:
    """:mod:`ecaptureq.protocol.text`, loaded by its path: as a script this process has no package."""
    path = Path(__file__).resolve().parents[1] / "protocol" / "text.py"
    spec = importlib.util.spec_from_file_location("_ecaptureq_protocol_text", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CommitterError(Exception):
    """A batch was not committed: SQLite's error text (the transaction was rolled back), or the process
    ended."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Committer:
    """The committing process of one database, started at construction (which returns once it has opened
    the database); :meth:`commit` is called from one thread at a time (the store's writer thread).

    Raises:
        OSError: the process cannot be started.
        CommitterError: it started and ended (it could not open the database, say).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.read(1) != _OK:  # it says so once its connection is open
            self.close()
            code = self._proc.poll()
            raise CommitterError(f"the store's committing process did not start (exit code {code})")

    @property
    def alive(self) -> bool:
        """Whether the process is still running (it may have failed to start)."""
        return self._proc.poll() is None

    @staticmethod
    def pack(work: Work) -> bytes | None:
        """The request for ``work`` (without its length, which :meth:`commit` writes first: a batch is
        megabytes, not copied once more); ``None`` when a value cannot go by ``marshal`` (a subclass of
        ``str`` or ``int``, say): the caller commits that batch itself."""
        try:
            return marshal.dumps(work)
        except ValueError:
            return None

    def commit(self, request: bytes) -> None:
        """Have the process commit a request made by :meth:`pack`; return once it did.

        Raises:
            CommitterError: it failed (rolled back: nothing of it was written), or the process is gone.
        """
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_LENGTH.pack(len(request)))
            proc.stdin.write(request)
            proc.stdin.flush()
            answer = proc.stdout.read(1)
            if answer == _FAILED:
                (size,) = _ERROR_LENGTH.unpack(proc.stdout.read(_ERROR_LENGTH.size))
                raise CommitterError(proc.stdout.read(size).decode("utf-8", "replace"))
        except (OSError, struct.error):
            answer = b""
        if answer != _OK:
            raise CommitterError(f"the store's committing process ended (exit code {proc.poll()})")

    def close(self, timeout: float = 30.0) -> None:
        """End the process (it finishes the batch it may be committing) and wait for it."""
        proc = self._proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):  # a broken pipe: it is gone already
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read_exactly(fd: int, size: int) -> bytearray | None:
    buffer = bytearray(size)  # read into its place: a batch is megabytes, not copied once more
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = os.readv(fd, [view[done:]])
        if not count:
            return None
        done += count
    return buffer


def serve(path: str, rfd: int = 0, wfd: int = 1) -> None:
    """The process's loop: commit each request read from ``rfd``, answer on ``wfd``, until end of input."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA synchronous=NORMAL")  # the store's own settings (see CaptureStore)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("PRAGMA journal_size_limit=0")
    add_payload_functions(db, _text_module())
    wal = f"{path}-wal"
    with contextlib.suppress(OSError):  # a bigger pipe: the batch comes in fewer turns (not a pipe: as is)
        fcntl.fcntl(rfd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    os.write(wfd, _OK)  # ready
    try:
        while True:
            head = _read_exactly(rfd, _LENGTH.size)
            if head is None:
                return
            body = _read_exactly(rfd, _LENGTH.unpack(head)[0])
            if body is None:
                return
            try:
                db.execute("BEGIN")
                for sql, rows in marshal.loads(body):
                    db.executemany(sql, rows)
                db.execute("COMMIT")
            except Exception as exc:  # every failure is answered, after the rollback
                if db.in_transaction:
                    db.execute("ROLLBACK")
                text = str(exc).encode("utf-8", "replace")
                os.write(wfd, _FAILED + _ERROR_LENGTH.pack(len(text)) + text)
            else:
                os.write(wfd, _OK)
                _checkpoint_if_due(db, wal)
    finally:
        db.close()


def _checkpoint_if_due(db: sqlite3.Connection, wal: str) -> None:
    """Copy the WAL into the database once it holds :data:`CHECKPOINT_WAL_BYTES` (its file's size: with
    ``journal_size_limit=0`` SQLite empties it whenever it starts over). After the answer: the recording
    process goes on meanwhile, and only its next commit waits for the copy. ``PASSIVE`` (it never waits for
    readers), and silent as SQLite's automatic checkpoint is: the next commit reports the file's errors."""
    try:
        if os.stat(wal).st_size < CHECKPOINT_WAL_BYTES:
            return
    except OSError:
        return
    checkpoint(db)


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy what ``db``'s WAL holds into the database file: ``PASSIVE`` (it waits for no reader or writer),
    and silent, as SQLite's automatic checkpoint is (the commits report the file's errors)."""
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


if __name__ == "__main__":
    serve(sys.argv[1])

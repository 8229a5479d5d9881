"""Write messages into a capture database durably: WAL, batched transactions, decoded exchanges.

:class:`CaptureStore` buffers rows in memory and writes them in one transaction per :meth:`flush`; the
caller flushes at least every ``flush_interval`` seconds, so a crash (even ``kill -9``) loses at most the
last batch. In WAL mode, readers (``ecaptureq query``) see every committed batch while recording goes on.

Commits asked for with :meth:`CaptureStore.flush_in_background` (what ``record``, ``ui`` and ``collect`` do)
are handed, in order, by the store's writer thread to a process of its own (:mod:`ecaptureq.store.committer`),
so that SQLite's work does not share the GIL with the decoding; the WAL is copied into the database file by
another thread (:class:`_Checkpointer`).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from ecaptureq.decode.decoder import Decoder
from ecaptureq.decode.model import STORED_FORMAT, Exchange, HttpMessage
from ecaptureq.decode.results import RequestDone, ResponseDone
from ecaptureq.protocol import Event, Heartbeat, Message, RunLog
from ecaptureq.protocol import text as protocol_text
from ecaptureq.protocol.gap import parse_gap
from ecaptureq.protocol.process import parse_process
from ecaptureq.store.committer import (
    CHECKPOINT_WAL_BYTES,
    Committer,
    CommitterError,
    Work,
    add_payload_functions,
    checkpoint,
)
from ecaptureq.store.schema import StoreError, check_capture_database, describe, initialise, packet_values

_INSERT_PACKET = (
    "INSERT INTO packets (timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length,"
    " is_binary, payload_utf8, payload_binary, connection_id, received_ns, node)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ecaptureq_is_binary(?11), ecaptureq_payload_text(?11),"
    " ?11, ?12, ?13, ?14)"
)
"""A row: :func:`~ecaptureq.store.schema.packet_values`, the connection's id, ``received_ns``, the node; the
two columns computed from the payload are computed by SQLite (:func:`add_payload_functions`)."""
_EXCHANGE_COLUMNS = (
    "id, connection, protocol, stream_id, pid, pname, src_ip, src_port, dst_ip, dst_port, started_ns,"
    " ended_ns, latency, method, url, host, path, status, request_headers, response_headers,"
    " request_content_type, response_content_type, request_body, response_body, request_body_text,"
    " response_body_text, request_size, response_size, complete, errors, detail, node"
)
_INSERT_EXCHANGE = f"INSERT OR REPLACE INTO exchanges ({_EXCHANGE_COLUMNS}) VALUES ({', '.join('?' * 32)})"
_INSERT_RUN_LOG = "INSERT INTO run_logs (connection_id, received_ns, line, node) VALUES (?, ?, ?, ?)"
_INSERT_PROCESS = (
    "INSERT INTO processes (pid, comm, cgroup, container_id, connection_id, received_ns, node)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_HEARTBEAT = (
    "INSERT INTO heartbeats (connection_id, received_ns, timestamp, count, message) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_DELIVERED = "INSERT OR IGNORE INTO delivered (key) VALUES (?)"


@dataclass
class Batch:
    """Rows taken from the buffers for one transaction (see :meth:`CaptureStore.take`).

    Its exchanges are rendered into rows by :meth:`render`, in the thread that feeds the decoder (which
    changes them), before the batch is committed; a caller on an event loop renders a few at a time.
    """

    packets: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    heartbeats: list[tuple[Any, ...]] = field(default_factory=list)
    exchanges: list[tuple[Any, ...]] = field(default_factory=list)
    delivered: list[tuple[int]] = field(default_factory=list)
    processes: list[tuple[Any, ...]] = field(default_factory=list)
    unrendered: list[tuple[int, Exchange, str | None]] = field(default_factory=list)
    """Exchanges still to render: (row id, exchange, node)."""

    def render(self, count: int | None = None) -> bool:
        """Render ``count`` more exchanges (all when ``None``) into rows; whether none is left."""
        todo = self.unrendered
        if count is None or count >= len(todo):
            part, self.unrendered = todo, []
        else:
            part = todo[-count:]
            del todo[-count:]
        self.exchanges += [exchange_row(i, ex, node) for i, ex, node in part]
        return not self.unrendered

    def __len__(self) -> int:
        parts = (self.packets, self.logs, self.heartbeats, self.exchanges, self.delivered, self.processes)
        return sum(len(part) for part in parts) + len(self.unrendered)


@dataclass
class StoreStats:
    """What a store has written since it was opened."""

    packets: int = 0
    payload_bytes: int = 0
    logs: int = 0
    heartbeats: int = 0
    exchanges: int = 0  # completed (request and response)
    flushes: int = 0
    exchange_rows: int | None = None
    """Exchanges written in all, complete or not (a request with no response, one cut by a capture gap):
    counted by :meth:`CaptureStore.close`, ``None`` before."""

    def exchanges_text(self) -> str:
        """``N exchanges``, and how many of them are complete when not all are (for a summary line)."""
        rows = self.exchanges if self.exchange_rows is None else max(self.exchange_rows, self.exchanges)
        text = f"{rows} exchange{'' if rows == 1 else 's'}"
        return text if rows == self.exchanges else f"{text} ({self.exchanges} complete)"


BODY_STORED: Final = 8 * 1024
"""Bytes of a decoded body kept per column (``request_body``, ``request_body_text``...). The wire bytes are
all in ``packets``; what is decoded from them is kept once, capped, so an exchange costs at most twice its
wire size plus 64 KiB whatever its bodies expand to."""

HEADERS_STORED: Final = 8 * 1024
"""Bytes of one message's headers JSON kept (``request_headers``, ``response_headers``)."""

FIELD_CHARS: Final = 2048
"""Characters of the request line's parts and similar fields kept in ``detail``."""

NOTES_STORED: Final = 16
"""Errors and notes kept per message (each cut at :data:`NOTE_CHARS` characters)."""
NOTE_CHARS: Final = 300

QUIET_COMMIT: Final = 0.02
"""Seconds without a new message after which a recording (``record``, ``ui``, ``collect``) commits what it
has, whatever its flush interval: once a burst ends (or the recorder catches up), its last rows are in the
database that much later, while a steady stream still commits in large batches."""

STORE_DECODE_LIMIT: Final = 1024 * 1024
"""What the store's decoder expands per body (enough to recognise JSON and forms; far above what is kept)."""


def _compact(obj: Any) -> str:
    # orjson (C) writes the same compact JSON as json.dumps(ensure_ascii=False) bar the spelling of some
    # floats, which read back equal; what it refuses (a lone surrogate, an integer beyond 64 bits) goes
    # through json.
    try:
        return orjson.dumps(obj).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _headers_json(msg: HttpMessage | None) -> str | None:
    if msg is None:
        return None
    try:
        whole = orjson.dumps(msg.headers)
    except orjson.JSONEncodeError:  # a lone surrogate: json writes it, below
        pass
    else:
        # The JSON of all the headers is at least as long as the size counted below, less one: when it is
        # shorter than the cap, that count keeps every header, and this is the text it would make.
        if len(whole) < HEADERS_STORED:
            return whole.decode("utf-8")
    kept: list[list[str]] = []
    size = 2
    for k, v in msg.headers:
        size += len(k) + len(v) + 8
        if size > HEADERS_STORED:
            kept.append(["…", f"{len(msg.headers) - len(kept)} more headers not stored"])
            break
        kept.append([k, v])
    text = _compact(kept)
    return text if len(text.encode()) <= HEADERS_STORED * 2 else _compact(kept[:1])


def _cut(items: list[str]) -> list[str]:
    return [i[:NOTE_CHARS] for i in items[:NOTES_STORED]] if items else items


def _stored_message(msg: HttpMessage, ex: Exchange) -> dict[str, Any]:
    """The ``detail`` JSON of a message: :meth:`~ecaptureq.decode.model.HttpMessage.to_dict`'s fields
    that no column of the row holds, each only when it is not the default ``from_dict`` takes, capped.

    The columns hold the headers, the bodies and the sizes, the request's method, URL and path, the
    response's status, the content types, and the exchange's protocol and stream; what is derived from
    them on reading (form fields; gRPC messages are not kept) and the body as carried (the packets have
    it) are not stored: each fact once. :func:`~ecaptureq.store.export.load_exchange` puts the columns
    back. A value a column cuts shorter than ``detail`` would (a method or content type beyond
    :data:`NOTE_CHARS`) stays here too, and so does an empty URL beside a path (the ``url`` column holds
    the path then).
    """
    d: dict[str, Any] = {"kind": msg.kind}
    if msg.protocol != ex.protocol:
        d["protocol"] = msg.protocol
    request = msg.kind == "request"
    if msg.method and (not request or len(msg.method) > NOTE_CHARS):
        d["method"] = msg.method[:FIELD_CHARS]
    if not request:  # the request's have columns
        if msg.url:
            d["url"] = msg.url[:FIELD_CHARS]
        if msg.path:
            d["path"] = msg.path[:FIELD_CHARS]
    elif not msg.url and msg.path:
        d["url"] = None
    if msg.status is not None and request:
        d["status"] = msg.status
    for key, value in (
        ("scheme", msg.scheme),
        ("authority", msg.authority),
        ("reason", msg.reason),
        ("content_encoding", msg.content_encoding),
    ):
        if value:
            d[key] = value[:FIELD_CHARS]
    if len(msg.content_type) > NOTE_CHARS:
        d["content_type"] = msg.content_type[:FIELD_CHARS]
    if msg.charset is not None:
        d["charset"] = msg.charset
    is_json = msg.is_json_known
    if is_json is None and msg.body_text is not None and len(msg.body_text) > BODY_STORED // 4:
        is_json = msg.is_json  # the stored text may be cut (and then not parse): say what the whole was
    if is_json is not None:
        d["is_json"] = is_json
    if msg.trailers:
        d["trailers"] = [[k, v] for k, v in msg.trailers[:NOTES_STORED]]
    if msg.stream_id != ex.stream_id:
        d["stream_id"] = msg.stream_id
    if msg.truncated:
        d["truncated"] = True
    if not msg.complete:
        d["complete"] = False
    if msg.errors:
        d["errors"] = _cut(msg.errors)
    notes = msg.notes
    if len(msg.body) > BODY_STORED:
        notes = [*notes, f"stored: the first {BODY_STORED} of {len(msg.body)} decoded bytes"]
    if notes:
        d["notes"] = _cut(notes)
    if msg.time_ns is not None:
        d["time_ns"] = msg.time_ns
    if msg.raw and msg.errors:  # the undecodable bytes, capped, and only beside the errors that say why
        d["raw_b64"] = base64.b64encode(msg.raw[:BODY_STORED]).decode("ascii")
    return d


def _stored_detail(ex: Exchange) -> dict[str, Any]:
    """The ``detail`` JSON of an exchange: as :func:`_stored_message`, what the columns do not hold (its
    id, connection, protocol, stream, process and addresses, and times have theirs)."""
    detail: dict[str, Any] = {"format_version": STORED_FORMAT}
    if ex.tid is not None:
        detail["tid"] = ex.tid
    if ex.fd is not None:
        detail["fd"] = ex.fd
    if ex.clock != "unset":
        detail["clock"] = ex.clock
    if ex.request is not None:
        detail["request"] = _stored_message(ex.request, ex)
    if ex.response is not None:
        detail["response"] = _stored_message(ex.response, ex)
    return detail


def _text(msg: HttpMessage | None) -> str | None:
    if msg is None or msg.body_text is None:
        return None
    text = msg.body_text[:BODY_STORED]
    while len(text.encode("utf-8")) > BODY_STORED:  # many-byte characters: cut further
        text = text[: len(text) // 2]
    return text


def exchange_row(row_id: int, ex: Exchange, node: str | None = None) -> tuple[Any, ...]:
    """The ``exchanges`` row of an exchange (see the schema for the columns), its bodies capped; ``node``
    is the fleet node."""
    req, resp = ex.request, ex.response
    errors = _cut([*(req.errors if req else []), *(resp.errors if resp else [])])
    return (
        row_id,
        ex.connection,
        ex.protocol,
        ex.stream_id,
        ex.pid,
        ex.pname,
        ex.src_ip,
        ex.src_port,
        ex.dst_ip,
        ex.dst_port,
        ex.started_ns,
        ex.ended_ns,
        ex.latency,
        (req.method[:NOTE_CHARS] or None) if req else None,  # NULL, not "", when a late join lost it
        (req.target[:HEADERS_STORED] or None) if req else None,
        req.host[:NOTE_CHARS] if req else None,
        (req.path[:HEADERS_STORED] or None) if req else None,
        resp.status if resp else None,
        _headers_json(req),
        _headers_json(resp),
        req.content_type[:NOTE_CHARS] if req else None,
        resp.content_type[:NOTE_CHARS] if resp else None,
        req.body[:BODY_STORED] if req else None,
        resp.body[:BODY_STORED] if resp else None,
        _text(req),
        _text(resp),
        req.body_size if req else None,
        resp.body_size if resp else None,
        int(ex.whole),
        _compact(errors) if errors else None,
        _compact(_stored_detail(ex)),
        node,
    )


CHECKPOINT_WAL_LIMIT: Final = 4 * CHECKPOINT_WAL_BYTES
"""WAL size from which the committing thread copies it itself, after its commit, as the automatic
checkpoint did: the bound of the WAL should the checkpoints beside the commits fall behind."""


class _Checkpointer:
    """Copies the WAL into the database file when asked, in a thread and on a connection of its own.

    SQLite's automatic checkpoint ran inside the commit that crossed its threshold, in the thread that holds
    the GIL between statements: recording an HTTP/1 workload, a commit then took 9.1 µs per event, 1.6 µs
    without it. A checkpoint is one statement, run by SQLite without the GIL: here it goes on beside the
    decoding. It is ``PASSIVE`` (it never waits for readers or the writer), as the automatic one is, and its
    failures are silent as that one's are: the commits and the final checkpoint at :meth:`CaptureStore.close`
    report the file's errors.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        self._copying = threading.Lock()  # held by whoever runs a checkpoint of this store
        self._thread = threading.Thread(target=self._run, name="ecaptureq-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a checkpoint (requests made while one runs are served by one more)."""
        self._wanted.set()

    def checkpoint_on(self, conn: sqlite3.Connection) -> None:
        """Run a checkpoint on ``conn`` (the committing connection, between two commits), after the one this
        thread may be running: SQLite runs one checkpoint at a time and answers another with SQLITE_BUSY, so
        the committing thread's own checkpoint at the WAL's bound did nothing while this thread's ran, and
        under load (this thread behind the commits) the WAL grew past the bound (28 MB against 16)."""
        with self._copying:
            checkpoint(conn)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # the store's own durability for what it copies
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                self.checkpoint_on(conn)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        self._stopping = True
        self._wanted.set()
        self._thread.join()


def _check_before_writing(path: Path) -> None:
    """Refuse an existing file that is not a capture database, through a read-only connection, before
    the read-write one changes anything (even ``journal_mode=WAL`` rewrites the file's header)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {describe(exc)}") from None
    try:
        check_capture_database(conn, path, writing=True)
    finally:
        conn.close()


class CaptureStore:
    """A capture database open for recording. Not thread-safe: use it from one thread (or event loop).

    Parameters:
        path: the database file; created if missing, appended to if it exists.
        decode: also decode HTTP exchanges into the ``exchanges`` table.
        batch_size: flush by itself once this many rows are waiting.

    Raises:
        NotCaptureDatabase: the file is another program's database, or not SQLite (it is left untouched).
        StoreError: the file cannot be opened or created, or is read-only.
    """

    def __init__(self, path: Path, *, decode: bool = True, batch_size: int = 5000) -> None:
        self.path = path
        self.batch_size = batch_size
        self.stats = StoreStats()
        _check_before_writing(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # _Checkpointer does it, beside the commits
            # the WAL file is cut back whenever it starts over: its size is what it holds
            self._db.execute("PRAGMA journal_size_limit=0")
            add_payload_functions(self._db, protocol_text)  # a batch committed here, not by the process
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {describe(exc)}") from None
        try:
            initialise(self._db)
            self._exchange_base = self._db.execute("SELECT coalesce(max(id), 0) FROM exchanges").fetchone()[0]
        except (StoreError, sqlite3.Error) as exc:
            self._db.close()
            text = str(exc) if isinstance(exc, StoreError) else describe(exc)
            raise StoreError(f"{path}: {text}") from None
        self._decode = decode
        self._decoder = Decoder(body_limit=STORE_DECODE_LIMIT) if decode else None
        # A fleet collector's nodes each get their own decoder (their connection uuids may collide), and
        # their exchanges row ids from a counter.
        self._node_decoders: dict[str, Decoder] = {}
        self._node_exchange_ids: dict[tuple[str, int], int] = {}
        self._node_exchange_high: int = self._exchange_base
        self._delivered: list[tuple[int]] = []
        self._delivered_pending: set[int] = set()
        self._packets: list[tuple[Any, ...]] = []
        self._logs: list[tuple[Any, ...]] = []
        self._heartbeats: list[tuple[Any, ...]] = []
        # Exchanges to write, by row id: rendered at flush, so one written at its request and completed by
        # its response before the next flush is rendered once, not twice.
        self._exchanges: dict[int, tuple[Exchange, str | None]] = {}
        self._processes: list[tuple[Any, ...]] = []
        self._connection_id: int | None = None
        self._closed = False
        # With flush_in_background(), every write goes through this one thread, in order.
        self._writer: ThreadPoolExecutor | None = None
        self._failed: list[Batch] = []  # batches the writer thread could not commit, to retry first
        self._failed_lock = threading.Lock()
        self._wal = Path(f"{path}-wal")
        self._checkpointer: _Checkpointer | None = None
        self._committer: Committer | None = None  # started in the writer thread: see _ensure_committer
        self._use_committer = False  # set with the writer thread: see _writer_thread

    @property
    def pending(self) -> int:
        """Rows waiting for the next flush."""
        return (
            len(self._packets)
            + len(self._logs)
            + len(self._heartbeats)
            + len(self._exchanges)
            + len(self._delivered)
            + len(self._processes)
        )

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        if self._writer is not None:
            return self._writer.submit(self._execute, sql, params).result()
        return self._execute(sql, params)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        return int(cursor.lastrowid or 0)

    def connection_opened(self, url: str) -> None:
        """Record that a connection to ``url`` opened; later rows refer to it."""
        self.flush()
        self._connection_id = self._write(
            "INSERT INTO connections (url, opened_ns) VALUES (?, ?)", (url, time.time_ns())
        )

    def connection_closed(self, reason: str) -> None:
        """Record that the current connection ended, and why."""
        if self._connection_id is None:
            return
        self.flush()
        self._write(
            "UPDATE connections SET closed_ns = ?, close_reason = ? WHERE id = ?",
            (time.time_ns(), reason, self._connection_id),
        )
        self._connection_id = None

    def add(self, message: Message, node: str | None = None, key: int | None = None) -> None:
        """Buffer one message (flushing by itself once ``batch_size`` rows wait).

        ``node`` is the fleet node it came from (stored in the ``node`` columns; each node's events are
        decoded apart). ``key`` is an at-least-once source's message key, kept in ``delivered`` in the same
        transaction as the message, so that :meth:`delivered` tells a redelivery from a new message.
        """
        self.buffer(message, node, key)
        if self.pending >= self.batch_size:
            self.flush()

    def buffer(
        self,
        message: Message,
        node: str | None = None,
        key: int | None = None,
        received_ns: int | None = None,
    ) -> None:
        """Buffer one message (as :meth:`add`) and never flush: the caller flushes (see
        :meth:`flush_in_background`). ``received_ns`` is when it was received (default: now)."""
        now = time.time_ns() if received_ns is None else received_ns
        if key is not None:
            self._delivered.append((key,))
            self._delivered_pending.add(key)
        if isinstance(message, Event):
            self._packets.append((*packet_values(message), self._connection_id, now, node))
            self.stats.packets += 1
            self.stats.payload_bytes += len(message.payload)
            decoder = self._decoder if node is None else self._node_decoder(node)
            if decoder is not None:
                for item in decoder.feed(message):
                    if isinstance(item, RequestDone | ResponseDone):
                        self._queue_exchange(item.exchange, node)
        elif isinstance(message, RunLog):
            self._logs.append((self._connection_id, now, message.line, node))
            self.stats.logs += 1
            label = parse_process(message.line)
            if label is not None:  # ecaptureq tls names each process's cgroup and container
                row = (label.pid, label.comm, label.cgroup, label.container_id, self._connection_id, now)
                self._processes.append((*row, node))
            decoder = self._decoder if node is None else self._node_decoder(node)
            gap = parse_gap(message.line) if decoder is not None else None
            if gap is not None and decoder is not None:  # the exchange it damaged is incomplete
                for item in decoder.lost(gap):
                    if isinstance(item, RequestDone | ResponseDone):
                        self._queue_exchange(item.exchange, node)
        elif isinstance(message, Heartbeat):
            self._heartbeats.append(
                (self._connection_id, now, message.timestamp, message.count, message.message)
            )
            self.stats.heartbeats += 1

    def _node_decoder(self, node: str) -> Decoder | None:
        if not self._decode:
            return None
        decoder = self._node_decoders.get(node)
        if decoder is None:
            decoder = self._node_decoders[node] = Decoder(body_limit=STORE_DECODE_LIMIT)
        return decoder

    def delivered(self, key: int) -> bool:
        """Whether a message with this key was added (committed, or waiting for the next flush)."""
        if key in self._delivered_pending:
            return True
        row = self._db.execute("SELECT 1 FROM delivered WHERE key = ?", (key,)).fetchone()
        return row is not None

    def delivered_high(self) -> int:
        """The highest message key committed (0 when none)."""
        return int(self._db.execute("SELECT coalesce(max(key), 0) FROM delivered").fetchone()[0])

    def forget_delivered(self, through: int) -> None:
        """Drop the keys up to ``through`` (the source will never deliver them again)."""
        self._write("DELETE FROM delivered WHERE key <= ?", (through,))

    def _queue_exchange(self, ex: Exchange, node: str | None = None) -> None:
        # Written when its request is seen and again, replacing the row, when its response completes it.
        if node is None:
            row_id = self._exchange_base + ex.id
        else:
            row_id = self._node_exchange_ids.get((node, ex.id), 0)
            if not row_id:
                row_id = self._node_exchange_ids[node, ex.id] = self._next_exchange_id()
            if ex.complete:
                del self._node_exchange_ids[node, ex.id]
        if ex.complete:
            self.stats.exchanges += 1
        self._exchanges[row_id] = (ex, node)

    def _next_exchange_id(self) -> int:
        # Nodes' exchanges are numbered on from the rows the database had when it was opened.
        self._node_exchange_high += 1
        return self._node_exchange_high

    def take(self) -> Batch | None:
        """Move what is buffered into a batch (the batches that failed come first, in order); ``None``
        when nothing waits. Render its exchanges (:meth:`Batch.render`) in this thread, then
        :meth:`commit_in_background` it."""
        if not self.pending and not self._failed:
            return None
        with self._failed_lock:
            failed, self._failed = self._failed, []
        batch = Batch()
        for old in failed:
            batch.packets += old.packets
            batch.logs += old.logs
            batch.heartbeats += old.heartbeats
            batch.exchanges += old.exchanges
            batch.unrendered += old.unrendered
            batch.delivered += old.delivered
            batch.processes += old.processes
        batch.packets += self._packets
        batch.logs += self._logs
        batch.heartbeats += self._heartbeats
        batch.unrendered += [(i, ex, node) for i, (ex, node) in self._exchanges.items()]
        batch.delivered += self._delivered
        batch.processes += self._processes
        self._packets = []
        self._logs = []
        self._heartbeats = []
        self._exchanges = {}
        self._delivered = []
        self._processes = []
        return batch

    @staticmethod
    def _statements(batch: Batch) -> Work:
        """The statements that write a batch, each with its rows (those with none left out)."""
        work: Work = [
            (_INSERT_PACKET, batch.packets),
            (_INSERT_RUN_LOG, batch.logs),
            (_INSERT_PROCESS, batch.processes),
            (_INSERT_HEARTBEAT, batch.heartbeats),
            (_INSERT_EXCHANGE, batch.exchanges),
            (_INSERT_DELIVERED, batch.delivered),
        ]
        return [(sql, rows) for sql, rows in work if rows]

    def _commit(self, batch: Batch) -> None:
        """Write one batch in one transaction (by the committing process when there is one); on failure keep
        it to be retried first, and raise. A batch that comes after one that failed is kept after it, not
        written, and raises too: batches are written in the order they were taken (a later one replaces
        the rows of the exchanges an earlier one wrote)."""
        with self._failed_lock:
            if self._failed:
                self._failed.append(batch)
                raise StoreError(f"{self.path}: not written: an earlier batch could not be")
        work = self._statements(batch)
        self._ensure_committer()
        request = Committer.pack(work) if self._committer is not None else None
        try:
            if self._committer is not None and request is not None:
                self._committer.commit(request)  # and the process checkpoints after it, when due
                checkpoint = False
            else:
                self._commit_here(work)
                checkpoint = True
        except (sqlite3.Error, CommitterError) as exc:
            with self._failed_lock:
                self._failed.append(batch)
            error = exc if isinstance(exc, sqlite3.Error) else sqlite3.Error(exc.text)
            raise StoreError(f"{self.path}: {describe(error)}") from None
        # committed: delivered() finds these keys in the database from now on
        self._delivered_pending.difference_update(key for (key,) in batch.delivered)
        self.stats.flushes += 1
        if checkpoint:
            self._checkpoint_if_due()

    def _ensure_committer(self) -> None:
        """In the writer thread: start the committing process when there is none (it answers once it has
        opened the database), or replace one gone (killed). One that cannot start leaves the commits to
        this thread."""
        if self._use_committer and (self._committer is None or not self._committer.alive):
            if self._committer is not None:
                self._committer.close()
            try:
                self._committer = Committer(self.path)
            except (OSError, CommitterError):
                self._committer = None
                self._use_committer = False

    def _commit_here(self, work: Work) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            for sql, rows in work:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _checkpoint_if_due(self) -> None:
        """After a commit: have the WAL copied into the database once it holds enough (its file's size: with
        ``journal_size_limit=0`` SQLite empties it whenever it starts over)."""
        try:
            size = self._wal.stat().st_size
        except OSError:
            return
        if size >= CHECKPOINT_WAL_LIMIT:
            if self._checkpointer is not None:
                self._checkpointer.checkpoint_on(self._db)  # the bound: not skipped for the thread's
            else:
                checkpoint(self._db)
        elif size >= CHECKPOINT_WAL_BYTES:
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.request()

    def flush(self) -> None:
        """Write everything buffered in one transaction (after any background flush still running).

        Raises:
            StoreError: the write failed (disk full, read-only); the rows stay buffered, what was
                committed before stays in the file.
        """
        batch = self.take()
        if batch is None:
            return
        batch.render()
        if self._writer is not None:
            self._writer.submit(self._commit, batch).result()
        else:
            self._commit(batch)

    def flush_in_background(self) -> Future[None] | None:
        """Take what is buffered and commit it in the store's writer thread; return the commit's future
        (``None`` when nothing waits). The caller keeps buffering meanwhile. Commits, and every other write
        from then on, run in that one thread in the order they were asked for. A failed commit raises
        :class:`StoreError` from the future, and its rows stay buffered for the next flush."""
        batch = self.take()
        return None if batch is None else self.commit_in_background(batch)

    def commit_in_background(self, batch: Batch) -> Future[None]:
        """Commit a batch from :meth:`take` in the writer thread (its exchanges not rendered yet are rendered
        first, in this thread); as :meth:`flush_in_background`."""
        batch.render()
        return self._writer_thread().submit(self._commit, batch)

    def start_background(self) -> None:
        """Start the writer thread and its committing process now, which the first background commit would
        do: that commit then does not wait for the process to start (a long-running recorder calls this
        once, before it reads its source)."""
        self._writer_thread().submit(self._ensure_committer).result()

    def _writer_thread(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecaptureq-store")
            self._use_committer = True
        return self._writer

    def close(self) -> None:
        """Store what the decoder still holds (requests without responses), flush, and close."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._decoder is not None:
                for item in self._decoder.flush():
                    if isinstance(item, RequestDone | ResponseDone):
                        self._queue_exchange(item.exchange)
            for node, decoder in self._node_decoders.items():
                for item in decoder.flush():
                    if isinstance(item, RequestDone | ResponseDone):
                        self._queue_exchange(item.exchange, node)
            self.flush()
            # every row this store wrote has an id above the highest the database had when it was opened
            self.stats.exchange_rows = self._db.execute(
                "SELECT count(*) FROM exchanges WHERE id > ?", (self._exchange_base,)
            ).fetchone()[0]
            self._stop_helpers()  # before the last checkpoint, which none of them may be writing beside
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        finally:
            self._stop_helpers()
            self._db.close()

    def _stop_helpers(self) -> None:
        """Stop the writer thread (after the commits it was asked for), the committing process and the
        checkpoint thread."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

"""Write messages into a capture database durably: WAL, batched transactions, decoded exchanges.

:class:`CaptureStore` buffers rows in memory and writes them in one transaction per :meth:`flush`; the
caller flushes at least every ``flush_interval`` seconds, so a crash (even ``kill -9``) loses at most the
last batch. In WAL mode, readers (``ecaptureq query``) see every committed batch while recording goes on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecaptureq.decode.decoder import Decoder
from ecaptureq.decode.model import Exchange, HttpMessage
from ecaptureq.protocol import Event, Heartbeat, Message, RunLog
from ecaptureq.protocol.gap import parse_gap
from ecaptureq.protocol.process import parse_process
from ecaptureq.store.schema import StoreError, describe, initialise, packet_row

_INSERT_PACKET = (
    "INSERT INTO packets (timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length,"
    " is_binary, payload_utf8, payload_binary, connection_id, received_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EXCHANGE_COLUMNS = (
    "id, connection, protocol, stream_id, pid, pname, src_ip, src_port, dst_ip, dst_port, started_ns,"
    " ended_ns, latency, method, url, host, path, status, request_headers, response_headers,"
    " request_content_type, response_content_type, request_body, response_body, request_body_text,"
    " response_body_text, request_size, response_size, complete, errors, detail"
)
_INSERT_EXCHANGE = f"INSERT OR REPLACE INTO exchanges ({_EXCHANGE_COLUMNS}) VALUES ({', '.join('?' * 31)})"


@dataclass
class StoreStats:
    """What a store has written since it was opened."""

    packets: int = 0
    payload_bytes: int = 0
    logs: int = 0
    heartbeats: int = 0
    exchanges: int = 0  # completed (request and response)
    flushes: int = 0


def exchange_row(row_id: int, ex: Exchange) -> tuple[Any, ...]:
    """The ``exchanges`` row of an exchange (see the schema for the columns)."""
    req, resp = ex.request, ex.response

    def headers(msg: HttpMessage | None) -> str | None:
        return json.dumps([[k, v] for k, v in msg.headers]) if msg else None

    errors = [*(req.errors if req else []), *(resp.errors if resp else [])]
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
        req.method if req else None,
        (req.url or req.path) if req else None,
        req.host if req else None,
        req.path if req else None,
        resp.status if resp else None,
        headers(req),
        headers(resp),
        req.content_type if req else None,
        resp.content_type if resp else None,
        req.body if req else None,
        resp.body if resp else None,
        req.body_text if req else None,
        resp.body_text if resp else None,
        req.body_size if req else None,
        resp.body_size if resp else None,
        int(ex.complete),
        json.dumps(errors) if errors else None,
        json.dumps(ex.to_dict()),
    )


class CaptureStore:
    """A capture database open for recording. Not thread-safe: use it from one thread (or event loop).

    Parameters:
        path: the database file; created if missing, appended to if it exists.
        decode: also decode HTTP exchanges into the ``exchanges`` table.
        batch_size: flush by itself once this many rows are waiting.

    Raises:
        StoreError: the file cannot be opened or created, is not a capture database, or is read-only.
    """

    def __init__(self, path: Path, *, decode: bool = True, batch_size: int = 5000) -> None:
        self.path = path
        self.batch_size = batch_size
        self.stats = StoreStats()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {describe(exc)}") from None
        try:
            initialise(self._db)
            self._exchange_base = self._db.execute("SELECT coalesce(max(id), 0) FROM exchanges").fetchone()[0]
        except (StoreError, sqlite3.Error) as exc:
            self._db.close()
            text = str(exc) if isinstance(exc, StoreError) else describe(exc)
            raise StoreError(f"{path}: {text}") from None
        self._decoder = Decoder() if decode else None
        self._packets: list[tuple[Any, ...]] = []
        self._logs: list[tuple[Any, ...]] = []
        self._heartbeats: list[tuple[Any, ...]] = []
        self._processes: list[tuple[Any, ...]] = []
        self._exchanges: dict[int, tuple[Any, ...]] = {}
        self._connection_id: int | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Rows waiting for the next flush."""
        waiting = len(self._packets) + len(self._logs) + len(self._heartbeats) + len(self._exchanges)
        return waiting + len(self._processes)

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
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

    def add(self, message: Message) -> None:
        """Buffer one message (flushing by itself once ``batch_size`` rows wait)."""
        now = time.time_ns()
        if isinstance(message, Event):
            self._packets.append((*packet_row(message), self._connection_id, now))
            self.stats.packets += 1
            self.stats.payload_bytes += len(message.payload)
            if self._decoder is not None:
                for item in self._decoder.feed(message):
                    if item.exchange is not None:
                        self._queue_exchange(item.exchange)
        elif isinstance(message, RunLog):
            self._logs.append((self._connection_id, now, message.line))
            self.stats.logs += 1
            label = parse_process(message.line)
            if label is not None:  # ecaptureq tls names each process's cgroup and container
                row = (label.pid, label.comm, label.cgroup, label.container_id, self._connection_id, now)
                self._processes.append(row)
            gap = parse_gap(message.line) if self._decoder is not None else None
            if gap is not None and self._decoder is not None:  # the exchange it damaged is incomplete
                for item in self._decoder.lost(gap):
                    if item.exchange is not None:
                        self._queue_exchange(item.exchange)
        elif isinstance(message, Heartbeat):
            self._heartbeats.append(
                (self._connection_id, now, message.timestamp, message.count, message.message)
            )
            self.stats.heartbeats += 1
        if self.pending >= self.batch_size:
            self.flush()

    def _queue_exchange(self, ex: Exchange) -> None:
        # Written when its request is seen and again, replacing the row, when its response completes it.
        row_id = self._exchange_base + ex.id
        if ex.complete:
            self.stats.exchanges += 1
        self._exchanges[row_id] = exchange_row(row_id, ex)

    def flush(self) -> None:
        """Write everything buffered in one transaction.

        Raises:
            StoreError: the write failed (disk full, read-only); the rows stay buffered, what was
                committed before stays in the file.
        """
        if not self.pending:
            return
        db = self._db
        try:
            db.execute("BEGIN")
            if self._packets:
                db.executemany(_INSERT_PACKET, self._packets)
            if self._logs:
                db.executemany(
                    "INSERT INTO run_logs (connection_id, received_ns, line) VALUES (?, ?, ?)", self._logs
                )
            if self._processes:
                db.executemany(
                    "INSERT INTO processes (pid, comm, cgroup, container_id, connection_id, received_ns)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    self._processes,
                )
            if self._heartbeats:
                db.executemany(
                    "INSERT INTO heartbeats (connection_id, received_ns, timestamp, count, message)"
                    " VALUES (?, ?, ?, ?, ?)",
                    self._heartbeats,
                )
            if self._exchanges:
                db.executemany(_INSERT_EXCHANGE, list(self._exchanges.values()))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        self._packets.clear()
        self._logs.clear()
        self._heartbeats.clear()
        self._processes.clear()
        self._exchanges.clear()
        self.stats.flushes += 1

    def close(self) -> None:
        """Store what the decoder still holds (requests without responses), flush, and close."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._decoder is not None:
                for item in self._decoder.flush():
                    if item.exchange is not None:
                        self._queue_exchange(item.exchange)
            self.flush()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        finally:
            self._db.close()

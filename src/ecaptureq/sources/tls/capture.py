"""Capture OpenSSL plaintext with eBPF and publish it into a :class:`~ecaptureq.sources.base.Sink`.

:class:`TlsCapture` loads ``sslsniff.bpf.o`` through libbpf, hooks ``SSL_write``, ``SSL_read``,
``SSL_write_ex`` and ``SSL_read_ex`` of one libssl, and drains the ring buffer on a thread (straight
from its shared memory, :mod:`~ecaptureq.sources.tls.ringbuf`). Records (at most 16 KiB of plaintext
each) go through an :class:`Aggregator`, which joins consecutive chunks of one connection and
direction into events the way eCapture does, never drops a byte, and names every byte range the
kernel side could not deliver (a :class:`~ecaptureq.protocol.gap.CaptureGap`) instead of joining the
bytes around it.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from ecaptureq.decode.classify import classify_payload
from ecaptureq.protocol import Event, run_log_line
from ecaptureq.protocol.banner import startup_banner
from ecaptureq.protocol.gap import CaptureGap
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import governor, libbpf
from ecaptureq.sources.tls.discover import OPENSSL_FUNCTIONS
from ecaptureq.sources.tls.errors import BpfUnsupportedError, NoPrivilegeError
from ecaptureq.sources.tls.hooks import (
    LIB_EVENTS_BYTES,
    Hooker,
    LabellingSink,
    ProcessInfo,
    attach_everything,
    comm_text,
)
from ecaptureq.sources.tls.locate import SocketResolver
from ecaptureq.sources.tls.ringbuf import DEFAULT_BUFFER_MIB, RingReader

MAX_EVENT_PAYLOAD: Final = 16384
"""The most plaintext bytes one published event carries (eCapture's cap); more is split, never cut."""

DEFAULT_IDLE_FLUSH: Final = 0.05
"""Seconds without a new chunk after which a connection's pending bytes are published."""

HOOKED_FUNCTIONS: Final = OPENSSL_FUNCTIONS
"""The libssl functions hooked (entry and return)."""

_HELPERS: Final = ("sys_enter",)

POLL_INTERVAL: Final = 0.02
"""Seconds between drains when no wake-up came (the kernel wakes the consumer only for >= 256 KiB)."""

# struct ssl_event in bpf/sslsniff.h, up to data[].
_HEADER: Final = struct.Struct("<QQQIIIIiHHBBBB16s16s16s")
# struct conn_state in bpf/sslsniff.bpf.c: the socket (48 bytes), then seq[2].
_CONN_STATE: Final = struct.Struct("<48xQQ")
_STAT_NAMES: Final = (
    "chunks",
    "bytes",
    "drop_chunks",
    "drop_bytes",
    "oversized",
    "oversized_bytes",
    "read_errors",
)
_STAT_SLOTS: Final = 8


class _Config(ctypes.Structure):
    # struct config in bpf/sslsniff.h
    _fields_ = (
        ("target_pid", ctypes.c_uint32),
        ("target_uid", ctypes.c_uint32),
        ("exclude_pid", ctypes.c_uint32),
        ("target_port", ctypes.c_uint16),
        ("filter_pid", ctypes.c_uint8),
        ("filter_uid", ctypes.c_uint8),
        ("filter_comm", ctypes.c_uint8),
        ("filter_port", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 2),
        ("target_comm", ctypes.c_char * 16),
    )


def bpf_object_path() -> str:
    """Path of the compiled eBPF object shipped in this package."""
    return str(resources.files("ecaptureq.sources.tls").joinpath("sslsniff.bpf.o"))


BPF_DIRECTION_WRITE = 0
"""The BPF record's ``direction`` for ``SSL_write`` (1 is ``SSL_read``). The uuid carries eCapture's
numbering instead (:data:`~ecaptureq.decode.meta.DATA_TYPE_WRITE` = 1, ``DATA_TYPE_READ`` = 0)."""


def boot_offset_ns() -> int:
    """Nanoseconds to add to a ``CLOCK_BOOTTIME`` stamp (``bpf_ktime_get_boot_ns``) to get Unix epoch."""
    best: tuple[int, int] | None = None
    for _ in range(3):  # the tightest of a few samples
        a = time.time_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        c = time.time_ns()
        if best is None or c - a < best[0]:
            best = (c - a, (a + c) // 2 - b)
    assert best is not None
    return best[1]


@dataclass(slots=True)
class Chunk:
    """One ring-buffer record: part (or all) of the plaintext of one call."""

    ts_boot_ns: int
    conn: int
    """The connection inside the process (the ``SSL *``)."""
    seq: int
    """Offset of ``data`` in the connection's stream in this direction, lost bytes included."""
    pid: int
    tid: int
    uid: int
    fd: int
    direction: int
    comm: str
    data: bytes
    src: tuple[str, int] | None = None
    dst: tuple[str, int] | None = None

    @classmethod
    def parse(cls, record: bytes | memoryview) -> Chunk:
        """Decode a ``struct ssl_event`` record (the payload is copied out of ``record``)."""
        (ts, conn, seq, pid, tid, uid, length, fd, sport, dport, direction, family, _flags, _lib,
         saddr, daddr, comm) = _HEADER.unpack_from(record)  # fmt: skip
        src = dst = None
        if family == 2 or family == 10:
            ips = _IP_CACHE.get((saddr, daddr))
            if ips is None:
                ips = _ips(family, saddr, daddr)
            src, dst = (ips[0], sport), (ips[1], dport)
        data = bytes(record[_HEADER.size : _HEADER.size + length])
        name = _COMM_CACHE.get(comm)
        if name is None:
            name = comm_text(comm)
            if len(_COMM_CACHE) > 4096:
                _COMM_CACHE.clear()
            _COMM_CACHE[comm] = name
        return cls(ts, conn, seq, pid, tid, uid, fd, direction, name, data, src, dst)


_COMM_CACHE: dict[bytes, str] = {}
_IP_CACHE: dict[tuple[bytes, bytes], tuple[str, str]] = {}


def _ips(family: int, saddr: bytes, daddr: bytes) -> tuple[str, str]:
    """The text of a record's two addresses (cached: a connection's records all carry the same)."""
    texts = []
    for raw in (saddr, daddr):
        if family == 2:
            texts.append(str(ipaddress.IPv4Address(raw[:4])))
        else:
            v6 = ipaddress.IPv6Address(raw)
            texts.append(str(v6.ipv4_mapped or v6))
    if len(_IP_CACHE) > 4096:
        _IP_CACHE.clear()
    # IPv4 leaves bytes 4-15 zero, so the raw bytes alone tell the families apart.
    _IP_CACHE[(saddr, daddr)] = ips = (texts[0], texts[1])
    return ips


@dataclass(slots=True)
class _Pending:
    pid: int
    tid: int
    fd: int
    direction: int
    comm: str
    first_ts: int
    last_seen: float
    src: tuple[str, int] | None
    dst: tuple[str, int] | None
    buf: bytearray = field(default_factory=bytearray)
    uuid: str = ""
    """eCapture's ``pid_tid_comm_fd_datatype`` (data_type 1 for writes, 0 for reads)."""

    def __post_init__(self) -> None:
        data_type = DATA_TYPE_WRITE if self.direction == BPF_DIRECTION_WRITE else DATA_TYPE_READ
        self.uuid = format_uuid(self.pid, self.tid, self.comm, self.fd, data_type)


class Aggregator:
    """Joins consecutive chunks of one connection and direction into events of at most 16 KiB.

    A connection is ``(pid, SSL *)``. Its pending bytes are published when the direction (or thread,
    or fd) changes, when they reach ``cap`` bytes, after ``idle`` seconds without a new chunk, and by
    :meth:`flush_all`. Bytes are never dropped: a chunk that does not fit is split across events.

    Each chunk's ``seq`` says where its bytes sit in the connection's stream. When it is beyond what
    the previous chunk of that stream ended at, the bytes in between were lost: the pending bytes are
    published first (never joined across the hole) and a :class:`CaptureGap` naming the stream's uuid
    and the byte range comes out in order, between the events before and after it.
    """

    MAX_STREAMS: Final = 1 << 17
    """Streams whose next expected offset is remembered; beyond that the table starts again."""

    def __init__(
        self,
        boot_offset: int,
        *,
        cap: int = MAX_EVENT_PAYLOAD,
        idle: float = DEFAULT_IDLE_FLUSH,
        resolver: SocketResolver | None = None,
    ) -> None:
        self.boot_offset = boot_offset
        self.cap = cap
        self.idle = idle
        self.resolver = resolver or SocketResolver()
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._next: dict[tuple[int, int, int], int] = {}
        self._uuids: dict[tuple[int, int, int], str] = {}
        self._forgot = False
        self.gaps = 0
        """Holes found so far."""
        self.gap_bytes = 0
        """Bytes in those holes."""

    def feed(self, chunk: Chunk, now: float | None = None) -> list[Event | CaptureGap]:
        """Add one chunk; return the events it completes and the gap it reveals, in order."""
        now = time.monotonic() if now is None else now
        out: list[Event | CaptureGap] = []
        key = (chunk.pid, chunk.conn)
        stream = (chunk.pid, chunk.conn, chunk.direction)
        expected = self._next.get(stream)
        if expected is None and not self._forgot:
            expected = 0  # the kernel numbers a stream from the first call it sees
        pending = self._pending.get(key)
        if expected is not None and chunk.seq > expected:
            if pending is not None:
                out.append(self._event(pending))
                del self._pending[key]
                pending = None
            gap = CaptureGap(self._uuid(chunk), expected, chunk.seq)
            self.gaps += 1
            self.gap_bytes += gap.lost
            out.append(gap)
        if len(self._next) >= self.MAX_STREAMS:
            self._next.clear()
            self._uuids.clear()
            self._forgot = True
        self._next[stream] = chunk.seq + len(chunk.data)
        if pending is not None and (
            pending.direction != chunk.direction or pending.tid != chunk.tid or pending.fd != chunk.fd
        ):
            out.append(self._event(pending))
            pending = None
        if pending is None:
            src, dst = chunk.src, chunk.dst
            if src is None and chunk.fd >= 0:
                found = self.resolver.lookup(chunk.pid, chunk.fd)
                if found:
                    src, dst = (found[0], found[1]), (found[2], found[3])
            pending = _Pending(
                chunk.pid, chunk.tid, chunk.fd, chunk.direction, chunk.comm, chunk.ts_boot_ns, now, src, dst
            )
            self._pending[key] = pending
            self._uuids[stream] = pending.uuid
        data = chunk.data
        room = self.cap - len(pending.buf)
        if len(data) < room:
            pending.buf += data
        elif len(data) == self.cap and not pending.buf:
            # A full record on its own (a large call's chunk): it is the event, no copy.
            out.append(self._event(pending, data))
            pending.first_ts = chunk.ts_boot_ns
        else:
            view = memoryview(data)
            while view:
                room = self.cap - len(pending.buf)
                pending.buf += view[:room]
                view = view[room:]
                if len(pending.buf) >= self.cap:
                    out.append(self._event(pending))
                    pending.buf = bytearray()
                    pending.first_ts = chunk.ts_boot_ns
        pending.last_seen = now
        if not pending.buf:
            del self._pending[key]
        return out

    def streams(self) -> dict[tuple[int, int, int], int]:
        """Each stream seen ``(pid, conn, direction)`` and the offset its next byte should have."""
        return dict(self._next)

    def tail_gap(self, stream: tuple[int, int, int], produced: int) -> CaptureGap | None:
        """The gap at the end of ``stream`` when the kernel counted ``produced`` bytes in it."""
        expected = self._next.get(stream)
        if expected is None or produced <= expected:
            return None
        self._next[stream] = produced
        gap = CaptureGap(self._uuids.get(stream, ""), expected, produced)
        self.gaps += 1
        self.gap_bytes += gap.lost
        return gap

    def _uuid(self, chunk: Chunk) -> str:
        data_type = DATA_TYPE_WRITE if chunk.direction == BPF_DIRECTION_WRITE else DATA_TYPE_READ
        return format_uuid(chunk.pid, chunk.tid, chunk.comm, chunk.fd, data_type)

    def flush_idle(self, now: float | None = None) -> list[Event]:
        """Publish connections that saw no chunk for ``idle`` seconds."""
        now = time.monotonic() if now is None else now
        out = []
        for key, pending in list(self._pending.items()):
            if now - pending.last_seen >= self.idle:
                del self._pending[key]
                out.append(self._event(pending))
        return out

    def flush_all(self) -> list[Event]:
        """Publish everything pending."""
        out = [self._event(p) for p in self._pending.values() if p.buf]
        self._pending.clear()
        return out

    def _event(self, p: _Pending, payload: bytes | None = None) -> Event:
        if payload is None:
            payload = bytes(p.buf)
        src_ip, src_port = p.src or ("", 0)
        dst_ip, dst_port = p.dst or ("", 0)
        return Event(
            timestamp=p.first_ts + self.boot_offset,
            uuid=p.uuid,
            src_ip=src_ip,
            src_port=src_port,
            dst_ip=dst_ip,
            dst_port=dst_port,
            pid=p.pid,
            pname=p.comm,
            type=classify_payload(payload, is_write=p.direction == BPF_DIRECTION_WRITE),
            length=len(payload),
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """What the eBPF side and the aggregator counted so far."""

    chunks: int = 0
    """Ring-buffer records delivered by the kernel side."""
    bytes: int = 0
    """Plaintext bytes in those records."""
    drop_chunks: int = 0
    """Records lost because the ring buffer was full."""
    drop_bytes: int = 0
    """Plaintext bytes in the lost records."""
    oversized: int = 0
    """SSL calls larger than the 64 MiB the eBPF side copies per call."""
    oversized_bytes: int = 0
    """Bytes of those calls beyond 64 MiB (not captured)."""
    read_errors: int = 0
    """Records whose user buffer could not be read (payload is zeros)."""
    events: int = 0
    """Events published into the sink."""
    gaps: int = 0
    """Holes in connections' streams announced (each a ``capture lost N bytes`` run-log line)."""
    gap_bytes: int = 0
    """Bytes in those holes."""


class TlsCapture:
    """Hook one libssl with eBPF and publish its plaintext into ``sink`` until :meth:`stop`.

    >>> with TlsCapture(sink, libssl="/lib/x86_64-linux-gnu/libssl.so.3") as cap:  # doctest: +SKIP
    ...     time.sleep(10)

    ``pid``/``uid``/``comm``/``port`` restrict the capture in the kernel (to one process, user, command
    name, or TCP port at either end), so unwanted bytes are never copied; the capturing process itself
    is always excluded. ``buffer_size`` is the ring buffer's size in bytes (a power of two).
    ``on_batch`` is called (on the polling thread) after each round of publishing (a drained batch, idle
    flushes, reports), e.g. to flush a buffered sink once per round rather than once per event.
    ``ring_full_advice`` ends the run-log line that reports records lost to a full ring buffer (the
    command line names its own option there).
    :meth:`start` raises a :class:`~ecaptureq.sources.tls.errors.CaptureError`
    subclass when it cannot start, after undoing whatever it had set up.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        libssl: str | Sequence[str] | None = None,
        pid: int | None = None,
        uid: int | None = None,
        comm: str | None = None,
        port: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_MIB << 20,
        object_path: str | None = None,
        idle_flush: float = DEFAULT_IDLE_FLUSH,
        on_batch: Callable[[], None] | None = None,
        ring_full_advice: str = "try a larger ring buffer",
    ) -> None:
        if buffer_size < 4096 or buffer_size & (buffer_size - 1):
            raise ValueError(f"buffer_size must be a power of two of at least 4096 bytes, not {buffer_size}")
        if comm is not None and not 0 < len(comm.encode()) < 16:
            raise ValueError(f"comm must be 1 to 15 bytes (the kernel's TASK_COMM_LEN), not {comm!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be 1 to 65535, not {port}")
        self.sink = sink
        self.libssl = libssl
        """Only these files (``--libssl``); ``None``: every TLS library found, and new ones (exec watcher)."""
        self.hooker: Hooker | None = None
        self.pid = pid
        self.uid = uid
        self.comm = comm
        self.port = port
        self.buffer_size = buffer_size
        self.on_batch = on_batch
        self.ring_full_advice = ring_full_advice
        self.object_path = object_path or bpf_object_path()
        self.idle_flush = idle_flush
        self.hooked: list[str] = []
        self._obj: libbpf.BpfObject | None = None
        self._links: list[libbpf.Link] = []
        self._ring: RingReader | None = None
        self._stats_fd = -1
        self._conns_fd = -1
        self._thread: threading.Thread | None = None
        self._governor: subprocess.Popen[bytes] | None = None
        self._governor_pipe = -1
        self._drain_tid = 0
        self._drain_started = threading.Event()
        self._stop = threading.Event()
        self._events = 0
        self._reported = CaptureStats()
        self._errors: list[str] = []
        self._agg = Aggregator(boot_offset_ns(), idle=idle_flush)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load, attach and start polling; publishes the startup run-log lines."""
        if os.geteuid() != 0:
            raise NoPrivilegeError("must run as root (eBPF uprobes need CAP_BPF and CAP_PERFMON)")
        if not os.path.exists("/sys/kernel/btf/vmlinux"):
            raise BpfUnsupportedError("kernel has no BTF (/sys/kernel/btf/vmlinux): eBPF CO-RE unsupported")
        try:
            self._load_and_attach()
        except BaseException:
            self._detach()
            raise
        self._thread = threading.Thread(target=self._run, name="ecaptureq-tls-poll", daemon=True)
        self._thread.start()
        self._start_governor()

    def _start_governor(self) -> None:
        """Start the process that sets the drain thread's priority (:mod:`.governor`); without it (it
        could not start) the thread keeps an ordinary priority."""
        assert self._obj is not None
        if not self._drain_started.wait(10):
            return  # no drain thread to govern (its tid is not known)
        map_fd = self._obj.map_fd("events")
        until_r, self._governor_pipe = os.pipe()
        try:
            self._governor = subprocess.Popen(
                [sys.executable, "-I", "-S", governor.__file__,
                 str(map_fd), str(self.buffer_size), str(self._drain_tid), str(until_r)],
                pass_fds=(map_fd, until_r), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            self.sink.publish_log(
                run_log_line(level="WRN", message=f"drain priority governor not started: {exc}")
            )
        finally:
            os.close(until_r)

    def _load_and_attach(self) -> None:
        try:
            libbpf.load_library()
        except libbpf.LibbpfError as exc:
            raise BpfUnsupportedError(str(exc)) from None
        self.sink.publish_log(run_log_line(f"libbpf version={libbpf.version()}"))
        try:
            self._obj = libbpf.BpfObject(self.object_path)
            self._obj.set_max_entries("events", self.buffer_size)
            self._obj.set_max_entries("lib_events", LIB_EVENTS_BYTES)
            self._obj.load()
        except libbpf.LibbpfError as exc:
            raise self._bpf_error("cannot load the eBPF program", exc) from None
        obj = self._obj
        cfg = _Config(exclude_pid=os.getpid())
        if self.pid is not None:
            cfg.target_pid, cfg.filter_pid = self.pid, 1
        if self.uid is not None:
            cfg.target_uid, cfg.filter_uid = self.uid, 1
        if self.comm is not None:
            cfg.target_comm, cfg.filter_comm = self.comm.encode(), 1
        if self.port is not None:
            cfg.target_port, cfg.filter_port = self.port, 1
        libbpf.map_update(obj.map_fd("config"), ctypes.c_uint32(0), cfg)
        self._stats_fd = obj.map_fd("stats")
        self._conns_fd = obj.map_fd("conns")

        self.hooker = attach_everything(obj, self.sink.publish_log, self.libssl, pid=self.pid, uid=self.uid)
        self.hooked = sorted({f for functions in self.hooker.hooked.values() for f in functions})
        self.sink = LabellingSink(self.sink, self.hooker.processes)  # each process's cgroup, once
        for program in _HELPERS:
            try:
                self._links.append(obj.attach(program))
            except libbpf.LibbpfError as exc:
                self.sink.publish_log(
                    run_log_line(
                        level="WRN", message=f"{program} not attached (fd/4-tuple may be missing): {exc}"
                    )
                )
        libbpf.take_messages()
        try:
            self._ring = RingReader(obj.map_fd("events"), self.buffer_size)
        except (OSError, ValueError) as exc:
            raise BpfUnsupportedError(f"cannot map the ring buffer: {exc}") from None
        self.hooker.start_watcher()
        if self.pid is not None:
            self.sink.publish_log(run_log_line(f"target PID={self.pid}"))
        if self.uid is not None:
            self.sink.publish_log(run_log_line(f"target UID={self.uid}"))
        if self.comm is not None:
            self.sink.publish_log(run_log_line(f"target comm={self.comm}"))
        if self.port is not None:
            self.sink.publish_log(run_log_line(f"target port={self.port}"))
        self.sink.publish_log(run_log_line(f"ring buffer={self.buffer_size >> 20} MiB"))

    def _bpf_error(self, what: str, exc: libbpf.LibbpfError) -> Exception:
        detail = [m for m in libbpf.take_messages() if m.strip()]
        hint = f" ({detail[-1]})" if detail else ""
        if exc.errno in (errno.EPERM, errno.EACCES):
            return NoPrivilegeError(f"{what}: {exc.strerror}{hint}")
        return BpfUnsupportedError(f"{what}: {exc.strerror}{hint}")

    def stop(self) -> None:
        """Stop polling, detach every probe, publish what is pending (gaps included) and the final
        counts (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._governor_pipe >= 0:
            os.close(self._governor_pipe)  # the governor's signal to end
            self._governor_pipe = -1
        if self._governor is not None:
            try:
                self._governor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._governor.kill()
                self._governor.wait()
            self._governor = None
        for link in self._links:  # no producer left: what the ring holds is all there will be
            link.destroy()
        self._links.clear()
        if self._ring is not None:
            self._drain_all()
            self._publish(self._agg.flush_all())
            self._publish(self._tail_gaps())
            self._report(final=True)
        self._detach()

    def _drain_all(self) -> None:
        assert self._ring is not None
        while self._ring.drain(self._on_record):
            pass

    def _tail_gaps(self) -> list[Event | CaptureGap]:
        """Gaps at the end of streams: bytes the kernel counted after the last record delivered."""
        if self._conns_fd < 0 or self._agg.gap_bytes + self._lost_total() == 0:
            return []
        out: list[Event | CaptureGap] = []
        value = ctypes.create_string_buffer(_CONN_STATE.size)
        for (pid, conn, direction), _expected in self._agg.streams().items():
            key = ctypes.c_uint64(((pid << 32) ^ conn) & 0xFFFFFFFFFFFFFFFF)
            try:
                libbpf.map_lookup(self._conns_fd, key, value)
            except libbpf.LibbpfError:
                continue
            produced = _CONN_STATE.unpack_from(value.raw)[direction & 1]
            gap = self._agg.tail_gap((pid, conn, direction), produced)
            if gap is not None:
                out.append(gap)
        return out

    def _lost_total(self) -> int:
        now = self.stats
        return now.drop_bytes + now.oversized_bytes

    def _detach(self) -> None:
        if self.hooker is not None:
            self.hooker.stop()
        for link in self._links:
            link.destroy()
        self._links.clear()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> TlsCapture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process_info(self, pid: int) -> ProcessInfo | None:
        """The cgroup and container id of ``pid`` (kept from its exec when it has exited), if known."""
        return self.hooker.processes.get(pid) if self.hooker else None

    def ring_fill(self) -> float:
        """How full the ring buffer is right now, 0.0 to 1.0 (0 when not capturing)."""
        ring = self._ring
        return ring.pending() / ring.size if ring is not None else 0.0

    @property
    def attached(self) -> int:
        """How many probes are attached right now."""
        return len(self._links) + (len(self.hooker.links) if self.hooker else 0)

    # -- polling ---------------------------------------------------------------------------------

    def _on_record(self, record: memoryview) -> None:
        try:
            self._publish(self._agg.feed(Chunk.parse(record)))
        except Exception as exc:  # never let one bad record kill the poll loop
            self._errors.append(repr(exc))

    def _publish(self, items: list[Event] | list[Event | CaptureGap]) -> None:
        for item in items:
            if isinstance(item, Event):
                self.sink.publish_event(item)
                self._events += 1
            else:
                self.sink.publish_log(item.log_line())

    def _run(self) -> None:
        ring = self._ring
        assert ring is not None
        self._drain_tid = threading.get_native_id()
        self._drain_started.set()
        next_report = time.monotonic() + 2.0
        next_idle = 0.0
        while not self._stop.is_set():
            # Records below the kernel's wake-up threshold raise no epoll event: the timeout finds them.
            if not ring.drain(self._on_record):
                ring.wait(POLL_INTERVAL)
            now = time.monotonic()
            if now >= next_idle:
                next_idle = now + self.idle_flush / 2
                self._publish(self._agg.flush_idle(now))
            if self._errors:
                errors, self._errors = self._errors, []
                self.sink.publish_log(
                    run_log_line(level="WRN", message=f"{len(errors)} bad records, first: {errors[0]}")
                )
            if now >= next_report:
                next_report = now + 2.0
                self._report(final=False)
            if self.on_batch is not None:
                self.on_batch()

    @property
    def stats(self) -> CaptureStats:
        """Current counts, a new snapshot at each read (reads the eBPF ``stats`` map)."""
        values = [0] * _STAT_SLOTS
        if self._stats_fd >= 0 and self._obj is not None:
            for i in range(len(_STAT_NAMES)):
                value = ctypes.c_uint64(0)
                try:
                    libbpf.map_lookup(self._stats_fd, ctypes.c_uint32(i), value)
                except libbpf.LibbpfError:
                    continue
                values[i] = value.value
        else:
            r = self._reported
            values[: len(_STAT_NAMES)] = [getattr(r, n) for n in _STAT_NAMES]
        return CaptureStats(
            **dict(zip(_STAT_NAMES, values, strict=False)),
            events=self._events,
            gaps=self._agg.gaps,
            gap_bytes=self._agg.gap_bytes,
        )

    def _report(self, *, final: bool) -> None:
        now = self.stats
        last = self._reported
        if now.drop_chunks > last.drop_chunks:
            self.sink.publish_log(
                run_log_line(
                    level="WRN",
                    message=f"ring buffer full: lost {now.drop_chunks - last.drop_chunks} records "
                    f"({now.drop_bytes - last.drop_bytes} bytes); total lost {now.drop_chunks} "
                    f"(each connection's hole is named by a 'capture lost' line; {self.ring_full_advice})",
                )
            )
        if now.oversized > last.oversized:
            self.sink.publish_log(
                run_log_line(
                    level="WRN",
                    message=f"{now.oversized - last.oversized} SSL calls over 64 MiB: "
                    f"{now.oversized_bytes - last.oversized_bytes} bytes beyond 64 MiB not captured "
                    "(each connection's hole is named by a 'capture lost' line)",
                )
            )
        if now.read_errors > last.read_errors:
            self.sink.publish_log(
                run_log_line(
                    level="WRN",
                    message=f"{now.read_errors - last.read_errors} records with unreadable user memory",
                )
            )
        self._reported = now
        if final:
            self.sink.publish_log(
                run_log_line(
                    f"capture stopped: events={now.events} records={now.chunks} bytes={now.bytes} "
                    f"lost_records={now.drop_chunks} lost_bytes={now.drop_bytes} "
                    f"oversized_calls={now.oversized} read_errors={now.read_errors} "
                    f"gaps={now.gaps} gap_bytes={now.gap_bytes}",
                )
            )


def banner(listen_url: str | None = None) -> list[str]:
    """The startup banner of a capture (:func:`~ecaptureq.protocol.banner.startup_banner`) with eCapture's
    kernel and pid lines, and the listen URL when serving."""
    uname = platform.uname()
    details = [f"Kernel Info={uname.release} {uname.machine}", f"Pid Info={os.getpid()}"]
    return startup_banner("tls", listen_url=listen_url, details=details)

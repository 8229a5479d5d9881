"""Capture OpenSSL plaintext with eBPF and publish it into a :class:`~ecaptureq.sources.base.Sink`.

:class:`TlsCapture` loads ``sslsniff.bpf.o`` through libbpf, hooks ``SSL_write``, ``SSL_read``,
``SSL_write_ex`` and ``SSL_read_ex`` of one libssl, and polls the ring buffer on a thread. Records
(at most 16 KiB of plaintext each) go through an :class:`Aggregator`, which joins consecutive chunks of
one connection and direction into events the way eCapture does, and never drops a byte.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import platform
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from ecaptureq import __version__
from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.meta import DATA_TYPE_READ, DATA_TYPE_WRITE
from ecaptureq.protocol import Event, run_log_line
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import libbpf
from ecaptureq.sources.tls.discover import OPENSSL_FUNCTIONS
from ecaptureq.sources.tls.errors import BpfUnsupportedError, NoPrivilegeError
from ecaptureq.sources.tls.hooks import Hooker, ProcessInfo, attach_everything
from ecaptureq.sources.tls.locate import SocketResolver

MAX_EVENT_PAYLOAD: Final = 16384
"""The most plaintext bytes one published event carries (eCapture's cap); more is split, never cut."""

DEFAULT_IDLE_FLUSH: Final = 0.05
"""Seconds without a new chunk after which a connection's pending bytes are published."""

HOOKED_FUNCTIONS: Final = OPENSSL_FUNCTIONS
"""The libssl functions hooked (entry and return)."""

_HELPERS: Final = ("sys_enter",)

# struct ssl_event in bpf/sslsniff.h, up to data[].
_HEADER: Final = struct.Struct("<QQQQIIIIiHHBBBB16s16s16s")
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
    _fields_ = (
        ("target_pid", ctypes.c_uint32),
        ("target_uid", ctypes.c_uint32),
        ("exclude_pid", ctypes.c_uint32),
        ("filter_pid", ctypes.c_uint8),
        ("filter_uid", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 2),
    )


def bpf_object_path() -> str:
    """Path of the compiled eBPF object shipped in this package."""
    return str(resources.files("ecaptureq.sources.tls").joinpath("sslsniff.bpf.o"))


BPF_DIRECTION_WRITE = 0
"""The BPF record's ``direction`` for ``SSL_write`` (1 is ``SSL_read``). The uuid carries eCapture's
numbering instead (:data:`~ecaptureq.decode.meta.DATA_TYPE_WRITE` = 1, ``DATA_TYPE_READ`` = 0)."""


def log_line(level: str, message: str) -> str:
    """A run-log line in eCapture's zerolog console style: ``2025-08-02T14:16:10Z INF message``."""
    return run_log_line(message, level)


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


@dataclass(frozen=True, slots=True)
class Chunk:
    """One ring-buffer record: part (or all) of the plaintext of one SSL call."""

    ts_boot_ns: int
    ssl: int
    offset: int
    total: int
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
    def parse(cls, record: bytes) -> Chunk:
        """Decode a ``struct ssl_event`` record."""
        (ts, ssl, offset, total, pid, tid, uid, length, fd, sport, dport, direction, family, _flags, _pad,
         saddr, daddr, comm) = _HEADER.unpack_from(record)  # fmt: skip
        src = dst = None
        if family in (2, 10):
            src = (_ip(family, saddr), sport)
            dst = (_ip(family, daddr), dport)
        data = record[_HEADER.size : _HEADER.size + length]
        name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(ts, ssl, offset, total, pid, tid, uid, fd, direction, name, data, src, dst)


_IP_CACHE: dict[tuple[int, bytes], str] = {}


def _ip(family: int, raw: bytes) -> str:
    key = (family, raw)
    text = _IP_CACHE.get(key)
    if text is None:
        if family == 2:
            text = str(ipaddress.IPv4Address(raw[:4]))
        else:
            v6 = ipaddress.IPv6Address(raw)
            text = str(v6.ipv4_mapped or v6)
        if len(_IP_CACHE) > 4096:
            _IP_CACHE.clear()
        _IP_CACHE[key] = text
    return text


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


class Aggregator:
    """Joins consecutive chunks of one connection and direction into events of at most 16 KiB.

    A connection is ``(pid, SSL *)``. Its pending bytes are published when the direction (or thread,
    or fd) changes, when they reach ``cap`` bytes, after ``idle`` seconds without a new chunk, and by
    :meth:`flush_all`. Bytes are never dropped: a chunk that does not fit is split across events.
    """

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

    def feed(self, chunk: Chunk, now: float | None = None) -> list[Event]:
        """Add one chunk; return the events it completes."""
        now = time.monotonic() if now is None else now
        out: list[Event] = []
        key = (chunk.pid, chunk.ssl)
        pending = self._pending.get(key)
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
        data = memoryview(chunk.data)
        while data:
            room = self.cap - len(pending.buf)
            pending.buf += data[:room]
            data = data[room:]
            if len(pending.buf) >= self.cap:
                out.append(self._event(pending))
                pending.buf = bytearray()
                pending.first_ts = chunk.ts_boot_ns
        pending.last_seen = now
        if not pending.buf:
            del self._pending[key]
        return out

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

    def _event(self, p: _Pending) -> Event:
        payload = bytes(p.buf)
        src_ip, src_port = p.src or ("", 0)
        dst_ip, dst_port = p.dst or ("", 0)
        is_write = p.direction == BPF_DIRECTION_WRITE
        return Event(
            timestamp=p.first_ts + self.boot_offset,
            uuid=f"{p.pid}_{p.tid}_{p.comm}_{p.fd}_{DATA_TYPE_WRITE if is_write else DATA_TYPE_READ}",
            src_ip=src_ip,
            src_port=src_port,
            dst_ip=dst_ip,
            dst_port=dst_port,
            pid=p.pid,
            pname=p.comm,
            type=classify_payload(payload, is_write=is_write),
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


class TlsCapture:
    """Hook one libssl with eBPF and publish its plaintext into ``sink`` until :meth:`stop`.

    >>> with TlsCapture(sink, libssl="/lib/x86_64-linux-gnu/libssl.so.3") as cap:  # doctest: +SKIP
    ...     time.sleep(10)

    ``pid``/``uid`` restrict the capture (in the kernel) to one process or user; the capturing process
    itself is always excluded. :meth:`start` raises a :class:`~ecaptureq.sources.tls.errors.CaptureError`
    subclass when it cannot start, after undoing whatever it had set up.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        libssl: str | Sequence[str] | None = None,
        pid: int | None = None,
        uid: int | None = None,
        object_path: str | None = None,
        idle_flush: float = DEFAULT_IDLE_FLUSH,
    ) -> None:
        self.sink = sink
        self.libssl = libssl
        """Only these files (``--libssl``); ``None``: every TLS library found, and new ones (exec watcher)."""
        self.hooker: Hooker | None = None
        self.pid = pid
        self.uid = uid
        self.object_path = object_path or bpf_object_path()
        self.idle_flush = idle_flush
        self.hooked: list[str] = []
        self._obj: libbpf.BpfObject | None = None
        self._links: list[libbpf.Link] = []
        self._ring: libbpf.RingBuffer | None = None
        self._stats_fd = -1
        self._thread: threading.Thread | None = None
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

    def _load_and_attach(self) -> None:
        try:
            libbpf.load_library()
        except libbpf.LibbpfError as exc:
            raise BpfUnsupportedError(str(exc)) from None
        self.sink.publish_log(log_line("INF", f"libbpf version={libbpf.version()}"))
        try:
            self._obj = libbpf.BpfObject(self.object_path)
            self._obj.load()
        except libbpf.LibbpfError as exc:
            raise self._bpf_error("cannot load the eBPF program", exc) from None
        obj = self._obj
        cfg = _Config(exclude_pid=os.getpid())
        if self.pid is not None:
            cfg.target_pid, cfg.filter_pid = self.pid, 1
        if self.uid is not None:
            cfg.target_uid, cfg.filter_uid = self.uid, 1
        libbpf.map_update(obj.map_fd("config"), ctypes.c_uint32(0), cfg)
        self._stats_fd = obj.map_fd("stats")

        self.hooker = attach_everything(obj, self.sink.publish_log, self.libssl, pid=self.pid, uid=self.uid)
        self.hooked = sorted({f for functions in self.hooker.hooked.values() for f in functions})
        for program in _HELPERS:
            try:
                self._links.append(obj.attach(program))
            except libbpf.LibbpfError as exc:
                self.sink.publish_log(
                    log_line("WRN", f"{program} not attached (fd/4-tuple may be missing): {exc}")
                )
        libbpf.take_messages()
        self._ring = libbpf.RingBuffer(obj.map_fd("events"), self._on_record)
        self.hooker.start_watcher()
        if self.pid is not None:
            self.sink.publish_log(log_line("INF", f"target PID={self.pid}"))
        if self.uid is not None:
            self.sink.publish_log(log_line("INF", f"target UID={self.uid}"))

    def _bpf_error(self, what: str, exc: libbpf.LibbpfError) -> Exception:
        detail = [m for m in libbpf.take_messages() if m.strip()]
        hint = f" ({detail[-1]})" if detail else ""
        if exc.errno in (errno.EPERM, errno.EACCES):
            return NoPrivilegeError(f"{what}: {exc.strerror}{hint}")
        return BpfUnsupportedError(f"{what}: {exc.strerror}{hint}")

    def stop(self) -> None:
        """Stop polling, publish what is pending and the final counts, detach every probe (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._ring is not None:
            with contextlib.suppress(libbpf.LibbpfError):
                self._ring.consume()
            self._publish(self._agg.flush_all())
            self._report(final=True)
        self._detach()

    def _detach(self) -> None:
        if self.hooker is not None:
            self.hooker.stop()
        for link in self._links:
            link.destroy()
        self._links.clear()
        if self._ring is not None:
            self._ring.free()
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

    @property
    def attached(self) -> int:
        """How many probes are attached right now."""
        return len(self._links) + (len(self.hooker.links) if self.hooker else 0)

    # -- polling ---------------------------------------------------------------------------------

    def _on_record(self, data: int, size: int) -> None:
        try:
            chunk = Chunk.parse(ctypes.string_at(data, size))
            self._publish(self._agg.feed(chunk))
        except Exception as exc:  # never let one bad record kill the poll loop
            self._errors.append(repr(exc))

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            self.sink.publish_event(event)
        self._events += len(events)

    def _run(self) -> None:
        assert self._ring is not None
        next_report = time.monotonic() + 2.0
        while not self._stop.is_set():
            try:
                # Records below the BPF side's wake-up threshold raise no epoll event: consume them too.
                self._ring.poll(20)
                self._ring.consume()
            except libbpf.LibbpfError as exc:
                self.sink.publish_log(log_line("ERR", f"ring buffer: {exc}"))
                break
            self._publish(self._agg.flush_idle())
            if self._errors:
                errors, self._errors = self._errors, []
                self.sink.publish_log(log_line("WRN", f"{len(errors)} bad records, first: {errors[0]}"))
            now = time.monotonic()
            if now >= next_report:
                next_report = now + 2.0
                self._report(final=False)

    def stats(self) -> CaptureStats:
        """Current counts (reads the eBPF ``stats`` map)."""
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
        return CaptureStats(**dict(zip(_STAT_NAMES, values, strict=False)), events=self._events)

    def _report(self, *, final: bool) -> None:
        now = self.stats()
        last = self._reported
        if now.drop_chunks > last.drop_chunks:
            self.sink.publish_log(
                log_line(
                    "WRN",
                    f"ring buffer full: lost {now.drop_chunks - last.drop_chunks} records "
                    f"({now.drop_bytes - last.drop_bytes} bytes); total lost {now.drop_chunks}",
                )
            )
        if now.oversized > last.oversized:
            self.sink.publish_log(
                log_line(
                    "WRN",
                    f"{now.oversized - last.oversized} SSL calls over 64 MiB: "
                    f"{now.oversized_bytes - last.oversized_bytes} bytes beyond 64 MiB not captured",
                )
            )
        if now.read_errors > last.read_errors:
            self.sink.publish_log(
                log_line("WRN", f"{now.read_errors - last.read_errors} records with unreadable user memory")
            )
        self._reported = now
        if final:
            self.sink.publish_log(
                log_line(
                    "INF",
                    f"capture stopped: events={now.events} records={now.chunks} bytes={now.bytes} "
                    f"lost_records={now.drop_chunks} lost_bytes={now.drop_bytes} "
                    f"oversized_calls={now.oversized} read_errors={now.read_errors}",
                )
            )


def banner(listen_url: str | None = None) -> list[str]:
    """eCapture-style startup lines: AppName, Version, kernel, and the listen URL when serving."""
    uname = platform.uname()
    lines = [
        log_line("INF", 'AppName="ecaptureq"'),
        log_line("INF", "HomePage=https://github.com/gojue/ecapture (Python eCaptureQ implementation)"),
        log_line("INF", f"Version=linux_{uname.machine}:ecaptureq-{__version__}"),
        log_line("INF", f"Kernel Info={uname.release}"),
        log_line("INF", f"Pid Info={os.getpid()}"),
    ]
    if listen_url:
        lines.append(log_line("INF", f"Listen for eCaptureQ={listen_url}"))
    return lines

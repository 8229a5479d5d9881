"""Attach the eBPF programs to every TLS library found, and keep doing so for new programs and libraries.

:class:`Hooker` takes a :class:`~ecaptureq.sources.tls.discover.Discovery`, attaches the right programs of
``sslsniff.bpf.o`` to each file (uprobes are per file, so one attachment covers every process mapping it,
now or later), and runs the exec watcher: the eBPF side reports every exec and every executable mapping of
a file not yet examined (``lib_events``), and the watcher classifies and hooks it at once. It also keeps,
per process, the cgroup and container id (:class:`Processes`), read when the process execs, so a process
that has already exited still gets them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ecaptureq.protocol import Event, run_log_line
from ecaptureq.protocol.process import ProcessLabel
from ecaptureq.sources.base import Sink
from ecaptureq.sources.tls import libbpf
from ecaptureq.sources.tls.discover import (
    KIND_GNUTLS,
    KIND_GO,
    KIND_NSS,
    Discovery,
    FileId,
    NotTlsError,
    Scanner,
    Target,
    Unsupported,
    discover,
)
from ecaptureq.sources.tls.errors import LibsslNotFoundError, NoPrivilegeError
from ecaptureq.sources.tls.gotls import GO_READ, GO_WRITE
from ecaptureq.sources.tls.ringbuf import RingReader

_SSL: Final = {
    "SSL_write": ("ssl_write_enter", "ssl_write_leave"),
    "SSL_read": ("ssl_read_enter", "ssl_read_leave"),
    "SSL_write_ex": ("ssl_write_ex_enter", "ssl_write_ex_leave"),
    "SSL_read_ex": ("ssl_read_ex_enter", "ssl_read_ex_leave"),
}
PROGRAMS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    KIND_GNUTLS: {
        # (session, buffer, size) -> bytes transferred: the return programs are SSL_write/SSL_read's.
        "gnutls_record_send": ("gnutls_send_enter", "ssl_write_leave"),
        "gnutls_record_recv": ("gnutls_recv_enter", "ssl_read_leave"),
    },
    KIND_NSS: {
        # (PRFileDesc *, buffer, amount, ...) -> bytes; the entry programs keep NSS's SSL descriptors only.
        "PR_Write": ("nss_write_enter", "ssl_write_leave"),
        "PR_Send": ("nss_write_enter", "ssl_write_leave"),
        "PR_Read": ("nss_read_enter", "ssl_read_leave"),
        "PR_Recv": ("nss_read_enter", "ssl_read_leave"),
    },
}
"""Per library kind: function -> (entry program, return program). OpenSSL-like kinds use ``_SSL``."""
_GO_ENTRY: Final = {GO_WRITE: "go_write_enter", GO_READ: "go_read_enter"}
_GO_RETURN: Final = "go_return"
WATCHER_PROGRAMS: Final = ("libs_exec", "libs_sys_exit")
WATCHER_NICE: Final = -10
"""The watcher thread's nice value: on a busy host a new program must still be hooked in milliseconds, and
the thread sleeps unless something new is mapped (the capture's own drain thread runs at -19)."""

LIB_EVENTS_BYTES: Final = 256 * 1024
"""Size of the exec watcher's ``lib_events`` ring buffer, set before the object is loaded."""
# struct lib_event in bpf/sslsniff.bpf.c
_LIB_EVENT: Final = struct.Struct("<QQQIIIB3x16s")
_EXEC = 0

_CONTAINER_ID: Final = re.compile(
    r"(?:docker|cri-containerd|crio|libpod|containerd)[-/:]([0-9a-f]{64})|/([0-9a-f]{64})"
)


def log(level: str, message: str) -> str:
    """A run-log line (eCapture's zerolog console style)."""
    return run_log_line(message, level)


def programs_for(target: Target) -> dict[str, tuple[str, str]]:
    """Function -> (entry, return) programs for a non-Go target."""
    return PROGRAMS.get(target.kind, _SSL)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What is known of a process beyond the event: its cgroup v2 path and container id."""

    cgroup: str = ""
    container_id: str = ""


def container_id(cgroup: str) -> str:
    """The container id a runtime wrote into a cgroup path (docker, containerd, CRI-O, podman), or ``""``."""
    match = _CONTAINER_ID.search(cgroup)
    return (match.group(1) or match.group(2)) if match else ""


def cgroup2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (a cgroup's id is the inode of its directory there)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    return None


COMMS_PER_PROCESS: Final = 64
"""Most thread names remembered per process for :meth:`Processes.get` (the kernel's comm is per thread)."""


def comm_text(raw: bytes) -> str:
    """A kernel ``comm`` (``TASK_COMM_LEN`` bytes, NUL-padded) as text."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Processes:
    """pid -> :class:`ProcessInfo`.

    The exec watcher records each process's cgroup id (``bpf_get_current_cgroup_id``) at its exec, so a
    process that has already exited still gets its cgroup; the id is turned into a path by looking the
    directory with that inode up in the cgroup v2 hierarchy (cached; walked again on a miss). A process
    the watcher has not seen (it was running before the capture) is read from ``/proc/PID/cgroup``.
    ``before_lookup`` (the watcher's drain) runs first, so a just-started process is not missed; it also
    runs when an event's comm is not the one the pid was last known by, since an exec (``sh -c 'exec
    curl'`` after joining a container's cgroup) keeps the pid and its record may still wait in the ring.
    """

    def __init__(self, limit: int = 65536, root: str | None = None) -> None:
        self._paths: dict[int, str] = {}
        self._info: dict[int, ProcessInfo] = {}
        self._comms: dict[int, set[str]] = {}
        """pid -> the comms its events have carried since its exec (threads may name themselves)."""
        self._lock = threading.Lock()
        self._limit = limit
        self._root = root or cgroup2_root()
        self.before_lookup: Callable[[], None] | None = None

    def saw_exec(self, pid: int, cgroup_id: int, comm: str = "") -> None:
        """Record the cgroup ``pid`` had at its exec (resolved now: a container's cgroup goes with it) and
        the comm it took."""
        with self._lock:
            if len(self._info) >= self._limit:
                self._info.clear()
                self._comms.clear()
            self._comms[pid] = {comm}
            path = self._path_of(cgroup_id)
            if path is not None:
                self._info[pid] = ProcessInfo(path, container_id(path))
            else:
                self._info.pop(pid, None)

    def _path_of(self, cgroup_id: int) -> str | None:
        path = self._paths.get(cgroup_id)
        if path is None and self._root is not None:
            self._paths.clear()
            for directory, _dirs, _files in os.walk(self._root):
                with contextlib.suppress(OSError):
                    self._paths[os.stat(directory).st_ino] = "/" + os.path.relpath(directory, self._root)
            path = self._paths.get(cgroup_id)
        return None if path is None else ("/" if path == "/." else path)

    def get(self, pid: int, comm: str | None = None) -> ProcessInfo:
        """The cgroup path and container id of ``pid`` (empty when unknown), as the process named ``comm``
        (when given) if it exec'd under that name. Called for every event."""
        info = self._info.get(pid)  # the common case, lock-free (dict lookups under the GIL)
        if info is not None and (comm is None or comm in self._comms.get(pid, ())):
            return info
        if self.before_lookup is not None:
            self.before_lookup()
        with self._lock:
            info = self._info.get(pid)
            if info is None:
                path = _proc_cgroup(pid)
                info = ProcessInfo(path, container_id(path))
                self._info[pid] = info
            if comm is not None:
                # A thread that named itself, or a missed exec: drain once per name, not per event (a
                # process that keeps inventing names starts its set again rather than growing it).
                names = self._comms.setdefault(pid, set())
                if len(names) >= COMMS_PER_PROCESS:
                    names.clear()
                names.add(comm)
            return info


def _proc_cgroup(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


class LabellingSink:
    """Forwards to ``sink``, publishing before the first event of each process its cgroup and container
    (a :class:`~ecaptureq.protocol.process.ProcessLabel` run-log line), and again if they change."""

    def __init__(self, sink: Sink, processes: Processes, limit: int = 65536) -> None:
        self.sink = sink
        self.processes = processes
        self._told: dict[int, ProcessInfo] = {}
        self._limit = limit

    def publish_log(self, line: str) -> None:
        """Forward a run-log line."""
        self.sink.publish_log(line)

    def publish_event(self, event: Event) -> None:
        """Label the event's process if not done yet, then forward the event."""
        info = self.processes.get(event.pid, event.pname)
        told = self._told.get(event.pid)
        if told is not info and told != info:
            if len(self._told) >= self._limit:
                self._told.clear()
            self._told[event.pid] = info
            label = ProcessLabel(event.pid, event.pname, info.cgroup, info.container_id)
            self.sink.publish_log(label.log_line())
        self.sink.publish_event(event)


class _FileKey(ctypes.Structure):
    _fields_ = (("ino", ctypes.c_uint64), ("dev", ctypes.c_uint32), ("pad", ctypes.c_uint32))


class Hooker:
    """Attaches targets to a loaded ``sslsniff.bpf.o`` and watches for new ones.

    ``publish`` receives run-log lines. ``watch`` enables the exec watcher; ``pid``/``uid`` limit what it
    examines. Every link is owned here; :meth:`stop` destroys them.
    """

    def __init__(
        self,
        obj: libbpf.BpfObject,
        publish: Callable[[str], None],
        *,
        scanner: Scanner | None = None,
        watch: bool = True,
        pid: int | None = None,
        uid: int | None = None,
    ) -> None:
        self.obj = obj
        self.publish = publish
        self.scanner = scanner or Scanner()
        self.watch = watch
        self.pid = pid
        self.uid = uid
        self.links: list[libbpf.Link] = []
        self.hooked: dict[FileId, list[str]] = {}
        self.processes = Processes()
        self.hook_latencies_ms: list[float] = []
        self._known_fd = -1
        self._pushed: set[FileId] = set()
        self._reported: set[tuple[int, str]] = set()
        self._ring: RingReader | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._drain_lock = threading.RLock()

    @property
    def discovery(self) -> Discovery:
        """Everything found so far."""
        return self.scanner.result

    # -- attaching -------------------------------------------------------------------------------

    def attach(self, target: Target) -> list[str]:
        """Attach the programs for ``target``; return the functions hooked (raises NoPrivilegeError)."""
        done: list[str] = []
        if target.kind == KIND_GO and target.go is not None:
            for go_func in target.go.functions:
                try:
                    self._uprobe(_GO_ENTRY[go_func.name], target.path, None, go_func.entry)
                    for ret in go_func.returns:
                        self._uprobe(_GO_RETURN, target.path, None, ret)
                    done.append(go_func.name)
                except libbpf.LibbpfError as exc:
                    self.publish(log("WRN", f"{target.shown}: {go_func.name} not hooked: {exc}"))
        else:
            for func, (enter, leave) in programs_for(target).items():
                offset = target.offsets.get(func)
                name = None if offset is not None else func  # by offset when resolved (faster)
                try:
                    self._uprobe(enter, target.path, name, offset or 0)
                    self.links.append(
                        self.obj.attach_uprobe(leave, target.path, name, retprobe=True, offset=offset or 0)
                    )
                    done.append(func)
                except libbpf.LibbpfError as exc:
                    if exc.errno in (errno.EPERM, errno.EACCES):
                        raise NoPrivilegeError(f"cannot attach uprobes: {exc.strerror}") from None
                    if not func.endswith("_ex"):
                        self.publish(log("WRN", f"{target.shown}: {func} not hooked: {exc}"))
        if done:
            self.hooked[target.file_id] = done
        return done

    def _uprobe(self, program: str, path: str, func: str | None, offset: int) -> None:
        try:
            self.links.append(self.obj.attach_uprobe(program, path, func, retprobe=False, offset=offset))
        except libbpf.LibbpfError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise NoPrivilegeError(f"cannot attach uprobes: {exc.strerror}") from None
            raise

    def attach_all(self) -> int:
        """Attach every target found so far and log each; return how many files were hooked."""
        for target in list(self.discovery.targets.values()):
            if target.file_id not in self.hooked:
                self._attach_logged(target)
        for item in self.discovery.unsupported:
            self._report_unsupported(item)
        return len(self.hooked)

    def _attach_logged(self, target: Target) -> None:
        functions = self.attach(target)
        if functions:
            users = ",".join(f"{p}/{c}" for p, c in sorted(target.users.items())[:5])
            self.publish(
                log(
                    "INF",
                    f"hooked {target.label} path={target.shown} found_by={target.how!r}"
                    + (f" pids={users}" if users else "")
                    + f" functions={','.join(functions)}",
                )
            )

    def _report_unsupported(self, item: Unsupported) -> None:
        key = (item.pid, item.what)
        if key in self._reported:
            return
        self._reported.add(key)
        self.publish(
            log(
                "WRN",
                f"not hooked: pid={item.pid} comm={item.comm} uses {item.what} ({item.path}): {item.why}",
            )
        )

    # -- the exec watcher ------------------------------------------------------------------------

    def start_watcher(self) -> None:
        """Attach the exec/mmap programs and start the watcher thread (no-op when ``watch`` is off)."""
        self._known_fd = self.obj.map_fd("known_files")
        self._push_known()
        if not self.watch:
            return
        for program in WATCHER_PROGRAMS:
            self.links.append(self.obj.attach(program))
        self._ring = RingReader(self.obj.map_fd("lib_events"), LIB_EVENTS_BYTES)
        self.processes.before_lookup = self.drain
        self._thread = threading.Thread(target=self._run, name="ecaptureq-tls-exec", daemon=True)
        self._thread.start()

    def _push_known(self) -> None:
        for fid in list(self.discovery.seen | set(self.discovery.targets)):
            if fid in self._pushed:
                continue
            key = _FileKey(fid.inode, fid.kernel_dev, 0)
            with contextlib.suppress(libbpf.LibbpfError):
                libbpf.map_update(self._known_fd, key, ctypes.c_uint8(1))
            self._pushed.add(fid)

    def _run(self) -> None:
        ring = self._ring
        assert ring is not None
        with contextlib.suppress(OSError):  # Linux: the nice value of one thread, by its tid
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WATCHER_NICE)
        while not self._stop.is_set():
            ring.wait(0.1)  # woken at once for a file to examine; execs of known programs wait for this
            self.drain()

    def drain(self) -> None:
        """Handle every ``lib_event`` waiting (from the watcher thread, or before a process lookup)."""
        with self._drain_lock:
            if self._ring is not None:
                self._ring.drain(self._on_event)

    def _on_event(self, record: memoryview) -> None:
        try:
            self.handle(bytes(record))
        except Exception as exc:  # one bad event must not stop the watcher
            self.publish(log("WRN", f"exec watcher: {exc!r}"))

    def handle(self, record: bytes) -> None:
        """Handle one ``lib_event``: remember the process, examine and hook what it maps that is new."""
        ts, ino, cgroup, pid, dev, uid, kind, comm = _LIB_EVENT.unpack_from(record)
        if kind == _EXEC:
            self.processes.saw_exec(pid, cgroup, comm_text(comm))
        if (self.pid is not None and pid != self.pid) or (self.uid is not None and uid != self.uid):
            return
        fid = FileId(dev >> 20, dev & 0xFFFFF, ino)
        with self._lock:
            if fid in self.discovery.seen or fid in self.discovery.targets:
                return
            what = "exec" if kind == _EXEC else "mmap"
            new = self.scanner.scan_process(pid, how=f"exec watcher ({what})")
            self.discovery.seen.add(fid)
            for target in new:
                self._attach_logged(target)
                # From the exec/mmap in the kernel to the probes being in place.
                latency = (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ts) / 1e6
                self.hook_latencies_ms.append(latency)
                self.publish(
                    log("INF", f"hooked {target.shown} {latency:.1f} ms after the {what} (pid {pid})")
                )
            for item in self.discovery.unsupported:
                self._report_unsupported(item)
            self._push_known()

    def stop(self) -> None:
        """Stop the watcher and detach everything (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for link in self.links:
            link.destroy()
        self.links.clear()
        with self._drain_lock:
            if self._ring is not None:
                self._ring.close()
                self._ring = None


def attach_everything(
    obj: libbpf.BpfObject,
    publish: Callable[[str], None],
    libssl: str | Sequence[str] | None,
    *,
    pid: int | None = None,
    uid: int | None = None,
) -> Hooker:
    """Discover (:func:`~ecaptureq.sources.tls.discover.discover`), attach and log; watch for new files
    unless ``libssl`` names the files. Raises :class:`LibsslNotFoundError` when nothing can be hooked."""
    files = [libssl] if isinstance(libssl, str) else list(libssl or ())
    try:
        found = discover(libssl=files, pid=pid, uid=uid)
    except OSError as exc:
        raise LibsslNotFoundError(f"libssl not found: {exc.filename}: {exc.strerror}") from None
    except NotTlsError as exc:
        raise LibsslNotFoundError(
            f"{exc}: no SSL_write/SSL_read, gnutls_record_send/recv, PR_Write/PR_Read "
            "or Go crypto/tls to hook"
        ) from None
    hooker = Hooker(obj, publish, scanner=Scanner(found), watch=not files, pid=pid, uid=uid)
    hooker.attach_all()
    if not hooker.hooked:
        where = f"process {pid}" if pid is not None else ", ".join(files) or "this host"
        raise LibsslNotFoundError(f"no TLS library to hook in {where} (not OpenSSL, GnuTLS, NSS or Go?)")
    return hooker

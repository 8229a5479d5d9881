"""TLS secrets of the hooked OpenSSL processes, written as an NSS key log file (``SSLKEYLOGFILE``).

:class:`KeylogCapture` loads ``keylog.bpf.o`` (from ``bpf/keylog.bpf.c``) through libbpf and hooks
``SSL_do_handshake`` (which ``SSL_connect`` and ``SSL_accept`` call): when a handshake completes, the BPF
program reads from the ``SSL`` and its session the client random, the TLS 1.2 master key, the cipher
and the TLS 1.3 secrets, at the structure offsets of the OpenSSL build (:data:`OFFSETS`, chosen by the
version string in the library's ``.rodata``). This module turns a record into the lines Wireshark reads:

- TLS 1.2 and older: ``CLIENT_RANDOM <client random> <master key>``;
- TLS 1.3: ``CLIENT_HANDSHAKE_TRAFFIC_SECRET``, ``SERVER_HANDSHAKE_TRAFFIC_SECRET`` (derived here with
  HKDF-Expand-Label from ``handshake_secret`` and ``handshake_traffic_hash``, RFC 8446 section 7.1, as
  OpenSSL does), ``CLIENT_TRAFFIC_SECRET_0``, ``SERVER_TRAFFIC_SECRET_0`` and ``EXPORTER_SECRET``.

The offsets were measured by :func:`measure_offsets` (``scripts/keylog-offsets``): a handshake through
the library itself, with OpenSSL's own key log callback, and the secrets looked up in the ``SSL`` and
``SSL_SESSION`` memory; the order of the TLS 1.3 secret slots is that of ``struct ssl_st`` in OpenSSL's
``ssl/ssl_local.h`` (1.1.1 and 3.0). A version not in the table is refused with
:class:`UnsupportedOpenSSLError`: wrong offsets would write wrong keys silently.

An application that lets ``SSL_read``/``SSL_write`` drive the handshake (node) never calls
``SSL_do_handshake``: its connections are reported when ``SSL_read``, ``SSL_write`` or their ``_ex`` forms
first move data (the BPF program remembers which it reported). A TLS 1.3 connection first seen after a
KeyUpdate would have its updated application secrets logged as ``_0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import hmac
import os
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import astuple, dataclass
from importlib import resources
from pathlib import Path
from typing import Final, TextIO

from ecaptureq.sources.tls import libbpf
from ecaptureq.sources.tls.errors import (
    BpfUnsupportedError,
    CaptureError,
    LibsslNotFoundError,
    NoPrivilegeError,
)
from ecaptureq.sources.tls.ringbuf import RingReader

KEYS_RING_BYTES: Final = 1024 * 1024
"""Size of the ``keys`` ring buffer (its ``max_entries`` in bpf/keylog.bpf.c)."""

HOOKED_FUNCTION: Final = "SSL_do_handshake"
"""The function whose return marks a completed handshake."""
IO_FUNCTIONS: Final = ("SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex")
"""Where a handshake that SSL_do_handshake never saw (the application let I/O drive it) is noticed."""
TLS1_3_VERSION: Final = 0x0304
TLS_VERSIONS_WITH_MASTER_KEY: Final = frozenset({0x0300, 0x0301, 0x0302, 0x0303})
"""SSL 3.0 to TLS 1.2: one master key per session."""
_SHA384_SUITES: Final = frozenset({0x1302})  # TLS_AES_256_GCM_SHA384; the other TLS 1.3 suites use SHA-256
_MD_SLOT: Final = 64  # EVP_MAX_MD_SIZE
# Slots of the TLS 1.3 block, counted from handshake_secret (struct ssl_st, ssl/ssl_local.h).
_SLOT_HANDSHAKE_SECRET, _SLOT_HANDSHAKE_HASH = 0, 6
_SLOT_CLIENT_APP, _SLOT_SERVER_APP, _SLOT_EXPORTER = 7, 8, 9
_TLS13_SLOTS: Final = 10
_RECORD: Final = struct.Struct(f"<QIIiIII16s32s48s{_TLS13_SLOTS * _MD_SLOT}s")
"""struct keylog_event of bpf/keylog.h."""
_VERSION_RE: Final = re.compile(rb"OpenSSL (\d+\.\d+\.\d+[a-z]?(?:\+[a-z]+)?) +\d{1,2} [A-Z][a-z]{2} \d{4}")
_DEDUP: Final = 65536


@dataclass(frozen=True, slots=True)
class Offsets:
    """Where the secrets are in one OpenSSL build (bytes; ``struct keylog_config`` of bpf/keylog.h)."""

    ssl_version: int
    """``int version`` in ``struct ssl_st``."""
    client_random: int
    """``s3.client_random`` in ``struct ssl_st``."""
    session: int
    """``SSL_SESSION *session`` in ``struct ssl_st``."""
    handshake_secret: int
    """``handshake_secret`` (the first TLS 1.3 slot read) in ``struct ssl_st``."""
    master_key: int
    """``master_key`` in ``struct ssl_session_st``."""
    session_cipher: int
    """``const SSL_CIPHER *cipher`` in ``struct ssl_session_st``."""
    cipher_id: int
    """``uint32_t id`` in ``struct ssl_cipher_st``."""


OFFSETS: Final[dict[str, Offsets]] = {
    # Debian 12 (bookworm) libssl3 3.0.19-1~deb12u2, measured with scripts/keylog-offsets; node 20.20's
    # bundled OpenSSL 3.0.19 (--libssl /usr/bin/node) has the same layout (its key log lines match
    # node --tls-keylog in tests/capture/test_keylog.py).
    "3.0.19": Offsets(
        ssl_version=0,
        client_random=352,
        session=2328,
        handshake_secret=1412,
        master_key=80,
        session_cipher=760,
        cipher_id=24,
    ),
}
"""Offsets by OpenSSL version string (as in ``OpenSSL 3.0.19 27 Jan 2026``)."""


class UnsupportedOpenSSLError(LibsslNotFoundError):
    """The library's OpenSSL version has no known structure offsets (``version`` is ``None`` when no
    version string was found)."""

    def __init__(self, library: str, version: str | None) -> None:
        known = ", ".join(sorted(OFFSETS))
        found = f"OpenSSL {version}" if version else "no OpenSSL version string"
        super().__init__(
            f"{library}: {found}; key logging knows the structure offsets of OpenSSL {known} only "
            "(scripts/keylog-offsets measures them for another build)"
        )
        self.library = library
        self.version = version


def detect_version(library: str) -> str | None:
    """The OpenSSL version named in ``library``'s read-only data, or in the ``libcrypto`` beside it
    (a shared ``libssl`` often has none: the string lives in ``libcrypto``). ``None`` when not found."""
    candidates = [Path(library)]
    name = Path(library).name
    if name.startswith("libssl.so"):
        candidates.append(Path(library).with_name(name.replace("libssl", "libcrypto", 1)))
    for path in candidates:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        match = _VERSION_RE.search(data)
        if match:
            return match.group(1).decode()
    return None


def offsets_for(library: str) -> tuple[str, Offsets]:
    """The detected version of ``library`` and its offsets.

    Raises:
        UnsupportedOpenSSLError: no version string, or a version not in :data:`OFFSETS`.
    """
    version = detect_version(library)
    if version is None or version not in OFFSETS:
        raise UnsupportedOpenSSLError(library, version)
    return version, OFFSETS[version]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the BPF program read at the end of one handshake."""

    ssl: int
    pid: int
    tid: int
    version: int
    cipher_id: int
    complete: bool
    comm: str
    client_random: bytes
    master_key: bytes
    tls13: bytes

    @classmethod
    def parse(cls, data: bytes) -> KeyRecord:
        """Decode a ``struct keylog_event``. Raises ``struct.error`` when ``data`` is too short."""
        ssl, pid, tid, version, cipher, flags, _pad, comm, random, master, tls13 = _RECORD.unpack_from(data)
        name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(ssl, pid, tid, version, cipher, not flags & 1, name, random, master, tls13)


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, digest: str) -> bytes:
    """HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1) with the hash ``digest``."""
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), digest).digest()
        out += block
        counter += 1
    return out[:length]


def key_log_lines(record: KeyRecord) -> list[str]:
    """The NSS key log lines of a record (none for an incomplete record or an unknown protocol)."""
    if not record.complete or not any(record.client_random):
        return []
    random = record.client_random.hex()
    if record.version in TLS_VERSIONS_WITH_MASTER_KEY:
        if not any(record.master_key):
            return []
        return [f"CLIENT_RANDOM {random} {record.master_key.hex()}"]
    if record.version != TLS1_3_VERSION:
        return []
    digest = "sha384" if record.cipher_id & 0xFFFF in _SHA384_SUITES else "sha256"
    size = hashlib.new(digest).digest_size

    def slot(index: int) -> bytes:
        return record.tls13[index * _MD_SLOT : index * _MD_SLOT + size]

    handshake, transcript = slot(_SLOT_HANDSHAKE_SECRET), slot(_SLOT_HANDSHAKE_HASH)

    def traffic(label: bytes) -> bytes:
        return hkdf_expand_label(handshake, label, transcript, size, digest)

    secrets = [
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", traffic(b"c hs traffic")),
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", traffic(b"s hs traffic")),
        ("CLIENT_TRAFFIC_SECRET_0", slot(_SLOT_CLIENT_APP)),
        ("SERVER_TRAFFIC_SECRET_0", slot(_SLOT_SERVER_APP)),
        ("EXPORTER_SECRET", slot(_SLOT_EXPORTER)),
    ]
    if not any(slot(_SLOT_CLIENT_APP)):
        return []  # the handshake did not get as far as the application secrets
    return [f"{label} {random} {value.hex()}" for label, value in secrets]


class _Config(ctypes.Structure):
    # struct keylog_config of bpf/keylog.h
    _fields_ = (
        ("ssl_version", ctypes.c_uint32),
        ("client_random", ctypes.c_uint32),
        ("session", ctypes.c_uint32),
        ("handshake_secret", ctypes.c_uint32),
        ("master_key", ctypes.c_uint32),
        ("session_cipher", ctypes.c_uint32),
        ("cipher_id", ctypes.c_uint32),
        ("exclude_pid", ctypes.c_uint32),
        ("target_pid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


def bpf_object_path() -> str:
    """Path of the compiled key-log eBPF object shipped in this package."""
    return str(resources.files("ecaptureq.sources.tls").joinpath("keylog.bpf.o"))


@dataclass(slots=True)
class KeylogStats:
    """What a :class:`KeylogCapture` has seen."""

    handshakes: int = 0
    lines: int = 0
    incomplete: int = 0
    """Records the BPF program could not read in full (or of an unknown protocol): no lines."""
    lost: int = 0
    """Records the ring buffer could not take."""


class KeylogCapture:
    """Write the TLS secrets of processes using ``libssl`` to ``out`` as NSS key log lines (or only
    hand them to ``on_lines`` when ``out`` is ``None``).

    Each line is written once (a handshake both ends of which are hooked gives the same lines twice)
    and flushed at once, so Wireshark can read the file while it grows. ``pid`` limits it to one
    process. ``on_lines`` (optional) is called with the lines of each handshake, from the polling
    thread.

    Raises (from :meth:`start`): :class:`UnsupportedOpenSSLError`, :class:`NoPrivilegeError`,
    :class:`BpfUnsupportedError`, :class:`LibsslNotFoundError`.
    """

    def __init__(
        self,
        out: TextIO | None,
        *,
        libssl: str,
        pid: int | None = None,
        on_lines: Callable[[KeyRecord, list[str]], None] | None = None,
    ) -> None:
        self.out = out
        self.libssl = libssl
        self.pid = pid
        self.on_lines = on_lines
        self.version, self.offsets = offsets_for(libssl)
        self.stats = KeylogStats()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._obj: libbpf.BpfObject | None = None
        self._links: list[libbpf.Link] = []
        self._ring: RingReader | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load the BPF program, give it the offsets and attach it (SSL_do_handshake and the I/O
        functions); then poll in a thread."""
        try:
            libbpf.load_library()
            self._obj = libbpf.BpfObject(bpf_object_path())
            self._obj.load()
        except libbpf.LibbpfError as exc:
            self._close()
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise NoPrivilegeError(f"cannot load the key-log eBPF program: {exc.strerror}") from None
            raise BpfUnsupportedError(f"cannot load the key-log eBPF program: {exc}") from None
        obj = self._obj
        try:
            cfg = _Config(*astuple(self.offsets), os.getpid(), self.pid or 0, 0)
            libbpf.map_update(obj.map_fd("config"), ctypes.c_uint32(0), cfg)
            probes = [(HOOKED_FUNCTION, "handshake")] + [(name, "io") for name in IO_FUNCTIONS]
            for function, program in probes:
                for retprobe, suffix in ((False, "_enter"), (True, "_leave")):
                    link = obj.attach_uprobe(program + suffix, self.libssl, function, retprobe=retprobe)
                    self._links.append(link)
            self._ring = RingReader(obj.map_fd("keys"), KEYS_RING_BYTES)
        except libbpf.LibbpfError as exc:
            self._close()
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise NoPrivilegeError(f"cannot attach the key-log uprobes: {exc.strerror}") from None
            raise LibsslNotFoundError(f"{self.libssl}: cannot hook {HOOKED_FUNCTION}: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="ecaptureq-keylog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Handle what is waiting, then detach (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._ring is not None:
            self._ring.drain(self._on_record)
        if self._obj is not None:
            lost = ctypes.c_uint64(0)
            with contextlib.suppress(libbpf.LibbpfError):
                libbpf.map_lookup(self._obj.map_fd("stats"), ctypes.c_uint32(0), lost)
            self.stats.lost = lost.value
        self._close()

    def _close(self) -> None:
        for link in self._links:
            link.destroy()
        self._links.clear()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def _run(self) -> None:
        while not self._stop.is_set() and self._ring is not None:
            self._ring.wait(0.2)
            self._ring.drain(self._on_record)

    def _on_record(self, data: memoryview) -> None:
        try:
            record = KeyRecord.parse(bytes(data))
        except struct.error:
            self.stats.incomplete += 1
            return
        self.stats.handshakes += 1
        lines = key_log_lines(record)
        if not lines:
            self.stats.incomplete += 1
            return
        fresh = [line for line in lines if line.rsplit(" ", 1)[0] not in self._seen]
        for line in fresh:
            self._seen[line.rsplit(" ", 1)[0]] = None
        while len(self._seen) > _DEDUP:
            self._seen.popitem(last=False)
        if fresh and self.out is not None:
            with self._lock:
                self.out.write("".join(line + "\n" for line in fresh))
                self.out.flush()
            self.stats.lines += len(fresh)
        if self.on_lines is not None:
            self.on_lines(record, lines)


__all__ = [
    "OFFSETS",
    "CaptureError",
    "KeyRecord",
    "KeylogCapture",
    "KeylogStats",
    "Offsets",
    "UnsupportedOpenSSLError",
    "detect_version",
    "hkdf_expand_label",
    "key_log_lines",
    "offsets_for",
]

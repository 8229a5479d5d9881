"""Find every TLS library and program on the host worth hooking, and the TLS code that cannot be hooked.

Sources, in order: files named with ``--libssl`` (only those, when given); the system's libssl, GnuTLS and
NSPR from the dynamic linker cache (so a process started later is covered from its first call); every
executable file mapping of every process (``/proc/PID/maps``), opened through ``/proc/PID/root`` (or
``/proc/PID/map_files``), so copies inside containers, other mount namespaces and private copies found
through ``LD_LIBRARY_PATH`` are hooked too. A file is identified by its device and inode, as the kernel's
uprobes are: one hook covers every process mapping that file.

Each file is classified from its ELF (pyelftools for the headers; plain byte searches of the string tables):

- ``openssl``: a ``libssl`` with ``SSL_read``/``SSL_write``; version from the ``OpenSSL x.y.z`` string of
  its ``libcrypto``;
- ``openssl-static`` / ``boringssl``: any other program or library whose symbol table names
  ``SSL_read``/``SSL_write`` (apt's ``nodejs``, nginx built statically, Envoy);
- ``gnutls``: ``gnutls_record_send``/``gnutls_record_recv``;
- ``nss``: NSPR's ``PR_Write``/``PR_Read``/``PR_Send``/``PR_Recv`` (the eBPF side keeps SSL descriptors only);
- ``go``: Go's ``crypto/tls`` (:mod:`ecaptureq.sources.tls.gotls`), stripped binaries included.

Programs that carry TLS code we do not hook (rustls, Java's JSSE, OpenSSL linked statically without
symbols, Go built for the stack ABI) are reported as :class:`Unsupported`, with the reason.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ecaptureq.sources.tls.gotls import GoBinaryError, GoTls, go_tls, vaddr_to_offset
from ecaptureq.sources.tls.locate import libssl_from_ldconfig

KIND_OPENSSL: Final = "openssl"
KIND_OPENSSL_STATIC: Final = "openssl-static"
KIND_BORINGSSL: Final = "boringssl"
KIND_GNUTLS: Final = "gnutls"
KIND_NSS: Final = "nss"
KIND_GO: Final = "go"

OPENSSL_FUNCTIONS: Final = ("SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex")
"""OpenSSL's functions hooked; the first two are required (BoringSSL and OpenSSL 1.1.0 lack the others)."""
GNUTLS_FUNCTIONS: Final = ("gnutls_record_send", "gnutls_record_recv")
NSS_FUNCTIONS: Final = ("PR_Write", "PR_Send", "PR_Read", "PR_Recv")

_SYM: Final = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size
_STT_FUNC: Final = 2
_SYSTEM_SONAMES: Final = ("libgnutls.so.30", "libnspr4.so")
_OPENSSL_VERSION: Final = re.compile(rb"OpenSSL (\d+\.\d+\.\d+[a-z]*)")
_GNUTLS_VERSION: Final = re.compile(rb"\x00(3\.\d+\.\d+)\x00")
_NSPR_VERSION: Final = re.compile(rb"\x00(4\.\d+(?:\.\d+)?)\x00")
_RUSTLS_VERSION: Final = re.compile(rb"rustls-(\d+\.\d+\.\d+)")
_LIBSSL_NAME: Final = re.compile(r"(?:^|/)libssl\.so(?:\.[0-9][0-9a-z.]*)?$")
_SKIP_NAMES: Final = re.compile(r"(?:^|/)(?:libgnutls-openssl|libcrypto\.so|libssl3\.so|ld-linux)")


@dataclass(frozen=True, slots=True)
class FileId:
    """A file as the kernel's uprobes know it: device (``major:minor``) and inode."""

    major: int
    minor: int
    inode: int

    @property
    def kernel_dev(self) -> int:
        """The device number as the kernel's ``s_dev`` encodes it (``major << 20 | minor``)."""
        return (self.major << 20) | self.minor

    @classmethod
    def of(cls, path: str) -> FileId:
        """The id of the file at ``path`` (raises ``OSError``)."""
        st = os.stat(path)
        return cls(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


@dataclass(slots=True)
class Target:
    """One file to hook, with what is hooked in it."""

    kind: str
    path: str
    """A path to the file from this process's mount namespace (may go through ``/proc/PID/root``)."""
    shown: str
    """The path as the processes mapping it name it."""
    version: str
    how: str
    """How it was found: ``given`` (named by the caller), ``ldconfig -p``, ``/proc/PID/maps``,
    ``exec watcher``."""
    file_id: FileId
    functions: tuple[str, ...] = ()
    go: GoTls | None = None
    users: dict[int, str] = field(default_factory=dict)
    """Processes mapping it when found: pid -> comm."""
    offsets: dict[str, int] = field(default_factory=dict)
    """File offsets of ``functions`` (those the file defines)."""

    @property
    def label(self) -> str:
        """Kind and version, e.g. ``openssl 3.0.19``."""
        return f"{self.kind} {self.version}".strip()


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A process using TLS code that is not hooked, and why."""

    pid: int
    comm: str
    path: str
    what: str
    why: str


@dataclass(slots=True)
class Discovery:
    """The result of a scan: files to hook (one per :class:`FileId`) and unsupported TLS users."""

    targets: dict[FileId, Target] = field(default_factory=dict)
    unsupported: list[Unsupported] = field(default_factory=list)
    seen: set[FileId] = field(default_factory=set)
    """Every file examined (hooked or not): the exec watcher ignores these."""


class NotTlsError(ValueError):
    """The file has nothing to hook."""


@dataclass(frozen=True, slots=True)
class _Classified:
    kind: str
    version: str
    functions: tuple[str, ...]
    go: GoTls | None = None
    unsupported: tuple[str, str] | None = None  # (what, why)
    offsets: dict[str, int] = field(default_factory=dict)


def function_offsets(elf: ELFFile, sections: _Sections, names: Iterable[str]) -> dict[str, int]:
    """File offsets of the functions ``names`` that ``elf`` defines (``.dynsym``, then ``.symtab``).

    Resolved once here, the probes are attached by offset: libbpf would otherwise parse the symbol
    tables again for every probe. The tables are read raw with :data:`_SYM` (pyelftools builds an object
    per symbol or parses the whole hash table, far too slow for node's 40,000 symbols when a freshly
    started program must be hooked within milliseconds).
    """
    wanted = list(names)
    out: dict[str, int] = {}
    if elf.elfclass != 64 or not elf.little_endian:
        return out
    mapped = sections.mapped  # searched in place: node's tables are megabytes, copies cost milliseconds
    for symbols, strings in ((".dynsym", ".dynstr"), (".symtab", ".strtab")):
        if symbols not in sections.spans or strings not in sections.spans:
            continue
        (sym_start, sym_end), (str_start, str_end) = sections.spans[symbols], sections.spans[strings]
        # Every offset where the name starts and ends (linkers share string tails: "SSL_read" may be
        # the end of a longer name, so it is not necessarily preceded by a NUL).
        starts: dict[int, str] = {}
        for name in wanted:
            if name in out:
                continue
            needle = name.encode() + b"\0"
            at = mapped.find(needle, str_start, str_end)
            while at >= 0:
                starts[at - str_start] = name
                at = mapped.find(needle, at + 1, str_end)
        # The symbols naming those strings: their st_name (an entry's first 4 bytes) is searched for in
        # the table, keeping only hits at an entry boundary.
        for at, name in starts.items():
            key = at.to_bytes(4, "little")
            hit = mapped.find(key, sym_start, sym_end)
            while hit >= 0 and name not in out:
                if (hit - sym_start) % _SYM.size == 0:
                    _n, st_info, _other, st_shndx, st_value, _size = _SYM.unpack_from(mapped, hit)
                    if st_shndx != 0 and st_info & 0xF == _STT_FUNC:
                        offset = vaddr_to_offset(elf, st_value)
                        if offset is not None and offset < len(mapped):  # a damaged file lies
                            out[name] = offset
                hit = mapped.find(key, hit + 1, sym_end)
    return out


def _defined(
    elf: ELFFile, sections: _Sections, functions: tuple[str, ...], required: int
) -> dict[str, int] | None:
    """Offsets of ``functions`` when ``elf`` defines (not merely imports) the first ``required`` of them."""
    if not all(sections.contains(f) for f in functions[:required]):  # cheap: absent names are not defined
        return None
    offsets = function_offsets(elf, sections, functions)
    return offsets if all(f in offsets for f in functions[:required]) else None


_SHDR: Final = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SHT_NOBITS: Final = 8


class _Sections:
    """Name -> file span of an ELF64 file's sections, read straight from the section header table.

    pyelftools' ``get_section_by_name`` builds every section object first, and building ``.gnu.hash``
    parses the whole table: tens of milliseconds for node, on the path of hooking a program just started.
    """

    def __init__(self, elf: ELFFile, mapped: mmap.mmap) -> None:
        self.mapped = mapped
        self.spans: dict[str, tuple[int, int]] = {}
        if elf.elfclass != 64 or not elf.little_endian:
            return
        offset, count, names_index = elf["e_shoff"], elf["e_shnum"], elf["e_shstrndx"]
        headers = [_SHDR.unpack_from(mapped, offset + i * _SHDR.size) for i in range(count)]
        if not 0 <= names_index < count:
            return
        names_at = headers[names_index][4]
        for sh_name, sh_type, _flags, _addr, sh_offset, sh_size, *_rest in headers:
            end = mapped.find(b"\0", names_at + sh_name)
            name = mapped[names_at + sh_name : end].decode("ascii", "replace")
            if sh_type != _SHT_NOBITS and sh_offset + sh_size <= len(mapped):
                self.spans.setdefault(name, (sh_offset, sh_offset + sh_size))

    def data(self, name: str) -> bytes:
        """The bytes of section ``name`` (empty when absent)."""
        start, end = self.spans.get(name, (0, 0))
        return self.mapped[start:end]

    def contains(self, symbol: str) -> bool:
        """True when ``.dynstr`` or ``.strtab`` holds the string ``symbol`` (searched in place)."""
        needle = symbol.encode() + b"\0"
        for table in (".dynstr", ".strtab"):
            if table in self.spans and self.mapped.find(needle, *self.spans[table]) >= 0:
                return True
        return False

    def span(self, name: str) -> tuple[int, int]:
        """The file span of section ``name``, or the whole file when absent."""
        return self.spans.get(name, (0, len(self.mapped)))


def _search(mapped: mmap.mmap, pattern: re.Pattern[bytes], span: tuple[int, int] | None = None) -> str:
    match = pattern.search(mapped, *(span or (0, len(mapped))))
    return match.group(1).decode("ascii", "replace") if match else ""


def _openssl_version(path: str, mapped: mmap.mmap) -> str:
    found = _search(mapped, _OPENSSL_VERSION)
    if found:
        return found
    # A shared libssl keeps its version string in the libcrypto beside it.
    directory = os.path.dirname(path)
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.startswith("libcrypto.so"):
                with (
                    open(os.path.join(directory, name), "rb") as f,
                    mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as crypto,
                ):
                    found = _search(crypto, _OPENSSL_VERSION)
                if found:
                    return found
    return ""


_MALFORMED: Final = (ELFError, struct.error, ValueError, IndexError, KeyError, OverflowError, EOFError)
"""What parsing a malformed ELF (any process's files are hostile input) can raise."""


def classify(path: str, shown: str | None = None, *, executable: bool = False) -> _Classified:
    """What to hook in the ELF file at ``path`` (``shown`` is its name for people).

    Raises :class:`NotTlsError` when there is nothing to hook or report (a malformed file included),
    ``OSError`` when unreadable. ``executable`` asks for the (costlier) search for unsupported TLS code in
    a process's main program.
    """
    try:
        return _classify(path, shown or path, executable)
    except NotTlsError:
        raise
    except _MALFORMED as exc:
        raise NotTlsError(f"{shown or path}: malformed ELF ({type(exc).__name__}: {exc})") from None


def _classify(path: str, shown: str, executable: bool) -> _Classified:
    if _SKIP_NAMES.search(shown):
        raise NotTlsError(shown)
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            raise NotTlsError(shown)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    with mapped:  # pyelftools reads the mapping: no system call (nor GIL release) per read
        try:
            elf = ELFFile(mapped)  # type: ignore[arg-type]  # a mmap is a seekable binary stream
            sections = _Sections(elf, mapped)
        except (ELFError, struct.error):
            raise NotTlsError(shown) from None
        if ".gopclntab" in sections.spans or ".go.buildinfo" in sections.spans:
            try:
                found = go_tls(elf)
            except GoBinaryError as exc:
                return _Classified(KIND_GO, "", (), unsupported=("Go crypto/tls", exc.reason))
            if found is None:
                raise NotTlsError(shown)
            return _Classified(KIND_GO, found.version, (), go=found)
        symbol_tables = [sections.spans[t] for t in (".dynstr", ".strtab") if t in sections.spans]
        rodata = sections.span(".rodata")
        offsets = _defined(elf, sections, OPENSSL_FUNCTIONS, 2)
        if offsets is not None:
            if _LIBSSL_NAME.search(shown):
                version = _openssl_version(path, mapped)
                return _Classified(KIND_OPENSSL, version, OPENSSL_FUNCTIONS, offsets=offsets)
            version = _search(mapped, _OPENSSL_VERSION, rodata)
            if not version and mapped.find(b"BoringSSL", *rodata) >= 0:  # BoringSSL names no version
                return _Classified(KIND_BORINGSSL, "", OPENSSL_FUNCTIONS, offsets=offsets)
            return _Classified(KIND_OPENSSL_STATIC, version, OPENSSL_FUNCTIONS, offsets=offsets)
        offsets = _defined(elf, sections, GNUTLS_FUNCTIONS, len(GNUTLS_FUNCTIONS))
        if offsets is not None:
            version = _search(mapped, _GNUTLS_VERSION, rodata)
            return _Classified(KIND_GNUTLS, version, GNUTLS_FUNCTIONS, offsets=offsets)
        offsets = _defined(elf, sections, NSS_FUNCTIONS, len(NSS_FUNCTIONS))
        if offsets is not None:
            version = "nspr " + _search(mapped, _NSPR_VERSION, rodata)
            return _Classified(KIND_NSS, version, NSS_FUNCTIONS, offsets=offsets)
        if executable:
            rustls = _RUSTLS_VERSION.search(mapped, *rodata)
            if rustls or any(mapped.find(b"rustls", *span) >= 0 for span in symbol_tables):
                version = rustls.group(1).decode() if rustls else ""
                return _Classified(
                    "rustls",
                    version,
                    (),
                    unsupported=(f"rustls {version}".strip(), "Rust TLS has no stable symbols to hook"),
                )
            if not symbol_tables and mapped.find(b"BoringSSL", *rodata) >= 0:
                return _Classified(
                    KIND_BORINGSSL,
                    "",
                    (),
                    unsupported=(
                        "BoringSSL (static)",
                        "linked statically and stripped: no symbol to hook",
                    ),
                )
            openssl = _OPENSSL_VERSION.search(mapped, *rodata)
            if openssl and not symbol_tables:
                return _Classified(
                    KIND_OPENSSL_STATIC,
                    openssl.group(1).decode(),
                    (),
                    unsupported=(
                        f"OpenSSL {openssl.group(1).decode()} (static)",
                        "linked statically and stripped: no SSL_read/SSL_write symbol to hook",
                    ),
                )
    raise NotTlsError(shown)


def _version_from_libcrypto(pid: int, mappings: list[Mapping]) -> str:
    """The OpenSSL version in the ``libcrypto`` process ``pid`` maps (a libssl copied without it)."""
    for mapping in mappings:
        if "/libcrypto.so" in mapping.path:
            path = reachable_path(pid, mapping)
            if path is None:
                continue
            with (
                contextlib.suppress(OSError, ValueError),
                open(path, "rb") as f,
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            ):
                return _search(mapped, _OPENSSL_VERSION)
    return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass(frozen=True, slots=True)
class Mapping:
    """An executable file mapping of a process."""

    path: str
    file_id: FileId
    start: str
    end: str


def executable_mappings(pid: int) -> list[Mapping]:
    """The files mapped executable by process ``pid`` (one entry per file), from ``/proc/PID/maps``."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    out: dict[FileId, Mapping] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
            continue
        inode = int(parts[4])
        if inode == 0:
            continue
        major, _, minor = parts[3].partition(":")
        fid = FileId(int(major, 16), int(minor, 16), inode)
        if fid not in out:
            start, _, end = parts[0].partition("-")
            out[fid] = Mapping(parts[5].removesuffix(" (deleted)"), fid, start, end)
    return list(out.values())


def reachable_path(pid: int, mapping: Mapping) -> str | None:
    """A path to the mapped file from here whose device and inode match the mapping's, or ``None``."""
    candidates = [mapping.path, f"/proc/{pid}/root{mapping.path}"]
    candidates.append(f"/proc/{pid}/map_files/{mapping.start}-{mapping.end}")
    for candidate in candidates:
        try:
            if FileId.of(candidate) == mapping.file_id:
                return candidate
        except OSError:
            continue
    return None


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


class Scanner:
    """Classifies files once (by :class:`FileId`) and accumulates a :class:`Discovery`."""

    def __init__(self, result: Discovery | None = None, *, exclude_pid: int | None = None) -> None:
        self.result = result or Discovery()
        self.exclude_pid = os.getpid() if exclude_pid is None else exclude_pid

    def add_file(self, path: str, how: str, *, shown: str | None = None) -> Target | None:
        """Classify the file at ``path`` and keep it as a target; ``None`` when there is nothing to hook.

        Raises ``OSError`` when the file cannot be read, :class:`NotTlsError` when it is not TLS code.
        """
        fid = FileId.of(path)
        if fid in self.result.targets:
            return self.result.targets[fid]
        self.result.seen.add(fid)
        found = classify(path, shown)
        if found.unsupported:
            raise NotTlsError(f"{shown or path}: {found.unsupported[1]}")
        target = Target(
            found.kind, path, shown or path, found.version, how, fid, found.functions, found.go,
            offsets=found.offsets,
        )  # fmt: skip
        self.result.targets[fid] = target
        return target

    def add_system_libraries(self) -> None:
        """The system's libssl, GnuTLS and NSPR (dynamic linker cache), mapped or not."""
        paths = [libssl_from_ldconfig(), *_ldconfig_paths(_SYSTEM_SONAMES)]
        for path in paths:
            if path:
                with contextlib.suppress(OSError, NotTlsError):
                    self.add_file(path, "ldconfig -p")

    def scan_process(self, pid: int, how: str | None = None) -> list[Target]:
        """Classify every file process ``pid`` maps executable; return the targets new to this scan."""
        if pid == self.exclude_pid:
            return []
        comm = _comm(pid)
        new: list[Target] = []
        mappings = executable_mappings(pid)
        exe = _exe_id(pid)
        for mapping in mappings:
            fid = mapping.file_id
            if fid in self.result.targets:
                self.result.targets[fid].users.setdefault(pid, comm)
                continue
            if fid in self.result.seen:
                continue
            self.result.seen.add(fid)
            path = reachable_path(pid, mapping)
            if path is None:
                continue
            try:
                found = classify(path, mapping.path, executable=fid == exe)
            except (OSError, NotTlsError):
                continue
            if found.unsupported:
                what, why = found.unsupported
                self.result.unsupported.append(Unsupported(pid, comm, mapping.path, what, why))
                continue
            version = found.version
            if not version and found.kind == KIND_OPENSSL:
                version = _version_from_libcrypto(pid, mappings)
            target = Target(
                found.kind,
                path,
                mapping.path,
                version,
                how or f"/proc/{pid}/maps",
                fid,
                found.functions,
                found.go,
                {pid: comm},
                found.offsets,
            )
            self.result.targets[fid] = target
            new.append(target)
        if any(_JVM.search(m.path) for m in mappings):
            self.result.unsupported.append(
                Unsupported(
                    pid, comm, next(m.path for m in mappings if _JVM.search(m.path)), "Java (JSSE)",
                    "Java's TLS runs as JIT-compiled bytecode: no native function to hook",
                )
            )  # fmt: skip
        return new

    def scan_all(self, *, pid: int | None = None, uid: int | None = None) -> None:
        """Scan every process (or just ``pid``, or those of ``uid``)."""
        pids: Iterable[int] = [pid] if pid is not None else _pids()
        for p in pids:
            if uid is not None and _uid_of(p) != uid:
                continue
            self.scan_process(p)


_JVM: Final = re.compile(r"(?:^|/)libjvm\.so$")


def _exe_id(pid: int) -> FileId | None:
    try:
        return FileId.of(f"/proc/{pid}/exe")
    except OSError:
        return None


def _ldconfig_paths(sonames: tuple[str, ...]) -> list[str]:
    """The x86-64 files the dynamic linker cache (``ldconfig -p``, run once) resolves ``sonames`` to."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name, sep, path = line.strip().partition(" => ")
        soname = name.split(" ", 1)[0]
        if sep and soname in sonames and "x86-64" in name and os.path.exists(path):
            found.setdefault(soname, os.path.realpath(path))
    return [found[s] for s in sonames if s in found]


def discover(*, libssl: Iterable[str] = (), pid: int | None = None, uid: int | None = None) -> Discovery:
    """Everything to hook: the ``libssl`` files if given (only those), else the system libraries and
    every process's mappings (only ``pid``'s, or ``uid``'s processes', when given).

    Raises :class:`NotTlsError` or ``OSError`` for a ``libssl`` file that cannot be hooked.
    """
    scanner = Scanner()
    files = list(libssl)
    if files:
        for path in files:
            scanner.add_file(path, "given")
        return scanner.result
    if pid is None:
        scanner.add_system_libraries()
    scanner.scan_all(pid=pid, uid=uid)
    return scanner.result


def format_listing(found: Discovery) -> str:
    """The ``ecaptureq tls --list`` table: a row per file and process mapping it, then what is not hooked."""
    rows = [("PID", "COMM", "KIND", "VERSION", "FOUND BY", "FILE")]
    for target in found.targets.values():
        kind = target.kind + (" (stripped)" if target.go and target.go.stripped else "")
        users = sorted(target.users.items()) or [(0, "")]
        for pid, comm in users:
            rows.append(
                (str(pid) if pid else "-", comm or "-", kind, target.version or "?", target.how, target.shown)
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=False)) + "  " + r[5] for r in rows]
    if found.unsupported:
        lines.append("")
        lines.append("not hooked:")
        for u in found.unsupported:
            lines.append(f"{u.pid:<7} {u.comm:<15} {u.what}: {u.why} ({u.path})")
    return "\n".join(lines) + "\n"

"""Find the OpenSSL ``libssl`` to hook, and the TCP 4-tuple of a socket fd through ``/proc``."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

from ecaptureq.sources.tls.errors import LibsslNotFoundError, PidNotFoundError

_LIBSSL_NAME = re.compile(r"(?:^|/)libssl\.so(?:\.[0-9][0-9a-z.]*)?$")
_PREFERRED: Final = ("libssl.so.3", "libssl.so.1.1", "libssl.so")
_FALLBACK_DIRS: Final = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
)


def check_pid(pid: int) -> None:
    """Raise :class:`PidNotFoundError` unless a process ``pid`` exists."""
    if pid <= 0 or not Path(f"/proc/{pid}").is_dir():
        raise PidNotFoundError(f"no process with PID {pid}")


def libssl_from_ldconfig() -> str | None:
    """The OpenSSL libssl the dynamic linker cache (``ldconfig -p``) resolves, newest ABI first."""
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    found: dict[str, str] = {}
    if ldconfig:
        try:
            out = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.splitlines():
            name, sep, path = line.strip().partition(" => ")
            soname = name.split(" ", 1)[0]
            if sep and soname in _PREFERRED and "x86-64" in name and os.path.exists(path):
                found.setdefault(soname, path)
    for soname in _PREFERRED:
        if soname in found:
            return os.path.realpath(found[soname])
    for directory in _FALLBACK_DIRS:
        for soname in _PREFERRED:
            candidate = os.path.join(directory, soname)
            if os.path.exists(candidate):
                return os.path.realpath(candidate)
    return None


def libssl_from_maps(pid: int) -> str | None:
    """The libssl mapped into process ``pid`` (from ``/proc/PID/maps``), seen through its root."""
    check_pid(pid)
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        raise PidNotFoundError(f"no process with PID {pid}") from None
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and _LIBSSL_NAME.search(parts[5].strip()):
            path = parts[5].strip()
            rooted = f"/proc/{pid}/root{path}"
            return path if os.path.exists(path) else rooted
    return None


def find_libssl(libssl: str | None = None, pid: int | None = None) -> str:
    """Resolve the libssl to hook: ``libssl`` if given, else the one ``pid`` maps, else ldconfig's.

    Raises :class:`LibsslNotFoundError` or :class:`PidNotFoundError`.
    """
    if pid is not None:
        check_pid(pid)
    if libssl:
        if not os.path.isfile(libssl):
            raise LibsslNotFoundError(f"libssl not found: {libssl}", searched="path")
        return libssl
    if pid is not None:
        found = libssl_from_maps(pid)
        if found is None:
            raise LibsslNotFoundError(
                f"process {pid} has no libssl mapped (not OpenSSL, or linked statically)", searched="pid"
            )
        return found
    found = libssl_from_ldconfig()
    if found is None:
        raise LibsslNotFoundError(
            "libssl not found in the dynamic linker cache (ldconfig -p)", searched="ldconfig"
        )
    return found


def _parse_addr(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(raw[::-1])
    else:
        # /proc prints IPv6 as four host-order 32-bit words.
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        v6 = ipaddress.IPv6Address(words)
        ip = v6.ipv4_mapped or v6
    return str(ip), int(port, 16)


class SocketResolver:
    """The TCP 4-tuple (local, remote) of ``(pid, fd)`` from ``/proc/PID/fd`` and ``/proc/PID/net/tcp*``.

    Results are cached per socket inode; a reused fd number is noticed because its inode changes.
    """

    def __init__(self) -> None:
        self._by_inode: dict[tuple[int, int], tuple[str, int, str, int] | None] = {}

    def lookup(self, pid: int, fd: int) -> tuple[str, int, str, int] | None:
        """``(src_ip, src_port, dst_ip, dst_port)`` of the socket, or ``None`` when unknown."""
        if fd < 0:
            return None
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None
        if not target.startswith("socket:["):
            return None
        inode = int(target[8:-1])
        key = (pid, inode)
        if key in self._by_inode:
            return self._by_inode[key]
        result = None
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if len(cols) > 9 and cols[9] == str(inode):
                    src, sport = _parse_addr(cols[1])
                    dst, dport = _parse_addr(cols[2])
                    result = (src, sport, dst, dport)
                    break
            if result:
                break
        if len(self._by_inode) > 65536:
            self._by_inode.clear()
        self._by_inode[key] = result
        return result

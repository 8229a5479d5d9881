"""Errors a user can cause when starting a TLS capture; the CLI maps each to its own exit code."""

from __future__ import annotations


class CaptureError(Exception):
    """The capture cannot start."""


class NoPrivilegeError(CaptureError):
    """Not root (or lacking CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)."""


class BpfUnsupportedError(CaptureError):
    """The kernel (or libbpf) cannot load or attach the eBPF program: no BTF, no uprobes, too old."""


class LibsslNotFoundError(CaptureError):
    """No OpenSSL libssl to hook (or none with SSL_write/SSL_read).

    ``searched`` says where: ``"ldconfig"`` (the dynamic linker cache, when no file or process was named:
    naming the file is the way out), ``"path"`` (a named file), ``"pid"`` (a named process's mappings),
    or ``""`` (a file that was found but cannot be hooked).
    """

    def __init__(self, message: str, *, searched: str = "") -> None:
        super().__init__(message)
        self.searched = searched


class PidNotFoundError(CaptureError):
    """The ``--pid`` process does not exist."""

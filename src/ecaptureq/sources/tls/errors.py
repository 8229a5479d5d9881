"""Errors a user can cause when starting a TLS capture; the CLI maps each to its own exit code."""

from __future__ import annotations


class CaptureError(Exception):
    """The capture cannot start."""


class NoPrivilegeError(CaptureError):
    """Not root (or lacking CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)."""


class BpfUnsupportedError(CaptureError):
    """The kernel (or libbpf) cannot load or attach the eBPF program: no BTF, no uprobes, too old."""


class LibsslNotFoundError(CaptureError):
    """No OpenSSL libssl to hook (or none with SSL_write/SSL_read)."""


class PidNotFoundError(CaptureError):
    """The ``--pid`` process does not exist."""

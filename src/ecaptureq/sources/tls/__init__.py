"""Real TLS capture: eBPF uprobes on OpenSSL's SSL_write/SSL_read, driven through libbpf from Python.

The names below are imported from their modules when first used (PEP 562): the capture's modules bring
pyelftools, ctypes and libbpf's bindings, which a command that only names an option's default (``agent``
without ``--tls``) need not load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ecaptureq.lazy import lazy_attributes

if TYPE_CHECKING:
    from ecaptureq.sources.tls.capture import (
        HOOKED_FUNCTIONS,
        MAX_EVENT_PAYLOAD,
        Aggregator,
        CaptureStats,
        Chunk,
        TlsCapture,
        banner,
        bpf_object_path,
    )
    from ecaptureq.sources.tls.errors import (
        BpfUnsupportedError,
        CaptureError,
        LibsslNotFoundError,
        NoPrivilegeError,
        PidNotFoundError,
    )
    from ecaptureq.sources.tls.locate import SocketResolver, find_libssl
    from ecaptureq.sources.tls.ringbuf import DEFAULT_BUFFER_MIB

__all__ = [
    "DEFAULT_BUFFER_MIB",
    "HOOKED_FUNCTIONS",
    "MAX_EVENT_PAYLOAD",
    "Aggregator",
    "BpfUnsupportedError",
    "CaptureError",
    "CaptureStats",
    "Chunk",
    "LibsslNotFoundError",
    "NoPrivilegeError",
    "PidNotFoundError",
    "SocketResolver",
    "TlsCapture",
    "banner",
    "bpf_object_path",
    "find_libssl",
]

_MODULES: Final = ("errors", "locate", "ringbuf", "capture")
"""Where the names of ``__all__`` are defined, the lightest first (``capture`` imports the others)."""


__getattr__ = lazy_attributes(__name__, _MODULES, __all__)

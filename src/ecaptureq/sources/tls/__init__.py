"""Real TLS capture: eBPF uprobes on OpenSSL's SSL_write/SSL_read, driven through libbpf from Python."""

from ecaptureq.sources.tls.capture import (
    DEFAULT_BUFFER_MIB,
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

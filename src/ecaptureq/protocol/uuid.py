"""eCapture's connection uuid: ``<pid>_<tid>_<comm>_<fd>`` optionally followed by ``_<data_type>``.

The comm may itself contain underscores, so pid and tid are read from the left and fd and data_type from
the right. :func:`format_uuid` writes the form :func:`parse_uuid` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DATA_TYPE_READ: Final = 0
"""The uuid ``data_type`` of data the traced process read (``SSL_read``).

eCapture's probe numbers them ``enum ssl_data_event_type { kSSLRead, kSSLWrite }``, and ecaptureq's own
eBPF source and demo use the same numbers. Only the reported ``direction`` depends on them: the decoder
pairs requests and responses by what the bytes say, not by the number.
"""
DATA_TYPE_WRITE: Final = 1
"""The uuid ``data_type`` of data the traced process wrote (``SSL_write``)."""


@dataclass(frozen=True, slots=True)
class UuidInfo:
    """The parts of an eCapture uuid; a part that could not be read is ``None`` (``comm`` is ``""``).

    ``parsed`` says the uuid had the expected shape at all.
    """

    raw: str
    pid: int | None = None
    tid: int | None = None
    comm: str = ""
    fd: int | None = None
    data_type: int | None = None
    parsed: bool = False

    @property
    def connection(self) -> str:
        """The uuid without its ``data_type`` suffix: the key both directions of a connection share."""
        if self.pid is None or self.tid is None or self.fd is None:  # not parsed
            return self.raw
        return format_uuid(self.pid, self.tid, self.comm, self.fd)


def parse_uuid(uuid: str) -> UuidInfo:
    """Parse ``<pid>_<tid>_<comm>_<fd>[_<data_type>]``; never raises.

    >>> parse_uuid("2746_2746_curl_5_0").fd
    5
    >>> parse_uuid("9_10_my_app_7").comm
    'my_app'
    """
    parts = uuid.split("_")
    if len(parts) < 4 or not (parts[0].isdigit() and parts[1].isdigit()):
        return UuidInfo(raw=uuid)
    pid, tid = int(parts[0]), int(parts[1])
    rest = parts[2:]
    # With five or more parts and two trailing numbers, the last one is the data_type; a comm that
    # ends in "_<digits>" is then read into the comm, which is the rarer case.
    if len(rest) >= 3 and rest[-1].isdigit() and rest[-2].isdigit():
        return UuidInfo(uuid, pid, tid, "_".join(rest[:-2]), int(rest[-2]), int(rest[-1]), True)
    if rest[-1].isdigit():
        return UuidInfo(uuid, pid, tid, "_".join(rest[:-1]), int(rest[-1]), None, True)
    return UuidInfo(uuid, pid, tid, "_".join(rest), None, None, False)


def format_uuid(pid: int, tid: int, comm: str, fd: int, data_type: int | None = None) -> str:
    """The uuid eCapture sends for a connection (with ``_<data_type>`` when given).

    >>> format_uuid(2746, 2746, "curl", 5, DATA_TYPE_READ)
    '2746_2746_curl_5_0'
    """
    base = f"{pid}_{tid}_{comm}_{fd}"
    return base if data_type is None else f"{base}_{data_type}"

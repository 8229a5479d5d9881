"""The capture database: a durable SQLite store with the eCaptureQ GUI's ``packets`` table and SQL.

The names are imported from their modules when first used (PEP 562): the schema's errors do not bring the
writer and, through it, the HTTP decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ecaptureq.lazy import lazy_attributes

if TYPE_CHECKING:
    from ecaptureq.store.schema import (
        PACKET_COLUMNS,
        SCHEMA_VERSION,
        DamagedDatabase,
        FilterError,
        NotCaptureDatabase,
        StoreError,
    )
    from ecaptureq.store.sql import (
        QUERY_SECONDS,
        Deadline,
        PacketFilter,
        QueryTimeout,
        SqlError,
        open_readonly,
        packets_sql,
        quote_index,
        run_query,
    )
    from ecaptureq.store.writer import CaptureStore, StoreStats

__all__ = [
    "PACKET_COLUMNS",
    "QUERY_SECONDS",
    "SCHEMA_VERSION",
    "CaptureStore",
    "DamagedDatabase",
    "Deadline",
    "FilterError",
    "NotCaptureDatabase",
    "PacketFilter",
    "QueryTimeout",
    "SqlError",
    "StoreError",
    "StoreStats",
    "open_readonly",
    "packets_sql",
    "quote_index",
    "run_query",
]

_MODULES: Final = ("schema", "sql", "writer")
"""Where the names of ``__all__`` are defined, the lightest first."""

__getattr__ = lazy_attributes(__name__, _MODULES, __all__)

"""The capture database: a durable SQLite store with the eCaptureQ GUI's ``packets`` table and SQL."""

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

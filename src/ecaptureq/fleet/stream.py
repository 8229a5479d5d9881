"""The JetStream stream the fleet writes into: created when missing, with documented retention."""

from __future__ import annotations

from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import api

from ecaptureq.fleet.connection import Connection
from ecaptureq.fleet.subjects import (
    DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    STREAM,
    SUBJECT_ROOT,
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how much the stream keeps (``None``: the default when creating, unchanged otherwise).

    Attributes:
        max_age: seconds a message is kept.
        max_bytes: the most bytes the stream holds; the oldest messages are discarded first.
        duplicate_window: seconds JetStream remembers a ``Nats-Msg-Id``.
    """

    max_age: float | None = None
    max_bytes: int | None = None
    duplicate_window: float | None = None


async def ensure_stream(conn: Connection, retention: Retention | None = None) -> api.StreamInfo:
    """Return the stream's info, creating it when missing (and applying retention options given).

    Raises:
        FleetError: the server did not answer (no JetStream), or refused (permissions).
    """
    js = conn.js
    retention = retention or Retention()
    try:
        info = await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        try:
            return await js.add_stream(
                name=STREAM,
                subjects=[f"{SUBJECT_ROOT}.>"],
                retention=api.RetentionPolicy.LIMITS,
                discard=api.DiscardPolicy.OLD,
                storage=api.StorageType.FILE,
                max_age=retention.max_age or DEFAULT_MAX_AGE,
                max_bytes=retention.max_bytes or DEFAULT_MAX_BYTES,
                duplicate_window=retention.duplicate_window or DEFAULT_DUPLICATE_WINDOW,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.Error):
            raise conn.refused(f"creating stream {STREAM}") from None
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        raise conn.refused(f"stream {STREAM}'s info") from None
    changes = {
        key: value
        for key, value in (
            ("max_age", retention.max_age),
            ("max_bytes", retention.max_bytes),
            ("duplicate_window", retention.duplicate_window),
        )
        if value is not None and getattr(info.config, key) != value
    }
    if changes:
        try:
            return await js.update_stream(
                api.StreamConfig.from_response({**info.config.as_dict(), **changes})
            )
        except (nats.errors.TimeoutError, nats.js.errors.Error):
            raise conn.refused(f"updating stream {STREAM}'s retention") from None
    return info

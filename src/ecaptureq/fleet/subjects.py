"""Every fact of the fleet's wire layout: the stream, its subjects, the message headers, node names.

An agent publishes each eCaptureQ ``LogEntry`` unchanged as the body of one NATS message on
``ecaptureq.<node>.event``, ``ecaptureq.<node>.log`` or ``ecaptureq.<node>.heartbeat``, with the headers
below. Readers (the collector, ``watch nats://``, ``ui --nats``) consume the JetStream stream
:data:`STREAM` that captures ``ecaptureq.>``.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import socket
from dataclasses import dataclass
from typing import Final

STREAM: Final = "ECAPTUREQ"
"""The JetStream stream every agent publishes into (created by the tools when missing)."""

SUBJECT_ROOT: Final = "ecaptureq"
"""First token of every subject."""

KINDS: Final = ("event", "log", "heartbeat")
"""The last token of a subject: which kind of ``LogEntry`` the body holds."""

HEADER_NODE: Final = "Ecaptureq-Node"
"""The node (host) the agent runs on; also the second token of the subject."""
HEADER_SOURCE: Final = "Ecaptureq-Source"
"""What the agent reads: ``tls``, ``demo``, ``replay:FILE`` or the relayed ``ws://`` URL."""
HEADER_AGENT: Final = "Ecaptureq-Agent"
"""The agent's spool id: random, kept in the spool file, so it survives restarts of the agent."""
HEADER_SEQ: Final = "Ecaptureq-Seq"
"""The agent's sequence number of the message (1, 2, ... per spool, never reused)."""
HEADER_MSG_ID: Final = "Nats-Msg-Id"
"""JetStream's de-duplication id (``<agent>-<seq>``): a re-publish after a reconnect is stored once."""

DEFAULT_MAX_AGE: Final = 7 * 24 * 3600.0
"""Default retention of the stream, in seconds (``--max-age``)."""
DEFAULT_MAX_BYTES: Final = 10 * 1024**3
"""Default size bound of the stream, in bytes (``--max-bytes``); the oldest messages go first."""
DEFAULT_DUPLICATE_WINDOW: Final = 600.0
"""How long JetStream remembers a ``Nats-Msg-Id``, in seconds: re-publishes within it are dropped."""


def message_headers(node: str, source: str, agent: str, seq: int) -> dict[str, str]:
    """The headers of the message an agent (spool id ``agent``) publishes as its ``seq``-th."""
    return {
        HEADER_MSG_ID: f"{agent}-{seq}",
        HEADER_NODE: node,
        HEADER_SOURCE: source,
        HEADER_AGENT: agent,
        HEADER_SEQ: str(seq),
    }


_NODE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class BadNodeName(ValueError):
    """A node name that cannot be a subject token; ``.name`` is the name given."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"node name {name!r} is not usable: use 1 to 128 letters, digits, '-' or '_' (it is a NATS "
            "subject token)"
        )
        self.name = name


def check_node(name: str) -> str:
    """Return ``name`` if it can be a node name (one NATS subject token), else raise :class:`BadNodeName`."""
    if not _NODE.match(name):
        raise BadNodeName(name)
    return name


def default_node() -> str:
    """The host name as a node name: its first label, other characters than ``[A-Za-z0-9_-]`` as ``_``."""
    host = socket.gethostname().split(".", 1)[0] or "localhost"
    return re.sub(r"[^A-Za-z0-9_-]", "_", host)[:128]


def subject(node: str, kind: str) -> str:
    """The subject of a message of ``kind`` (one of :data:`KINDS`) from ``node``."""
    return f"{SUBJECT_ROOT}.{node}.{kind}"


@dataclass(frozen=True, slots=True)
class ParsedSubject:
    """A subject split into its node and kind."""

    node: str
    kind: str


def parse_subject(text: str) -> ParsedSubject | None:
    """Split ``ecaptureq.<node>.<kind>``; ``None`` for any other subject."""
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != SUBJECT_ROOT or parts[2] not in KINDS:
        return None
    return ParsedSubject(parts[1], parts[2])


def is_glob(pattern: str) -> bool:
    """Whether a ``--node`` pattern has glob characters (``*``, ``?``, ``[``)."""
    return any(ch in pattern for ch in "*?[")


def filter_subject(node_glob: str | None) -> str:
    """The stream filter for ``--node``: one node's subjects when it is a plain name, else all.

    A glob such as ``web-*`` cannot be a NATS filter (``*`` there is a whole token), so it is applied
    by the reader on each message (:func:`node_matches`).
    """
    if node_glob and node_glob != "*" and not is_glob(node_glob):
        return f"{SUBJECT_ROOT}.{check_node(node_glob)}.>"
    return f"{SUBJECT_ROOT}.>"


def node_matches(node: str, node_glob: str | None) -> bool:
    """Whether ``node`` matches ``--node`` (a shell glob; ``None`` matches every node)."""
    return node_glob is None or fnmatch.fnmatchcase(node, node_glob)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadSince(ValueError):
    """``text`` is neither an ISO 8601 time nor an age (the message gives examples of both)."""

    def __init__(self, text: str) -> None:
        super().__init__(
            f"{text!r}: expected a time such as 2026-01-02T10:00:00Z or an age such as 15m, 2h, 7d"
        )
        self.text = text


def parse_since(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``--since``: an ISO 8601 time (``2026-01-02T10:00:00Z``; no zone means UTC) or an age such as
    ``30s``, ``15m``, ``2h``, ``7d``. Returns an aware UTC datetime.

    Raises:
        BadSince: neither form (a ValueError; the message gives examples).
    """
    now = now or datetime.datetime.now(datetime.UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - datetime.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadSince(text) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def parse_duration(text: str) -> float:
    """A duration option (``--max-age``): seconds, or a number with ``s``, ``m``, ``h`` or ``d``.

    Raises:
        ValueError: not a positive duration.
    """
    value = text.strip()
    match = _RELATIVE.match(value)
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else _number(value)
    if seconds <= 0:
        raise ValueError(f"{text!r}: expected a positive duration such as 3600, 30m, 24h or 7d")
    return seconds


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """A size option (``--spool-size``, ``--max-bytes``): bytes, or with ``K``, ``M``, ``G``, ``T``
    (powers of 1024).

    Raises:
        ValueError: not a positive size.
    """
    match = _SIZE.match(text.strip())
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]) if match else 0
    if size <= 0:
        raise ValueError(f"{text!r}: expected a positive size such as 268435456, 256M or 1G")
    return size


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0

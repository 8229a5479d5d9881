"""``watch --oneline``: one line per exchange, as mitmdump and tshark show them.

``15:31:04.123  curl[2746]  GET  https://api.example.com/v1/users/3  200  1.2 KiB  12.3 ms``

time (UTC, of the request), process and pid, method, URL, status, response body size, latency. What a
late join could not decode is shown as ``?`` (method), ``(path unknown)`` (URL) or ``-`` (status), never
guessed.
"""

from __future__ import annotations

import datetime as dt

from ecaptureq.cli.colour import METHOD_STYLES, Palette
from ecaptureq.cli.terminal import visible
from ecaptureq.decode.results import Decoded, MessageDone, RequestDone, ResponseDone
from ecaptureq.protocol.timestamps import detect_timestamp

WHO_WIDTH = 20
"""Width the ``process[pid]`` column is padded to."""


def human_size(size: int) -> str:
    """``512 B``, ``1.2 KiB``, ``3.4 MiB``.

    >>> human_size(512), human_size(1229), human_size(3 * 1024 * 1024)
    ('512 B', '1.2 KiB', '3.0 MiB')
    """
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def clock(raw_ns: int | None) -> str:
    """Time of day (UTC, milliseconds) of a timestamp, ``+S.mmm`` for one relative to boot, else ``-``."""
    ts = detect_timestamp(raw_ns or 0)
    if ts.epoch_ns is not None:
        secs, ns = divmod(ts.epoch_ns, 10**9)
        return dt.datetime.fromtimestamp(secs, tz=dt.UTC).strftime("%H:%M:%S") + f".{ns // 10**6:03d}"
    if ts.boot_ns is not None:
        return f"+{ts.boot_ns / 1e9:.3f}"
    return "-"


def exchange_line(item: Decoded, palette: Palette) -> str | None:
    """The line of the exchange a response completed (``None`` for any other item)."""
    if not isinstance(item, ResponseDone):
        return None
    return _line(item, palette, item.message.status, item.message.body_size)


def pending_line(item: Decoded, palette: Palette) -> str | None:
    """At the end: the line of a request still waiting for its response."""
    if not isinstance(item, RequestDone):
        return None
    return _line(item, palette, None, None) + palette.paint("dim", "  (no response)")


def _line(item: MessageDone, palette: Palette, status: int | None, size: int | None) -> str:
    ex = item.exchange
    req = ex.request
    when = ex.started_ns or (req.time_ns if req is not None else None)
    meta = item.meta
    who = f"{meta.pname or '?'}[{meta.pid or '?'}]"
    method = req.method if req is not None and req.method else "?"
    url = req.target if req is not None else ""
    latency = ex.latency
    # Padded before colouring, so columns line up whether coloured or not.
    cells = [
        palette.paint("dim", clock(when)),
        palette.paint("bold", visible(who, newlines=False).ljust(WHO_WIDTH)),
        palette.paint(METHOD_STYLES.get(method, "magenta") if method != "?" else "dim", _pad(method, 6)),
        palette.paint("cyan", url) if url else palette.paint("dim", "(path unknown)"),
        palette.status(status, None if status is None else str(status)),
        human_size(size) if size is not None else "-",
        f"{latency * 1000:.1f} ms" if latency is not None else "-",
    ]
    return "  ".join(cells)


def _pad(text: str, width: int) -> str:
    return visible(text, newlines=False).ljust(width)

"""Event timestamps whose unit is not stated: detect it by magnitude and convert.

eCapture's OpenSSL probe sends Unix-epoch nanoseconds in current builds, but some code paths have sent
seconds, and older ones nanoseconds since boot. A Unix time in any unit falls in a narrow band of
magnitudes (years 2001-2286), while a time since boot is far smaller than a Unix time in the same unit.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass


class TimeUnit(enum.Enum):
    """The unit a raw timestamp was detected to be in."""

    SECONDS = "s"
    MILLISECONDS = "ms"
    MICROSECONDS = "us"
    NANOSECONDS = "ns"
    BOOT_NANOSECONDS = "ns since boot"
    ZERO = "unset"


# A Unix time of 2010-01-01 .. 2100-01-01 in seconds, and the same window scaled by 1e3, 1e6 and 1e9,
# marks s, ms, us and ns. eCapture's only other unit is nanoseconds since boot, so every other value is
# read as that. The windows are kept narrow because they overlap boot-relative values: a boot-relative
# count inside the ms window means 21-68 minutes of uptime, inside the us window 14-47 days, and such
# a value is read as epoch ms/us (eCapture itself never sends those units).
_LOW_S = 1_262_304_000  # 2010-01-01T00:00:00Z
_HIGH_S = 4_102_444_800  # 2100-01-01T00:00:00Z
_BANDS: tuple[tuple[int, int, TimeUnit, int], ...] = (
    (_LOW_S, _HIGH_S, TimeUnit.SECONDS, 10**9),
    (_LOW_S * 10**3, _HIGH_S * 10**3, TimeUnit.MILLISECONDS, 10**6),
    (_LOW_S * 10**6, _HIGH_S * 10**6, TimeUnit.MICROSECONDS, 10**3),
)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A raw timestamp with its detected unit.

    ``epoch_ns`` is Unix-epoch nanoseconds, or ``None`` when the value is relative to boot (then
    ``boot_ns`` holds nanoseconds since boot) or zero.
    """

    raw: int
    unit: TimeUnit
    epoch_ns: int | None
    boot_ns: int | None = None

    def isoformat(self) -> str:
        """Render for humans: UTC ISO 8601 with microseconds, ``+12.345678s since boot``, or ``-``."""
        if self.epoch_ns is not None:
            secs, ns = divmod(self.epoch_ns, 10**9)
            return f"{_utc_second(secs)}.{ns // 1000:06d}Z"
        if self.boot_ns is not None:
            return f"+{self.boot_ns / 1e9:.6f}s since boot"
        return "-"


_SECONDS_KEPT = 1024
_second_text: dict[int, str] = {}


def _utc_second(secs: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of Unix second ``secs`` in UTC, remembered (up to :data:`_SECONDS_KEPT`
    seconds, then forgotten all at once): a capture's events come many to a second, and strftime is slow."""
    text = _second_text.get(secs)
    if text is None:
        if len(_second_text) >= _SECONDS_KEPT:
            _second_text.clear()
        text = _dt.datetime.fromtimestamp(secs, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text[secs] = text
    return text


def detect_timestamp(raw: int) -> Timestamp:
    """Detect the unit of ``raw`` by its magnitude and convert it to epoch nanoseconds when it is one.

    >>> detect_timestamp(1760495631914807673).unit
    <TimeUnit.NANOSECONDS: 'ns'>
    >>> detect_timestamp(1760495631).epoch_ns
    1760495631000000000
    >>> detect_timestamp(83_000_000_000).isoformat()
    '+83.000000s since boot'
    """
    if raw <= 0:
        return Timestamp(raw, TimeUnit.ZERO, None)
    if raw >= _LOW_S * 10**9:
        return Timestamp(raw, TimeUnit.NANOSECONDS, raw)
    for low, high, unit, scale in _BANDS:
        if low <= raw < high:
            return Timestamp(raw, unit, raw * scale)
    return Timestamp(raw, TimeUnit.BOOT_NANOSECONDS, None, raw)

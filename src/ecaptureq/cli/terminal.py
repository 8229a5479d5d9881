"""Captured text made safe for a terminal: every control character made visible. Pure functions.

Everything ecaptureq prints was written by someone else (a process name, a run-log line, a header
value, a body), and a terminal obeys control characters: ``ESC ] 52`` writes the user's clipboard,
``ESC [ 2K`` erases a line, ``CR`` overwrites one, C1 controls (U+0080-U+009F) act like ESC in some
terminals. :func:`visible` is the one function every terminal path (``watch``, ``demo``, ``query``,
``tls``, error messages) passes captured text through; :func:`json_line` is its JSON Lines form.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Final

import orjson

_SEPARATORS_AND_BIDI: Final = "\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_SEPARATORS_AND_BIDI}]+")
"""Runs of C0 controls but tab and newline, DEL, C1 controls, and the Unicode line separators and bidi
overrides (which reorder what a terminal shows: a ``Trojan Source`` line)."""

_CONTROL_ALL: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_SEPARATORS_AND_BIDI}]+")
_JSON_UNSAFE: Final = re.compile(f"[\x7f-\x9f{_SEPARATORS_AND_BIDI}]")

_ONE_LINE: Final = bytes(range(0x20, 0x7F))
"""The ASCII characters :data:`_CONTROL_ALL` leaves alone (printable ASCII)."""
_PRINTABLE: Final = _ONE_LINE + b"\t\n"
"""The ASCII characters :data:`_CONTROL` leaves alone: printable ASCII, tab and newline."""

_NAMED: Final = {"\x1b": "\\e", "\r": "\\r", "\n": "\\n", "\t": "\\t", "\x00": "\\0"}


def _escape_of(code: int) -> str:
    return _NAMED.get(chr(code)) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_ESCAPES: Final = {
    code: _escape_of(code) for code in [*range(0xA0), *range(0x2000, 0x2070)] if _CONTROL_ALL.match(chr(code))
}
"""Each character :data:`_CONTROL_ALL` matches (all are below U+00A0 or in U+2000-U+206F), by code point,
and its escape."""


def _escape(match: re.Match[str]) -> str:
    # A run at once, in C: a body of 16 MiB of control characters is one call, not 16 million.
    return match.group(0).translate(_ESCAPES)


def visible(text: str, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\e``, ``\\r``, ``\\x07``, ``\\u202e``).

    Tab and newline are kept when ``newlines`` (a block of text); with ``newlines=False`` they are
    escaped too (one table cell, one line).
    """
    if text.isascii() and not text.encode("ascii").translate(None, _PRINTABLE if newlines else _ONE_LINE):
        return text  # printable ASCII alone (the common case): one pass in C, a fifth of the regex's time
    return (_CONTROL if newlines else _CONTROL_ALL).sub(_escape, text)


def one_line_each(lines: list[str]) -> list[str]:
    """``lines`` as they are when none holds a newline, else each made one line (:func:`visible` with
    ``newlines=False``): a captured value with a newline in it (an HTTP/2 header, a process name) would
    start a line of its own in a block of text, and could pass for output of ours. The check is one
    count over the joined lines; escaping is paid only when a value holds a newline."""
    if "\n".join(lines).count("\n") < len(lines):
        return lines
    return [visible(line, newlines=False) for line in lines]


def plain_float(value: float) -> bool:
    """Whether orjson writes ``value`` as ``json.dumps`` does: zero, or a finite magnitude Python prints
    without an exponent (``1e-4 <= |value| < 1e16``); outside that Python writes ``1e-05`` and orjson
    ``0.00001``, and orjson writes NaN and infinities as ``null``."""
    return value == 0.0 or 1e-4 <= abs(value) < 1e16


class JsonFloat(float):
    """A float that :func:`json_line` writes as ``json.dumps`` does even where orjson would not (``5e-05``,
    ``NaN``), without the slow path: wrap such floats with :func:`json_float`."""


def json_float(value: float | None) -> float | None:
    """``value`` itself when :func:`plain_float` (or ``None``), else as a :class:`JsonFloat`."""
    if value is None or plain_float(value):
        return value
    return JsonFloat(value)


def _orjson_default(obj: Any) -> Any:
    if isinstance(obj, JsonFloat):  # orjson hands float subclasses here; json.dumps writes them itself
        # json.dumps writes a finite float as float.__repr__ does, and NaN and infinities by name.
        text = float.__repr__(obj) if math.isfinite(obj) else json.dumps(float(obj))
        return orjson.Fragment(text.encode("ascii"))
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _plain_floats(obj: Any) -> bool:
    """Whether every float in ``obj`` (walked through dicts, lists and tuples) is :func:`plain_float`."""
    kind = type(obj)
    if kind is float:
        return plain_float(obj)
    if kind is dict:
        return all(_plain_floats(v) for v in obj.values() if type(v) not in _SCALARS)
    if kind is list or kind is tuple:
        return all(_plain_floats(v) for v in obj if type(v) not in _SCALARS)
    return True


_SCALARS: Final = frozenset({str, int, bool, type(None)})


def warn(command: str, text: str) -> None:
    """Print one warning line on stderr."""
    print(f"ecaptureq {command}: warning: {visible(text, newlines=False)}", file=sys.stderr, flush=True)


def json_line(obj: Any, *, floats_checked: bool = False) -> str:
    """One compact JSON line, non-ASCII kept as UTF-8 but safe on a terminal.

    The text is exactly ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``'s, written by
    orjson (about 10 times faster) where orjson's is the same: always, but for floats outside
    :func:`plain_float`, integers beyond 64 bits, lone surrogates and non-string keys, which go to
    ``json.dumps``. Finding the floats walks ``obj``; ``floats_checked=True`` says the caller made
    every float in it plain or a :class:`JsonFloat` (:func:`json_float`; ``watch --json`` knows where
    its records hold one), and skips the walk.

    ``json.dumps`` escapes C0 controls; DEL, C1 controls and the line separators and bidi controls
    are escaped here too (as ``\\u00XX``, which any JSON reader decodes back to the same text).
    """
    text: str | None = None
    if floats_checked or _plain_floats(obj):
        try:
            text = orjson.dumps(obj, default=_orjson_default).decode("utf-8")
        except (orjson.JSONEncodeError, TypeError):
            text = None
    if text is None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)

"""Captured text made safe for a terminal: every control character made visible. Pure functions.

Everything ecaptureq prints was written by someone else (a process name, a run-log line, a header
value, a body), and a terminal obeys control characters: ``ESC ] 52`` writes the user's clipboard,
``ESC [ 2K`` erases a line, ``CR`` overwrites one, C1 controls (U+0080-U+009F) act like ESC in some
terminals. :func:`visible` is the one function every terminal path (``watch``, ``demo``, ``query``,
``tls``, error messages) passes captured text through; :func:`json_line` is its JSON Lines form.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

_SEPARATORS_AND_BIDI: Final = "\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_SEPARATORS_AND_BIDI}]")
"""C0 controls but tab and newline, DEL, C1 controls, and the Unicode line separators and bidi overrides
(which reorder what a terminal shows: a ``Trojan Source`` line)."""

_CONTROL_ALL: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_SEPARATORS_AND_BIDI}]")
_JSON_UNSAFE: Final = re.compile(f"[\x7f-\x9f{_SEPARATORS_AND_BIDI}]")

_NAMED: Final = {"\x1b": "\\e", "\r": "\\r", "\n": "\\n", "\t": "\\t", "\x00": "\\0"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\e``, ``\\r``, ``\\x07``, ``\\u202e``).

    Tab and newline are kept when ``newlines`` (a block of text); with ``newlines=False`` they are
    escaped too (one table cell, one line).
    """
    return (_CONTROL if newlines else _CONTROL_ALL).sub(_escape, text)


def json_line(obj: Any) -> str:
    """One compact JSON line, non-ASCII kept as UTF-8 but safe on a terminal.

    ``json.dumps`` escapes C0 controls; DEL, C1 controls and the line separators and bidi controls
    are escaped here too (as ``\\u00XX``, which any JSON reader decodes back to the same text).
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)

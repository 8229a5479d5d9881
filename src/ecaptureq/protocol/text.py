"""How a captured payload reads as text: whether it is binary, and its text for the store's search column.

The standard library only, and no import of the package: the store's committing process (a script run
with ``python -I -S``) loads this file by its path and computes the ``packets`` columns it defines there,
beside the SQLite work, instead of the recording process.
"""

from __future__ import annotations

from typing import Final

BINARY_SAMPLE: Final = 4096
"""How many leading bytes :func:`looks_binary` judges."""

CONTROL_SHARE: Final = 20
"""Text may hold one control character (other than CR, LF, tab, form feed, backspace) in this many, and
always two: more, and the bytes are binary. Enough for a captured escape sequence in a log line or a
page, which the terminal shows made visible."""


def looks_binary(data: bytes) -> bool:
    """Whether bytes are binary rather than text: the one test the store, ``watch`` and the web UI share.

    Binary means a NUL, invalid UTF-8 (a multi-byte character cut at the end of the sample is not), or
    more control characters than :data:`CONTROL_SHARE` allows, all within the first :data:`BINARY_SAMPLE`
    bytes.

    >>> looks_binary(b"GET / HTTP/1.1\\r\\n\\r\\n"), looks_binary(b"\\x00\\x01"), looks_binary(b"\\xff")
    (False, True, True)
    """
    sample = data[:BINARY_SAMPLE]
    if b"\x00" in sample:
        return True
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is not evidence.
        if exc.start < len(sample) - 3:
            return True
        sample = sample[: exc.start]
        text = sample.decode("utf-8")
    # Valid UTF-8 carries a control character only as that one byte (a multi-byte character's bytes are
    # all >= 0x80): count them in the bytes, in C, by what deleting them takes away.
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(2, len(text) // CONTROL_SHARE)


_CONTROL_BYTES: Final = bytes(b for b in range(32) if chr(b) not in "\r\n\t\f\b")
"""The control characters :func:`looks_binary` counts against text."""


def payload_text(payload: bytes) -> str:
    """``payload_utf8``: the payload as UTF-8, each run of invalid bytes and NULs as one U+FFFD; never more
    UTF-8 bytes than the payload has (when the U+FFFDs would make it longer, the runs are left out).

    NUL is replaced because SQLite's LIKE stops at it: without this, ``payload_utf8 LIKE '%password%'``
    would miss text that follows a NUL in an HTTP/2 frame. Runs are collapsed and the length bounded so
    that binary data costs at most its own size again (U+FFFD is 3 bytes).
    """
    text = payload.decode("utf-8", "replace")
    if "\ufffd" not in text and "\x00" not in text:
        return text
    # The runs are found by splitting at each U+FFFD (NULs made U+FFFDs first): a run of n of them leaves
    # n - 1 empty parts between two texts. Half the time of a regular expression's sub() on an HTTP/2
    # frame, whose many short runs each cost the regex engine a match.
    parts = text.replace("\x00", "\ufffd").split("\ufffd")
    texts = [part for part in parts if part]
    marked = "\ufffd".join(texts)
    if not parts[0]:
        marked = "\ufffd" + marked  # a run at the start
    if not parts[-1] and texts:
        marked += "\ufffd"  # a run at the end (not the same run as at the start)
    if len(marked.encode("utf-8")) <= len(payload):
        return marked
    return "".join(texts)

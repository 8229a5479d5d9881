"""Colour on a terminal: methods, status classes, errors and hosts, and the one-line exchange view.

Colour codes are added only to text that :func:`~ecaptureq.cli.terminal.visible` has already made safe:
every function here passes what it is given through ``visible`` first (which leaves safe text as it is),
then wraps it in SGR codes. Captured text therefore still cannot carry an escape sequence to the
terminal, coloured or not.

Whether to colour follows ``--color auto|always|never``: ``auto`` colours when the stream is a terminal,
``NO_COLOR`` (https://no-color.org) is not set to a non-empty value and ``TERM`` is not ``dumb``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import Final, Literal, TextIO

from ecaptureq.cli.terminal import visible

ColorMode = Literal["auto", "always", "never"]
COLOR_MODES: Final[tuple[ColorMode, ...]] = ("auto", "always", "never")

RESET: Final = "\x1b[0m"
_SGR: Final[dict[str, str]] = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
METHOD_STYLES: Final[dict[str, str]] = {
    "GET": "green",
    "HEAD": "green",
    "POST": "yellow",
    "PUT": "yellow",
    "PATCH": "yellow",
    "DELETE": "red",
}
"""The colour of a request method (others are magenta)."""

STATUS_STYLES: Final[dict[int, str]] = {1: "dim", 2: "green", 3: "cyan", 4: "yellow", 5: "red"}
"""The colour of a status class (1xx to 5xx)."""


def add_color_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--color auto|always|never``."""
    parser.add_argument(
        "--color",
        choices=COLOR_MODES,
        default="auto",
        help="colour methods, status classes, errors and hosts: auto (default) on a terminal unless "
        "NO_COLOR is set, always, or never",
    )


def use_color(mode: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what is written to ``stream`` under ``--color mode``."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_METHOD_LINE: Final = re.compile(r"^(> )(\S+)( )(.*)$")
_STATUS_LINE: Final = re.compile(r"^(< \S+ )(\d{3})?(.*)$")
_ENDPOINTS_LINE: Final = re.compile(r"^(    pid .*  )(\S+ -> \S+)$")


class Palette:
    """Colours text for a terminal, or leaves it as it is when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def paint(self, style: str, text: str) -> str:
        """``text``, made visible, in ``style`` (a name of :data:`_SGR`)."""
        safe = visible(text, newlines=False)
        if not self.enabled or not safe:
            return safe
        return f"\x1b[{_SGR[style]}m{safe}{RESET}"

    def method(self, method: str) -> str:
        """A request method in its colour."""
        return self.paint(METHOD_STYLES.get(method, "magenta"), method)

    def status(self, status: int | None, text: str | None = None) -> str:
        """A status (or ``text`` for it) in the colour of its class; ``-`` when unknown."""
        shown = text if text is not None else ("-" if status is None else str(status))
        if status is None:
            return self.paint("dim", shown)
        return self.paint(STATUS_STYLES.get(status // 100, "magenta"), shown)

    def block(self, text: str) -> str:
        """Colour a text block of ``watch`` (already made visible) line by line: request lines by method,
        status lines by class, ``!`` error lines red, event headers dim, their endpoints (hosts) cyan."""
        if not self.enabled:
            return visible(text)
        out = []
        for line in visible(text).split("\n"):
            if m := _METHOD_LINE.match(line):
                out.append(m[1] + self.method(m[2]) + m[3] + self.paint("cyan", m[4]))
            elif line.startswith("< ") and (m := _STATUS_LINE.match(line)):
                code = int(m[2]) if m[2] else None
                out.append(m[1] + self.status(code, m[2] or "") + m[3])
            elif line.lstrip().startswith("! "):
                out.append(self.paint("red", line))
            elif line.startswith("--- "):
                out.append(self.paint("dim", line))
            elif m := _ENDPOINTS_LINE.match(line):
                out.append(m[1] + self.paint("cyan", m[2]))
            else:
                out.append(line)
        return "\n".join(out)

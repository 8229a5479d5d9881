"""Copy as curl: a captured request as a command line that stays inert when pasted into a shell.

Every captured byte is hostile, and shells disagree on quoting: inside single quotes fish treats ``\\'``
and ``\\\\`` as escapes where POSIX shells do not, so ``shlex.quote`` is safe only for POSIX shells. As
browsers do ("Copy as cURL (bash)" / "(cmd)"), the command is offered per shell:

* ``posix`` for bash, zsh and dash: single quotes; a ``'`` as ``"'"``; control characters as
  ``"$(printf '\\ooo')"`` (a newline stays inside the quotes, where it is literal);
* ``fish``: single quotes around what needs no escape, ``\\'``, ``\\\\``, ``\\n``, ``\\xHH`` and
  ``\\uXXXX`` outside them.

The URL goes after ``--url`` (a captured ``:scheme`` such as ``-o/tmp/x`` is never an option), only
``http`` and ``https`` schemes are kept, and a binary body is piped in from ``printf`` with octal escapes
(which dash's ``printf`` also understands, unlike ``%b`` with ``\\x``).
"""

from __future__ import annotations

import re
from typing import Final, Literal

from ecaptureq.decode.model import Exchange

Shell = Literal["posix", "fish"]
"""The quoting dialects: ``posix`` (bash, zsh, dash) and ``fish``."""

SHELLS: Final[tuple[Shell, ...]] = ("posix", "fish")

_SKIPPED: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _posix_control(ch: str) -> str:
    if ch == "\n":
        return "'\n'"
    octal = "".join(f"\\{b:03o}" for b in ch.encode("utf-8"))
    return f"\"$(printf '{octal}')\""


def quote(text: str, shell: Shell) -> str:
    """``text`` as one word of ``shell``, whatever it holds."""
    if text and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", text):
        return text
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append("'" + "".join(run) + "'")
            run.clear()

    for ch in text:
        if ch == "'":
            flush()
            out.append('"\'"' if shell == "posix" else "\\'")
        elif ch == "\\" and shell == "fish":
            flush()
            out.append("\\\\")
        elif _UNSAFE.match(ch):
            flush()
            if shell == "posix":
                out.append(_posix_control(ch))
            elif ch == "\n":
                out.append("\\n")
            else:
                out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            run.append(ch)
    flush()
    return "".join(out) or "''"


def curl_argv(ex: Exchange, url: str | None = None) -> tuple[list[str], bytes | None] | None:
    """The argv curl should receive for the request of ``ex``, and the binary body to pipe into it, or
    ``None`` without a request or when its method or URL is unknown. ``url`` is the URL to give curl
    (by default :attr:`Exchange.url`, the request's absolute URL)."""
    req = ex.request
    url = ex.url if url is None else url
    if req is None or not req.method or not url:
        return None  # no request, or a method or URL a late join lost: nothing to copy but a guess
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        url = "https://" + (rest if sep else url).lstrip("/")
    argv = ["curl"]
    if ex.protocol == "h2":
        argv.append("--http2")
    if req.method != "GET":
        argv += ["-X", req.method]
    argv += ["--url", url]
    decoded = bool(req.content_encoding)
    for name, value in req.headers:
        lower = name.lower()
        if lower.startswith(":") or lower in _SKIPPED or (decoded and lower == "content-encoding"):
            continue
        argv += ["-H", f"{name}: {value}"]
    body: bytes | None = None
    if req.body_text:
        argv += ["--data-raw", req.body_text]
    elif req.body_text is None and req.body:
        body = req.body
        argv += ["--data-binary", "@-"]
    return argv, body


def curl_command(ex: Exchange, url: str | None = None, shell: Shell = "posix") -> str | None:
    """The request of ``ex`` as a command line for ``shell``, one option per line, or ``None`` without a
    request (see :func:`curl_argv` for ``url``)."""
    made = curl_argv(ex, url)
    if made is None:
        return None
    argv, body = made
    prefix = ""
    if body is not None:
        octal = "".join(f"\\{b:03o}" for b in body)  # printf's format: only octal escapes and %%
        prefix = f"printf '{octal}' | "
    lines: list[str] = []
    line = prefix + argv[0]
    i = 1
    while i < len(argv):  # one option (with its value) per line
        take = 2 if argv[i].startswith("-") and argv[i] != "--http2" else 1
        lines.append(line)
        line = "  " + " ".join(quote(a, shell) for a in argv[i : i + take])
        i += take
    lines.append(line)
    return " \\\n".join(lines)

"""The startup run log: the first lines a server publishes, in eCapture's style (``AppName=...``).

Every server kept by ecaptureq (``serve``, ``demo``, ``tls``, ``agent``) and the demo source build their
first run-log lines here, so the application name, home page and version are written once. A client keeps
these lines in the server's startup cache (the first 128), and hides them when a reconnect replays them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ecaptureq import __version__
from ecaptureq.protocol.messages import run_log_line

APP_NAME: Final = "ecaptureq"
"""The ``AppName`` of ecaptureq's own servers (eCapture's says ``eCapture``)."""

HOMEPAGE: Final = "https://pypi.org/project/ecaptureq/"
"""The ``HomePage`` line's address."""

VERSION: Final = f"ecaptureq:v{__version__}"
"""The ``Version`` line's value."""

LISTEN_PREFIX: Final = "Listen for eCaptureQ="
"""How eCapture announces its eCaptureQ address (clients and tests look for it)."""


def startup_banner(
    source: str | None = None,
    *,
    listen_url: str | None = None,
    details: Sequence[str] = (),
    app: str = APP_NAME,
    variant: str | None = None,
    homepage: bool = True,
) -> list[str]:
    """The startup lines, each a whole run-log line (timestamp, ``INF``, newline).

    In order: ``AppName``, ``HomePage`` (unless ``homepage`` is false: a source that runs inside a server
    leaves it to the server's own banner), ``Version`` (``VERSION:variant`` with a ``variant``),
    ``Source=source``, each of ``details`` (``Key=value`` text), and ``Listen for eCaptureQ=listen_url``.

    >>> [line.split(" ", 2)[2].strip() for line in startup_banner("demo", listen_url="ws://127.0.0.1:1/")]
    ... # doctest: +ELLIPSIS
    ['AppName="ecaptureq"', 'HomePage=https://pypi.org/project/ecaptureq/', 'Version=ecaptureq:v...', \
'Source=demo', 'Listen for eCaptureQ=ws://127.0.0.1:1/']
    """
    messages = [f'AppName="{app}"']
    if homepage:
        messages.append(f"HomePage={HOMEPAGE}")
    messages.append(f"Version={VERSION}" + (f":{variant}" if variant else ""))
    if source is not None:
        messages.append(f"Source={source}")
    messages.extend(details)
    if listen_url is not None:
        messages.append(f"{LISTEN_PREFIX}{listen_url}")
    return [run_log_line(message) for message in messages]

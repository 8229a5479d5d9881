"""Checking and normalising the URL of an eCaptureQ server."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_UNSPECIFIED_HOSTS = {"0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0"}
_SCHEME_FIXES = {"http": "ws", "https": "wss"}


class BadURL(ValueError):
    """The URL cannot name an eCaptureQ server; the message says what to write instead."""


def normalize_url(url: str) -> tuple[str, list[str]]:
    """Check ``url`` and return it normalised, with the warnings about what was changed.

    - a missing scheme becomes ``ws://``; ``http``/``https`` become ``ws``/``wss``;
    - a missing path becomes the trailing ``/`` the eCaptureQ document insists on;
    - ``0.0.0.0`` (a listen address, not one to connect to) is refused.

    >>> normalize_url("ws://127.0.0.1:28257")
    ('ws://127.0.0.1:28257/', ["added the missing trailing '/': ws://127.0.0.1:28257/"])

    Raises:
        BadURL: the URL has a scheme other than ws/wss, no host, a bad port, or an unspecified host.
    """
    warnings: list[str] = []
    text = url.strip()
    if not text:
        raise BadURL("empty URL: give the server's address, e.g. ws://127.0.0.1:28257/")
    if "://" not in text:
        text = "ws://" + text
        warnings.append(f"no scheme given, using {text}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in _SCHEME_FIXES:
        scheme = _SCHEME_FIXES[scheme]
        warnings.append(f"using {scheme}:// for a WebSocket server")
    if scheme not in ("ws", "wss"):
        raise BadURL(f"{url!r}: the scheme must be ws:// or wss://, e.g. ws://127.0.0.1:28257/")
    host = parts.hostname
    if not host:
        raise BadURL(f"{url!r}: no host, e.g. ws://127.0.0.1:28257/")
    if host in _UNSPECIFIED_HOSTS:
        raise BadURL(
            f"{url!r}: {host} is an address to listen on, not one to connect to; "
            "use 127.0.0.1 or the host's IP address"
        )
    try:
        port = parts.port
    except ValueError:
        raise BadURL(f"{url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise BadURL(f"{url!r}: the port must be a number from 1 to 65535")
    path = parts.path
    if not path:
        path = "/"
    normalized = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
    if not parts.path:
        warnings.append(f"added the missing trailing '/': {normalized}")
    return normalized, warnings


def redact_url(url: str) -> str:
    """``url`` with the value of any ``token`` query parameter replaced by ``***``, for messages and logs.

    >>> redact_url("ws://10.0.0.5:28257/?token=s3cret&x=1")
    'ws://10.0.0.5:28257/?token=***&x=1'
    """
    parts = urlsplit(url)
    if "token" not in parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, "***" if k == "token" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

"""tshark as the judge of the pcapng tests: run it, read fields, and the HTTP/2 streams it dissects."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt install tshark)")
# Checksums are verified, so a wrong IP or TCP checksum shows up as an expert warning.
TSHARK_OPTIONS = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]


def tshark(*args: str, stdin: bytes | None = None) -> str:
    """Run tshark and return its stdout. As root it warns on stderr that it runs as root: harmless."""
    assert TSHARK is not None
    proc = subprocess.run(
        [TSHARK, *TSHARK_OPTIONS, *args], input=stdin, capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def fields(pcap: Path, display_filter: str, *names: str) -> list[list[str]]:
    """One row per packet matching ``display_filter``: the values of ``names`` (all occurrences, joined
    by ``|``)."""
    args = ["-r", str(pcap), "-Y", display_filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in names:
        args += ["-e", name]
    return [line.split("\t") for line in tshark(*args).splitlines()]


def as_list(value: Any) -> list[Any]:
    """A JSON value that tshark writes as one object or a list of them, as a list."""
    return value if isinstance(value, list) else [] if value is None else [value]


@dataclass
class H2Stream:
    request: list[tuple[str, str]]
    response: list[tuple[str, str]]
    body: bytes


def h2_streams(pcap: Path) -> dict[tuple[int, int], H2Stream]:
    """Every HTTP/2 stream tshark dissects, by (TCP stream, HTTP/2 stream id): the header lists of the
    client's and the server's HEADERS frames, and the body the server sent (as tshark shows it: gzip
    undone)."""
    out = tshark("-r", str(pcap), "-Y", "http2", "-T", "json", "--no-duplicate-keys", "-J", "tcp http2")
    streams: dict[tuple[int, int], H2Stream] = defaultdict(lambda: H2Stream([], [], b""))
    for packet in json.loads(out):
        layers = packet["_source"]["layers"]
        tcp = layers["tcp"]
        from_server = tcp["tcp.srcport"] == "80"
        for frame in (s for h in as_list(layers.get("http2")) for s in as_list(h.get("http2.stream"))):
            sid = int(frame.get("http2.streamid", 0))
            if sid == 0:
                continue
            entry = streams[(int(tcp["tcp.stream"]), sid)]
            if frame.get("http2.type") == "1":
                headers = [
                    (h["http2.header.name"], h["http2.header.value"]) for h in as_list(frame["http2.header"])
                ]
                if from_server:
                    entry.response += headers
                else:
                    entry.request += headers
            elif frame.get("http2.type") == "0" and from_server:
                # The frame that ends a body spread over several frames carries it whole, reassembled;
                # a gzip body's decompressed bytes are under a "Content-encoded entity body" key.
                decoded = next((v for k, v in frame.items() if k.startswith("Content-encoded")), {})
                whole = frame.get("http2.body.fragments", {}).get("http2.body.reassembled.data")
                data = decoded.get("http2.data.data", whole or frame.get("http2.data.data", ""))
                if whole is not None:
                    entry.body = b""
                entry.body += bytes.fromhex(data.replace(":", ""))
    return streams

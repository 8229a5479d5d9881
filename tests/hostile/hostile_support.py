"""Hostile captures for the tests: what a server a monitored process talks to can send.

Events are built as eCapture sends them (uuid ``pid_tid_comm_fd_datatype``; data_type 1 = SSL_write, the
request side, 0 = SSL_read), and written as the JSON Lines ``serve --replay`` plays.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import hpack
from conftest import CLI, ENV, start_serve, stop_serve

from ecaptureq.bench.bombs import bomb_corpus
from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.uuid import format_uuid

BASE_NS = 1_760_495_631_000_000_000

CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"
"""OSC 52: write 'pwned' into the terminal user's clipboard."""
ERASE = "\x1b[2K\r"
"""Erase the line and go back to its start."""


def event(pname: str, fd: int, data_type: int, payload: bytes, n: int, *, pid: int = 4242) -> Event:
    """One captured chunk of connection ``fd`` of process ``pname``."""
    return Event(
        timestamp=BASE_NS + n * 1_000_000,
        uuid=format_uuid(pid, pid, pname, fd, data_type),
        src_ip="10.0.0.5",
        src_port=40000 + fd,
        dst_ip="93.184.216.34",
        dst_port=443,
        pid=pid,
        pname=pname,
        type=0,
        payload=payload,
    )


def h1_exchange(
    request: bytes, response: bytes, *, pname: str = "curl", fd: int = 5, n: int = 0
) -> list[Event]:
    """An HTTP/1.1 request and its response, one event each."""
    return [event(pname, fd, 1, request, n), event(pname, fd, 0, response, n + 1)]


def response(body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """An HTTP/1.1 200 response carrying ``body`` with Content-Length and ``headers``."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def get(path: str = "/", headers: Sequence[tuple[str, str]] = (("Host", "api.example.com"),)) -> bytes:
    """An HTTP/1.1 GET request."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"GET {path} HTTP/1.1\r\n{head}\r\n".encode("utf-8", "surrogateescape")


def post(body: bytes, headers: Sequence[tuple[str, str]], path: str = "/submit") -> bytes:
    """An HTTP/1.1 POST request carrying ``body``."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 section 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_exchange(
    request_headers: Sequence[tuple[str, str]],
    response_headers: Sequence[tuple[str, str]],
    body: bytes = b"",
    *,
    pname: str = "grpc-gw",
    fd: int = 7,
    n: int = 0,
) -> list[Event]:
    """An HTTP/2 request (HEADERS, END_STREAM) and its response (HEADERS, DATA), HPACK-encoded as given
    (no validation: header values may hold any bytes)."""
    client, server = hpack.Encoder(), hpack.Encoder()
    settings = h2_frame(4, 0, 0, b"")
    req = H2_PREFACE + settings + h2_frame(1, 0x5, 1, client.encode(list(request_headers)))
    resp = settings + h2_frame(1, 0x4, 1, server.encode(list(response_headers)))
    resp += h2_frame(0, 0x1, 1, body)
    return [event(pname, fd, 1, req, n), event(pname, fd, 0, resp, n + 1)]


def write_jsonl(path: Path, events: Iterable[Event], logs: Iterable[str] = ()) -> Path:
    """A recording ``serve --replay`` plays: the run-log lines, then the events."""
    with path.open("w", encoding="utf-8") as out:
        for line in logs:
            out.write(json.dumps(to_json(RunLog(line))) + "\n")
        for ev in events:
            out.write(json.dumps(to_json(ev)) + "\n")
    return path


def wire_bytes(events: Iterable[Event]) -> int:
    """The captured payload bytes of some events."""
    return sum(len(e.payload) for e in events)


def peak_rss_of(cmd: list[str]) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run ``cmd`` to completion, sampling its VmHWM (peak RSS, bytes) until it exits."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    while proc.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(0.02)
    reader.join()
    err = proc.stderr.read() if proc.stderr else ""
    return peak, subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), err)


def watch_peak(tmp_path: Path, names: list[str], *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """``ecaptureq watch *args`` on a replay of the bomb corpus's exchanges ``names``: its peak RSS (bytes)
    and what it printed."""
    corpus = bomb_corpus()
    events = [e for n in names for e in corpus[n]]
    served = start_serve("--replay", str(write_jsonl(tmp_path / f"w{len(names)}{args}.jsonl", events)))
    try:
        return peak_rss_of([*CLI, "watch", served.url, "--count", str(len(events)), "--timeout", "20", *args])
    finally:
        stop_serve(served)

"""TLS workloads on 127.0.0.1 for the capture benchmark and its test, and checking what was captured.

A :class:`Site` is nginx serving bodies of known sha256 over TLS (HTTP/1.1 and HTTP/2) from a
temporary directory. The workloads run real clients against it (curl, a Python keep-alive client, a
Python client making one large ``sendall``) and return how long they took and what each client
process should have transferred. :func:`verify` then compares, body by body and by sha256, what a
capture recorded of each client's own ``SSL_read``/``SSL_write`` calls with what the server sent, and
counts the gaps the capture announced for those clients.

Nothing here needs root; capturing is the caller's business.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ecaptureq.decode.http2 import FRAME_HEADER_SIZE, frame_header
from ecaptureq.protocol.gap import CaptureGap
from ecaptureq.protocol.uuid import DATA_TYPE_READ, parse_uuid

BODY_SIZES: Final = {"1k": 1024, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
"""The bodies a :class:`Site` serves, by name (``GET /<name>``)."""

NGINX_CONF: Final = """
daemon off;
master_process off;
worker_processes 1;
user root;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        root {d}/www;
    }}
}}
"""

KEEPALIVE_CLIENT: Final = r"""
import http.client, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
path, n = sys.argv[3], int(sys.argv[4])
conn.request("GET", path); conn.getresponse().read()  # connect and warm up (verified too)
start = time.perf_counter()
for _ in range(n):
    conn.request("GET", path); r = conn.getresponse(); r.read()
print(time.perf_counter() - start)
"""

SINK_SERVER: Final = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.create_server(("127.0.0.1", 0)); print(ls.getsockname()[1], flush=True)
while True:
    c, _ = ls.accept()
    s = ctx.wrap_socket(c, server_side=True)
    want, got = int(s.recv(32).split(b"\n")[0]), 0
    while got < want:
        chunk = s.recv(1 << 20)
        if not chunk: break
        got += len(chunk)
    s.sendall(b"k"); s.close()
"""

SENDALL_CLIENT: Final = r"""
import hashlib, os, socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
data = os.urandom(int(sys.argv[3]))
head = b"%d\n" % len(data)
s.sendall(head)
start = time.perf_counter()
s.sendall(data)
assert s.recv(1) == b"k"
print(time.perf_counter() - start, hashlib.sha256(head + data).hexdigest())  # all it wrote
"""


@dataclass
class Expectation:
    """What one client process should have transferred over its connection."""

    pid: int
    kind: Literal["http1", "h2", "raw"]
    """``http1``/``h2``: response bodies in its reads; ``raw``: its writes are exactly one blob."""
    hashes: list[str]
    """sha256 of each body (or of the blob), in order."""


@dataclass
class Run:
    """One run of a workload: its duration and what its clients should have transferred."""

    seconds: float
    expect: list[Expectation]


@dataclass
class Verdict:
    """How much of a run the capture got exactly."""

    exact: int = 0
    total: int = 0
    gaps: int = 0
    """Gaps announced for these clients."""
    gap_bytes: int = 0
    damaged_unmarked: int = 0
    """Clients with a damaged body but no gap announced: silent loss (must stay 0)."""

    def add(self, other: Verdict) -> None:
        """Accumulate ``other`` into this one."""
        self.exact += other.exact
        self.total += other.total
        self.gaps += other.gaps
        self.gap_bytes += other.gap_bytes
        self.damaged_unmarked += other.damaged_unmarked


class Site:
    """nginx on 127.0.0.1 serving :data:`BODY_SIZES` random bodies over TLS (HTTP/1.1 and HTTP/2)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="ecaptureq-tlsload-")
        self.dir = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        os.chmod(self.dir, 0o755)
        self.cert, self.key = self.dir / "cert.pem", self.dir / "key.pem"
        self.hashes: dict[str, str] = {}
        self.port = 0
        self._nginx: subprocess.Popen[bytes] | None = None
        self._sink: subprocess.Popen[str] | None = None
        self.sink_port = 0

    def start(self) -> Site:
        """Make the certificate and bodies, start nginx and the sendall sink; wait until both listen."""
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        www = self.dir / "www"
        www.mkdir(exist_ok=True)
        for name, size in BODY_SIZES.items():
            data = os.urandom(size)
            (www / name).write_bytes(data)
            self.hashes[name] = hashlib.sha256(data).hexdigest()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(d=self.dir, port=self.port))
        self._nginx = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self._nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self._nginx.communicate()[1]!r}") from None
                time.sleep(0.02)
        self._sink = subprocess.Popen(
            [sys.executable, "-c", SINK_SERVER, str(self.cert), str(self.key)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._sink.stdout is not None
        self.sink_port = int(self._sink.stdout.readline())
        return self

    def stop(self) -> None:
        """Stop the servers and remove the directory."""
        for proc in (self._nginx, self._sink):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, name: str) -> str:
        """``https://127.0.0.1:PORT/name``."""
        return f"https://127.0.0.1:{self.port}/{name}"

    # -- workloads -------------------------------------------------------------------------------

    def _curl(self, name: str, requests: int, http2: bool) -> list[str]:
        command = ["curl", "-sS", "--fail", "--max-time", "300", "--cacert", str(self.cert)]
        command.append("--http2" if http2 else "--http1.1")
        for _ in range(requests):
            command += [self.url(name), "-o", "/dev/null"]
        return command

    def curls(self, name: str, *, clients: int, requests: int, http2: bool = False) -> Run:
        """``clients`` curl processes at once, each fetching ``requests`` bodies on one connection."""
        start = time.perf_counter()
        procs = [
            subprocess.Popen(self._curl(name, requests, http2), stderr=subprocess.PIPE)
            for _ in range(clients)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"curl failed ({proc.returncode}): {err.decode(errors='replace')}")
        seconds = time.perf_counter() - start
        kind: Literal["http1", "h2"] = "h2" if http2 else "http1"
        return Run(seconds, [Expectation(p.pid, kind, [self.hashes[name]] * requests) for p in procs])

    def keepalive(self, name: str, requests: int) -> Run:
        """One Python ``http.client`` process making ``requests`` keep-alive requests (plus one warm-up)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", KEEPALIVE_CLIENT, str(self.port), str(self.cert), f"/{name}",
             str(requests)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"keep-alive client failed: {err}")
        return Run(float(out), [Expectation(proc.pid, "http1", [self.hashes[name]] * (requests + 1))])

    def sendall(self, size: int) -> Run:
        """One Python process writing ``size`` random bytes with a single ``sendall``."""
        proc = subprocess.Popen(
            [sys.executable, "-c", SENDALL_CLIENT, str(self.sink_port), str(self.cert), str(size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"sendall client failed: {err}")
        seconds, digest = out.split()
        return Run(float(seconds), [Expectation(proc.pid, "raw", [digest])])


# -- checking what was captured ----------------------------------------------------------------


@dataclass
class Captured:
    """What a capture published for the processes of interest: streams and the gaps announced."""

    reads: dict[tuple[int, int], bytearray] = field(default_factory=dict)
    """(pid, fd) -> bytes of its SSL_read calls, in order."""
    writes: dict[tuple[int, int], bytearray] = field(default_factory=dict)
    gaps: list[CaptureGap] = field(default_factory=list)

    def add_event(self, pid: int, uuid: str, payload: bytes) -> None:
        """Append one event's payload to its stream."""
        info = parse_uuid(uuid)
        if info.fd is None or info.data_type is None:
            return
        streams = self.reads if info.data_type == DATA_TYPE_READ else self.writes
        streams.setdefault((pid, info.fd), bytearray()).extend(payload)

    def add_gap(self, gap: CaptureGap) -> None:
        """Remember an announced gap."""
        self.gaps.append(gap)


def http1_bodies(stream: bytes) -> list[bytes]:
    """The bodies of consecutive HTTP/1.1 responses with Content-Length (stops at anything else)."""
    bodies = []
    at = 0
    while at < len(stream):
        end = stream.find(b"\r\n\r\n", at)
        if end < 0 or not stream.startswith(b"HTTP/1.", at):
            break
        length = None
        for line in stream[at:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or b"-1")
        if length is None or length < 0:
            break
        bodies.append(stream[end + 4 : end + 4 + length])
        at = end + 4 + length
    return bodies


def h2_bodies(stream: bytes) -> list[bytes]:
    """The DATA of each server stream of an HTTP/2 connection as its client read it, by stream id."""
    data: dict[int, bytearray] = {}
    at = 0
    while at + FRAME_HEADER_SIZE <= len(stream):
        length, ftype, flags, ident, _reserved = frame_header(stream, at)
        payload = stream[at + FRAME_HEADER_SIZE : at + FRAME_HEADER_SIZE + length]
        if len(payload) < length:
            break
        if ftype == 0 and ident:
            if flags & 0x8 and payload:
                payload = payload[1 : len(payload) - payload[0]]
            data.setdefault(ident, bytearray()).extend(payload)
        at += FRAME_HEADER_SIZE + length
    return [bytes(data[k]) for k in sorted(data)]


def verify(captured: Captured, expectations: Iterable[Expectation]) -> Verdict:
    """Compare, body by body (sha256), what was captured of each client with what it transferred."""
    verdict = Verdict()
    for exp in expectations:
        if exp.kind == "raw":
            got = [bytes(b) for (pid, _), b in captured.writes.items() if pid == exp.pid]
        else:
            streams = [bytes(b) for (pid, _), b in captured.reads.items() if pid == exp.pid]
            parse = http1_bodies if exp.kind == "http1" else h2_bodies
            got = [body for s in streams for body in parse(s)]
        hashes = [hashlib.sha256(b).hexdigest() for b in got]
        exact = sum(1 for i, h in enumerate(exp.hashes) if i < len(hashes) and hashes[i] == h)
        gaps = [g for g in captured.gaps if parse_uuid(g.uuid).pid == exp.pid]
        verdict.exact += exact
        verdict.total += len(exp.hashes)
        verdict.gaps += len(gaps)
        verdict.gap_bytes += sum(g.lost for g in gaps)
        if exact < len(exp.hashes) and not gaps:
            verdict.damaged_unmarked += 1
    return verdict

"""Helpers and fixtures for the real-capture tests: a self-signed certificate, TLS servers on 127.0.0.1
(Python's ``ssl`` + ``http.server``; nginx for HTTP/2 lives in its test) and a collecting sink.

Test modules import it (fixtures included) under this distinct name: a second ``conftest.py`` would
shadow ``tests/conftest.py`` as module ``conftest``. Tests marked with :data:`requires_bpf` need root, a
kernel with BTF and libbpf; elsewhere they are skipped at collection with the reason.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecaptureq.protocol import Event

SERVER_SCRIPT = r"""
import http.server, ssl, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(b"echo:" + body)

    def do_GET(self):
        size = self.path.strip("/")
        self._reply(bytes((i * 7) % 251 for i in range(int(size))) if size.isdigit() else b"hello from tls")

    def _reply(self, out):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def body_of(size: int) -> bytes:
    """The body the test server sends for ``GET /<size>``."""
    return bytes((i * 7) % 251 for i in range(size))


def _bpf_skip_reason() -> str | None:
    if sys.platform != "linux":
        return "eBPF capture needs Linux"
    if os.geteuid() != 0:
        return "eBPF capture tests need root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    try:
        ctypes.CDLL("libbpf.so.1")
    except OSError:
        return "libbpf.so.1 not installed (apt install libbpf1)"
    from ecaptureq.sources.tls import CaptureError, find_libssl

    try:
        find_libssl()
    except CaptureError as exc:
        return str(exc)
    if not shutil.which("curl") or not shutil.which("openssl"):
        return "curl and openssl are needed"
    return None


SKIP_REASON = _bpf_skip_reason()


requires_bpf = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
"""Skip (decided at collection) unless root, BTF, libbpf, a libssl, curl and openssl are all here."""


@dataclass
class Cert:
    """A self-signed certificate for 127.0.0.1."""

    cert: Path
    key: Path


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for IP 127.0.0.1, made by ``openssl req``."""
    d = tmp_path_factory.mktemp("cert")
    os.chmod(d, 0o755)
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")]
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *subject, *files]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return Cert(d / "cert.pem", d / "key.pem")


@dataclass
class TlsServer:
    """A Python ``ssl`` + ``http.server`` HTTPS server process on 127.0.0.1."""

    proc: subprocess.Popen[str]
    port: int

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.proc.pid


@pytest.fixture
def tls_server(cert: Cert, tmp_path: Path) -> Iterator[TlsServer]:
    """An HTTPS server: ``POST`` echoes ``echo:<body>``, ``GET /N`` returns :func:`body_of` (N)."""
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cert.cert), str(cert.key)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield TlsServer(proc, port)
    proc.terminate()
    proc.wait(timeout=10)


class Collector:
    """A thread-safe sink keeping every log line and event, with a bounded wait."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def publish_log(self, line: str) -> None:
        """Keep a run-log line."""
        with self._cond:
            self.logs.append(line)
            self._cond.notify_all()

    def publish_event(self, event: Event) -> None:
        """Keep an event."""
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 10.0) -> list[Event]:
        """Wait until ``predicate(events)`` holds (or ``timeout``); return a copy of the events."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return list(self.events)

    def stream(self, pid: int, direction: int) -> bytes:
        """All payload bytes of one process in one direction (0 write, 1 read), in order.

        The uuid's data_type uses eCapture's numbers, the other way round: 1 write, 0 read.
        """
        suffix = "_1" if direction == 0 else "_0"
        with self._cond:
            return b"".join(e.payload for e in self.events if e.pid == pid and e.uuid.endswith(suffix))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_TLS_CONF = """
daemon off;
master_process off;
user root;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location /h2 {{ default_type text/plain; return 200 "hello over h2\\n"; }}
        location /www/ {{ alias {prefix}/www/; }}
    }}
}}
"""
NGINX_BIG = bytes((i * 13) % 251 for i in range(100_000))
"""What nginx_tls serves at /www/big.bin."""


@pytest.fixture
def nginx_tls(cert: Cert, tmp_path: Path) -> Iterator[int]:
    """nginx on a free port of 127.0.0.1: HTTP/1.1 and HTTP/2 over TLS 1.2 and 1.3 (nginx 1.22 leaves 1.3
    off by default), ``/h2`` a short text and ``/www/big.bin`` :data:`NGINX_BIG`. Yields the port."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx not installed (apt install nginx-light)")
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "big.bin").write_bytes(NGINX_BIG)
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_TLS_CONF.format(prefix=tmp_path, port=port, cert=cert.cert, key=cert.key))
    proc = subprocess.Popen([exe, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)  # polling the port nginx is about to listen on, bounded
    yield port
    proc.terminate()
    proc.wait(timeout=10)

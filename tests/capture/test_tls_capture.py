"""Real capture: curl, Python's urllib and nginx (HTTP/2) over TLS on 127.0.0.1, seen by eBPF uprobes."""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from capture_support import (  # the fixtures cert and tls_server are registered by this import
    Cert,
    Collector,
    TlsServer,
    body_of,
    cert,
    free_port,
    requires_bpf,
    tls_server,
)

from ecaptureq.decode.http2 import H2Connection
from ecaptureq.protocol.messages import EventType
from ecaptureq.sources.tls import TlsCapture, find_libssl

pytestmark = [pytest.mark.e2e, pytest.mark.capture, requires_bpf]

CaptureFactory = Callable[..., Collector]


@pytest.fixture
def capture() -> Iterator[CaptureFactory]:
    """Start an in-process capture (into a :class:`Collector`); stopped after the test."""
    started: list[TlsCapture] = []

    def start(**kwargs: object) -> Collector:
        sink = Collector()
        cap = TlsCapture(sink, libssl=find_libssl(), **kwargs)  # type: ignore[arg-type]
        cap.start()
        started.append(cap)
        sink.capture = cap  # type: ignore[attr-defined]
        return sink

    yield start
    for cap in started:
        cap.stop()
        assert cap.attached == 0


def curl(*args: str, cert: Cert) -> subprocess.Popen[bytes]:
    """Start curl (OpenSSL build) trusting the test certificate."""
    return subprocess.Popen(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(cert.cert), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_curl_request_and_response_byte_exact(
    capture: CaptureFactory, tls_server: TlsServer, cert: Cert, tmp_path: Path
) -> None:
    sink = capture()
    body = b"secret=hunter2&binary=\x00\x01\xff\r\n" * 3
    (tmp_path / "body").write_bytes(body)
    proc = curl(
        "--data-binary", f"@{tmp_path / 'body'}", f"https://127.0.0.1:{tls_server.port}/echo", cert=cert
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"echo:" + body
    events = sink.wait_for(
        lambda evs: any(e.pid == proc.pid and e.uuid.endswith("_0") and e.payload.endswith(out) for e in evs)
    )
    mine = [e for e in events if e.pid == proc.pid]
    request = [e for e in mine if e.uuid.endswith("_1")]
    response = [e for e in mine if e.uuid.endswith("_0")]
    assert len(request) == 1 and len(response) == 1, [e.uuid for e in mine]
    req, resp = request[0], response[0]
    assert req.payload.startswith(b"POST /echo HTTP/1.1\r\n")
    assert req.payload.endswith(b"\r\n\r\n" + body)
    assert req.type == EventType.HTTP1_REQUEST
    assert resp.payload.startswith(b"HTTP/1.0 200 OK\r\n") or resp.payload.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.payload.endswith(b"\r\n\r\n" + b"echo:" + body)
    assert resp.type == EventType.HTTP1_RESPONSE
    for e in (req, resp):
        assert e.pname == "curl"
        assert e.dst_ip == "127.0.0.1" and e.dst_port == tls_server.port
        assert e.src_ip == "127.0.0.1" and e.src_port > 0
        assert e.length == len(e.payload)
        assert e.timestamp > 1_600_000_000 * 10**9  # epoch nanoseconds
    # Paired: one connection (pid_tid_comm_fd), two directions.
    assert req.uuid.rsplit("_", 1)[0] == resp.uuid.rsplit("_", 1)[0]
    assert req.uuid.split("_")[:3] == [str(proc.pid), str(proc.pid), "curl"]
    assert int(req.uuid.split("_")[3]) >= 0
    assert (req.src_port, req.dst_port) == (resp.src_port, resp.dst_port)
    assert req.timestamp <= resp.timestamp
    # The server side saw the same bytes, mirrored.
    server_in = [e for e in events if e.pid == tls_server.pid and e.uuid.endswith("_0")]
    assert any(e.payload == req.payload for e in server_in)
    assert all(e.src_port == tls_server.port for e in server_in)


def test_python_urllib_client(capture: CaptureFactory, tls_server: TlsServer, cert: Cert) -> None:
    sink = capture()
    script = (
        "import ssl, sys, urllib.request\n"
        f"ctx = ssl.create_default_context(cafile={str(cert.cert)!r})\n"
        f"r = urllib.request.urlopen('https://127.0.0.1:{tls_server.port}/1234', context=ctx, timeout=20)\n"
        "sys.stdout.buffer.write(r.read())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == body_of(1234)
    sink.wait_for(lambda evs: sink.stream(proc.pid, 1).endswith(out))
    sent = sink.stream(proc.pid, 0)
    received = sink.stream(proc.pid, 1)
    assert sent.startswith(b"GET /1234 HTTP/1.1\r\n")
    assert b"\r\nUser-Agent: Python-urllib/" in sent
    assert received.endswith(b"\r\n\r\n" + body_of(1234))
    events = [e for e in sink.events if e.pid == proc.pid]
    assert {e.pname for e in events} == {"python3"} or all(e.pname.startswith("python") for e in events)
    assert all(e.dst_port == tls_server.port for e in events)


def test_one_mib_response_complete(capture: CaptureFactory, tls_server: TlsServer, cert: Cert) -> None:
    sink = capture()
    size = 1 << 20
    proc = curl(f"https://127.0.0.1:{tls_server.port}/{size}", cert=cert)
    out, _ = proc.communicate(timeout=30)
    assert out == body_of(size)
    sink.wait_for(lambda evs: sink.stream(proc.pid, 1).endswith(out), timeout=20)
    received = sink.stream(proc.pid, 1)
    head, sep, got = received.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.")
    assert got == body_of(size)
    events = [e for e in sink.events if e.pid == proc.pid and e.uuid.endswith("_0")]
    assert all(0 < e.length <= 16384 for e in events)
    assert len({e.uuid for e in events}) == 1
    stats = sink.capture.stats  # type: ignore[attr-defined]
    assert stats.drop_chunks == 0 and stats.oversized == 0
    # The server's single large write is split into records and events, none lost.
    sent = sink.stream(tls_server.pid, 0)
    assert sent.endswith(body_of(size))


def test_pid_filter_excludes_other_processes(
    capture: CaptureFactory, tls_server: TlsServer, cert: Cert
) -> None:
    sink = capture(pid=tls_server.pid)
    proc = curl(f"https://127.0.0.1:{tls_server.port}/77", cert=cert)
    out, _ = proc.communicate(timeout=30)
    assert out == body_of(77)
    events = sink.wait_for(lambda evs: sink.stream(tls_server.pid, 0).endswith(out))
    assert sink.stream(tls_server.pid, 0).endswith(out)
    assert sink.stream(tls_server.pid, 1).startswith(b"GET /77 HTTP/1.1")
    assert {e.pid for e in events} == {tls_server.pid}
    assert not [e for e in events if e.pname == "curl"]


def test_uid_filter_keeps_only_that_users_processes(
    capture: CaptureFactory, tls_server: TlsServer, cert: Cert
) -> None:
    """--uid 65534: curl run as nobody is captured, the same request from root is not."""
    with tempfile.TemporaryDirectory() as shared:  # pytest's tmp_path is private to root
        os.chmod(shared, 0o755)
        ca = Path(shared) / "ca.pem"
        shutil.copy(cert.cert, ca)
        ca.chmod(0o644)
        _uid_filter(capture, tls_server, ca)


def _uid_filter(capture: CaptureFactory, tls_server: TlsServer, ca: Path) -> None:
    sink = capture(uid=65534)
    url = f"https://127.0.0.1:{tls_server.port}/88"
    as_root = subprocess.Popen(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(ca), url], stdout=subprocess.PIPE
    )
    root_out, _ = as_root.communicate(timeout=30)
    as_nobody = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "curl", "-sS", "--max-time", "20", "--cacert", str(ca), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = as_nobody.communicate(timeout=30)
    assert out == root_out == body_of(88), err
    sink.wait_for(lambda evs: sink.stream(as_nobody.pid, 1).endswith(out))
    assert sink.stream(as_nobody.pid, 0).startswith(b"GET /88 HTTP/1.1")
    assert not [e for e in sink.events if e.pid in (as_root.pid, tls_server.pid)]


NGINX_CONF = """
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
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /h2 {{ default_type text/plain; return 200 "hello over h2\\n"; }}
    }}
}}
"""


@pytest.fixture
def nginx(cert: Cert, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """nginx serving HTTP/2 over TLS on a free port of 127.0.0.1."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx not installed (apt install nginx-light)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=tmp_path, port=port, cert=cert.cert, key=cert.key))
    proc = subprocess.Popen([exe, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, port
    proc.terminate()
    proc.wait(timeout=10)


def test_http2_curl_against_nginx(
    capture: CaptureFactory, nginx: tuple[subprocess.Popen[bytes], int], cert: Cert
) -> None:
    server, port = nginx
    sink = capture()
    proc = curl("--http2", f"https://127.0.0.1:{port}/h2?x=1", cert=cert)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"hello over h2\n"
    sink.wait_for(lambda evs: b"hello over h2" in sink.stream(proc.pid, 1))
    client = [e for e in sink.events if e.pid == proc.pid]
    writes = [e for e in client if e.uuid.endswith("_1")]
    assert writes[0].payload.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert writes[0].type == EventType.HTTP2_REQUEST
    assert any(e.type == EventType.HTTP2_RESPONSE for e in client if e.uuid.endswith("_0"))
    assert all(e.dst_port == port for e in client)
    # Decoded into an exchange by the decode layer.
    conn = H2Connection()
    messages = []
    messages += conn.feed("client", sink.stream(proc.pid, 0)).messages
    messages += conn.feed("server", sink.stream(proc.pid, 1)).messages
    messages += conn.flush()
    requests = [m for m in messages if m.kind == "request"]
    responses = [m for m in messages if m.kind == "response"]
    assert [(m.method, m.path) for m in requests] == [("GET", "/h2?x=1")]
    assert [(m.status, m.body) for m in responses] == [(200, b"hello over h2\n")]
    assert requests[0].stream_id == responses[0].stream_id
    # nginx's side of the same exchange.
    nginx_events = [e for e in sink.events if e.pid == server.pid]
    assert nginx_events and all(e.src_port == port for e in nginx_events)


FILE_READING_CLIENT = r"""
# An OpenSSL client (libssl through ctypes) whose BIO reads a regular file before every socket read
# and write, as node reads /etc/localtime inside SSL_read: the first syscall of the call is a file's.
import ctypes, ctypes.util, os, socket, sys
ssl = ctypes.CDLL(sys.argv[1])
crypto = ctypes.CDLL(ctypes.util.find_library("crypto"))
vp, ci = ctypes.c_void_p, ctypes.c_int
for lib, name, res, args in [
    (ssl, "TLS_client_method", vp, []), (ssl, "SSL_CTX_new", vp, [vp]), (ssl, "SSL_new", vp, [vp]),
    (ssl, "SSL_set_bio", None, [vp, vp, vp]), (ssl, "SSL_connect", ci, [vp]),
    (ssl, "SSL_write", ci, [vp, ctypes.c_char_p, ci]), (ssl, "SSL_read", ci, [vp, vp, ci]),
    (crypto, "BIO_get_new_index", ci, []), (crypto, "BIO_meth_new", vp, [ci, ctypes.c_char_p]),
    (crypto, "BIO_meth_set_write", ci, [vp, vp]), (crypto, "BIO_meth_set_read", ci, [vp, vp]),
    (crypto, "BIO_meth_set_ctrl", ci, [vp, vp]), (crypto, "BIO_new", vp, [vp]),
    (crypto, "BIO_set_init", None, [vp, ci]),
]:
    getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
sys.stdin.readline()  # the capture is ready
sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
clock = os.open(sys.argv[3], os.O_RDONLY)

def touch_file():
    os.lseek(clock, 0, os.SEEK_SET)
    os.read(clock, 64)  # read(2) on a regular file, inside the SSL call

WRITE = ctypes.CFUNCTYPE(ci, vp, vp, ci)
READ = ctypes.CFUNCTYPE(ci, vp, vp, ci)
CTRL = ctypes.CFUNCTYPE(ctypes.c_long, vp, ci, ctypes.c_long, vp)

@WRITE
def bio_write(bio, data, n):
    touch_file()
    return sock.send(ctypes.string_at(data, n))

@READ
def bio_read(bio, buf, n):
    touch_file()
    got = sock.recv(n)
    ctypes.memmove(buf, got, len(got))
    return len(got) or -1

@CTRL
def bio_ctrl(bio, cmd, larg, parg):
    return 1 if cmd == 11 else 0  # BIO_CTRL_FLUSH

meth = crypto.BIO_meth_new(crypto.BIO_get_new_index() | 0x0400, b"file-reading socket")
crypto.BIO_meth_set_write(meth, ctypes.cast(bio_write, vp))
crypto.BIO_meth_set_read(meth, ctypes.cast(bio_read, vp))
crypto.BIO_meth_set_ctrl(meth, ctypes.cast(bio_ctrl, vp))
bio = crypto.BIO_new(meth)
crypto.BIO_set_init(bio, 1)
conn = ssl.SSL_new(ssl.SSL_CTX_new(ssl.TLS_client_method()))
ssl.SSL_set_bio(conn, bio, bio)
assert ssl.SSL_connect(conn) == 1
request = b"GET /700 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
assert ssl.SSL_write(conn, request, len(request)) == len(request)
buf, response = ctypes.create_string_buffer(4096), b""
while (n := ssl.SSL_read(conn, buf, len(buf))) > 0:
    response += buf.raw[:n]
sys.stdout.write(f"{sock.fileno()} {clock} {sock.getsockname()[1]}\n")
sys.stdout.flush()
sys.stdout.buffer.write(response)
"""


def test_only_socket_fds_count(capture: CaptureFactory, tls_server: TlsServer, tmp_path: Path) -> None:
    """A file read inside SSL_read/SSL_write (node reads /etc/localtime) is not the connection's fd."""
    clock = tmp_path / "localtime"
    clock.write_bytes(b"TZif2" + bytes(59))
    script = tmp_path / "client.py"
    script.write_text(FILE_READING_CLIENT)
    proc = subprocess.Popen(
        [sys.executable, str(script), find_libssl(), str(tls_server.port), str(clock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sink = capture(pid=proc.pid)
    out, err = proc.communicate(b"go\n", timeout=30)
    assert proc.returncode == 0, err
    first, _, response = out.partition(b"\n")
    sock_fd, file_fd, local_port = (int(x) for x in first.split())
    assert response.endswith(b"\r\n\r\n" + body_of(700))
    sink.wait_for(lambda evs: sink.stream(proc.pid, 1).endswith(body_of(700)))
    events = [e for e in sink.events if e.pid == proc.pid]
    assert sink.stream(proc.pid, 0).startswith(b"GET /700 HTTP/1.1\r\n")
    assert {int(e.uuid.split("_")[3]) for e in events} == {sock_fd} != {file_fd}
    assert {(e.src_port, e.dst_port) for e in events} == {(local_port, tls_server.port)}

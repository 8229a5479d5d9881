"""Loopback helpers for the decoder tests: a tapping TCP proxy, real servers, and events from taps.

The proxy forwards between a real client and a real server on 127.0.0.1 and records every chunk each
side sent, in order, the way eCapture records each SSL_write/SSL_read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from ecaptureq.decode import Decoded, Decoder
from ecaptureq.decode.classify import classify_payload
from ecaptureq.protocol import Event
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid

C2S = "c2s"
S2C = "s2c"
BASE_NS = 1_760_495_631_000_000_000


class TapProxy:
    """Forward 127.0.0.1:<port> to ``target`` and record ``(direction, chunk)`` for every recv()."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.chunks: list[tuple[str, bytes]] = []
        self.client_addrs: list[tuple[str, int]] = []
        """The address of every client that connected, in order (its real 4-tuple's source)."""
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, addr = self._listener.accept()
            except OSError:
                return
            self.client_addrs.append(addr)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._socks += [client, upstream]
            for src, dst, name in ((client, upstream, C2S), (upstream, client, S2C)):
                t = threading.Thread(target=self._pump, args=(src, dst, name), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, name: str) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                self.chunks.append((name, data))
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)
        for s in self._socks:
            s.close()

    def direction(self, name: str) -> bytes:
        """Everything one direction carried."""
        return b"".join(d for n, d in self.chunks if n == name)


def events_from_chunks(
    chunks: list[tuple[str, bytes]],
    *,
    pid: int = 4242,
    comm: str = "curl",
    fd: int = 5,
    step_ns: int = 1_000_000,
    src: tuple[str, int] = ("127.0.0.1", 40000),
    dst: tuple[str, int] = ("127.0.0.1", 443),
    base_ns: int = BASE_NS,
) -> list[Event]:
    """Events as our eBPF source would publish them: uuid ``<pid>_<pid>_<comm>_<fd>_<1 write|0 read>``
    and the 4-tuple ``src``, ``dst`` from the client's point of view, type from :func:`classify_payload`,
    timestamps ``step_ns`` apart from ``base_ns``."""
    events = []
    for i, (name, data) in enumerate(chunks):
        is_write = name == C2S
        events.append(
            Event(
                timestamp=base_ns + i * step_ns,
                uuid=format_uuid(pid, pid, comm, fd, DATA_TYPE_WRITE if is_write else DATA_TYPE_READ),
                src_ip=src[0],
                src_port=src[1],
                dst_ip=dst[0],
                dst_port=dst[1],
                pid=pid,
                pname=comm,
                type=classify_payload(data, is_write),
                length=len(data),
                payload=data,
            )
        )
    return events


def rechunk(chunks: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """Split every chunk into pieces of at most ``size`` bytes (a message split over captures)."""
    out = []
    for name, data in chunks:
        out.extend((name, data[i : i + size]) for i in range(0, len(data), size))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def nginx(root: Path, tmp: Path) -> Iterator[tuple[int, int]]:
    """Run nginx from ``root``: yields (HTTP/1.1 port with gzip on, h2c prior-knowledge port)."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if exe is None:
        import pytest

        pytest.skip("nginx is not installed")
    p1, p2 = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
daemon off; master_process off; worker_processes 1;
error_log {tmp}/error.log; pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  types {{ application/json json; text/html html; text/plain txt; application/octet-stream bin; }}
  gzip on; gzip_min_length 1; gzip_types application/json text/plain; gzip_proxied any;
  server {{ listen 127.0.0.1:{p1}; root {root}; }}
  server {{ listen 127.0.0.1:{p2} http2; root {root}; }}
}}
"""
    )
    proc = subprocess.Popen(
        [exe, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", p2), timeout=1).close()
                socket.create_connection(("127.0.0.1", p1), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    import pytest

                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.skip(f"nginx did not start: {err}")
                time.sleep(0.05)
        yield p1, p2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def curl(port: int, paths: list[str], *args: str) -> TapProxy:
    """Run curl ARGS on ``paths`` of 127.0.0.1:``port`` through a tap (one connection); return the tap."""
    tap = TapProxy(port)
    urls = [f"http://127.0.0.1:{tap.port}{p}" for p in paths]
    cmd = ["curl", "-sS", *args, *[a for u in urls for a in (u, "-o", "/dev/null")]]
    subprocess.run(cmd, check=True, timeout=30)
    tap.close()
    return tap


def h2_client_get(port: int, paths: list[str]) -> TapProxy:
    """python-hyper's h2 client fetching ``paths`` concurrently on one connection, through a tap."""
    tap = TapProxy(port)
    sock = socket.create_connection(("127.0.0.1", tap.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    for n, path in enumerate(paths):
        headers = [
            (":method", "GET"),
            (":path", path),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{tap.port}"),
        ]
        conn.send_headers(
            1 + 2 * n, [*headers, ("accept-encoding", "gzip"), ("user-agent", "h2-test")], end_stream=True
        )
    sock.sendall(conn.data_to_send())
    ended: set[int] = set()
    while len(ended) < len(paths):
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    tap.close()
    return tap


def decode_all(events: list[Event], decoder: Decoder | None = None) -> list[Decoded]:
    """Feed every event to one decoder (a new one by default), then flush it; return all items."""
    d = decoder or Decoder()
    out: list[Decoded] = []
    for ev in events:
        out.extend(d.feed(ev))
    out.extend(d.flush())
    return out

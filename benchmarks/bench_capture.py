"""Benchmark the eBPF TLS capture (needs root): ``python benchmarks/bench_capture.py [--seconds S]``.

1. A keep-alive HTTPS request loop on 127.0.0.1 (Python client and server, separate processes): requests/s
   without capture (the baseline, measured in the same run) and with ``TlsCapture`` hooking libssl.
2. 1 KiB ``SSL_write`` calls from one process (``--pid`` filter in the kernel) at full speed and then at
   paced rates: the highest rate at which every byte was captured (zero ring-buffer drops).

Prints a table. Numbers depend on the machine; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ecaptureq.protocol import Event
from ecaptureq.sources.tls import TlsCapture, find_libssl

HTTP_SERVER = r"""
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        out = b"x" * 512
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True); srv.serve_forever()
"""

HTTP_CLIENT = r"""
import http.client, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
n, end = 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    conn.request("GET", "/"); r = conn.getresponse(); r.read(); n += 1
print(n / float(sys.argv[3]))
"""

SINK_SERVER = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.create_server(("127.0.0.1", 0)); print(ls.getsockname()[1], flush=True)
while True:
    c, _ = ls.accept()
    s = ctx.wrap_socket(c, server_side=True)
    while s.recv(1 << 16): pass
    s.close()
"""

WRITER = r"""
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
count, rate = int(sys.argv[3]), float(sys.argv[4])
buf = bytes(range(256)) * 4
sys.stdin.readline()  # go
start = time.monotonic()
for i in range(count):
    if rate and i % 64 == 0:
        delay = start + i / rate - time.monotonic()
        if delay > 0: time.sleep(delay)
    s.sendall(buf)
elapsed = time.monotonic() - start
s.close()
print(count / elapsed)
"""


class CountingSink:
    """Counts events and payload bytes per (pid, direction)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes: dict[tuple[int, int], int] = {}
        self.events = 0
        self.logs: list[str] = []

    def publish_log(self, line: str) -> None:
        self.logs.append(line)

    def publish_event(self, event: Event) -> None:
        key = (event.pid, int(event.uuid.rsplit("_", 1)[1]))
        with self.lock:
            self.events += 1
            self.bytes[key] = self.bytes.get(key, 0) + event.length


def make_cert(d: Path) -> tuple[str, str]:
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def start_server(script: str, cert: str, key: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", script, cert, key], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def request_loop(port: int, cert: str, seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, "-c", HTTP_CLIENT, str(port), cert, str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    return float(out.stdout)


def write_run(port: int, cert: str, count: int, rate: float, libssl: str) -> tuple[float, int, int, int]:
    """Run the writer under capture; return (writes/s, bytes captured, bytes written, records dropped)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(port), cert, str(count), str(rate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    sink = CountingSink()
    cap = TlsCapture(sink, libssl=libssl, pid=writer.pid)
    cap.start()
    try:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        out, _ = writer.communicate(timeout=300)
        deadline = time.monotonic() + 30
        while sink.bytes.get((writer.pid, 0), 0) < count * 1024 and time.monotonic() < deadline:
            if cap.stats().drop_chunks:
                break
            time.sleep(0.05)
    finally:
        cap.stop()
    stats = cap.stats()
    return float(out), sink.bytes.get((writer.pid, 0), 0), count * 1024, stats.drop_chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each request loop")
    parser.add_argument("--writes", type=int, default=200_000, help="1 KiB writes per write run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_capture: needs root (eBPF)", file=sys.stderr)
        return 5
    libssl = find_libssl()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(Path(tmp))
        server, port = start_server(HTTP_SERVER, cert, key)
        try:
            base = request_loop(port, cert, args.seconds)
            sink = CountingSink()
            with TlsCapture(sink, libssl=libssl) as cap:
                captured = request_loop(port, cert, args.seconds)
                time.sleep(0.3)
            stats = cap.stats()
            base2 = request_loop(port, cert, args.seconds)
        finally:
            server.terminate()
            server.wait()
        baseline = (base + base2) / 2
        rows.append(
            ("HTTPS keep-alive req/s, no capture (baseline, mean of before/after)", f"{baseline:,.0f}")
        )
        rows.append(("HTTPS keep-alive req/s, with capture", f"{captured:,.0f}"))
        rows.append(("ratio with/without", f"{captured / baseline:.2f}"))
        rows.append(
            ("  captured during that loop", f"{sink.events:,} events, {stats.drop_chunks} records dropped")
        )

        server, port = start_server(SINK_SERVER, cert, key)
        try:
            for rate in (0.0, 200_000.0, 100_000.0, 50_000.0, 25_000.0):
                achieved, got, sent, dropped = write_run(port, cert, args.writes, rate, libssl)
                label = "full speed" if rate == 0 else f"paced at {rate:,.0f}/s"
                ok = got == sent and dropped == 0
                rows.append(
                    (
                        f"1 KiB SSL_write, {label}",
                        f"{achieved:,.0f} writes/s, {got / 2**20:.1f}/{sent / 2**20:.1f} MiB captured, "
                        f"{dropped} dropped{' (zero loss)' if ok else ''}",
                    )
                )
                if ok:
                    break
        finally:
            server.terminate()
            server.wait()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

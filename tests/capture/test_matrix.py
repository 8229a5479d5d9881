"""The capture matrix: one capture with no library option, and real clients of every TLS library against a
local HTTPS server on 127.0.0.1. Each case compares the body the client received with the body captured
from its SSL reads (sha256), checks the request captured from its writes, and the metadata (pid, comm,
uuid, fd/4-tuple or empty, cgroup).

Only events of the processes a test started are looked at, so other captures and clients running on the
machine at the same time do not disturb it.
"""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from capture_support import SERVER_SCRIPT, Cert, Collector, body_of, cert, requires_bpf

from ecaptureq.cli.tls import JsonLinesSink
from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.process import ProcessLabel, parse_process
from ecaptureq.sources.tls import TlsCapture
from ecaptureq.sources.tls.discover import FileId, executable_mappings
from ecaptureq.sources.tls.hooks import cgroup2_root
from ecaptureq.sources.tls.locate import libssl_from_ldconfig
from ecaptureq.store import CaptureStore

pytestmark = [pytest.mark.e2e, pytest.mark.capture, requires_bpf]

PYTHON_COMM = Path(sys.executable).name[:15]
"""The comm of the Python clients: the name they were started by (``python`` in a venv)."""

SIZE = 70_000
"""Body size: several TLS records and several SSL_read calls."""


@dataclass
class Matrix:
    """The one capture of this module, its server and a scratch directory."""

    capture: TlsCapture
    sink: Collector
    port: int
    cert: Cert
    tmp: Path


@pytest.fixture(scope="module")
def matrix(cert: Cert, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """An HTTPS server and a capture of everything (no --libssl), started once for the module."""
    tmp = tmp_path_factory.mktemp("matrix")
    os.chmod(tmp, 0o755)
    script = tmp / "server.py"
    script.write_text(SERVER_SCRIPT)
    server = subprocess.Popen(
        [sys.executable, str(script), str(cert.cert), str(cert.key)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline())
    sink = Collector()
    capture = TlsCapture(sink)
    capture.start()
    try:
        yield Matrix(capture, sink, port, cert, tmp)
    finally:
        capture.stop()
        server.terminate()
        server.wait(timeout=10)
    assert capture.attached == 0


def _events(sink: Collector, pid: int) -> list[Event]:
    return [e for e in sink.events if e.pid == pid]


def _stream(events: list[Event], data_type: str) -> bytes:
    return b"".join(e.payload for e in events if e.uuid.endswith(data_type))


def _body(stream: bytes) -> bytes:
    _, _, body = stream.partition(b"\r\n\r\n")
    return body


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_captured(m: Matrix, pid: int, body: bytes, timeout: float = 15.0) -> list[Event]:
    """Wait (bounded) until the body appears in what ``pid`` read; return that process's events."""
    m.sink.wait_for(lambda evs: body in _stream([e for e in evs if e.pid == pid], "_0"), timeout)
    return _events(m.sink, pid)


def check(
    m: Matrix,
    pid: int,
    comm: str,
    body: bytes,
    received: bytes,
    *,
    request: bytes = b"GET /",
    tuple_known: bool = True,
    whole: bool = True,
) -> list[Event]:
    """The client got ``body`` and so did the capture (sha256), with the request and right metadata."""
    assert _sha(received) == _sha(body), "the client did not receive the expected body"
    events = wait_captured(m, pid, body)
    assert events, f"nothing captured from pid {pid} ({comm})"
    read = _stream(events, "_0")
    written = _stream(events, "_1")
    if whole:
        assert _sha(_body(read)) == _sha(body), f"captured body differs ({len(read)} bytes read)"
    assert request in written
    uuid = re.compile(rf"^{pid}_(\d+)_{re.escape(comm)}_(-?\d+)_[01]$")
    own_cgroup = Path("/proc/self/cgroup").read_text().split("::", 1)[-1].strip()
    for e in events:
        assert e.pname == comm and uuid.match(e.uuid), e.uuid
        fd = int(e.uuid.split("_")[-2])
        if e.dst_port:  # a 4-tuple, when given, is the one to our server
            assert (e.dst_ip, e.dst_port) == ("127.0.0.1", m.port), e
            assert e.src_ip == "127.0.0.1" and e.src_port > 0 and fd >= 0
        else:
            assert e.dst_ip == "" and e.src_ip == ""
    if tuple_known:
        assert all(e.dst_port == m.port for e in events), "4-tuple missing"
    info = m.capture.process_info(pid)
    assert info is not None and info.cgroup == own_cgroup
    return events


def run(args: list[str], *, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a client; its stdout is the body (or the raw response)."""
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return proc


def finish(proc: subprocess.Popen[bytes], stdin: bytes = b"", ok: tuple[int, ...] = (0,)) -> bytes:
    """Feed ``stdin``, wait (bounded) and return stdout; fail with stderr on another exit code."""
    out, err = proc.communicate(stdin, timeout=60)
    assert proc.returncode in ok, err.decode(errors="replace")
    return out


def request(m: Matrix, size: int = SIZE) -> bytes:
    """A raw HTTP/1.1 request for ``GET /size`` closing the connection afterwards."""
    return f"GET /{size} HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nConnection: close\r\n\r\n".encode()


def need(*tools: str) -> None:
    """Skip with the apt package to install when a client is missing."""
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/setup-test installs it)")


# -- OpenSSL ---------------------------------------------------------------------------------------


def test_curl(matrix: Matrix) -> None:
    url = f"https://127.0.0.1:{matrix.port}/{SIZE}"
    proc = run(["curl", "-sS", "--cacert", str(matrix.cert.cert), url])
    check(matrix, proc.pid, "curl", body_of(SIZE), finish(proc))


def test_openssl_s_client(matrix: Matrix) -> None:
    args = ["openssl", "s_client", "-quiet", "-ign_eof", "-CAfile", str(matrix.cert.cert)]
    proc = run([*args, "-connect", f"127.0.0.1:{matrix.port}"])
    # Exit 1: the test server (Python's http.server) closes without a close_notify, which s_client reports.
    raw = finish(proc, request(matrix), ok=(0, 1))
    check(matrix, proc.pid, "openssl", body_of(SIZE), _body(raw))


CLIENT_THREADS = """
import http.client, ssl, sys, threading
port, cafile, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
out = {}
def get(i):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    c.request("GET", f"/{size + i}")
    out[i] = c.getresponse().read()
threads = [threading.Thread(target=get, args=(i,)) for i in range(3)]
for t in threads: t.start()
for t in threads: t.join()
sys.stdout.buffer.write(b"".join(out[i] for i in range(3)))
"""


def test_python_threads(matrix: Matrix) -> None:
    script = matrix.tmp / "threads.py"
    script.write_text(CLIENT_THREADS)
    proc = run([sys.executable, str(script), str(matrix.port), str(matrix.cert.cert), str(SIZE)])
    out = finish(proc)
    bodies = [body_of(SIZE + i) for i in range(3)]
    assert out == b"".join(bodies)

    def per_thread(events: list[Event]) -> list[bytes]:
        tids = sorted({e.uuid.split("_")[1] for e in events if e.pid == proc.pid})
        return [_body(_stream([e for e in events if f"_{tid}_" in e.uuid], "_0")) for tid in tids]

    matrix.sink.wait_for(lambda evs: sorted(map(_sha, per_thread(evs))) == sorted(map(_sha, bodies)), 15)
    streams = per_thread(matrix.sink.events)
    assert len(streams) == 3, "one thread id per client thread"
    assert sorted(map(_sha, streams)) == sorted(map(_sha, bodies))
    for i, body in enumerate(bodies):  # metadata of every event; the body of each thread is checked above
        check(matrix, proc.pid, PYTHON_COMM, body, body, request=f"GET /{SIZE + i} ".encode(), whole=False)


CLIENT_ASYNCIO = """
import asyncio, ssl, sys
port, cafile, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
async def main():
    ctx = ssl.create_default_context(cafile=cafile)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(f"GET /{size} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n".encode())
    raw = await reader.read(-1)
    sys.stdout.buffer.write(raw.partition(b"\\r\\n\\r\\n")[2])
asyncio.run(main())
"""


def test_python_asyncio_memory_bio(matrix: Matrix) -> None:
    script = matrix.tmp / "aio.py"
    script.write_text(CLIENT_ASYNCIO)
    proc = run([sys.executable, str(script), str(matrix.port), str(matrix.cert.cert), str(SIZE)])
    # Memory BIOs: the SSL calls make no socket syscalls, so the fd and 4-tuple are empty (never wrong).
    check(matrix, proc.pid, PYTHON_COMM, body_of(SIZE), finish(proc), tuple_known=False)


CLIENT_NODE = """
const https = require("https"), fs = require("fs");
const [port, cafile, size] = process.argv.slice(2);
process.stdout.write("ready\\n");
process.stdin.once("data", () => {
  https.get({host: "127.0.0.1", port, path: "/" + size, ca: fs.readFileSync(cafile)}, (res) => {
    res.on("data", (d) => process.stdout.write(d));
    res.on("end", () => process.exit(0));
  }).on("error", (e) => { console.error(e); process.exit(1); });
});
"""


def test_node_static_openssl(matrix: Matrix) -> None:
    need("node")
    script = matrix.tmp / "client.js"
    script.write_text(CLIENT_NODE)
    node = os.path.realpath(shutil.which("node") or "node")
    args = [node, str(script), str(matrix.port), str(matrix.cert.cert), str(SIZE)]
    # node drives OpenSSL through memory BIOs as well: the 4-tuple may be empty. A node not running when
    # the capture started is found by the exec watcher.
    gated(matrix, args, {}, node, "node", tuple_known=False)


# -- GnuTLS and NSS --------------------------------------------------------------------------------


def test_wget_gnutls(matrix: Matrix) -> None:
    need("wget")
    url = f"https://127.0.0.1:{matrix.port}/{SIZE}"
    proc = run(["wget", "-q", "-O", "-", f"--ca-certificate={matrix.cert.cert}", url])
    check(matrix, proc.pid, "wget", body_of(SIZE), finish(proc))


def test_gnutls_cli(matrix: Matrix) -> None:
    need("gnutls-cli")
    args = ["gnutls-cli", "--logfile=/dev/null", f"--x509cafile={matrix.cert.cert}", "-p", str(matrix.port)]
    proc = run([*args, "127.0.0.1"])
    raw = finish(proc, request(matrix))
    check(matrix, proc.pid, "gnutls-cli", body_of(SIZE), _body(raw))


def test_nss_tstclnt(matrix: Matrix) -> None:
    need("tstclnt")
    req = matrix.tmp / "request.txt"
    req.write_bytes(request(matrix))
    # -D: no certificate database; -o: accept our self-signed server certificate.
    proc = run(["tstclnt", "-h", "127.0.0.1", "-p", str(matrix.port), "-D", "-o", "-A", str(req)])
    raw = finish(proc)
    events = check(matrix, proc.pid, "tstclnt", body_of(SIZE), _body(raw))
    # PR_Read of the request file is not TLS: only the socket's bytes are captured.
    assert _stream(events, "_1") == request(matrix)


# -- Go ----------------------------------------------------------------------------------------------

GO_CLIENT = """
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
)

func main() {
	os.Stdout.WriteString("ready\\n")
	bufio.NewReader(os.Stdin).ReadString('\\n')
	pem, _ := os.ReadFile(os.Args[1])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	r, err := c.Get(os.Args[2])
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(1)
	}
	b, _ := io.ReadAll(r.Body)
	os.Stdout.Write(b)
}
"""


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Go client built with Debian's golang-go: plain, stripped (-s -w), and as PIE."""
    if not shutil.which("go"):
        pytest.skip("go not installed (scripts/setup-test installs golang-go)")
    d = tmp_path_factory.mktemp("go")
    (d / "main.go").write_text(GO_CLIENT)
    env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(d / "cache"), "GOPATH": str(d / "gopath")}
    out = {"plain": d / "goclient", "stripped": d / "goclient-s", "pie": d / "goclient-pie"}
    builds = ((["-ldflags=-s -w"], out["stripped"]), ([], out["plain"]), (["-buildmode=pie"], out["pie"]))
    for flags, path in builds:
        subprocess.run(
            ["go", "build", *flags, "-o", str(path), "main.go"], cwd=d, env=env, check=True, timeout=300
        )
    return out


@pytest.mark.parametrize("flavour", ["plain", "stripped", "pie"])
def test_go_crypto_tls(matrix: Matrix, go_binaries: dict[str, Path], flavour: str) -> None:
    binary = go_binaries[flavour]
    # A binary built after the capture began: found by the exec watcher (through .gopclntab when stripped).
    args = [str(binary), str(matrix.cert.cert), f"https://127.0.0.1:{matrix.port}/{SIZE}"]
    gated(matrix, args, {}, str(binary), binary.name[:15])


# -- processes started after the capture began ---------------------------------------------------

CLIENT_GATED = """
import ssl, sys, urllib.request
port, cafile, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)   # libssl is mapped by now
print("ready", flush=True)
sys.stdin.readline()                               # the test says go once the capture has hooked it
with urllib.request.urlopen(f"https://127.0.0.1:{port}/{size}", context=ctx) as r:
    sys.stdout.buffer.write(r.read())
"""


def _private_libssl(m: Matrix, name: str) -> Path:
    system = libssl_from_ldconfig()
    assert system is not None
    d = m.tmp / name
    d.mkdir(exist_ok=True)
    copy = d / Path(system).name
    shutil.copy2(system, copy)
    return copy


def gated(m: Matrix, args: list[str], env: dict[str, str], new_file: str, comm: str, **kw: bool) -> None:
    """Run a client that prints ``ready`` once it maps ``new_file`` (a file the capture has not seen
    before it started), wait (bounded) until the exec watcher has hooked that file, then let the client
    make its request. A new file is hooked within milliseconds of the exec/mmap, not before its first
    instruction: the client's calls made before that are not captured, so the test waits for the hook."""
    proc = run(args, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        mapped = {m.file_id for m in executable_mappings(proc.pid)}
        expected = FileId.of(f"/proc/{proc.pid}/root{new_file}")
        assert expected in mapped, f"the client does not map {new_file}"
        hooker = m.capture.hooker
        assert hooker is not None
        deadline = time.monotonic() + 10
        while expected not in hooker.hooked and time.monotonic() < deadline:
            time.sleep(0.005)
        assert expected in hooker.hooked, f"{new_file} was not hooked"
        pattern = re.compile(rf"hooked \S+ [\d.]+ ms after the (?:exec|mmap) \(pid {proc.pid}\)")
        print([line for line in m.sink.logs if pattern.search(line)])  # the measured latency
        raw = finish(proc, b"go\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    check(m, proc.pid, comm, body_of(SIZE), raw, **kw)


def python_gated(m: Matrix) -> list[str]:
    """The command line of the gated Python client."""
    script = m.tmp / "gated.py"
    script.write_text(CLIENT_GATED)
    return [sys.executable, str(script), str(m.port), str(m.cert.cert), str(SIZE)]


def test_private_libssl_copy_started_after_capture(matrix: Matrix) -> None:
    copy = _private_libssl(matrix, "private")
    gated(matrix, python_gated(matrix), {"LD_LIBRARY_PATH": str(copy.parent)}, str(copy), PYTHON_COMM)


def test_own_mount_namespace_started_after_capture(matrix: Matrix) -> None:
    need("unshare")
    system = libssl_from_ldconfig()
    assert system is not None
    copy = _private_libssl(matrix, "namespace")
    # Its own mount namespace: the copy is bind-mounted over the system path there only, so the process
    # maps a file (another inode) that this namespace sees nowhere under that name.
    bind = f'mount --bind "{copy}" "{system}" && exec "$@"'
    wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c", bind, "sh"]
    gated(matrix, [*wrapper, *python_gated(matrix)], {}, system, PYTHON_COMM)
    assert FileId.of(system) != FileId.of(str(copy)), "the copy is another file"


def test_short_lived_curl_started_after_capture(matrix: Matrix) -> None:
    # Started after the capture, exits at once: the system libssl is already hooked, so its first call
    # is captured; its cgroup was read at its exec, so the metadata survives its exit.
    url = f"https://127.0.0.1:{matrix.port}/1000"
    proc = run(["curl", "-sS", "--cacert", str(matrix.cert.cert), url])
    out = finish(proc)
    assert not Path(f"/proc/{proc.pid}").exists()
    check(matrix, proc.pid, "curl", body_of(1000), out)


def test_container_id_of_exited_process_in_json(matrix: Matrix) -> None:
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    container = hashlib.sha256(b"ecaptureq matrix").hexdigest()  # 64 hex digits, as docker names them
    parent = Path(root) / f"ecaptureq-matrix-{os.getpid()}"
    scope = parent / f"docker-{container}.scope"
    scope.mkdir(parents=True)
    try:
        # The client joins a docker-named cgroup, then execs curl: the exec records that cgroup.
        url = f"https://127.0.0.1:{matrix.port}/2000"
        command = f'echo $$ > "{scope}/cgroup.procs" && exec curl -sS --cacert "{matrix.cert.cert}" {url}'
        proc = run(["sh", "-c", command])
        out = finish(proc)
        assert out == body_of(2000)
        events = wait_captured(matrix, proc.pid, body_of(2000))
    finally:
        scope.rmdir()
        parent.rmdir()
    assert not Path(f"/proc/{proc.pid}").exists()
    printed = io.StringIO()
    sink = JsonLinesSink(printed)
    sink.describe = matrix.capture.process_info
    sink.publish_event(events[0])
    line = json.loads(printed.getvalue())
    assert line["pid"] == proc.pid and line["pname"] == "curl"
    assert line["container_id"] == container
    assert line["cgroup"] == f"/{parent.name}/{scope.name}"
    # The wire format has no such field: the run log names the process before its first event, and the
    # store keeps that in its processes table.
    labels = [p for p in map(parse_process, list(matrix.sink.logs)) if p and p.pid == proc.pid]
    assert labels == [ProcessLabel(proc.pid, "curl", line["cgroup"], container)]
    store = CaptureStore(matrix.tmp / f"store-{proc.pid}.db")
    for log in matrix.sink.logs:
        store.add(RunLog(log))
    store.close()
    with sqlite3.connect(matrix.tmp / f"store-{proc.pid}.db") as db:
        stored = db.execute("SELECT container_id FROM processes WHERE pid = ?", (proc.pid,)).fetchall()
    assert stored == [(container,)]


# -- --list and what cannot be hooked --------------------------------------------------------------

CLI = [sys.executable, "-m", "ecaptureq", "tls", "--list"]

RUSTLS_LIKE = r"""
#include <stdio.h>
/* What a Rust program using rustls carries in its read-only data: its crate's source paths. */
const char *where = "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/rustls-0.23.12/src/conn.rs";
int main(void) {
    char line[8];
    puts("ready");
    fflush(stdout);
    return fgets(line, sizeof line, stdin) == NULL;
}
"""


def test_list_names_private_copies_and_unhookable_tls(matrix: Matrix) -> None:
    need("clang")
    copy = _private_libssl(matrix, "listed")
    source = matrix.tmp / "rustls_like.c"
    source.write_text(RUSTLS_LIKE)
    program = matrix.tmp / "rustls_like"
    subprocess.run(["clang", "-O1", "-s", "-o", str(program), str(source)], check=True, timeout=120)
    script = matrix.tmp / "gated.py"
    script.write_text(CLIENT_GATED)
    python = run(python_gated(matrix), env={"LD_LIBRARY_PATH": str(copy.parent)})
    rusty = run([str(program)])
    try:
        for proc in (python, rusty):
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        listing = subprocess.run(CLI, capture_output=True, text=True, timeout=120)
        # The running capture's exec watcher said so in its run log too.
        warned = f"WRN not hooked: pid={rusty.pid} comm=rustls_like uses rustls 0.23.12"
        deadline = time.monotonic() + 10
        while not any(warned in line for line in matrix.sink.logs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(warned in line for line in matrix.sink.logs)
    finally:
        for proc in (python, rusty):
            proc.kill()
            proc.wait(timeout=10)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0][:4] == ["PID", "COMM", "KIND", "VERSION"]
    system = libssl_from_ldconfig()
    system_rows = [r for r in rows if r and r[-1] == system]
    assert (
        system_rows
        and system_rows[0][2] == "openssl"
        and re.fullmatch(r"\d+\.\d+\.\d+\w*", system_rows[0][3])
    )
    private = [r for r in rows if r and r[0] == str(python.pid) and r[-1] == str(copy)]
    assert private, listing.stdout
    assert private[0][1:4] == [PYTHON_COMM, "openssl", system_rows[0][3]]
    assert " ".join(private[0][4:-1]) == f"/proc/{python.pid}/maps"
    not_hooked = listing.stdout.partition("not hooked:")[2]
    assert re.search(rf"^{rusty.pid}\s+rustls_like\s+rustls 0\.23\.12: .*\({program}\)$", not_hooked, re.M)


def test_repeatable_libssl_hooks_only_those_files(matrix: Matrix, go_binaries: dict[str, Path]) -> None:
    need("wget")
    libssl = libssl_from_ldconfig()
    gnutls = next(t.path for t in matrix.capture.hooker.discovery.targets.values() if t.kind == "gnutls")
    args = [sys.executable, "-m", "ecaptureq", "tls", "--json", "--libssl", str(libssl), "--libssl", gnutls]
    cli = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert cli.stderr is not None
    try:
        assert "capturing 2 TLS files (libraries or programs)" in cli.stderr.readline()
        url = f"https://127.0.0.1:{matrix.port}/3000"
        clients = {
            "curl": run(["curl", "-sS", "--cacert", str(matrix.cert.cert), url]),
            "wget": run(["wget", "-q", "-O", "-", f"--ca-certificate={matrix.cert.cert}", url]),
        }
        for proc in clients.values():
            assert finish(proc) == body_of(3000)
        # Go is not among the files named: not hooked by this capture (the module's capture still sees it).
        go = run([str(go_binaries["plain"]), str(matrix.cert.cert), url])
        assert go.stdout is not None and go.stdout.readline() == b"ready\n"
        assert finish(go, b"go\n") == body_of(3000)
        for proc in (*clients.values(), go):
            wait_captured(matrix, proc.pid, body_of(3000))  # the module's capture saw all three
    finally:
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    hooked = [r["run_log"] for r in records if r["kind"] == "log" and " INF hooked " in r["run_log"]]
    assert (
        len(hooked) == 2
        and any("hooked openssl" in h for h in hooked)
        and any("hooked gnutls" in h for h in hooked)
    )
    by_pid: dict[int, bytes] = {}
    for r in records:
        if r["kind"] == "event" and r["uuid"].endswith("_0"):
            by_pid[r["pid"]] = by_pid.get(r["pid"], b"") + base64.b64decode(r["payload"])
            assert "cgroup" in r and "container_id" in r
    for name, proc in clients.items():
        assert _body(by_pid.get(proc.pid, b"")) == body_of(3000), name
    assert go.pid not in by_pid

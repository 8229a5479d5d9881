"""``ecaptureq tls`` as a real process: JSON Lines, serving to ``watch``, clean exit and error codes."""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from capture_support import (  # the fixtures cert and tls_server are registered by this import
    Cert,
    TlsServer,
    body_of,
    cert,
    free_port,
    requires_bpf,
    tls_server,
)
from conftest import read_until

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "ecaptureq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_tls(*args: str) -> subprocess.Popen[str]:
    """Start ``ecaptureq tls ARGS`` and wait (bounded) for its 'capturing' line on stderr."""
    proc = subprocess.Popen(
        [*CLI, "tls", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the CLI prints exactly one line once the probes are attached
    if "capturing" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"ecaptureq tls did not start: {line}{err}")
    return proc


def bpf_program_ids(pid: int) -> set[int]:
    """Ids of the BPF programs process ``pid`` holds (from its fds' ``/proc/PID/fdinfo``)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        m = re.search(r"^prog_id:\s*(\d+)", info, re.M)
        if m:
            ids.add(int(m.group(1)))
    return ids


def loaded_program_ids() -> set[int]:
    """Ids of every BPF program loaded on the host (bpftool)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=30)
    return {p["id"] for p in json.loads(out.stdout or "[]")}


def assert_unloaded(ids: set[int]) -> None:
    """The programs ``ids`` are gone (the kernel frees them asynchronously, RCU: bounded wait)."""
    assert ids, "the capture held no BPF program"
    deadline = time.monotonic() + 10
    while ids & loaded_program_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & loaded_program_ids()


class LineReader:
    """Lines of a pipe, read on a thread, so a test can wait for one with a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first line (from now) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        pytest.fail(f"no line matching {pattern!r} in {seen!r}")


@pytest.mark.capture
@requires_bpf
def test_json_lines_then_sigterm_detaches(tls_server: TlsServer, cert: Cert) -> None:
    proc = start_tls("--json", "--pid", str(tls_server.pid))
    ours = bpf_program_ids(proc.pid)  # another capture on the host has its own: compare with ours only
    try:
        client = subprocess.run(
            ["curl", "-sS", "--cacert", str(cert.cert), f"https://127.0.0.1:{tls_server.port}/300"],
            capture_output=True,
            timeout=30,
        )
        assert client.stdout == body_of(300)
        time.sleep(0.5)  # past the idle flush
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    logs = [r["run_log"] for r in records if r["kind"] == "log"]
    events = [r for r in records if r["kind"] == "event"]
    assert any('AppName="ecaptureq"' in line for line in logs)
    assert any("Kernel Info=" in line for line in logs)
    assert any("hooked openssl" in line and "path=" in line for line in logs)
    assert "capture stopped" in logs[-1] and "lost_records=0" in logs[-1]
    assert {e["pid"] for e in events} == {tls_server.pid}
    sent = b"".join(base64.b64decode(e["payload"]) for e in events if e["uuid"].endswith("_1"))
    assert sent.endswith(b"\r\n\r\n" + body_of(300))
    for e in events:
        assert set(e) >= {"timestamp", "uuid", "src_ip", "src_port", "dst_ip", "dst_port", "pid", "pname"}
        assert e["length"] == len(base64.b64decode(e["payload"]))
        assert e["src_port"] == tls_server.port
    assert_unloaded(ours)


@pytest.mark.capture
@requires_bpf
def test_closed_stdout_ends_cleanly(tls_server: TlsServer, cert: Cert) -> None:
    """`ecaptureq tls --json | head -n 5`: the capture stops when head exits; exit 0, probes detached."""
    proc = start_tls("--json", "--pid", str(tls_server.pid))
    ours = bpf_program_ids(proc.pid)
    assert proc.stdout is not None
    head = subprocess.Popen(["head", "-n", "5"], stdin=proc.stdout, stdout=subprocess.PIPE, text=True)
    proc.stdout.close()  # only head reads it now
    try:
        first, _ = head.communicate(timeout=20)  # the banner has more than 5 lines: head is gone now
        assert len(first.splitlines()) == 5
        curl = ["curl", "-sS", "--cacert", str(cert.cert), f"https://127.0.0.1:{tls_server.port}/100"]
        assert subprocess.run(curl, capture_output=True, timeout=30).stdout == body_of(100)
        rc = proc.wait(timeout=20)  # the first event written meets the closed pipe
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert rc == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert_unloaded(ours)


@pytest.mark.capture
@requires_bpf
def test_stats_prints_capture_counters(tls_server: TlsServer, cert: Cert) -> None:
    proc = start_tls("--json", "--pid", str(tls_server.pid), "--stats", "0.2")
    stderr = LineReader(proc.stderr)
    try:
        stderr.wait_for(r"ecaptureq tls: stats: 0 events .* 0 gaps \(0 bytes\), ring buffer 0% full")
        curl = ["curl", "-sS", "--cacert", str(cert.cert), f"https://127.0.0.1:{tls_server.port}/5000"]
        assert subprocess.run(curl, capture_output=True, timeout=30).stdout == body_of(5000)
        m = stderr.wait_for(r"stats: (\d+) events .* (\d+) records, [\d.]+ MiB captured .* lost 0 records")
        assert int(m.group(1)) >= 2 and int(m.group(2)) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


@pytest.mark.capture
@requires_bpf
def test_serves_to_watch(tls_server: TlsServer, cert: Cert) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    proc = start_tls("--ecaptureq", url, "--pid", str(tls_server.pid))
    try:
        watch = subprocess.Popen(
            [*CLI, "watch", url, "--json", "--count", "2", "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        seen = read_until(watch, "Listen for eCaptureQ=")  # connected: the startup log was replayed
        subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                str(cert.cert),
                f"https://127.0.0.1:{tls_server.port}/9",
            ],
            timeout=30,
            check=True,
        )
        rest, err = watch.communicate(timeout=30)
        out = seen + rest
        assert watch.returncode == 0, err
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    records = [json.loads(line) for line in out.splitlines()]
    logs = [r["run_log"] for r in records if r["kind"] == "log"]
    assert any(f"Listen for eCaptureQ={url}" in line for line in logs)
    events = [r for r in records if r["kind"] == "event"]
    assert len(events) == 2 and {e["pid"] for e in events} == {tls_server.pid}
    assert base64.b64decode(events[0]["payload"]).startswith(b"GET /9 HTTP/1.1")


@pytest.mark.capture
@requires_bpf
def test_pid_not_found_exit_8() -> None:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    result = subprocess.run(
        [*CLI, "tls", "--json", "--pid", str(pid)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 8
    assert result.stderr.strip() == f"ecaptureq tls: no process with PID {pid}"
    assert result.stdout == ""


@pytest.mark.capture
@requires_bpf
def test_libssl_not_found_exit_7(tmp_path: os.PathLike[str]) -> None:
    missing = f"{tmp_path}/libssl.so.404"
    result = subprocess.run(
        [*CLI, "tls", "--json", "--libssl", missing], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 7
    assert result.stderr.strip() == f"ecaptureq tls: libssl not found: {missing}"
    # A file that is not OpenSSL's libssl: nothing to hook.
    result = subprocess.run(
        [*CLI, "tls", "--json", "--libssl", "/bin/true"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 7, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "no SSL_write/SSL_read" in result.stderr


def test_bad_ecaptureq_url_names_the_option() -> None:
    result = subprocess.run(
        [*CLI, "tls", "--ecaptureq", "http://127.0.0.1:9999/"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("ecaptureq tls: --ecaptureq 'http://127.0.0.1:9999/': expected ws://")
    assert "--listen" not in result.stderr
    result = subprocess.run([*CLI, "tls", "--json", "--buffer-size", "3"], capture_output=True, text=True)
    assert result.returncode == 2 and "--buffer-size takes a power of two" in result.stderr


def test_not_root_exit_5() -> None:
    # As root, drop to nobody after importing (the interpreter may live under a root-only home).
    code = (
        "import os, sys, importlib\n"
        "from ecaptureq.cli.main import COMMANDS, main\n"
        "for name in COMMANDS: importlib.import_module(name)\n"
        "import websockets.asyncio.client, websockets.asyncio.server\n"
        "if os.geteuid() == 0:\n"
        "    os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
        "sys.exit(main(['tls', '--json']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip().startswith("ecaptureq tls: must run as root")
    assert "Traceback" not in result.stderr

"""``ecaptureq tls`` as a real process: JSON Lines, serving to ``watch``, clean exit and error codes."""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

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


def our_programs() -> list[str]:
    """Names of loaded BPF programs that are ours (bpftool), to prove probes are detached on exit."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=30)
    names = [p.get("name", "") for p in json.loads(out.stdout or "[]")]
    ours = ("ssl_write", "ssl_read", "sys_enter", "gnutls_", "nss_", "go_", "libs_")
    return [n for n in names if n.startswith(ours)]


@pytest.mark.capture
@requires_bpf
def test_json_lines_then_sigterm_detaches(tls_server: TlsServer, cert: Cert) -> None:
    proc = start_tls("--json", "--pid", str(tls_server.pid))
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
    if shutil.which("bpftool"):
        # The kernel frees programs asynchronously (RCU) once the last link and fd are gone.
        deadline = time.monotonic() + 10
        while our_programs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert our_programs() == []


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
        time.sleep(1.0)  # let watch connect; the startup log is replayed anyway
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
        out, err = watch.communicate(timeout=30)
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

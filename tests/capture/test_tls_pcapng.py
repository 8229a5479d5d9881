"""tls --pcapng: the encrypted packets of curl's HTTP/2 connections to nginx, with their keys in Decryption
Secrets Blocks, decrypted by tshark with no key option; other connections are left out."""

# ruff: noqa: F401, F811  (pytest fixtures imported from other modules are then named as parameters)
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_support import Cert, cert, free_port, requires_bpf
from conftest import CLI, ENV
from test_tls_capture import NGINX_CONF  # nginx with HTTP/2 over TLS (location /h2)

pytestmark = [pytest.mark.capture, requires_bpf]
TSHARK = shutil.which("tshark")


@pytest.fixture
def nginx(cert: Cert, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """nginx serving HTTP/2 over TLS 1.2 and 1.3 (nginx 1.22 leaves 1.3 off by default) on 127.0.0.1."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx not installed (apt install nginx-light)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    text = NGINX_CONF.replace(
        "ssl_certificate_key {key};", "ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;"
    )
    conf.write_text(text.format(prefix=tmp_path, port=port, cert=cert.cert, key=cert.key))
    proc = subprocess.Popen([exe, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)  # polling the port nginx will listen on, bounded
    yield proc, port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt install tshark)")
def test_tshark_decrypts_the_http2_requests_with_the_keys_in_the_file(
    nginx: tuple[subprocess.Popen[bytes], int], cert: Cert, tmp_path: Path
) -> None:
    assert TSHARK is not None
    _server, port = nginx
    out, keys = tmp_path / "tls.pcapng", tmp_path / "keys.log"
    tls = subprocess.Popen(
        [*CLI, "tls", "--json", "--pcapng", str(out), "--interface", "lo", "--keylog", str(keys)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    assert tls.stderr is not None
    plain = socket.create_server(("127.0.0.1", 0))
    plain_port = plain.getsockname()[1]
    try:
        line = tls.stderr.readline()  # printed once everything is attached
        assert "capturing" in line, line + tls.stderr.read()
        for version in ("--tls-max", "--tlsv1.3"):
            options = ["--tlsv1.2", "--tls-max", "1.2"] if version == "--tls-max" else ["--tlsv1.3"]
            subprocess.run(
                ["curl", "-sS", "--http2", "--max-time", "20", "--cacert", str(cert.cert), *options,
                 "-o", "/dev/null", f"https://127.0.0.1:{port}/h2"],
                check=True, timeout=30,
            )  # fmt: skip
        # A connection of no hooked process: not in the file.
        socket.create_connection(plain.getsockname(), timeout=5).close()
    finally:
        tls.send_signal(signal.SIGINT)  # the packets are already queued on the socket: stop writes them
        _out, err = tls.communicate(timeout=30)
        plain.close()
    assert tls.returncode == 0, err
    assert out.stat().st_mode & 0o777 == 0o600
    # No -o tls.keylog_file: the keys come from the file's Decryption Secrets Blocks.
    result = subprocess.run(
        [TSHARK, "-r", str(out), "-Y", "http2.type == 1", "-T", "fields", "-e", "tcp.srcport",
         "-e", "http2.headers.path", "-e", "http2.headers.status"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [r.split("\t") for r in result.stdout.splitlines()]
    assert [r[1] for r in rows if r[1]] == ["/h2", "/h2"]
    assert [r[2] for r in rows if r[2]] == ["200", "200"]
    versions = subprocess.run(
        [TSHARK, "-r", str(out), "-Y", "tls.handshake.type == 2", "-T", "fields",
         "-e", "tls.handshake.version", "-e", "tls.handshake.extensions.supported_version"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert "0x0304" in "".join(versions) and versions[0].startswith("0x0303")  # TLS 1.2 and 1.3
    ports = subprocess.run(
        [TSHARK, "-r", str(out), "-T", "fields", "-e", "tcp.dstport"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert str(plain_port) not in ports and str(port) in ports
    # The same keys as --keylog wrote (TLS 1.2: one line; TLS 1.3: five).
    assert len(keys.read_text().splitlines()) == 6

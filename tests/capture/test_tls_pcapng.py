"""tls --pcapng: the encrypted packets of curl's HTTP/2 connections to nginx, with their keys in Decryption
Secrets Blocks, decrypted by tshark with no key option; other connections are left out."""

# ruff: noqa: F401, F811  (pytest fixtures imported from other modules are then named as parameters)
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from capture_support import Cert, cert, nginx_tls, requires_bpf
from conftest import CLI, ENV, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.capture, requires_bpf]
TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt install tshark)")
def test_tshark_decrypts_the_http2_requests_with_the_keys_in_the_file(
    nginx_tls: int, cert: Cert, tmp_path: Path
) -> None:
    assert TSHARK is not None
    port = nginx_tls
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
        [TSHARK, "-r", str(out), "-Y", f"http2.type == 1 && tcp.port == {port}", "-T", "fields",
         "-e", "tcp.srcport",
         "-e", "http2.headers.path", "-e", "http2.headers.status"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [r.split("\t") for r in result.stdout.splitlines()]
    assert [r[1] for r in rows if r[1]] == ["/h2", "/h2"]
    assert [r[2] for r in rows if r[2]] == ["200", "200"]
    versions = subprocess.run(
        [TSHARK, "-r", str(out), "-Y", f"tls.handshake.type == 2 && tcp.port == {port}", "-T", "fields",
         "-e", "tls.handshake.version", "-e", "tls.handshake.extensions.supported_version"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert "0x0304" in "".join(versions) and versions[0].startswith("0x0303")  # TLS 1.2 and 1.3
    ports = subprocess.run(
        [TSHARK, "-r", str(out), "-T", "fields", "-e", "tcp.dstport"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert str(plain_port) not in ports and str(port) in ports
    # Every ClientHello in the file has its keys in the --keylog file too (other processes of this
    # machine may have made TLS connections meanwhile: they are hooked as well).
    randoms = subprocess.run(
        [TSHARK, "-r", str(out), "-Y", "tls.handshake.type == 1", "-T", "fields",
         "-e", "tls.handshake.random"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    logged = {line.split()[1] for line in keys.read_text().splitlines()}
    assert len(randoms) >= 2 and {r.replace(":", "") for r in randoms} <= logged


def test_an_unwritable_pcapng_is_refused_before_capturing() -> None:
    result = run_cli("tls", "--json", "--pcapng", "/dev/full")
    assert result.returncode == 11, result.stderr
    assert "cannot write /dev/full: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr

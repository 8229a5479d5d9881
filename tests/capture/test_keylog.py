"""tls --keylog: the key log lines of curl's TLS 1.2 and TLS 1.3 connections, read in the kernel, equal the
lines curl itself writes with SSLKEYLOGFILE; the offsets table matches a measurement of the installed
libssl; unknown OpenSSL versions are refused."""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from capture_support import Cert, TlsServer, cert, requires_bpf, tls_server
from conftest import CLI, ENV, run_cli

from ecaptureq.sources.tls import find_libssl
from ecaptureq.sources.tls.keylog import OFFSETS, UnsupportedOpenSSLError, detect_version, offsets_for

pytestmark = pytest.mark.e2e


def key_lines(path: Path) -> dict[str, set[str]]:
    """The lines of a key log file by client random (comments left out)."""
    by_random: dict[str, set[str]] = defaultdict(set)
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                by_random[line.split()[1]].add(line)
    return by_random


@pytest.mark.capture
@requires_bpf
def test_key_log_lines_equal_what_curl_writes(tls_server: TlsServer, cert: Cert, tmp_path: Path) -> None:
    ours = tmp_path / "keys.log"
    tls = subprocess.Popen(
        [*CLI, "tls", "--json", "--keylog", str(ours)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    assert tls.stderr is not None
    try:
        line = tls.stderr.readline()  # printed once the probes are attached
        assert "capturing" in line, line + tls.stderr.read()
        assert ours.stat().st_mode & 0o777 == 0o600  # secrets: the owner's only
        curls = {
            "TLS 1.2": ["--tlsv1.2", "--tls-max", "1.2"],
            "TLS 1.3, SHA-384": ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"],
            "TLS 1.3, SHA-256": ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"],
        }
        theirs: dict[str, dict[str, set[str]]] = {}
        for name, options in curls.items():
            log = tmp_path / f"curl-{len(theirs)}.log"
            subprocess.run(
                ["curl", "-sS", "--max-time", "20", "--cacert", str(cert.cert), *options, "-o", os.devnull,
                 f"https://127.0.0.1:{tls_server.port}/16"],
                env={**os.environ, "SSLKEYLOGFILE": str(log)}, check=True, timeout=30,
            )  # fmt: skip
            theirs[name] = key_lines(log)
            assert len(theirs[name]) == 1, name  # one connection, one client random
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = key_lines(ours)
            if all(set(t) <= set(found) for t in theirs.values()):
                break
            time.sleep(0.1)  # the key log is a file: polled, with a bounded wait
    finally:
        tls.send_signal(signal.SIGINT)
        _out, err = tls.communicate(timeout=30)
    assert tls.returncode == 0, err
    found = key_lines(ours)
    for name, by_random in theirs.items():
        ((random, lines),) = by_random.items()
        assert found[random] == lines, name
    assert {line.split()[0] for line in theirs["TLS 1.2"].popitem()[1]} == {"CLIENT_RANDOM"}
    assert {line.split()[0] for line in theirs["TLS 1.3, SHA-256"].popitem()[1]} == {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    }
    # Each line once, though both ends (curl and the Python server) were hooked.
    text = ours.read_text().splitlines()
    assert len(text) == len(set(text))


def test_the_offsets_table_matches_a_measurement_of_the_installed_libssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed for the measuring handshake")
    from ecaptureq.sources.tls.keylog_measure import measure_offsets

    libssl = find_libssl()
    version = detect_version(libssl)
    if version not in OFFSETS:
        pytest.skip(f"OpenSSL {version} of {libssl} is not in the table (scripts/keylog-offsets measures it)")
    assert measure_offsets(libssl) == OFFSETS[version]


def test_unknown_openssl_versions_are_refused(tmp_path: Path) -> None:
    future = tmp_path / "libssl.so.9"
    future.write_bytes(b"\x7fELF...\0OpenSSL 9.9.9 1 Jan 2030\0...")
    with pytest.raises(UnsupportedOpenSSLError, match=r"OpenSSL 9\.9\.9; key logging knows .* 3\.0\.19"):
        offsets_for(str(future))
    anonymous = tmp_path / "libssl.so.3"
    anonymous.write_bytes(b"\x7fELF no version here")
    with pytest.raises(UnsupportedOpenSSLError, match="no OpenSSL version string"):
        offsets_for(str(anonymous))
    if os.geteuid() == 0:  # the command checks root first
        keys = tmp_path / "keys.log"
        result = run_cli("tls", "--json", "--keylog", str(keys), "--libssl", str(future))
        assert result.returncode == 7, result.stderr
        assert "OpenSSL 9.9.9" in result.stderr and "scripts/keylog-offsets" in result.stderr
        assert not keys.exists()  # refused before anything was created
        by_user = run_cli("tls", "--json", "--keylog", str(keys), "--uid", "0")
        assert by_user.returncode == 2 and "--uid" in by_user.stderr and not keys.exists()


NODE_GET = """
const https = require('https'), fs = require('fs');
const [url, ca, maxVersion] = process.argv.slice(1);
https.get(url, {ca: fs.readFileSync(ca), maxVersion},
          r => { r.resume(); r.on('end', () => process.exit(0)); })
  .on('error', e => { console.error(e.message); process.exit(1); });
"""


@pytest.mark.capture
@requires_bpf
def test_key_log_lines_of_node_equal_its_own_tls_keylog(
    tls_server: TlsServer, cert: Cert, tmp_path: Path
) -> None:
    # node lets SSL_read/SSL_write drive the handshake (no SSL_do_handshake), and the official builds
    # link OpenSSL into the executable: --libssl is the node binary itself.
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    node = os.path.realpath(node)
    if detect_version(node) not in OFFSETS:
        pytest.skip(f"{node} has no OpenSSL of the offsets table (it may link the system libssl)")
    ours = tmp_path / "keys.log"
    tls = subprocess.Popen(
        [*CLI, "tls", "--json", "--libssl", node, "--keylog", str(ours)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    assert tls.stderr is not None
    theirs = tmp_path / "node.log"
    try:
        line = tls.stderr.readline()
        assert "capturing" in line, line + tls.stderr.read()
        for version in ("TLSv1.2", "TLSv1.3"):
            subprocess.run(
                [node, f"--tls-keylog={theirs}", "-e", NODE_GET, f"https://127.0.0.1:{tls_server.port}/16",
                 str(cert.cert), version],
                check=True, timeout=30, capture_output=True,
            )  # fmt: skip
        expected = key_lines(theirs)
        assert len(expected) == 2  # two connections
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not set(expected) <= set(key_lines(ours)):
            time.sleep(0.1)  # the key log is a file: polled, with a bounded wait
    finally:
        tls.send_signal(signal.SIGINT)
        _out, err = tls.communicate(timeout=30)
    assert tls.returncode == 0, err
    found = key_lines(ours)
    for random, lines in expected.items():
        assert found[random] == lines

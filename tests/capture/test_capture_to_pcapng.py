"""A real capture to pcapng: `ecaptureq tls` captures curl's HTTP/1.1 and HTTP/2 over TLS against nginx on
127.0.0.1, the events go into a capture database, and the pcapng export dissects, in tshark, to the same
request URIs, statuses, HTTP/2 headers and body bytes as the database holds."""

# ruff: noqa: F401, F811  (pytest fixtures imported from capture_support are then named as parameters)
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from capture_support import NGINX_BIG, Cert, cert, nginx_tls, requires_bpf
from conftest import CLI, ENV, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sinks"))
from tshark_support import fields, h2_streams, needs_tshark, tshark

from ecaptureq.protocol import Event
from ecaptureq.protocol.jsonl import from_json
from ecaptureq.store import CaptureStore
from ecaptureq.store.writer import BODY_STORED

pytestmark = [pytest.mark.e2e, pytest.mark.capture, requires_bpf, needs_tshark]
PATHS = ["/h2", "/www/big.bin"]


def test_a_real_capture_exports_to_what_tshark_dissects(nginx_tls: int, cert: Cert, tmp_path: Path) -> None:
    port = nginx_tls
    recording = tmp_path / "capture.jsonl"
    with recording.open("w") as out:
        tls = subprocess.Popen(
            [*CLI, "tls", "--json"], stdout=out, stderr=subprocess.PIPE, env=ENV, text=True
        )
        assert tls.stderr is not None
        curl_pids = []
        try:
            line = tls.stderr.readline()  # printed once the probes are attached
            assert "capturing" in line, line + tls.stderr.read()
            for protocol in ("--http1.1", "--http2"):
                urls = [a for p in PATHS for a in (f"https://127.0.0.1:{port}{p}", "-o", "/dev/null")]
                curl = subprocess.Popen(["curl", "-sS", protocol, "--cacert", str(cert.cert), *urls])
                assert curl.wait(timeout=30) == 0
                curl_pids.append(curl.pid)
        finally:
            tls.send_signal(signal.SIGINT)  # publishes what it holds, then stops
            _out, err = tls.communicate(timeout=30)
    assert tls.returncode == 0, err
    # curl's events only: every process using libssl on this machine is hooked.
    events = [
        m for m in map(from_json, map(json.loads, recording.read_text().splitlines())) if isinstance(m, Event)
    ]
    events = [e for e in events if e.pid in curl_pids]
    db = tmp_path / "capture.db"
    store = CaptureStore(db)
    for event in events:
        store.add(event)
    store.close()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        stored = [dict(r) for r in conn.execute("SELECT * FROM exchanges ORDER BY id")]
    assert sorted((x["protocol"], x["path"], x["status"]) for x in stored) == sorted(
        (p, path, 200) for p in ("http/1.1", "h2") for path in PATHS
    )
    out = tmp_path / "capture.pcapng"
    result = run_cli("export", "--db", str(db), "--format", "pcapng", "-o", str(out))
    assert result.returncode == 0, result.stderr
    # HTTP/1.1: URIs, statuses, and the bodies tshark exports.
    h1 = [x for x in stored if x["protocol"] == "http/1.1"]
    assert [r[0] for r in fields(out, "http.request", "http.request.uri")] == [x["path"] for x in h1]
    assert [r[0] for r in fields(out, "http.response", "http.response.code")] == [
        str(x["status"]) for x in h1
    ]
    objects = tmp_path / "objects"
    tshark("-r", str(out), "-q", "--export-objects", f"http,{objects}")
    assert (objects / "big.bin").read_bytes() == NGINX_BIG
    assert h1[1]["response_body"] == NGINX_BIG[:BODY_STORED]  # the database keeps a body's first bytes
    assert (objects / "h2").read_bytes() == h1[0]["response_body"] == b"hello over h2\n"
    # HTTP/2: the header lists and the bodies.
    dissected = {dict(s.request)[":path"]: s for s in h2_streams(out).values()}
    for x in (x for x in stored if x["protocol"] == "h2"):
        stream = dissected[x["path"]]
        assert stream.request == [tuple(h) for h in json.loads(x["request_headers"])]
        assert stream.response == [tuple(h) for h in json.loads(x["response_headers"])]
        assert stream.body[:BODY_STORED] == x["response_body"]
    assert dissected["/www/big.bin"].body == NGINX_BIG

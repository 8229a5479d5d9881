"""``ecaptureq watch`` with decoding and filters, end to end against ``ecaptureq serve --demo``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "ecaptureq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", "ws://127.0.0.1:0/", "--demo", "--interval", "0.02"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"(ws://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
        elif not line and proc.poll() is not None:
            break
    if url is None:
        proc.kill()
        pytest.fail("ecaptureq serve --demo did not announce its URL")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "watch", *args], capture_output=True, text=True, timeout=60, env=ENV)


def test_text_output_shows_decoded_http(demo_url: str) -> None:
    result = watch(demo_url, "--count", "12", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("--- event ") == 12
    assert re.search(r"^> (GET|POST) https://\S+ HTTP/(1\.1|2)", out, re.M), out
    assert re.search(r"^< HTTP/(1\.1|2) \d{3}", out, re.M), out


def test_json_output_has_http_objects(demo_url: str) -> None:
    result = watch(demo_url, "--json", "--count", "20", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines() if '"kind":"event"' in x]
    assert len(events) == 20 and all("http" in e for e in events)
    https = [e["http"] for e in events if e["http"] and e["http"]["kind"] in ("request", "response")]
    assert https, events
    for h in https:
        assert {"method", "url", "path", "status", "headers", "body"} <= set(h)
    assert any(h["kind"] == "response" and isinstance(h["status"], int) for h in https)


def test_filters(demo_url: str) -> None:
    result = watch(demo_url, "--json", "--count", "6", "--timeout", "20", "--pname", "curl", "--type", "3")
    assert result.returncode == 0, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines() if '"kind":"event"' in x]
    assert len(events) == 6
    assert {e["pname"] for e in events} == {"curl"}
    assert all(e["type"] == 3 or (e["http"] and e["http"]["kind"] == "response") for e in events)


def test_bad_grep_is_one_line_exit_2(demo_url: str) -> None:
    result = watch(demo_url, "--grep", "(unclosed")
    assert result.returncode == 2
    assert "bad --grep" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

"""A real browser (headless Debian chromium) on a foreign page cannot read the stream; a loopback page can.

A local http.server serves one page under two names: ``http://evil.example:PORT/`` (chromium maps that
name to 127.0.0.1 with ``--host-resolver-rules``) and ``http://localhost:PORT/``. The page's JavaScript
opens ``ws://127.0.0.1:<server>/`` and POSTs the outcome back to the http server.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import CHROMIUM_FLAGS

from ecaptureq.protocol import Event
from ecaptureq.server import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install chromium; scripts/setup-test does)",
    ),
]

PAGE = """<!doctype html>
<html><head><title>probe</title></head><body>waiting
<script>
let done = false;
function report(outcome) {
  if (done) return;
  done = true;
  document.body.textContent = "DONE:" + outcome;
  fetch("/result", {method: "POST", body: outcome});
}
const ws = new WebSocket("ws://127.0.0.1:WS_PORT/");
ws.binaryType = "arraybuffer";
ws.onmessage = (e) => { report("message:" + e.data.byteLength); ws.close(); };
ws.onerror = () => report("error");
ws.onclose = (e) => report("close:" + e.code);
</script></body></html>
"""


class Pages:
    """The page server: GET / returns the probe page, POST /result records (Host, outcome)."""

    def __init__(self, ws_port: int = 0) -> None:
        self.results: queue.Queue[tuple[str, str]] = queue.Queue()
        self.ws_port = ws_port
        results = self.results
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = PAGE.replace("WS_PORT", str(outer.ws_port)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                results.put((self.headers.get("Host", ""), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def pages(ws_port: int = 0) -> Iterator[Pages]:
    served = Pages(ws_port)
    try:
        yield served
    finally:
        served.close()


async def open_in_chromium(url: str, profile: Path, results: queue.Queue[tuple[str, str]]) -> str:
    """Load ``url`` in headless chromium and return the outcome the page reports (60 s at most)."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        _host, outcome = await asyncio.to_thread(results.get, True, 60)
        return outcome
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_foreign_page_is_refused_and_a_loopback_page_connects(tmp_path: Path) -> None:
    async with Server(port=0) as server:
        server.publish_log("2026-01-02T10:00:00Z INF secret stream")
        server.publish_event(Event(uuid="1_1_curl_5_0", payload=b"Authorization: Bearer hunter2"))
        with pages(server.port) as site:
            outcome = await open_in_chromium(
                f"http://evil.example:{site.port}/", tmp_path / "evil", site.results
            )
            assert not outcome.startswith("message"), "a foreign page read the stream"
            assert outcome in ("error", "close:1006"), outcome
            stats = server.stats
            assert stats.refused_origin == 1, "the browser's handshake must reach the server and get 403"
            assert stats.connections == 0

            outcome = await open_in_chromium(
                f"http://localhost:{site.port}/", tmp_path / "local", site.results
            )
            assert outcome.startswith("message:"), outcome
            assert server.stats.connections == 1
            assert server.stats.refused_origin == 1


async def test_an_allowed_origin_connects_from_the_browser(tmp_path: Path) -> None:
    with pages() as site:
        page_origin = f"http://evil.example:{site.port}"
        async with Server(port=0, allowed_origins=["http://evil.example:1"]) as server:
            site.ws_port = server.port
            server.publish_log("hello")
            # allow-listing another port of the same host does not allow this page
            outcome = await open_in_chromium(page_origin + "/", tmp_path / "a", site.results)
            assert outcome in ("error", "close:1006"), outcome
            assert server.stats.refused_origin == 1
        async with Server(port=0, allowed_origins=[page_origin]) as server:
            site.ws_port = server.port
            server.publish_log("hello")
            outcome = await open_in_chromium(page_origin + "/", tmp_path / "b", site.results)
            assert outcome.startswith("message:"), outcome
            assert server.stats.connections == 1 and server.stats.refused_origin == 0

"""The web UI in a real headless browser: Debian's chromium driven by Playwright (no browser download).

The page is served by a real ``ecaptureq ui`` process, fed by a real ``ecaptureq serve --demo`` or by a
database of 100,000 exchanges. Screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM_FLAGS, Served, start_serve, stop_serve
from playwright import sync_api
from ui_support import ARTIFACTS, Ui, chromium_or_skip, make_database, start_ui, stop_ui

CHROMIUM = chromium_or_skip()

pytestmark = pytest.mark.e2e

TOKEN = "browser-test-token"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors  # no uncaught script error on any page


@pytest.fixture(scope="module")
def demo() -> Iterator[Served]:
    served = start_serve("--demo", "--interval", "0.03")
    yield served
    stop_serve(served)


@pytest.fixture
def live_ui(demo: Served, tmp_path: Path) -> Iterator[Ui]:
    ui = start_ui("--source", demo.url, "--db", str(tmp_path / "live.db"))
    yield ui
    code, err = stop_ui(ui)
    assert code == 0, err


def row_count(page: Any) -> int:
    return int(re.sub(r"\D", "", page.inner_text("#row-count")) or 0)


def wait_rows(page: Any, at_least: int) -> None:
    page.wait_for_function(
        "n => Number(document.getElementById('row-count').textContent.replace(/\\D/g, '')) >= n",
        arg=at_least,
        timeout=WAIT_MS,
    )


def all_ids(page: Any) -> list[int]:
    """The ids of every row of the table, in order: the page fetches each page of them first (it holds only
    those near the view)."""
    page.evaluate("() => rows.ensure(0, rows.total)")
    page.wait_for_function("() => rows.loadedIds().length >= rows.total", timeout=WAIT_MS)
    return [int(i) for i in page.evaluate("() => rows.loadedIds()")]


def counter(page: Any, name: str) -> int:
    return int(re.sub(r"\D", "", page.inner_text(f"#c-{name}")) or 0)


def test_live_table_filter_details_har(live_ui: Ui, page: Any) -> None:
    page.goto(live_ui.url)
    wait_rows(page, 10)
    page.wait_for_function(
        "() => document.getElementById('conn-text').textContent.startsWith('connected to')"
    )
    assert page.locator("#conn-dot.up").count() == 1
    first = page.locator("#exchanges .vrow").first
    assert first.locator("div").nth(0).inner_text() == "1"

    # filtering: only curl rows; then a bad filter shows SQLite's message and keeps the table
    page.fill("#filter", "pname = 'curl' AND status = 200")
    page.click("#filter-form button[type=submit]")
    page.wait_for_function("() => state.filter.startsWith('pname') && rows.total >= 3", timeout=WAIT_MS)
    processes = page.locator("#exchanges .vrow:not([hidden]) > div:nth-child(3)").all_inner_texts()
    assert processes and set(processes) == {"curl"}
    shown = row_count(page)
    page.fill("#filter", "pname = ")
    page.click("#filter-form button[type=submit]")
    page.wait_for_selector("#filter-error:not([hidden])")
    assert page.inner_text("#filter-error") == 'invalid SQL: near ")": syntax error (in: pname =)'
    assert row_count(page) >= shown
    page.fill("#filter", "pname = 'curl' AND status = 200")
    page.click("#filter-form button[type=submit]")
    page.wait_for_selector("#filter-error", state="hidden")

    # details: a JSON response pretty-printed, headers, copy as curl
    page.locator("#exchanges .vrow").first.click()
    page.wait_for_selector("#detail .message.response")
    assert page.locator("#detail .message.request td").first.inner_text() != ""
    body = page.locator("#detail .message.response pre.body-json")
    assert body.count() == 1
    assert json.loads(body.inner_text())  # it is JSON
    assert "\n  " in body.inner_text()  # and indented
    curl = page.locator("#detail pre.curl-text").text_content() or ""
    assert curl.startswith("curl")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-curl")
    page.wait_for_function("() => document.getElementById('copy-curl').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == curl
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-live.png"))

    # HAR of the current filter
    with page.expect_download() as info:
        page.click("#har")
    download = info.value
    assert download.suggested_filename.endswith(".har")
    har = json.loads(Path(download.path()).read_text())
    assert har["log"]["version"] == "1.2"
    entries = har["log"]["entries"]
    assert entries and {e["_pname"] for e in entries} == {"curl"}
    assert {e["response"]["status"] for e in entries} == {200}


def test_pause_stops_updates_and_resume_catches_up(live_ui: Ui, page: Any) -> None:
    page.goto(live_ui.url)
    wait_rows(page, 5)
    page.click("#pause")
    assert page.inner_text("#pause") == "Resume"
    frozen = row_count(page)
    exchanges = counter(page, "exchanges")
    # the counters still move (status is polled while paused) while the table does not
    page.wait_for_function(
        "n => Number(document.getElementById('c-exchanges').textContent.replace(/\\D/g, '')) > n + 10",
        arg=exchanges,
        timeout=WAIT_MS,
    )
    assert row_count(page) == frozen
    assert page.locator("#conn-dot.paused").count() == 1
    page.click("#pause")
    assert page.inner_text("#pause") == "Pause"
    wait_rows(page, frozen + 10)
    ids = all_ids(page)
    assert ids == sorted(set(ids))  # caught up with nothing repeated


def test_committed_rows_are_pushed_without_the_poll(demo: Served, tmp_path: Path, page: Any) -> None:
    # The database is re-read only once an hour unless the recorder announces a commit: rows arriving
    # after the page opened can only come by the push.
    ui = start_ui("--source", demo.url, "--db", str(tmp_path / "push.db"), "--poll", "3600")
    try:
        page.goto(ui.url)
        wait_rows(page, 1)
        opened = row_count(page)
        wait_rows(page, opened + 10)
        ids = all_ids(page)
        assert ids == sorted(set(ids))  # nothing repeated or out of order
        with sqlite3.connect(tmp_path / "push.db") as conn:
            committed = {i for (i,) in conn.execute("SELECT id FROM exchanges WHERE id <= ?", (max(ids),))}
        assert set(ids) == committed  # nothing skipped either
    finally:
        code, err = stop_ui(ui)
    assert code == 0, err


def test_packets_view_and_bad_sql(live_ui: Ui, page: Any) -> None:
    page.goto(live_ui.url)
    wait_rows(page, 3)
    page.click("#tab-packets")
    page.fill("#sql", 'SELECT "index", pname, length FROM packets WHERE index <= 5')
    page.click("#sql-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('packet-count').textContent.startsWith('5 rows')")
    assert page.locator("#packets .vhead > div").all_inner_texts() == ["index", "pname", "length"]
    page.locator("#packets .vrow").first.click()
    page.wait_for_selector("#packet-detail h2")
    assert page.inner_text("#packet-detail h2") == "packet 1"
    page.fill("#sql", "dst_port = = 443")
    page.click("#sql-form button[type=submit]")
    page.wait_for_selector("#sql-error:not([hidden])")
    assert "syntax error" in page.inner_text("#sql-error")


class PageServer:
    """An HTTP server on another 127.0.0.1 port serving one page, recording the headers of every request."""

    def __init__(self, html: bytes) -> None:
        self.requests: list[dict[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def evil_page(target: str) -> PageServer:
    """A page on http://evil.example:PORT/ (mapped to 127.0.0.1) whose script calls the UI's API."""
    return PageServer(
        (
            "<!doctype html><title>evil</title><script>"
            f"fetch('{target}/api/status', {{mode: 'no-cors', credentials: 'include'}})"
            ".then(() => document.title = 'sent', () => document.title = 'failed');"
            "</script>"
        ).encode()
    )


def test_token_and_foreign_origin(tmp_path: Path, page: Any) -> None:
    db = make_database(tmp_path / "t.db", 30)
    ui = start_ui("--db", str(db), "--token", TOKEN)
    evil = evil_page(ui.base)
    try:
        page.goto(f"{ui.base}/")  # the page holds no data; without the token its API calls get 401
        without = page.evaluate("() => fetch('/api/status').then(r => r.status)")
        assert without == 401
        page.evaluate("() => sessionStorage.clear()")
        page.goto(ui.url)  # ?token=... is kept in sessionStorage and removed from the address bar
        assert page.url == f"{ui.base}/"
        wait_rows(page, 30)
        api = page.evaluate("() => fetch('/api/status', {headers: authHeaders()}).then(r => r.status)")
        assert api == 200
        assert page.evaluate("() => fetch('/api/status').then(r => r.status)") == 401  # no ambient cookie
        assert page.context.cookies() == []
        with page.expect_response(lambda r: r.url.endswith("/api/status")) as refused:
            page.goto(f"http://evil.example:{evil.port}/")
        assert refused.value.status == 403
    finally:
        evil.close()
        stop_ui(ui)


def test_100k_rows_stay_virtualised(tmp_path: Path, page: Any) -> None:
    db = make_database(tmp_path / "big.db", 100_000)
    ui = start_ui("--db", str(db))
    try:
        page.goto(ui.url)
        page.wait_for_function(
            "() => document.getElementById('row-count').textContent === '100,000 rows'", timeout=60_000
        )
        dom_rows = page.locator("#exchanges .vrow").count()
        assert 0 < dom_rows < 150  # only what is in view (plus overscan), not 100,000
        ids = page.locator("#exchanges .vrow:not([hidden]) > div:nth-child(1)").all_inner_texts()
        assert "1" in ids

        page.evaluate(
            "(() => { const t = document.getElementById('exchanges'); t.scrollTop = t.scrollHeight; })()"
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#exchanges .vrow:not([hidden]) > div:first-child')]"
            ".some(d => d.textContent === '100000')"
        )
        # the id column is as wide as the ids: six digits shown whole, not cut to "999…"
        clipped = page.evaluate(
            "() => [...document.querySelectorAll('#exchanges .vrow:not([hidden]) > div:first-child')]"
            ".filter(d => d.scrollWidth > d.clientWidth).map(d => d.textContent)"
        )
        assert clipped == []
        page.evaluate(
            "(() => { const t = document.getElementById('exchanges'); t.scrollTop = 50000 * 24; })()"
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#exchanges .vrow:not([hidden]) > div:first-child')]"
            ".some(d => d.textContent === '50001')"
        )
        assert page.locator("#exchanges .vrow").count() <= dom_rows + 10  # reused, plus the overscan above

        first_cell = page.locator("div:first-child", has_text=re.compile("^50001$"))
        page.locator("#exchanges .vrow:not([hidden])").filter(has=first_cell).click()
        page.wait_for_selector("#detail pre.body-hex")  # every 7th exchange has a binary body
        assert page.locator("#detail pre.body-hex").inner_text().startswith("00000000  00 01 02")
        page.keyboard.press("ArrowDown")
        page.wait_for_function(
            "() => document.querySelector('#detail h2').textContent.includes('/v1/items/50002')"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-100k.png"))
    finally:
        stop_ui(ui)


def test_page_says_waiting_for_source(tmp_path: Path, page: Any) -> None:
    with socket_refusing() as port:
        ui = start_ui("--source", f"ws://127.0.0.1:{port}/", "--db", str(tmp_path / "later.db"))
        try:
            page.goto(ui.url)
            page.wait_for_function(
                "() => document.getElementById('conn-text').textContent.startsWith('waiting for source')",
                timeout=WAIT_MS,
            )
            assert f"ws://127.0.0.1:{port}/" in page.inner_text("#conn-text")
        finally:
            code, err = stop_ui(ui)
    assert code == 0, err


@contextmanager
def socket_refusing() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening) for the block's duration."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_another_local_port_receives_no_credential(tmp_path: Path, page: Any) -> None:
    db = make_database(tmp_path / "t.db", 30)
    ui = start_ui("--db", str(db), "--token", TOKEN)
    other = PageServer(b"<!doctype html><title>other</title>")
    try:
        page.goto(ui.url)
        wait_rows(page, 30)  # logged in: the API answers the page
        for host in ("127.0.0.1", "localhost"):
            page.goto(f"http://{host}:{other.port}/")
        assert len(other.requests) >= 2
        for request in other.requests:
            assert TOKEN not in json.dumps(request), request
            assert "cookie" not in request and "authorization" not in request, request
        assert page.context.cookies() == []
    finally:
        other.close()
        stop_ui(ui)

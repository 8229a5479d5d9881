"""The web UI as a person sees it: layout at three window widths, following new rows, the keyboard, the
packets view's times and hex, the system's light or dark theme, and what the page says while it waits.

Debian's chromium driven by Playwright against a real ``ecaptureq ui`` process (fed by a real
``ecaptureq serve --demo``, or by a capture database recorded from the demo source). Screenshots are kept
in ``test-artifacts/``: look at them after a change to the page.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM_FLAGS, Served, start_serve, stop_serve
from playwright import sync_api
from ui_support import ARTIFACTS, Ui, chromium_or_skip, make_database, make_demo_database, start_ui, stop_ui

from ecaptureq.decode.bodies import hexdump
from ecaptureq.protocol.timestamps import detect_timestamp

CHROMIUM = chromium_or_skip()

pytestmark = pytest.mark.e2e

WAIT_MS = 20_000
KEY_COLUMNS = ("time", "process", "method", "host", "path", "status", "size", "latency")
"""The columns a person reads first: never cut at 1440 px with nothing selected."""

CLIPPED_CELLS = """titles => {
  // Cells of the given columns whose text is cut (wider than the cell), as "column: text".
  const heads = [...document.querySelectorAll('#exchanges .vhead > div')].map(d => d.textContent);
  const out = [];
  for (const row of document.querySelectorAll('#exchanges .vrow:not([hidden])')) {
    for (const title of titles) {
      const cell = row.children[heads.indexOf(title)];
      if (cell.scrollWidth > cell.clientWidth) out.push(`${title}: ${cell.textContent}`);
    }
  }
  for (const title of titles) {
    const head = document.querySelectorAll('#exchanges .vhead > div')[heads.indexOf(title)];
    if (head.scrollWidth > head.clientWidth) out.push(`${title} (header)`);
  }
  return out;
}"""

OUTSIDE_VIEW = """titles => {
  // Columns whose header reaches past the visible part of the table (needing a horizontal scroll).
  const box = document.getElementById('exchanges').getBoundingClientRect();
  const right = box.left + document.getElementById('exchanges').clientWidth;
  return [...document.querySelectorAll('#exchanges .vhead > div')]
    .filter(d => titles.includes(d.textContent) && d.getBoundingClientRect().right > right + 0.5)
    .map(d => d.textContent);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def new_page(browser: Any, width: int, height: int = 900) -> Any:
    """A page in a fresh context (its own sessionStorage) that fails the test on any script error or
    anything the Content-Security-Policy refused."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a style or script the Content-Security-Policy refuses is reported on the console
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.script_errors = errors
    return page


def close_page(page: Any) -> None:
    errors = page.script_errors
    page.context.close()
    assert errors == [], errors


@pytest.fixture
def pages(browser: Any) -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for page in opened:
        close_page(page)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_database(tmp_path_factory.mktemp("demo") / "demo.db", 1500)


@pytest.fixture(scope="module")
def demo_ui(demo_db: Path) -> Iterator[Ui]:
    ui = start_ui("--db", str(demo_db))
    yield ui
    stop_ui(ui)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def committed_exchanges(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM exchanges").fetchone()[0])
    except sqlite3.Error:
        return 0


def rows(page: Any) -> int:
    return int(re.sub(r"\D", "", page.inner_text("#row-count")) or 0)


def wait_rows(page: Any, at_least: int) -> None:
    page.wait_for_function("n => rows.total >= n", arg=at_least, timeout=WAIT_MS)


def wait_detail(page: Any, path: str) -> None:
    """Wait until the detail pane shows the exchange of ``path``."""
    shown = "p => (document.querySelector('#detail h2')?.textContent || '').endsWith(p)"
    page.wait_for_function(shown, arg=path, timeout=WAIT_MS)


def selected_id(page: Any) -> str:
    return str(page.evaluate("() => table.selected < 0 ? '' : String(rows.rowAt(table.selected)[0])"))


@pytest.mark.parametrize("width", [1024, 1440, 1920])
def test_layout_at_each_width(demo_ui: Ui, demo_db: Path, browser: Any, pages: list[Any], width: int) -> None:
    page = new_page(browser, width)
    pages.append(page)
    page.goto(demo_ui.url)
    expected = sqlite3.connect(demo_db).execute("SELECT count(*) FROM exchanges").fetchone()[0]
    wait_rows(page, expected)

    # nothing selected: the detail is closed and the table has the whole width
    assert page.locator("#detail").is_hidden()
    table_width = page.evaluate("() => document.getElementById('exchanges').getBoundingClientRect().width")
    assert table_width == width
    assert page.locator("#empty-state").is_hidden()
    shot(page, f"ui-{width}.png")

    # every key column inside the view, and at 1440 px and more not one of their cells cut
    assert page.evaluate(OUTSIDE_VIEW, list(KEY_COLUMNS)) == []
    if width >= 1440:
        assert page.evaluate(CLIPPED_CELLS, list(KEY_COLUMNS)) == []
    else:  # 1024 px: the short columns are whole, the long names may end in an ellipsis
        assert page.evaluate(CLIPPED_CELLS, ["time", "method", "status", "size", "latency"]) == []

    # a click opens the detail: beside the table, which keeps what is left and leaves out the source,
    # destination and pid columns before cutting others; in a narrow window, a drawer over the table
    page.locator("#exchanges .vrow:not([hidden])").nth(2).click()
    page.wait_for_selector("#detail .message.response")
    detail_box = page.locator("#detail").bounding_box()
    table_box = page.locator("#exchanges").bounding_box()
    assert abs(detail_box["x"] + detail_box["width"] - width) <= 1
    if width >= 1440:
        assert page.locator("#detail-resizer").is_visible()
        assert detail_box["x"] >= table_box["x"] + table_box["width"] - 4
        assert abs(table_box["width"] + detail_box["width"] - width) <= 4
        heads = page.locator("#exchanges .vhead > div")
        left_out = set(heads.all_inner_texts()) - set(
            page.locator("#exchanges .vhead > div:not([hidden])").all_inner_texts()
        )
        assert left_out <= {"source", "destination", "pid"} and bool(left_out) == (width == 1440)
        assert page.evaluate(OUTSIDE_VIEW, ["time", "method", "status", "size", "latency"]) == []
        assert page.evaluate(CLIPPED_CELLS, ["time", "process", "method", "status", "size", "latency"]) == []
    else:
        assert page.locator("#detail-resizer").is_hidden()
        assert table_box["width"] == width  # under the drawer, not squeezed
    shot(page, f"ui-{width}-detail.png")
    page.keyboard.press("Escape")
    assert page.locator("#detail").is_hidden()
    assert "source" in page.locator("#exchanges .vhead > div:not([hidden])").all_inner_texts()


def test_detail_and_columns_resize(demo_ui: Ui, browser: Any, pages: list[Any]) -> None:
    page = new_page(browser, 1440)
    pages.append(page)
    page.goto(demo_ui.url)
    wait_rows(page, 100)

    # a column's header edge drags its width
    heads = page.locator("#exchanges .vhead > div")
    titles = heads.all_inner_texts()
    host = heads.nth(titles.index("host"))
    before = host.bounding_box()["width"]
    grip = host.locator(".grip").bounding_box()
    x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=5)
    page.mouse.up()
    assert abs(host.bounding_box()["width"] - (before + 60)) <= 2
    cell = page.locator("#exchanges .vrow:not([hidden])").first.locator("div").nth(titles.index("host"))
    assert abs(cell.bounding_box()["width"] - host.bounding_box()["width"]) <= 1  # rows follow the header

    # the detail's edge drags its width, and the width is kept when it is closed and opened again
    page.locator("#exchanges .vrow:not([hidden])").first.click()
    page.wait_for_selector("#detail .message.request")
    width = page.locator("#detail").bounding_box()["width"]
    edge = page.locator("#detail-resizer").bounding_box()
    x, y = edge["x"] + edge["width"] / 2, edge["y"] + 200
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 150, y, steps=5)
    page.mouse.up()
    wider = page.locator("#detail").bounding_box()["width"]
    assert abs(wider - (width + 150)) <= 3
    page.click("#detail-close")
    assert page.locator("#detail").is_hidden()
    assert page.locator("#exchanges").bounding_box()["width"] == 1440
    page.locator("#exchanges .vrow:not([hidden])").nth(1).click()
    page.wait_for_selector("#detail .message.request")
    assert abs(page.locator("#detail").bounding_box()["width"] - wider) <= 1
    # it never leaves the table less than a usable width
    edge = page.locator("#detail-resizer").bounding_box()
    page.mouse.move(edge["x"] + 3, edge["y"] + 200)
    page.mouse.down()
    page.mouse.move(5, edge["y"] + 200, steps=5)
    page.mouse.up()
    assert page.locator("#exchanges").bounding_box()["width"] >= 320 - 3


def test_keyboard_navigation(tmp_path: Path, browser: Any, pages: list[Any]) -> None:
    db = make_database(tmp_path / "k.db", 300)
    ui = start_ui("--db", str(db))
    try:
        page = new_page(browser, 1440)
        pages.append(page)
        page.goto(ui.url)
        wait_rows(page, 300)

        # "/" goes to the filter; Enter there applies it; Esc goes back to the table
        page.keyboard.press("/")
        assert page.evaluate("() => document.activeElement.id") == "filter"
        page.keyboard.type("status = 404")
        page.keyboard.press("Enter")
        page.wait_for_function("() => state.filter === 'status = 404' && rows.total === 30")
        assert page.input_value("#filter") == "status = 404"  # the "/" was not typed into it
        page.keyboard.press("Escape")
        assert page.evaluate("() => document.activeElement.id") == "exchanges"

        # arrows move the selection without opening the detail; Enter opens it; arrows then follow in it
        page.keyboard.press("ArrowDown")
        assert selected_id(page) == "10"
        page.keyboard.press("ArrowDown")
        assert selected_id(page) == "20"
        assert page.locator("#exchanges .vrow.selected > div").first.inner_text() == "20"
        assert page.locator("#detail").is_hidden()
        page.keyboard.press("Enter")
        wait_detail(page, "/v1/items/20")
        page.keyboard.press("ArrowDown")
        wait_detail(page, "/v1/items/30")
        page.keyboard.press("ArrowUp")
        wait_detail(page, "/v1/items/20")
        page.keyboard.press("End")
        wait_detail(page, "/v1/items/300")
        assert page.locator("#exchanges .vrow.selected").is_visible()  # scrolled into view
        page.keyboard.press("Home")
        assert selected_id(page) == "10"

        # Esc closes the detail (the table has the whole width again), and "/" still finds the filter
        page.keyboard.press("Escape")
        assert page.locator("#detail").is_hidden()
        assert page.locator("#exchanges").bounding_box()["width"] == 1440
        page.keyboard.press("/")
        assert page.evaluate("() => document.activeElement.id") == "filter"

        # on a long list the page keys move by a screenful, and the selected row stays in view
        page.fill("#filter", "")
        page.keyboard.press("Enter")
        page.wait_for_function("() => state.filter === '' && rows.total === 300")
        page.keyboard.press("Escape")
        page.keyboard.press("PageDown")
        page.keyboard.press("PageDown")
        moved = int(selected_id(page))
        assert moved > 30
        assert page.locator("#exchanges .vrow.selected").is_visible()
    finally:
        stop_ui(ui)


@pytest.fixture
def fast_demo() -> Iterator[Served]:
    served = start_serve("--demo", "--interval", "0.01")
    yield served
    stop_serve(served)


def test_table_follows_new_rows_until_the_user_scrolls_up(
    fast_demo: Served, tmp_path: Path, browser: Any, pages: list[Any]
) -> None:
    db = tmp_path / "live.db"
    ui = start_ui("--source", fast_demo.url, "--db", str(db))
    try:
        # more than a screen recorded before the page opens
        deadline = time.monotonic() + WAIT_MS / 1000
        while committed_exchanges(db) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        page = new_page(browser, 1440, 700)
        pages.append(page)
        page.goto(ui.url)
        per_screen = page.evaluate("() => Math.ceil(table.container.clientHeight / table.rowHeight)")
        assert per_screen < 60
        wait_rows(page, 60)
        # what was recorded before the page opened is shown from its first row, as new rows arrive below
        wait_rows(page, rows(page) + 5)
        assert page.evaluate("() => table.container.scrollTop") == 0
        assert page.locator("#exchanges .vrow:not([hidden]) > div:first-child").first.inner_text() == "1"
        # at the bottom, it follows
        page.evaluate("() => { table.container.scrollTop = table.container.scrollHeight; }")
        wait_rows(page, 3 * per_screen)
        # following: each new row is in view as it arrives
        for _ in range(3):
            count = rows(page)
            wait_rows(page, count + 5)
            page.wait_for_function("() => table.atBottom()", timeout=WAIT_MS)
            newest = page.evaluate("() => String(rows.rowAt(rows.total - 1)[0])")
            ids = page.locator("#exchanges .vrow:not([hidden]) > div:first-child").all_inner_texts()
            assert newest in ids
        assert page.locator("#jump-new").is_hidden()

        # scrolled up: the view stays where the user put it, and a button counts what arrived below
        page.evaluate("() => { table.container.scrollTop = 0; }")
        page.wait_for_function("() => state.unseen >= 10", timeout=WAIT_MS)
        assert page.evaluate("() => table.container.scrollTop") == 0
        first_ids = page.locator("#exchanges .vrow:not([hidden]) > div:first-child").all_inner_texts()
        assert "1" in first_ids
        label = page.inner_text("#jump-new")
        assert re.fullmatch(r"[\d,]+ new ↓", label), label
        shot(page, "ui-new-rows.png")

        # the button jumps to the newest rows and following resumes
        page.click("#jump-new")
        assert page.locator("#jump-new").is_hidden()
        count = rows(page)
        wait_rows(page, count + 10)
        page.wait_for_function("() => table.atBottom()", timeout=WAIT_MS)
        assert page.evaluate("() => state.unseen") == 0

        # scrolling back down by hand also resumes following
        page.evaluate("() => { table.container.scrollTop = 0; }")
        page.wait_for_selector("#jump-new:not([hidden])", timeout=WAIT_MS)
        page.evaluate("() => { table.container.scrollTop = table.container.scrollHeight; }")
        page.wait_for_selector("#jump-new", state="hidden", timeout=WAIT_MS)
        count = rows(page)
        wait_rows(page, count + 10)
        page.wait_for_function("() => table.atBottom()", timeout=WAIT_MS)
    finally:
        code, err = stop_ui(ui)
    assert code == 0, err


def test_packets_time_and_hex(demo_ui: Ui, demo_db: Path, browser: Any, pages: list[Any]) -> None:
    conn = sqlite3.connect(demo_db)
    index, raw, payload = conn.execute(
        'SELECT "index", timestamp, payload_binary FROM packets WHERE is_binary = 1 ORDER BY "index" LIMIT 1'
    ).fetchone()
    page = new_page(browser, 1440)
    pages.append(page)
    page.goto(demo_ui.url)
    page.click("#tab-packets")
    page.fill("#sql", f'"index" BETWEEN {index} AND {index + 20}')
    page.click("#sql-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('packet-count').textContent === '21 rows'")
    titles = page.locator("#packets .vhead > div").all_inner_texts()
    first = page.locator("#packets .vrow:not([hidden])").first
    assert first.locator("div").nth(titles.index("index")).inner_text() == str(index)
    time_cell = first.locator("div").nth(titles.index("timestamp"))
    # the time as a date and time (the unit detected by the server), the raw number kept in the tooltip
    worded = detect_timestamp(raw).isoformat()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", worded)
    assert time_cell.inner_text() == worded
    assert str(raw) in (time_cell.get_attribute("title") or "")
    assert time_cell.evaluate("d => d.scrollWidth <= d.clientWidth")

    page.locator("#packets .vrow:not([hidden])").first.click()
    page.wait_for_selector("#packet-detail pre.hex")
    assert page.inner_text("#packet-detail h2") == f"packet {index}"
    info = page.locator("#packet-detail table").inner_text()
    assert worded in info and f"{raw} (ns)" in info
    hexview = page.locator("#packet-detail pre.hex").inner_text()
    assert hexview == hexdump(payload)  # offset, hex bytes, |ASCII|: no replacement characters
    assert "\ufffd" not in hexview
    assert re.match(r"00000000  ([0-9a-f]{2} ){15}[0-9a-f]{2}  \|.{16}\|$", hexview.splitlines()[0])
    assert page.get_attribute("#payload-hex", "aria-pressed") == "true"
    shot(page, "ui-packets-hex.png")
    page.click("#payload-text")
    assert page.locator("#packet-detail pre.text").inner_text() == payload.decode("utf-8", "replace")
    page.click("#payload-hex")
    assert page.locator("#packet-detail pre.hex").inner_text() == hexview


def luminance(css: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb(r, g, b)`` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_theme_follows_the_system(demo_ui: Ui, browser: Any, pages: list[Any]) -> None:
    page = new_page(browser, 1440)
    pages.append(page)
    colours = (
        "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color,"
        " getComputedStyle(document.getElementById('exchanges')).backgroundColor]"
    )
    page.emulate_media(color_scheme="light")
    page.goto(demo_ui.url)
    wait_rows(page, 100)
    body, text, table = page.evaluate(colours)
    assert luminance(body) > 0.85 and luminance(table) > 0.85 and luminance(text) < 0.3
    page.locator("#exchanges .vrow:not([hidden])").nth(3).click()
    page.wait_for_selector("#detail .message.response")
    shot(page, "ui-light.png")

    page.emulate_media(color_scheme="dark")  # the same page, the system switched: no reload
    body, text, table = page.evaluate(colours)
    assert luminance(body) < 0.15 and luminance(table) < 0.15 and luminance(text) > 0.7
    code = page.locator("#detail pre").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert luminance(code) < 0.15  # no light box left in the dark page
    shot(page, "ui-dark.png")
    page.emulate_media(color_scheme="light")
    assert luminance(page.evaluate(colours)[0]) > 0.85


def test_empty_state_until_the_source_answers(tmp_path: Path, browser: Any, pages: list[Any]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: refused until the demo takes the port
    port = sock.getsockname()[1]
    source = f"ws://127.0.0.1:{port}/"
    ui = start_ui("--source", source, "--db", str(tmp_path / "later.db"))
    served: Served | None = None
    try:
        page = new_page(browser, 1440)
        pages.append(page)
        page.goto(ui.url)
        page.wait_for_function(
            "() => document.getElementById('empty-title').textContent === 'Waiting for the source'",
            timeout=WAIT_MS,
        )
        assert page.locator("#empty-state").is_visible()
        assert source in page.inner_text("#empty-text")
        assert page.locator("#empty-state.waiting").count() == 1
        shot(page, "ui-waiting.png")

        sock.close()
        served = start_serve("--demo", "--interval", "0.05", "--listen", source)
        wait_rows(page, 1)
        assert page.locator("#empty-state").is_hidden()
        assert page.locator("#exchanges .vrow:not([hidden])").count() >= 1

        # a filter that matches nothing says so, instead of a blank table
        page.fill("#filter", "status = 999")
        page.click("#filter-form button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('empty-title').textContent === 'No exchange matches this filter'",
            timeout=WAIT_MS,
        )
    finally:
        sock.close()
        code, err = stop_ui(ui)
        if served is not None:
            stop_serve(served)
    assert code == 0, err


def test_empty_database_says_so(tmp_path: Path, browser: Any, pages: list[Any]) -> None:
    db = make_database(tmp_path / "none.db", 0)
    ui = start_ui("--db", str(db))
    try:
        page = new_page(browser, 1024)
        pages.append(page)
        page.goto(ui.url)
        page.wait_for_function(
            "() => document.getElementById('empty-title').textContent === 'This database has no exchanges'",
            timeout=WAIT_MS,
        )
        assert "Packets tab" in page.inner_text("#empty-text")
    finally:
        stop_ui(ui)


def make_fleet_database(path: Path, events: int) -> Path:
    """A capture database as a fleet collector writes it: demo events from three nodes (one per process)."""
    from itertools import islice

    from ecaptureq.protocol import Event
    from ecaptureq.sources.demo import DemoSource
    from ecaptureq.store import CaptureStore

    store = CaptureStore(path)
    store.connection_opened("nats://127.0.0.1:1/")
    for event in islice(DemoSource(seed=7).events(), events):
        node = f"web-eu-west-{event.pid % 3 + 1}" if isinstance(event, Event) else None
        store.add(event, node=node)
    store.close()
    return path


def test_fleet_node_column_fits(tmp_path: Path, browser: Any, pages: list[Any]) -> None:
    db = make_fleet_database(tmp_path / "fleet.db", 600)
    ui = start_ui("--db", str(db))
    try:
        page = new_page(browser, 1440)
        pages.append(page)
        page.goto(ui.url)
        wait_rows(page, 100)
        heads = "[...document.querySelectorAll('#exchanges .vhead > div')]"
        page.wait_for_function(f"() => {heads}.some(d => d.textContent === 'node')", timeout=WAIT_MS)
        titles = page.locator("#exchanges .vhead > div").all_inner_texts()
        assert titles[:3] == ["#", "time", "node"]
        nodes = set(page.locator("#exchanges .vrow:not([hidden]) > div:nth-child(3)").all_inner_texts())
        assert nodes and nodes <= {"web-eu-west-1", "web-eu-west-2", "web-eu-west-3"}
        assert page.evaluate(CLIPPED_CELLS, [*KEY_COLUMNS, "node"]) == []
        assert page.evaluate(OUTSIDE_VIEW, list(KEY_COLUMNS)) == []
        shot(page, "ui-1440-nodes.png")
    finally:
        stop_ui(ui)

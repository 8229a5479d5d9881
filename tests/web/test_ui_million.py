"""The exchange table on a database of 1,000,000 exchanges, in headless Chromium: the page holds a few pages
of rows around the view, whatever the table's length, and any part of it is shown when scrolled to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CHROMIUM_FLAGS
from playwright import sync_api
from ui_support import Ui, chromium_or_skip, make_huge_database, start_ui, stop_ui

CHROMIUM = chromium_or_skip()

pytestmark = pytest.mark.e2e

EXCHANGES = 1_000_000
WAIT_MS = 30_000
HELD_AT_MOST = 60 * 200
"""PAGES_KEPT pages of PAGE rows (app.js)."""

VISIBLE_IDS = (
    "() => [...document.querySelectorAll('#exchanges .vrow:not([hidden]):not(.loading)')]"
    ".map(r => Number(r.firstChild.textContent))"
)


SCROLL_TO = "f => { const c = table.container; c.scrollTop = c.scrollHeight * f; table.render(); }"


@pytest.fixture(scope="module")
def huge_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    db = make_huge_database(tmp_path_factory.mktemp("million") / "million.db", EXCHANGES)
    served = start_ui("--db", str(db))
    yield served
    code, err = stop_ui(served)
    assert code == 0, err


@pytest.fixture(scope="module")
def page(huge_ui: Ui) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(huge_ui.url)
        yield page
        browser.close()


def scroll_to(page: Any, fraction: float) -> list[int]:
    """Scroll the table to ``fraction`` of its height; the ids shown once their page arrived."""
    # render at once (the scroll event would, a frame later)
    page.evaluate(SCROLL_TO, fraction)
    page.wait_for_function(
        "() => document.querySelectorAll('#exchanges .vrow:not([hidden])').length > 10"
        " && !document.querySelector('#exchanges .vrow.loading:not([hidden])')",
        timeout=WAIT_MS,
    )
    return [int(i) for i in page.evaluate(VISIBLE_IDS)]


def held(page: Any) -> int:
    return int(page.evaluate("() => rows.loadedIds().length"))


def test_a_million_rows_are_counted_and_only_those_near_the_view_are_held(page: Any) -> None:
    page.wait_for_function("() => rows.total === 1000000", timeout=WAIT_MS)
    assert page.inner_text("#row-count") == "1,000,000 rows"
    assert scroll_to(page, 0)[0] == 1
    assert held(page) <= 200 * 2  # the first page (and the next, near the view)

    # the end, the middle, and back near the top: each part shows its own rows, consecutive
    end = scroll_to(page, 1)
    assert end[-1] == EXCHANGES and end == list(range(end[0], EXCHANGES + 1))
    middle = scroll_to(page, 0.5)
    assert abs(middle[0] - EXCHANGES // 2) < 100 and middle == list(range(middle[0], middle[-1] + 1))
    for step in range(1, 100):  # a long scroll by hand: 99 jumps of 1% each
        shown = scroll_to(page, step / 100)
        assert shown == list(range(shown[0], shown[-1] + 1))
    assert held(page) <= HELD_AT_MOST, "pages far from the view are let go"


def test_a_filter_on_a_million_rows_and_a_row_opened_at_its_end(page: Any) -> None:
    page.fill("#filter", "status = 404")
    page.click("#filter-form button[type=submit]")
    page.wait_for_function("() => state.filter === 'status = 404' && rows.total === 20000", timeout=WAIT_MS)
    assert scroll_to(page, 0)[:3] == [50, 100, 150]
    end = scroll_to(page, 1)
    assert end[-1] == EXCHANGES and end[-3:] == [EXCHANGES - 100, EXCHANGES - 50, EXCHANGES]

    # End selects the last row and Enter opens it (the one exchange of the database stored whole)
    page.locator("#exchanges").focus()
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#detail h2')?.textContent || '').endsWith('/v1/items/1000000')",
        timeout=WAIT_MS,
    )

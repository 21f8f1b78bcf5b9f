"""The operator console in real headless Chromium (Debian's, driven by Playwright) against the
real cloud app on loopback (the `server` of tests/web/conftest.py, with the staff and readings
of `console_world`): log in as an operator, see the tree and the table, filter by floor with
htmx (no full reload), open a meter's chart, switch to English, and fit a 768 px tablet.
Every screen is saved (`shots`) to be looked at; no Content Security Policy violation is
allowed on any of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.api.conftest import M1
from tests.web.conftest import Served
from tests.web.console_world import add_staff_and_readings
from tests.web.world import OPERATOR, PASSWORD

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1366, "height": 800}
TABLET = {"width": 768, "height": 1024}


@pytest.fixture(scope="module")
def staffed(server: Served) -> Served:
    add_staff_and_readings(server.world)
    return server


def _desk(browser: Any, server: Served, viewport: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=server.url)  # fmt: skip
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.violations = []  # CSP refusals the browser reports
    page.on(
        "console", lambda m: "Content Security Policy" in m.text and page.violations.append(m.text)
    )
    yield page
    assert page.violations == []
    context.close()


@pytest.fixture
def desk(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, LAPTOP)


@pytest.fixture
def tablet(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, TABLET)


def log_in(page: Any, user: str = OPERATOR) -> None:
    page.goto("/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/dashboard")  # an operator's first screen
    page.goto("/console/monitoring")


def test_operator_sees_the_tree_and_filters_by_floor_without_a_reload(
    desk: Any, shots: Path
) -> None:
    desk.goto("/console/login")
    desk.screenshot(path=shots / "c01-console-login.png", full_page=True)
    log_in(desk)
    assert desk.locator(".tree .floor").count() >= 2
    all_rows = desk.locator("tr[data-meter]").count()
    assert all_rows >= 3
    desk.screenshot(path=shots / "c02-monitoring-zh.png", full_page=True)
    desk.evaluate("window.__kept = 1")  # gone if the page were loaded again
    floor = desk.locator(".tree .floor a").first
    name = floor.get_attribute("data-floor")
    floor.click()
    desk.wait_for_url(f"**floor={name}**")
    desk.wait_for_function(f"document.querySelectorAll('tr[data-meter]').length < {all_rows}")
    assert desk.evaluate("window.__kept") == 1  # htmx swapped it in place
    floors = desk.locator("tr[data-meter] td:first-child small").all_inner_texts()
    assert floors and all(text.endswith(name) for text in floors)
    assert desk.locator(".tree .floor a[aria-current]").get_attribute("data-floor") == name
    desk.screenshot(path=shots / "c03-monitoring-floor.png", full_page=True)
    desk.select_option("#state", "online")  # the table alone is swapped
    desk.wait_for_url("**state=online**")
    assert desk.evaluate("window.__kept") == 1


def test_a_meters_detail_draws_its_chart_and_english_is_one_click_away(
    desk: Any, shots: Path
) -> None:
    log_in(desk)
    desk.click(f"tr[data-meter='{M1}'] a")
    desk.wait_for_url(f"**/console/meters/{M1}")
    desk.wait_for_selector(".chart canvas")
    desk.screenshot(path=shots / "c04-meter-detail-zh.png", full_page=True)
    desk.click("#lang-switch")
    desk.wait_for_selector("text=Daily use, last 30 days")
    desk.wait_for_selector(".chart canvas")
    desk.screenshot(path=shots / "c05-meter-detail-en.png", full_page=True)
    desk.click("nav.menu a[href='/console/monitoring']")
    desk.wait_for_selector("th:has-text('Balance (¥)')")
    desk.screenshot(path=shots / "c06-monitoring-en.png", full_page=True)
    desk.click("#logout")
    desk.wait_for_url("**/console/login")
    desk.goto("/console/monitoring")
    assert desk.url.endswith("/console/login")


def test_a_768_px_tablet_gets_the_whole_screen(tablet: Any, shots: Path) -> None:
    log_in(tablet)
    tablet.screenshot(path=shots / "c07-monitoring-tablet.png", full_page=True)
    width = tablet.evaluate("document.documentElement.scrollWidth")
    assert width <= 768  # the wide table scrolls inside its box, not the page

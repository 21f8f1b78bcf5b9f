"""The console's roles, people and dashboard in real headless Chromium (Debian's, driven by
Playwright) against the real cloud app on loopback, with axe-core on every screen
(`tests/web/axe.py`: no critical violation):

- each staff role logs in, lands on its first screen and sees exactly its rows of
  `console.MENU` (read from the table, so screens added later are covered); every other screen
  of the menu answers the refusal page; a merchant is sent to its phone page;
- the admin creates a user on the people screen and finds it in the operator log; the auditor
  filters the log and verifies its chain; the dashboard draws its charts.

Every screen is saved (`shots`) to be looked at; no Content Security Policy violation is
allowed on any of them (the `desk` fixture of test_console_browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.people.auth import Role
from cloud.web import console
from tests.cloud.api.conftest import M1
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.test_console_browser import LAPTOP, TABLET, _desk
from tests.web.world import MERCHANT, PASSWORD

SERIOUS = ("critical", "serious")  # these screens are held to contrast and names too

pytestmark = pytest.mark.slow

NEW_PASSWORD = "a-new-secret-2026"


@pytest.fixture(scope="module")
def staffed(server: Served) -> Served:
    add_staff_and_readings(server.world)
    return server


@pytest.fixture
def desk(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, LAPTOP)


@pytest.fixture
def tablet(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, TABLET)


def own_menu(role: Role) -> list[str]:
    return [href for _, href, roles in console.MENU if role in roles]


def log_in(page: Any, user: str, password: str = PASSWORD) -> None:
    page.goto("/console/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.mark.parametrize("role", list(STAFF_USERS), ids=lambda r: r.value)
def test_each_role_sees_exactly_its_menu_and_is_refused_the_rest(desk: Any, role: Role) -> None:
    log_in(desk, STAFF_USERS[role])
    own = own_menu(role)
    assert desk.url.endswith(own[0])  # its first screen
    links = desk.locator("nav.menu a").evaluate_all("links => links.map(a => a.pathname)")
    assert links == own
    assert desk.locator("nav.menu a[aria-current=page]").get_attribute("href") == own[0]
    for _, href, _ in console.MENU:
        if href in own:
            continue
        answer = desk.goto(href)
        assert answer.status == 403, href
        assert desk.locator("#refused").is_visible()
        assert desk.locator("nav.menu a").evaluate_all("a => a.map(x => x.pathname)") == own


def test_a_merchant_is_sent_to_its_phone_page(desk: Any) -> None:
    log_in(desk, MERCHANT)
    desk.wait_for_url("**/m/")
    for _, href, _ in console.MENU:
        desk.goto(href)
        assert desk.url.endswith("/m/"), href


def test_login_monitoring_and_a_meter_have_no_critical_violation(desk: Any, shots: Path) -> None:
    desk.goto("/console/login")
    assert_no_critical(desk)
    log_in(desk, STAFF_USERS[Role.OPERATOR])
    desk.goto("/console/monitoring")
    assert_no_critical(desk)
    desk.goto(f"/console/meters/{M1}")
    desk.wait_for_selector(".chart canvas")
    assert_no_critical(desk)
    desk.goto("/console/people")  # not the operator's: the refusal page
    assert_no_critical(desk, SERIOUS)
    desk.screenshot(path=shots / "p01-refused-operator.png", full_page=True)


def test_the_dashboard_draws_its_charts(desk: Any, shots: Path) -> None:
    log_in(desk, STAFF_USERS[Role.FINANCE])
    assert desk.url.endswith("/console/dashboard")
    desk.wait_for_function("() => document.querySelectorAll('.chart canvas').length >= 2")
    assert desk.locator("#month .figure").count() == 3
    assert_no_critical(desk, SERIOUS)
    desk.screenshot(path=shots / "p02-dashboard-zh.png", full_page=True)
    desk.click("#lang-switch")
    desk.wait_for_selector("text=This month, day by day")
    desk.wait_for_function("() => document.querySelectorAll('.chart canvas').length >= 2")
    assert_no_critical(desk, SERIOUS)
    desk.screenshot(path=shots / "p03-dashboard-en.png", full_page=True)


def test_the_dashboard_fits_a_tablet(tablet: Any, shots: Path) -> None:
    log_in(tablet, STAFF_USERS[Role.ADMIN])
    tablet.wait_for_function("() => document.querySelectorAll('.chart canvas').length >= 1")
    tablet.screenshot(path=shots / "p04-dashboard-tablet.png", full_page=True)
    assert tablet.evaluate("document.documentElement.scrollWidth") <= 768


def test_the_admin_adds_a_user_and_finds_it_in_the_verified_log(desk: Any, shots: Path) -> None:
    log_in(desk, STAFF_USERS[Role.ADMIN])
    desk.click("nav.menu a[href='/console/people']")
    desk.wait_for_selector("#users")
    assert_no_critical(desk, SERIOUS)
    desk.fill("#new-user input[name=name]", "fin-2")
    desk.fill("#new-user input[name=display_name]", "王会计")
    desk.select_option("#new-user select[name=role]", "finance")
    desk.fill("#new-user input[name=password]", NEW_PASSWORD)
    desk.fill("#new-user input[name=password2]", NEW_PASSWORD)
    desk.screenshot(path=shots / "p05-people.png", full_page=True)
    desk.click("#new-user button[type=submit]")
    desk.wait_for_url("**/console/people/fin-2?done=created")
    assert desk.locator("#done").is_visible()
    assert_no_critical(desk, SERIOUS)
    desk.screenshot(path=shots / "p06-person.png", full_page=True)
    desk.click("#about-user")
    desk.wait_for_url("**/console/oplog?target=user%3Afin-2")
    assert desk.locator("tr[data-action]").evaluate_all("r => r.map(x => x.dataset.action)") == [
        "user.create"]  # fmt: skip
    assert desk.locator("#oplog tbody td:nth-child(3)").inner_text() == STAFF_USERS[Role.ADMIN]


def test_the_auditor_filters_the_log_and_verifies_its_chain(desk: Any, shots: Path) -> None:
    log_in(desk, STAFF_USERS[Role.AUDITOR])
    desk.click("nav.menu a[href='/console/oplog']")
    desk.fill("#oplog-filters input[name=user]", "op-1")
    desk.click("#oplog-filters button.primary")
    desk.wait_for_url("**user=op-1**")
    users = desk.locator("#oplog tbody tr td:nth-child(3)").all_inner_texts()
    assert users and set(users) == {"op-1"}
    desk.click("#verify")
    desk.wait_for_selector("#verdict[data-ok=true]")
    assert_no_critical(desk, SERIOUS)
    desk.screenshot(path=shots / "p07-oplog.png", full_page=True)

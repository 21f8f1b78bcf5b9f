"""The registry screens in real headless Chromium against the real cloud app (the `server` of
tests/web/conftest.py): an operator creates a time-of-use tariff through its form (a refused
line first, told in words) and sees its day chart drawn; pushes a concentrator its
configuration and sees the new version pending. Every screen is saved (`shots`) to be looked
at; no Content Security Policy violation is allowed on any of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.api.conftest import NODE
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.test_console_browser import LAPTOP, TABLET, _desk, log_in

pytestmark = pytest.mark.slow

RANGES = "00:00-08:00 谷\n08:00-11:00 峰\n11:00-18:00 平\n18:00-21:00 尖\n21:00-24:00 平"
SERIOUS = ("critical", "serious")  # axe-core: labels, names, contrast, lang
GOOD_RANGES = RANGES.replace("24:00", "00:00")


@pytest.fixture
def desk(browser: Any, server: Served) -> Iterator[Any]:
    yield from _desk(browser, server, LAPTOP)


def test_a_tou_tariff_is_created_and_its_day_chart_drawn(desk: Any, shots: Path) -> None:
    log_in(desk)
    desk.goto("/console/registry/tariffs")
    desk.click("#new-row")
    desk.wait_for_url("**/console/registry/tariffs/new")  # loaded: registry.js has run
    desk.fill("#f-code", "tou-2027")
    desk.fill("#f-name", "2027 分时")
    assert desk.is_visible("#f-price") and not desk.is_visible("#f-ranges")  # flat first
    desk.select_option("#f-kind", "tou")
    assert desk.is_visible("#f-ranges") and not desk.is_visible("#f-price")
    for period, price in (("sharp", "1.3500"), ("peak", "1.1"), ("flat", "0.8365"),
                          ("valley", "0.4")):  # fmt: skip
        desk.fill(f"#f-price_{period}", price)
    desk.fill("#f-ranges", RANGES)  # 24:00 is no time of day: refused, in words
    desk.click("#save")
    desk.wait_for_selector("[data-error='ranges']")
    assert "第 5 行" in desk.inner_text("[data-error='ranges']")
    desk.screenshot(path=shots / "r03-tariff-refused.png", full_page=True)
    assert_no_critical(desk, SERIOUS)

    desk.fill("#f-ranges", GOOD_RANGES)
    desk.click("#save")
    desk.wait_for_url("**/console/registry/tariffs/tou-2027?saved=1")
    desk.wait_for_selector("#day-chart[data-drawn='4'] canvas")  # four periods drawn
    desk.screenshot(path=shots / "r04-tariff-day-chart.png", full_page=True)


def test_a_push_shows_the_nodes_new_version_pending(desk: Any, shots: Path) -> None:
    log_in(desk)
    desk.click("nav.menu a[href='/console/registry']")
    desk.wait_for_selector(".site h2")
    desk.screenshot(path=shots / "r01-registry-tree.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.click(".tabs a[href='/console/registry/nodes']")
    row = desk.locator(f"tr[data-node='{NODE}']")
    before = int(row.locator("[data-version]").inner_text())
    row.locator("button.push").click()
    desk.wait_for_selector("#pushed")
    row = desk.locator(f"tr[data-node='{NODE}']")
    assert int(row.locator("[data-version]").inner_text()) == before + 1
    assert row.locator("[data-delivery]").get_attribute("data-delivery") == "pending"
    desk.screenshot(path=shots / "r05-nodes-pushed.png", full_page=True)
    assert_no_critical(desk, SERIOUS)

    desk.click("#lang-switch")
    desk.wait_for_selector("text=Pending")
    desk.click(".tabs a[href='/console/registry/tariffs']")
    desk.wait_for_selector("tr[data-key='tou']")
    desk.screenshot(path=shots / "r02-tariffs-en.png", full_page=True)
    desk.set_viewport_size(TABLET)
    desk.goto("/console/registry/tariffs/tou")
    desk.wait_for_selector("#day-chart canvas")
    desk.screenshot(path=shots / "r06-tariff-tablet-en.png", full_page=True)
    assert desk.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
    desk.click(".tabs a[href='/console/registry/subsidy-policies']")
    desk.click("tr[data-key] a")
    desk.wait_for_selector("#f-by_type")
    desk.screenshot(path=shots / "r07-subsidy-en.png", full_page=True)


def test_a_meter_is_registered_then_deleted_after_its_confirm_step(desk: Any, shots: Path) -> None:
    log_in(desk)
    desk.goto("/console/registry/meters")
    desk.click("#new-row")
    desk.fill("#f-address", "12ab")  # no meter address: refused in words
    desk.select_option("#f-protocol", "dlt645")
    desk.fill("#f-bus", "rs485-3")
    desk.select_option("#f-node", NODE)
    desk.select_option("#f-shop_id", label="S102 · Market / B1 / 1F")
    desk.fill("#f-multiplier", "1")
    desk.click("#save")
    desk.wait_for_selector("[data-error='address']")
    desk.screenshot(path=shots / "r08-meter-refused.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.fill("#f-address", "77")
    desk.click("#save")
    desk.wait_for_url("**/console/registry/meters/*?saved=1")
    assert desk.input_value("#f-address") == "000000000077"
    desk.click("#delete-row")
    desk.wait_for_selector("#delete-confirm")
    desk.screenshot(path=shots / "r09-meter-delete-confirm.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.click("#confirm-delete")
    desk.wait_for_selector("#deleted")
    assert "000000000077" not in desk.inner_text("table")
    desk.goto("/console/registry/accounts/new")
    desk.wait_for_selector("#f-merchant_id")
    desk.screenshot(path=shots / "r10-account-new.png", full_page=True)
    assert_no_critical(desk, SERIOUS)


def test_a_concentrator_is_registered_and_a_bad_address_is_said_in_words(
    desk: Any, shots: Path
) -> None:
    log_in(desk)
    desk.goto("/console/registry/nodes")
    desk.fill("#n-node", "edge-0042")
    desk.fill("#n-name", "北区")
    desk.fill("#n-public_key", "not a key")
    desk.click("#register")
    desk.wait_for_selector("#register-problem, [data-error]")
    desk.screenshot(path=shots / "r11-node-refused.png", full_page=True)
    desk.fill("#n-public_key", "ab" * 32)
    desk.click("#register")
    desk.wait_for_selector("#registered")
    assert desk.locator("tr[data-node='edge-0042']").count() == 1
    problems = desk.locator("tr[data-node='edge-0042'] td.problems").inner_text()
    assert problems.strip() == "edge-0042 上没有电表：没有可抄读、可计费的表"  # no meter yet
    # its push button is disabled and looks it: muted, no pointer (the others stay pressable)
    blocked = desk.locator("tr[data-node='edge-0042'] button.push")
    pushable = desk.locator(f"tr[data-node='{NODE}'] button.push")
    assert blocked.is_disabled() and pushable.is_enabled()
    look = "e => ['cursor', 'color', 'backgroundColor'].map(p => getComputedStyle(e)[p])"
    assert blocked.evaluate(look)[0] == "not-allowed" and pushable.evaluate(look)[0] == "pointer"
    assert blocked.evaluate(look)[1:] != pushable.evaluate(look)[1:]
    blocked.scroll_into_view_if_needed()
    desk.locator("table:has(button.push)").screenshot(path=shots / "r12b-node-push-disabled.png")
    desk.screenshot(path=shots / "r12-node-registered.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.goto("/console/monitoring?offset=abc&q=S1")
    desk.wait_for_selector("#bad-query")
    desk.screenshot(path=shots / "r13-bad-query.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.click("#try-again")
    desk.wait_for_url("**/console/monitoring?q=S1")


def test_a_node_is_preassigned_and_an_account_with_money_is_kept(desk: Any, shots: Path) -> None:
    log_in(desk)
    desk.goto("/console/registry/nodes")
    desk.select_option("#p-site", label="Market")
    desk.fill("#p-node", "edge 50")  # a space: refused in words
    desk.click("#preassign")
    desk.wait_for_selector("[data-error='node']")
    desk.fill("#p-node", "edge-0050")
    desk.fill("#p-name", "东区")
    desk.click("#preassign")
    desk.wait_for_selector("#preassigned")
    row = desk.locator("tr[data-node='edge-0050']")
    assert row.locator("[data-state]").get_attribute("data-state") == "reserved"
    assert "已预留" in row.inner_text() and "未发放" in row.inner_text()
    desk.screenshot(path=shots / "r14-node-preassigned.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.goto("/console/registry/accounts/A0001/delete")
    desk.click("#confirm-delete")
    desk.wait_for_selector("#problem")
    assert "这个账户还有余额或账目" in desk.inner_text("#problem")
    desk.screenshot(path=shots / "r15-account-kept.png", full_page=True)
    assert_no_critical(desk, SERIOUS)
    desk.goto("/console/reports/consumption?from=2026-06-01&to=2026-11-30&group=account")
    desk.select_option("select[name='site']", label="Market")
    desk.click("#apply")
    desk.wait_for_url("**site=Market**")
    assert "site=Market" in (desk.get_attribute("#export-pdf", "href") or "")
    desk.screenshot(path=shots / "r16-report-site.png", full_page=True)
    assert_no_critical(desk)  # as tests/web/test_reports_browser.py: the report's .crumbs
    # contrast is axe-"serious" there already

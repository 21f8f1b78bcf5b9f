"""The console's live feed in real headless Chromium (Debian's, driven by Playwright) against
the real cloud app on loopback (`server` of tests/web/conftest.py): low-balance alarms
uploaded through the real ingest pop up grouped by building and floor, are acknowledged on the
alarms screen and printed; a reading ingested changes the monitoring table in place, and the
time from the ingest's commit to the value on screen is measured and printed."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.config import SILENT_AFTER_MIN
from cloud.db.models import Concentrator
from cloud.operations import silence
from tests.cloud.api.conftest import M1, M9, NODE, OTHER, reading
from tests.cloud.fake_edge import ms
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.console_world import add_staff_and_readings
from tests.web.test_console_browser import LAPTOP, TABLET, _desk, log_in
from tests.web.world import NOW

pytestmark = pytest.mark.slow

_event_ids = iter(range(500, 10_000))
SILENT_AFTER = dt.timedelta(minutes=SILENT_AFTER_MIN)  # the served app's (the default)


@pytest.fixture(scope="module")
def staffed(server: Served) -> Served:
    add_staff_and_readings(server.world)
    return server


@pytest.fixture
def desk(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, LAPTOP)


def _low_balance(server: Served, node: str, account: str, meter: str) -> None:
    event = {"id": next(_event_ids), "t": ms(NOW), "c": "alarm", "k": "low_balance",
             "m": meter, "a": account, "d": {"fen": 800}}  # fmt: skip
    assert server.world.site.upload(node, events=[event]).status.value == "ok"


def test_low_balance_alarms_pop_up_grouped_by_floor_and_are_acknowledged(
    desk: Any, staffed: Served, shots: Path
) -> None:
    log_in(desk)
    desk.wait_for_selector("body[data-live=open]")
    started = time.monotonic()
    _low_balance(staffed, NODE, "A0001", M1)  # B1 1F
    _low_balance(staffed, OTHER, "A0101", M9)  # B2 2F
    _low_balance(staffed, OTHER, "A0101", M9)
    desk.wait_for_selector("#live-alarms li[data-place='B2 2F'] li:has-text('2 个低余额告警')",
                           timeout=3_000)  # fmt: skip
    popped = time.monotonic() - started
    places = desk.locator("#live-alarms li.place > strong").all_inner_texts()
    assert places == ["B1 1F", "B2 2F"]
    assert desk.locator("#live-alarms li[data-place='B1 1F'] li").inner_text() == "1 个低余额告警"
    assert int(desk.evaluate("document.body.dataset.beeps || '0'")) >= 1  # sound is on
    print(f"\nalarm pop-up {popped * 1000:.0f} ms after the uploads began")
    desk.screenshot(path=shots / "c20-alarm-popup.png", full_page=False)
    assert_no_critical(desk)
    desk.click("#live-open")
    desk.wait_for_url("**/console/alarms")
    assert desk.locator("#live-alarms").count() == 0  # dismissed by opening the screen
    section = desk.locator("section.place[data-building='B2'][data-floor='2F']")
    assert section.locator("tr[data-alarm]").count() == 2
    desk.screenshot(path=shots / "c21-alarms-screen.png", full_page=True)
    assert_no_critical(desk)
    first = section.locator("tr[data-alarm]").first
    first.locator("input[name=note]").fill("已电话通知商户充值")
    first.locator("button[type=submit]").click()
    desk.wait_for_load_state()
    assert section.locator("tr[data-alarm]").count() == 1
    desk.select_option("#acknowledged", "yes")
    desk.click("#alarm-filters button[type=submit]")
    desk.wait_for_selector("text=已电话通知商户充值")
    desk.emulate_media(media="print")
    desk.screenshot(path=shots / "c22-alarms-print.png", full_page=True)
    assert desk.locator("nav.menu").is_hidden() and desk.locator("#alarm-filters").is_hidden()
    desk.emulate_media(media="screen")
    desk.click("#alarm-settings")
    desk.uncheck("#sound")
    desk.click("#settings-form button[type=submit]")
    desk.wait_for_selector("#settings-saved")
    desk.screenshot(path=shots / "c23-alarm-settings.png", full_page=True)
    assert_no_critical(desk)


def test_a_reading_changes_the_table_in_place_and_the_latency_is_measured(
    desk: Any, staffed: Served, shots: Path
) -> None:
    log_in(desk)
    desk.wait_for_selector("body[data-live=open]")
    desk.evaluate("window.__kept = 1")  # gone if the page were loaded again
    register = f"tr[data-meter='{M1}'] td[data-col='register']"
    latencies = []
    for n in range(5):
        energy = 130_000 + 1_000 * n
        when = NOW - dt.timedelta(minutes=10) + dt.timedelta(seconds=n)
        before = time.time()
        ack = staffed.world.site.upload(NODE, readings=[reading(M1, when, energy, relay=n % 2)])
        committed = time.time()
        assert ack.status.value == "ok"
        text = f"{energy // 1000}.{energy % 1000 // 100}"
        desk.wait_for_selector(f"{register}:text-is('{text}')", timeout=3_000)
        shown = int(desk.get_attribute(f"tr[data-meter='{M1}']", "data-live-at")) / 1000
        latencies.append((shown - before, shown - committed))
    desk.screenshot(path=shots / "c26-monitoring-live.png", full_page=False)
    relay = desk.inner_text(f"tr[data-meter='{M1}'] td[data-col='relay']")
    assert relay == "分闸"  # the last reading (relay 0) found it open
    assert desk.evaluate("window.__kept") == 1  # no reload
    worst = max(a for a, _ in latencies)
    print(f"\nlive update, upload start → on screen: median "
          f"{statistics.median(a for a, _ in latencies) * 1000:.0f} ms, worst {worst * 1000:.0f}"
          f" ms; commit → on screen: median "
          f"{statistics.median(b for _, b in latencies) * 1000:.0f} ms")  # fmt: skip
    assert worst < 2.0
    desk.goto("/console/alarms?lang=en&acknowledged=")
    desk.wait_for_selector("h1:has-text('Alarms')")
    desk.screenshot(path=shots / "c24-alarms-en.png", full_page=True)
    desk.set_viewport_size(TABLET)
    desk.goto("/console/alarms?lang=zh")
    desk.screenshot(path=shots / "c25-alarms-tablet.png", full_page=True)
    assert desk.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]


def test_a_silent_concentrator_pops_up_and_is_listed_under_its_floor(
    desk: Any, staffed: Served, shots: Path
) -> None:
    """The cloud service's sweep (`cloud.operations.silence`), run with a clock past
    `silent_after`, stores the silent node's alarm: it pops up and is on the alarms screen."""
    log_in(desk)
    desk.wait_for_selector("body[data-live=open]")
    later = NOW + dt.timedelta(minutes=SILENT_AFTER_MIN + 1)
    engine = staffed.world.engine
    with Session(engine) as session, session.begin():  # NODE kept sending; OTHER went quiet
        session.execute(update(Concentrator).where(Concentrator.node == NODE)
                        .values(last_seen=later))  # fmt: skip
        assert silence.sweep(session, later, SILENT_AFTER) == silence.Swept(1, 0)
    desk.wait_for_selector("#live-alarms li[data-place='B2 2F'] li:has-text('1 个集中器失联告警')",
                           timeout=3_000)  # fmt: skip
    desk.screenshot(path=shots / "c27-silent-popup.png", full_page=False)
    desk.goto("/console/alarms?kind=node_silent")
    section = desk.locator("section.place[data-building='B2'][data-floor='2F']")
    row = section.locator("tr[data-alarm]")
    assert row.count() == 1
    assert row.locator("td").nth(1).inner_text() == "集中器失联"
    assert row.locator("td").nth(5).inner_text() == OTHER
    desk.screenshot(path=shots / "c28-silent-alarm.png", full_page=True)
    assert_no_critical(desk)
    row.locator("input[name=note]").fill("集中器断电，已派电工")
    row.locator("button[type=submit]").click()
    desk.wait_for_load_state()
    desk.goto("/console/alarms?kind=node_silent&acknowledged=yes&lang=en")
    desk.wait_for_selector("text=集中器断电，已派电工")
    assert desk.locator("tr[data-alarm] td").nth(1).inner_text() == "concentrator silent"
    desk.screenshot(path=shots / "c29-silent-alarm-en.png", full_page=True)
    desk.goto("/console/alarms?lang=zh")

"""The alarms' words in real headless Chromium (Playwright) against the real cloud app on
loopback: a pop-up shown in Chinese is said in English after the user switches language and
reloads (the page keeps codes and words them itself, `static/console-live.js`), and the alarms
table's kind column shows every kind whole, in words (a kind it does not know as its code under a
generic label), at 1366 and 768 px in both languages, as the pop-up does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.config import SILENT_AFTER_MIN
from cloud.db.models import Concentrator
from cloud.operations import silence
from tests.cloud.api.conftest import NODE
from tests.web import test_console_alarms_browser as alarms_browser
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.test_console_browser import LAPTOP, TABLET, log_in
from tests.web.world import NOW

pytestmark = pytest.mark.slow

SILENT_AFTER = dt.timedelta(minutes=SILENT_AFTER_MIN)  # the served app's (the default)
POPUP = "#live-alarms li[data-kind='node_silent']"
# Long ones, ones that once had no words, and one a newer concentrator might send.
KINDS = ("quarantined", "read_success_low", "restore_drill_failed", "payment_mismatch",
         "refused_status", "refund_settle_refused", "payment_not_credited", "sync_refused",
         "store_check_failed", "fusion_overheat")  # fmt: skip
staffed, desk = alarms_browser.staffed, alarms_browser.desk  # the same fixtures, this module's


def test_a_pop_up_is_said_in_the_language_the_page_is_in(
    desk: Any, staffed: Served, shots: Path
) -> None:
    log_in(desk)  # Chinese, the monitoring page
    desk.wait_for_selector("body[data-live=open]")
    later = NOW + SILENT_AFTER + dt.timedelta(minutes=1)
    with Session(staffed.world.engine) as session, session.begin():  # OTHER went quiet
        session.execute(update(Concentrator).where(Concentrator.node == NODE)
                        .values(last_seen=later))  # fmt: skip
        assert silence.sweep(session, later, SILENT_AFTER) == silence.Swept(1, 0)
        raise_alarm(session, "edge-0099", "refused_status", NOW, "unsigned")  # no place
    desk.wait_for_selector(f"{POPUP}:has-text('1 个集中器失联告警')", timeout=3_000)
    assert desk.locator("#live-alarms li.place > strong").all_inner_texts() == [
        "B2 2F", "集中器 edge-0099",
    ]  # fmt: skip
    assert desk.locator("#live-alarms li[data-kind]").count() == 2  # one pop-up per silence
    kept = desk.evaluate("window.sessionStorage.getItem('vb-live-popup')")
    assert "node_silent" in kept and "集" not in kept  # codes, not words
    desk.click("#lang-switch")
    desk.wait_for_selector("html[lang=en]")
    desk.wait_for_selector(f"{POPUP}:has-text('concentrator silent')", timeout=3_000)
    desk.reload()
    desk.wait_for_selector("body[data-live=open]")
    assert desk.locator(POPUP).inner_text() == "1 × concentrator silent"
    assert desk.locator("#live-alarms h2").inner_text() == "New alarms"
    assert desk.locator("#live-alarms li.place > strong").all_inner_texts() == [
        "B2 2F", "Concentrator edge-0099",
    ]  # fmt: skip
    assert "集" not in desk.locator("#live-alarms").inner_text()
    desk.screenshot(path=shots / "c30-popup-en-after-zh.png", full_page=False)
    assert_no_critical(desk)
    desk.click("#lang-switch")  # and back
    desk.wait_for_selector(f"{POPUP}:has-text('1 个集中器失联告警')", timeout=3_000)


@pytest.mark.parametrize("viewport", [LAPTOP, TABLET], ids=["1366", "768"])
def test_the_kind_column_shows_every_kind_whole(
    desk: Any, staffed: Served, shots: Path, viewport: dict[str, int]
) -> None:
    with Session(staffed.world.engine) as session, session.begin():
        for kind in KINDS:
            raise_alarm(session, NODE, kind, NOW, "a long kind's name")
    log_in(desk)
    desk.set_viewport_size(viewport)
    for lang in ("en", "zh"):
        desk.goto(f"/console/alarms?lang={lang}&acknowledged=")
        cells = desk.locator("td.kind")
        assert cells.count() >= 3
        cut = desk.evaluate("""() => Array.from(document.querySelectorAll('td.kind'))
            .filter(td => td.scrollWidth > td.clientWidth).map(td => td.textContent)""")
        assert cut == [], (lang, viewport)
        shown = set(cells.all_inner_texts())
        assert not set(KINDS) & shown  # never a bare code
        if lang == "en":
            assert {"concentrator quarantined", "payment notice mismatch",
                    "other kind (fusion_overheat)"} <= shown  # fmt: skip
        else:
            assert {"退款结算被拒", "上报状态被拒", "其他类型（fusion_overheat）"} <= shown
        assert desk.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        name = f"c31-alarms-{lang}-{viewport['width']}.png"
        desk.screenshot(path=shots / name, full_page=True)
    desk.goto("/console/alarms?lang=zh")


def test_a_pop_up_of_a_kind_the_cloud_does_not_know_shows_its_code_labelled(
    desk: Any, staffed: Served, shots: Path
) -> None:
    log_in(desk)
    desk.wait_for_selector("body[data-live=open]")
    with Session(staffed.world.engine) as session, session.begin():
        raise_alarm(session, NODE, "fusion_overheat", NOW, "a newer concentrator's")
        raise_alarm(session, NODE, "payment_mismatch", NOW, "once a bare code")
    unknown = "#live-alarms li[data-kind='fusion_overheat']"
    desk.wait_for_selector(f"{unknown}:has-text('1 个其他类型（fusion_overheat）告警')",
                           timeout=3_000)  # fmt: skip
    known = desk.locator("#live-alarms li[data-kind='payment_mismatch']").inner_text()
    assert known == "1 个支付通知不符告警"
    desk.screenshot(path=shots / "c32-popup-kinds-zh.png", full_page=False)
    desk.click("#lang-switch")
    desk.wait_for_selector(f"{unknown}:has-text('1 × other kind (fusion_overheat)')",
                           timeout=3_000)  # fmt: skip
    desk.screenshot(path=shots / "c32-popup-kinds-en.png", full_page=False)

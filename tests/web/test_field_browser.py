"""The field app in real headless Chromium (Debian's, Playwright) on a phone against the real
cloud on loopback: log in as an installer, open a ticket from an alarm, let the service worker
keep the app; go offline, reload (the app still comes up), record two readings and close the
ticket offline (queued in IndexedDB); go online and see each applied once, in the database.
Screens are saved (`shots`); no Content Security Policy violation is allowed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.faults import Fault, FaultStep
from cloud.db.operations import IrReading
from cloud.people.auth import Role
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.world import NOW, PASSWORD

pytestmark = pytest.mark.slow

INSTALLER = STAFF_USERS[Role.INSTALLER]


@pytest.fixture(scope="module")
def staffed(server: Served) -> Served:
    add_staff_and_readings(server.world)
    return server


def _field_rows(server: Served) -> tuple[list[tuple[str, int]], list[tuple[str, list[str]]]]:
    with Session(server.world.engine) as session:
        from_field = IrReading.source.like("field:%")
        readings = [(r.address, r.energy_wh) for r in session.scalars(
            select(IrReading).where(from_field).order_by(IrReading.address))]  # fmt: skip
        tickets = [(f.status, list(session.scalars(select(FaultStep.after)
                    .where(FaultStep.fault_id == f.id).order_by(FaultStep.id))))
                   for f in session.scalars(select(Fault).order_by(Fault.id))]  # fmt: skip
    return readings, tickets


def record(page: Any, address: str, kwh: str) -> None:
    page.fill("#reading-form input[name=address]", address)
    page.fill("#reading-form input[name=kwh]", kwh)
    page.click("#reading-form button[type=submit]")


def test_offline_readings_and_a_ticket_closed_offline_are_applied_once(
    phone: Any, staffed: Served, shots: Path
) -> None:
    violations: list[str] = []

    def seen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    phone.on("console", seen)
    phone.clock.set_fixed_time(NOW - dt.timedelta(minutes=5))  # the server's clock is NOW
    phone.goto("/field/")
    assert phone.url.endswith("/field/login")
    phone.screenshot(path=shots / "f01-login.png", full_page=True)
    phone.fill("input[name=user]", INSTALLER)
    phone.fill("input[name=password]", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url("**/field/")
    phone.locator("#alarms form button").first.click()  # a ticket from the newest alarm
    phone.wait_for_url("**/field/faults/*")
    ticket = phone.url
    phone.wait_for_function("() => document.body.dataset.shell === 'kept'")
    phone.goto("/field/")
    phone.wait_for_function(
        "() => navigator.serviceWorker.controller !== null"
        " && document.body.dataset.shell === 'kept'"
    )
    assert phone.locator("#tickets li").count() == 1
    assert phone.locator("#alarms a.button").inner_text() == "工单 #1"
    phone.screenshot(path=shots / "f02-home-online.png", full_page=True)
    assert_no_critical(phone)

    phone.context.set_offline(True)
    phone.reload()  # answered by the service worker from its cache
    assert phone.locator("#reading-form").is_visible()
    phone.wait_for_function("() => document.getElementById('net').classList.contains('offline')")
    record(phone, "000000000001", "1234.5")
    record(phone, "000000000002", "88")
    phone.wait_for_function(
        "() => document.querySelectorAll('#queue li[data-state=queued]').length == 2"
    )
    phone.screenshot(path=shots / "f03-offline-queued.png", full_page=True)
    phone.goto(ticket)  # also from the cache
    phone.click("#move-form button[value=closed]")
    phone.wait_for_function(
        "() => document.querySelectorAll('#queue li[data-state=queued]').length == 3"
    )
    assert "#1 → 关闭工单" in phone.locator("#queue").inner_text()
    phone.screenshot(path=shots / "f04-ticket-offline.png", full_page=True)
    assert _field_rows(staffed) == ([], [("open", ["open"])])  # nothing reached the server

    phone.context.set_offline(False)  # the "online" event sends the queue; the ticket reloads
    phone.wait_for_function(
        "() => document.getElementById('ticket-status').textContent.trim() == '已关闭'"
    )
    phone.wait_for_function(
        "() => document.querySelectorAll('#queue li[data-state=queued]').length == 0"
    )
    phone.screenshot(path=shots / "f05-ticket-closed.png", full_page=True)
    assert_no_critical(phone)
    assert _field_rows(staffed) == ([("000000000001", 1_234_500), ("000000000002", 88_000)],
                                    [("closed", ["open", "closed"])])  # fmt: skip
    phone.goto("/field/?lang=en")
    assert phone.locator("#tickets").inner_text().count("No open tickets") == 1
    phone.screenshot(path=shots / "f06-home-en.png", full_page=True)
    phone.click("#logout")  # forgets the kept pages
    phone.wait_for_url("**/field/login")
    phone.wait_for_function("() => caches.match('/field/').then((kept) => kept === undefined)")
    assert violations == []

"""The console's money desk in real headless Chromium (Debian's, driven by Playwright) against
the real cloud app on loopback: finance recharges a shop from its page (the browser refuses
12.345 before sending) and prints the receipt to PDF on an 80 mm roll and on A4; an operator's
correction above the approval amount is approved by finance in another browser context. Every
screen is saved (`shots`); no Content Security Policy violation is allowed. An IR handheld
file chosen in the swap page is read by the browser, imported and offered for the swap."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.operations import Correction
from cloud.people.auth import Role
from cloud.web.catalogue import MESSAGES
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.test_console_browser import LAPTOP, _desk, log_in

pytestmark = pytest.mark.slow

MM = 72 / 25.4  # PDF points per millimetre


@pytest.fixture(scope="module")
def staffed(server: Served) -> Served:
    add_staff_and_readings(server.world)
    # cloud.toml's `approve_corrections_above_fen`, lowered so ¥20 waits for a second user
    server.server.config.app.state.approve_above_fen = 1_000
    return server


@pytest.fixture
def finance(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, LAPTOP)


@pytest.fixture
def operator(browser: Any, staffed: Served) -> Iterator[Any]:
    yield from _desk(browser, staffed, LAPTOP)


def _pdf(page: Any) -> tuple[str, float]:
    """The page printed by Chromium: its text and its first page's width in mm."""
    reader = PdfReader(io.BytesIO(page.pdf(prefer_css_page_size=True, print_background=True)))
    width = float(reader.pages[0].mediabox.width) / MM
    return "".join(p.extract_text() for p in reader.pages), width


def test_a_recharge_and_its_receipt_printed_on_a_roll_and_on_a4(finance: Any, shots: Path) -> None:
    log_in(finance, STAFF_USERS[Role.FINANCE])
    finance.click('a.shop[href="/console/accounts/A0001"]')
    finance.wait_for_url("**/console/accounts/A0001")
    finance.screenshot(path=shots / "d01-shop-page.png", full_page=True)
    assert_no_critical(finance)
    amount = finance.locator("#recharge-amount")
    amount.fill("12.345")
    finance.click("#recharge-submit")
    assert finance.url.endswith("/console/accounts/A0001")  # the browser did not send it
    assert amount.evaluate("e => e.validity.stepMismatch") is True
    finance.eval_on_selector("#recharge-form", "f => { f.noValidate = true; }")  # send it anyway
    finance.click("#recharge-submit")
    finance.wait_for_selector("#recharge-error")  # refused by the server, in words
    assert MESSAGES["desk_amount_bad"][0] in finance.inner_text("#recharge-error")
    finance.screenshot(path=shots / "d01b-recharge-refused.png", full_page=True)
    amount = finance.locator("#recharge-amount")
    amount.fill("66.80")
    finance.check("input[name=method][value=card]")
    finance.click("#recharge-submit")
    finance.wait_for_url("**/console/receipts/*")
    receipt = finance.locator("#receipt")
    assert (
        "¥66.80" in receipt.inner_text() and "银行卡" in receipt.inner_text()
    )  # the receipt's own words
    finance.screenshot(path=shots / "d02-receipt-roll.png", full_page=True)
    assert_no_critical(finance)
    text, width = _pdf(finance)
    assert "66.80" in text and abs(width - 80) < 1, (width, text)
    finance.click("#paper-a4")
    finance.wait_for_url("**paper=a4")
    finance.screenshot(path=shots / "d04-receipt-a4.png", full_page=True)
    text, width = _pdf(finance)
    assert "66.80" in text and abs(width - 210) < 1, (width, text)
    # the API's own PDF (`test_console_desk` reads its text) is one click away
    assert finance.get_attribute("#receipt-pdf", "href").endswith("/pdf?lang=zh")


def test_a_correction_waits_for_a_second_user_who_approves_it(
    operator: Any, finance: Any, staffed: Served, shots: Path
) -> None:
    log_in(operator, STAFF_USERS[Role.OPERATOR])
    operator.goto("/console/accounts/A0001")
    operator.screenshot(path=shots / "d05-shop-page-operator.png", full_page=True)
    operator.check("input[name=direction][value=credit]")
    operator.fill("#correction-amount", "20")
    operator.fill("#correction-reason", "收银少录入现金 20 元")
    operator.click("#correction-submit")
    operator.wait_for_url("**/console/desk?done=correction_held")
    row = operator.locator("#held tr[data-correction]")
    assert row.count() == 1 and row.locator("button").count() == 0  # not its own to decide
    ref = row.get_attribute("data-correction")
    operator.screenshot(path=shots / "d06-correction-held.png", full_page=True)
    assert_no_critical(operator)

    log_in(finance, STAFF_USERS[Role.FINANCE])
    finance.goto("/console/desk")
    finance.screenshot(path=shots / "d07-queue-finance.png", full_page=True)
    assert_no_critical(finance)
    finance.click(f'tr[data-correction="{ref}"] button[data-verb=approve]')
    finance.wait_for_url("**/console/desk?done=approved")
    assert finance.locator("#done").is_visible() and finance.locator("#no-held").is_visible()
    finance.screenshot(path=shots / "d08-approved.png", full_page=True)

    operator.goto("/console/accounts/A0001")
    booked = operator.locator(f'#operations tr[data-correction="{ref}"]').inner_text()
    assert MESSAGES["correction_pending"][0] in booked and STAFF_USERS[Role.FINANCE] in booked
    with Session(staffed.world.engine) as session:
        row_ = session.scalars(select(Correction).where(Correction.id == ref)).one()
        assert (row_.status, row_.approved_by, row_.fen) == ("pending", "fin-c", 2000)


def test_an_ir_handheld_file_is_chosen_imported_and_offered_for_the_swap(
    operator: Any, tmp_path: Path, shots: Path
) -> None:
    export = tmp_path / "HH-7-dead-meters.csv"
    export.write_text("address,read_at,energy_kwh\n000000000002,2026-11-24T16:55:00+08:00,5.50\n")
    log_in(operator, STAFF_USERS[Role.OPERATOR])
    operator.goto("/console/accounts/A0001")
    operator.click('a[href="/console/meter-swaps?meter=000000000002"]')
    operator.wait_for_url("**/console/meter-swaps?meter=000000000002")
    operator.set_input_files("#ir-file", str(export))  # desk.js reads it into the form
    operator.wait_for_function("() => document.getElementById('ir-csv').value.includes('5.50')")
    assert operator.input_value("#ir-source") == export.name
    operator.click("#ir-submit")
    operator.wait_for_url("**done=ir_imported")
    assert "5.5" in operator.locator("#ir-readings").inner_text()
    option = operator.locator("#swap-ir option", has_text="000000000002")
    assert option.count() == 1
    assert operator.input_value("#swap-old") == "000000000002"  # still the meter it came for
    operator.screenshot(path=shots / "d09-meter-swaps.png", full_page=True)
    assert_no_critical(operator)

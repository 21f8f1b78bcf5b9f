"""The console's takeovers in real headless Chromium against the real cloud app on loopback: an
operator opens "replace this box" from a concentrator's row in the registry, chooses the new box,
sees the plan (balances, meter baselines, subsidy months) and asks for it; an administrator, in
another browser context, approves it; the command expires and the operator issues it again.
Every screen is saved (`shots`); no Content Security Policy violation is allowed.

The market's edge-0001 is made takeable first (`tests.cloud.api.takeable`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.chains import commands
from cloud.db.engine import session_factory
from cloud.db.models import Concentrator
from cloud.operations import takeovers
from cloud.people.auth import Role
from cloud.web.catalogue import MESSAGES
from tests.cloud.api.conftest import M1, M2, NODE, OTHER
from tests.cloud.api.takeable import make_takeable
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.test_console_browser import LAPTOP, _desk, log_in

pytestmark = pytest.mark.slow


def zh(key: str) -> str:
    return MESSAGES[key][0]


@pytest.fixture(scope="module")
def takeable(server: Served) -> Served:
    world = server.world
    add_staff_and_readings(world)
    make_takeable(world.site, world.engine, world.key, dt.datetime.now(dt.UTC))
    return server


@pytest.fixture
def operator(browser: Any, takeable: Served) -> Iterator[Any]:
    yield from _desk(browser, takeable, LAPTOP)


@pytest.fixture
def admin(browser: Any, takeable: Served) -> Iterator[Any]:
    yield from _desk(browser, takeable, LAPTOP)


def _state(page: Any) -> str:
    return str(page.get_attribute(f'#takeovers tr[data-takeover="{NODE}"] [data-state]',
                                  "data-state"))  # fmt: skip


def test_a_box_replaced_asked_for_approved_and_issued_again(
    operator: Any, admin: Any, takeable: Served, shots: Path
) -> None:
    log_in(operator)
    operator.goto("/console/registry/nodes")
    operator.click(f'a.replace[href="/console/takeovers?old={NODE}"]')
    operator.wait_for_url(f"**/console/takeovers?old={NODE}")
    assert zh("to_replace_title").format(old=NODE) in operator.inner_text("#replace h2")
    operator.select_option("#choose-new", OTHER)
    operator.click("#show-plan")
    operator.wait_for_selector("#plan")
    balances = operator.inner_text("#plan-balances")
    assert "A0001" in balances and zh("to_pocket_prepaid") in balances
    subsidy = operator.inner_text('#plan-balances tr[data-pocket="A0001:subsidy"]')
    assert subsidy.endswith("kWh") and zh("to_pocket_subsidy") in subsidy  # energy, in kWh
    meters = operator.inner_text("#plan-meters")
    assert M1 in meters and M2 in meters
    assert "2026-11" in operator.inner_text("#plan-accounts")  # the subsidy month carried
    operator.screenshot(path=shots / "t01-takeover-plan.png", full_page=True)
    assert_no_critical(operator)
    operator.click("#request")
    operator.wait_for_url("**/console/takeovers?done=requested")
    waiting = operator.locator(f'.waiting[data-takeover="{NODE}"]')
    assert zh("desk_own_request") in waiting.inner_text()  # not for the asker to decide
    assert _state(operator) == "requested"
    operator.screenshot(path=shots / "t02-takeover-requested.png", full_page=True)

    log_in(admin, STAFF_USERS[Role.ADMIN])
    admin.goto("/console/takeovers")
    admin.click(f'.waiting[data-takeover="{NODE}"] summary')  # the plan the admin approves
    admin.screenshot(path=shots / "t03-takeover-waiting-admin.png", full_page=True)
    admin.click(f'.waiting[data-takeover="{NODE}"] button[data-verb="approve"]')
    admin.wait_for_url("**/console/takeovers?done=approved")
    assert _state(admin) == "approved"  # booked, its command not yet handed to the box
    assert admin.locator(".waiting").count() == 0
    admin.screenshot(path=shots / "t04-takeover-approved.png", full_page=True)

    # the new box never took it: the command expires, the operator issues it again
    with session_factory(takeable.world.engine).begin() as session:
        row = takeovers.get(session, NODE)
        first = row.command_id
        assert first is not None
        later = commands.get(session, first).expires + dt.timedelta(seconds=1)
        assert commands.expire(session, later, OTHER) >= 1
        old = session.get(Concentrator, NODE)
        assert old is not None and old.status == "retired"
    operator.goto("/console/takeovers")
    assert _state(operator) == "expired"
    operator.screenshot(path=shots / "t05-takeover-expired.png", full_page=True)
    operator.click(f'#takeovers tr[data-takeover="{NODE}"] button[data-verb="reissue"]')
    operator.wait_for_url("**/console/takeovers?done=reissued")
    assert _state(operator) == "approved"
    row_text = operator.inner_text(f'#takeovers tr[data-takeover="{NODE}"]')
    assert zh("to_sent_times").format(n=2) in row_text
    operator.click("#lang-switch")
    operator.wait_for_load_state()
    assert MESSAGES["to_state_approved"][1] in operator.inner_text("#takeovers")
    operator.screenshot(path=shots / "t06-takeover-reissued-en.png", full_page=True)
    with session_factory(takeable.world.engine).begin() as session:
        row = takeovers.get(session, NODE)
        assert row.commands == [first, row.command_id] and row.approved_by == "admin-c"

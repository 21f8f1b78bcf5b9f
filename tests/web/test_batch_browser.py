"""Batch control in real headless Chromium against the real cloud app on loopback: an operator
ticks three meters on the monitoring screen, trips them with a maintenance reason, and watches
each confirm on the progress panel without a reload, while the concentrators answer through
the real ingest (`world.site`: the command's result and the relay read-back events, as
`edge.sync.commands.relay` and the runtime's relay outcomes report them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models
from cloud.db.notices import Notice
from cloud.db.registry import NodeConfig
from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, M2, M9, NODE, OTHER
from tests.cloud.fake_edge import ms
from tests.web.axe import assert_no_critical
from tests.web.conftest import Served
from tests.web.test_console_browser import desk, log_in, staffed  # noqa: F401 (fixtures)
from tests.web.world import NOW

pytestmark = pytest.mark.slow

THREE = (M1, M2, M9)  # two on edge-0001, one on edge-0002


def _answer(server: Served, node: str, first_event: int) -> None:
    """The concentrator `node` takes its relay command from the broker, applies it, and reports
    each meter's relay read back (confirmed), in one uplink batch through the real ingest."""
    world = server.world
    with Session(world.engine) as session:
        command = session.scalars(
            select(models.Command).where(models.Command.node == node,
                                         models.Command.kind == "relay")
        ).one()  # fmt: skip
    world.site.ingest.mark_delivered([command.id])
    when = ms(NOW + dt.timedelta(seconds=3))
    reason = f"operator trip (command {command.id[:8]})"
    events = [
        {"id": first_event + n, "t": when, "c": "event", "k": "relay_confirmed", "m": meter,
         "d": {"message": "relay trip confirmed", "command": "trip", "cause": "operator",
               "reason": reason, "attempts": 1}}
        for n, meter in enumerate(command.args["meters"])
    ]  # fmt: skip
    result = {"command": command.id, "status": "applied", "seqs": [], "outcomes": []}
    ack = world.site.upload(node, results=[result], events=events)
    assert ack.status is AckStatus.OK, ack


def _state(page: Any, meter: str) -> str:
    return str(page.get_attribute(f"tr[data-outcome='{meter}']", "data-state"))


def test_trip_three_meters_from_monitoring_and_watch_each_confirm(
    desk: Any,  # noqa: F811 (the imported fixture)
    staffed: Served,  # noqa: F811 (the imported fixture)
    shots: Path,
) -> None:
    log_in(desk)
    for meter in THREE:
        desk.check(f"tr[data-meter='{meter}'] input[name=meter]")
    desk.select_option("#batch-action", "trip")
    desk.screenshot(path=shots / "b01-batch-ticked.png", full_page=True)
    desk.click("#batch-next")
    desk.wait_for_selector("#batch-summary")
    assert "3 块电表" in desk.inner_text("#batch-summary")
    assert "S101" in desk.inner_text("#batch-shops")
    desk.select_option("#batch-reason", "maintenance")
    desk.fill("#batch-note", "更换配电柜")
    desk.screenshot(path=shots / "b02-batch-confirm.png", full_page=True)
    assert_no_critical(desk, ("critical", "serious"))
    desk.click("#batch-send-button")
    desk.wait_for_url("**/console/batches/*")
    assert sorted(_state(desk, m) for m in THREE) == ["pending"] * 3
    desk.evaluate("window.__kept = 1")  # gone if the page were loaded again
    desk.screenshot(path=shots / "b03-batch-pending.png", full_page=True)

    _answer(staffed, NODE, 9001)  # edge-0001 answers for M1 and M2
    desk.wait_for_selector(f"tr[data-outcome='{M2}'][data-state=confirmed]", timeout=4000)
    assert _state(desk, M1) == "confirmed" and _state(desk, M9) != "confirmed"
    desk.screenshot(path=shots / "b04-batch-two-confirmed.png", full_page=True)

    _answer(staffed, OTHER, 9001)  # then edge-0002 for M9
    desk.wait_for_selector(f"tr[data-outcome='{M9}'][data-state=confirmed]", timeout=4000)
    assert desk.inner_text("#count-confirmed").split()[-1] == "3"
    assert desk.evaluate("window.__kept") == 1  # every confirmation came without a reload
    assert desk.locator("#batch-panel[hx-trigger]").count() == 0  # settled: polling stopped
    desk.screenshot(path=shots / "b05-batch-confirmed.png", full_page=True)
    assert_no_critical(desk, ("critical", "serious"))
    with Session(staffed.world.engine) as session:
        told = session.scalars(select(Notice).where(Notice.operator == "op-1")).all()
    assert any(n.kind == "power_off" and n.facts["note"] == "更换配电柜" for n in told)


def test_keep_power_reaches_each_concentrator_on_the_panel(
    desk: Any,  # noqa: F811 (the imported fixture)
    staffed: Served,  # noqa: F811 (the imported fixture)
    shots: Path,
) -> None:
    log_in(desk)
    for meter in (M1, M9):
        desk.check(f"tr[data-meter='{meter}'] input[name=meter]")
    desk.select_option("#batch-action", "keep_on")
    desk.click("#batch-next")
    desk.wait_for_selector("#batch-summary")
    desk.click("#batch-send-button")
    desk.wait_for_selector("#keep-panel")
    assert desk.get_attribute(f"tr[data-keep='{M1}']", "data-state") == "unpushed"
    desk.screenshot(path=shots / "b06-keep-waiting.png", full_page=True)
    assert_no_critical(desk, ("critical", "serious"))
    desk.click("#keep-push")
    desk.wait_for_url("**/console/batches/keep-power?*")
    assert desk.get_attribute(f"tr[data-keep='{M1}']", "data-state") == "pushed"
    desk.evaluate("window.__kept = 1")
    world = staffed.world
    with Session(world.engine) as session:
        command = session.get(NodeConfig, NODE)
        assert command is not None and command.command_id is not None
        config = command.command_id
    world.site.ingest.mark_delivered([config])
    result = {"command": config, "status": "applied", "seqs": [], "outcomes": []}
    assert world.site.upload(NODE, results=[result]).status is AckStatus.OK
    desk.wait_for_selector(f"tr[data-keep='{M1}'][data-state=acknowledged]", timeout=5000)
    assert desk.get_attribute(f"tr[data-keep='{M9}']", "data-state") == "pushed"
    assert desk.evaluate("window.__kept") == 1  # polled in place, no reload
    desk.screenshot(path=shots / "b07-keep-acknowledged.png", full_page=True)
    assert_no_critical(desk, ("critical", "serious"))

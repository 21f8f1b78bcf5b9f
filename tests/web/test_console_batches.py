"""The console's batch control through FastAPI's TestClient on every backend (SQLite,
PostgreSQL): meters chosen by ticks, by floor and by the filter (recomputed on the server);
the same commands, operator log and power-off notices as `POST /relays` and
`POST /notices/power-off` make; refusals (roles, CSRF, bad input) that change nothing; and the
progress of each meter as the concentrator's own answers (results and read-back events,
uploaded through the real ingest) make it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.chains import commands as chain_commands
from cloud.db import models
from cloud.db.auth import OperatorLogEntry
from cloud.db.notices import Notice
from cloud.db.registry import Account, NodeConfig, Shop
from cloud.notices.power_off import Reason
from cloud.people.auth import Role
from cloud.web import batches, catalogue, monitoring
from cloud.web.monitoring import MeterFilters
from edge.rules.decisions import RelayCause
from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, M2, M3, M9, NODE, OTHER, reading
from tests.cloud.fake_edge import ms
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import NOW, World

UNTIL = "2026-11-25T09:00"  # Shanghai: the next morning
TRIP = {"action": "trip", "reason": "maintenance", "note": "更换配电柜", "until": UNTIL}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def _csrf(client: TestClient) -> str:
    return csrf_of(client.get("/console/monitoring").text)


def _written(world: World) -> tuple[int, int, int, list[bool]]:
    """Commands, notices, operator-log rows, and every account's keep-power."""
    with Session(world.engine) as session:
        return (
            session.scalar(select(func.count()).select_from(models.Command)) or 0,
            session.scalar(select(func.count()).select_from(Notice)) or 0,
            session.scalar(select(func.count()).select_from(OperatorLogEntry)) or 0,
            list(session.scalars(select(Account.keep_power).order_by(Account.id))),
        )


def _relay_commands(world: World) -> list[tuple[str, dict[str, Any], str, str]]:
    with Session(world.engine) as session:
        rows = session.scalars(
            select(models.Command)
            .where(models.Command.kind == "relay")
            .order_by(models.Command.node)
        )
        return [(c.node, c.args, c.operator, c.id) for c in rows]


def _send(client: TestClient, fields: dict[str, Any]) -> Any:
    """The confirm step, then the send with the count it showed."""
    shown = client.post("/console/batches/confirm", data=fields)
    assert shown.status_code == 200, shown.text
    count = re.search(r'name="count" value="(\d+)"', shown.text)
    assert count, shown.text
    return client.post("/console/batches", data={**fields, "count": count[1]},
                       follow_redirects=False)  # fmt: skip


def test_ticked_meters_are_tripped_as_the_api_trips_them_with_a_notice(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    page = client.get("/console/monitoring")
    assert 'id="batch"' in page.text and f'name="meter" value="{M1}"' in page.text
    fields = {"csrf": csrf_of(page.text), "scope": "meters", "meter": [M1, M9], **TRIP}
    shown = client.post("/console/batches/confirm", data=fields)
    assert "共 2 块电表，2 个商铺，2 台集中器" in shown.text, shown.text
    assert "S101" in shown.text and "Li Wei" in shown.text
    before = _written(world)
    sent = _send(client, fields)
    assert sent.status_code == 303
    issued = _relay_commands(world)
    assert [(n, a, o) for n, a, o, _ in issued] == [
        (NODE, {"meters": [M1], "action": "trip"}, "op-1"),
        (OTHER, {"meters": [M9], "action": "trip"}, "op-1"),
    ]
    assert sent.headers["location"] == "/console/batches/" + ".".join(i for *_, i in issued)
    with Session(world.engine) as session:
        logged = session.scalars(
            select(OperatorLogEntry).where(OperatorLogEntry.seq > before[2])
            .order_by(OperatorLogEntry.seq)
        ).all()  # fmt: skip
        assert [(e.action, e.target, e.user, e.after) for e in logged[:2]] == [
            ("relay.trip", f"node:{n}", "op-1", {"command_id": i, **a}) for n, a, _, i in issued
        ]
        assert logged[2].action == "notice.power_off"
        shops = dict(session.execute(
            select(Account.id, Shop.number).join(Shop, Shop.id == Account.shop_id)
        ).all())  # fmt: skip
        notices = session.scalars(select(Notice).where(Notice.created == NOW)).all()
    # One notice per merchant (Li Wei holds both accounts), naming both shops.
    assert [(n.kind, n.facts["reason"], n.facts["note"], sorted(n.facts["shops"]), n.facts["to"],
             n.operator) for n in notices] == [
        ("power_off", "maintenance", "更换配电柜", sorted({shops["A0001"], shops["A0101"]}),
         "2026-11-25T09:00+08:00", "op-1")
    ]  # fmt: skip
    progress = client.get(sent.headers["location"])
    assert progress.status_code == 200
    assert sorted(re.findall(r'data-outcome="(\w+)" data-state="(\w+)"', progress.text)) == [
        (M1, "pending"), (M9, "pending")
    ]  # fmt: skip
    assert 'hx-trigger="every 1s"' in progress.text


def test_a_whole_floor_and_a_filter_result_are_chosen_on_the_server(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    with Session(world.engine) as session:
        m1 = monitoring.meters_at(session, M1, NOW, NOW - dt.timedelta(minutes=45))[0]
        floor = MeterFilters(building=m1.building, floor=m1.floor)
        on_floor = sorted({r.address for r in monitoring.meter_page(session, floor, NOW).rows})
    assert M1 in on_floor and M9 not in on_floor
    fields = {"csrf": _csrf(client), "scope": "floor", "building": m1.building,
              "floor": m1.floor, "q": "nothing-matches", "action": "close"}  # fmt: skip
    assert _send(client, fields).status_code == 303
    # `/relays` orders an address on every concentrator that has it (M3 is on both here).
    with Session(world.engine) as session:
        wanted = set(session.execute(
            select(models.MeterState.node, models.MeterState.address)
            .where(models.MeterState.address.in_(on_floor))
        ).all())  # fmt: skip
    sent = {(n, m) for n, a, _, _ in _relay_commands(world) for m in a["meters"]}
    assert sent == wanted
    # The filter's result: `q=wang` is Wang Fang's meter M3; no id is sent, the server finds it
    # (its address is on both concentrators of the test site: `/relays` orders it on both).
    known = {cid for *_, cid in _relay_commands(world)}
    fields = {"csrf": _csrf(client), "scope": "filter", "q": "wang", "action": "close"}
    assert _send(client, fields).status_code == 303
    assert [(n, a) for n, a, _, cid in _relay_commands(world) if cid not in known] == [
        (NODE, {"meters": [M3], "action": "close"}), (OTHER, {"meters": [M3], "action": "close"})
    ]  # fmt: skip


def test_keep_power_is_the_registrys_account_write(client: TestClient, world: World) -> None:
    log_in(client, "op-1")
    before = _written(world)
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1, M2], "action": "keep_on"}
    kept = _send(client, fields)
    assert kept.status_code == 200 and "已更改的账户：1 个" in kept.text
    with Session(world.engine) as session:
        assert session.get(Account, "A0001").keep_power is True
        logged = session.scalars(
            select(OperatorLogEntry).where(OperatorLogEntry.seq > before[2])
        ).all()
        assert [(e.action, e.target, e.after["keep_power"]) for e in logged] == [
            ("account.update", "account:A0001", True)
        ]
        assert session.get(NodeConfig, NODE).dirty is True
    assert _written(world)[0] == before[0]  # no command: the next configuration push carries it


@pytest.mark.parametrize("role", [Role.FINANCE, Role.AUDITOR, Role.INSTALLER])
def test_roles_without_operations_see_no_batch_control_and_are_refused(
    client: TestClient, world: World, role: Role
) -> None:
    log_in(client, STAFF_USERS[role])
    page = client.get("/console/monitoring")
    assert page.status_code == 200 and 'id="batch"' not in page.text
    before = _written(world)
    fields = {"csrf": csrf_of(page.text), "scope": "meters", "meter": [M1], **TRIP, "count": "1"}
    assert client.post("/console/batches/confirm", data=fields).status_code == 403
    refused = client.post("/console/batches", data=fields)
    assert refused.status_code == 403 and 'id="refused"' in refused.text
    assert _written(world) == before


def test_a_form_without_its_token_changes_nothing(client: TestClient, world: World) -> None:
    log_in(client, "op-1")
    before = _written(world)
    fields = {"scope": "meters", "meter": [M1], **TRIP, "count": "1"}
    for token in ({}, {"csrf": "forged"}):
        assert client.post("/console/batches", data={**fields, **token}).status_code == 403
    assert _written(world) == before


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"reason": ""}, "拉闸必须选择停电原因"),
        ({"reason": "arson"}, "拉闸必须选择停电原因"),
        ({"until": "tomorrow"}, "恢复供电时间"),
        ({"until": "2026-11-24T08:00"}, "必须晚于现在"),
        ({"until": "2027-02-01T08:00"}, "停电最长 31 天"),
        ({"note": "长" * 201}, "说明最多 200 个字"),
        ({"count": "7"}, "电表范围有变化（现在为 2 块）"),
        ({"meter": [M1, "999999999999"]}, "所选电表中有不存在的"),
        ({"meter": [M1, "<b>"]}, "所选电表中有不存在的"),
        ({"meter": []}, "请先在表格中勾选电表"),
        ({"action": "explode"}, "请选择一个操作"),
        ({"scope": "floor"}, "请先在左侧选择一个楼层"),
        ({"scope": "everything"}, "请选择对哪些电表操作"),
        ({"scope": "filter", "state": "bogus"}, "筛选条件有误"),
        ({"scope": "filter", "q": "nothing-matches"}, "没有符合条件的电表"),
    ],
)
def test_bad_input_is_told_in_words_and_changes_nothing(
    client: TestClient, world: World, change: dict[str, Any], says: str
) -> None:
    log_in(client, "op-1")
    before = _written(world)
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1, M9], **TRIP,
              "count": "2", **change}  # fmt: skip
    answer = client.post("/console/batches", data=fields)
    assert answer.status_code == 422 and says in answer.text, answer.text
    assert _written(world) == before


def test_each_meter_shows_the_concentrators_answer_and_the_failed_are_retried(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1, M2, M9], **TRIP}
    batch = _send(client, fields).headers["location"]
    by_node = {node: (cid, args) for node, args, _, cid in _relay_commands(world)}
    panel = f"{batch}/panel"

    def states() -> dict[str, str]:
        html = client.get(panel).text
        return dict(re.findall(r'data-outcome="(\w+)" data-state="(\w+)"', html))

    assert states() == {M1: "pending", M2: "pending", M9: "pending"}
    world.site.ingest.mark_delivered([by_node[NODE][0]])
    assert states()[M1] == "delivered"
    # edge-0001 applies its command and reads back M1 open; M2's relay does not answer.
    node_cmd = by_node[NODE][0]
    reason = f"operator trip (command {node_cmd[:8]})"
    when = ms(NOW + dt.timedelta(seconds=5))

    def outcome(number: int, kind: str, meter: str, **more: Any) -> dict[str, Any]:
        return {"id": number, "t": when, "c": "event", "k": kind, "m": meter,
                "d": {"command": "trip", "cause": "operator", "reason": reason, "attempts": 1,
                      **more}}  # fmt: skip

    result = {"command": node_cmd, "status": "applied", "seqs": [], "outcomes": []}
    ack = world.site.upload(NODE, results=[result], events=[
        outcome(901, "relay_confirmed", M1, message="relay trip confirmed"),
        outcome(902, "relay_failed", M2, message="relay trip failed: no answer"),
    ])  # fmt: skip
    assert ack.status is AckStatus.OK, ack
    # edge-0002 never got its command: it expires.
    with Session(world.engine) as session, session.begin():
        chain_commands.expire(session, NOW + dt.timedelta(days=4), node=OTHER)
    assert states() == {M1: "confirmed", M2: "failed", M9: "expired"}
    html = client.get(panel).text
    assert "hx-trigger" not in html  # settled: the panel stops asking
    assert "relay trip failed: no answer" in html
    assert re.search(r'id="count-confirmed">[^<]*<b>1</b>', html)
    assert re.search(r'id="count-failed">[^<]*<b>1</b>', html)
    assert re.search(r'id="count-expired">[^<]*<b>1</b>', html)
    known = {cid for *_, cid in _relay_commands(world)}
    again = client.post(f"{batch}/retry", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert again.status_code == 303
    new = [(n, a) for n, a, _, cid in _relay_commands(world) if cid not in known]
    assert new == [(NODE, {"meters": [M2], "action": "trip"}),
                   (OTHER, {"meters": [M9], "action": "trip"})]  # fmt: skip
    assert client.get("/console/batches/" + "0" * 32).status_code == 404
    assert client.get("/console/batches/not-a-batch").status_code == 404


def test_a_close_held_by_arrears_waits_and_a_relay_read_closed_confirms_it(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1], "action": "close"}
    panel = _send(client, fields).headers["location"] + "/panel"
    ((node, _, _, command),) = _relay_commands(world)
    held = {"id": 950, "t": ms(NOW), "c": "event", "k": "operator_relay", "m": M1,
            "d": {"command_id": command, "action": "close", "held_by": ["arrears"]}}  # fmt: skip
    result = {"command": command, "status": "applied", "seqs": [], "outcomes": []}
    assert world.site.upload(node, results=[result], events=[held]).status is AckStatus.OK
    html = client.get(panel).text
    assert f'data-outcome="{M1}" data-state="applied"' in html
    assert "继电器仍因以下原因保持断开：欠费" in html and "hx-trigger" in html
    # No order was sent, so no read-back event: the relay read closed after the command is.
    later = reading(M1, NOW + dt.timedelta(minutes=1), 121_800, relay=1)
    assert world.site.upload(node, readings=[later]).status is AckStatus.OK
    assert f'data-outcome="{M1}" data-state="confirmed"' in client.get(panel).text


def test_every_coded_word_of_a_batch_is_in_the_catalogue() -> None:
    """The pages name these through `term` (which falls back to the code): each has words."""
    codes = [
        *(f"action_{a}" for a in batches.ACTIONS),
        *(f"reason_{r.value}" for r in Reason),
        *(f"outcome_{s}" for s in (*batches.PENDING, "confirmed", "failed", "expired")),
        *(f"cause_{c.value}" for c in RelayCause),
    ]
    assert [code for code in codes if code not in catalogue.MESSAGES] == []
    assert {s.value for s in models.CommandStatus} <= {*batches.PENDING, "failed", "expired"}


def test_a_quarantined_concentrator_refuses_the_whole_batch_in_words(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    with Session(world.engine) as session, session.begin():
        node = session.get(models.Concentrator, OTHER)
        assert node is not None
        node.status, node.quarantine_reason = models.NodeStatus.QUARANTINED.value, "chain fork"
    before = _written(world)
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1, M9], **TRIP, "count": "2"}
    refused = client.post("/console/batches", data=fields)
    assert refused.status_code == 422 and "系统拒绝了这次操作，未发送任何指令" in refused.text
    assert _written(world) == before  # not M1's command either, nor the notice


def _keep_states(client: TestClient, address: str) -> dict[str, tuple[str, int]]:
    html = client.get(address).text
    found = re.findall(r'data-keep="(\w+)" data-state="(\w+)" data-version="(\d+)"', html)
    return {m: (s, int(v)) for m, s, v in found}


def _version(world: World, node: str) -> tuple[int, str | None]:
    with Session(world.engine) as session:
        found = session.get(NodeConfig, node)
        return (found.version, found.command_id) if found else (0, None)


def test_keep_power_shows_each_meter_until_its_concentrator_acknowledges_the_push(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    (node_before, _), (other_before, _) = _version(world, NODE), _version(world, OTHER)
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1, M9], "action": "keep_on"}
    kept = _send(client, fields)
    assert kept.status_code == 200 and 'id="keep-panel"' in kept.text
    found = re.search(r'hx-get="(/console/batches/keep-power/panel\?[^"]+)"', kept.text)
    assert found, kept.text
    panel = found[1].replace("&amp;", "&")
    commands = _written(world)[0]
    # every meter of the accounts changed (A0001's M1 and M2, A0101's M9), by its concentrator
    assert _keep_states(client, panel) == {M1: ("unpushed", 0), M2: ("unpushed", 0),
                                           M9: ("unpushed", 0)}  # fmt: skip
    assert "hx-trigger" in client.get(panel).text and 'id="keep-push"' in kept.text
    # the push: each waiting concentrator gets its next version, as the API sends it
    push = re.search(r'action="(/console/batches/keep-power/push\?[^"]+)"', kept.text)
    assert push
    pushed = client.post(push[1].replace("&amp;", "&"), data={"csrf": csrf_of(kept.text)},
                         follow_redirects=False)  # fmt: skip
    assert pushed.status_code == 303
    assert pushed.headers["location"].startswith("/console/batches/keep-power?")
    (node_version, node_command), (other_version, _) = (
        _version(world, NODE), _version(world, OTHER))  # fmt: skip
    assert (node_version, other_version) == (node_before + 1, other_before + 1)
    assert _written(world)[0] == commands + 2  # two CONFIG commands
    assert _keep_states(client, panel) == {M1: ("pushed", node_version),
                                           M2: ("pushed", node_version),
                                           M9: ("pushed", other_version)}  # fmt: skip
    page = client.get(pushed.headers["location"])
    assert page.status_code == 200 and f"已下发第 {node_version} 版给 {NODE}" in page.text
    # edge-0001 applies its version; edge-0002's expires undelivered
    world.site.ingest.mark_delivered([node_command])
    assert _keep_states(client, panel)[M1] == ("pushed", node_version)
    result = {"command": node_command, "status": "applied", "seqs": [], "outcomes": []}
    assert world.site.upload(NODE, results=[result]).status is AckStatus.OK
    with Session(world.engine) as session, session.begin():
        chain_commands.expire(session, NOW + dt.timedelta(days=4), node=OTHER)
    assert _keep_states(client, panel) == {M1: ("acknowledged", node_version),
                                           M2: ("acknowledged", node_version),
                                           M9: ("failed", other_version)}  # fmt: skip
    html = client.get(panel).text
    assert "hx-trigger" not in html and f"{NODE} 已确认第 {node_version} 版" in html
    # a role without field work sees it, and may not push
    client.cookies.clear()
    log_in(client, STAFF_USERS[Role.FINANCE])
    seen = client.get(pushed.headers["location"])
    assert seen.status_code == 200 and 'id="keep-panel"' in seen.text
    before = _written(world)
    refused = client.post(push[1].replace("&amp;", "&"), data={"csrf": csrf_of(seen.text)})
    assert refused.status_code == 403 and _written(world) == before
    for bad in ("accounts=A%201", "accounts=", "accounts=A0001&after=edge-0001:x"):
        answer = client.get(f"/console/batches/keep-power?{bad}")
        assert answer.status_code in {404, 422} and "text/html" in answer.headers["content-type"]


def test_the_end_of_a_cut_is_said_in_the_sites_time_beside_the_browsers_picker(
    client: TestClient,
) -> None:
    log_in(client, "op-1")
    fields = {"csrf": _csrf(client), "scope": "meters", "meter": [M1], "action": "trip"}
    shown = client.post("/console/batches/confirm", data=fields).text
    until = re.search(r'id="batch-until" value="([^"]+)"', shown)
    assert until, shown
    hint = re.search(r'id="batch-until-hint">([^<]+)<', shown)
    assert hint and hint[1] == f"北京时间，24 小时制，即 {until[1].replace('T', ' ')}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:00", until[1])
    typed = client.post("/console/batches/confirm", data={**fields, "until": "2026-11-25T07:30"})
    assert "即 2026-11-25 07:30" in typed.text

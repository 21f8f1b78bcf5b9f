"""Alarms where operators look: the concentrators' alarms, uploaded as events through the real
ingest, listed with the cloud's own under `/alarms`, filtered by site, building, floor, shop,
kind and severity, counted for the pop-up, acknowledged once with a note (in the operator log),
and the read success of every bus from the edge's `read_round` events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.models import Alarm, ReportedAccount
from cloud.ingest import concentrators
from cloud.operations import alarms
from cloud.people.auth import Role
from tests.cloud.api.conftest import M1, M3, NODE, OTHER, Site, bearer
from tests.cloud.fake_edge import T0, ms
from tests.cloud.registry_world import make_registry


def event(
    event_id: int, kind: str, minutes_ago: float, *, category: str = "alarm", **fields: Any
) -> dict[str, Any]:
    """An event as the edge uploads it (`edge.store.records.event_payload`)."""
    detail = fields.pop("d", {})
    return {"id": event_id, "t": ms(T0 - dt.timedelta(minutes=minutes_ago)), "c": category,
            "k": kind, **fields, "d": detail}  # fmt: skip


def rate(bus: str, attempted: int, read: int, **more: Any) -> dict[str, Any]:
    return {"bus": bus, "attempted": attempted, "read": read, "failed": attempted - read, **more}


def round_event(event_id: int, minutes_ago: float, *buses: dict[str, Any]) -> dict[str, Any]:
    attempted = sum(b["attempted"] for b in buses)
    read = sum(b["read"] for b in buses)
    return event(event_id, "read_round", minutes_ago, category="event",
                 d={"message": f"{read} of {attempted} meters read", "attempted": attempted,
                    "read": read, "buses": list(buses)})  # fmt: skip


NODE_EVENTS = [
    event(2, "low_balance", 50, shop="S101", a="A0001",
          d={"severity": "warning", "message": "A0001: 12.00 yuan left"}),
    event(3, "arrears_trip", 40, m=M3, shop="S102", a="A0002",
          d={"severity": "critical", "message": "A0002 in arrears: tripped"}),
    event(4, "relay_failed", 30, m=M1, shop="S101", a="A0001",
          d={"severity": "critical", "message": "relay did not open", "attempts": 3}),
    event(5, "malicious_load", 20, m=M1, shop="S101", a="A0001",
          d={"severity": "critical", "message": "2 kW resistive load"}),
    event(6, "read_success_low", 15,
          d={"severity": "warning", "message": "bus rs485-2: 0 of 1 meters read",
             "bus": "rs485-2", "attempted": 1, "read": 0, "minimum": 0.9}),
    round_event(7, 30, rate("rs485-1", 2, 2), rate("rs485-2", 1, 1)),
    round_event(8, 15, rate("rs485-1", 2, 1), rate("rs485-2", 1, 0, down=True)),
    round_event(9, 60 * 30, rate("rs485-1", 2, 0)),  # 30 hours ago
    event(10, "read_round", 10, category="event", d={"buses": "not a list"}),
    event(11, "recharge_booked", 5, category="event", a="A0001", d={"message": "booked"}),
]  # fmt: skip
OTHER_EVENTS = [
    event(1, "low_balance", 45, shop="S201", a="A0101",
          d={"severity": "warning", "message": "A0101: 3.00 yuan left"}),
    round_event(2, 15, rate("lora-1", 4, 3)),
]  # fmt: skip
EDGE_ALARMS = 6


def upload_events(site: Site, node: str, events: list[dict[str, Any]]) -> bytes:
    first = site.outbox.get(node, 0) + 1
    site.outbox[node] = upto = first + len(events) - 1
    payload = site.edges[node].payload(first, upto, [], events=events)
    site.send(node, payload)
    return payload


@pytest.fixture
def alarmed(site: Site) -> Site:
    """The site fixture, its registry (both nodes serve site Market), the events above, and a
    cloud alarm (a refused batch) for each node and for an unknown one."""
    with session_factory(site.engine).begin() as session:
        make_registry(session, register=False)
    upload_events(site, NODE, NODE_EVENTS)
    upload_events(site, OTHER, OTHER_EVENTS)
    site.send(NODE, b"not a batch")
    site.send("edge-7777", b"VB\x01garbage")
    return site


def listed(client: TestClient, **params: Any) -> list[tuple[Any, ...]]:
    answer = client.get("/alarms", params=params)
    assert answer.status_code == 200, answer.text
    return [(a["node"], a["kind"]) for a in answer.json()["items"]]


def test_the_concentrators_alarms_reach_the_api_once(client: TestClient, site: Site) -> None:
    payload = upload_events(site, NODE, NODE_EVENTS)
    site.send(NODE, payload)  # the same batch again (its ack was lost): nothing twice
    items = client.get("/alarms").json()["items"]
    assert [(a["source"], a["event_id"], a["kind"]) for a in items] == [
        ("edge", 2, "low_balance"), ("edge", 3, "arrears_trip"), ("edge", 4, "relay_failed"),
        ("edge", 5, "malicious_load"), ("edge", 6, "read_success_low"),
    ]  # fmt: skip
    relay = items[2]
    assert (relay["meter"], relay["shop"], relay["account"], relay["severity"]) == (
        M1, "S101", "A0001", "critical",
    )  # fmt: skip
    assert relay["detail"] == "relay did not open" and relay["facts"]["attempts"] == 3
    assert relay["time"] == "2026-11-24T07:30:00Z"
    assert (relay["acknowledged"], relay["acknowledged_by"], relay["note"]) == (None, None, "")


def test_filters_by_place_kind_and_severity(client: TestClient, alarmed: Site) -> None:
    everything = listed(client)
    assert len(everything) == EDGE_ALARMS + 2
    assert ("edge-7777", "refused_batch") in everything
    in_market = listed(client, site="Market")
    assert len(in_market) == EDGE_ALARMS + 1 and ("edge-7777", "refused_batch") not in in_market
    assert listed(client, site="Empty") == listed(client, site="Nowhere") == []
    b1 = [(NODE, "low_balance"), (NODE, "arrears_trip"), (NODE, "relay_failed"),
          (NODE, "malicious_load"),
          (NODE, "read_success_low"), (NODE, "refused_batch")]  # fmt: skip
    assert listed(client, site="Market", building="B1") == b1
    assert listed(client, building="B1", floor="1F") == b1
    assert listed(client, floor="2F") == [(OTHER, "low_balance")]
    assert listed(client, building="B1", floor="2F") == []
    assert listed(client, shop="S102") == [(NODE, "arrears_trip")]
    assert listed(client, kind="low_balance") == [(NODE, "low_balance"), (OTHER, "low_balance")]
    assert listed(client, kind="read_success_low") == [(NODE, "read_success_low")]
    assert listed(client, severity="critical", account="A0001") == [
        (NODE, "relay_failed"), (NODE, "malicious_load"),
    ]  # fmt: skip
    assert listed(client, node=OTHER, severity="warning") == [(OTHER, "low_balance")]
    assert listed(client, sort="-time")[:3] == [
        ("edge-7777", "refused_batch"), (NODE, "refused_batch"), (NODE, "read_success_low"),
    ]  # fmt: skip
    for bad in ({"sort": "id"}, {"severity": "loud"}, {"acknowledged": "perhaps"}, {"site": ""},
                {"limit": 0}):  # fmt: skip
        assert client.get("/alarms", params=bad).status_code == 422, bad


def ids(client: TestClient, **params: Any) -> set[int]:
    answer = client.get("/alarms", params=params)
    assert answer.status_code == 200, answer.text
    return {a["id"] for a in answer.json()["items"]}


def move(site: Site, account: str, **place: str) -> None:
    """The concentrator now reports `account` at another building or floor."""
    with session_factory(site.engine).begin() as session:
        session.execute(update(ReportedAccount).where(ReportedAccount.account == account)
                        .values(**place))  # fmt: skip


def assert_filters_agree_with_the_console(client: TestClient, site: Site) -> None:
    """Every building and floor filter finds exactly the alarms the console groups there."""
    with session_factory(site.engine)() as session:
        rows = list(session.scalars(select(Alarm)))
        places = alarms.places(session, rows)
    for building in ("B1", "B2", "B9"):
        expected = {i for i, place in places.items() if place[0] == building}
        assert ids(client, building=building) == expected, building
        counted = client.get("/alarms/counts", params={"building": building}).json()
        assert counted["total"] == len(expected), building
        for floor in ("1F", "2F", "3F"):
            expected = {i for i, place in places.items() if place[1] == floor}
            assert ids(client, floor=floor) == expected, floor
            both = {i for i in expected if places[i][0] == building}
            assert ids(client, building=building, floor=floor) == both, (building, floor)


def test_a_node_level_alarm_is_found_where_its_node_is(client: TestClient, alarmed: Site) -> None:
    """A bus's or the node's own alarm (no account, no shop) is on the floor of all the node's
    accounts, in their building when they are on several floors, nowhere when in several
    buildings: as the console groups it (`alarms.places`)."""
    about_node = [(NODE, "read_success_low"), (NODE, "refused_batch")]
    assert listed(client, floor="1F")[-2:] == about_node  # A0001 and A0002 are on B1 1F
    assert not set(about_node) & set(listed(client, floor="2F"))
    assert_filters_agree_with_the_console(client, alarmed)
    move(alarmed, "A0002", floor="3F")  # NODE now serves two floors of B1
    assert listed(client, floor="1F") == [
        (NODE, "low_balance"), (NODE, "relay_failed"), (NODE, "malicious_load"),
    ]  # fmt: skip
    assert listed(client, floor="3F") == [(NODE, "arrears_trip")]
    assert listed(client, building="B1")[-2:] == about_node
    assert_filters_agree_with_the_console(client, alarmed)
    move(alarmed, "A0002", building="B2")  # and two buildings: nowhere
    assert not set(about_node) & set(listed(client, building="B1") + listed(client, building="B2"))
    assert listed(client, building="B2", floor="3F") == [(NODE, "arrears_trip")]
    assert_filters_agree_with_the_console(client, alarmed)
    counted = client.get("/alarms/counts", params={"building": "B1", "kind": "refused_batch"})
    assert counted.json()["total"] == 0


def test_counts_for_the_pop_up(client: TestClient, alarmed: Site) -> None:
    counts = client.get("/alarms/counts", params={"acknowledged": False}).json()
    assert counts["total"] == EDGE_ALARMS + 2
    assert [(g["severity"], g["kind"], g["count"]) for g in counts["groups"]] == [
        ("critical", "arrears_trip", 1), ("critical", "malicious_load", 1),
        ("critical", "relay_failed", 1), ("warning", "low_balance", 2),
        ("warning", "read_success_low", 1), ("warning", "refused_batch", 2),
    ]  # fmt: skip
    floor = client.get("/alarms/counts", params={"floor": "2F"}).json()
    assert floor == {"total": 1, "groups": [{"severity": "warning", "kind": "low_balance",
                                             "count": 1}]}  # fmt: skip


def test_acknowledged_once_with_a_note_and_logged(
    client: TestClient, alarmed: Site, tokens: dict[Role, str]
) -> None:
    (relay,) = client.get("/alarms", params={"kind": "relay_failed"}).json()["items"]
    path = f"/alarms/{relay['id']}/acknowledge"

    def rows() -> list[tuple[Any, ...]]:
        with session_factory(alarmed.engine)() as session:
            return [(a.id, a.acknowledged, a.acknowledged_by, a.note)
                    for a in session.scalars(select(Alarm).order_by(Alarm.id))]  # fmt: skip

    before = rows()
    for body in ({"note": ""}, {}, {"note": 5}, {"note": "x" * 501},
                 {"note": "ok", "by": "me"}):  # fmt: skip
        assert client.post(path, json=body).status_code == 422, body
    assert client.post("/alarms/999999/acknowledge", json={"note": "x"}).status_code == 404
    auditor = bearer(tokens[Role.AUDITOR])
    assert client.post(path, json={"note": "x"}, headers=auditor).status_code == 403
    assert rows() == before
    installer = bearer(tokens[Role.INSTALLER])
    done = client.post(path, json={"note": "contactor replaced"}, headers=installer)
    assert done.status_code == 200, done.text
    assert (done.json()["acknowledged_by"], done.json()["note"]) == (
        "installer-1", "contactor replaced",
    )  # fmt: skip
    assert done.json()["acknowledged"] == "2026-11-24T08:00:00Z"
    again = client.post(path, json={"note": "me too"})
    assert again.status_code == 409 and "installer-1" in again.json()["detail"]
    open_kinds = [kind for _, kind in listed(client, acknowledged=False)]
    assert "relay_failed" not in open_kinds and len(open_kinds) == EDGE_ALARMS + 1
    assert listed(client, acknowledged=True) == [(NODE, "relay_failed")]
    with session_factory(alarmed.engine)() as session:
        (entry,) = session.scalars(
            select(OperatorLogEntry).where(OperatorLogEntry.action == "alarm.acknowledge")
        ).all()
    assert (entry.user, entry.target, entry.after) == (
        "installer-1", f"alarm:{relay['id']}",
        {"node": NODE, "kind": "relay_failed", "note": "contactor replaced"},
    )  # fmt: skip
    assert client.get("/operator-log/verify").json()["ok"] is True


def test_read_success_per_node_and_bus(client: TestClient, alarmed: Site) -> None:
    buses = client.get("/alarms/read-success").json()
    shown = [(b["node"], b["bus"], b["rounds"], b["attempted"], b["read"], b["rate"],
              b["last_read"], b["last_attempted"], b["down"]) for b in buses]  # fmt: skip
    assert shown == [
        (NODE, "rs485-1", 2, 4, 3, 0.75, 1, 2, False),
        (NODE, "rs485-2", 2, 2, 1, 0.5, 0, 1, True),
        (OTHER, "lora-1", 1, 4, 3, 0.75, 3, 4, False),
    ]  # the round 30 hours ago is outside the day; the malformed one is skipped
    assert buses[0]["last_time"] == "2026-11-24T07:45:00Z"
    two_days = client.get("/alarms/read-success", params={"hours": 48, "node": NODE}).json()
    assert [(b["bus"], b["rounds"], b["read"]) for b in two_days] == [
        ("rs485-1", 3, 3), ("rs485-2", 2, 1),
    ]  # fmt: skip
    assert client.get("/alarms/read-success", params={"site": "Empty"}).json() == []
    assert len(client.get("/alarms/read-success", params={"site": "Market"}).json()) == 3
    for hours in (0, 24 * 7 + 1):  # a week at most: a round a cycle is many rows
        assert client.get("/alarms/read-success", params={"hours": hours}).status_code == 422


def test_clearing_a_quarantine_leaves_the_concentrators_alarms_open(
    client: TestClient, alarmed: Site
) -> None:
    with session_factory(alarmed.engine).begin() as session:
        row = concentrators.lock(session, NODE)
        row.status, row.quarantine_reason = "quarantined", "test"
        concentrators.clear_quarantine(session, NODE, "admin-1", T0)
    cleared = client.get("/alarms", params={"node": NODE, "cleared": True}).json()["items"]
    assert [(a["kind"], a["severity"], a["cleared_at"]) for a in cleared] == [
        ("refused_batch", "warning", "2026-11-24T08:00:00Z"),
        ("quarantine_cleared", "info", "2026-11-24T08:00:00Z"),
    ]  # fmt: skip
    assert len(listed(client, node=NODE, cleared=False)) == 5  # the edge's, still open


def down(event_id: int, minutes_ago: float, bus: str) -> dict[str, Any]:
    return event(event_id, "bus_down", minutes_ago,
                 d={"severity": "critical", "message": f"bus {bus} is down", "bus": bus,
                    "reason": "port missing"})  # fmt: skip


def up(event_id: int, minutes_ago: float, bus: str) -> dict[str, Any]:
    return event(event_id, "bus_up_again", minutes_ago, category="event",
                 d={"message": f"bus {bus} is up again", "bus": bus})  # fmt: skip


def shown(client: TestClient, **params: Any) -> list[tuple[Any, ...]]:
    answer = client.get("/alarms", params={"kind": "bus_down"} | params)
    assert answer.status_code == 200, answer.text
    return [(a["node"], a["event_id"], a["facts"]["bus"], a["cleared"], a["cleared_at"])
            for a in answer.json()["items"]]  # fmt: skip


def test_a_bus_down_is_cleared_by_its_bus_up_again_only(client: TestClient, site: Site) -> None:
    upload_events(site, NODE, [down(20, 50, "rs485-1"), down(21, 50, "rs485-2")])
    upload_events(site, OTHER, [down(10, 50, "rs485-1")])
    upload_events(site, NODE, [up(22, 40, "rs485-1"), up(23, 40, "lora-9"),
                               event(24, "bus_up_again", 40, category="event",
                                     d={"bus": ["rs485-2"]})])  # fmt: skip
    assert shown(client) == [
        (NODE, 20, "rs485-1", True, "2026-11-24T07:20:00Z"),
        (NODE, 21, "rs485-2", False, None),  # another bus; a bus that is not text clears none
        (OTHER, 10, "rs485-1", False, None),  # the same bus of another concentrator
    ]
    assert shown(client, cleared=False) == shown(client)[1:]


def test_each_end_clears_its_own_alarm_in_the_same_batch(client: TestClient, site: Site) -> None:
    def alarm(event_id: int, kind: str, **fields: Any) -> dict[str, Any]:
        detail = fields.pop("d", {})
        return event(event_id, kind, 30, d={"severity": "warning", **detail}, **fields)

    def over(event_id: int, kind: str, **fields: Any) -> dict[str, Any]:
        return event(event_id, kind, 20, category=fields.pop("category", "event"), **fields)

    upload_events(site, NODE, [
        alarm(20, "bus_down", d={"bus": "rs485-1"}), alarm(21, "bus_down", d={"bus": "rs485-2"}),
        alarm(22, "read_success_low", d={"bus": "rs485-1"}),
        alarm(23, "read_success_low", d={"bus": "rs485-2"}),
        alarm(24, "meter_unreadable", m=M1), alarm(25, "meter_unreadable", m=M3),
        alarm(26, "relay_failed", m=M1), alarm(27, "relay_failed", m=M3),
        alarm(28, "clock_implausible"),
        alarm(29, "arrears_trip", a="A0001"), alarm(30, "arrears_trip", a="A0002"),
        over(31, "bus_up_again", d={"bus": "rs485-1"}),
        over(32, "read_success_ok_again", d={"bus": "rs485-2"}),
        over(33, "meter_readable_again", m=M1), over(34, "relay_confirmed", m=M3),
        over(35, "clock_plausible_again"),
        over(36, "arrears_close", a="A0002", category="alarm", d={"severity": "info"}),
        over(37, "relay_still_failing", m=M1),  # not an end
        alarm(38, "bus_down", d={"bus": "rs485-1"}),  # down again, after its end: open
    ])  # fmt: skip
    items = client.get("/alarms", params={"node": NODE}).json()["items"]
    cleared = {a["event_id"]: a["cleared_at"] for a in items if a["cleared"]}
    assert cleared == dict.fromkeys((20, 23, 24, 27, 28, 30), "2026-11-24T07:40:00Z")
    assert sorted(a["event_id"] for a in items if not a["cleared"]) == [21, 22, 25, 26, 29, 36, 38]


def test_a_batch_sent_again_clears_nothing_twice(client: TestClient, site: Site) -> None:
    first = upload_events(site, NODE, [down(20, 50, "rs485-1"), up(21, 40, "rs485-1")])
    upload_events(site, NODE, [down(22, 30, "rs485-1")])
    before = shown(client)
    assert before == [(NODE, 20, "rs485-1", True, "2026-11-24T07:20:00Z"),
                      (NODE, 22, "rs485-1", False, None)]  # fmt: skip
    site.send(NODE, first)  # its ack was lost: the older batch arrives again
    assert shown(client) == before
    upload_events(site, NODE, [up(23, 20, "rs485-1"), up(24, 10, "rs485-1")])
    assert shown(client)[1] == (NODE, 22, "rs485-1", True, "2026-11-24T07:40:00Z")


def test_time_filters(client: TestClient, alarmed: Site) -> None:
    kinds = ["low_balance", "arrears_trip", "relay_failed", "malicious_load", "read_success_low"]
    assert [k for _, k in listed(client, node=NODE, since="2026-11-24T07:20:00Z")] == [
        "arrears_trip", "relay_failed", "malicious_load", "read_success_low", "refused_batch",
    ]  # fmt: skip
    # the same instants in another zone; `until` excludes its own instant
    window = {"since": "2026-11-24T15:20:00+08:00", "until": "2026-11-24T15:40:00+08:00"}
    assert [k for _, k in listed(client, node=NODE, **window)] == kinds[1:3]
    assert [k for _, k in listed(client, node=NODE, until="2026-11-24T07:40:00Z")] == kinds[:3]
    assert listed(client, since="2026-11-24T08:00:01Z") == []
    counts = client.get("/alarms/counts", params={"until": "2026-11-24T07:20:00Z"}).json()
    assert counts["total"] == 2  # the two low balances
    for bad in ({"since": "yesterday"}, {"since": "2026-11-24T07:20:00"},
                {"until": "1000-01-01T00:00:00Z"}, {"from": "2026-11-24T07:20:00Z"}):  # fmt: skip
        assert client.get("/alarms", params=bad).status_code == 422, bad

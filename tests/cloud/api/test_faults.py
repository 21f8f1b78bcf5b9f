"""Fault tickets (`/faults`): opened by hand or from an alarm, moved by the table of
`faults.TRANSITIONS` (every move allowed and refused), each change a history step and a row of
the operator log; who may is in the authorization matrix."""

from __future__ import annotations

import itertools

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.faults import Fault, FaultStep
from cloud.db.models import Alarm
from cloud.operations.faults import STATUSES, TRANSITIONS
from cloud.people.auth import Role
from tests.cloud.api.conftest import M1, NODE, Site, bearer
from tests.cloud.fake_edge import T0


def an_alarm(engine: Engine, kind: str = "relay_failed") -> int:
    with session_factory(engine)() as session:
        alarm = Alarm(node=NODE, event_id=None, kind=kind, severity="critical", meter=M1,
                      shop="S101", account="A0001", detail="relay did not open", facts={},
                      time=T0, cleared=False)  # fmt: skip
        session.add(alarm)
        session.commit()
        return alarm.id


def counts(engine: Engine) -> tuple[int, int, int]:
    with session_factory(engine)() as session:
        return (session.scalar(select(func.count()).select_from(Fault)) or 0,
                session.scalar(select(func.count()).select_from(FaultStep)) or 0,
                session.scalar(select(func.count()).select_from(OperatorLogEntry)
                               .where(OperatorLogEntry.action.like("fault.%"))) or 0)  # fmt: skip


def test_open_by_hand_validated_and_logged(client: TestClient, site: Site) -> None:
    for body in ({}, {"kind": "meter_offline"}, {"kind": "bogus", "meter": M1},
                 {"kind": "meter_offline", "meter": "not a meter"},
                 {"kind": "meter_offline", "meter": M1, "note": "x" * 501},
                 {"kind": "meter_offline", "meter": M1, "extra": 1},
                 {"kind": "meter_offline", "meter": M1, "alarm": 1}):  # fmt: skip
        assert client.post("/faults", json=body).status_code in {404, 422}, body
    assert counts(site.engine) == (0, 0, 0)
    made = client.post("/faults", json={"kind": "meter_offline", "meter": M1, "node": NODE,
                                        "note": "no answer on rs485-1"})  # fmt: skip
    assert made.status_code == 201, made.text
    fault = made.json()
    assert (fault["status"], fault["opened_by"], fault["meter"]) == ("open", "admin-1", M1)
    assert fault["next"] == ["closed", "in_progress"]
    assert [(s["before"], s["after"]) for s in fault["history"]] == [(None, "open")]
    assert counts(site.engine) == (1, 1, 1)
    listed = client.get("/faults", params={"active": True}).json()
    assert [f["id"] for f in listed["items"]] == [fault["id"]]
    assert client.get("/faults", params={"status": "closed"}).json()["total"] == 0


def test_every_move_of_the_table(client: TestClient, site: Site) -> None:
    """From each status, each target: allowed exactly when `TRANSITIONS` says so; a refused
    move is 409 and changes nothing."""
    path = {  # a way to reach each status from open
        "open": [], "in_progress": ["in_progress"], "fixed": ["in_progress", "fixed"],
        "closed": ["closed"],
    }  # fmt: skip
    for start, target in itertools.product(STATUSES, STATUSES):
        fault = client.post("/faults", json={"kind": "other", "site": "Plaza"}).json()["id"]
        for step in path[start]:
            assert client.post(f"/faults/{fault}/status", json={"to": step}).status_code == 200
        before = counts(site.engine)
        moved = client.post(f"/faults/{fault}/status", json={"to": target, "note": "on site"})
        if target in TRANSITIONS[start]:
            assert moved.status_code == 200, (start, target, moved.text)
            assert moved.json()["status"] == target
            assert moved.json()["history"][-1] == {**moved.json()["history"][-1],
                                                   "before": start, "after": target,
                                                   "note": "on site", "by": "admin-1"}  # fmt: skip
            assert counts(site.engine)[1:] == (before[1] + 1, before[2] + 1)
        else:
            assert moved.status_code == 409, (start, target)
            assert counts(site.engine) == before
            assert client.get(f"/faults/{fault}").json()["status"] == start
    assert client.post("/faults/999999/status", json={"to": "closed"}).status_code == 404
    assert client.post("/faults/1/status", json={"to": "gone"}).status_code == 422


def test_open_from_an_alarm_once(client: TestClient, site: Site, tokens: dict[Role, str]) -> None:
    alarm = an_alarm(site.engine)
    assert client.post("/faults", json={"alarm": 999999}).status_code == 404
    installer = bearer(tokens[Role.INSTALLER])
    made = client.post("/faults", json={"alarm": alarm}, headers=installer)
    assert made.status_code == 201, made.text
    fault = made.json()
    assert (fault["kind"], fault["node"], fault["meter"], fault["alarm_id"], fault["note"]) == (
        "relay_fault",
        NODE,
        M1,
        alarm,
        "relay did not open",
    )
    assert client.post("/faults", json={"alarm": alarm}).status_code == 409
    auditor = bearer(tokens[Role.AUDITOR])
    assert client.post(f"/faults/{fault['id']}/status", json={"to": "closed"},
                       headers=auditor).status_code == 403  # fmt: skip
    assert client.post(f"/faults/{fault['id']}/status", json={"to": "closed"},
                       headers=installer).status_code == 200  # fmt: skip
    again = client.post("/faults", json={"alarm": alarm, "note": "back again"})
    assert again.status_code == 201 and again.json()["note"] == "back again"


def test_assigned_to_an_active_technician_listed_and_logged(
    client: TestClient, site: Site, tokens: dict[Role, str]
) -> None:
    fault = client.post("/faults", json={"kind": "bus_down", "node": NODE}).json()
    url = f"/faults/{fault['id']}/assignee"
    for who in ("nobody-such", "finance-1", "auditor-1", "merchant-1", "", 7):
        assert client.post(url, json={"user": who}).status_code == 422, who
    assert client.post("/faults/999999/assignee", json={"user": "installer-1"}).status_code == 404
    assert counts(site.engine) == (1, 1, 1)
    done = client.post(url, json={"user": "installer-1"})
    assert done.status_code == 200, done.text
    assert done.json()["assignee"] == "installer-1"
    assert client.post(url, json={"user": "installer-1"}).status_code == 200  # the same: no log
    mine = client.get("/faults", params={"assignee": "installer-1"}).json()["items"]
    assert [f["id"] for f in mine] == [fault["id"]]
    assert client.get("/faults", params={"assignee": "operator-1"}).json()["total"] == 0
    assert client.post(url, json={"user": "operator-1"}).json()["assignee"] == "operator-1"
    assert client.post(url, json={"user": None}).json()["assignee"] is None
    refused = client.post(url, json={"user": "installer-1"},
                          headers=bearer(tokens[Role.INSTALLER]))  # fmt: skip
    assert refused.status_code == 403
    with session_factory(site.engine)() as session:
        assigned = OperatorLogEntry.action == "fault.assign"
        rows = session.scalars(
            select(OperatorLogEntry).where(assigned).order_by(OperatorLogEntry.seq)
        ).all()
        assert [(r.before, r.after) for r in rows] == [
            ({"assignee": None}, {"assignee": "installer-1"}),
            ({"assignee": "installer-1"}, {"assignee": "operator-1"}),
            ({"assignee": "operator-1"}, {"assignee": None}),
        ]
    client.post(f"/faults/{fault['id']}/status", json={"to": "closed"})
    assert client.post(url, json={"user": "installer-1"}).status_code == 409


def test_open_with_an_idempotency_key_opens_once(client: TestClient, site: Site) -> None:
    """A client resending an opening (a lost answer) gets the first's ticket (200), not a second;
    the same key for another ticket is refused (409), a malformed one too (422), nothing kept."""
    body = {"kind": "bus_down", "node": NODE, "note": "bus A silent"}
    key = {"Idempotency-Key": "0b7e3c1a-5d2f-4e8b-9a61-3f0c2d4e5a6b"}
    made = client.post("/faults", json=body, headers=key)
    assert made.status_code == 201, made.text
    again = client.post("/faults", json=body, headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == made.json()
    for other in (
        {**body, "note": "bus B"},
        {**body, "kind": "other"},
        {"alarm": an_alarm(site.engine)},
    ):
        assert client.post("/faults", json=other, headers=key).status_code == 409, other
    assert (
        client.post("/faults", json=body, headers={"Idempotency-Key": "short"}).status_code == 422
    )
    assert counts(site.engine) == (1, 1, 1)
    with session_factory(site.engine)() as session:
        logged = session.scalars(select(OperatorLogEntry.after).where(
            OperatorLogEntry.action == "fault.open")).one()  # fmt: skip
    assert logged == {"status": "open", "kind": "bus_down", "note": "bus A silent",
                      "key": key["Idempotency-Key"]}  # fmt: skip

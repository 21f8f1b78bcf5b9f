"""`/notices` through the real app: power-off notices issued by the operations desk (checked,
one per merchant, idempotent, logged), read back with their delivery state, and a merchant
sees only its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.db.auth import OperatorLogEntry
from cloud.db.notices import Notice
from cloud.notices.service import NoticeService
from cloud.notices.sms_standin import SmsStandin
from cloud.notices.wechat_oa_standin import OaStandin
from cloud.people.auth import Role
from ledger.chain import NodeKey
from tests.cloud.api.conftest import add_user, bearer
from tests.cloud.conftest import Clock
from tests.cloud.notices.conftest import MORNING, TEMPLATES, World
from tests.cloud.notices.test_service import recharge

BODY = {"reason": "maintenance", "note": "变压器检修", "shops": ["S1", "S2", "S4", "S9"],
        "from": "2026-12-08T09:00:00+08:00", "to": "2026-12-08T13:00:00Z"}  # fmt: skip


@pytest.fixture
def users(engine: Engine) -> dict[str, str]:
    return {
        **{role.value: add_user(engine, f"{role.value}-1", role)
           for role in Role if role is not Role.MERCHANT},
        "wang": add_user(engine, "wang", Role.MERCHANT, "A1"),
        "zhao": add_user(engine, "zhao", Role.MERCHANT, "A2"),
        "wang4": add_user(engine, "wang4", Role.MERCHANT, "A4"),  # Wang's other account
    }  # fmt: skip


@pytest.fixture
def client(
    world: World, engine: Engine, cloud_key: NodeKey, clock: Clock, users: dict[str, str]
) -> Iterator[TestClient]:
    with TestClient(create_app(engine, cloud_key, clock)) as test_client:
        test_client.headers.update(bearer(users["operator"]))
        yield test_client


def count_notices(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Notice)) or 0


def test_a_power_off_makes_one_notice_per_merchant_once(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    answer = client.post("/notices/power-off", json=BODY)
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    assert issued["without_merchant"] == ["S9"]
    by_account = {n["account"]: n for n in issued["notices"]}
    assert sorted(by_account) == ["A1", "A2"]
    wang = by_account["A1"]
    assert (wang["kind"], wang["state"], wang["operator"]) == ("power_off", "pending", "operator-1")
    assert wang["facts"]["shops"] == ["S1", "S4"] and wang["facts"]["accounts"] == ["A1", "A4"]
    assert wang["facts"]["from"] == "2026-12-08T09:00+08:00"
    assert wang["facts"]["to"] == "2026-12-08T21:00+08:00"  # in the site's zone
    again = client.post("/notices/power-off", json=BODY)
    assert again.status_code == 200
    assert again.json()["order"] == issued["order"]
    assert [n["id"] for n in again.json()["notices"]] == [n["id"] for n in issued["notices"]]
    assert count_notices(sessions) == 2
    with sessions() as session:
        logged = session.scalars(
            select(OperatorLogEntry).where(OperatorLogEntry.action == "notice.power_off")
        ).all()
    assert [(row.user, row.target) for row in logged] == [
        ("operator-1", f"power-off:{issued['order']}")
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"shops": ["S1", "S404"]}, "unknown shop(s): S404"),
        ({"shops": []}, "body.shops"),
        ({"shops": ["S1", "S1"]}, "named twice"),
        ({"to": "2026-12-08T08:00:00+08:00"}, "after `from`"),
        ({"from": "2026-12-01T09:00:00+08:00", "to": "2026-12-01T10:00:00+08:00"}, "over"),
        ({"to": "2027-03-01T10:00:00+08:00"}, "at most 31 days"),
        ({"reason": "party"}, "body.reason"),
        ({"from": "2026-12-08T09:00:00"}, "body.from"),  # no offset
        ({"note": "x" * 201}, "body.note"),
        ({"site": 999}, "unknown shop(s)"),
        ({"extra": 1}, "body.extra"),
    ],
)
def test_a_power_off_that_cannot_be_meant_is_refused(
    client: TestClient, sessions: sessionmaker[Session], change: dict[str, Any], problem: str
) -> None:
    answer = client.post("/notices/power-off", json={**BODY, **change})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid" and problem in answer.json()["detail"]
    assert count_notices(sessions) == 0


@pytest.mark.parametrize("role", ["finance", "auditor", "installer", "wang"])
def test_only_the_operations_desk_issues_power_offs(
    client: TestClient, sessions: sessionmaker[Session], users: dict[str, str], role: str
) -> None:
    answer = client.post("/notices/power-off", json=BODY, headers=bearer(users[role]))
    assert answer.status_code == 403
    assert (
        client.post("/notices/power-off", json=BODY, headers={"Authorization": ""}).status_code
        == 401
    )
    assert count_notices(sessions) == 0
    assert (
        client.post("/notices/power-off", json=BODY, headers=bearer(users["admin"])).status_code
        == 201
    )


def test_notices_are_listed_with_their_deliveries_and_merchants_see_their_own(  # noqa: PLR0917
    client: TestClient, users: dict[str, str], service: NoticeService, oa: OaStandin,
    sms: SmsStandin, sessions: sessionmaker[Session],
) -> None:  # fmt: skip
    issued = client.post("/notices/power-off", json=BODY).json()
    zhao_notice = next(n["id"] for n in issued["notices"] if n["account"] == "A2")
    with sessions.begin() as session:
        recharge(session, "PAY-4", "A4", 700, MORNING)
    service.run_once()
    recharged = client.get("/notices", params={"kind": "recharge_credited"}).json()["items"]
    assert [(n["account"], n["state"]) for n in recharged] == [("A4", "sent")]
    (power,) = [m for m in oa.messages if m.template_id == TEMPLATES["power_off"]]
    assert power.touser == "oWang" and power.data["thing1"]["value"] == "商铺S1、S4"
    assert (
        len(sms.messages) == 1
        and "S2因检修将于2026-12-08 09:00至2026-12-08 21:00停电" in sms.messages[0][1]
    )

    listed = client.get("/notices", params={"kind": "power_off", "state": "sent"}).json()
    assert listed["total"] == 2
    channels = {n["account"]: [(d["channel"], d["state"], d["attempts"]) for d in n["deliveries"]]
                for n in listed["items"]}  # fmt: skip
    assert channels == {"A1": [("wechat", "sent", 1)], "A2": [("sms", "sent", 1)]}
    assert client.get("/notices", params={"state": "pending"}).json()["total"] == 0
    assert client.get("/notices", params={"account": "A2"}).json()["total"] == 1

    wang = bearer(users["wang"])
    mine = client.get("/notices", headers=wang).json()
    assert [(n["kind"], n["account"]) for n in mine["items"]] == [("power_off", "A1")]
    other = client.get("/notices", headers=bearer(users["wang4"])).json()["items"]
    assert [(n["kind"], n["account"]) for n in other] == [  # the merchant's power-off, its own
        ("power_off", "A1"), ("recharge_credited", "A4")]  # fmt: skip
    assert client.get("/notices", params={"account": "A2"}, headers=wang).status_code == 403
    assert client.get(f"/notices/{zhao_notice}", headers=wang).status_code == 404
    assert client.get(f"/notices/{zhao_notice}", headers=bearer(users["zhao"])).status_code == 200
    assert client.get("/notices", params={"kind": "nonsense"}).status_code == 422

"""Money that adds up (issue 13): each defect found in the cloud's books, as a test on SQLite
and PostgreSQL — deposits counting voided recharges and ignoring corrections, an `original`
refund charged beyond a payment's net, corrections without bound or approval, a subsidy issued
twice to a tenant who moved across concentrators, a swap 1 GWh above the last reading — and
`books verify` (`cloud.reports.books`) finding what is wrong and passing what is right."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.models import Command
from cloud.people.auth import Role
from cloud.reports import books
from tests.cloud.api.conftest import M1, NODE, OTHER, Site, bearer
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.registry_world import vacant_shops

A1 = "A0001"
MONTH = {"from": "2026-11-01", "to": "2026-11-30"}


@pytest.fixture
def edge(site: Site) -> ContractEdge:
    return ContractEdge(site)


def violations(site: Site) -> list[str]:
    with session_factory(site.engine)() as session:
        return books.verify(session)


def recharge(client: TestClient, payment: str, fen: int, account: str = A1) -> None:
    body = {"account": account, "fen": fen, "method": "cash", "payment": payment}
    answer = client.post("/recharges", json=body)
    assert answer.status_code == 201, answer.text


def correct(client: TestClient, original: str, fen: int, reason: str, **more: Any) -> Any:
    body = {"account": A1, "fen": fen, "original": original, "reason": reason, **more}
    return client.post("/corrections", json=body)


def commands(site: Site) -> int:
    with session_factory(site.engine)() as session:
        return session.scalar(select(func.count()).select_from(Command)) or 0


def logged(site: Site, action: str) -> list[str]:
    with session_factory(site.engine)() as session:
        return list(
            session.scalars(select(OperatorLogEntry.user).where(OperatorLogEntry.action == action))
        )


def test_deposits_net_out_voided_recharges_and_apply_corrections(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    recharge(client, "PAY-1", 10_000)
    recharge(client, "PAY-2", 5_000)
    edge.refuse.add(edge.pending_commands(NODE)[-1].id)  # PAY-2 refused: voided
    edge.sync(NODE)
    assert correct(client, "PAY-1", -1_000, "keyed 100 for 90").status_code == 201
    edge.sync(NODE)
    page = client.get("/reports/deposits", params=MONTH).json()
    rows = {r["payment"]: r for r in page["items"]}
    assert (rows["PAY-1"]["net_fen"], rows["PAY-1"]["corrected_fen"]) == (9_000, -1_000)
    assert (rows["PAY-2"]["status"], rows["PAY-2"]["net_fen"]) == ("voided", 0)
    assert (page["totals"]["net_fen"], page["totals"]["corrected_fen"]) == (9_000, -1_000)
    assert violations(site) == []


def test_an_original_refund_follows_the_net_of_each_payment(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    recharge(client, "PAY-N", 50_200)
    edge.sync(NODE)
    assert correct(client, "PAY-N", -40_200, "keyed 502 for 100").status_code == 201
    edge.sync(NODE)
    refund = client.post("/refunds", json={"account": A1, "method": "original", "grace_wh": 0,
                                           "grace_hours": 0, "refund": "R-N"})  # fmt: skip
    assert refund.status_code == 201, refund.text
    edge.sync(NODE)
    row = client.get("/refunds/R-N").json()
    assert row["fen"] == 8_163 + 10_000  # the opening balance and the payment's net
    shares = {s["payment"]: s["fen"] for s in row["sources"]}
    assert shares["PAY-N"] == 10_000  # never 40 200 back to a payment whose net is 10 000
    assert sum(shares.values()) == row["fen"]
    assert violations(site) == []


def test_a_correction_is_bounded_by_what_it_corrects(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    recharge(client, "PAY-S", 1_000)
    edge.sync(NODE)
    before = commands(site)
    assert correct(client, "PAY-S", 50_000, "booked too little").status_code == 422
    assert correct(client, "PAY-S", 1_001, "booked too little").status_code == 422
    assert commands(site) == before
    assert correct(client, "PAY-S", -300, "paid in part").status_code == 201
    again = correct(client, "PAY-S", -300, "Paid  in part", correction="C-dup")
    assert again.status_code == 422 and "own reason" in again.json()["detail"]
    assert correct(client, "PAY-S", -300, "second part paid too").status_code == 201
    assert correct(client, "PAY-S", -500, "third part").status_code == 422  # below 0
    assert correct(client, "PAY-S", -400, "third part").status_code == 201
    assert correct(client, "PAY-S", -1, "one fen more").status_code == 422
    edge.sync(NODE)
    page = client.get("/reports/deposits", params=MONTH).json()
    assert {r["payment"]: r["net_fen"] for r in page["items"]}["PAY-S"] == 0
    assert correct(client, "PAY-S", 1_000, "refused by mistake").status_code == 201
    assert correct(client, "PAY-S", 1_000, "a second fix").status_code == 201  # 2 × original
    assert correct(client, "PAY-S", 1, "one more fen").status_code == 422
    recharge(client, "PAY-P", 700)  # pending: not corrected until booked
    assert correct(client, "PAY-P", -100, "not yet booked").status_code == 409
    assert violations(site) == []


def test_a_large_correction_waits_for_a_second_user(
    client: TestClient, site: Site, edge: ContractEdge, tokens: dict[Role, str]
) -> None:
    recharge(client, "PAY-L", 500_000)
    edge.sync(NODE)
    asked = correct(client, "PAY-L", -200_000, "keyed 5000 for 3000", correction="C-L")
    assert asked.status_code == 201, asked.text
    row = asked.json()
    assert (row["status"], row["command_id"], row["receipt"]) == ("held", None, None)
    before = commands(site)
    assert client.post("/corrections/C-L/approve").status_code == 403  # the asker: admin-1
    as_operator = bearer(tokens[Role.OPERATOR])
    assert client.post("/corrections/C-L/approve", headers=as_operator).status_code == 403
    assert commands(site) == before
    finance = bearer(tokens[Role.FINANCE])
    approved = client.post("/corrections/C-L/approve", headers=finance)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "pending" and approved.json()["approved_by"] == "finance-1"
    assert commands(site) == before + 1
    assert client.post("/corrections/C-L/approve", headers=finance).status_code == 200
    assert commands(site) == before + 1
    assert client.post("/corrections/C-L/reject", headers=finance).status_code == 409
    edge.sync(NODE)
    assert client.get("/corrections/C-L").json()["status"] == "posted"
    assert logged(site, "correction.create") == ["admin-1"]
    assert logged(site, "correction.approve") == ["finance-1"]

    held = correct(client, "PAY-L", 150_000, "a second large one", correction="C-R").json()
    assert held["status"] == "held"
    rejected = client.post("/corrections/C-R/reject", headers=finance)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert client.post("/corrections/C-R/approve", headers=finance).status_code == 409
    assert logged(site, "correction.reject") == ["finance-1"]
    assert commands(site) == before + 1
    assert violations(site) == []


SWAP: dict[str, Any] = {"old": M1, "new": {"address": "000000000778", "protocol": "dlt645"},
                        "initial_wh": 0, "swap": "S-big"}  # fmt: skip


def test_a_swap_past_the_plausibility_limit_waits_for_a_second_user(
    client: TestClient, site: Site, edge: ContractEdge, tokens: dict[Role, str]
) -> None:
    # M1 last read 101 200 Wh an hour ago: 1 GWh more is ≈ 836 500 CNY of energy it never saw
    asked = client.post("/meter-swaps", json=SWAP | {"final_wh": 101_200 + 1_000_000_000})
    assert asked.status_code == 201, asked.text
    row = asked.json()
    assert (row["status"], row["command_id"], row["receipt"]) == ("held", None, None)
    assert 101_200 < row["limit_wh"] < 101_200 + 1_000_000
    before = commands(site)
    assert client.post("/meter-swaps/S-big/approve").status_code == 403  # the asker
    assert commands(site) == before
    other = bearer(tokens[Role.OPERATOR])
    approved = client.post("/meter-swaps/S-big/approve", headers=other)
    assert approved.status_code == 200, approved.text
    swap = approved.json()
    assert (swap["status"], swap["approved_by"]) == ("requested", "operator-1")
    assert commands(site) == before + 1
    assert logged(site, "meter_swap.approve") == ["operator-1"]
    edge.sync(NODE)
    assert client.get("/meter-swaps/S-big").json()["status"] == "applied"


def test_a_plausible_swap_goes_at_once(client: TestClient, site: Site) -> None:
    answer = client.post("/meter-swaps", json=SWAP | {"final_wh": 105_000, "swap": "S-ok"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "requested" and answer.json()["command_id"]


def test_a_tenant_moving_across_concentrators_is_issued_a_period_once(
    client: TestClient, site: Site, edge: ContractEdge
) -> None:
    with session_factory(site.engine).begin() as session:
        vacant_shops(session, {"S202": OTHER})  # a free shop there (the registry knows no A1)
    moved = client.post("/moves", json={"account": A1, "to_shop": "S202", "to_node": OTHER,
                                        "move": "M-sub"})  # fmt: skip
    assert moved.status_code == 201, moved.text
    edge.sync_all()
    assert client.get("/moves/M-sub").json()["status"] == "settled"
    assert not edge.issue_subsidy(OTHER, A1, "2026-11")  # issued at NODE already
    assert edge.issue_subsidy(OTHER, A1, "2026-12")
    assert violations(site) == []


def test_books_verify_names_a_subsidy_issued_twice(site: Site, edge: ContractEdge) -> None:
    edge.models[OTHER].periods[A1].clear()  # a destination that was never told
    assert edge.issue_subsidy(OTHER, A1, "2026-11")
    found = violations(site)
    assert any("issued twice in period 2026-11" in v for v in found), found

"""The refund operation's method `original` (`POST /refunds`, `/refunds/{id}/pay`) paid back
through the providers: a recharge that came from an online order goes back through its
provider (once, however often the refund is paid), one the desk took in cash stays at the
desk; a source paid while the providers were off is picked up by `original.sweep`. The site,
its concentrator (the contract edge) and the API are the API tests' own; the provider is the
sandbox on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cloud.db.payments import PaymentRefund
from cloud.payments import original, refunds
from cloud.people.auth import Role
from ledger.chain import NodeKey
from tests.cloud.api.conftest import NODE, Site, bearer, site, tokens
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.conftest import Clock
from tests.cloud.payments.refund_world import World, wait_for, world_on

__all__ = ["site", "tokens"]  # the API tests' fixtures, used here
A2 = "A0002"


@pytest.fixture
def world(
    site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock, tmp_path: Path
) -> Iterator[World]:
    with world_on(engine, cloud_key, clock, tmp_path / "pay") as built:
        yield built


@pytest.fixture
def client(world: World, tokens: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(world.app) as test_client:
        test_client.headers.update(bearer(tokens[Role.ADMIN]))
        yield test_client


def reserved_refund(client: TestClient, world: World, site: Site, refund: str) -> dict[str, Any]:
    """A2 recharged 30 yuan by WeChat Pay (an online order) and 20 yuan in cash, then an
    `original` refund of its whole prepaid balance, reserved by the concentrator."""
    edge = ContractEdge(site)
    online = world.paid_order("wechat", 3_000, credited=False, account=A2)
    for payment, fen, method in ((online, 3_000, "wechat"), ("DESK-9", 2_000, "cash")):
        answer = client.post("/recharges", json={"account": A2, "fen": fen, "method": method,
                                                 "payment": payment})  # fmt: skip
        assert answer.status_code == 201, answer.text
    edge.sync(NODE)
    answer = client.post("/refunds", json={"account": A2, "method": "original", "grace_wh": 0,
                                           "grace_hours": 0, "refund": refund})  # fmt: skip
    assert answer.status_code == 201, answer.text
    edge.sync(NODE)
    row = client.get(f"/refunds/{refund}").json()
    assert row["status"] == "reserved"
    sources = {s["payment"]: s["fen"] for s in row["sources"]}
    assert sources[online] == 3_000 and sources["DESK-9"] == 2_000
    return {"online": online, "row": row}


def payment_refunds(world: World) -> list[PaymentRefund]:
    with world.sessions() as session:
        rows = list(session.scalars(select(PaymentRefund)))
        session.expunge_all()
        return rows


def test_the_online_source_goes_back_through_its_provider_once(
    client: TestClient, world: World, site: Site
) -> None:
    made = reserved_refund(client, world, site, "R-ON")
    online = made["online"]
    paid = client.post("/refunds/R-ON/pay")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    (row,) = payment_refunds(world)  # the cash source stays at the desk
    assert (row.out_refund_no, row.out_trade_no, row.fen, row.refund) == (
        refunds.refund_number("R-ON", online), online, 3_000, "R-ON")  # fmt: skip
    wait_for(lambda: world.refund(row.out_refund_no).state == "success")
    assert (world.order(online).state, world.order(online).refunded_fen) == ("refunded", 3_000)
    again = client.post("/refunds/R-ON/pay")  # paid again: the same refund, nothing more
    assert again.status_code == 200
    assert len(payment_refunds(world)) == 1
    assert [r.out_refund_no for r in world.desk.refunds.values()] == [row.out_refund_no]
    assert world.desk.refunded_fen("wechat", online) == 3_000


def test_a_source_paid_while_payments_were_off_is_swept(
    client: TestClient, world: World, site: Site
) -> None:
    made = reserved_refund(client, world, site, "R-SW")
    world.app.state.providers = None  # [payments] not loaded when finance paid
    assert client.post("/refunds/R-SW/pay").status_code == 200
    assert payment_refunds(world) == []
    assert any("R-SW" in a for a in world.alarms("payment_refund_failed"))
    with world.sessions.begin() as session:
        assert original.sweep(session, world.providers, world.clock()) == 1
    with world.sessions.begin() as session:  # a second sweep finds it under way
        assert original.sweep(session, world.providers, world.clock()) == 0
    (row,) = payment_refunds(world)
    assert (row.out_trade_no, row.fen) == (made["online"], 3_000)

"""Who owns which account and meter, on every backend: a concentrator's signed inventory is a
claim the cloud checks against its registry and its own commands (`cloud.operations.ownership`);
what disagrees raises an alarm and changes nothing, and money keeps going to the owner."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cloud.db import models
from cloud.operations import recharges
from cloud.operations.ownership import MISMATCH
from tests.cloud.fake_edge import FakeEdge
from tests.cloud.helpers import count
from tests.cloud.registry_world import make_registry

A, B = "edge-0001", "edge-0002"
INVENTORY_A = {
    "A0001": {"shop": "S101", "building": "B1", "floor": "1F",
              "meters": [{"address": "000000000001", "protocol": "dlt645"}]},
    "A0002": {"shop": "S102", "building": "B1", "floor": "1F",
              "meters": [{"address": "000000000003", "protocol": "sdm120"}]},
}  # fmt: skip


def view(sessions) -> dict[str, tuple[str, str]]:
    """account → (node, shop), as the cloud routes money."""
    with sessions() as session:
        rows = session.scalars(select(models.ReportedAccount))
        return {r.account: (r.node, r.shop) for r in rows}


def meters(sessions) -> dict[tuple[str, str], str]:
    """(node, address) → account."""
    with sessions() as session:
        return {(m.node, m.address): m.account for m in session.scalars(select(models.MeterState))}


def alarms(sessions) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(models.Alarm.detail).where(models.Alarm.kind == MISMATCH)
                .order_by(models.Alarm.id)
            )
        )  # fmt: skip


def recharge_node(sessions, ingest, account: str, payment: str) -> str:
    with sessions.begin() as session:
        row = recharges.recharge(session, account=account, fen=500, method="cash", operator="op",
                                 payment=payment, key=ingest.key, now=ingest._now())  # fmt: skip
        command = session.get(models.Command, row.command_id)
        assert command is not None
        return command.node


@pytest.fixture
def nodes(edge_of) -> tuple[FakeEdge, FakeEdge]:
    return edge_of(A), edge_of(B)


def test_a_status_claiming_another_nodes_account_changes_nothing_and_raises_an_alarm(
    nodes, ingest, sessions
) -> None:
    """Issue 13: ingest upserted every account a status listed, so a concentrator that listed
    A0002 took it over and the next recharge of A0002 went to it."""
    a, b = nodes
    ingest.handle_status(A, a.status(accounts=INVENTORY_A))
    before = (view(sessions), meters(sessions))
    grab = {"A0002": {"shop": "X9", "meters": [{"address": "000000000003", "protocol": "x"},
                                               {"address": "000000000009"}]},
            "B0001": {"shop": "S201", "meters": [{"address": "000000000001"}]}}  # fmt: skip
    ingest.handle_status(B, b.status(accounts=grab))
    assert alarms(sessions) == [
        f"{B} claims account A0002, which {A} owns; nothing changed",
        f"{B} claims meter 000000000001 (for B0001), which is {A}'s; nothing changed",
    ]
    after = view(sessions)
    assert after == {**before[0], "B0001": (B, "S201")}  # its own new account: first claim
    assert meters(sessions) == before[1]  # A's meter stays A's, no meter for A0002 on B
    assert recharge_node(sessions, ingest, "A0002", "P1") == A
    ingest.handle_status(B, b.status(accounts=grab))  # said again: refused again
    assert len(alarms(sessions)) == 4
    assert recharge_node(sessions, ingest, "A0002", "P2") == A


def test_without_a_registry_the_first_node_to_claim_an_account_owns_it(
    nodes, ingest, sessions
) -> None:
    """The embedded demo has no registry: the inventory is all there is, and nobody can take an
    account someone registered, not even by claiming it first in a later status."""
    a, b = nodes
    ingest.handle_status(B, b.status(accounts={"A0001": INVENTORY_A["A0001"]}))
    ingest.handle_status(A, a.status(accounts=INVENTORY_A))
    assert view(sessions) == {"A0001": (B, "S101"), "A0002": (A, "S102")}
    assert alarms(sessions) == [f"{A} claims account A0001, which {B} owns; nothing changed"]
    assert meters(sessions) == {(B, "000000000001"): "A0001", (A, "000000000003"): "A0002"}
    assert recharge_node(sessions, ingest, "A0001", "P1") == B
    # The owner's own news is taken: a shop renumbered, a meter swapped in.
    moved = {"shop": "S109", "building": "B1", "floor": "2F",
             "meters": [{"address": "000000000077", "protocol": "dlt645"}]}  # fmt: skip
    ingest.handle_status(B, b.status(accounts={"A0001": moved}))
    assert view(sessions)["A0001"] == (B, "S109")
    assert meters(sessions)[(B, "000000000077")] == "A0001"
    assert meters(sessions)[(B, "000000000001")] == ""  # swapped out: nobody's
    assert len(alarms(sessions)) == 1


def test_with_a_registry_only_the_node_it_places_an_account_on_may_claim_it(
    nodes, ingest, sessions
) -> None:
    a, b = nodes
    with sessions.begin() as session:
        make_registry(session, register=False)  # A0001, A0002 on edge-0001; A0101 on edge-0002
    ingest.handle_status(B, b.status(accounts=INVENTORY_A))
    assert view(sessions) == {}
    assert alarms(sessions) == [
        f"{B} claims account {account}, which the registry has on {A}; nothing changed"
        for account in ("A0001", "A0002")
    ]
    ingest.handle_status(A, a.status(accounts=INVENTORY_A))
    assert view(sessions) == {"A0001": (A, "S101"), "A0002": (A, "S102")}
    ingest.handle_status(B, b.status(accounts={"A0101": {"meters": [{"address": "000000000001"}]}}))
    assert view(sessions)["A0101"] == (B, "")
    assert meters(sessions).get((B, "000000000001")) is None  # the registry has it on A
    assert len(alarms(sessions)) == 3


def test_an_unsigned_status_claims_nothing(nodes, ingest, sessions) -> None:
    a, b = nodes
    ingest.handle_status(A, a.status(accounts=INVENTORY_A, key=b.key))
    assert view(sessions) == {} and meters(sessions) == {}
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_status") == 1

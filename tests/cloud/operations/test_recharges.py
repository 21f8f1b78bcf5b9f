"""Recharges and relay commands on every backend, and the two-phase recharge across chains."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cloud.db import models
from cloud.errors import Conflict, Invalid, NotFound
from cloud.keys import CLOUD_NODE
from cloud.operations import recharges, relays
from ledger.book import Balance
from ledger.invariants import (
    check_balances_sum_to_zero,
    check_no_transfer_twice,
    check_payments_credited_once,
)
from ledger.signed import open_command, trusted
from ledger.transfers import Kind
from ledger.verify import verify_records
from ledger.wire import AckStatus
from tests.cloud.chains.test_commands import INVENTORY
from tests.cloud.fake_edge import T0, edge_recharge, ms
from tests.cloud.helpers import balances, count, open_ack, stored_chain, stored_checkpoints

NODE = "edge-0001"


@pytest.fixture
def site(ingest, edge_of):
    edge = edge_of(NODE)
    other = edge_of("edge-0002")
    ingest.handle_status(NODE, edge.status(accounts=INVENTORY))
    ingest.handle_status(
        "edge-0002",
        other.status(accounts={"B0001": {"meters": [
            {"address": "000000000009", "protocol": "dlt645"}]}}),
    )  # fmt: skip
    return edge, other


def recharge(sessions, cloud_key, clock, **kwargs):
    fields = {"account": "A0001", "fen": 5000, "method": "cash", "operator": "op1",
              "payment": "P1"} | kwargs  # fmt: skip
    with sessions.begin() as session:
        row = recharges.recharge(session, key=cloud_key, now=clock(), **fields)
        session.expunge(row)
        return row


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"fen": 0}, Invalid),
        ({"fen": -5}, Invalid),
        ({"fen": 10_000_001}, Invalid),
        ({"fen": 50.0}, Invalid),
        ({"fen": True}, Invalid),
        ({"method": "bitcoin"}, Invalid),
        ({"payment": "has space"}, Invalid),
        ({"account": "Z9999"}, NotFound),
    ],
)
def test_recharge_validates(change, error, site, sessions, ingest) -> None:
    with pytest.raises(error):
        recharge(sessions, ingest.key, ingest._now, **change)
    assert count(sessions, models.Recharge) == 0
    assert count(sessions, models.Command) == 0


def test_recharge_books_a_pending_transfer_and_a_command(site, sessions, cloud_key, clock) -> None:
    row = recharge(sessions, cloud_key, clock)
    assert (row.status, row.fen, row.account) == ("pending", 5000, "A0001")
    assert row.pending_transfer == f"{recharges.pending_id('P1'):032x}"
    with sessions() as session:
        command = session.get(models.Command, row.command_id)
        opened = open_command(command.payload, trusted(cloud_key.public_key), NODE, clock())
    assert dict(opened.args) == {"account": "A0001", "fen": 5000, "payment": "P1",
                                 "method": "cash"}  # fmt: skip
    [entry] = stored_chain(sessions, CLOUD_NODE)
    assert entry.transfer.kind is Kind.PENDING and entry.transfer.amount == 5000
    assert dict(entry.transfer.refs) == {"payment": "P1", "method": "cash", "operator": "op1",
                                         "account": "A0001"}  # fmt: skip
    assert balances(sessions) == {
        "sys:payments_received": Balance(debits_pending=5000),
        "sys:cash_in_transit": Balance(credits_pending=5000),
    }


def test_recharge_is_idempotent_per_payment(site, sessions, cloud_key, clock) -> None:
    first = recharge(sessions, cloud_key, clock)
    again = recharge(sessions, cloud_key, clock, operator="someone else")
    assert again.command_id == first.command_id
    with pytest.raises(Conflict):
        recharge(sessions, cloud_key, clock, fen=5001)
    assert count(sessions, models.Command) == 1
    assert len(stored_chain(sessions, CLOUD_NODE)) == 1
    generated = recharge(sessions, cloud_key, clock, payment=None)
    assert len(generated.payment) == 32


def test_the_edges_entry_posts_the_recharge(site, ingest, sessions, cloud_key, clock) -> None:
    edge, _ = site
    recharge(sessions, cloud_key, clock, payment="P1", fen=5000)
    recharge(sessions, cloud_key, clock, payment="P2", fen=300, account="A0002")
    edge.book(edge_recharge("A0001", 5000, "P1"))
    edge.book_consumption(2)
    ack = open_ack(ingest.handle_batch(NODE, edge.payload(1, 3, edge.entries)), cloud_key)
    assert ack.status is AckStatus.OK
    with sessions() as session:
        states = dict(
            session.execute(select(models.Recharge.payment, models.Recharge.status)).all()
        )
    assert states == {"P1": "posted", "P2": "pending"}
    # The same batch again posts nothing twice.
    ingest.handle_batch(NODE, edge.payload(1, 3, edge.entries))
    cloud_chain = stored_chain(sessions, CLOUD_NODE)
    assert [e.transfer.kind for e in cloud_chain] == [Kind.PENDING, Kind.PENDING, Kind.POST]
    assert cloud_chain[2].transfer.id == recharges.post_id("P1")
    verdict = verify_records(
        [*cloud_chain, *stored_checkpoints(sessions, CLOUD_NODE)], [cloud_key.public_key],
        node=CLOUD_NODE,
    )  # fmt: skip
    assert verdict.ok, verdict.summary()

    held = balances(sessions)
    assert check_balances_sum_to_zero(held) == []
    assert held["A0001:prepaid"].posted == 5000 - 14
    assert held["sys:payments_received"] == Balance(debits_pending=300, debits_posted=5000)
    assert held["sys:cash_in_transit"] == Balance(
        debits_posted=5000, credits_pending=300, credits_posted=5000
    )
    assert held["sys:cash_in_transit"].posted == 0
    union = [e.transfer for e in cloud_chain] + [e.transfer for e in edge.entries]
    assert check_no_transfer_twice(union) == []
    for chain in (cloud_chain, edge.entries):
        assert check_payments_credited_once(e.transfer for e in chain) == []


def test_relay_groups_meters_by_node(site, sessions, cloud_key, clock) -> None:
    with sessions.begin() as session:
        issued = relays.order_relays(
            session, ["000000000002", "000000000009", "000000000001"], "trip", "op1", cloud_key,
            clock(),
        )  # fmt: skip
        got = [(c.node, c.args) for c in issued]
    assert got == [
        (NODE, {"meters": ["000000000001", "000000000002"], "action": "trip"}),
        ("edge-0002", {"meters": ["000000000009"], "action": "trip"}),
    ]


def test_relay_with_an_unknown_meter_issues_nothing(site, sessions, cloud_key, clock) -> None:
    with pytest.raises(NotFound, match="000000000077"), sessions.begin() as session:
        relays.order_relays(
            session, ["000000000001", "000000000077"], "close", "op1", cloud_key, clock()
        )
    with pytest.raises(Invalid), sessions.begin() as session:
        relays.order_relays(session, ["000000000001"], "explode", "op1", cloud_key, clock())
    assert count(sessions, models.Command) == 0


# -- a recharge the concentrator refuses -------------------------------------------------------


def refusal(command_id: str, reason: str = "account A0001 is not on this concentrator") -> dict:
    """The edge's result for a refused command (`edge.store.records.CommandResult.to_json`)."""
    return {"command": command_id, "status": "refused", "seqs": [], "outcomes": [],
            "reason": reason}  # fmt: skip


def rejection(event_id: int, command_id: str, reason: str, message: str = "") -> dict:
    """The edge's `command_rejected` alarm (`edge.sync.commands.CommandDesk._reject`)."""
    return {"id": event_id, "t": ms(T0), "c": "alarm", "k": "command_rejected",
            "d": {"severity": "warning", "command_id": command_id, "reason": reason,
                  "message": message}}  # fmt: skip


def recharge_rows(sessions) -> dict[str, tuple]:
    with sessions() as session:
        return {
            r.payment: (r.status, r.posted, r.voided, r.reason)
            for r in session.scalars(select(models.Recharge))
        }


def alarms(sessions) -> list[tuple[str | None, str, str]]:
    """The cloud's own alarms (an edge's, such as `command_rejected`, are copied there too)."""
    with sessions() as session:
        rows = session.scalars(
            select(models.Alarm).where(models.Alarm.event_id.is_(None)).order_by(models.Alarm.id)
        )
        return [(a.node, a.kind, a.detail) for a in rows]


def test_a_refused_recharge_is_voided_once(site, ingest, sessions, cloud_key, clock) -> None:
    edge, _ = site
    p1 = recharge(sessions, cloud_key, clock, payment="P1", fen=5000)
    recharge(sessions, cloud_key, clock, payment="P2", fen=300, account="A0002")
    when = clock.advance(minutes=5)
    batch = edge.payload(1, 1, results=[refusal(p1.command_id)])
    assert open_ack(ingest.handle_batch(NODE, batch), cloud_key).status is AckStatus.OK

    reason = "account A0001 is not on this concentrator"
    assert recharge_rows(sessions) == {
        "P1": ("voided", None, when, reason),
        "P2": ("pending", None, None, ""),
    }
    cloud_chain = stored_chain(sessions, CLOUD_NODE)
    assert [e.transfer.kind for e in cloud_chain] == [Kind.PENDING, Kind.PENDING, Kind.VOID]
    void = cloud_chain[2].transfer
    assert (void.id, void.pending_id, void.amount) == (
        recharges.void_id("P1"), recharges.pending_id("P1"), 5000
    )  # fmt: skip
    assert dict(void.refs) == {"payment": "P1", "node": NODE, "command": p1.command_id}
    verdict = verify_records(
        [*cloud_chain, *stored_checkpoints(sessions, CLOUD_NODE)], [cloud_key.public_key],
        node=CLOUD_NODE,
    )  # fmt: skip
    assert verdict.ok, verdict.summary()
    held = balances(sessions)
    assert check_balances_sum_to_zero(held) == []
    assert held == {  # only P2 is still in flight
        "sys:payments_received": Balance(debits_pending=300),
        "sys:cash_in_transit": Balance(credits_pending=300),
    }
    assert alarms(sessions) == [(NODE, "recharge_refused",
        f"recharge P1: 5000 fen (cash) for A0001 refused by the concentrator ({reason}); its "
        "pending is voided, the payer is owed a refund")]  # fmt: skip
    with sessions() as session:
        assert session.get(models.Command, p1.command_id).status == "failed"

    # The refusal again — the same batch, a later batch with the result resent, a rejection of
    # a redelivery — voids nothing twice.
    clock.advance(minutes=5)
    ingest.handle_batch(NODE, batch)
    again = edge.payload(2, 3, results=[refusal(p1.command_id, "other words")],
                         events=[rejection(1, p1.command_id, "expired")])  # fmt: skip
    assert open_ack(ingest.handle_batch(NODE, again), cloud_key).status is AckStatus.OK
    assert stored_chain(sessions, CLOUD_NODE) == cloud_chain
    assert balances(sessions) == held
    assert recharge_rows(sessions)["P1"] == ("voided", None, when, reason)
    assert [kind for _, kind, _ in alarms(sessions)] == ["recharge_refused"]


def test_a_recharge_rejected_as_expired_is_voided(site, ingest, sessions, cloud_key, clock) -> None:
    edge, _ = site
    p1 = recharge(sessions, cloud_key, clock, payment="P1", fen=5000)
    event = rejection(1, p1.command_id, "expired", "expired at 2026-11-25T08:00:00+08:00")
    ingest.handle_batch(NODE, edge.payload(1, 1, events=[event]))
    assert recharge_rows(sessions)["P1"] == (
        "voided", None, clock(), "expired: expired at 2026-11-25T08:00:00+08:00",
    )  # fmt: skip
    assert [e.transfer.id for e in stored_chain(sessions, CLOUD_NODE)] == [
        recharges.pending_id("P1"), recharges.void_id("P1"),
    ]  # fmt: skip
    assert balances(sessions)["sys:cash_in_transit"] == Balance()


def test_only_the_recorded_verdict_of_its_own_node_voids(
    site, ingest, sessions, cloud_key, clock
) -> None:
    edge, other = site
    p1 = recharge(sessions, cloud_key, clock, payment="P1", fen=5000)
    # Another node cannot refuse edge-0001's command.
    ingest.handle_batch("edge-0002", other.payload(1, 1, results=[refusal(p1.command_id)]))
    # The edge applied it; a later rejection of the same id (a conflicting copy) is not believed.
    applied = {"command": p1.command_id, "status": "applied", "seqs": [1], "outcomes": ["ok"]}
    ingest.handle_batch(NODE, edge.payload(1, 1, results=[applied]))
    ingest.handle_batch(NODE, edge.payload(2, 2, events=[rejection(1, p1.command_id, "conflict")]))
    assert recharge_rows(sessions)["P1"] == ("pending", None, None, "")
    assert len(stored_chain(sessions, CLOUD_NODE)) == 1
    assert alarms(sessions) == []
    edge.book(edge_recharge("A0001", 5000, "P1"))
    ingest.handle_batch(NODE, edge.payload(3, 3, edge.entries))
    assert recharge_rows(sessions)["P1"] == ("posted", clock(), None, "")
    assert balances(sessions)["sys:cash_in_transit"].posted == 0


def test_an_entry_for_a_voided_recharge_is_not_posted(
    site, ingest, sessions, cloud_key, clock
) -> None:
    edge, _ = site
    p1 = recharge(sessions, cloud_key, clock, payment="P1", fen=5000)
    ingest.handle_batch(NODE, edge.payload(1, 1, results=[refusal(p1.command_id)]))
    edge.book(edge_recharge("A0001", 5000, "P1"))  # booked after all (it must not be)
    ingest.handle_batch(NODE, edge.payload(2, 2, edge.entries))
    assert recharge_rows(sessions)["P1"][0] == "voided"
    assert [e.transfer.kind for e in stored_chain(sessions, CLOUD_NODE)] == [Kind.PENDING,
                                                                             Kind.VOID]  # fmt: skip
    assert [kind for _, kind, _ in alarms(sessions)] == ["recharge_refused", "recharge_after_void"]

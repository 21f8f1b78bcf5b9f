"""Recharges and relay commands on every backend, and the two-phase recharge across chains."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cloud import money
from cloud.db import models
from cloud.errors import Conflict, Invalid, NotFound
from cloud.keys import CLOUD_NODE
from ledger.book import Balance
from ledger.invariants import (
    check_balances_sum_to_zero,
    check_no_transfer_twice,
    check_payments_credited_once,
)
from ledger.signed import open_command, trusted
from ledger.transfers import Kind
from ledger.verify import verify_records
from ledger.wire import AckStatus, Status
from tests.cloud.fake_edge import edge_recharge
from tests.cloud.helpers import balances, count, open_ack, stored_chain, stored_checkpoints
from tests.cloud.test_commands import INVENTORY

NODE = "edge-0001"


@pytest.fixture
def site(ingest, edge_of):
    edge = edge_of(NODE)
    other = edge_of("edge-0002")
    ingest.handle_status(NODE, Status(NODE, True, extra={"accounts": INVENTORY}).encode())
    ingest.handle_status(
        "edge-0002",
        Status("edge-0002", True, extra={"accounts": {"B0001": {"meters": [
            {"address": "000000000009", "protocol": "dlt645"}]}}}).encode(),
    )  # fmt: skip
    return edge, other


def recharge(sessions, cloud_key, clock, **kwargs):
    fields = {"account": "A0001", "fen": 5000, "method": "cash", "operator": "op1",
              "payment": "P1"} | kwargs  # fmt: skip
    with sessions.begin() as session:
        row = money.recharge(session, key=cloud_key, now=clock(), **fields)
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
    assert row.pending_transfer == f"{money.pending_id('P1'):032x}"
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
    assert cloud_chain[2].transfer.id == money.post_id("P1")
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
        issued = money.relay(
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
        money.relay(session, ["000000000001", "000000000077"], "close", "op1", cloud_key, clock())
    with pytest.raises(Invalid), sessions.begin() as session:
        money.relay(session, ["000000000001"], "explode", "op1", cloud_key, clock())
    assert count(sessions, models.Command) == 0

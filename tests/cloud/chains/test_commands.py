"""Commands on every backend: issue, resend after a status, expiry, and the edge's verdicts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from cloud.chains import commands
from cloud.db import models
from cloud.errors import Invalid, NotFound, Quarantined
from ledger.chain import NodeKey
from ledger.signed import CommandKind, open_command, trusted
from ledger.wire import Status
from tests.cloud.fake_edge import T0, ms
from tests.cloud.helpers import node_row

NODE = "edge-0001"
INVENTORY = {
    "A0001": {"shop": "1F-01", "building": "B1", "floor": "1F",
              "meters": [{"address": "000000000001", "protocol": "dlt645"}]},
    "A0002": {"shop": "1F-02", "building": "B1", "floor": "1F",
              "meters": [{"address": "000000000002", "protocol": "modbus"}]},
}  # fmt: skip


EDGE_KEY = NodeKey.from_seed(b"c" * 32)


def status(online: bool = True, applied: int = 0, **extra) -> bytes:
    return Status(NODE, online, head=0, acked=0, commands=applied, extra=extra).signed(EDGE_KEY)


def issue(sessions, cloud_key, clock, kind=CommandKind.TIME, args=None, **kwargs):
    with sessions.begin() as session:
        return commands.issue(session, NODE, kind, args or {}, key=cloud_key, now=clock(), **kwargs)


def test_issue_numbers_and_signs_commands(edge_of, sessions, cloud_key, clock) -> None:
    edge_of(NODE, EDGE_KEY)
    first = issue(sessions, cloud_key, clock)
    second = issue(sessions, cloud_key, clock, CommandKind.RELAY,
                   {"meters": ["000000000001"], "action": "trip"}, operator="op1")  # fmt: skip
    assert (first.seq, second.seq) == (1, 2)
    assert len(first.id) == 32 and first.id != second.id
    opened = open_command(second.payload, trusted(cloud_key.public_key), NODE, clock())
    assert (opened.id, opened.seq, opened.kind, dict(opened.args)) == (
        second.id, 2, CommandKind.RELAY, {"meters": ["000000000001"], "action": "trip"}
    )  # fmt: skip
    assert opened.expires == clock() + commands.DEFAULT_TTL
    assert second.status == "pending" and second.operator == "op1"
    assert node_row(sessions, NODE).next_command_seq == 3
    with sessions() as session:
        assert [c.seq for c in commands.pending_for(session, NODE)] == [1, 2]


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        (CommandKind.RECHARGE, {"account": "A0001", "fen": 1.5, "payment": "P", "method": "cash"}),
        (CommandKind.RECHARGE, {"account": "A0001", "fen": True, "payment": "P", "method": "c"}),
        (CommandKind.RELAY, {"meters": [], "action": "trip"}),
        (CommandKind.RELAY, {"meters": ["1"], "action": "open"}),
    ],
)
def test_issue_refuses_bad_arguments(kind, args, ingest, edge_of, clock) -> None:
    edge_of(NODE, EDGE_KEY)
    with pytest.raises(Invalid), ingest._sessions.begin() as session:
        commands.issue(session, NODE, kind, args, key=ingest.key, now=clock())


def test_issue_to_an_unknown_or_quarantined_node(edge_of, sessions, cloud_key, clock) -> None:
    with pytest.raises(NotFound):
        issue(sessions, cloud_key, clock)
    edge_of(NODE, EDGE_KEY)
    with sessions.begin() as session:
        session.get(models.Concentrator, NODE).status = "quarantined"
    with pytest.raises(Quarantined):
        issue(sessions, cloud_key, clock)


def test_status_resends_open_commands_after_the_applied_seq(
    ingest, edge_of, sessions, cloud_key, clock
) -> None:
    edge_of(NODE, EDGE_KEY)
    issued = [issue(sessions, cloud_key, clock) for _ in range(4)]
    with sessions.begin() as session:
        commands.mark_delivered(session, issued[2].id)
    sent = ingest.handle_status(NODE, status(applied=1))
    assert sent == [bytes(c.payload) for c in issued[1:]]
    row = node_row(sessions, NODE)
    assert (row.online, row.commands_applied, row.last_seen) == (True, 1, clock())
    assert ingest.handle_status(NODE, status(online=False)) == []
    assert node_row(sessions, NODE).online is False


def test_status_expires_and_skips_commands_past_expiry(
    ingest, edge_of, sessions, cloud_key, clock
) -> None:
    edge_of(NODE, EDGE_KEY)
    short = issue(sessions, cloud_key, clock, ttl=dt.timedelta(hours=1))
    long = issue(sessions, cloud_key, clock, ttl=dt.timedelta(days=3))
    clock.advance(hours=2)
    assert ingest.handle_status(NODE, status()) == [bytes(long.payload)]
    with sessions() as session:
        assert commands.get(session, short.id).status == "expired"
        assert commands.get(session, long.id).status == "pending"
    clock.advance(days=3)
    assert ingest.expire_commands() == 1
    with sessions() as session:
        assert commands.get(session, long.id).status == "expired"


def test_status_registers_the_inventory(ingest, edge_of, sessions) -> None:
    edge_of(NODE, EDGE_KEY)
    ingest.handle_status(NODE, status(accounts=INVENTORY))
    moved = {**INVENTORY, "A0002": {**INVENTORY["A0002"], "shop": "2F-07"}}
    ingest.handle_status(NODE, status(accounts=moved))
    with sessions() as session:
        accounts = session.scalars(
            select(models.ReportedAccount).order_by(models.ReportedAccount.account)
        ).all()
        assert [(a.account, a.node, a.shop) for a in accounts] == [
            ("A0001", NODE, "1F-01"), ("A0002", NODE, "2F-07")
        ]  # fmt: skip
        meter = session.get(models.MeterState, (NODE, "000000000002"))
        assert (meter.account, meter.protocol) == ("A0002", "modbus")


def test_status_of_a_quarantined_unknown_or_garbled_node_sends_nothing(
    ingest, edge_of, sessions, cloud_key, clock
) -> None:
    assert ingest.handle_status(NODE, status()) == []
    edge_of(NODE, EDGE_KEY)
    issue(sessions, cloud_key, clock)
    assert ingest.handle_status(NODE, b"{not json") == []
    other = Status("edge-0002", True).signed(EDGE_KEY)
    assert ingest.handle_status(NODE, other) == []
    with sessions.begin() as session:
        session.get(models.Concentrator, NODE).status = "quarantined"
    assert ingest.handle_status(NODE, status()) == []


def test_results_and_rejections_set_the_command_status(
    ingest, edge_of, sessions, cloud_key, clock
) -> None:
    edge = edge_of(NODE, EDGE_KEY)
    applied, refused, expired, failed = (issue(sessions, cloud_key, clock) for _ in range(4))
    results = [
        {"command_id": applied.id, "status": "applied", "seqs": [1], "outcomes": ["ok"]},
        {"command": refused.id, "status": "refused", "seqs": [], "outcomes": ["exceeds_floor"]},
        {"command_id": "f" * 32, "status": "applied", "seqs": [], "outcomes": []},  # unknown
    ]
    events = [
        {"id": 7, "t": ms(T0), "c": "alarm", "k": "command_rejected",
         "d": {"command_id": expired.id, "reason": "expired"}},
        {"id": 8, "t": ms(T0), "c": "alarm", "k": "command_rejected",
         "d": {"command_id": failed.id, "reason": "bad_signature"}},
        # A late redelivery of an applied command, rejected as expired, changes nothing.
        {"id": 9, "t": ms(T0), "c": "alarm", "k": "command_rejected",
         "d": {"command_id": applied.id, "reason": "expired"}},
    ]  # fmt: skip
    ingest.handle_batch(NODE, edge.payload(1, 6, results=results, events=events))
    with sessions() as session:
        got = {c.id: (c.status, c.result) for c in session.scalars(select(models.Command))}
    assert got[applied.id] == ("applied", results[0])
    assert got[refused.id][0] == "failed" and got[refused.id][1]["outcomes"] == ["exceeds_floor"]
    assert got[expired.id][0] == "expired"
    assert got[failed.id][0] == "failed"
    assert got[failed.id][1]["rejected"] == "bad_signature"


def test_deliverable_and_mark_delivered(ingest, edge_of, sessions, cloud_key, clock) -> None:
    edge_of(NODE, EDGE_KEY)
    command = issue(sessions, cloud_key, clock)
    assert ingest.deliverable() == [], "the node is not online"
    ingest.handle_status(NODE, status())
    assert ingest.deliverable() == [(NODE, command.id, bytes(command.payload))]
    assert ingest.mark_delivered([command.id]) == 1
    assert ingest.mark_delivered([command.id]) == 0
    assert ingest.deliverable() == []

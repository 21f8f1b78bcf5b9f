"""A dead concentrator replaced, at service level: real edge runtimes (simulated DL/T 645 meters,
real SQLite stores, the real rules and command desk), their uplink batches built by the real
`BatchBuilder` and stored by the real `Ingest`, the takeover by `cloud.operations.takeovers` on
SQLite and PostgreSQL.

The old box runs on the cloud's configuration, uploads two hours, then bills three days offline
(a recharge the cloud sent it applied there too) and dies. Case 1, its store lost: the new box
takes over at the acknowledged head and bills on; the books verify (`voltbook-cloud books
verify`'s checks and every invariant of §5.6 over the union of the chains), no subsidy is issued
twice, each meter's billed energy equals its last register minus its first, the cloud's
balances equal the new box's book, the recharge the old box never reported is voided (its payer
is owed it back) and nothing the old box uploads later is stored. Case 2, its store recovered
later: its export verifies against the acknowledged head and is reconciled — every tail Wh
covered by the new box's registers, its subsidy issue held once in the books — and nothing is
booked again; an export that was tampered with is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.chains import commands
from cloud.db import models
from cloud.db.auth import OperatorLogEntry
from cloud.db.models import Command, LedgerEntry, NodeStatus
from cloud.errors import Conflict, Forbidden, Invalid
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.keys import CLOUD_NODE
from cloud.operations import recharges, takeovers
from cloud.people.oplog import Actor
from cloud.registry import site_config
from cloud.reports import books
from edge.sync.uplink import BatchBuilder
from ledger import takeover as rules
from ledger.book import replay
from ledger.chain import NodeKey
from ledger.encoding import decode_transfer
from ledger.invariants import ledger_violations
from ledger.signed import CommandKind as Kind
from ledger.transfers import Code, Transfer
from ledger.wire import AckStatus
from tests.cloud.conftest import Clock
from tests.cloud.helpers import open_ack
from tests.edge.sync.operations_kit import Node, applied, per_meter_energy, write_site
from tests.edge.sync.takeover_kit import documents_of, replacement_site

pytestmark = pytest.mark.slow

OLD, NEW = "edge-demo-0001", "edge-new"
OPERATOR = Actor("op-li", "operator")
ADMIN = Actor("admin-wang", "admin")  # the second user, who approves
HOURS_6 = dt.timedelta(hours=6)
# The old box starts two days before December: November's subsidy is acknowledged, December's
# is issued in the days it never sent (and so by the new box, once).
MONTH_END = dt.datetime(2026, 11, 29, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclasses.dataclass
class World:
    sessions: sessionmaker[Session]
    ingest: Ingest
    key: NodeKey
    clock: Clock
    old_store: Path
    old_first: dict[str, int]  # per meter, the register the old box started billing from
    tail: list[Transfer]  # what the old box booked and never sent
    tail_batch: bytes  # the batch it would have sent
    export: list[str]  # its store's chain export (for the recovery)
    payment: str  # the recharge it applied offline
    new: Node
    new_after: int = 0

    def at(self, node: Node) -> dt.datetime:
        self.clock.now = node.clock.true_now().astimezone(dt.UTC)
        return self.clock.now

    def upload(self, node: Node, after: int = 0) -> int:
        return upload(self.ingest, self.key, node, after)

    def deliver(self, node: Node, command_id: str) -> None:
        with self.sessions() as session:
            payload = commands.get(session, command_id).payload
        applied(node.desk.handle(payload))

    def issue(self) -> str:
        """Asked for by the operator, approved by the admin: the takeover command's id."""
        with self.sessions.begin() as session:
            _, created = takeovers.request(session, OLD, NEW, now=self.at(self.new),
                                           actor=OPERATOR)  # fmt: skip
            assert created
        with self.sessions.begin() as session:
            row, changed = takeovers.approve(session, OLD, key=self.key, now=self.clock(),
                                             actor=ADMIN)  # fmt: skip
            assert changed and row.command_id is not None
            return row.command_id

    def take_over(self) -> models.Command:
        command_id = self.issue()
        self.deliver(self.new, command_id)
        with self.sessions() as session:
            return commands.get(session, command_id)

    def deliver_refused(self, command_id: str, reason: str) -> None:
        with self.sessions() as session:
            payload = commands.get(session, command_id).payload
        handled = self.new.desk.handle(payload)
        assert handled.outcome == "refused" and reason in handled.message, handled.message

    def chain(self, node: str) -> list[Transfer]:
        with self.sessions() as session:
            bodies = session.scalars(
                select(LedgerEntry.body).where(LedgerEntry.node == node).order_by(LedgerEntry.seq)
            )
            return [decode_transfer(bytes(b)) for b in bodies]


def upload(ingest: Ingest, key: NodeKey, node: Node, after: int = 0) -> int:
    """Send everything in `node`'s outbox after `after` through the real ingest; the last id."""
    builder = BatchBuilder(node.store, node.runtime.key)
    while (built := builder.build(after)) is not None:
        ack = open_ack(ingest.handle_batch(node.store.node, built.payload), key)
        assert ack.status is AckStatus.OK, ack
        after = built.upto
    return after


@pytest.fixture
def world(
    tmp_path: Path,
    ingest: Ingest,
    sessions: sessionmaker[Session],
    cloud_key: NodeKey,
    clock: Clock,
) -> Iterator[World]:
    toml = write_site(tmp_path / "site", 4, subsidy=True, start=MONTH_END)
    old = Node.boot(toml, start=MONTH_END)
    try:
        with sessions.begin() as session:
            concentrators.register(session, OLD, old.runtime.key.public_key, now=clock())
            documents = documents_of(old.runtime.site.settings.config_path)
            config = commands.issue(
                session, OLD, Kind.CONFIG, {"version": 1, "documents": documents},
                key=cloud_key, now=old.clock.true_now().astimezone(dt.UTC),
            ).id  # fmt: skip
        with sessions() as session:
            payload = commands.get(session, config).payload
        applied(old.desk.handle(payload))
        old.cycles(8)
        acked = upload(ingest, cloud_key, old)  # the old box's uplink, while it had one
        seq = old.store.chain.seq
        # offline for three days: a recharge the cloud sent it is applied, nothing goes up
        clock.now = old.clock.true_now().astimezone(dt.UTC)
        with sessions.begin() as session:
            charge = recharges.recharge(
                session, account="A0001", fen=5_000, method="cash", operator="op-li",
                payment="PAY-OFFLINE", key=cloud_key, now=clock.now,
            )  # fmt: skip
            payment, command_id = charge.payment, charge.command_id
            assert command_id is not None
        with sessions() as session:
            payload = commands.get(session, command_id).payload
        applied(old.desk.handle(payload))
        old.cycles(12, every=HOURS_6)
        entries = [e.transfer for e in old.store.entries()]
        built = BatchBuilder(old.store, old.runtime.key).build(acked)
        assert built is not None
        export = list(old.store.export_lines())
        store_path = old.store.path
        died = old.clock.true_now()
    finally:
        old.close()
    first = {m: lo for m, lo, _, _ in per_meter_energy(entries)}
    new = Node.boot(replacement_site(toml, NEW), start=died + dt.timedelta(hours=2))
    try:
        with sessions.begin() as session:
            concentrators.register(session, NEW, new.runtime.key.public_key, now=clock())
        yield World(
            sessions, ingest, cloud_key, clock, store_path, first, entries[seq:],
            built.payload, export, payment, new,
        )  # fmt: skip
    finally:
        new.close()


def _union(w: World) -> list[Transfer]:
    return [*w.chain(OLD), *w.chain(CLOUD_NODE), *w.chain(NEW)]


def test_a_dead_box_replaced_its_store_lost_the_books_verify(world: World) -> None:
    w = world
    command = w.take_over()
    assert command.kind == Kind.TAKEOVER.value
    w.new.cycles(8)
    w.new_after = w.upload(w.new)
    with w.sessions() as session:
        assert commands.get(session, command.id).status == models.CommandStatus.APPLIED.value
        assert books.verify(session) == []
        old_row = session.get(models.Concentrator, OLD)
        assert old_row is not None and old_row.status == NodeStatus.RETIRED.value
        # the recharge the old box applied and never reported: voided, its payer owed it back
        charge = session.scalars(
            select(models.Recharge).where(models.Recharge.payment == w.payment)
        ).one()
        assert charge.status == models.RechargeStatus.VOIDED.value
        view = {a.account: a.node for a in session.scalars(select(models.ReportedAccount))}
        assert view == dict.fromkeys(("A0001", "A0002", "A0003", "A0004"), NEW)
        cloud_balances = {
            b.account: b.credits_posted - b.debits_posted
            for b in session.scalars(select(models.Balance))
        }
    union = _union(w)
    book = replay(union)
    assert ledger_violations(union, book.balances()) == []
    subsidies = [(t.credit, t.refs["period"]) for t in union if t.code is Code.SUBSIDY_ISSUE]
    assert len(subsidies) == len(set(subsidies)) == 8  # November's and December's, once each
    in_tail = {(t.credit, t.refs["period"]) for t in w.tail if t.code is Code.SUBSIDY_ISSUE}
    by_new = {(t.credit, t.refs["period"]) for t in w.chain(NEW) if t.code is Code.SUBSIDY_ISSUE}
    assert {p for _, p in in_tail} == {p for _, p in by_new} == {"2026-12"}
    assert in_tail == by_new  # the tail's issue, lost with the store, issued once by the new box
    tail_spans = rules.spans(w.tail)
    for meter, lo, hi, billed in per_meter_energy(union):
        assert lo == w.old_first[meter] and billed == hi - lo
        assert hi >= tail_spans[meter].reg_to  # the offline days are billed, by the new box
    for pocket, balance in w.new.store.book.balances().items():
        if not pocket.startswith("sys:"):
            assert cloud_balances.get(pocket, 0) == balance.posted, pocket
    with w.sessions.begin() as session, pytest.raises(Conflict, match="retired"):
        commands.issue(session, OLD, Kind.TIME, {}, key=w.key, now=w.clock())  # nothing goes
    # the old box, alive after all, uploads its tail: refused, nothing stored

    before = len(w.chain(OLD))
    for _ in range(2):  # sent again: one alarm, not one per batch
        ack = open_ack(w.ingest.handle_batch(OLD, w.tail_batch), w.key)
        assert ack.status is AckStatus.REFUSED and "taken over" in ack.reason
    assert len(w.chain(OLD)) == before
    with w.sessions() as session:
        alarms = session.scalars(
            select(models.Alarm.kind).where(models.Alarm.node == OLD, models.Alarm.kind.in_(
                ("retired_upload", "refused_batch")))
        ).all()  # fmt: skip
        assert alarms == ["retired_upload"]


def test_a_new_box_that_already_bills_the_meters_refuses_and_an_alarm_says_so(
    world: World,
) -> None:
    w = world
    # the new box was (wrongly) given the old box's meters and has billed them from its own
    # first reading: taking over would bill the gap twice or not at all, so it refuses
    with w.sessions.begin() as session:  # pushed as `site_config.push` does
        config = select(Command.args).where(Command.node == OLD, Command.kind == "config")
        documents = dict(session.scalars(config).one()["documents"])
        site_config.state(session, NEW).version = 1
        pushed = commands.issue(session, NEW, Kind.CONFIG, {"version": 1, "documents": documents},
                                key=w.key, now=w.at(w.new)).id  # fmt: skip
    w.deliver(w.new, pushed)
    w.new.cycles(2)
    w.at(w.new)
    w.deliver_refused(w.issue(), "already billed here")
    after = w.upload(w.new)
    with w.sessions() as session:
        kinds = session.scalars(select(models.Alarm.kind).where(models.Alarm.node == NEW)).all()
        assert "takeover_refused" in kinds
        assert _state(session) == "refused"
    # the operator cannot fix that box's meters: it is issued again (same plan, a new command)
    # and refused again; the state follows the last command
    with w.sessions.begin() as session:
        first = takeovers.get(session, OLD).command_id
        row = takeovers.reissue(session, OLD, key=w.key, now=w.clock(), actor=OPERATOR)
        second = row.command_id
        assert second != first and row.commands == [first, second]
        assert _args(session, second) == _args(session, first)  # the same plan
        assert _state(session) == "approved"  # not yet handed to the box
    w.deliver_refused(second, "already billed here")
    w.upload(w.new, after)
    with w.sessions() as session:
        assert _state(session) == "refused"
        reissued = oplog_actions(session)
    assert reissued[-1] == ("concentrator.takeover.reissue", "op-li")


def test_a_recovered_store_is_reconciled_and_nothing_is_booked_twice(world: World) -> None:
    w = world
    w.take_over()
    w.new.cycles(8)
    w.upload(w.new)
    with w.sessions() as session:
        entries_before = session.scalar(select(models.LedgerEntry.id).order_by(
            models.LedgerEntry.id.desc()).limit(1))  # fmt: skip
    with w.sessions.begin() as session:
        row = takeovers.recover(session, OLD, w.export, now=w.clock(), actor=OPERATOR)
        report = row.recovered
    assert report is not None
    assert report["tail_entries"] == len(w.tail) > 0
    assert all(m["uncovered_wh"] == 0 and m["tail_wh"] > 0 for m in report["meters"])
    assert report["payments"] == [w.payment]
    assert report["subsidy"] == {  # December's issue in the tail: the books hold the new box's
        f"{account}:2026-12": ["tail", "new_box"]
        for account in ("A0001", "A0002", "A0003", "A0004")
    }
    tail_energy = sum(s.billed for s in rules.spans(w.tail).values())
    assert sum(m["tail_wh"] for m in report["meters"]) == tail_energy
    with w.sessions() as session:
        assert books.verify(session) == []
        assert session.scalar(select(models.LedgerEntry.id).order_by(
            models.LedgerEntry.id.desc()).limit(1)) == entries_before  # fmt: skip
    union = _union(w)
    assert ledger_violations(union, replay(union).balances()) == []


def test_a_tampered_export_or_a_second_takeover_is_refused(world: World) -> None:
    w = world
    w.take_over()
    forged = [line.replace('"amount":', '"amount":1', 1) if i == len(w.export) - 3 else line
              for i, line in enumerate(w.export)]  # fmt: skip
    with w.sessions.begin() as session, pytest.raises(Invalid, match="does not verify"):
        takeovers.recover(session, OLD, forged, now=w.clock(), actor=OPERATOR)
    with w.sessions.begin() as session:
        assert takeovers.get(session, OLD).recovered is None
        _, created = takeovers.request(session, OLD, NEW, now=w.clock(), actor=OPERATOR)
        assert not created
        with pytest.raises(Conflict):
            takeovers.request(session, OLD, "edge-other", now=w.clock(), actor=OPERATOR)
    with w.sessions() as session:
        sent = session.scalars(
            select(Command.id).where(Command.node == NEW, Command.kind == Kind.TAKEOVER.value)
        ).all()
        assert len(sent) == 1


def test_a_takeover_the_cloud_cannot_plan_changes_nothing(world: World) -> None:
    w = world
    with w.sessions.begin() as session, pytest.raises(Invalid, match="configuration"):
        takeovers.request(session, NEW, OLD, now=w.clock(), actor=OPERATOR)
    with w.sessions() as session:
        for node in (OLD, NEW):
            row = session.get(models.Concentrator, node)
            assert row is not None and row.status == NodeStatus.ACTIVE.value
        assert session.scalar(select(Command.id).where(Command.kind == Kind.TAKEOVER.value)) is None


def _state(session: Session) -> str:
    row = takeovers.get(session, OLD)
    return takeovers.state(row.status, takeovers.command_status(session, row))


def _args(session: Session, command_id: str | None) -> dict[str, object]:
    assert command_id is not None
    return {k: v for k, v in commands.get(session, command_id).args.items() if k != "version"}


def oplog_actions(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(
        select(OperatorLogEntry.action, OperatorLogEntry.user)
        .where(OperatorLogEntry.target == f"node:{OLD}")
        .order_by(OperatorLogEntry.seq)
    )
    return [(a, u) for a, u in rows]


def test_a_takeover_waits_for_a_second_user_and_books_nothing_until_approved(
    world: World,
) -> None:
    w = world
    cloud_before = len(w.chain(CLOUD_NODE))
    with w.sessions.begin() as session:
        row, created = takeovers.request(session, OLD, NEW, now=w.at(w.new), actor=OPERATOR)
        assert created and row.status == "requested" and row.command_id is None
        assert row.plan["openings"] and row.plan["meters"]  # what the approver is shown
        planned = row.plan
    with w.sessions() as session:
        assert session.get(models.Concentrator, OLD).status == NodeStatus.ACTIVE.value
        assert session.scalar(select(Command.id).where(Command.kind == Kind.TAKEOVER.value)) is None
    assert len(w.chain(CLOUD_NODE)) == cloud_before
    # the one who asked cannot approve it, nor reject it
    with w.sessions.begin() as session, pytest.raises(Forbidden, match="second user"):
        takeovers.approve(session, OLD, key=w.key, now=w.clock(), actor=OPERATOR)
    with w.sessions.begin() as session, pytest.raises(Forbidden, match="second user"):
        takeovers.reject(session, OLD, now=w.clock(), actor=OPERATOR)
    # rejected: nothing booked; asked for again, it waits again
    with w.sessions.begin() as session:
        row, changed = takeovers.reject(session, OLD, now=w.clock(), actor=ADMIN)
        assert changed and row.status == "rejected" and row.approved_by == ADMIN.user
        with pytest.raises(Conflict, match="only a held one"):
            takeovers.approve(session, OLD, key=w.key, now=w.clock(), actor=ADMIN)
    assert len(w.chain(CLOUD_NODE)) == cloud_before
    with w.sessions.begin() as session:
        row, created = takeovers.request(session, OLD, NEW, now=w.clock(), actor=OPERATOR)
        assert created and row.status == "requested" and row.approved_by is None
        with pytest.raises(Conflict, match="taken over by"):
            takeovers.request(session, OLD, "edge-other", now=w.clock(), actor=OPERATOR)
    with w.sessions.begin() as session:
        row, changed = takeovers.approve(session, OLD, key=w.key, now=w.clock(), actor=ADMIN)
        assert changed and row.status == "issued" and row.plan == planned
        again, changed = takeovers.approve(session, OLD, key=w.key, now=w.clock(), actor=ADMIN)
        assert not changed and again.commands == [row.command_id]
        assert session.get(models.Concentrator, OLD).status == NodeStatus.RETIRED.value
        with pytest.raises(Conflict, match="only a refused or expired"):
            takeovers.reissue(session, OLD, key=w.key, now=w.clock(), actor=OPERATOR)
    assert len(w.chain(CLOUD_NODE)) > cloud_before  # the closings, once
    with w.sessions() as session:
        assert oplog_actions(session) == [
            ("concentrator.takeover.request", "op-li"),
            ("concentrator.takeover.reject", "admin-wang"),
            ("concentrator.takeover.request", "op-li"),
            ("concentrator.takeover", "admin-wang"),
        ]


def test_a_takeover_whose_command_expired_is_issued_again_and_applied_once(
    world: World,
) -> None:
    w = world
    first = w.issue()
    with w.sessions() as session:
        payload = commands.get(session, first).payload
    # the box applied it just before it expired, but its answer comes late
    late = w.new.desk.handle(payload)
    assert late.outcome == "applied"
    with w.sessions.begin() as session:
        later = commands.get(session, first).expires + dt.timedelta(seconds=1)
        assert commands.expire(session, later, NEW) == 1
        assert _state(session) == "expired"
        row = takeovers.reissue(session, OLD, key=w.key, now=later, actor=OPERATOR)
        second = row.command_id
        assert second is not None and second != first
    w.deliver(w.new, second)  # applied, nothing booked again (the box applies a takeover once)
    w.new.cycles(4)
    w.upload(w.new)
    with w.sessions() as session:
        assert _state(session) == "applied"
        assert books.verify(session) == []
        statuses = {c: commands.get(session, c).status for c in (first, second)}
        assert statuses == {first: "applied", second: "applied"}
    union = _union(w)
    assert ledger_violations(union, replay(union).balances()) == []
    opened = [t for t in w.chain(NEW) if t.code is Code.TAKEOVER]
    assert len(opened) == len({t.id for t in opened}) > 0  # each pocket opened once

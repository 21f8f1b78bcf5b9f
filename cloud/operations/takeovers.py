"""A dead concentrator replaced: the new box takes over the old node's accounts from the cloud's
verified copy of its chain (`ledger.takeover`; docs/architecture.md §7.6).

    takeover   old node locked (active or quarantined, not retired), new node active
               plan = ledger.takeover.plan(accounts and meters of the old node's last applied
                      configuration, its chain up to the acknowledged head `head_seq`)
               cloud chain  old pocket ↔ sys:takeover_<unit>   id takeover-close/T/pocket
               the old node's open commands failed ("retired by takeover T") and reacted to as
                      refusals (a recharge's pending voided: its payer is owed the money back)
               command takeover {takeover T, from_node, head, version, documents, plan} → new
               registry meters and shops of the old node → the new node
               old node retired: its batches are refused from now on
    recover    the old store's entries after `head_seq` (an export of it), verified against the
               chain the cloud holds (its head hash, the old key) and reconciled against the
               new box's chain (`ledger.takeover.reconcile`); nothing booked, the report kept

The takeover's reference is `T.<old node>`: one takeover per old node; asking again returns it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.chains import store as chain_store
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock
from cloud.db import registry as tables
from cloud.db.models import Command, CommandStatus, LedgerEntry, NodeStatus, Reading
from cloud.db.operations import Takeover
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import settlements
from cloud.people import oplog
from cloud.registry import site_config
from ledger import takeover as rules
from ledger.chain import Entry, NodeKey, load_public_key
from ledger.encoding import decode_transfer
from ledger.export import parse_lines
from ledger.signed import CommandKind
from ledger.transfers import Transfer
from ledger.verify import Problem, TrustedHead, verify_lines

RETIRED_REASON = "retired: taken over by {new} (takeover {ref})"


def reference_of(old: str) -> str:
    return f"T.{old}"[:64]


def _chain(session: Session, node: str, upto: int) -> list[Transfer]:
    bodies = session.scalars(
        select(LedgerEntry.body)
        .where(LedgerEntry.node == node, LedgerEntry.seq <= upto)
        .order_by(LedgerEntry.seq)
    )
    return [decode_transfer(bytes(b)) for b in bodies]


def _last_config(session: Session, node: str) -> dict[str, Any]:
    """The documents of the last configuration `node` applied."""
    command = session.scalars(
        select(Command)
        .where(
            Command.node == node,
            Command.kind.in_((CommandKind.CONFIG.value, CommandKind.TAKEOVER.value)),
            Command.status == CommandStatus.APPLIED.value,
        )
        .order_by(Command.seq.desc())
        .limit(1)
    ).first()
    swapped = session.scalars(
        select(Command.id).where(
            Command.node == node,
            Command.kind == CommandKind.METER_SWAP.value,
            Command.status == CommandStatus.APPLIED.value,
            Command.seq > (command.seq if command is not None else 0),
        )
    ).first()
    if command is None or swapped is not None:
        raise Invalid(
            f"the cloud does not know {node}'s configuration as it ran"
            + (" (a meter swap since its last configuration)" if swapped else "")
            + ": it must have applied a configuration from the cloud first"
        )
    return dict(command.args["documents"])


def _started(session: Session, node: str, meters: dict[str, int]) -> dict[str, tuple[int, str]]:
    """Per meter (address → multiplier), the register of the node's first reading of it and
    its time: where billing started if the chain never billed the meter."""
    out = {}
    for meter, multiplier in meters.items():
        first = session.execute(
            select(Reading.energy_wh, Reading.time)
            .where(Reading.node == node, Reading.meter == meter, Reading.energy_wh.is_not(None))
            .order_by(Reading.time)
            .limit(1)
        ).first()
        if first is not None and first[0] is not None:
            out[meter] = (int(first[0]) * multiplier, first[1].isoformat())
    return out


def _retire_commands(
    session: Session, old: str, ref: str, now: dt.datetime
) -> tuple[list[str], list[Transfer]]:
    """Fail the old node's open commands; the refusals' reactions (voids) to book."""
    open_ = session.scalars(
        select(Command)
        .where(Command.node == old, Command.status.in_(commands.OPEN))
        .order_by(Command.seq)
    ).all()
    reason = {"reason": f"the concentrator was retired by takeover {ref}"}
    verdicts = []
    for command in open_:
        commands.record_outcome(
            session, old, command.id, CommandStatus.FAILED, result=reason, now=now
        )
        verdicts.append(CommandVerdict(command.id, CommandStatus.FAILED, reason))
    return [c.id for c in open_], settlements.on_verdicts(session, old, verdicts, now)


def take_over(
    session: Session,
    old: str,
    new: str,
    *,
    key: NodeKey,
    now: dt.datetime,
    actor: oplog.Actor,
) -> tuple[Takeover, bool]:
    """Replace `old` by `new` (see the module's table); `(row, created)`."""
    ref = reference_of(old)
    existing = session.get(Takeover, old)
    if existing is not None:
        if existing.new_node != new:
            raise Conflict(f"{old} was taken over by {existing.new_node} already")
        return existing, False
    if old == new:
        raise Invalid("a concentrator cannot take over its own accounts")
    rows = {node: lock(session, node) for node in sorted((old, new))}
    if rows[new].status != NodeStatus.ACTIVE.value:
        raise Conflict(f"{new} is {rows[new].status}: it cannot take over accounts")
    dead = rows[old]
    if dead.status == NodeStatus.RETIRED.value:
        raise Conflict(f"{old} is retired already")
    documents = _last_config(session, old)
    docs_meters = [m for m in documents.get("meters", ()) if isinstance(m, dict)]
    meters = {str(m.get("id")): str(m.get("account")) for m in docs_meters}
    owners = {str(a.get("id")) for a in documents.get("accounts", ()) if isinstance(a, dict)}
    multipliers = {
        str(m.get("id")): m["multiplier"] if type(m.get("multiplier")) is int else 1
        for m in docs_meters
    }
    transfers = _chain(session, old, dead.head_seq)
    try:
        plan = rules.plan(owners, meters, transfers, _started(session, old, multipliers))
    except rules.TakeoverRefused as exc:
        raise Invalid(str(exc)) from None
    voided, voids = _retire_commands(session, old, ref, now)
    closings = rules.closings(ref, plan.openings, old_node=old, to_node=new, time=now.isoformat())
    chain_store.append(session, [*voids, *closings], key=key, now=now)
    record = site_config.state(session, new)
    version = record.version + 1
    args = {
        "takeover": ref,
        "from_node": old,
        "head_seq": dead.head_seq,
        "head_hash": bytes(dead.head_hash).hex(),
        "version": version,
        "documents": documents,
        **plan.args(),
    }
    command = commands.issue(
        session, new, CommandKind.TAKEOVER, args, key=key, now=now, operator=actor.user
    )
    record.version, record.pushed, record.command_id = version, now, command.id
    for table in (tables.Meter, tables.Shop):
        session.execute(update(table).where(table.node == old).values(node=new))
    before = {"status": dead.status}
    dead.status = NodeStatus.RETIRED.value
    dead.quarantine_reason = RETIRED_REASON.format(new=new, ref=ref)
    row = Takeover(
        old_node=old, reference=ref, new_node=new, head_seq=dead.head_seq,
        head_hash=bytes(dead.head_hash).hex(), command_id=command.id, plan=plan.args(),
        voided=voided, operator=actor.user, created=now, recovered=None, recovered_at=None,
        recovered_by=None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    after = {"status": dead.status, "new_node": new, "takeover": ref, "head_seq": dead.head_seq,
             "command": command.id, "voided": voided}  # fmt: skip
    oplog.record(session, actor, "concentrator.takeover", f"node:{old}", before, after, now)
    return row, True


def get(session: Session, old: str) -> Takeover:
    row = session.get(Takeover, old)
    if row is None:
        raise NotFound(f"{old} was not taken over")
    return row


def _plan_of(row: Takeover) -> rules.Plan:
    p = row.plan
    return rules.Plan(
        tuple(rules.Opening(o["pocket"], o["amount"]) for o in p["openings"]),
        tuple(rules.MeterBaseline(m["meter"], m["reg"], m["at"]) for m in p["meters"]),
        tuple(
            rules.AccountCarry(
                a["account"], a["cost_cum"], tuple(a["subsidy_issued"]),
                tuple(a["subsidy_closed"]), tuple(a["water_issued"]), tuple(a["water_closed"]),
                a.get("month", ""), a.get("month_wh", 0), a.get("month_l", 0),
            )
            for a in p["accounts"]
        ),
    )  # fmt: skip


def recover(
    session: Session,
    old: str,
    lines: Sequence[str],
    *,
    now: dt.datetime,
    actor: oplog.Actor,
) -> Takeover:
    """Reconcile the recovered store of a node taken over: `lines` is its chain export
    (`voltbook-edge ledger export`), verified with the node's key against the acknowledged head
    the takeover started from; its signed entries after that head are held against the new
    box's chain. Books nothing; refused (Invalid) if the export does not verify."""
    row = get(session, old)
    dead = lock(session, old)
    key = load_public_key(dead.public_key.encode())
    trusted = TrustedHead(row.head_seq, bytes.fromhex(row.head_hash))
    verdict = verify_lines(lines, [key], node=old, trusted=trusted)
    wrong = [f for f in verdict.findings if f.problem is not Problem.UNSIGNED_TAIL]
    if wrong:
        raise Invalid("the recovered store does not verify: " + "; ".join(map(str, wrong[:3])))
    tail = [
        record.transfer
        for _, record in parse_lines(lines)
        if isinstance(record, Entry) and row.head_seq < record.seq <= verdict.signed_through
    ]
    new_chain = _chain(session, row.new_node, 2**62)
    try:
        found = rules.reconcile(_plan_of(row), tail, new_chain)
    except rules.TakeoverRefused as exc:
        raise Invalid(str(exc)) from None
    report = {**found.report(), "unsigned_ignored": verdict.entries and (
        (verdict.last_seq or 0) - verdict.signed_through)}  # fmt: skip
    row.recovered, row.recovered_at, row.recovered_by = report, now, actor.user
    session.flush()
    oplog.record(session, actor, "concentrator.recover", f"node:{old}", {},
                 {"tail_entries": found.tail_entries}, now)  # fmt: skip
    return row


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Takeover)) or 0)

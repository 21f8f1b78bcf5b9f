"""A dead concentrator replaced: the new box takes over the old node's accounts from the cloud's
verified copy of its chain (`ledger.takeover`; docs/architecture.md §7.6). Four eyes
(`cloud.operations.four_eyes`): one user asks, a second one approves.

    request    old node not retired, new node active, the plan computable; stored `requested`
               with the plan at the old node's acknowledged head, nothing booked, no command
    approve    a second user (never the one who asked); the old node's head as when asked:
               plan = ledger.takeover.plan(accounts and meters of the old node's last applied
                      configuration, its chain up to the acknowledged head `head_seq`)
               cloud chain  old pocket ↔ sys:takeover_<unit>   id takeover-close/T/pocket
               the old node's open commands failed ("retired by takeover T") and reacted to as
                      refusals (a recharge's pending voided: its payer is owed the money back)
               command takeover {takeover T, from_node, head, version, documents, plan} → new
               registry meters and shops of the old node → the new node
               old node retired: its batches are refused from now on          `issued`
    reject     a second user: nothing booked                                  `rejected`
    verdicts   the new box applied a command of it `applied`, refused its last `refused`
               (alarm takeover_refused; `cloud.operations.settlements`)
    reissue    refused, or its last command expired: the same arguments in a new command
               (the next configuration version); the box applies a takeover once
    recover    the old store's entries after `head_seq` (an export of it), verified against the
               chain the cloud holds (its head hash, the old key) and reconciled against the
               new box's chain (`ledger.takeover.reconcile`); nothing booked, the report kept

The takeover's reference is `T.<old node>`: one takeover per old node; asking again returns it,
and a rejected one is asked for again. Every step is in the operator log.
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
from cloud.db.models import Command, CommandStatus, Concentrator, LedgerEntry, NodeStatus, Reading
from cloud.db.operations import Takeover
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import settlements
from cloud.operations.four_eyes import FourEyes
from cloud.operations.states import TAKEOVER, TakeoverEvent, TakeoverStatus
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


def _plan(session: Session, old: str, head_seq: int) -> tuple[dict[str, Any], rules.Plan]:
    """The documents `old` ran and what `new` takes over at `old`'s head `head_seq`."""
    documents = _last_config(session, old)
    docs_meters = [m for m in documents.get("meters", ()) if isinstance(m, dict)]
    meters = {str(m.get("id")): str(m.get("account")) for m in docs_meters}
    owners = {str(a.get("id")) for a in documents.get("accounts", ()) if isinstance(a, dict)}
    multipliers = {
        str(m.get("id")): m["multiplier"] if type(m.get("multiplier")) is int else 1
        for m in docs_meters
    }
    transfers = _chain(session, old, head_seq)
    try:
        return documents, rules.plan(owners, meters, transfers, _started(session, old, multipliers))
    except rules.TakeoverRefused as exc:
        raise Invalid(str(exc)) from None


def _read(session: Session, node: str) -> Concentrator:
    row = session.get(Concentrator, node)
    if row is None:
        raise NotFound(f"concentrator {node!r} is not registered")
    return row


def _nodes(session: Session, old: str, new: str, *, locked: bool) -> Concentrator:
    """The old node's row after the checks both must pass (`locked`: both locked, in one
    order, and freshly read)."""
    if old == new:
        raise Invalid("a concentrator cannot take over its own accounts")
    rows = {node: (lock if locked else _read)(session, node) for node in sorted((old, new))}
    if rows[new].status != NodeStatus.ACTIVE.value:
        raise Conflict(f"{new} is {rows[new].status}: it cannot take over accounts")
    if rows[old].status == NodeStatus.RETIRED.value:
        raise Conflict(f"{old} is retired already")
    return rows[old]


def preview(session: Session, old: str, new: str) -> Takeover:
    """What asking for `new` to take over `old` would store (not added to the session):
    the plan at `old`'s acknowledged head; refused as `request` would be."""
    dead = _nodes(session, old, new, locked=False)
    _, plan = _plan(session, old, dead.head_seq)
    return Takeover(old_node=old, reference=reference_of(old), new_node=new,
                    head_seq=dead.head_seq, head_hash=bytes(dead.head_hash).hex(),
                    status=TakeoverStatus.REQUESTED.value, plan=plan.args(), voided=[])  # fmt: skip


def request(
    session: Session, old: str, new: str, *, now: dt.datetime, actor: oplog.Actor
) -> tuple[Takeover, bool]:
    """Ask for `new` to take over `old`: stored `requested` with the plan as it stands, nothing
    booked and no command until a second user approves it (`approve`); `(row, created)`. Asking
    again for the same box returns it; a rejected takeover is opened again."""
    existing = session.get(Takeover, old)
    if existing is not None and existing.new_node != new:
        if existing.status != TakeoverStatus.REJECTED.value:
            raise Conflict(f"{old} is taken over by {existing.new_node} ({existing.status})")
    elif existing is not None and existing.status != TakeoverStatus.REJECTED.value:
        return existing, False
    planned = preview(session, old, new)
    if existing is None:
        row = planned
        row.status = TAKEOVER.start(TakeoverStatus.REQUESTED)
        session.add(row)
    else:
        row = existing
        TAKEOVER.fire(row, TakeoverEvent.REQUESTED)
        for name in ("new_node", "head_seq", "head_hash", "plan"):
            setattr(row, name, getattr(planned, name))
    row.operator, row.approved_by, row.created, row.resolved = actor.user, None, now, None
    session.flush()
    after = {"new_node": new, "takeover": row.reference, "head_seq": row.head_seq,
             "status": row.status}  # fmt: skip
    oplog.record(session, actor, "concentrator.takeover.request", f"node:{old}", {}, after, now)
    return row, True


def _issue(session: Session, row: Takeover, *, key: NodeKey, now: dt.datetime) -> None:
    """An approved takeover (see the module's table): booked, the old node retired, the command
    sent. Refused (Conflict) if the old node's head moved since it was asked for: the approver
    approves the plan they saw."""
    old, new, ref = row.old_node, row.new_node, row.reference
    dead = _nodes(session, old, new, locked=True)
    if dead.head_seq != row.head_seq:
        raise Conflict(f"{old}'s acknowledged head moved from {row.head_seq} to "
                       f"{dead.head_seq} since the takeover was asked for: reject it and ask "
                       "again")  # fmt: skip
    documents, plan = _plan(session, old, dead.head_seq)
    voided, voids = _retire_commands(session, old, ref, now)
    closings = rules.closings(ref, plan.openings, old_node=old, to_node=new, time=now.isoformat())
    chain_store.append(session, [*voids, *closings], key=key, now=now)
    args = {"takeover": ref, "from_node": old, "head_seq": dead.head_seq,
            "head_hash": bytes(dead.head_hash).hex(), "documents": documents,
            **plan.args()}  # fmt: skip
    _send(session, row, args, key=key, now=now)
    for table in (tables.Meter, tables.Shop):
        session.execute(update(table).where(table.node == old).values(node=new))
    dead.status = NodeStatus.RETIRED.value
    dead.quarantine_reason = RETIRED_REASON.format(new=new, ref=ref)
    row.plan, row.voided = plan.args(), voided


def _send(
    session: Session, row: Takeover, args: dict[str, Any], *, key: NodeKey, now: dt.datetime
) -> None:
    """The `takeover` command to the new box, with the next configuration version."""
    record = site_config.state(session, row.new_node)
    version = record.version + 1
    command = commands.issue(
        session, row.new_node, CommandKind.TAKEOVER, {**args, "version": version}, key=key,
        now=now, operator=row.approved_by or row.operator,
    )  # fmt: skip
    record.version, record.pushed, record.command_id = version, now, command.id
    row.command_id, row.commands = command.id, [*(row.commands or []), command.id]


HELD = FourEyes(
    Takeover, TAKEOVER, TakeoverEvent.APPROVED, TakeoverEvent.REJECTED, TakeoverStatus.REJECTED,
    noun="takeover", second="approves it", approved="approved", issue=_issue,
)  # fmt: skip


def approve(
    session: Session, old: str, *, key: NodeKey, now: dt.datetime, actor: oplog.Actor
) -> tuple[Takeover, bool]:
    """A second user approves the takeover of `old` (not the one who asked): booked, the
    command sent; `(row, changed)`. In the operator log."""
    row, changed = HELD.approve(session, old, approver=actor.user, key=key, now=now)
    if changed:
        after = {"status": row.status, "new_node": row.new_node, "takeover": row.reference,
                 "head_seq": row.head_seq, "command": row.command_id,
                 "voided": row.voided}  # fmt: skip
        oplog.record(session, actor, "concentrator.takeover", f"node:{old}",
                     {"status": TakeoverStatus.REQUESTED.value}, after, now)  # fmt: skip
    return row, changed


def reject(
    session: Session, old: str, *, now: dt.datetime, actor: oplog.Actor
) -> tuple[Takeover, bool]:
    """A second user turns the takeover of `old` down: nothing booked; `(row, changed)`."""
    row, changed = HELD.reject(session, old, approver=actor.user, now=now)
    if changed:
        before = {"status": TakeoverStatus.REQUESTED.value}
        oplog.record(session, actor, "concentrator.takeover.reject", f"node:{old}", before,
                     {"status": row.status}, now)  # fmt: skip
    return row, changed


def command_status(session: Session, row: Takeover) -> str | None:
    """The status of the last command the takeover sent (None while it waits)."""
    if row.command_id is None:
        return None
    return session.scalar(select(Command.status).where(Command.id == row.command_id))


def state(status: str, command: str | None) -> str:
    """The takeover's state as the console shows it: its status, and while it is issued, where
    its command is — `approved` (not yet handed to the box), `issued`, `expired`."""
    if status != TakeoverStatus.ISSUED.value:
        return status
    return {CommandStatus.PENDING.value: "approved", CommandStatus.EXPIRED.value: "expired"}.get(
        command or "", status
    )


def reissue(
    session: Session, old: str, *, key: NodeKey, now: dt.datetime, actor: oplog.Actor
) -> Takeover:
    """Send the takeover's command again, with the same plan, once the new box refused it or
    it expired (the box applies a takeover once: a command of one it applied already is
    answered applied and changes nothing, `edge.sync.takeover`). In the operator log."""
    row = HELD.get(session, old)
    lock(session, row.new_node)
    session.refresh(row)
    last = command_status(session, row)
    if not (
        row.status == TakeoverStatus.REFUSED.value
        or (row.status == TakeoverStatus.ISSUED.value and last == CommandStatus.EXPIRED.value)
    ):
        raise Conflict(f"takeover {row.reference} is {state(row.status, last)}: only a refused "
                       "or expired one is issued again")  # fmt: skip
    previous = session.get(Command, row.command_id)
    assert previous is not None  # an issued takeover has its command
    before = {"command": previous.id, "state": state(row.status, last)}
    args = {k: v for k, v in previous.args.items() if k != "version"}
    _send(session, row, args, key=key, now=now)
    TAKEOVER.fire(row, TakeoverEvent.REISSUED)
    oplog.record(session, actor, "concentrator.takeover.reissue", f"node:{old}", before,
                 {"command": row.command_id, "state": row.status}, now)  # fmt: skip
    return row


def get(session: Session, old: str) -> Takeover:
    row = session.get(Takeover, old)
    if row is None:
        raise NotFound(f"{old} was not taken over")
    return row


def listed(session: Session, *, waiting: bool = False, limit: int = 200) -> list[Takeover]:
    """The takeovers, newest first; `waiting`: only those asked for and not yet decided."""
    query = select(Takeover).order_by(Takeover.created.desc()).limit(limit)
    if waiting:
        query = query.where(Takeover.status == TakeoverStatus.REQUESTED.value)
    return list(session.scalars(query))


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
    if row.command_id is None:
        raise Conflict(f"takeover {row.reference} is {row.status}: nothing was taken over yet")
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

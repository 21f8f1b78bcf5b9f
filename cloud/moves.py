"""Tenant moves: an account changing shop. On the same concentrator no money moves (the shop
mapping reaches the edge with its next configuration; the move is recorded, `settled`). To a
shop on another concentrator the prepaid balance travels as a two-phase transfer across the
two edge chains, driven by the cloud as each side's entries arrive:

    cloud   command move_out {account, move: M, to_node} → source         status requested
    source  PENDING A:prepaid → sys:moves_in_transit, all available fen   id move-out/M
            (subsidy left is cleared there: id move-expire/M)
    cloud   on that entry: command move_in {account, move, fen, from_node}
            → destination                                                 status in_transit
    dest.   SINGLE sys:moves_in_transit → A:prepaid of fen                id move-in/M
    cloud   on that entry: command settle {pending: move-out/M, action: post, reference: M}
            → source                                                      status arrived
    source  POST of its pending                                           status settled

Refusals: move_out refused → `failed` (nothing moved); move_in refused → settle `void` at the
source, so the money returns to the account there (`voided`). A move_out applied with nothing
to carry (no entry) is `settled` with 0 fen. One open move per account.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import commands
from cloud.db.models import Account, Concentrator
from cloud.db.operations import Move
from cloud.errors import Conflict, Invalid, NotFound
from cloud.nodes import lock_active
from cloud.projection import hex_id
from cloud.refunds import open_refund, settle_id
from cloud.two_phase import alarm, reference, refused
from cloud.uplink import Outcome, VerifiedEntry
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind
from ledger.transfers import Kind

REQUESTED, IN_TRANSIT, ARRIVED, SETTLED = "requested", "in_transit", "arrived", "settled"
FAILED, VOIDED = "failed", "voided"
OPEN = (REQUESTED, IN_TRANSIT, ARRIVED)


def out_id(move: str) -> int:
    return derive_id("move-out", move)


def in_id(move: str) -> int:
    return derive_id("move-in", move)


def get(session: Session, move: str) -> Move:
    row = session.get(Move, move)
    if row is None:
        raise NotFound(f"no move {move!r}")
    return row


def request(
    session: Session,
    *,
    account: str,
    to_shop: str,
    to_node: str,
    operator: str,
    move: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> tuple[Move, bool]:
    """Record the move and, across concentrators, start it; `(row, created)`."""
    if not isinstance(to_shop, str) or not to_shop:
        raise Invalid("to_shop must name the shop the tenant moves to")
    owner = session.get(Account, account)
    if owner is None:
        raise NotFound(f"account {account!r} is not known")
    if session.get(Concentrator, to_node) is None:
        raise NotFound(f"concentrator {to_node!r} is not registered")
    ref = reference(move, "m", account, owner.node, to_node, to_shop, now.isoformat())
    for node in sorted({owner.node, to_node}):  # lock order: nodes sorted by id
        lock_active(session, node)
    existing = session.get(Move, ref, populate_existing=True)
    if existing is not None:
        if (existing.account, existing.to_node, existing.to_shop) != (account, to_node, to_shop):
            raise Conflict(f"move {ref} exists with other content")
        return existing, False
    busy = session.scalars(
        select(Move).where(Move.account == account, Move.status.in_(OPEN)).limit(1)
    ).first()
    if busy is not None:
        raise Conflict(f"{account} is already moving ({busy.id}, {busy.status})")
    if to_node == owner.node and to_shop == owner.shop:
        raise Invalid(f"{account} is already in shop {to_shop}")
    refund = open_refund(session, account)
    if refund is not None:
        raise Conflict(f"{account} has refund {refund.id} open: settle it before moving")
    row = Move(
        id=ref, account=account, from_node=owner.node, from_shop=owner.shop, to_node=to_node,
        to_shop=to_shop, status=SETTLED, fen=None, out_transfer=None, in_transfer=None,
        out_command_id=None, in_command_id=None, settle_command_id=None, operator=operator,
        created=now, updated=now,
    )  # fmt: skip
    if to_node != owner.node:
        command = commands.issue(
            session, owner.node, CommandKind.MOVE_OUT,
            {"account": account, "move": ref, "to_node": to_node},
            key=key, now=now, operator=operator,
        )  # fmt: skip
        row.status, row.out_command_id = REQUESTED, command.id
        row.out_transfer, row.in_transfer = hex_id(out_id(ref)), hex_id(in_id(ref))
    session.add(row)
    session.flush()
    return row, True


def _settle(session: Session, row: Move, action: str, key: NodeKey, now: dt.datetime) -> None:
    assert row.out_transfer is not None
    command = commands.issue(
        session, row.from_node, CommandKind.SETTLE,
        {"pending": row.out_transfer, "action": action, "reference": row.id},
        key=key, now=now, operator=row.operator,
    )  # fmt: skip
    row.settle_command_id = command.id


def on_entries(
    session: Session,
    node: str,
    booked: Mapping[str, VerifiedEntry],
    *,
    key: NodeKey,
    now: dt.datetime,
) -> None:
    """Advance the moves whose source or destination entries are in `booked`."""
    if not booked:
        return
    ids = list(booked)
    transit = system_id(System.MOVES_IN_TRANSIT)
    for row in session.scalars(
        select(Move)
        .where(Move.out_transfer.in_(ids), Move.from_node == node, Move.status == REQUESTED)
        .order_by(Move.created, Move.id)
    ):
        entry = booked[row.out_transfer or ""]
        t = entry.transfer
        if (t.debit, t.credit, t.kind) != (pocket_id(row.account, Pocket.PREPAID), transit,
                                           Kind.PENDING):  # fmt: skip
            alarm(session, node, "move_mismatch", now,
                  f"move {row.id}: source entry at seq {entry.seq} is {t.kind.value} "
                  f"{t.debit} → {t.credit}")  # fmt: skip
            continue
        command = commands.issue(
            session, row.to_node, CommandKind.MOVE_IN,
            {"account": row.account, "move": row.id, "fen": t.amount, "from_node": node},
            key=key, now=now, operator=row.operator,
        )  # fmt: skip
        row.fen, row.in_command_id = t.amount, command.id
        row.status, row.updated = IN_TRANSIT, now
    for row in session.scalars(
        select(Move)
        .where(Move.in_transfer.in_(ids), Move.to_node == node, Move.status == IN_TRANSIT)
        .order_by(Move.created, Move.id)
    ):
        _settle(session, row, "post", key, now)
        row.status, row.updated = ARRIVED, now
    if any(e.transfer.kind is Kind.POST for e in booked.values()):
        settles = {hex_id(settle_id(h, "post")): h for h in _out_transfers(session, node)}
        arrived = [settles[i] for i in ids if i in settles]
        for row in session.scalars(select(Move).where(Move.out_transfer.in_(arrived))):
            row.status, row.updated = SETTLED, now


def _out_transfers(session: Session, node: str) -> list[str]:
    """The pendings of this node's moves waiting for their settle post."""
    return [
        h
        for h in session.scalars(
            select(Move.out_transfer).where(Move.from_node == node, Move.status == ARRIVED)
        )
        if h
    ]


def on_outcomes(
    session: Session, outcomes: Sequence[Outcome], *, key: NodeKey, now: dt.datetime
) -> None:
    """Refusals fail or void a move; a move_out applied with nothing to carry settles."""
    verdicts = {o.command_id: o for o in outcomes}
    if not verdicts:
        return
    for row in session.scalars(
        select(Move).where(Move.out_command_id.in_(list(verdicts)), Move.status == REQUESTED)
    ):
        outcome = verdicts[row.out_command_id or ""]
        if refused(outcome):
            row.status, row.updated = FAILED, now
        elif outcome.status.value == "applied":
            row.fen, row.status, row.updated = 0, SETTLED, now  # no prepaid to carry
    for row in session.scalars(
        select(Move).where(Move.in_command_id.in_(list(verdicts)), Move.status == IN_TRANSIT)
    ):
        if refused(verdicts[row.in_command_id or ""]):
            _settle(session, row, "void", key, now)
            row.status, row.updated = VOIDED, now

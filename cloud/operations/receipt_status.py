"""Where a receipt's operation stands, read from the ledger and the operation's row each time
the receipt is shown: booked, pending or void, its real amount and the balance after it.

A receipt is printed at the desk, before the concentrator has booked the operation: until its
entry arrives the cloud does not know the balance after it (the edge bills, repays debt and may
refuse), so the receipt says **pending** (待入账) and shows no balance. Once the entry is in the
cloud the balance after it is the account's available prepaid fen (posted credits − posted
debits − pending debits) over the entries up to it: on its node, those up to its seq; on any
other node (an account that moved), those up to its time. A refused operation's receipt is
**void** (作废) with the concentrator's reason; the payer is owed the money back.

    kind        entry that books it (on the edge)         void when            amount
    recharge    `entry_ids.recharge(payment)`            recharge voided      the entry's
    correction  `entry_ids.correction(id)`               correction failed    the desk's, signed
    refund      `entry_ids.refund(id)` (the reservation) —                    the amount paid out
    meter_swap  the old meter's final bill, `entry_ids   swap failed          the bill's fen
                .meter_settle(swap, leg)` per leg
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from cloud.db.models import Command, LedgerEntry, Recharge, RechargeStatus
from cloud.db.operations import Correction, MeterSwap, Receipt, Refund
from cloud.keys import CLOUD_NODE
from cloud.operations.states import CorrectionStatus, MeterSwapStatus
from ledger import entry_ids
from ledger.accounts import Pocket, pocket_id

# The legs of a bill, as `edge.rules.consumption._PAY_ORDER` names them (part of the entry ids).
BILL_LEGS = ("subsidy", "prepaid", "grace", "credit", "debt")


class State(StrEnum):
    PENDING = "pending"  # the concentrator has not booked it yet
    BOOKED = "booked"
    VOID = "void"  # refused: the receipt is void


@dataclass(frozen=True, slots=True)
class Standing:
    state: State
    fen: int  # the real amount (a swap: its final bill; a correction: signed)
    balance_fen: int | None = None  # available prepaid after it, once booked
    booked: dt.datetime | None = None  # the entry's time, as its node wrote it
    reason: str = ""  # why it is void
    bill: Mapping[str, int] = field(default_factory=dict)  # a swap: Wh per tariff period
    energy_wh: int | None = None  # a swap: the energy its final bill covers


def standing(session: Session, receipt: Receipt) -> Standing:
    """Where `receipt`'s operation stands now."""
    if receipt.kind == "recharge":
        return _recharge(session, receipt)
    if receipt.kind == "correction":
        row = session.get(Correction, receipt.ref)
        if row is not None and row.status == CorrectionStatus.FAILED:
            return Standing(State.VOID, receipt.fen, reason=_refusal(session, row.command_id))
        return _booked_by(session, receipt, [receipt.transfer], receipt.fen)
    if receipt.kind == "refund":
        refund = session.get(Refund, receipt.ref)
        entry = None if refund is None else refund.pending_transfer
        return _booked_by(session, receipt, [entry] if entry else [], receipt.fen)
    if receipt.kind == "meter_swap":
        return _swap(session, receipt)
    return Standing(State.PENDING, receipt.fen)


def _recharge(session: Session, receipt: Receipt) -> Standing:
    row = session.get(Recharge, receipt.ref)
    if row is not None and row.status == RechargeStatus.VOIDED:
        return Standing(State.VOID, receipt.fen, reason=row.reason or "refused")
    entry = _entry(session, [receipt.transfer])
    if entry is None:
        return Standing(State.PENDING, receipt.fen)
    return Standing(State.BOOKED, entry.amount, _balance_after(session, receipt.account, entry),
                    entry.time)  # fmt: skip


def _swap(session: Session, receipt: Receipt) -> Standing:
    row = session.get(MeterSwap, receipt.ref)
    if row is None or row.status == MeterSwapStatus.REQUESTED:
        return Standing(State.PENDING, 0)
    if row.status == MeterSwapStatus.FAILED:
        return Standing(State.VOID, 0, reason=_refusal(session, row.command_id))
    legs = _entries(session, [f"{entry_ids.meter_settle(row.id, leg):032x}" for leg in BILL_LEGS])
    fen = sum(e.amount for e in legs if e.unit == "fen")
    energy = sum(_int(e.refs.get("energy_wh")) for e in legs)
    bill: dict[str, int] = {}
    for leg in legs:
        for label, wh in _tariff_parts(leg.refs.get("tariff")):
            bill[label] = bill.get(label, 0) + wh
    last = max(legs, key=lambda e: e.seq, default=None)
    balance = None if last is None else _balance_after(session, receipt.account, last)
    return Standing(State.BOOKED, fen, balance, None if last is None else last.time,
                    bill=bill, energy_wh=energy)  # fmt: skip


def _booked_by(session: Session, receipt: Receipt, ids: Sequence[str], fen: int) -> Standing:
    entry = _entry(session, ids)
    if entry is None:
        return Standing(State.PENDING, fen)
    balance = _balance_after(session, receipt.account, entry)
    return Standing(State.BOOKED, fen, balance, entry.time)


def _entries(session: Session, transfer_ids: Sequence[str]) -> list[LedgerEntry]:
    """The concentrators' entries with these transfer ids (an id is booked once per node)."""
    if not transfer_ids:
        return []
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.transfer_id.in_(transfer_ids), LedgerEntry.node != CLOUD_NODE)
            .order_by(LedgerEntry.node, LedgerEntry.seq)
        )
    )


def _entry(session: Session, transfer_ids: Sequence[str]) -> LedgerEntry | None:
    found = _entries(session, transfer_ids)
    return found[0] if found else None


def _balance_after(session: Session, account: str, entry: LedgerEntry) -> int:
    """The account's available prepaid fen just after `entry` (see the module docstring)."""
    prepaid = pocket_id(account, Pocket.PREPAID)
    e, pending = LedgerEntry, aliased(LedgerEntry)
    posts = e.kind.in_(("single", "post"))
    resolves = e.kind.in_(("post", "void"))
    reserved = func.coalesce(pending.amount, e.amount)
    sums = select(
        func.coalesce(func.sum(case((and_(posts, e.credit == prepaid), e.amount), else_=0)), 0),
        func.coalesce(func.sum(case((and_(posts, e.debit == prepaid), e.amount), else_=0)), 0),
        func.coalesce(func.sum(case((and_(e.kind == "pending", e.debit == prepaid), e.amount),
                                    (and_(resolves, e.debit == prepaid), -reserved),
                                    else_=0)), 0),
    ).select_from(e).outerjoin(
        pending, and_(pending.transfer_id == e.pending_id, pending.kind == "pending",
                      pending.node == e.node),
    ).where(
        or_(e.debit == prepaid, e.credit == prepaid),
        or_(and_(e.node == entry.node, e.seq <= entry.seq),
            and_(e.node != entry.node, e.time <= entry.time)),
    )  # fmt: skip
    credits, debits, debits_pending = session.execute(sums).one()
    return int(credits) - int(debits) - int(debits_pending)


def _refusal(session: Session, command_id: str | None) -> str:
    """The concentrator's reason, from the command's result (`reason`, or a rejection's); an
    operation held for a second user and rejected never had a command."""
    command = None if command_id is None else session.get(Command, command_id)
    result: Mapping[str, Any] = (command.result if command is not None else None) or {}
    reason = str(result.get("reason") or result.get("rejected") or "refused")
    message = result.get("message")
    return f"{reason}: {message}" if message and message != reason else reason


def _int(value: object) -> int:
    return value if type(value) is int else 0


def _tariff_parts(text: object) -> list[tuple[str, int]]:
    """`"peak:1200@8365;valley:300@3120"` (a fen leg's `tariff` ref) → [("peak", 1200), …]."""
    parts = []
    for part in text.split(";") if isinstance(text, str) else []:
        label, _, rest = part.partition(":")
        energy = rest.partition("@")[0]
        if label and energy.isdigit():
            parts.append((label, int(energy)))
    return parts

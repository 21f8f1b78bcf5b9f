"""Refunds: paying a tenant's *prepaid* balance back (subsidy is never refunded), with a grace
allowance that keeps the power on for a while.

    request   command refund {account, refund: R, grace_wh, grace_until}     status requested
    edge      PENDING A:prepaid → sys:refunds_payable, all available prepaid  id refund/R
              SINGLE  sys:grace_issued → A:grace of grace_wh                  id grace/R
              (arrives: the amount is known)                                  status reserved
    pay       cloud SINGLE sys:refunds_payable → sys:payments_received        id refund-payout/R
              command settle {pending: refund/R, action: post, reference: R}  status paid
              + a receipt
    cancel    command settle {…, action: void}: the money stays the tenant's  status cancelled
    edge      POST/VOID of its pending                          id settle/<pending hex>/<action>

An edge refusal of the refund command makes it `failed`. One open (requested or reserved)
refund per account, and none of an account whose available prepaid balance (in the cloud's
projection) is not above zero: there is nothing to refund. Method `original` pays back to the
account's recharges, most recent first, each up to its net (what was paid plus its posted
corrections, `payment_nets`): the refund records which ones and how much of each (`sources`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.chains import store as chain_store
from cloud.chains.alarms import raise_alarm
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.chains.projection import VerifiedEntry, hex_id, prepaid_balance
from cloud.chains.store import cloud_transfer
from cloud.db.models import Recharge, RechargeStatus, ReportedAccount
from cloud.db.operations import Correction, Move, Refund
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations.arguments import reference, whole
from cloud.operations.receipts import Voucher
from cloud.operations.states import REFUND, CorrectionStatus, RefundEvent, RefundStatus
from ledger import entry_ids
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind

METHODS = ("cash", "card", "original")
OPEN = (RefundStatus.REQUESTED.value, RefundStatus.RESERVED.value)  # one per account at a time
MAX_GRACE_WH = 1_000_000  # 1 000 kWh
MAX_GRACE_HOURS = 24 * 31


def edge_pending_id(refund: str) -> int:
    return entry_ids.refund(refund)


def settle_id(pending_hex: str, action: str) -> int:
    """The id the edge gives the post/void of a pending it holds (`CommandKind.SETTLE`)."""
    return entry_ids.settle(pending_hex, action)


def get(session: Session, refund: str) -> Refund:
    row = session.get(Refund, refund)
    if row is None:
        raise NotFound(f"no refund {refund!r}")
    return row


def open_refund(session: Session, account: str) -> Refund | None:
    return session.scalars(
        select(Refund).where(Refund.account == account, Refund.status.in_(OPEN)).limit(1)
    ).first()


def request(
    session: Session,
    *,
    account: str,
    method: str,
    grace_wh: int,
    grace_hours: int,
    operator: str,
    refund: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> tuple[Refund, bool]:
    """Ask the account's concentrator to reserve the prepaid balance; `(row, created)`."""
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    whole(grace_wh, "grace_wh", low=0, high=MAX_GRACE_WH)
    whole(grace_hours, "grace_hours", low=0, high=MAX_GRACE_HOURS)
    ref = reference(refund, "r", account, now.isoformat())
    owner = session.get(ReportedAccount, account)
    if owner is None:
        raise NotFound(f"account {account!r} is not known")
    lock_active(session, owner.node)
    existing = session.get(Refund, ref, populate_existing=True)
    if existing is not None:
        same = (existing.account, existing.method, existing.grace_wh) == (account, method, grace_wh)
        if not same:
            raise Conflict(f"refund {ref} exists with other content")
        return existing, False
    pending = open_refund(session, account)
    if pending is not None:
        raise Conflict(f"refund {pending.id} of {account} is still {pending.status}")
    if _open_move(session, account) is not None:
        raise Conflict(f"{account} is moving: refund after the move settled")
    available = prepaid_balance(session, account) or 0
    if available <= 0:
        raise Conflict(f"{account} has {available} fen of prepaid money: nothing to refund")
    grace_until = now + dt.timedelta(hours=grace_hours)
    command = commands.issue(
        session,
        owner.node,
        CommandKind.REFUND,
        {"account": account, "refund": ref, "grace_wh": grace_wh,
         "grace_until": grace_until.isoformat()},
        key=key,
        now=now,
        operator=operator,
    )  # fmt: skip
    row = Refund(
        id=ref, account=account, node=owner.node, shop=owner.shop, method=method,
        grace_wh=grace_wh, grace_until=grace_until, fen=None,
        status=REFUND.start(RefundStatus.REQUESTED),
        pending_transfer=hex_id(edge_pending_id(ref)), settle_transfer=None,
        payout_transfer=None, sources=[], command_id=command.id, settle_command_id=None,
        operator=operator, paid_by=None, receipt=None, created=now, reserved=None,
        closed=None, settled=None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, True


def _open_move(session: Session, account: str) -> Move | None:
    from cloud.operations.moves import OPEN as MOVING

    return session.scalars(
        select(Move).where(Move.account == account, Move.status.in_(MOVING)).limit(1)
    ).first()


def _settle(
    session: Session, row: Refund, action: str, *, operator: str, key: NodeKey, now: dt.datetime
) -> None:
    command = commands.issue(
        session,
        row.node,
        CommandKind.SETTLE,
        {"pending": row.pending_transfer, "action": action, "reference": row.id},
        key=key,
        now=now,
        operator=operator,
    )
    row.settle_command_id = command.id
    row.settle_transfer = hex_id(settle_id(row.pending_transfer, action))


def pay(
    session: Session, refund: str, *, operator: str, key: NodeKey, now: dt.datetime
) -> tuple[Refund, bool]:
    """Finance paid the reserved amount out: book it, settle the edge's pending (the caller
    prints the receipt, `voucher`)."""
    row = get(session, refund)
    lock_active(session, row.node)
    session.refresh(row)
    if row.status == RefundStatus.PAID:
        return row, False
    if not REFUND.allows(row.status, RefundEvent.PAY) or row.fen is None:
        raise Conflict(f"refund {refund} is {row.status}: only a reserved refund can be paid")
    payout = cloud_transfer(
        derive_id("refund-payout", row.id), system_id(System.REFUNDS_PAYABLE),
        system_id(System.PAYMENTS_RECEIVED), row.fen, Code.REFUND, now,
        refs={"refund": row.id, "account": row.account, "method": row.method,
              "operator": operator},
    )  # fmt: skip
    _settle(session, row, "post", operator=operator, key=key, now=now)
    chain_store.append(session, [payout], key=key, now=now)
    REFUND.fire(row, RefundEvent.PAY)
    row.closed, row.paid_by = now, operator
    row.payout_transfer = hex_id(payout.id)
    return row, True


def voucher(row: Refund) -> Voucher:
    """What a paid refund's receipt prints."""
    if row.fen is None or row.payout_transfer is None or row.paid_by is None:
        raise Conflict(f"refund {row.id} is {row.status}: only a paid refund has a receipt")
    sources = ", ".join(f"{s['payment']}:{s['fen']}" for s in row.sources)
    return Voucher(
        kind="refund", ref=row.id, account=row.account, fen=row.fen, method=row.method,
        operator=row.paid_by, transfer=row.payout_transfer,
        detail={"sources": sources} if row.sources else {},
    )  # fmt: skip


def cancel(
    session: Session, refund: str, *, operator: str, key: NodeKey, now: dt.datetime
) -> tuple[Refund, bool]:
    """Give up the refund: the edge voids its pending and the balance stays the tenant's."""
    row = get(session, refund)
    lock_active(session, row.node)
    session.refresh(row)
    if row.status == RefundStatus.CANCELLED:
        return row, False
    if not REFUND.allows(row.status, RefundEvent.CANCEL):
        raise Conflict(f"refund {refund} is {row.status}: it can no longer be cancelled")
    _settle(session, row, "void", operator=operator, key=key, now=now)
    REFUND.fire(row, RefundEvent.CANCEL)
    row.closed = now
    return row, True


def payment_nets(session: Session, account: str) -> list[tuple[Recharge, int]]:
    """The account's booked recharges, newest first, each with its net: what was paid plus
    every posted correction of it (`Correction.payment`)."""
    corrected = dict(
        session.execute(
            select(Correction.payment, func.sum(Correction.fen))
            .where(Correction.account == account,
                   Correction.status == CorrectionStatus.POSTED.value,
                   Correction.payment.is_not(None))
            .group_by(Correction.payment)
        ).all()
    )  # fmt: skip
    recharges = session.scalars(
        select(Recharge)
        .where(Recharge.account == account, Recharge.status == RechargeStatus.POSTED.value)
        .order_by(Recharge.created.desc(), Recharge.payment.desc())
    )
    return [(r, r.fen + int(corrected.get(r.payment) or 0)) for r in recharges]


def _sources(session: Session, account: str, amount: int) -> list[dict[str, object]]:
    """The recharges an `original` refund goes back to, newest first, each up to its net (a
    correction of it counts) less what earlier refunds already sent back to it."""
    taken: dict[str, int] = {}
    for (earlier,) in session.execute(
        select(Refund.sources).where(
            Refund.account == account, Refund.method == "original",
            Refund.status.in_((RefundStatus.RESERVED.value, RefundStatus.PAID.value)),
        )
    ):  # fmt: skip
        for source in earlier or []:
            taken[source["payment"]] = taken.get(source["payment"], 0) + int(source["fen"])
    out: list[dict[str, object]] = []
    for recharge, net in payment_nets(session, account):
        if amount <= 0:
            break
        left = net - taken.get(recharge.payment, 0)
        if left > 0:
            share = min(left, amount)
            out.append({"payment": recharge.payment, "method": recharge.method, "fen": share})
            amount -= share
    if amount > 0:
        out.append({"payment": "", "method": "cash", "fen": amount})  # paid in at the edge
    return out


def on_entries(
    session: Session, node: str, booked: Mapping[str, VerifiedEntry], now: dt.datetime
) -> None:
    """Refunds whose pending (→ reserved) or settle entry (→ settled) is in `booked`."""
    if not booked:
        return
    ids = list(booked)
    for row in session.scalars(
        select(Refund).where(Refund.pending_transfer.in_(ids)).order_by(Refund.created)
    ):
        entry = booked[row.pending_transfer]
        t = entry.transfer
        payable = (pocket_id(row.account, Pocket.PREPAID), system_id(System.REFUNDS_PAYABLE))
        if (t.debit, t.credit) != payable or t.kind is not Kind.PENDING:
            raise_alarm(session, node, "refund_mismatch", now,
                  f"refund {row.id}: edge entry {row.pending_transfer} at seq {entry.seq} is "
                  f"{t.kind.value} {t.debit} → {t.credit}, not a prepaid reservation")  # fmt: skip
            continue
        if row.fen is None:
            row.fen, row.reserved = t.amount, now
            if row.method == "original":
                row.sources = _sources(session, row.account, t.amount)
        if row.status == RefundStatus.REQUESTED:  # cancelled meanwhile: it stays cancelled
            REFUND.fire(row, RefundEvent.RESERVED)
    for row in session.scalars(select(Refund).where(Refund.settle_transfer.in_(ids))):
        row.settled = now


def on_verdicts(
    session: Session, node: str, outcomes: Sequence[CommandVerdict], now: dt.datetime
) -> None:
    """A refused refund command fails the refund; a refused settle raises an alarm."""
    failed = [o.command_id for o in outcomes if o.refused]
    if not failed:
        return
    for row in session.scalars(select(Refund).where(Refund.command_id.in_(failed))):
        if row.fen is None and REFUND.allows(row.status, RefundEvent.REFUSED):
            REFUND.fire(row, RefundEvent.REFUSED)
            row.closed = now
    for row in session.scalars(select(Refund).where(Refund.settle_command_id.in_(failed))):
        raise_alarm(session, node, "refund_settle_refused", now,
              f"refund {row.id} ({row.status}): the edge refused to settle its pending "
              f"{row.pending_transfer}")  # fmt: skip

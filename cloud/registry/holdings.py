"""Why a registry account may not be deleted: money it still holds, or books that name it.

An account's pockets (`A0001:prepaid`, `A0001:subsidy`, …) live in the ledger chains and in the
`balances` projection (`cloud.chains.projection`), not in the registry. Deleting the registry
row of an account that still holds value would leave money nobody can refund; deleting one
whose pockets appear in `ledger_entries` would leave entries no statement can name. Registry
accounts have no closed state: a tenant who leaves is refunded (`cloud.operations.refunds`) and
moved out (`cloud.operations.moves`, or the account's shop emptied), and the account row stays
as the name of its history. Only an account nothing was ever booked to may be deleted.

`account_kept` is what `cloud.registry.rows.delete` asks (`Entity.keeps`): the reason in words,
or None. Amounts are integers throughout (fen, Wh, L); fen are shown as yuan by integer division.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cloud.db.models import Balance, LedgerEntry, Recharge, RechargeStatus
from cloud.db.payments import PaymentOrder
from ledger.accounts import Pocket, pocket_id

# A payment order in one of these states (`cloud.payments.states.OrderState`, a layer above:
# named here as stored) is money on its way to or back from the account.
ORDERS_IN_FLIGHT = ("created", "paid", "refunding")


def amount_text(amount: int, unit: str) -> str:
    """`-1234, "fen"` → `"-¥12.34"`; `48800, "Wh"` → `"48800 Wh"` (integers only)."""
    if unit != "fen":
        return f"{amount} {unit}"
    sign = "-" if amount < 0 else ""
    return f"{sign}¥{abs(amount) // 100}.{abs(amount) % 100:02d}"


def held(session: Session, owner: str) -> list[str]:
    """The account's non-zero pockets and open pending amounts, as words (pocket order)."""
    pockets: dict[str, Pocket] = {pocket_id(owner, p): p for p in Pocket}
    order = list(pockets)
    rows = session.scalars(select(Balance).where(Balance.account.in_(order)))
    said = []
    for row in sorted(rows, key=lambda r: order.index(r.account)):
        name = pockets[row.account].value
        balance = row.credits_posted - row.debits_posted
        if balance:
            said.append(f"{name} {amount_text(balance, row.unit)}")
        if row.debits_pending:
            said.append(f"{name} {amount_text(row.debits_pending, row.unit)} pending out")
        if row.credits_pending:
            said.append(f"{name} {amount_text(row.credits_pending, row.unit)} pending in")
    return said


def booked(session: Session, owner: str) -> int:
    """How many ledger entries debit or credit one of the account's pockets."""
    pockets = [pocket_id(owner, p) for p in Pocket]
    query = select(func.count()).select_from(LedgerEntry)
    query = query.where(or_(LedgerEntry.debit.in_(pockets), LedgerEntry.credit.in_(pockets)))
    return int(session.scalar(query) or 0)


def in_flight(session: Session, owner: str) -> int:
    """Recharges not yet posted and payment orders not yet settled for the account."""
    recharges = session.scalar(
        select(func.count())
        .select_from(Recharge)
        .where(Recharge.account == owner, Recharge.status == RechargeStatus.PENDING.value)
    )
    orders = session.scalar(
        select(func.count())
        .select_from(PaymentOrder)
        .where(
            PaymentOrder.account == owner,
            PaymentOrder.state.in_(ORDERS_IN_FLIGHT),
        )
    )
    return int(recharges or 0) + int(orders or 0)


def account_kept(session: Session, row: Any) -> str | None:
    """Why the registry account `row` must stay, in words; None when it may be deleted."""
    owner = str(row.id)
    holds, entries, moving = held(session, owner), booked(session, owner), in_flight(session, owner)
    if holds or moving:
        parts = [f"still holds {', '.join(holds)}"] if holds else []
        if moving:
            parts.append(f"has {moving} recharge(s) or payment(s) not yet settled")
        if entries:
            parts.append(f"has {entries} ledger entries")
        return (
            f"account {owner!r} {'; '.join(parts)}; refund it or move it out first "
            "(an account with history is kept, not deleted)"
        )
    if entries:
        return (
            f"account {owner!r} has {entries} ledger entries: an account with history is kept "
            "(its books name it); refund it or move it out instead of deleting it"
        )
    return None

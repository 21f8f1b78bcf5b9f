"""The cloud's books checked whole (`voltbook-cloud books verify`): the invariants of
`ledger.invariants` over the union of every chain the cloud holds, and the finance reports
against the ledger they summarise.

- **chains**: no transfer twice and one subsidy per account and period over the union of the
  chains (an account that moved keeps one period's issue), and every edge payment credited
  exactly once (the edge chains: the cloud's own pending of a recharge is not a credit);
  every booked (posted) recharge is credited at the edge, every voided one is not;
- **projection**: the `balances` projection sums to zero per unit, and each account's posted
  balance equals the credits less the debits its ledger entries posted;
- **reports**: the deposits report's net and corrections over all time equal the cloud
  chain's recharge and correction posts (a voided recharge counts nothing, a correction of a
  payment counts on it);
- **rollup**: the consumption rollup the report pages read (`consumption_account_monthly`)
  equals the ledger's `consume` and `meter_settle` entries folded again, per account and month.

`verify(session)` returns the violations, each a sentence; an empty list is sound books.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from cloud.chains import rollups
from cloud.db.models import Balance, LedgerEntry, Recharge, RechargeStatus
from cloud.db.operations import Correction
from cloud.db.rollups import ConsumptionAccountMonthly
from cloud.keys import CLOUD_NODE
from cloud.reports import queries
from cloud.reports.core import Window, totals
from ledger import invariants
from ledger.accounts import AccountId
from ledger.book import Balance as BookBalance
from ledger.encoding import decode_transfer
from ledger.transfers import Code, Transfer

ALL_TIME = Window(dt.date(2000, 1, 1), dt.date(2999, 12, 31))
_BATCH = 5_000


def _transfers(session: Session, *where: ColumnElement[bool]) -> Iterator[tuple[str, Transfer]]:
    """(node, transfer) of every stored entry matching `where`, in storage order."""
    query = select(LedgerEntry.node, LedgerEntry.body).where(*where).order_by(LedgerEntry.id)
    for node, body in session.execute(query.execution_options(yield_per=_BATCH)):
        yield node, decode_transfer(body)


def chains(session: Session) -> list[str]:
    """The ledger invariants over the union of the chains, and the recharges against them."""
    everything = [t for _, t in _transfers(session)]
    edge = [t for node, t in _transfers(session, LedgerEntry.code == Code.RECHARGE.value)
            if node != CLOUD_NODE]  # fmt: skip
    posted = session.scalars(
        select(Recharge.payment).where(Recharge.status == RechargeStatus.POSTED.value)
    ).all()
    voided = set(
        session.scalars(
            select(Recharge.payment).where(Recharge.status == RechargeStatus.VOIDED.value)
        )
    )
    out = invariants.check_no_transfer_twice(everything)
    out += invariants.check_subsidy_once_per_period(everything)
    out += invariants.check_payments_credited_once(edge, posted)
    out += [f"payment {t.refs['payment']} credited at the edge, but its recharge is voided"
            for t in edge if t.refs.get("payment") in voided]  # fmt: skip
    return out


def projection(session: Session) -> list[str]:
    """The balances projection: zero per unit, and each account as its entries post it."""
    stored = {
        AccountId(b.account): BookBalance(
            b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted
        )
        for b in session.scalars(select(Balance))
    }
    out = invariants.check_balances_sum_to_zero(stored)
    posted: dict[str, int] = defaultdict(int)
    final = LedgerEntry.kind.in_(("single", "post"))
    for column, sign in ((LedgerEntry.credit, 1), (LedgerEntry.debit, -1)):
        for account, amount in session.execute(
            select(column, func.sum(LedgerEntry.amount)).where(final).group_by(column)
        ):
            posted[account] += sign * int(amount)
    for account in sorted(set(posted) | set(stored)):
        balance = stored.get(AccountId(account))
        have = 0 if balance is None else balance.credits_posted - balance.debits_posted
        if have != posted.get(account, 0):
            out.append(f"{account}: the projection holds {have} posted, the ledger "
                       f"{posted.get(account, 0)}")  # fmt: skip
    return out


def _cloud_posts(session: Session, code: Code) -> list[tuple[int, dict[str, object]]]:
    return [
        (int(amount), dict(refs or {}))
        for amount, refs in session.execute(
            select(LedgerEntry.amount, LedgerEntry.refs).where(
                and_(LedgerEntry.node == CLOUD_NODE, LedgerEntry.code == code.value,
                     LedgerEntry.kind == "post")
            )
        )
    ]  # fmt: skip


def reports(session: Session) -> list[str]:
    """The deposits report's totals against the cloud chain's posts."""
    _, shown = totals(session, queries.deposits(queries.Filters(ALL_TIME)))
    recharged = sum(amount for amount, _ in _cloud_posts(session, Code.RECHARGE))
    signs = {
        ref: fen
        for ref, fen in session.execute(
            select(Correction.id, Correction.fen).where(Correction.payment.is_not(None))
        )
    }
    corrected = 0
    for amount, refs in _cloud_posts(session, Code.CORRECTION):
        fen = signs.get(str(refs.get("correction")))
        if fen is not None:
            corrected += amount if fen > 0 else -amount
    out = []
    if shown["corrected_fen"] != corrected:
        out.append(f"deposits report: corrections total {shown['corrected_fen']} fen, the "
                   f"ledger's posted corrections of payments {corrected}")  # fmt: skip
    if shown["net_fen"] != recharged + corrected:
        out.append(f"deposits report: net total {shown['net_fen']} fen, the ledger's posted "
                   f"recharges and their corrections {recharged + corrected}")  # fmt: skip
    return out


def _site_day(when: dt.datetime) -> dt.date:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)  # SQLite: UTC
    return aware.astimezone(rollups.SITE_ZONE).date()


def rollup(session: Session) -> list[str]:
    """`consumption_account_monthly` against the ledger's consumption entries folded again
    (each on the site day of its stored time, as the ingest folded it)."""
    codes = [c.value for c in rollups.CONSUMPTION_CODES]
    query = (
        select(LedgerEntry.time, LedgerEntry.body)
        .where(LedgerEntry.code.in_(codes))
        .order_by(LedgerEntry.id)
        .execution_options(yield_per=_BATCH)
    )
    dated = ((decode_transfer(body), _site_day(when)) for when, body in session.execute(query))
    want: dict[tuple[str, dt.date], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    while chunk := list(itertools.islice(dated, _BATCH)):  # a year of days never sits in memory
        for key, values in rollups.account_months(rollups.by_month(rollups.fold(chunk))).items():
            want[key] = [a + b for a, b in zip(want[key], values, strict=True)]
    have = {
        (r.account, r.month): [r.wh, r.subsidy_wh, r.fen, r.entries]
        for r in session.scalars(select(ConsumptionAccountMonthly))
    }
    names = ("wh", "subsidy_wh", "fen", "entries")
    return [
        f"consumption of {account} in {month:%Y-%m}: the rollup holds "
        f"{dict(zip(names, have.get((account, month), [0] * 4), strict=True))}, the ledger "
        f"{dict(zip(names, want.get((account, month), [0] * 4), strict=True))}"
        for account, month in sorted(set(want) | set(have))
        if want.get((account, month)) != have.get((account, month))
    ]


def verify(session: Session) -> list[str]:
    """Every violation of the books, as sentences; empty when they hold."""
    return chains(session) + projection(session) + reports(session) + rollup(session)

"""The daily reconciliation: each provider's trade bill of a day (payments and refunds, Beijing
time) matched against our payment orders, payment refunds and the ledger.

    bill trade   ↔ payment_orders (by out_trade_no: paid, same amount)
                 ↔ recharges (payment = out_trade_no: pending or posted, the same fen) unless
                   the order is being or was refunded (paid after close, recharge refused)
    bill refund  ↔ payment_refunds (by out_refund_no: success, same amount)
    our side     every order paid that day (`paid_at`) and every refund that succeeded that
                 day (`finished`) must be in the bill

Every difference is a row (`KINDS`) and a `reconciliation_mismatch` alarm (a row already found
by an earlier run of the same day raises none again). The totals per provider — count, fen
paid, fen refunded — are given as the bills say and as our books say; a clean day has no rows
and equal totals. A day finance has signed off is not made again.

`compare` is the pure core (bills and our facts in, rows out); `reconcile` is the shell that
downloads (`cloud.payments.bills`) and stores (`cloud.db.reconciliations`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.models import Recharge, RechargeStatus
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.db.reconciliations import PaymentReconciliation
from cloud.errors import Conflict, Invalid, NotFound
from cloud.payments import bills
from cloud.payments.bills import Bill
from cloud.payments.providers import Providers
from cloud.payments.refunds import RefundState
from cloud.payments.states import OrderState

BEIJING = dt.timezone(dt.timedelta(hours=8))
PROVIDERS = ("wechat", "alipay")
SETTLED = (OrderState.REFUNDING.value, OrderState.REFUNDED.value)  # paid money went back
KINDS = {
    "paid_not_ours": "the provider took a payment for an order we do not know",
    "paid_not_recorded": "the provider took a payment our order does not show as paid",
    "paid_not_credited": "paid, but no recharge (pending or posted) credits it",
    "credited_not_paid": "a recharge credits an order the provider did not take that day",
    "amount_mismatch": "the provider's amount is not ours",
    "refund_not_ours": "the provider refunded under a number we do not know",
    "refund_not_at_provider": "our refund succeeded but the provider's bill lacks it",
    "refund_state_mismatch": "the provider refunded; our refund does not say success",
}


@dataclass(frozen=True, slots=True)
class Difference:
    provider: str
    kind: str
    out_trade_no: str
    out_refund_no: str
    ours_fen: int | None
    provider_fen: int | None
    detail: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.provider, self.kind, self.out_trade_no, self.out_refund_no)


@dataclass(frozen=True, slots=True)
class OurOrder:
    out_trade_no: str
    provider: str
    state: str
    paid_fen: int | None
    paid_on_day: bool
    credited_fen: int | None  # the recharge's fen (pending or posted); None: no recharge


@dataclass(frozen=True, slots=True)
class OurRefund:
    out_refund_no: str
    out_trade_no: str
    provider: str
    fen: int
    state: str
    succeeded_on_day: bool


def window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), BEIJING)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def compare(
    provider: str,
    bill: Bill,
    orders: Mapping[str, OurOrder],
    refunds: Mapping[str, OurRefund],
) -> list[Difference]:
    """Every difference between a provider's bill of a day and our facts (`orders`: those the
    bill names and those paid that day; `refunds`: likewise)."""
    rows: list[Difference] = []

    def add(  # noqa: PLR0917 (one row's fields, in the row's order)
        kind: str, trade: str, refund: str, ours: int | None, theirs: int | None, detail: str
    ) -> None:
        rows.append(Difference(provider, kind, trade, refund, ours, theirs, detail))

    billed = set()
    for line in bill.trades:
        billed.add(line.out_trade_no)
        order = orders.get(line.out_trade_no)
        if order is None or order.provider != provider:
            add("paid_not_ours", line.out_trade_no, "", None, line.fen, f"at {line.time}")
            continue
        if order.paid_fen is None:
            add(
                "paid_not_recorded",
                line.out_trade_no,
                "",
                None,
                line.fen,
                f"our order is {order.state}",
            )
            continue
        if order.paid_fen != line.fen:
            add("amount_mismatch", line.out_trade_no, "", order.paid_fen, line.fen, "paid")
        if order.credited_fen is None and order.state not in SETTLED:
            add(
                "paid_not_credited",
                line.out_trade_no,
                "",
                None,
                line.fen,
                f"our order is {order.state}",
            )
        elif order.credited_fen not in {None, line.fen} and order.paid_fen == line.fen:
            add("amount_mismatch", line.out_trade_no, "", order.credited_fen, line.fen, "credited")
    for order in orders.values():
        if order.provider != provider or order.out_trade_no in billed:
            continue
        if order.paid_on_day:
            add(
                "credited_not_paid",
                order.out_trade_no,
                "",
                order.credited_fen or order.paid_fen,
                None,
                f"our order is {order.state}, paid that day; not in the bill",
            )
        elif order.credited_fen is not None and order.paid_fen is None:
            add(
                "credited_not_paid",
                order.out_trade_no,
                "",
                order.credited_fen,
                None,
                f"our order is {order.state}, never paid",
            )
    refunded = set()
    for line in bill.refunds:
        refunded.add(line.out_refund_no)
        refund = refunds.get(line.out_refund_no)
        if refund is None or refund.provider != provider:
            add(
                "refund_not_ours",
                line.out_trade_no,
                line.out_refund_no,
                None,
                line.fen,
                f"at {line.time}",
            )
            continue
        if refund.fen != line.fen:
            add(
                "amount_mismatch",
                line.out_trade_no,
                line.out_refund_no,
                refund.fen,
                line.fen,
                "refunded",
            )
        if refund.state != RefundState.SUCCESS:
            add(
                "refund_state_mismatch",
                line.out_trade_no,
                line.out_refund_no,
                refund.fen,
                line.fen,
                f"ours is {refund.state}",
            )
    for refund in refunds.values():
        if (
            refund.provider == provider
            and refund.succeeded_on_day
            and (refund.out_refund_no not in refunded)
        ):
            add(
                "refund_not_at_provider",
                refund.out_trade_no,
                refund.out_refund_no,
                refund.fen,
                None,
                "succeeded that day by our books",
            )
    return rows


def our_facts(
    session: Session, day: dt.date, bills_of_day: Sequence[Bill]
) -> tuple[dict[str, OurOrder], dict[str, OurRefund]]:
    """The orders and refunds the bills name, and those our books put on `day`."""
    start, end = window(day)
    named_orders = {line.out_trade_no for bill in bills_of_day for line in bill.lines}
    named_refunds = {line.out_refund_no for bill in bills_of_day for line in bill.refunds}
    order_rows = {
        o.out_trade_no: o
        for o in session.scalars(
            select(PaymentOrder).where(PaymentOrder.paid_at >= start, PaymentOrder.paid_at < end)
        )
    }
    for chunk in _chunks(sorted(named_orders - set(order_rows))):
        order_rows |= {
            o.out_trade_no: o
            for o in session.scalars(
                select(PaymentOrder).where(PaymentOrder.out_trade_no.in_(chunk))
            )
        }
    # recharges of online orders made that day (credited although perhaps never paid)
    day_recharges = session.scalars(
        select(Recharge.payment)
        .join(PaymentOrder, PaymentOrder.out_trade_no == Recharge.payment)
        .where(Recharge.created >= start, Recharge.created < end)
    ).all()
    for chunk in _chunks(sorted(set(day_recharges) - set(order_rows))):
        order_rows |= {
            o.out_trade_no: o
            for o in session.scalars(
                select(PaymentOrder).where(PaymentOrder.out_trade_no.in_(chunk))
            )
        }
    credited: dict[str, int] = {}
    for chunk in _chunks(sorted(order_rows)):
        credited |= dict(
            session.execute(
                select(Recharge.payment, Recharge.fen).where(
                    Recharge.payment.in_(chunk),
                    Recharge.status.in_(
                        (RechargeStatus.PENDING.value, RechargeStatus.POSTED.value)
                    ),
                )
            ).all()
        )
    orders = {
        no: OurOrder(
            no,
            o.provider,
            o.state,
            o.paid_fen,
            o.paid_at is not None and start <= _utc(o.paid_at) < end,
            credited.get(no),
        )
        for no, o in order_rows.items()
    }
    refund_rows = {
        r.out_refund_no: r
        for r in session.scalars(
            select(PaymentRefund).where(
                PaymentRefund.state == RefundState.SUCCESS.value,
                PaymentRefund.finished >= start,
                PaymentRefund.finished < end,
            )
        )
    }
    for chunk in _chunks(sorted(named_refunds - set(refund_rows))):
        refund_rows |= {
            r.out_refund_no: r
            for r in session.scalars(
                select(PaymentRefund).where(PaymentRefund.out_refund_no.in_(chunk))
            )
        }
    providers = _providers_of(session, {r.out_trade_no for r in refund_rows.values()})
    refunds = {
        no: OurRefund(
            no,
            r.out_trade_no,
            providers.get(r.out_trade_no, ""),
            r.fen,
            r.state,
            r.state == RefundState.SUCCESS
            and r.finished is not None
            and start <= _utc(r.finished) < end,
        )
        for no, r in refund_rows.items()
    }
    return orders, refunds


def _providers_of(session: Session, numbers: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in _chunks(sorted(numbers)):
        out |= dict(
            session.execute(
                select(PaymentOrder.out_trade_no, PaymentOrder.provider).where(
                    PaymentOrder.out_trade_no.in_(chunk)
                )
            ).all()
        )
    return out


def _chunks(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def totals(
    provider: str, bill: Bill, orders: Mapping[str, OurOrder], refunds: Mapping[str, OurRefund]
) -> dict[str, int]:
    """The day's figures as the bill says and as our books (orders paid and credited that day,
    refunds that succeeded that day) say."""
    paid = [o for o in orders.values() if o.provider == provider and o.paid_on_day]
    back = [r for r in refunds.values() if r.provider == provider and r.succeeded_on_day]
    return {
        "bill_count": len(bill.trades),
        "bill_paid_fen": bill.paid_fen,
        "bill_refund_count": len(bill.refunds),
        "bill_refunded_fen": bill.refunded_fen,
        "count": len(paid),
        "paid_fen": sum(o.paid_fen or 0 for o in paid),
        "credited_fen": sum(o.credited_fen or 0 for o in paid),
        "refund_count": len(back),
        "refunded_fen": sum(r.fen for r in back),
    }


def download(providers: Providers, day: dt.date) -> dict[str, Bill]:
    """Each configured provider's bill of `day` (`ProviderUnavailable` if one cannot be had:
    a day is reconciled whole or not at all)."""
    out = {}
    if providers.wechat is not None:
        out["wechat"] = bills.download_wechat(providers.wechat, day)
    if providers.alipay is not None:
        out["alipay"] = bills.download_alipay(providers.alipay, day)
    return out


def reconcile(
    session: Session, providers: Providers, day: dt.date, now: dt.datetime
) -> PaymentReconciliation:
    """Make (or make again) the reconciliation of `day` from the providers' bills."""
    if day >= now.astimezone(BEIJING).date():
        raise Invalid(f"{day} is not over yet (Beijing time): its bills are not final")
    return store(session, day, download(providers, day), now)


def store(
    session: Session, day: dt.date, bills_by_provider: Mapping[str, Bill], now: dt.datetime
) -> PaymentReconciliation:
    """Compare the bills with our books and keep the result; alarms for new differences."""
    row = session.get(PaymentReconciliation, day, with_for_update=True)
    if row is not None and row.signed_off_by is not None:
        raise Conflict(f"the reconciliation of {day} is signed off by {row.signed_off_by}")
    orders, refunds = our_facts(session, day, list(bills_by_provider.values()))
    differences: list[Difference] = []
    figures: dict[str, dict[str, int]] = {}
    for provider in PROVIDERS:
        bill = bills_by_provider.get(provider)
        if bill is None:
            continue
        differences += compare(provider, bill, orders, refunds)
        figures[provider] = totals(provider, bill, orders, refunds)
    known = {
        (r["provider"], r["kind"], r["out_trade_no"], r["out_refund_no"])
        for r in (row.rows if row is not None else [])
    }
    for difference in differences:
        if difference.key not in known:
            raise_alarm(
                session,
                None,
                "reconciliation_mismatch",
                now,
                f"{day} {difference.provider}: {difference.kind} "
                f"{difference.out_trade_no} {difference.out_refund_no} "
                f"(ours {difference.ours_fen}, provider {difference.provider_fen} fen): "
                f"{difference.detail}",
            )
    rows = [asdict(d) for d in differences]
    state = "differences" if rows else "clean"
    if row is None:
        row = PaymentReconciliation(
            day=day,
            made=now,
            runs=1,
            state=state,
            rows=rows,
            totals=figures,
            signed_off_by=None,
            signed_off_at=None,
            note="",
        )
        session.add(row)
    else:
        row.made, row.runs, row.state, row.rows, row.totals = (
            now,
            row.runs + 1,
            state,
            rows,
            figures,
        )
    session.flush()
    return row


def get(session: Session, day: dt.date) -> PaymentReconciliation:
    row = session.get(PaymentReconciliation, day)
    if row is None:
        raise NotFound(f"no reconciliation of {day}")
    return row


def sign_off(
    session: Session, day: dt.date, *, user: str, note: str, now: dt.datetime
) -> tuple[PaymentReconciliation, bool]:
    """Finance accepts the day as it stands (a day with differences needs a note saying what
    was done about them); `(row, changed)`."""
    row = session.get(PaymentReconciliation, day, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no reconciliation of {day}")
    if row.signed_off_by is not None:
        return row, False
    if row.rows and not note.strip():
        raise Invalid(f"{day} has {len(row.rows)} differences: say in a note what was done")
    row.signed_off_by, row.signed_off_at, row.note = user, now, note
    return row, True


def due_day(session: Session, now: dt.datetime) -> dt.date | None:
    """Yesterday (Beijing time), if it has no reconciliation yet: the daily run's day."""
    yesterday = now.astimezone(BEIJING).date() - dt.timedelta(days=1)
    return None if session.get(PaymentReconciliation, yesterday) is not None else yesterday

"""What a merchant's phone page shows of its one account, read from the same stores the API
reads: balances from the ledger's `balances` projection (`cloud.chains.projection`), the price
from the registry (`cloud.registry.prices`), monthly use from `consumption_monthly`, payments
from `recharges` with their receipts, alarms from the alarm table (`cloud.operations.alarms`),
notices from `notices_feed`.

Every query is filtered by the one account the caller's login names: nothing here takes an
account from the request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.chains.rollups import SITE_ZONE
from cloud.db.models import Alarm, Balance, Recharge, ReportedAccount
from cloud.db.operations import Receipt
from cloud.db.rollups import ConsumptionMonthly
from cloud.operations.alarms import AlarmFilters, listed
from cloud.registry.prices import CurrentPrice, current_price, wh_for
from cloud.web.notices_feed import Notice, notices_for
from cloud.web.topup import OrderView, recent_orders
from ledger.accounts import Pocket, pocket_id

CHART_MONTHS = 6
HISTORY_ROWS = 20
ALARM_ROWS = 10
STATEMENT_MONTHS = 3
# The alarms a merchant is shown (its own account's), each with its words in the catalogue;
# the others (quarantine, settlement mismatches…) are for operators.
MERCHANT_ALARMS = (
    "low_balance",
    "arrears_trip",
    "arrears_close",
    "overload",
    "over_voltage",
    "malicious_load",
    "recharge_refused",
)


@dataclass(frozen=True, slots=True)
class Payment:
    payment: str
    fen: int
    method: str
    status: str  # pending | posted | voided
    time: dt.datetime
    receipt: str | None


@dataclass(frozen=True, slots=True)
class AlarmLine:
    kind: str
    time: dt.datetime
    cleared: bool


@dataclass
class AccountView:
    account: str
    shop: str = ""
    building: str = ""
    floor: str = ""
    prepaid_fen: int = 0  # available: posted, less what pending debits hold
    debt_fen: int = 0  # owed (≥ 0)
    subsidy_wh: int = 0  # free energy left this month
    recharging_fen: int = 0  # paid at the cloud, not yet booked by the concentrator
    price: CurrentPrice | None = None
    buys_wh: int | None = None  # what prepaid_fen buys at `price`
    months: list[tuple[dt.date, int]] = field(default_factory=list)  # oldest first, Wh
    payments: list[Payment] = field(default_factory=list)
    orders: list[OrderView] = field(default_factory=list)  # online payments, newest first
    alarms: list[AlarmLine] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    statement_months: list[str] = field(default_factory=list)  # YYYY-MM, newest first


def available(session: Session, account: str, pocket: Pocket) -> int:
    """A pocket's available amount: credits posted − debits posted − debits pending (as
    `cloud.chains.projection.prepaid_balance`, for any pocket); 0 if never booked."""
    row = session.get(Balance, pocket_id(account, pocket))
    if row is None:
        return 0
    return row.credits_posted - row.debits_posted - row.debits_pending


def _month_start(day: dt.date, back: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def monthly_use(session: Session, account: str, today: dt.date) -> list[tuple[dt.date, int]]:
    """Wh used in each of the last `CHART_MONTHS` months (this one last), zero when none."""
    first = _month_start(today, CHART_MONTHS - 1)
    found = dict(
        session.execute(
            select(ConsumptionMonthly.month, func.sum(ConsumptionMonthly.wh))
            .where(ConsumptionMonthly.account == account, ConsumptionMonthly.month >= first)
            .group_by(ConsumptionMonthly.month)
        ).all()
    )
    months = [_month_start(today, back) for back in range(CHART_MONTHS - 1, -1, -1)]
    return [(m, int(found.get(m) or 0)) for m in months]


def payments(session: Session, account: str) -> list[Payment]:
    rows = session.scalars(
        select(Recharge)
        .where(Recharge.account == account)
        .order_by(Recharge.created.desc(), Recharge.payment)
        .limit(HISTORY_ROWS)
    ).all()
    numbers = dict(
        session.execute(
            select(Receipt.ref, Receipt.number).where(
                Receipt.kind == "recharge",
                Receipt.account == account,
                Receipt.ref.in_([r.payment for r in rows]),
            )
        ).all()
    )
    return [
        Payment(r.payment, r.fen, r.method, r.status, r.created, numbers.get(r.payment))
        for r in rows
    ]


def alarms(session: Session, account: str) -> list[AlarmLine]:
    query = (
        listed(AlarmFilters(account=account), newest_first=True)
        .where(Alarm.kind.in_(MERCHANT_ALARMS))
        .limit(ALARM_ROWS)
    )
    return [AlarmLine(a.kind, a.time, a.cleared) for a in session.scalars(query)]


def account_view(session: Session, account: str, now: dt.datetime) -> AccountView:
    """Everything the phone page shows of `account` at `now`."""
    view = AccountView(account)
    place = session.get(ReportedAccount, account)
    if place is not None:
        view.shop, view.building, view.floor = place.shop, place.building, place.floor
    view.prepaid_fen = available(session, account, Pocket.PREPAID)
    view.debt_fen = max(0, -available(session, account, Pocket.DEBT))
    view.subsidy_wh = max(0, available(session, account, Pocket.SUBSIDY))
    view.recharging_fen = int(
        session.scalar(
            select(func.coalesce(func.sum(Recharge.fen), 0)).where(
                Recharge.account == account, Recharge.status == "pending"
            )
        )
        or 0
    )
    today = now.astimezone(SITE_ZONE).date()
    view.months = monthly_use(session, account, today)
    view.price = current_price(session, account, now, view.months[-1][1])
    if view.price is not None:
        view.buys_wh = wh_for(view.prepaid_fen, view.price.price)
    view.payments = payments(session, account)
    view.orders = recent_orders(session, account)
    view.alarms = alarms(session, account)
    view.notices = notices_for(session, account, now)
    view.statement_months = [
        _month_start(today, back).strftime("%Y-%m") for back in range(STATEMENT_MONTHS)
    ]
    return view

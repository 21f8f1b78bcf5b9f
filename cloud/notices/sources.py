"""The rows the planner decides from, read from the registry, the `balances` projection, the
`consumption_daily` rollup, the alarms the ingest copied, recharges and refunds; and whom a
notice reaches (an account's merchant: its openid and phone).

Events (a cut-off, a recharge posted, a refund paid) are read only from `LOOKBACK` back: a
server that starts with notices newly configured does not tell merchants about last year.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models import Alarm, Balance, Recharge, RechargeStatus, ReportedAccount
from cloud.db.operations import Refund
from cloud.db.registry import Account, AlarmRule, ArrearsPolicy, Merchant, Shop, Site
from cloud.db.rollups import ConsumptionDaily
from cloud.notices.outbox import Recipient
from cloud.notices.planner import AccountView, Arrears, Credited, CutOff, Window
from cloud.operations.states import RefundStatus
from ledger.accounts import Pocket, pocket_id

LOOKBACK = dt.timedelta(days=1)
USE_DAYS = 7  # the days of use the daily average is taken over
CHUNK = 500  # accounts per IN (…) query
USED_POCKETS = ("prepaid", "credit", "debt")  # the fen a merchant pays for energy


def zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def available(row: Balance | None) -> int:
    if row is None:
        return 0
    return row.credits_posted - row.debits_posted - row.debits_pending


def _arrears(policy: ArrearsPolicy | None) -> Arrears:
    if policy is None:
        return Arrears()
    windows = tuple(
        Window(dt.time.fromisoformat(start), dt.time.fromisoformat(end))
        for start, end in policy.friendly_hours
    )
    return Arrears(
        mode=policy.mode,
        cut_off=dt.time.fromisoformat(policy.cut_off),
        friendly_hours=windows,
        holidays=frozenset(dt.date.fromisoformat(day) for day in policy.holidays),
    )


def account_views(session: Session, now: dt.datetime, default_zone: str) -> list[AccountView]:
    """Every account the registry declares, with its pockets, recent use and site's rules."""
    rows = session.execute(
        select(Account, Shop.number, Site.time_zone, AlarmRule, ArrearsPolicy)
        .outerjoin(Shop, Shop.id == Account.shop_id)
        .outerjoin(Site, Site.id == Shop.site_id)
        .outerjoin(AlarmRule, AlarmRule.site_id == Site.id)
        .outerjoin(ArrearsPolicy, ArrearsPolicy.site_id == Site.id)
        .order_by(Account.id)
    ).all()
    ids = [row[0].id for row in rows]
    found = pockets(session, ids)
    daily = daily_fen(session, ids, now.astimezone(zone(None, default_zone)).date())
    views = []
    for account, shop, time_zone, rule, policy in rows:
        prepaid = found.get(pocket_id(account.id, Pocket.PREPAID))
        debt = found.get(pocket_id(account.id, Pocket.DEBT))
        views.append(
            AccountView(
                account=account.id, shop=shop or "", zone=zone(time_zone, default_zone),
                prepaid_fen=None if prepaid is None else available(prepaid),
                subsidy_wh=available(found.get(pocket_id(account.id, Pocket.SUBSIDY))),
                grace_wh=available(found.get(pocket_id(account.id, Pocket.GRACE))),
                debt_fen=0 if debt is None else debt.debits_posted - debt.credits_posted,
                credit_limit_fen=account.credit_limit_fen, keep_power=account.keep_power,
                daily_fen=daily.get(account.id),
                below_fen=None if rule is None else rule.below_fen,
                below_days=None if rule is None else rule.below_days,
                arrears=_arrears(policy),
            )
        )  # fmt: skip
    return views


def pockets(session: Session, accounts: Sequence[str]) -> dict[str, Balance]:
    ids = [pocket_id(a, p) for a in accounts for p in (Pocket.PREPAID, Pocket.SUBSIDY,
                                                        Pocket.GRACE, Pocket.DEBT)]  # fmt: skip
    found: dict[str, Balance] = {}
    for chunk in _chunks(ids):
        found.update((b.account, b) for b in session.scalars(
            select(Balance).where(Balance.account.in_(chunk))))  # fmt: skip
    return found


def daily_fen(session: Session, accounts: Sequence[str], today: dt.date) -> dict[str, int]:
    """Fen used per day over the last `USE_DAYS` whole days (rounded up), by account."""
    used: dict[str, int] = {}
    for chunk in _chunks(accounts):
        for account, fen in session.execute(
            select(ConsumptionDaily.account, func.sum(ConsumptionDaily.fen))
            .where(ConsumptionDaily.account.in_(chunk),
                   ConsumptionDaily.day >= today - dt.timedelta(days=USE_DAYS),
                   ConsumptionDaily.day < today,
                   ConsumptionDaily.pocket.in_(USED_POCKETS))
            .group_by(ConsumptionDaily.account)
        ):  # fmt: skip
            if fen and int(fen) > 0:
                used[account] = -(-int(fen) // USE_DAYS)
    return used


def _shops(session: Session, accounts: Iterable[str]) -> dict[str, str]:
    """Each account's shop number: the registry's, else the cloud's live view's."""
    wanted = sorted(set(accounts))
    shops: dict[str, str] = {}
    for chunk in _chunks(wanted):
        live = select(ReportedAccount.account, ReportedAccount.shop).where(
            ReportedAccount.account.in_(chunk)
        )
        shops.update((account, shop) for account, shop in session.execute(live) if shop)
        declared = (
            select(Account.id, Shop.number)
            .join(Shop, Shop.id == Account.shop_id)
            .where(Account.id.in_(chunk))
        )
        shops.update((account, shop) for account, shop in session.execute(declared))
    return shops


def cut_offs(session: Session, now: dt.datetime) -> list[CutOff]:
    rows = session.scalars(
        select(Alarm).where(Alarm.kind == "arrears_trip", Alarm.event_id.is_not(None),
                            Alarm.account.is_not(None), Alarm.time >= now - LOOKBACK)
        .order_by(Alarm.time, Alarm.id)
    ).all()  # fmt: skip
    shops = _shops(session, (r.account or "" for r in rows))
    return [
        CutOff(r.node or "", r.event_id or 0, r.account or "",
               r.shop or shops.get(r.account or "", ""), r.time, r.meter)
        for r in rows
    ]  # fmt: skip


def recharges_posted(session: Session, now: dt.datetime) -> list[Credited]:
    rows = session.scalars(
        select(Recharge).where(Recharge.status == RechargeStatus.POSTED.value,
                               Recharge.posted >= now - LOOKBACK)
        .order_by(Recharge.posted, Recharge.payment)
    ).all()  # fmt: skip
    shops = _shops(session, (r.account for r in rows))
    return [
        Credited(r.payment, r.account, r.fen, r.posted or now, shops.get(r.account, ""), r.method)
        for r in rows
    ]


def refunds_paid(session: Session, now: dt.datetime) -> list[Credited]:
    rows = session.scalars(
        select(Refund).where(Refund.status == RefundStatus.PAID.value,
                             Refund.closed >= now - LOOKBACK)
        .order_by(Refund.closed, Refund.id)
    ).all()  # fmt: skip
    return [Credited(r.id, r.account, r.fen or 0, r.closed or now, r.shop, r.method) for r in rows]


def merchants_of(session: Session, accounts: Iterable[str]) -> dict[str, int]:
    """Each account's merchant id (accounts the registry does not know: absent)."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(accounts))):
        query = select(Account.id, Account.merchant_id).where(Account.id.in_(chunk))
        found.update((account, merchant) for account, merchant in session.execute(query))
    return found


def recipient(merchant: Merchant) -> Recipient:
    return Recipient(merchant.id, merchant.wechat_openid or None, merchant.phone or None)


def merchant_recipient(session: Session, merchant_id: int | None) -> Recipient | None:
    merchant = None if merchant_id is None else session.get(Merchant, merchant_id)
    return None if merchant is None else recipient(merchant)

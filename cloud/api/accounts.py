"""`/accounts`: merchant accounts as their concentrators report them, with live balances.

A balance is read from the `balances` projection of every chain: posted = credits posted −
debits posted of the pocket (`A0001:prepaid` …); pending is the same over pending transfers
(a refund awaiting payout, say). A recharge paid at the cloud and not yet booked by the
concentrator shows as `recharging_fen`.

Who may: staff (`STAFF`) read every account; a merchant only its own — its list holds that one
account, and another account's id is refused (403). Installers see meters, not balances.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Offset, Out, Page, answers
from cloud.db import models
from cloud.errors import NotFound
from cloud.people.auth import STAFF, Principal, Role
from ledger.accounts import Pocket

router = APIRouter(prefix="/accounts", tags=["accounts"])

Reader = Annotated[Principal, allow(*STAFF, Role.MERCHANT)]


class Pockets(BaseModel):
    subsidy_wh: int = Field(description="free energy left, Wh (never refunded)")
    prepaid_fen: int = Field(description="money paid in and not yet spent, fen (refundable)")
    grace_wh: int = Field(description="energy allowed after a refund, Wh")


class AccountOut(Out):
    account: str = Field(description="the merchant account (owner of the pockets)")
    node: str = Field(description="its home concentrator: the only one that debits it")
    shop: str
    building: str
    floor: str
    subsidy_wh: int
    prepaid_fen: int
    grace_wh: int
    debt_fen: int = Field(
        description="owed for energy or water used with no money left, fen (≥ 0; a top-up pays "
        "it first)"
    )
    water_subsidy_l: int = Field(description="free water left this month, litres")
    pending: Pockets = Field(description="two-phase transfers in flight on its concentrator")
    recharging_fen: int = Field(
        description="recharges paid at the cloud that its concentrator has not yet booked"
    )
    meters: list[str]


# What a page can be filtered by: a bound parameter of the same name each.
FILTERS = {
    "account": models.ReportedAccount.account,
    "node": models.ReportedAccount.node,
    "shop": models.ReportedAccount.shop,
}


@functools.cache
def _count_statement(filters: tuple[str, ...]) -> Select[Any]:
    where = [FILTERS[f] == bindparam(f) for f in filters]
    return select(func.count()).select_from(models.ReportedAccount).where(*where)


@functools.cache
def _page_statement(filters: tuple[str, ...]) -> Select[Any]:
    """A page of accounts with their balances, recharges in flight and meters: one row per
    meter (one for an account with none), sorted by account and meter. Built once per set of
    `filters` (the values are bound parameters, so the compiled form is reused too)."""
    account, recharge, meter = models.ReportedAccount, models.Recharge, models.MeterState
    chosen = (
        select(account.account, account.node, account.shop, account.building, account.floor)
        .where(*(FILTERS[f] == bindparam(f) for f in filters))
        .order_by(account.account)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
        .cte("chosen")
    )
    # One pass over the recharges for the whole page (not a subquery per account).
    recharging = (
        select(recharge.account, func.sum(recharge.fen).label("fen"))
        .where(
            recharge.status == models.RechargeStatus.PENDING.value,
            recharge.account.in_(select(chosen.c.account)),
        )
        .group_by(recharge.account)
        .subquery("recharging")
    )
    # A balance is looked up by its key per account of the page (an index probe each), not
    # joined: a join may hash the whole table for a page of 50.
    balance = models.Balance
    sums = [
        select(amount).where(balance.account == chosen.c.account + f":{pocket.value}")
        .scalar_subquery()
        for pocket in Pocket
        for amount in (balance.credits_posted - balance.debits_posted,
                       balance.credits_pending - balance.debits_pending)
    ]  # fmt: skip
    return (
        select(*chosen.c, recharging.c.fen, meter.address, *sums)
        .select_from(chosen)
        .outerjoin(recharging, recharging.c.account == chosen.c.account)
        .outerjoin(meter, meter.account == chosen.c.account)
        .order_by(chosen.c.account, meter.address)
    )


def _count(session: Session, filters: Mapping[str, str]) -> int:
    return session.scalar(_count_statement(tuple(sorted(filters))), dict(filters)) or 0


def _accounts(
    session: Session, filters: Mapping[str, str], limit: int, offset: int
) -> list[AccountOut]:
    """A page of the accounts matching `filters` (sorted by id), in one statement."""
    statement = _page_statement(tuple(sorted(filters)))
    rows = session.execute(statement, {**filters, "limit": limit, "offset": offset})
    found: dict[str, AccountOut] = {}
    for owner, node, shop, building, floor, recharging_fen, meter, *sums in rows:
        out = found.get(owner)
        if out is None:
            posted = dict(zip(Pocket, (s or 0 for s in sums[0::2]), strict=True))
            pending = dict(zip(Pocket, (s or 0 for s in sums[1::2]), strict=True))
            out = found[owner] = AccountOut(
                account=owner,
                node=node,
                shop=shop,
                building=building,
                floor=floor,
                subsidy_wh=posted[Pocket.SUBSIDY],
                prepaid_fen=posted[Pocket.PREPAID],
                grace_wh=posted[Pocket.GRACE],
                debt_fen=-posted[Pocket.DEBT],
                water_subsidy_l=posted[Pocket.WATER_SUBSIDY],
                pending=Pockets(
                    subsidy_wh=pending[Pocket.SUBSIDY],
                    prepaid_fen=pending[Pocket.PREPAID],
                    grace_wh=pending[Pocket.GRACE],
                ),
                recharging_fen=int(recharging_fen or 0),
                meters=[],
            )
        if meter is not None:
            out.meters.append(meter)
    return list(found.values())


@router.get("", response_model=Page[AccountOut], summary="List accounts (sorted by id)")
def list_accounts(
    *,
    who: Reader,
    session: DbSession,
    node: Annotated[str | None, Query(description="home concentrator")] = None,
    shop: Annotated[str | None, Query(description="shop id")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    filters = {"node": node, "shop": shop}
    if who.role is Role.MERCHANT:
        filters["account"] = who.account
    given = {name: value for name, value in filters.items() if value is not None}
    total = _count(session, given)
    items = _accounts(session, given, limit, offset) if total > offset else []
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get(
    "/{account}",
    response_model=AccountOut,
    summary="One account and its balances",
    responses=answers(e403="a merchant asking for another account", e404="no such account"),
)
def get_account(
    account: Annotated[str, Path(description="merchant account, e.g. A0001")],
    who: Reader,
    session: DbSession,
) -> AccountOut:
    who.require_account(account)
    found = _accounts(session, {"account": account}, 1, 0)
    if not found:
        raise NotFound(f"no account {account!r}")
    return found[0]

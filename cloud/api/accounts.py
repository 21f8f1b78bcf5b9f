"""`/accounts`: merchant accounts as their concentrators report them, with live balances.

A balance is read from the `balances` projection of every chain: posted = credits posted −
debits posted of the pocket (`A0001:prepaid` …); pending is the same over pending transfers
(a refund awaiting payout, say). A recharge paid at the cloud and not yet booked by the
concentrator shows as `recharging_fen`.

Who may: staff (`STAFF`) read every account; a merchant only its own — its list holds that one
account, and another account's id is refused (403). Installers see meters, not balances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Offset, Out, Page, answers, page
from cloud.auth import STAFF, Principal, Role
from cloud.db import models
from cloud.errors import NotFound
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
    pending: Pockets = Field(description="two-phase transfers in flight on its concentrator")
    recharging_fen: int = Field(
        description="recharges paid at the cloud that its concentrator has not yet booked"
    )
    meters: list[str]


def _balances(session: Session, owners: Sequence[str]) -> dict[str, tuple[int, int]]:
    """account id → (posted, pending) for every pocket of `owners`."""
    ids = [f"{owner}:{pocket.value}" for owner in owners for pocket in Pocket]
    if not ids:
        return {}
    rows = session.scalars(select(models.Balance).where(models.Balance.account.in_(ids)))
    return {
        b.account: (
            b.credits_posted - b.debits_posted,
            b.credits_pending - b.debits_pending,
        )
        for b in rows
    }


def _meters(session: Session, owners: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if owners:
        rows = session.execute(
            select(models.Meter.account, models.Meter.address)
            .where(models.Meter.account.in_(owners))
            .order_by(models.Meter.address)
        )
        for owner, address in rows:
            found.setdefault(owner, []).append(address)
    return found


def _recharging(session: Session, owners: Sequence[str]) -> dict[str, int]:
    if not owners:
        return {}
    rows = session.execute(
        select(models.Recharge.account, func.sum(models.Recharge.fen))
        .where(
            models.Recharge.account.in_(owners),
            models.Recharge.status == models.RechargeStatus.PENDING.value,
        )
        .group_by(models.Recharge.account)
    )
    return {owner: int(total) for owner, total in rows}


def _out(session: Session, rows: Sequence[models.Account]) -> list[AccountOut]:
    owners = [a.account for a in rows]
    balances, meters = _balances(session, owners), _meters(session, owners)
    recharging = _recharging(session, owners)
    out = []
    for a in rows:
        posted = {p: balances.get(f"{a.account}:{p.value}", (0, 0))[0] for p in Pocket}
        pending = {p: balances.get(f"{a.account}:{p.value}", (0, 0))[1] for p in Pocket}
        out.append(
            AccountOut(
                account=a.account,
                node=a.node,
                shop=a.shop,
                building=a.building,
                floor=a.floor,
                subsidy_wh=posted[Pocket.SUBSIDY],
                prepaid_fen=posted[Pocket.PREPAID],
                grace_wh=posted[Pocket.GRACE],
                pending=Pockets(
                    subsidy_wh=pending[Pocket.SUBSIDY],
                    prepaid_fen=pending[Pocket.PREPAID],
                    grace_wh=pending[Pocket.GRACE],
                ),
                recharging_fen=recharging.get(a.account, 0),
                meters=meters.get(a.account, []),
            )
        )
    return out


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
    query = select(models.Account).order_by(models.Account.account)
    if who.role is Role.MERCHANT:
        query = query.where(models.Account.account == who.account)
    if node is not None:
        query = query.where(models.Account.node == node)
    if shop is not None:
        query = query.where(models.Account.shop == shop)
    return page(session, query, limit, offset, lambda rows: _out(session, rows))


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
    found = session.get(models.Account, account)
    if found is None:
        raise NotFound(f"no account {account!r}")
    return _out(session, [found])[0]

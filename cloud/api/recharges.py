"""`/recharges`: operators' and payments' top-ups of prepaid balances.

A recharge books a pending transfer in the cloud's chain and sends a signed `recharge` command
to the account's home concentrator; it is `posted` once the edge's entry for the same payment
arrives, or `voided` if the concentrator refuses the command (an unknown account, over a limit,
expired): the pending is released, `reason` says why, and the payer is owed a refund (finance
lists them with `GET /recharges?status=voided`). The payment id makes it idempotent: the same
payment again is the same recharge, the same payment with other content is a conflict (409).

Who may: the money desk (`MONEY_DESK`: admin, operator, finance) books recharges, as itself —
the recharge, its command and the operator log name the logged-in user. Staff read every
recharge; a merchant reads its own account's (another's is refused, 403).
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import Field, StrictInt
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import (
    CloudKey,
    DbSession,
    Limit,
    Now,
    Offset,
    Out,
    Owner,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.api.operation_lists import Reference
from cloud.db import models
from cloud.db.operations import Receipt
from cloud.db.retry import unit_of_work
from cloud.operations import recharges, records
from cloud.people.auth import MONEY_DESK, STAFF, Principal, Role
from ledger.chain import NodeKey

router = APIRouter(prefix="/recharges", tags=["recharges"])

Method = Literal["cash", "card", "wechat", "alipay", "transfer"]  # recharges.METHODS
PaymentId = Reference  # a recharge's payment id is an operation reference
RechargeFen = Annotated[
    StrictInt, Field(gt=0, le=recharges.MAX_RECHARGE_FEN, description="fen (0.01 CNY)")
]


class RechargeIn(StrictBody):
    account: Owner
    fen: RechargeFen
    method: Method
    payment: PaymentId | None = Field(
        None, description="the payment or order id; one is made up when absent"
    )


class RechargeOut(Out):
    payment: str
    account: str
    fen: int
    method: str
    operator: str = Field(description="the user who booked it")
    status: models.RechargeStatus = Field(
        description="pending until the edge books it (posted) or refuses it (voided: the payer "
        "is owed a refund)"
    )
    command_id: str | None
    pending_transfer: str = Field(description="the pending transfer in the cloud chain, hex")
    created: StoredTime
    posted: StoredTime | None
    voided: StoredTime | None = Field(None, description="when the edge's refusal arrived")
    reason: str = Field("", description="why the concentrator refused it (voided only)")
    receipt: str | None = Field(None, description="the receipt number (GET /receipts/{number})")


Reader = Annotated[Principal, allow(*STAFF, Role.MERCHANT)]


def _outs(session: Session, rows: Sequence[models.Recharge]) -> list[RechargeOut]:
    """The rows with their receipt numbers (one query for the page)."""
    payments = [r.payment for r in rows]
    numbers = dict(
        session.execute(
            select(Receipt.ref, Receipt.number).where(
                Receipt.kind == "recharge", Receipt.ref.in_(payments)
            )
        ).all()
    )
    return [
        RechargeOut.model_validate(r).model_copy(update={"receipt": numbers.get(r.payment)})
        for r in rows
    ]


@router.post(
    "",
    response_model=RechargeOut,
    status_code=status.HTTP_201_CREATED,
    summary="Top up an account's prepaid balance",
    responses={
        200: {"description": "the same payment again: the recharge already booked"},
        **answers(
            e404="unknown account",
            e409="payment id reused with other content, or the node is quarantined",
        ),
    },
)
def create_recharge(
    *,
    body: RechargeIn,
    who: Annotated[Principal, allow(*MONEY_DESK)],
    response: Response,
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> RechargeOut:
    # Committed here and run again whole if a failover cuts the transaction (`cloud.db.retry`):
    # the payment id, chosen once here when the desk sent none, makes a retry find an earlier
    # commit instead of booking twice.
    payment = body.payment or secrets.token_hex(16)
    again, out = unit_of_work(session, functools.partial(_book, body, who, payment, key, now))
    if again:
        response.status_code = status.HTTP_200_OK
    return out


def _book(  # noqa: PLR0917 (the route's values, bound by functools.partial)
    body: RechargeIn,
    who: Principal,
    payment: str,
    key: NodeKey,
    now: dt.datetime,
    session: Session,
) -> tuple[bool, RechargeOut]:
    """One try of `create_recharge`: whether the payment was booked before, and the recharge."""
    again = session.get(models.Recharge, payment) is not None
    recharge = recharges.recharge(
        session,
        account=body.account,
        fen=body.fen,
        method=body.method,
        operator=who.user,
        payment=payment,
        key=key,
        now=now,
    )
    session.flush()
    records.record(
        session, who.actor, "recharge.create", f"account:{recharge.account}", now,
        new=not again and recharge.command_id is not None and recharge.created == now,
        voucher=recharges.voucher(recharge),  # the desk prints it
        after=lambda _receipt: {k: getattr(recharge, k) for k in (
            "payment", "account", "fen", "method", "command_id", "pending_transfer")},
    )  # fmt: skip
    return again, _outs(session, [recharge])[0]


@router.get(
    "/{payment}",
    response_model=RechargeOut,
    summary="One recharge",
    responses=answers(
        e403="a merchant asking for another account's", e404="no recharge with this payment id"
    ),
)
def get_recharge(
    payment: Annotated[str, Path(description="payment or order id")],
    who: Reader,
    session: DbSession,
) -> RechargeOut:
    found = recharges.get(session, payment)
    who.require_account(found.account)
    return _outs(session, [found])[0]


@router.get("", response_model=Page[RechargeOut], summary="List recharges, oldest first")
def list_recharges(
    *,
    who: Reader,
    session: DbSession,
    account: Annotated[str | None, Query(description="merchant account")] = None,
    status_: Annotated[models.RechargeStatus | None, Query(alias="status")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Recharge).order_by(models.Recharge.created, models.Recharge.payment)
    if account is not None:
        who.require_account(account)
        query = query.where(models.Recharge.account == account)
    if who.role is Role.MERCHANT:
        query = query.where(models.Recharge.account == who.account)
    if status_ is not None:
        query = query.where(models.Recharge.status == status_.value)
    return page(session, query, limit, offset, functools.partial(_outs, session))

"""`/recharges`: operators' and payments' top-ups of prepaid balances.

A recharge books a pending transfer in the cloud's chain and sends a signed `recharge` command
to the account's home concentrator; it is `posted` once the edge's entry for the same payment
arrives. The payment id makes it idempotent: the same payment again is the same recharge, the
same payment with other content is a conflict (409).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import select

from cloud import money
from cloud.api.common import (
    CloudKey,
    DbSession,
    Limit,
    Now,
    Offset,
    Operator,
    Out,
    Owner,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.db import models
from cloud.errors import NotFound

router = APIRouter(prefix="/recharges", tags=["recharges"])

Method = Literal["cash", "card", "wechat", "alipay", "transfer"]  # money.METHODS
PaymentId = Annotated[StrictStr, Field(pattern=f"^{money.PAYMENT_ID.pattern}$")]
RechargeFen = Annotated[
    StrictInt, Field(gt=0, le=money.MAX_RECHARGE_FEN, description="fen (0.01 CNY)")
]


class RechargeIn(StrictBody):
    account: Owner
    fen: RechargeFen
    method: Method
    operator: Operator
    payment: PaymentId | None = Field(
        None, description="the payment or order id; one is made up when absent"
    )


class RechargeOut(Out):
    payment: str
    account: str
    fen: int
    method: str
    operator: str
    status: models.RechargeStatus = Field(description="pending until the edge books it")
    command_id: str | None
    pending_transfer: str = Field(description="the pending transfer in the cloud chain, hex")
    created: StoredTime
    posted: StoredTime | None


def _out(rows: Sequence[models.Recharge]) -> list[RechargeOut]:
    return [RechargeOut.model_validate(r) for r in rows]


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
    body: RechargeIn, response: Response, session: DbSession, key: CloudKey, now: Now
) -> RechargeOut:
    if body.payment is not None and session.get(models.Recharge, body.payment) is not None:
        response.status_code = status.HTTP_200_OK
    recharge = money.recharge(
        session,
        account=body.account,
        fen=body.fen,
        method=body.method,
        operator=body.operator,
        payment=body.payment,
        key=key,
        now=now,
    )
    session.flush()
    return RechargeOut.model_validate(recharge)


@router.get(
    "/{payment}",
    response_model=RechargeOut,
    summary="One recharge",
    responses=answers(e404="no recharge with this payment id"),
)
def get_recharge(
    payment: Annotated[str, Path(description="payment or order id")], session: DbSession
) -> RechargeOut:
    found = session.get(models.Recharge, payment)
    if found is None:
        raise NotFound(f"no recharge with payment {payment!r}")
    return RechargeOut.model_validate(found)


@router.get("", response_model=Page[RechargeOut], summary="List recharges, oldest first")
def list_recharges(
    session: DbSession,
    account: Annotated[str | None, Query(description="merchant account")] = None,
    status_: Annotated[models.RechargeStatus | None, Query(alias="status")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Recharge).order_by(models.Recharge.created, models.Recharge.payment)
    if account is not None:
        query = query.where(models.Recharge.account == account)
    if status_ is not None:
        query = query.where(models.Recharge.status == status_.value)
    return page(session, query, limit, offset, _out)

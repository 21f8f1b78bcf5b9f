"""`/refunds`: paying a tenant's prepaid balance back (`cloud.operations.refunds`), subsidy never.

    POST /refunds              operations ask the concentrator to reserve the balance
    POST /refunds/{id}/pay     finance paid it out: booked, the edge settles, a receipt
    POST /refunds/{id}/cancel  the balance stays the tenant's (the edge voids its pending)

A refund of method `original` that is paid sends each source paid online back through its
provider in the same transaction (`cloud.payments.original.send`; a provider that does not
answer leaves it processing for the periodic check); cash sources are paid at the desk.

Who may: `OPERATIONS` request, `PAYOUT` (admin, finance) pay, `MONEY_DESK` cancel; staff read.
A second open refund of an account is a conflict (409); the same refund id again is the same
refund (200).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import Field, StrictInt
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, Now, Out, Owner, StoredTime, StrictBody, answers
from cloud.api.operation_lists import Reference, ReferencePath
from cloud.api.operation_routes import add_change, add_create, add_reads, answer
from cloud.api.payment_refunds import providers_of
from cloud.db.operations import Refund
from cloud.operations import refunds
from cloud.payments import original
from cloud.people.auth import MONEY_DESK, OPERATIONS, PAYOUT, STAFF, Principal
from ledger.chain import NodeKey

router = APIRouter(prefix="/refunds", tags=["operations"])


class RefundIn(StrictBody):
    account: Owner
    method: Literal["cash", "card", "original"] = Field(
        description="how the money goes back: cash, card, or to the original payments"
    )
    grace_wh: StrictInt = Field(ge=0, le=refunds.MAX_GRACE_WH, description="power left, Wh")
    grace_hours: StrictInt = Field(ge=0, le=refunds.MAX_GRACE_HOURS)
    refund: Reference | None = Field(None, description="the refund's id; made up when absent")


class SourceOut(Out):
    payment: str = Field(description="the recharge paid back to ('' — paid in at the edge)")
    method: str
    fen: int


class RefundOut(Out):
    id: str
    account: str
    node: str
    shop: str
    method: str
    grace_wh: int
    grace_until: StoredTime
    status: str = Field(description="requested, reserved, paid, cancelled or failed")
    fen: int | None = Field(description="the prepaid reserved, once the edge booked it")
    pending_transfer: str
    settle_transfer: str | None
    payout_transfer: str | None
    sources: list[SourceOut] = Field(description="method original: the recharges, newest first")
    command_id: str
    settle_command_id: str | None
    operator: str
    paid_by: str | None
    receipt: str | None
    created: StoredTime
    reserved: StoredTime | None
    closed: StoredTime | None
    settled: StoredTime | None


def _book(
    body: RefundIn, who: Principal, session: Session, key: NodeKey, now: dt.datetime
) -> tuple[Refund, bool]:
    return refunds.request(
        session, account=body.account, method=body.method, grace_wh=body.grace_wh,
        grace_hours=body.grace_hours, operator=who.user, refund=body.refund, key=key, now=now,
    )  # fmt: skip


add_create(
    router, "request_refund", RefundIn, RefundOut, OPERATIONS,
    summary="Refund an account's prepaid balance",
    again="the same refund id again",
    refusals=answers(e404="unknown account", e409="a refund or move of the account is open"),
    book=_book, action="refund.request", target=lambda row: f"account:{row.account}",
)  # fmt: skip


@router.post(
    "/{refund}/pay",
    response_model=RefundOut,
    summary="Record the payout of a reserved refund (and print its receipt)",
    responses=answers(e404="no such refund", e409="not reserved (yet), or closed"),
)
def pay_refund(
    refund: ReferencePath,
    *,
    request: Request,
    who: Annotated[Principal, allow(*PAYOUT)],
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> RefundOut:
    row, changed = refunds.pay(session, refund, operator=who.user, key=key, now=now)
    if row.method == "original":
        original.send(session, providers_of(request), row, now)
    return answer(RefundOut, row, changed, who=who, session=session, now=now,
                  action="refund.pay", target=f"account:{row.account}",
                  voucher=refunds.voucher(row))  # fmt: skip


add_change(
    router, "cancel", RefundOut, MONEY_DESK, param="refund",
    summary="Cancel an open refund: the balance stays on the account",
    refusals=answers(e404="no such refund", e409="already paid or failed"),
    change=lambda session, ref, who, key, now: refunds.cancel(
        session, ref, operator=who.user, key=key, now=now
    ),
    action="refund.cancel", target=lambda row: f"account:{row.account}",
)  # fmt: skip


add_reads(router, Refund, RefundOut, STAFF, param="refund", noun="refund",
          list_summary="List refunds (filter by method)")  # fmt: skip

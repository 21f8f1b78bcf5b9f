"""`/payments/wechat/refund-notify`: WeChat Pay's refund notifications, and the payment refunds
as staff read them (`cloud.payments.refund_notices`, `cloud.payments.refunds`).

    POST /payments/wechat/refund-notify   WeChat Pay (no token: the signature is the proof);
                                          204 once what it says is committed (or already was),
                                          401 {"code": "FAIL"} when refused: WeChat retries
    GET  /payments/refunds/{out_refund_no}  one payment refund (staff)

A refused notice (401 `{"code": "FAIL"}`, as WeChat Pay reads it) changes nothing but its own
`payment_notices` row (and, for a mismatch of merchant, refund or amount, an alarm), both
committed so an operator sees what came.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from cloud.api.auth import allow
from cloud.api.common import DbSession, Now, Out, StoredTime, answers
from cloud.api.guards import client_address
from cloud.errors import NotFound
from cloud.payments import refund_notices, refunds
from cloud.payments.providers import Providers
from cloud.people.auth import STAFF, Principal

router = APIRouter(prefix="/payments", tags=["payments"])


def providers_of(request: Request) -> Providers | None:
    """The providers `[payments]` configured (None: online payments are off)."""
    providers: Providers | None = getattr(request.app.state, "providers", None)
    return providers


class WechatFail(Out):
    """A refusal as WeChat Pay reads it (it retries the notice)."""

    code: str = Field(description="FAIL")
    message: str


class PaymentRefundOut(Out):
    out_refund_no: str
    out_trade_no: str
    refund: str | None = Field(description="the refund operation it pays, if any")
    fen: int
    state: str = Field(description="processing, success, closed or abnormal")
    reason: str
    provider_refund_id: str | None
    created: StoredTime
    finished: StoredTime | None


@router.post(
    "/wechat/refund-notify",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="WeChat Pay's refund notification (signed; no token)",
    responses={
        401: {
            "model": WechatFail,
            "description": "refused: the signature, the key, the timestamp or the content",
        },
        **answers(e404="WeChat Pay is not configured"),
    },
)
async def wechat_refund_notify(request: Request, session: DbSession, now: Now) -> Response:
    body = await request.body()  # the raw bytes: what the signature covers
    providers = providers_of(request)
    if providers is None or providers.wechat is None:
        raise NotFound("WeChat Pay is not configured")
    code, content = await run_in_threadpool(
        refund_notices.handle, session, providers.wechat, dict(request.headers), body,
        now=now, address=client_address(request),
    )  # fmt: skip
    return Response(content, status_code=code,
                    media_type="application/json" if content else None)  # fmt: skip


@router.get(
    "/refunds/{out_refund_no}",
    response_model=PaymentRefundOut,
    summary="One refund to an original payment",
    responses=answers(e404="no such payment refund"),
)
def get_payment_refund(
    out_refund_no: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-|*@]{1,64}$")],
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
) -> PaymentRefundOut:
    return PaymentRefundOut.model_validate(refunds.get(session, out_refund_no))

"""`/payments`: merchants paying on their phones (WeChat Pay, Alipay), and the providers'
notifications (`cloud.payments`).

    POST /payments/orders                 a merchant (its own account) or the money desk opens
                                          an order; the answer's `pay` is what the phone needs
    GET  /payments/orders/{out_trade_no}  its state and every transition with its cause
    GET  /payments/orders                 paged; filters account, state, provider
    POST /payments/orders/{no}/close      cancel an unpaid order (at the provider too)
    POST /payments/wechat/notify          WeChat Pay's notifications (no login: signed)
    POST /payments/alipay/notify          Alipay's notifications (no login: signed)

Without `[payments]` in cloud.toml the order endpoints answer 409 "online payments are not
configured". A provider that cannot be reached (or answers what we cannot verify) is 502
`provider_unavailable`; one that refuses the order, 409.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

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
from cloud.api.guards import client_address
from cloud.db.payments import PaymentOrder, PaymentTransition
from cloud.db.retry import unit_of_work
from cloud.errors import NotFound
from cloud.operations import recharges, records
from cloud.payments import notices, orders
from cloud.payments.providers import Providers
from cloud.payments.states import OrderEvent, OrderState
from cloud.people.auth import MONEY_DESK, STAFF, Principal, Role

router = APIRouter(prefix="/payments", tags=["payments"])

Provider = Literal["wechat", "alipay"]
Channel = Literal["jsapi", "native", "h5", "wap", "precreate"]
TradeNo = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,32}$", description="out_trade_no")]


class OrderIn(StrictBody):
    account: Owner
    fen: Annotated[StrictInt, Field(gt=0, le=recharges.MAX_RECHARGE_FEN, description="fen")]
    provider: Provider
    channel: Channel = Field(description="WeChat: jsapi, native, h5; Alipay: wap, precreate")
    payer: StrictStr | None = Field(None, max_length=128, description="WeChat openid (jsapi)")
    return_url: StrictStr | None = Field(None, max_length=1024, description="back to after pay")


class TransitionOut(Out):
    at: StoredTime
    from_state: str | None
    to_state: str
    cause: str
    facts: dict[str, Any]


class OrderOut(Out):
    out_trade_no: str
    account: str
    fen: int
    provider: str
    channel: str
    state: OrderState
    created_by: str
    pay: dict[str, Any] = Field(description="what the phone needs: jsapi parameters, code_url, "
                                "h5_url, page_url or qr_code")  # fmt: skip
    transaction_id: str | None
    paid_fen: int | None
    refunded_fen: int
    created: StoredTime
    expires: StoredTime
    paid_at: StoredTime | None
    credited_at: StoredTime | None
    closed_at: StoredTime | None
    transitions: list[TransitionOut] = Field(default_factory=list)


Payer = Annotated[Principal, allow(*MONEY_DESK, Role.MERCHANT)]
Reader = Annotated[Principal, allow(*STAFF, Role.MERCHANT)]


def _providers(request: Request) -> Providers | None:
    found: Providers | None = getattr(request.app.state, "providers", None)
    return found


def _out(session: Session, row: PaymentOrder, *, transitions: bool = True) -> OrderOut:
    out = OrderOut.model_validate(row)
    if transitions:
        found = session.scalars(
            select(PaymentTransition)
            .where(PaymentTransition.out_trade_no == row.out_trade_no)
            .order_by(PaymentTransition.id)
        ).all()
        out.transitions = [TransitionOut.model_validate(t) for t in found]
    return out


def _visible(session: Session, who: Principal, out_trade_no: str) -> PaymentOrder:
    row = orders.get(session, out_trade_no)
    if not who.may_see(row.account):
        raise NotFound(f"no payment order {out_trade_no!r}")  # not even that it exists
    return row


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=status.HTTP_201_CREATED,
    summary="Open a payment order (a top-up paid by WeChat Pay or Alipay)",
    responses=answers(
        e403="a merchant paying into another account",
        e404="unknown account",
        e409="payments not configured, or the provider refused the order",
        e502="the provider could not be reached",
    ),
)
def create_order(
    *, body: OrderIn, who: Payer, request: Request, session: DbSession, now: Now
) -> OrderOut:
    who.require_account(body.account)
    row = orders.create(
        session, _providers(request), account=body.account, fen=body.fen,
        provider=body.provider, channel=body.channel, created_by=who.user, payer=body.payer,
        return_url=body.return_url, now=now, client_ip=client_address(request) or None,
    )  # fmt: skip
    records.record(
        session, who.actor, "payment.create", f"account:{row.account}", now, new=True,
        after=lambda _receipt: {k: getattr(row, k) for k in (
            "out_trade_no", "account", "fen", "provider", "channel", "state")},
    )  # fmt: skip
    return _out(session, row)


@router.get(
    "/orders/{out_trade_no}",
    response_model=OrderOut,
    summary="One payment order, with every transition and its cause",
    responses=answers(e404="no such order (or another merchant's)"),
)
def get_order(out_trade_no: TradeNo, who: Reader, session: DbSession) -> OrderOut:
    return _out(session, _visible(session, who, out_trade_no))


@router.get("/orders", response_model=Page[OrderOut], summary="List payment orders, newest first")
def list_orders(
    *,
    who: Reader,
    session: DbSession,
    account: Annotated[str | None, Query(description="merchant account")] = None,
    state: Annotated[OrderState | None, Query()] = None,
    provider: Annotated[Provider | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(PaymentOrder).order_by(
        PaymentOrder.created.desc(), PaymentOrder.out_trade_no.desc()
    )
    if account is not None:
        who.require_account(account)
        query = query.where(PaymentOrder.account == account)
    if who.role is Role.MERCHANT:
        query = query.where(PaymentOrder.account == who.account)
    if state is not None:
        query = query.where(PaymentOrder.state == state.value)
    if provider is not None:
        query = query.where(PaymentOrder.provider == provider)
    return page(session, query, limit, offset,
                lambda rows: [_out(session, r, transitions=False) for r in rows])  # fmt: skip


@router.post(
    "/orders/{out_trade_no}/close",
    response_model=OrderOut,
    summary="Cancel an unpaid payment order (closed at the provider too)",
    responses=answers(
        e404="no such order (or another merchant's)",
        e409="not open any more (paid, closed…), or payments not configured",
        e502="the provider could not be reached",
    ),
)
def close_order(
    *,
    out_trade_no: TradeNo, who: Payer, request: Request, session: DbSession, key: CloudKey,
    now: Now,
) -> OrderOut:  # fmt: skip
    row = _visible(session, who, out_trade_no)
    providers = orders.configured(_providers(request))
    row = orders.close(session, providers, row, event=OrderEvent.CANCELLED, cause="cancelled",
                       key=key, now=now, facts={"by": who.user})  # fmt: skip
    records.record(
        session, who.actor, "payment.close", f"account:{row.account}", now, new=True,
        after=lambda _receipt: {"out_trade_no": row.out_trade_no, "state": row.state},
    )  # fmt: skip
    return _out(session, row)


def _answer(answer: notices.NoticeAnswer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)


WECHAT_FAIL = {
    "type": "object",
    "properties": {"code": {"type": "string", "enum": ["FAIL"]}, "message": {"type": "string"}},
    "required": ["code", "message"],
}
WECHAT_DOC: dict[int | str, dict[str, Any]] = {
    204: {"description": "taken (credited, or a duplicate): WeChat Pay stops sending it"},
    401: {
        "description": "refused: the signature, the key, the timestamp or the content",
        "content": {"application/json": {"schema": WECHAT_FAIL}},
    },
}
ALIPAY_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`success` (taken) or `fail` (refused: Alipay sends it again)",
        "content": {"text/plain": {"schema": {"type": "string", "enum": ["success", "fail"]}}},
    },
}


@router.post("/wechat/notify", summary="WeChat Pay's notifications", status_code=204,
             response_class=Response, responses=WECHAT_DOC)  # fmt: skip
async def wechat_notify(request: Request, session: DbSession, key: CloudKey, now: Now) -> Response:
    body = await request.body()  # the raw bytes the signature is over, never re-serialised
    work = functools.partial(
        notices.wechat_notice, providers=_providers(request), headers=dict(request.headers),
        body=body, address=client_address(request), key=key, now=now,
    )  # fmt: skip
    # Run again whole if a failover cuts it (`cloud.db.retry`): settling is exactly-once per
    # transaction id, so a retry after an unanswered commit finds it and answers `duplicate`.
    answer = await run_in_threadpool(unit_of_work, session, work)
    return _answer(answer)


@router.post("/alipay/notify", summary="Alipay's notifications (answers success or fail)",
             response_class=Response, responses=ALIPAY_DOC)  # fmt: skip
async def alipay_notify(request: Request, session: DbSession, key: CloudKey, now: Now) -> Response:
    body = await request.body()
    work = functools.partial(
        notices.alipay_notice, providers=_providers(request), body=body,
        address=client_address(request), key=key, now=now,
    )  # fmt: skip
    answer = await run_in_threadpool(unit_of_work, session, work)
    return _answer(answer)

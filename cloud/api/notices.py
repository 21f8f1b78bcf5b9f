"""`/notices`: what the merchants were told, and how far each notice got; and power-off notices
the operations desk issues.

Notices are made by the server's notices loop (`cloud.notices.service`: low balance, arrears
warnings, cut-offs, recharges credited, refunds paid) and by `POST /notices/power-off`; each
shows its deliveries by channel (`wechat`, `sms`) with state, attempts, next attempt, last
error and when it was sent.

Who may: staff read every notice; a merchant reads the notices of its own account and the
power-off notices addressed to its merchant (naming its shops), nothing else (another account's is
refused, 403; another's notice by id is not found). The operations desk (admin, operator)
issues power-off notices; the operator log names who.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Instant,
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
from cloud.db.notices import Notice, NoticeDelivery
from cloud.db.registry import Account
from cloud.errors import NotFound
from cloud.notices import power_off
from cloud.notices.outbox import DeliveryState, NoticeKind, NoticeState
from cloud.people.auth import OPERATIONS, STAFF, Principal, Role

router = APIRouter(prefix="/notices", tags=["notices"])

Reader = Annotated[Principal, allow(*STAFF, Role.MERCHANT)]
ShopNumber = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class DeliveryOut(Out):
    channel: str = Field(description="wechat (Official Account template message) or sms")
    recipient: str = Field(description="the openid or phone number it went to")
    state: DeliveryState = Field(
        description="pending, sending, sent, failed, or fallback (the next channel took over)"
    )
    attempts: int
    next_attempt: StoredTime = Field(description="when a pending delivery is tried next")
    last_error: str = Field(description="what the provider or the network said last")
    provider_id: str | None = Field(description="the provider's message id once sent")
    sent: StoredTime | None


class NoticeOut(Out):
    id: int
    kind: NoticeKind
    account: str | None
    merchant_id: int | None
    shop: str
    facts: dict[str, Any] = Field(description="what the message is written from")
    state: NoticeState = Field(
        description="pending, sent (a channel delivered it), failed (every channel gave up), "
        "unreachable (the merchant has no openid and no phone, or no channel is configured)"
    )
    operator: str = Field(description="who issued it (power-off); empty: the planner")
    created: StoredTime
    deliveries: list[DeliveryOut]


def _outs(session: Session, rows: Sequence[Notice]) -> list[NoticeOut]:
    """The notices with their deliveries (one query for the page)."""
    deliveries: dict[int, list[NoticeDelivery]] = {}
    for row in session.scalars(
        select(NoticeDelivery)
        .where(NoticeDelivery.notice_id.in_([n.id for n in rows]))
        .order_by(NoticeDelivery.notice_id, NoticeDelivery.next_attempt)
    ):
        deliveries.setdefault(row.notice_id, []).append(row)
    columns = [column.key for column in Notice.__table__.columns]
    return [
        NoticeOut.model_validate(
            {c: getattr(n, c) for c in columns}
            | {"deliveries": [DeliveryOut.model_validate(d) for d in deliveries.get(n.id, [])]}
        )
        for n in rows
    ]


def _visible(session: Session, who: Principal) -> ColumnElement[bool] | None:
    """What a merchant may see (None: staff, everything)."""
    if who.role is not Role.MERCHANT:
        return None
    if who.account is None:
        return false()
    merchant = session.scalar(select(Account.merchant_id).where(Account.id == who.account))
    mine = Notice.account == who.account
    if merchant is None:
        return mine
    addressed = and_(Notice.kind == NoticeKind.POWER_OFF.value, Notice.merchant_id == merchant)
    return or_(mine, addressed)


@router.get("", response_model=Page[NoticeOut], summary="List notices, oldest first")
def list_notices(
    *,
    who: Reader,
    session: DbSession,
    account: Annotated[Owner | None, Query(description="merchant account")] = None,
    kind: Annotated[NoticeKind | None, Query()] = None,
    state: Annotated[NoticeState | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(Notice).order_by(Notice.id)
    if account is not None:
        who.require_account(account)
        query = query.where(Notice.account == account)
    visible = _visible(session, who)
    if visible is not None:
        query = query.where(visible)
    if kind is not None:
        query = query.where(Notice.kind == kind.value)
    if state is not None:
        query = query.where(Notice.state == state.value)
    return page(session, query, limit, offset, functools.partial(_outs, session))


@router.get(
    "/{notice_id}",
    response_model=NoticeOut,
    summary="One notice and its deliveries",
    responses=answers(e404="no such notice (or not the merchant's)"),
)
def get_notice(
    notice_id: Annotated[int, Path(ge=1, le=2**53 - 1)], who: Reader, session: DbSession
) -> NoticeOut:
    query = select(Notice).where(Notice.id == notice_id)
    visible = _visible(session, who)
    if visible is not None:
        query = query.where(visible)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no notice {notice_id}")
    return _outs(session, [found])[0]


class PowerOffIn(StrictBody):
    reason: Literal["maintenance", "violation"]  # power_off.Reason
    note: StrictStr = Field("", max_length=power_off.MAX_NOTE, description="what merchants read")
    shops: list[ShopNumber] = Field(min_length=1, max_length=power_off.MAX_SHOPS)
    start: Annotated[Instant, Field(strict=False, alias="from", description="ISO 8601 with offset")]
    end: Annotated[Instant, Field(strict=False, alias="to", description="ISO 8601 with offset")]
    site: StrictInt | None = Field(None, ge=1, description="the site, when shop numbers repeat")


class PowerOffOut(Out):
    order: str = Field(description="the announcement's id (the same body again: the same id)")
    notices: list[NoticeOut] = Field(description="one per merchant concerned")
    without_merchant: list[str] = Field(description="shops no merchant's account is in")


@router.post(
    "/power-off",
    response_model=PowerOffOut,
    status_code=status.HTTP_201_CREATED,
    summary="Tell the merchants of some shops that their power will be off",
    responses={
        200: {"description": "the same announcement again: its notices, made once"},
        **answers(e422="unknown shop, shops on several sites, or times that cannot be meant"),
    },
)
def issue_power_off(
    body: PowerOffIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    response: Response,
    session: DbSession,
    now: Now,
) -> PowerOffOut:
    order = power_off.PowerOff(
        reason=power_off.Reason(body.reason),
        note=body.note,
        shops=tuple(body.shops),
        start=body.start,
        end=body.end,
        site=body.site,
    )
    issued = power_off.issue(session, order, who.actor, now)
    if not issued.new:
        response.status_code = status.HTTP_200_OK
    rows = list(session.scalars(select(Notice).where(Notice.id.in_(issued.notices))
                                .order_by(Notice.id)))  # fmt: skip
    return PowerOffOut(
        order=issued.order, notices=_outs(session, rows),
        without_merchant=list(issued.without_merchant),
    )  # fmt: skip

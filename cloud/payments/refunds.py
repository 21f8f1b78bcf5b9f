"""Refunds to the original payment: money of a paid order sent back through its provider.

    start      a payment_refunds row (processing) under OUR number, the order moved to
               refunding, then the provider's refund API with that number:
               WeChat  POST /v3/refund/domestic/refunds {out_trade_no, out_refund_no,
                       amount{refund, total, currency}, notify_url …/refund-notify}
               Alipay  alipay.trade.refund {out_trade_no, refund_amount (yuan), out_request_no}
    finish     the provider's word (its answer, a refund notice, a query) moves the row
               processing → success | closed | abnormal, once: a conditional update on the row's
               state, so a duplicate or a concurrent twin changes nothing more
    check      refunds still processing are queried (or, if the provider never took them,
               sent again under the same number: the provider refunds one number once)

Outcomes for the order (`cloud.payments.states.ORDER`), decided when its last refund in flight
ends: success adds to `refunded_fen` (always, at once) and fires `refunded`; closed or abnormal
fires `refund_failed` (→ failed) and raises a `payment_refund_failed` alarm (a person must pay
the money back by other means, or ask the provider).

Provider answers and what they mean are tables (`WECHAT_STATUS`, `TRANSIENT`), not branches.
The provider is called inside the caller's transaction, after the row is flushed: if the
commit is then lost, the same number sent again is the same refund at the provider.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.errors import Conflict, Invalid, NotFound, ProviderUnavailable
from cloud.payments import money
from cloud.payments.orders import transition
from cloud.payments.providers import ALIPAY_SUCCESS, Providers
from cloud.payments.states import ORDER, OrderEvent, OrderState
from ledger.ids import derive_id

log = logging.getLogger(__name__)

REFUND_PATH = "/v3/refund/domestic/refunds"
REFUND_NOTIFY_PATH = "/payments/wechat/refund-notify"
ALIPAY_REFUND = "alipay.trade.refund"
ALIPAY_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
REASONS = ("refund", "late_payment", "recharge_refused")
MAX_NUMBER = 64  # out_refund_no: WeChat allows 64 characters, Alipay's out_request_no 64


class RefundState(StrEnum):
    PROCESSING = "processing"
    SUCCESS = "success"
    CLOSED = "closed"  # the provider refused or gave up: no money moved
    ABNORMAL = "abnormal"  # the money could not reach the payer (card closed …): a person acts


FINAL = frozenset({RefundState.SUCCESS, RefundState.CLOSED, RefundState.ABNORMAL})

# WeChat Pay's refund `status` (answer, query) and `refund_status` (notice) → our state.
WECHAT_STATUS: Mapping[str, RefundState] = {
    "SUCCESS": RefundState.SUCCESS,
    "PROCESSING": RefundState.PROCESSING,
    "CLOSED": RefundState.CLOSED,
    "ABNORMAL": RefundState.ABNORMAL,
}
# WeChat Pay error codes that mean "try the same number again later", not "refused".
TRANSIENT = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "NOT_ENOUGH", "RATELIMIT_EXCEED"})
# Alipay sub_codes of the same kind (code 20000 is always transient).
ALIPAY_TRANSIENT = frozenset(
    {
        "ACQ.SYSTEM_ERROR",
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "ACQ.REASON_TRADE_REFUND_FEE_ERR",
        "aop.ACQ.SYSTEM_ERROR",
    }
)
REFUNDABLE = frozenset(
    {
        OrderState.PAID,
        OrderState.CREDITED,
        OrderState.CLOSED,
        OrderState.REFUNDING,
        OrderState.REFUNDED,
    }
)


def refund_number(refund: str, payment: str) -> str:
    """The out_refund_no of an `original` refund operation's source: fixed by the refund and
    the payment, so paying the refund again never refunds twice. Short enough for both
    providers (64), from the characters both accept."""
    return f"RF{derive_id('payment-refund', refund, payment):032x}"[:MAX_NUMBER]


def get(session: Session, out_refund_no: str) -> PaymentRefund:
    row = session.get(PaymentRefund, out_refund_no)
    if row is None:
        raise NotFound(f"no payment refund {out_refund_no!r}")
    return row


def _locked_order(session: Session, out_trade_no: str) -> PaymentOrder:
    order = session.scalars(
        select(PaymentOrder)
        .where(PaymentOrder.out_trade_no == out_trade_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None:
        raise NotFound(f"no payment order {out_trade_no!r}")
    return order


def in_flight_fen(session: Session, out_trade_no: str, *, but: str | None = None) -> int:
    query = select(func.coalesce(func.sum(PaymentRefund.fen), 0)).where(
        PaymentRefund.out_trade_no == out_trade_no,
        PaymentRefund.state == RefundState.PROCESSING.value,
    )
    if but is not None:
        query = query.where(PaymentRefund.out_refund_no != but)
    return int(session.scalar(query) or 0)


def refundable_fen(session: Session, order: PaymentOrder) -> int:
    """What of the order's payment is not refunded, nor being refunded."""
    paid = order.paid_fen if order.paid_fen is not None else order.fen
    return paid - order.refunded_fen - in_flight_fen(session, order.out_trade_no)


def _opening_event(order: PaymentOrder, reason: str) -> OrderEvent | None:
    state = ORDER.state(order.state)
    if state is OrderState.REFUNDING:
        return None  # another refund in flight, or the caller moved it already
    if state is OrderState.CLOSED:
        return OrderEvent.PAID_LATE
    if state is OrderState.CREDITED and reason == "recharge_refused":
        return OrderEvent.RECHARGE_REFUSED
    return OrderEvent.REFUND


def start(
    session: Session,
    providers: Providers,
    *,
    out_trade_no: str,
    fen: int,
    out_refund_no: str,
    reason: str,
    refund: str | None = None,
    now: dt.datetime,
) -> PaymentRefund:
    """Send `fen` of the order's payment back under `out_refund_no`; the same number again is
    the same refund (its row, after asking the provider again only if it never answered)."""
    if reason not in REASONS:
        raise Invalid(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    if not out_refund_no or len(out_refund_no) > MAX_NUMBER or not out_refund_no.isascii():
        raise Invalid("out_refund_no must be 1–64 ASCII characters")
    order = _locked_order(session, out_trade_no)
    existing = session.get(PaymentRefund, out_refund_no, populate_existing=True)
    if existing is not None:
        if (existing.out_trade_no, existing.fen) != (out_trade_no, fen):
            raise Conflict(f"payment refund {out_refund_no} exists with other content")
        if existing.state == RefundState.PROCESSING and existing.provider_refund_id is None:
            _send(session, providers, order, existing, now)
        return existing
    if type(fen) is not int or fen <= 0:
        raise Invalid(f"a refund is a positive number of fen, not {fen!r}")
    if ORDER.state(order.state) not in REFUNDABLE or order.paid_fen is None:
        raise Conflict(f"order {out_trade_no} is {order.state}: only a paid order is refunded")
    left = refundable_fen(session, order)
    if fen > left:
        raise Conflict(f"order {out_trade_no} has {left} fen left to refund, not {fen}")
    row = PaymentRefund(
        out_refund_no=out_refund_no,
        out_trade_no=out_trade_no,
        refund=refund,
        fen=fen,
        state=RefundState.PROCESSING.value,
        reason=reason,
        provider_refund_id=None,
        created=now,
        finished=None,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent twin with the same number won: it is that refund
        return get(session, out_refund_no)
    event = _opening_event(order, reason)
    if event is not None:
        transition(
            session,
            order,
            event,
            cause=reason,
            now=now,
            facts={"out_refund_no": out_refund_no, "fen": fen, "refund": refund},
        )
    _send(session, providers, order, row, now)
    return row


def _send(
    session: Session,
    providers: Providers,
    order: PaymentOrder,
    row: PaymentRefund,
    now: dt.datetime,
) -> None:
    """Ask the provider; what it answered decides the row. Not answered: the row stays
    processing with no provider id, for `check` to send again."""
    try:
        if order.provider == "wechat":
            outcome, provider_id = _send_wechat(providers, order, row)
        elif order.provider == "alipay":
            outcome, provider_id = _send_alipay(providers, order, row)
        else:
            raise Conflict(f"order {order.out_trade_no} has no provider {order.provider!r}")
    except ProviderUnavailable as exc:
        log.warning("refund %s not sent yet: %s", row.out_refund_no, exc)
        return
    if outcome is None:
        return  # a transient refusal: the same number later
    if provider_id is not None:
        row.provider_refund_id = provider_id
    finish(
        session, row.out_refund_no, outcome, provider_refund_id=provider_id, now=now, cause="answer"
    )


def _send_wechat(
    providers: Providers, order: PaymentOrder, row: PaymentRefund
) -> tuple[RefundState | None, str | None]:
    wechat = providers.wechat
    if wechat is None:
        raise ProviderUnavailable("WeChat Pay is not configured ([payments.wechat])")
    total = order.paid_fen if order.paid_fen is not None else order.fen
    body = {
        "out_trade_no": order.out_trade_no,
        "out_refund_no": row.out_refund_no,
        "reason": row.reason,
        "notify_url": providers.settings.notify_base + REFUND_NOTIFY_PATH,
        "amount": {"refund": row.fen, "total": total, "currency": "CNY"},
    }
    answer = wechat.call("POST", REFUND_PATH, body)
    if not answer.ok:
        if answer.status >= 500 or answer.code in TRANSIENT:
            return None, None
        return RefundState.CLOSED, None  # refused: no money moved
    return _wechat_state(answer.body), _text(answer.body.get("refund_id"))


def _wechat_state(body: Mapping[str, Any]) -> RefundState | None:
    status = body.get("status", body.get("refund_status"))
    return WECHAT_STATUS.get(status) if isinstance(status, str) else None


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) and value else None


def _send_alipay(
    providers: Providers, order: PaymentOrder, row: PaymentRefund
) -> tuple[RefundState | None, str | None]:
    alipay = providers.alipay
    if alipay is None:
        raise ProviderUnavailable("Alipay is not configured ([payments.alipay])")
    answer = alipay.call(
        ALIPAY_REFUND,
        {
            "out_trade_no": order.out_trade_no,
            "refund_amount": money.yuan(row.fen),
            "out_request_no": row.out_refund_no,
            "refund_reason": row.reason,
        },
    )
    code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
    if code == ALIPAY_SUCCESS:
        # Alipay refunds at once; fund_change N on a repeat of the same number: done before
        return RefundState.SUCCESS, _text(answer.get("trade_no"))
    if code == "20000" or sub_code in ALIPAY_TRANSIENT:
        return None, None
    return RefundState.CLOSED, None


def finish(
    session: Session,
    out_refund_no: str,
    outcome: RefundState,
    *,
    provider_refund_id: str | None,
    now: dt.datetime,
    cause: str,
) -> bool:
    """The provider's final word on a refund, applied once (True) — a second, a concurrent
    twin or a word on a refund already final changes nothing (False)."""
    if outcome is RefundState.PROCESSING:
        return False
    row = get(session, out_refund_no)
    order = _locked_order(session, row.out_trade_no)
    values: dict[str, Any] = {"state": outcome.value, "finished": now}
    if provider_refund_id is not None:
        values["provider_refund_id"] = provider_refund_id
    won = session.execute(
        update(PaymentRefund)
        .where(
            PaymentRefund.out_refund_no == out_refund_no,
            PaymentRefund.state == RefundState.PROCESSING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if won != 1:
        return False
    session.refresh(row)
    if outcome is RefundState.SUCCESS:
        session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.out_trade_no == order.out_trade_no)
            .values(refunded_fen=PaymentOrder.refunded_fen + row.fen)
            .execution_options(synchronize_session=False)
        )
        session.refresh(order)
    else:
        raise_alarm(
            session,
            None,
            "payment_refund_failed",
            now,
            f"refund {out_refund_no} of {row.fen} fen on order {order.out_trade_no} "
            f"({order.provider}) is {outcome.value}: the payer has not got the money "
            "back",
        )
    if in_flight_fen(session, order.out_trade_no) == 0 and order.state == OrderState.REFUNDING:
        event = OrderEvent.REFUNDED if outcome is RefundState.SUCCESS else OrderEvent.REFUND_FAILED
        transition(
            session,
            order,
            event,
            cause=cause,
            now=now,
            facts={"out_refund_no": out_refund_no, "outcome": outcome.value},
        )
    return True


def refund_rest(
    session: Session, providers: Providers, order: PaymentOrder, *, reason: str, now: dt.datetime
) -> PaymentRefund | None:
    """An automatic refund (`late_payment`, `recharge_refused`): all of the order's payment not
    yet refunded, under a number fixed by the reason and the order, so a second call is the
    same refund. None when nothing is left to send back."""
    number = refund_number(reason, order.out_trade_no)
    existing = session.get(PaymentRefund, number)
    if existing is not None:
        fen = existing.fen
    else:
        fen = refundable_fen(session, order)
        if fen <= 0:
            return None
    return start(session, providers, out_trade_no=order.out_trade_no, fen=fen,
                 out_refund_no=number, reason=reason, now=now)  # fmt: skip


# -- the periodic check ---------------------------------------------------------------------------
def query(providers: Providers, order: PaymentOrder, row: PaymentRefund) -> RefundState | None:
    """What the provider says of the refund now; None: it does not know the number (never
    sent, or lost on the way), or could not say."""
    if order.provider == "wechat":
        if providers.wechat is None:
            return None
        answer = providers.wechat.call("GET", f"{REFUND_PATH}/{row.out_refund_no}")
        if answer.status == 404 or not answer.ok:
            return None
        return _wechat_state(answer.body)
    if providers.alipay is None:
        return None
    content = providers.alipay.call(
        ALIPAY_REFUND_QUERY,
        {
            "out_trade_no": order.out_trade_no,
            "out_request_no": row.out_refund_no,
        },
    )
    if str(content.get("code")) != ALIPAY_SUCCESS:
        return None
    return RefundState.SUCCESS if content.get("refund_status") == "REFUND_SUCCESS" else None


def check(session: Session, providers: Providers, now: dt.datetime, *, limit: int = 100) -> int:
    """Settle refunds still processing: each one the provider knows is asked about; one it
    never took is sent again under its number. The number of refunds that ended."""
    ended = 0
    numbers = session.scalars(
        select(PaymentRefund.out_refund_no)
        .where(PaymentRefund.state == RefundState.PROCESSING.value)
        .order_by(PaymentRefund.created)
        .limit(limit)
    ).all()
    for number in numbers:
        row = get(session, number)
        order = _locked_order(session, row.out_trade_no)
        try:
            state = query(providers, order, row)
        except ProviderUnavailable as exc:
            log.warning("refund %s not checked: %s", number, exc)
            continue
        if state is None:
            _send(session, providers, order, row, now)
        elif state in FINAL:
            finish(session, number, state, provider_refund_id=None, now=now, cause="query")
        session.refresh(row)
        ended += row.state != RefundState.PROCESSING
    return ended

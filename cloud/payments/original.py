"""`original` refund operations (`cloud.operations.refunds`, method `original`) paid back through
the providers.

When finance pays such a refund, each of its `sources` that is a recharge of an online order
(the recharge's `payment` is an out_trade_no in payment_orders) goes back to that payment
through its provider for that source's fen; a source the desk took in cash (or by card, or
paid in at the edge) is paid out at the desk as before. The provider calls live here, not in
`cloud.operations` (which lies below `cloud.payments`): `POST /refunds/{id}/pay` calls `send`
after `refunds.pay` in the same transaction, and the periodic job calls `sweep` for any paid
`original` refund whose online sources have no payment refund yet (paid while the providers
were not configured, or a crash in between).

The out_refund_no of a source is `refunds.refund_number(refund id, payment)`: paying again,
`send` again or the sweep never refunds a source twice.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.operations import Refund
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.errors import CloudError
from cloud.operations.states import RefundStatus
from cloud.payments import refunds
from cloud.payments.providers import Providers

log = logging.getLogger(__name__)

SWEEP_DAYS = 30  # paid original refunds looked at again by `sweep`


def online_sources(session: Session, refund: Refund) -> list[tuple[PaymentOrder, int]]:
    """The refund's sources that were paid online, each with its order and fen."""
    if refund.method != "original":
        return []
    out = []
    for source in refund.sources or []:
        payment, fen = str(source.get("payment", "")), int(source.get("fen", 0))
        order = session.get(PaymentOrder, payment) if payment else None
        if order is not None and fen > 0:
            out.append((order, fen))
    return out


def send(
    session: Session, providers: Providers | None, refund: Refund, now: dt.datetime
) -> list[PaymentRefund]:
    """Refund each online source of a paid `original` refund through its provider (once per
    source, whatever the number of calls). A source that cannot be refunded (the order is
    not refundable, no provider is configured) raises a `payment_refund_failed` alarm."""
    if refund.status != RefundStatus.PAID:
        return []
    done: list[PaymentRefund] = []
    for order, fen in online_sources(session, refund):
        number = refunds.refund_number(refund.id, order.out_trade_no)
        if providers is None:
            _alarm(session, refund, order, fen, why="online payments are not configured", now=now)
            continue
        try:
            with session.begin_nested():
                done.append(
                    refunds.start(
                        session,
                        providers,
                        out_trade_no=order.out_trade_no,
                        fen=fen,
                        out_refund_no=number,
                        reason="refund",
                        refund=refund.id,
                        now=now,
                    )
                )
        except CloudError as exc:
            _alarm(session, refund, order, fen, why=str(exc), now=now)
    return done


def _alarm(
    session: Session,
    refund: Refund,
    order: PaymentOrder,
    fen: int,
    *,
    why: str,
    now: dt.datetime,
) -> None:
    if session.get(PaymentRefund, refunds.refund_number(refund.id, order.out_trade_no)):
        return  # already under way: its own outcome will tell
    raise_alarm(
        session,
        refund.node,
        "payment_refund_failed",
        now,
        f"refund {refund.id}: {fen} fen of {order.provider} order {order.out_trade_no} "
        f"could not be sent back ({why}); pay it out at the desk",
    )


def sweep(session: Session, providers: Providers, now: dt.datetime) -> int:
    """Send every recent paid `original` refund's online sources that have no payment refund
    yet; how many payment refunds were started."""
    since = now - dt.timedelta(days=SWEEP_DAYS)
    started = 0
    paid = session.scalars(
        select(Refund).where(
            Refund.method == "original",
            Refund.status == RefundStatus.PAID.value,
            Refund.closed >= since,
        )
    ).all()
    for refund in paid:
        missing = [
            order
            for order, _ in online_sources(session, refund)
            if session.get(PaymentRefund, refunds.refund_number(refund.id, order.out_trade_no))
            is None
        ]
        if missing:
            started += len(send(session, providers, refund, now))
    return started

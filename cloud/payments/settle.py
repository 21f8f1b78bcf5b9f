"""A paid order becomes exactly one recharge: the one function a notice, a query and the
sweeper all settle through.

    settle_trade(session, providers, row, trade, cause=…, key=…, now=…) → ACCEPTED | DUPLICATE
        created  → paid (transaction id, paid fen, paid at) → the recharge
                   (`cloud.operations.recharges.recharge`, payment = out_trade_no, operator
                   the provider's system user) → credited, all in the caller's transaction
        closed   → refunding (`paid_late`): paid after we closed it, the money goes back
                   (`cloud.payments.refunds.refund_rest`, in the same transaction)
        paid     (a credit that failed before) → credited now, if it can be
        anything else with the same transaction id → DUPLICATE, nothing changes

Exactly once, whatever arrives together: the state moves by a conditional UPDATE (`orders.
transition`: only from the state read; on PostgreSQL a concurrent twin waits for the row and
then finds it moved, re-reads it and answers DUPLICATE), the transaction id is unique per
provider, and the recharge is idempotent per payment id. The caller commits, then answers.

A trade that does not match the order (amount, merchant, provider, another transaction id)
is `Mismatch`: refused, and the caller raises the `payment_mismatch` alarm.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.models import ReportedAccount
from cloud.db.payments import PaymentOrder
from cloud.errors import CloudError, PaymentRefused
from cloud.operations import recharges, records
from cloud.payments import gateways, orders, refunds
from cloud.payments.gateways import Mismatch, Trade
from cloud.payments.providers import Providers
from cloud.payments.states import OrderEvent, OrderState
from cloud.people import oplog
from ledger.chain import NodeKey

ACCEPTED, DUPLICATE = "accepted", "duplicate"
OPERATOR = {"wechat": "wechat-pay", "alipay": "alipay"}  # who books a paid order's recharge
ALARM_NODE = "cloud"
RETRY = "retry"  # the sweeper's cause when it credits a paid order again
__all__ = ["ACCEPTED", "DUPLICATE", "Mismatch", "check", "credit", "settle_trade"]


def merchant(providers: Providers, provider: str) -> tuple[str, str]:
    """Who we are at `provider`: (mchid, appid) or (app_id, seller_id)."""
    if provider == "wechat":
        client = gateways.wechat(providers)
        return client.settings.mchid, client.settings.appid
    settings = gateways.alipay(providers).settings
    return settings.app_id, settings.seller_id


def check(providers: Providers, row: PaymentOrder, trade: Trade) -> None:
    """`trade` is about `row` as we made it: provider, merchant, amount."""
    if trade.provider != row.provider:
        raise Mismatch(f"a {trade.provider} payment for {row.provider} order {row.out_trade_no}")
    ours = merchant(providers, row.provider)
    if trade.merchant != ours and trade.facts.get("provider_state") != "NOT_EXIST":
        raise Mismatch(f"order {row.out_trade_no} paid to merchant {trade.merchant}, not {ours}")
    if trade.status == gateways.PAID and trade.fen != row.fen:
        raise Mismatch(f"order {row.out_trade_no} is {row.fen} fen, {trade.fen} were paid")


def alarm(
    session: Session, row_no: str | None, provider: str, detail: str, now: dt.datetime
) -> None:
    raise_alarm(session, ALARM_NODE, "payment_mismatch", now,
                f"{provider} order {row_no or '?'}: {detail}")  # fmt: skip


def _facts(trade: Trade, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"transaction_id": trade.transaction_id, "fen": trade.fen,
            "paid_at": None if trade.paid_at is None else trade.paid_at.isoformat(),
            **trade.facts, **(extra or {})}  # fmt: skip


def settle_trade(
    session: Session,
    providers: Providers,
    row: PaymentOrder,
    trade: Trade,
    *,
    cause: str,
    key: NodeKey,
    now: dt.datetime,
    facts: dict[str, Any] | None = None,
) -> str:
    """Settle `row` by a verified, paid `trade` in the caller's transaction (see the module)."""
    check(providers, row, trade)
    if trade.status != gateways.PAID or trade.transaction_id is None:
        raise PaymentRefused("not_paid", f"order {row.out_trade_no} is not paid")
    paid = {"transaction_id": trade.transaction_id, "paid_fen": trade.fen,
            "paid_at": trade.paid_at or now}  # fmt: skip
    what = _facts(trade, facts)
    for _ in range(3):  # a twin moved it between our read and our update: read it again
        if row.state == OrderState.CREATED:
            if orders.transition(session, row, OrderEvent.PAID, cause=cause, now=now,
                                 facts=what, values=paid):  # fmt: skip
                credit(session, row, cause=cause, key=key, now=now)
                return ACCEPTED
        elif row.state == OrderState.CLOSED:
            if orders.transition(session, row, OrderEvent.PAID_LATE, cause=cause, now=now,
                                 facts=what, values=paid):  # fmt: skip
                start_refund(session, providers, row, reason="late_payment", now=now)
                return ACCEPTED
        elif row.transaction_id != trade.transaction_id:
            raise Mismatch(f"order {row.out_trade_no} was paid by {row.transaction_id}, now "
                           f"{trade.transaction_id} says it paid it")  # fmt: skip
        else:
            if row.state == OrderState.PAID:  # its credit failed before: try again
                credit(session, row, cause=cause, key=key, now=now)
            return DUPLICATE
        row = orders.get(session, row.out_trade_no)
    raise CloudError(f"order {row.out_trade_no} keeps changing under us")


def credit(
    session: Session, row: PaymentOrder, *, cause: str, key: NodeKey, now: dt.datetime
) -> bool:
    """Book the paid `row`'s recharge and mark it credited; a recharge that cannot be booked
    (the account gone, its node quarantined) leaves it `paid` with an alarm (the sweeper
    tries again). Whether it was credited."""
    try:
        with session.begin_nested():
            recharge = recharges.recharge(
                session, account=row.account, fen=row.fen, method=row.provider,
                operator=OPERATOR[row.provider], payment=row.out_trade_no, key=key, now=now,
            )  # fmt: skip
    except CloudError as exc:
        owner = session.get(ReportedAccount, row.account)
        if cause != RETRY:  # once, not at every round of the sweeper that tries again
            detail = f"order {row.out_trade_no} ({row.fen} fen) is paid but not credited: {exc}"
            raise_alarm(session, owner.node if owner else ALARM_NODE, "payment_not_credited",
                        now, detail)  # fmt: skip
        return False
    actor = oplog.Actor(OPERATOR[row.provider], "system")
    records.record(
        session, actor, "recharge.create", f"account:{row.account}", now, new=True,
        voucher=recharges.voucher(recharge),  # the merchant's receipt
        after=lambda _receipt: {"payment": recharge.payment, "account": recharge.account,
                                "fen": recharge.fen, "method": recharge.method,
                                "command_id": recharge.command_id, "cause": cause},
    )  # fmt: skip
    return orders.transition(session, row, OrderEvent.CREDITED, cause=cause, now=now,
                             facts={"payment": recharge.payment,
                                    "command_id": recharge.command_id},
                             values={"credited_at": now})  # fmt: skip


def start_refund(
    session: Session, providers: Providers, row: PaymentOrder, *, reason: str, now: dt.datetime
) -> None:
    """The order is `refunding`: send all of its payment back to the original payment
    (`cloud.payments.refunds.refund_rest`, under a number fixed by the reason and the order,
    so a second call is the same refund). A provider that does not answer leaves the refund
    `processing` for the refunds' check to send again."""
    refunds.refund_rest(session, providers, row, reason=reason, now=now)

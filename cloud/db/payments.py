"""Payment orders: a merchant's top-up by WeChat Pay or Alipay, from the order the phone pays to
the recharge it becomes (`cloud.payments`).

    payment_orders       one per out_trade_no (ours); its state (`cloud.payments.states`),
                         the provider's transaction id once paid (unique per provider: one
                         payment is one credit), what the phone needs to pay (`pay`)
    payment_transitions  every change of an order's state, with its cause and facts
    payment_refunds      money sent back to the original payment (out_refund_no, ours)
    payment_notices      every notification received, verified or not, and what it did
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base

ROW_ID = BigInteger().with_variant(Integer, "sqlite")


class PaymentOrder(Base):
    __tablename__ = "payment_orders"
    __table_args__ = (
        UniqueConstraint("provider", "transaction_id", name="uq_payment_orders_transaction"),
        Index("ix_payment_orders_account", "account", "created"),
        Index("ix_payment_orders_state", "state", "expires"),
    )

    out_trade_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    fen: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str] = mapped_column(String(16))  # wechat, alipay
    channel: Mapped[str] = mapped_column(String(16))  # jsapi, native, h5; wap, precreate
    state: Mapped[str] = mapped_column(String(16))  # cloud.payments.states.OrderState
    created_by: Mapped[str] = mapped_column(String(64))  # the user (merchant or operator)
    payer: Mapped[str | None] = mapped_column(String(128))  # WeChat openid (JSAPI)
    pay: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what the phone needs
    transaction_id: Mapped[str | None] = mapped_column(String(64))  # the provider's, once paid
    paid_fen: Mapped[int | None] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[dt.datetime]
    expires: Mapped[dt.datetime]  # closed (here and at the provider) if unpaid by then
    paid_at: Mapped[dt.datetime | None]  # the provider's success time
    credited_at: Mapped[dt.datetime | None]  # the recharge booked (payment = out_trade_no)
    closed_at: Mapped[dt.datetime | None]


class PaymentTransition(Base):
    __tablename__ = "payment_transitions"
    __table_args__ = (Index("ix_payment_transitions_order", "out_trade_no", "id"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime]
    from_state: Mapped[str | None] = mapped_column(String(16))  # None: the order was made
    to_state: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(String(32))  # notice, query, expired, refund, …
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PaymentRefund(Base):
    __tablename__ = "payment_refunds"
    __table_args__ = (Index("ix_payment_refunds_order", "out_trade_no"),)

    out_refund_no: Mapped[str] = mapped_column(String(64), primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32))
    refund: Mapped[str | None] = mapped_column(String(64))  # our refund operation, if one
    fen: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # processing, success, closed, abnormal
    reason: Mapped[str] = mapped_column(String(80))  # late_payment, recharge_refused, refund
    provider_refund_id: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[dt.datetime]
    finished: Mapped[dt.datetime | None]


class PaymentNotice(Base):
    __tablename__ = "payment_notices"
    __table_args__ = (Index("ix_payment_notices_order", "out_trade_no", "id"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    received: Mapped[dt.datetime]
    notice_id: Mapped[str | None] = mapped_column(String(64))  # WeChat id / Alipay notify_id
    out_trade_no: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))  # accepted, duplicate, refused
    reason: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(64), default="")  # who posted it

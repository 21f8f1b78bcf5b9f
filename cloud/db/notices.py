"""Notices to merchants: the outbox (`notices`) and each notice's deliveries by channel
(`notice_deliveries`), sent and retried by `cloud.notices`.

- `notices`: what to tell whom, made once: `dedupe` is unique (`recharge_credited:<payment>`,
  `low_balance:<account>:<day>`, `power_off:<order>:<merchant>`, …), so a planner running twice
  or two planners racing make one row. `facts` are the values the message is written from
  (fen, Wh, times as ISO text, shop numbers), never the rendered text. `state` sums up the
  deliveries: pending, sent, failed, or unreachable (no channel reaches the merchant).
- `notice_deliveries`: one row per (notice, channel) tried: `wechat` (Official Account
  template message to the merchant's openid) or `sms` (the merchant's phone). `state` follows
  `cloud.notices.outbox.DELIVERY` (pending → sending → sent | pending again with backoff |
  failed | fallback: the next channel took over); `claim` is the token of the sender holding a
  `sending` row, so only one sender ever sends it and only that sender settles it.

The merchant's WeChat binding is `registry_merchants.wechat_openid` (revision 0003).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base

ROW_ID = BigInteger().with_variant(Integer, "sqlite")


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (
        Index("notices_by_account", "account", "created"),
        Index("notices_by_merchant", "merchant_id", "created"),
        Index("notices_by_created", "created"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # cloud.notices.outbox.NoticeKind
    dedupe: Mapped[str] = mapped_column(String(200), unique=True)
    account: Mapped[str | None] = mapped_column(String(64))
    merchant_id: Mapped[int | None] = mapped_column(Integer)  # registry_merchants.id
    shop: Mapped[str] = mapped_column(String(64), default="")
    facts: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))  # cloud.notices.outbox.NoticeState
    operator: Mapped[str] = mapped_column(String(64), default="")  # who issued it; "" planner
    created: Mapped[dt.datetime]


class NoticeDelivery(Base):
    __tablename__ = "notice_deliveries"
    __table_args__ = (Index("notice_deliveries_due", "state", "next_attempt"),)

    notice_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("notices.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)  # wechat | sms
    recipient: Mapped[str] = mapped_column(String(64))  # openid or phone number
    state: Mapped[str] = mapped_column(String(16))  # cloud.notices.outbox.DeliveryState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[dt.datetime]
    claim: Mapped[str | None] = mapped_column(String(32))  # the sending sender's token
    claimed_until: Mapped[dt.datetime | None]  # after this, another sender may take it over
    last_error: Mapped[str] = mapped_column(Text, default="")
    provider_id: Mapped[str | None] = mapped_column(String(64))  # WeChat msgid, SMS id
    sent: Mapped[dt.datetime | None]
    updated: Mapped[dt.datetime]

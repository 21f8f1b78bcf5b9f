"""The one door from the phone page's top-up form to the payment orders (`cloud/payments/`,
issue 14 item 1): which provider and channel a phone pays with, and what the browser does next.

| the phone               | provider | channel | next                                           |
|-------------------------|----------|---------|------------------------------------------------|
| WeChat's in-app browser | wechat   | jsapi   | `WeixinJSBridge.invoke('getBrandWCPayRequest')` |
|                         |          |         | with the order's signed parameters (needs the  |
|                         |          |         | merchant's openid, from WeChat login)          |
| another browser         | wechat   | h5      | redirect to the order's `h5_url`               |
| any                     | alipay   | wap     | redirect to the Alipay page URL                |

A cloud without `[payments]` (or without the provider chosen) raises `PaymentsUnavailable`, and
the page says online payment is not open (and where to top up instead); the form offers only
the providers configured (`available`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models import Recharge
from cloud.db.payments import PaymentOrder
from cloud.errors import CloudError, NotFound
from cloud.operations import records
from cloud.payments import orders
from cloud.payments.providers import Providers
from cloud.people.auth import Principal

PROVIDERS = ("wechat", "alipay")
PAY_URL_KEYS = ("h5_url", "page_url")  # what an order's `pay` holds to send a browser to
WECHAT_BROWSER = "micromessenger"  # in the User-Agent of WeChat's in-app browser


class PaymentsUnavailable(CloudError):
    """Online payment is not available (not built, or not configured on this cloud)."""


@dataclass(frozen=True, slots=True)
class Started:
    """An order created at the provider: where the browser goes next."""

    out_trade_no: str
    redirect: str | None = None  # h5_url or the Alipay page: the browser is sent there
    jsapi: Mapping[str, str] = field(default_factory=dict)  # getBrandWCPayRequest's arguments


def channel_for(provider: str, user_agent: str, has_openid: bool) -> str:
    """The channel a phone pays with (see the module docstring)."""
    if provider == "alipay":
        return "wap"
    in_wechat = WECHAT_BROWSER in user_agent.lower()
    return "jsapi" if in_wechat and has_openid else "h5"


@dataclass(frozen=True, slots=True)
class TopUp:
    """What the phone asks for: `fen` into the caller's own account."""

    fen: int
    provider: str  # wechat | alipay
    channel: str  # channel_for(...)
    openid: str | None  # the merchant's, bound by WeChat login: a JSAPI payment's payer
    return_url: str  # where the provider's page sends the browser back (`/m/paid`)
    client_ip: str | None  # WeChat H5 wants the payer's address


def available(providers: Providers | None) -> tuple[str, ...]:
    """The providers this cloud is configured for (`[payments.wechat]`, `[payments.alipay]`)."""
    if providers is None:
        return ()
    return tuple(p for p in PROVIDERS if getattr(providers, p, None) is not None)


def start_payment(
    session: Session, providers: Providers | None, who: Principal, asked: TopUp, now: dt.datetime
) -> Started:
    """Create the payment order (`cloud.payments.orders.create`, which commits it before and
    after asking the provider), logged as `POST /payments/orders` logs it; where the browser
    goes next. `PaymentsUnavailable` when the provider is not configured here; the provider's
    refusal or silence raise their own `CloudError`s (the order is `failed`, or stays `created`
    for the sweeper)."""
    if asked.provider not in available(providers) or who.account is None:
        raise PaymentsUnavailable(f"{asked.provider} is not configured on this cloud")
    row = orders.create(
        session, providers, account=who.account, fen=asked.fen, provider=asked.provider,
        channel=asked.channel, created_by=who.user,
        payer=asked.openid if asked.channel == "jsapi" else None, return_url=asked.return_url,
        now=now, client_ip=asked.client_ip,
    )  # fmt: skip
    records.record(
        session, who.actor, "payment.create", f"account:{row.account}", now, new=True,
        after=lambda _receipt: {k: getattr(row, k) for k in (
            "out_trade_no", "account", "fen", "provider", "channel", "state")},
    )  # fmt: skip
    pay = row.pay or {}
    jsapi = pay.get("jsapi")
    if isinstance(jsapi, dict):
        return Started(row.out_trade_no, jsapi={str(k): str(v) for k, v in jsapi.items()})
    url = next((pay[k] for k in PAY_URL_KEYS if isinstance(pay.get(k), str)), None)
    return Started(row.out_trade_no, redirect=url)


FINAL_STATES = ("credited", "closed", "refunded", "failed")


@dataclass(frozen=True, slots=True)
class OrderView:
    """A payment order as the phone shows it."""

    out_trade_no: str
    fen: int
    provider: str
    state: str  # created, paid, credited, closed, refunding, refunded, failed
    pay_url: str | None = None  # where to pay while it is `created`
    recharge: str | None = None  # its recharge's status once credited: pending, posted, voided

    @property
    def final(self) -> bool:
        """Nothing more will change: the page stops refreshing."""
        if self.state == "credited":
            return self.recharge != "pending"  # until the concentrator has booked it
        return self.state in FINAL_STATES


def order_view(session: Session, who: Principal, out_trade_no: str) -> OrderView:
    """The caller's own order `out_trade_no`; `NotFound` for one of another account (as for
    one that does not exist)."""
    order = session.get(PaymentOrder, out_trade_no)
    if order is None or order.account != who.account:
        raise NotFound(f"no order {out_trade_no!r}")
    pay = order.pay or {}
    url = next((pay[k] for k in PAY_URL_KEYS if isinstance(pay.get(k), str)), None)
    recharge = session.get(Recharge, order.out_trade_no)  # payment = out_trade_no
    return OrderView(order.out_trade_no, order.fen, order.provider, order.state, url,
                     None if recharge is None else recharge.status)  # fmt: skip


def recent_orders(session: Session, account: str, limit: int = 10) -> list[OrderView]:
    """The account's latest orders, newest first."""
    rows = session.scalars(
        select(PaymentOrder)
        .where(PaymentOrder.account == account)
        .order_by(PaymentOrder.created.desc(), PaymentOrder.out_trade_no)
        .limit(limit)
    )
    return [OrderView(r.out_trade_no, r.fen, r.provider, r.state) for r in rows]

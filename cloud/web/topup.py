"""The one door from the phone page's top-up form to the payment orders (`cloud/payments/`,
issue 14 item 1): which provider and channel a phone pays with, and what the browser does next.

| the phone               | provider | channel | next                                           |
|-------------------------|----------|---------|------------------------------------------------|
| WeChat's in-app browser | wechat   | jsapi   | `WeixinJSBridge.invoke('getBrandWCPayRequest')` |
|                         |          |         | with the order's signed parameters (needs the  |
|                         |          |         | merchant's openid, from WeChat login)          |
| another browser         | wechat   | h5      | redirect to the order's `h5_url`               |
| any                     | alipay   | wap     | redirect to the Alipay page URL                |

Until the payment orders exist, `start_payment` raises `PaymentsUnavailable` and the page says
online payment is not open yet (and where to top up instead).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.payments import PaymentOrder
from cloud.errors import CloudError, NotFound
from cloud.people.auth import Principal

PROVIDERS = ("wechat", "alipay")
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


def start_payment(  # noqa: PLR0917 (what an order needs)
    session: Session,
    who: Principal,
    fen: int,
    provider: str,
    channel: str,
    openid: str | None,
    now: dt.datetime,
) -> Started:
    """Create the payment order for `fen` into the caller's own account."""
    raise PaymentsUnavailable("online payment orders are not available on this cloud yet")


FINAL_STATES = ("credited", "closed", "refunded", "failed")


@dataclass(frozen=True, slots=True)
class OrderView:
    """A payment order as the phone shows it."""

    out_trade_no: str
    fen: int
    provider: str
    state: str  # created, paid, credited, closed, refunding, refunded, failed
    pay_url: str | None = None  # where to pay while it is `created`

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


PAY_URL_KEYS = ("h5_url", "page_url", "url")  # what `pay` holds to send a browser to


def order_view(session: Session, who: Principal, out_trade_no: str) -> OrderView:
    """The caller's own order `out_trade_no`; `NotFound` for one of another account (as for
    one that does not exist)."""
    order = session.get(PaymentOrder, out_trade_no)
    if order is None or order.account != who.account:
        raise NotFound(f"no order {out_trade_no!r}")
    pay = order.pay or {}
    url = next((pay[k] for k in PAY_URL_KEYS if isinstance(pay.get(k), str)), None)
    return OrderView(order.out_trade_no, order.fen, order.provider, order.state, url)


def recent_orders(session: Session, account: str, limit: int = 10) -> list[OrderView]:
    """The account's latest orders, newest first."""
    rows = session.scalars(
        select(PaymentOrder)
        .where(PaymentOrder.account == account)
        .order_by(PaymentOrder.created.desc(), PaymentOrder.out_trade_no)
        .limit(limit)
    )
    return [OrderView(r.out_trade_no, r.fen, r.provider, r.state) for r in rows]

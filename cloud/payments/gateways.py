"""What the cloud asks each provider about one order, in one shape whichever the provider:
open it (`open_order` → what the phone needs), ask about it (`query` → a `Trade`), close it
(`close` → whether it is closed there or was paid after all).

Every answer arrives verified (`cloud.payments.providers`); an answer that says the provider
refused is `ProviderRefused` with its code. `Trade` is also what a verified notification
becomes (`cloud.payments.notices`), so a query and a notice settle an order the same way.
"""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud.config import PaymentSettings
from cloud.db.payments import PaymentOrder
from cloud.errors import Conflict, Invalid, PaymentRefused
from cloud.payments import alipay_scheme, money
from cloud.payments.providers import Alipay, Providers, WechatPay

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
CHANNELS = {"wechat": ("jsapi", "native", "h5"), "alipay": ("wap", "precreate")}
SUBJECT = "电费充值"  # what the payer's app shows
PAID, UNPAID, CLOSED = "paid", "unpaid", "closed"
WECHAT_TRADE = {"SUCCESS": PAID, "REFUND": PAID, "NOTPAY": UNPAID, "USERPAYING": UNPAID,
                "CLOSED": CLOSED, "REVOKED": CLOSED, "PAYERROR": CLOSED}  # fmt: skip
ALIPAY_TRADE = {"TRADE_SUCCESS": PAID, "TRADE_FINISHED": PAID, "WAIT_BUYER_PAY": UNPAID,
                "TRADE_CLOSED": CLOSED}  # fmt: skip


class ProviderRefused(Conflict):
    """The provider answered, signed, that it will not (an order it refuses, a close of a paid
    order): `code` is its word for why."""

    def __init__(self, provider: str, code: str, detail: str) -> None:
        super().__init__(f"{provider} refused: {code} {detail}".strip())
        self.provider, self.code = provider, code


class Mismatch(PaymentRefused):
    """A verified message about one of our orders that does not match it (amount, currency,
    merchant, another transaction): never credited, always a `payment_mismatch` alarm."""

    def __init__(self, detail: str) -> None:
        super().__init__("mismatch", detail)


@dataclass(frozen=True, slots=True)
class Trade:
    """An order as the provider says it stands (a query's answer or a notice's content)."""

    provider: str
    out_trade_no: str
    status: str  # PAID, UNPAID, CLOSED (the provider's own word is in `facts`)
    fen: int | None  # what was paid (the order's total for an unpaid one)
    transaction_id: str | None
    paid_at: dt.datetime | None
    merchant: tuple[str, str]  # (mchid, appid) or (app_id, seller_id)
    facts: dict[str, Any] = field(default_factory=dict)


def wechat(providers: Providers) -> WechatPay:
    if providers.wechat is None:
        raise Conflict("WeChat Pay is not configured ([payments.wechat])")
    return providers.wechat


def alipay(providers: Providers) -> Alipay:
    if providers.alipay is None:
        raise Conflict("Alipay is not configured ([payments.alipay])")
    return providers.alipay


def check_channel(settings: PaymentSettings, provider: str, channel: str) -> None:
    if channel not in CHANNELS.get(provider, ()):
        choices = ", ".join(CHANNELS.get(provider, ()))
        raise Invalid(f"channel {channel!r} is not one of {provider}'s: {choices}"
                      if provider in CHANNELS else f"provider {provider!r} is not wechat or "
                      "alipay")  # fmt: skip


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


def _time(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        if "T" in text:
            return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    except ValueError:
        return None


# -- open ---------------------------------------------------------------------------------------
def open_order(
    providers: Providers, row: PaymentOrder, *, return_url: str | None, client_ip: str | None
) -> dict[str, Any]:
    """Open `row` at its provider; what the phone needs to pay it (`row.pay`)."""
    pay: dict[str, Any] = {"provider": row.provider, "channel": row.channel,
                           "out_trade_no": row.out_trade_no, "fen": row.fen,
                           "expires": row.expires.isoformat()}  # fmt: skip
    if row.provider == "wechat":
        return pay | _open_wechat(providers, row, return_url, client_ip)
    return pay | _open_alipay(providers, row, return_url)


def _open_wechat(
    providers: Providers, row: PaymentOrder, return_url: str | None, client_ip: str | None
) -> dict[str, Any]:
    client = wechat(providers)
    body: dict[str, Any] = {
        "appid": client.settings.appid, "mchid": client.settings.mchid,
        "description": f"{SUBJECT} {row.account}", "out_trade_no": row.out_trade_no,
        "time_expire": rfc3339(row.expires), "notify_url": providers.notify_url("wechat"),
        "amount": {"total": row.fen, "currency": "CNY"},
    }  # fmt: skip
    if row.channel == "jsapi":
        body["payer"] = {"openid": row.payer}
    if row.channel == "h5":
        body["scene_info"] = {"payer_client_ip": client_ip or "127.0.0.1",
                              "h5_info": {"type": "Wap"}}  # fmt: skip
    answer = client.call("POST", f"/v3/pay/transactions/{row.channel}", body)
    if not answer.ok:
        raise ProviderRefused("WeChat Pay", answer.code, str(answer.body.get("message", "")))
    if row.channel == "jsapi":
        prepay_id = _answer_text(answer.body, "prepay_id")
        return {"jsapi": _jsapi(client, prepay_id), "prepay_id": prepay_id}
    if row.channel == "native":
        return {"code_url": _answer_text(answer.body, "code_url")}
    h5_url = _answer_text(answer.body, "h5_url")
    if return_url:
        h5_url += ("&" if "?" in h5_url else "?") + urllib.parse.urlencode(
            {"redirect_url": return_url}
        )
    return {"h5_url": h5_url}


def _jsapi(client: WechatPay, prepay_id: str) -> dict[str, str]:
    from cloud.payments import wechat_scheme

    return wechat_scheme.jsapi_parameters(
        client.merchant_key, appid=client.settings.appid, prepay_id=prepay_id,
        timestamp=client.now_s(), nonce=secrets.token_hex(16),
    )  # fmt: skip


def _answer_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise PaymentRefused("malformed", f"the provider's answer has no {name}")
    return value


def _open_alipay(providers: Providers, row: PaymentOrder, return_url: str | None) -> dict[str, Any]:
    client = alipay(providers)
    biz: dict[str, Any] = {
        "out_trade_no": row.out_trade_no, "total_amount": money.yuan(row.fen),
        "subject": f"{SUBJECT} {row.account}", "time_expire": alipay_scheme.timestamp(row.expires),
    }  # fmt: skip
    notify_url = providers.notify_url("alipay")
    if row.channel == "wap":
        biz["product_code"] = "QUICK_WAP_WAY"
        url = client.page_url("alipay.trade.wap.pay", biz, notify_url=notify_url,
                              return_url=return_url)  # fmt: skip
        return {"page_url": url}
    answer = client.call("alipay.trade.precreate", biz, notify_url=notify_url)
    if answer.get("code") != "10000":
        raise ProviderRefused("Alipay", str(answer.get("sub_code", answer.get("code", ""))),
                              str(answer.get("sub_msg", "")))  # fmt: skip
    return {"qr_code": _answer_text(answer, "qr_code")}


# -- query --------------------------------------------------------------------------------------
def query(providers: Providers, row: PaymentOrder) -> Trade:
    """Ask the provider how `row` stands; an order it does not know is `UNPAID` (never
    opened there, or not scanned yet)."""
    if row.provider == "wechat":
        client = wechat(providers)
        answer = client.call("GET", f"/v3/pay/transactions/out-trade-no/{row.out_trade_no}",
                             query={"mchid": client.settings.mchid})  # fmt: skip
        if answer.code == "ORDER_NOT_EXIST":
            return _unknown(row)
        if not answer.ok:
            raise ProviderRefused("WeChat Pay", answer.code, str(answer.body.get("message", "")))
        return wechat_trade(answer.body)
    answer_ = alipay(providers).call("alipay.trade.query", {"out_trade_no": row.out_trade_no})
    if answer_.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
        return _unknown(row)
    if answer_.get("code") != "10000":
        raise ProviderRefused("Alipay", str(answer_.get("sub_code", answer_.get("code", ""))),
                              str(answer_.get("sub_msg", "")))  # fmt: skip
    # the answer carries Alipay's signature over our own call: it is about our app
    settings = alipay(providers).settings
    return alipay_trade(answer_, settings.app_id, settings.seller_id)


def _unknown(row: PaymentOrder) -> Trade:
    return Trade(row.provider, row.out_trade_no, UNPAID, row.fen, None, None, ("", ""),
                 {"provider_state": "NOT_EXIST"})  # fmt: skip


def wechat_trade(content: dict[str, Any]) -> Trade:
    """A WeChat Pay transaction (a query's answer, a notice's decrypted resource)."""
    amount = content.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    currency = amount.get("currency", "CNY") if isinstance(amount, dict) else None
    state = content.get("trade_state")
    out_trade_no, transaction_id = content.get("out_trade_no"), content.get("transaction_id")
    if not isinstance(out_trade_no, str) or state not in WECHAT_TRADE:
        raise PaymentRefused("malformed", "a transaction has out_trade_no and a trade_state")
    if type(total) is not int or currency != "CNY":
        raise Mismatch(f"amount {str(amount)[:80]} is not a whole number of fen in CNY")
    status = WECHAT_TRADE[str(state)]
    if status == PAID and not (isinstance(transaction_id, str) and 0 < len(transaction_id) <= 64):
        raise PaymentRefused("malformed", "a paid transaction has a transaction_id")
    return Trade(
        "wechat", out_trade_no, status, total,
        transaction_id if status == PAID else None, _time(content.get("success_time")),
        (str(content.get("mchid", "")), str(content.get("appid", ""))),
        {"provider_state": state, "transaction_id": transaction_id},
    )  # fmt: skip


def alipay_trade(content: Mapping[str, Any], app_id: str, seller_id: str) -> Trade:
    """An Alipay trade: a query's answer (`app_id` and `seller_id` ours: the call was) or a
    notice's form (both as it says)."""
    status_word = content.get("trade_status")
    out_trade_no, trade_no = content.get("out_trade_no"), content.get("trade_no")
    if not isinstance(out_trade_no, str) or status_word not in ALIPAY_TRADE:
        raise PaymentRefused("malformed", "a trade has out_trade_no and a trade_status")
    try:
        fen = money.fen_of(content.get("total_amount"))
    except Invalid as exc:
        raise Mismatch(str(exc)) from None
    status = ALIPAY_TRADE[str(status_word)]
    if status == PAID and not (isinstance(trade_no, str) and 0 < len(trade_no) <= 64):
        raise PaymentRefused("malformed", "a paid trade has a trade_no")
    paid_at = _time(content.get("gmt_payment") or content.get("send_pay_date"))
    return Trade(
        "alipay", out_trade_no, status, fen, trade_no if status == PAID else None, paid_at,
        (app_id, seller_id),
        {"provider_state": status_word, "trade_no": trade_no},
    )  # fmt: skip


# -- close --------------------------------------------------------------------------------------
def close(providers: Providers, row: PaymentOrder) -> bool:
    """Close `row` at its provider. True: closed (or never opened there); False: the provider
    says it is paid (query it and settle)."""
    if row.provider == "wechat":
        client = wechat(providers)
        answer = client.call("POST", f"/v3/pay/transactions/out-trade-no/{row.out_trade_no}/close",
                             {"mchid": client.settings.mchid})  # fmt: skip
        if answer.ok or answer.code in ("ORDER_NOT_EXIST", "ORDER_CLOSED"):
            return True
        if answer.code == "ORDERPAID":
            return False
        raise ProviderRefused("WeChat Pay", answer.code, str(answer.body.get("message", "")))
    answer_ = alipay(providers).call("alipay.trade.close", {"out_trade_no": row.out_trade_no})
    sub_code = answer_.get("sub_code")
    if answer_.get("code") == "10000" or sub_code == "ACQ.TRADE_NOT_EXIST":
        return True
    if sub_code == "ACQ.TRADE_STATUS_ERROR":
        return False  # paid (or finished); a closed one answers success above
    raise ProviderRefused("Alipay", str(sub_code or answer_.get("code", "")),
                          str(answer_.get("sub_msg", "")))  # fmt: skip

"""The sandbox's refunds, both providers (pure: the HTTP shell in `sandbox.app` feeds requests in
and sends the notices out).

    WeChat  POST /v3/refund/domestic/refunds   → PROCESSING (or the knob's status at once)
            GET  /v3/refund/domestic/refunds/{out_refund_no}
            after `settle_after_s`: SUCCESS (or the knob's CLOSED / ABNORMAL), then a
            REFUND.* notice to the request's notify_url, retried on WeChat's schedule
            (`RETRY_S`) until answered 2xx
    Alipay  alipay.trade.refund                → at once: code 10000 (fund_change Y, or N for
                                                 the same out_request_no again) or, with the
                                                 knob CLOSED, 40004 ACQ.TRADE_STATUS_ERROR
            alipay.trade.fastpay.refund.query  → refund_status REFUND_SUCCESS, or none

One number is one refund: the same out_refund_no / out_request_no again answers the refund
already made (a different amount under it is refused), never a second one. A refund larger
than what is left of the payment is refused (NOT_ENOUGH-like `INVALID_REQUEST` /
ACQ.REFUND_AMT_NOT_EQUAL_TOTAL).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from cloud.errors import Invalid
from cloud.payments import money, wechat_scheme
from cloud.payments.sandbox.bills import BEIJING, BillRefund

RETRY_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
OUTCOMES = ("SUCCESS", "CLOSED", "ABNORMAL")


@dataclass(frozen=True, slots=True)
class PaidTrade:
    """What the refund desk needs of a payment the sandbox took."""

    provider: str
    out_trade_no: str
    transaction_id: str
    total_fen: int


@dataclass(slots=True)
class SandboxRefund:
    provider: str
    out_refund_no: str
    refund_id: str
    trade: PaidTrade
    fen: int
    status: str  # PROCESSING, SUCCESS, CLOSED, ABNORMAL
    created: dt.datetime
    notify_url: str = ""
    finished: dt.datetime | None = None


@dataclass(slots=True)
class Notice:
    """A notification the sandbox owes the merchant (sent by the shell, retried)."""

    url: str
    headers: dict[str, str]
    body: bytes
    due: dt.datetime
    attempts: int = 0
    delivered: bool = False


@dataclass(slots=True)
class RefundDesk:
    """Both providers' refunds. `knob[out_refund_no]` (or `knob["*"]`) makes a refund end
    CLOSED or ABNORMAL instead of SUCCESS."""

    settle_after_s: float = 2.0
    knob: dict[str, str] = field(default_factory=dict)
    refunds: dict[tuple[str, str], SandboxRefund] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _outcome(self, number: str) -> str:
        outcome = self.knob.get(number, self.knob.get("*", "SUCCESS"))
        if outcome not in OUTCOMES:
            raise Invalid(f"a refund outcome is one of {', '.join(OUTCOMES)}")
        return outcome

    def refunded_fen(self, provider: str, out_trade_no: str) -> int:
        return sum(
            r.fen
            for r in self.refunds.values()
            if r.provider == provider
            and r.trade.out_trade_no == out_trade_no
            and r.status in ("PROCESSING", "SUCCESS")
        )

    # -- WeChat Pay ---------------------------------------------------------------------------
    def wechat_refund(
        self, trade: PaidTrade | None, body: Mapping[str, Any], now: dt.datetime
    ) -> tuple[int, dict[str, Any]]:
        number = body.get("out_refund_no")
        amount = body.get("amount")
        if not isinstance(number, str) or not isinstance(amount, dict):
            return 400, _wechat_error("PARAM_ERROR", "out_refund_no and amount are required")
        fen, total = amount.get("refund"), amount.get("total")
        if type(fen) is not int or type(total) is not int or fen <= 0:
            return 400, _wechat_error("PARAM_ERROR", "amount.refund and total are integers")
        if trade is None:
            return 404, _wechat_error("RESOURCE_NOT_EXISTS", "订单不存在")
        existing = self.refunds.get(("wechat", number))
        if existing is not None:
            if existing.fen != fen or existing.trade.out_trade_no != trade.out_trade_no:
                return 400, _wechat_error("INVALID_REQUEST", "同一退款单号参数不一致")
            return 200, self.wechat_view(existing)
        if total != trade.total_fen:
            return 400, _wechat_error("INVALID_REQUEST", "订单金额与原订单不一致")
        if fen > trade.total_fen - self.refunded_fen("wechat", trade.out_trade_no):
            return 400, _wechat_error("INVALID_REQUEST", "退款金额超过可退金额")
        refund = SandboxRefund(
            "wechat",
            number,
            f"50300{next(self._numbers):024d}",
            trade,
            fen,
            "PROCESSING",
            now,
            notify_url=str(body.get("notify_url", "")),
        )
        self.refunds[("wechat", number)] = refund
        return 200, self.wechat_view(refund)

    def wechat_query(self, number: str) -> tuple[int, dict[str, Any]]:
        refund = self.refunds.get(("wechat", number))
        if refund is None:
            return 404, _wechat_error("RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self.wechat_view(refund)

    def wechat_view(self, refund: SandboxRefund) -> dict[str, Any]:
        view: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.trade.transaction_id,
            "out_trade_no": refund.trade.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _rfc3339(refund.created),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.trade.total_fen,
                "refund": refund.fen,
                "payer_total": refund.trade.total_fen,
                "payer_refund": refund.fen,
                "currency": "CNY",
            },
        }
        if refund.finished is not None and refund.status == "SUCCESS":
            view["success_time"] = _rfc3339(refund.finished)
        return view

    def settle_due(
        self,
        now: dt.datetime,
        *,
        mchid: str,
        apiv3_key: bytes,
        key: rsa.RSAPrivateKey,
        serial: str,
    ) -> list[SandboxRefund]:
        """End the WeChat refunds processing for `settle_after_s`, each with its notice."""
        ended = []
        for refund in self.refunds.values():
            waited = (now - refund.created).total_seconds()
            if refund.status != "PROCESSING" or waited < self.settle_after_s:
                continue
            refund.status, refund.finished = self._outcome(refund.out_refund_no), now
            ended.append(refund)
            if refund.notify_url:
                headers, body = self.wechat_notice(
                    refund, now, mchid=mchid, apiv3_key=apiv3_key, key=key, serial=serial
                )
                self.notices.append(Notice(refund.notify_url, headers, body, now))
        return ended

    def wechat_notice(
        self,
        refund: SandboxRefund,
        now: dt.datetime,
        *,
        mchid: str,
        apiv3_key: bytes,
        key: rsa.RSAPrivateKey,
        serial: str,
    ) -> tuple[dict[str, str], bytes]:
        """The signed REFUND.* notification of an ended refund (headers, raw body)."""
        plain = {
            "mchid": mchid,
            "out_trade_no": refund.trade.out_trade_no,
            "transaction_id": refund.trade.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": refund.trade.total_fen,
                "refund": refund.fen,
                "payer_total": refund.trade.total_fen,
                "payer_refund": refund.fen,
            },
        }
        if refund.status == "SUCCESS" and refund.finished is not None:
            plain["success_time"] = _rfc3339(refund.finished)
        resource = wechat_scheme.encrypt_resource(
            apiv3_key,
            json.dumps(plain, ensure_ascii=False).encode(),
            nonce=secrets.token_hex(6),
            associated_data="refund",
            original_type="refund",
        )
        envelope = {
            "id": f"EV-{refund.refund_id}",
            "create_time": _rfc3339(now),
            "resource_type": "encrypt-resource",
            "event_type": f"REFUND.{refund.status}",
            "summary": "退款状态变更",
            "resource": resource,
        }
        body = json.dumps(envelope, ensure_ascii=False).encode()
        headers = wechat_scheme.signed_headers(
            key, serial, body, timestamp=int(now.timestamp()), nonce=secrets.token_hex(16)
        )
        return headers, body

    # -- Alipay -------------------------------------------------------------------------------
    def alipay_refund(
        self, trade: PaidTrade | None, biz: Mapping[str, Any], now: dt.datetime
    ) -> dict[str, Any]:
        number = biz.get("out_request_no") or biz.get("out_trade_no")
        try:
            fen = money.fen_of(biz.get("refund_amount"))
        except Invalid:
            return _alipay_error("ACQ.INVALID_PARAMETER", "refund_amount 不合法")
        if trade is None:
            return _alipay_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if not isinstance(number, str) or fen <= 0:
            return _alipay_error("ACQ.INVALID_PARAMETER", "参数有误")
        existing = self.refunds.get(("alipay", number))
        if existing is not None:
            if existing.fen != fen:
                return _alipay_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "同一请求号金额不一致")
            return self._alipay_view(existing, fund_change="N")
        if self._outcome(number) != "SUCCESS":
            return _alipay_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if fen > trade.total_fen - self.refunded_fen("alipay", trade.out_trade_no):
            return _alipay_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refund = SandboxRefund("alipay", number, "", trade, fen, "SUCCESS", now, finished=now)
        self.refunds[("alipay", number)] = refund
        return self._alipay_view(refund, fund_change="Y")

    def _alipay_view(self, refund: SandboxRefund, *, fund_change: str) -> dict[str, Any]:
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": refund.trade.transaction_id,
            "out_trade_no": refund.trade.out_trade_no,
            "buyer_logon_id": "sandbox***@alipay",
            "fund_change": fund_change,
            "refund_fee": money.yuan(self.refunded_fen("alipay", refund.trade.out_trade_no)),
            "gmt_refund_pay": (refund.finished or refund.created)
            .astimezone(BEIJING)
            .strftime("%Y-%m-%d %H:%M:%S"),
        }

    def alipay_query(self, trade: PaidTrade | None, biz: Mapping[str, Any]) -> dict[str, Any]:
        if trade is None:
            return _alipay_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        number = biz.get("out_request_no")
        refund = self.refunds.get(("alipay", number)) if isinstance(number, str) else None
        answer = {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.transaction_id,
        }
        if refund is not None and refund.status == "SUCCESS":
            answer |= {
                "out_request_no": refund.out_refund_no,
                "refund_status": "REFUND_SUCCESS",
                "refund_amount": money.yuan(refund.fen),
                "total_amount": money.yuan(trade.total_fen),
            }
        return answer

    # -- notices and bills ----------------------------------------------------------------------
    def due_notices(self, now: dt.datetime) -> list[Notice]:
        return [
            n
            for n in self.notices
            if not n.delivered and n.due <= now and n.attempts <= len(RETRY_S)
        ]

    @staticmethod
    def answered(notice: Notice, ok: bool, now: dt.datetime) -> None:
        """The merchant's answer to one attempt: 2xx ends it; anything else waits its turn on
        WeChat's schedule (about a day in all)."""
        notice.attempts += 1
        if ok:
            notice.delivered = True
        elif notice.attempts <= len(RETRY_S):
            notice.due = now + dt.timedelta(seconds=RETRY_S[notice.attempts - 1])

    def bill_refunds(self, provider: str) -> list[BillRefund]:
        return [
            BillRefund(
                r.out_refund_no,
                r.refund_id or f"{r.trade.transaction_id}-{r.out_refund_no}",
                r.trade.out_trade_no,
                r.trade.transaction_id,
                r.fen,
                r.trade.total_fen,
                r.finished,
            )
            for r in self.refunds.values()
            if r.provider == provider and r.status == "SUCCESS" and r.finished is not None
        ]


def _wechat_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _alipay_error(sub_code: str, sub_msg: str) -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def _rfc3339(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")

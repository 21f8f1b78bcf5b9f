"""The sandbox's refunds, both providers: a part of the sandbox app (`routes`), with its rules
in `RefundDesk` (pure: trades and requests in, answers out).

    WeChat  POST /v3/refund/domestic/refunds   → PROCESSING; after `settle_after_s` (× the
                                                 knobs' time_scale) SUCCESS, or what the knob
                                                 says (CLOSED / ABNORMAL), then a REFUND.*
                                                 notice to the request's notify_url on
                                                 WeChat's retry schedule (the notifier)
            GET  /v3/refund/domestic/refunds/{out_refund_no}
    Alipay  alipay.trade.refund                → at once: code 10000 (fund_change Y, or N for
                                                 the same out_request_no again) or, with the
                                                 knob CLOSED/ABNORMAL, 40004
                                                 ACQ.TRADE_STATUS_ERROR
            alipay.trade.fastpay.refund.query  → refund_status REFUND_SUCCESS, or none

One number is one refund: the same out_refund_no / out_request_no again answers the refund
already made (another amount or order under it is refused), never a second one; more than
what is left of the payment is refused. `desk(sandbox)` is the desk (`knob`: by number, or
"*" for all); a test or the demo turns it with `POST /sandbox/refund-outcome {"number": "*" |
out_refund_no, "outcome": "SUCCESS" | "CLOSED" | "ABNORMAL"}` (the sandbox's own, no login).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from cloud.errors import Invalid, PaymentRefused
from cloud.payments import money, wechat_scheme
from cloud.payments.sandbox.bills import BEIJING, BillRefund
from cloud.payments.sandbox.notifier import WECHAT_RETRY_S, Notice, wechat_accepted
from cloud.payments.sandbox.state import PAID, SandboxOrder
from cloud.payments.sandbox.wechat import WechatError, _authorised, signed

if TYPE_CHECKING:
    from cloud.payments.sandbox.app import Sandbox

OUTCOMES = ("SUCCESS", "CLOSED", "ABNORMAL")


@dataclass(frozen=True, slots=True)
class PaidTrade:
    """What the refund desk needs of a payment the sandbox took."""

    provider: str
    out_trade_no: str
    transaction_id: str
    total_fen: int


def paid_trade(order: SandboxOrder | None, provider: str) -> PaidTrade | None:
    if order is None or order.provider != provider or order.state != PAID:
        return None
    return PaidTrade(provider, order.out_trade_no, order.transaction_id, order.fen)


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
class RefundDesk:
    """Both providers' refunds. `knob[out_refund_no]` (or `knob["*"]`) makes a refund end
    CLOSED or ABNORMAL instead of SUCCESS."""

    settle_after_s: float = 2.0
    knob: dict[str, str] = field(default_factory=dict)
    refunds: dict[tuple[str, str], SandboxRefund] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def outcome(self, number: str) -> str:
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
            and r.status in {"PROCESSING", "SUCCESS"}
        )

    # -- WeChat Pay ---------------------------------------------------------------------------
    def wechat_refund(
        self, trade: PaidTrade | None, body: Mapping[str, Any], now: dt.datetime
    ) -> tuple[int, dict[str, Any], SandboxRefund | None]:
        """(status, answer, the refund when this request made it)."""
        number, amount = body.get("out_refund_no"), body.get("amount")
        if not isinstance(number, str) or not 0 < len(number) <= 64 or not isinstance(amount, dict):
            return 400, _wechat_error("PARAM_ERROR", "out_refund_no and amount are required"), None
        fen, total = amount.get("refund"), amount.get("total")
        if type(fen) is not int or type(total) is not int or fen <= 0:
            return 400, _wechat_error("PARAM_ERROR", "amount.refund and total are integers"), None
        if trade is None:
            return 404, _wechat_error("RESOURCE_NOT_EXISTS", "订单不存在"), None
        existing = self.refunds.get(("wechat", number))
        if existing is not None:
            if existing.fen != fen or existing.trade.out_trade_no != trade.out_trade_no:
                return 400, _wechat_error("INVALID_REQUEST", "同一退款单号参数不一致"), None
            return 200, self.wechat_view(existing), None
        if total != trade.total_fen:
            return 400, _wechat_error("INVALID_REQUEST", "订单金额与原订单不一致"), None
        if fen > trade.total_fen - self.refunded_fen("wechat", trade.out_trade_no):
            return 400, _wechat_error("INVALID_REQUEST", "退款金额超过可退金额"), None
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
        return 200, self.wechat_view(refund), refund

    def wechat_query(self, number: str) -> tuple[int, dict[str, Any]]:
        refund = self.refunds.get(("wechat", number))
        if refund is None:
            return 404, _wechat_error("RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self.wechat_view(refund)

    def wechat_view(self, refund: SandboxRefund) -> dict[str, Any]:
        view: dict[str, Any] = {
            "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.trade.transaction_id,
            "out_trade_no": refund.trade.out_trade_no, "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱", "create_time": _rfc3339(refund.created),
            "status": refund.status, "funds_account": "AVAILABLE",
            "amount": {"total": refund.trade.total_fen, "refund": refund.fen,
                       "payer_total": refund.trade.total_fen, "payer_refund": refund.fen,
                       "currency": "CNY"},
        }  # fmt: skip
        if refund.finished is not None and refund.status == "SUCCESS":
            view["success_time"] = _rfc3339(refund.finished)
        return view

    def settle(self, refund: SandboxRefund, now: dt.datetime) -> bool:
        """End a processing WeChat refund as the knob says; False if it had ended."""
        if refund.status != "PROCESSING":
            return False
        refund.status, refund.finished = self.outcome(refund.out_refund_no), now
        return True

    def notice_plaintext(self, refund: SandboxRefund, mchid: str) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "mchid": mchid, "out_trade_no": refund.trade.out_trade_no,
            "transaction_id": refund.trade.transaction_id,
            "out_refund_no": refund.out_refund_no, "refund_id": refund.refund_id,
            "refund_status": refund.status, "user_received_account": "支付用户零钱",
            "amount": {"total": refund.trade.total_fen, "refund": refund.fen,
                       "payer_total": refund.trade.total_fen, "payer_refund": refund.fen},
        }  # fmt: skip
        if refund.status == "SUCCESS" and refund.finished is not None:
            plain["success_time"] = _rfc3339(refund.finished)
        return plain

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
        if not isinstance(number, str) or not 0 < len(number) <= 64 or fen <= 0:
            return _alipay_error("ACQ.INVALID_PARAMETER", "参数有误")
        existing = self.refunds.get(("alipay", number))
        if existing is not None:
            if existing.fen != fen or existing.trade.out_trade_no != trade.out_trade_no:
                return _alipay_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "同一请求号参数不一致")
            return self._alipay_view(existing, fund_change="N")
        if self.outcome(number) != "SUCCESS":
            return _alipay_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if fen > trade.total_fen - self.refunded_fen("alipay", trade.out_trade_no):
            return _alipay_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refund = SandboxRefund("alipay", number, "", trade, fen, "SUCCESS", now, finished=now)
        self.refunds[("alipay", number)] = refund
        return self._alipay_view(refund, fund_change="Y")

    def _alipay_view(self, refund: SandboxRefund, *, fund_change: str) -> dict[str, Any]:
        at = (refund.finished or refund.created).astimezone(BEIJING)
        return {
            "code": "10000", "msg": "Success", "trade_no": refund.trade.transaction_id,
            "out_trade_no": refund.trade.out_trade_no, "buyer_logon_id": "sandbox***@alipay",
            "fund_change": fund_change,
            "refund_fee": money.yuan(self.refunded_fen("alipay", refund.trade.out_trade_no)),
            "gmt_refund_pay": at.strftime("%Y-%m-%d %H:%M:%S"),
        }  # fmt: skip

    def alipay_query(self, trade: PaidTrade | None, biz: Mapping[str, Any]) -> dict[str, Any]:
        if trade is None:
            return _alipay_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        number = biz.get("out_request_no")
        refund = self.refunds.get(("alipay", number)) if isinstance(number, str) else None
        answer: dict[str, Any] = {"code": "10000", "msg": "Success",
                                  "out_trade_no": trade.out_trade_no,
                                  "trade_no": trade.transaction_id}  # fmt: skip
        if refund is not None and refund.status == "SUCCESS":
            answer |= {"out_request_no": refund.out_refund_no, "refund_status": "REFUND_SUCCESS",
                       "refund_amount": money.yuan(refund.fen),
                       "total_amount": money.yuan(trade.total_fen)}  # fmt: skip
        return answer

    def bill_refunds(self, provider: str) -> list[BillRefund]:
        """The refunds that succeeded, as a bill lists them."""
        return [
            BillRefund(
                r.out_refund_no, r.refund_id or f"{r.trade.transaction_id}{r.out_refund_no}"[:64],
                r.trade.out_trade_no, r.trade.transaction_id, r.fen, r.trade.total_fen,
                r.finished,
            )
            for r in self.refunds.values()
            if r.provider == provider and r.status == "SUCCESS" and r.finished is not None
        ]  # fmt: skip


def _wechat_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _alipay_error(sub_code: str, sub_msg: str) -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def _rfc3339(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


# -- the sandbox part ---------------------------------------------------------------------------
def desk(sandbox: Sandbox) -> RefundDesk:
    """The sandbox's refund desk (made by `routes`)."""
    found: RefundDesk = sandbox.app.state.refund_desk
    return found


def refund_notice(sandbox: Sandbox, refund: SandboxRefund) -> Notice:
    """The REFUND.* notice of an ended refund, encrypted and signed anew per attempt."""
    plaintext = json.dumps(
        desk(sandbox).notice_plaintext(refund, sandbox.keys.mchid), ensure_ascii=False
    ).encode()
    event_id = f"EV-{refund.refund_id}"

    def build() -> tuple[bytes, dict[str, str]]:
        resource = wechat_scheme.encrypt_resource(
            sandbox.keys.apiv3_key, plaintext, nonce=secrets.token_hex(6),
            associated_data="refund", original_type="refund",
        )  # fmt: skip
        body = json.dumps({
            "id": event_id, "create_time": _rfc3339(sandbox.now()),
            "resource_type": "encrypt-resource", "event_type": f"REFUND.{refund.status}",
            "summary": "退款状态变更", "resource": resource,
        }, ensure_ascii=False).encode()  # fmt: skip
        serial, key = sandbox.keys.signing_platform
        headers = wechat_scheme.signed_headers(
            key, serial, body, timestamp=int(sandbox.now().timestamp()),
            nonce=secrets.token_hex(16),
        )  # fmt: skip
        return body, {**headers, "Content-Type": "application/json"}

    return Notice("wechat", refund.trade.out_trade_no, "refund", refund.notify_url, build,
                  wechat_accepted, WECHAT_RETRY_S)  # fmt: skip


def end_refund(sandbox: Sandbox, refund: SandboxRefund) -> None:
    """The provider finishes a WeChat refund: its state, then its notice (with the knobs'
    duplicates and delay, retried until taken)."""
    with sandbox.state.lock:
        ended = desk(sandbox).settle(refund, sandbox.now())
    if ended and refund.notify_url:
        sandbox.notifier.send(refund_notice(sandbox, refund))


def _schedule(sandbox: Sandbox, refund: SandboxRefund) -> None:
    wait = desk(sandbox).settle_after_s * sandbox.state.knobs.time_scale
    timer = threading.Timer(wait, end_refund, args=(sandbox, refund))
    timer.daemon = True
    timer.start()


def _alipay_refund(sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
    with sandbox.state.lock:
        trade = paid_trade(sandbox.state.orders.get(str(biz.get("out_trade_no", ""))), "alipay")
        return desk(sandbox).alipay_refund(trade, biz, sandbox.now())


def _alipay_query(sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
    with sandbox.state.lock:
        trade = paid_trade(sandbox.state.orders.get(str(biz.get("out_trade_no", ""))), "alipay")
        return desk(sandbox).alipay_query(trade, biz)


def routes(sandbox: Sandbox) -> APIRouter:
    sandbox.app.state.refund_desk = RefundDesk()
    sandbox.alipay_methods["alipay.trade.refund"] = _alipay_refund
    sandbox.alipay_methods["alipay.trade.fastpay.refund.query"] = _alipay_query
    router = APIRouter(prefix="/v3/refund/domestic/refunds", tags=["wechat"])

    async def answer(request: Request, work: Any) -> Response:
        body = await request.body()
        try:
            _authorised(sandbox, request, body)
            status, content = await run_in_threadpool(work, body)
        except WechatError as exc:
            return signed(sandbox, exc.status, {"code": exc.code, "message": exc.message})
        return signed(sandbox, status, content)

    @router.post("")
    async def create(request: Request) -> Response:
        def work(body: bytes) -> tuple[int, dict[str, Any]]:
            try:
                data = wechat_scheme.json_body(body)
            except PaymentRefused as exc:
                raise WechatError(400, "PARAM_ERROR", str(exc)) from None
            with sandbox.state.lock:
                order = sandbox.state.orders.get(str(data.get("out_trade_no", "")))
                status, content, made = desk(sandbox).wechat_refund(
                    paid_trade(order, "wechat"), data, sandbox.now()
                )
            if made is not None:
                _schedule(sandbox, made)
            return status, content

        return await answer(request, work)

    @router.get("/{out_refund_no}")
    async def query(out_refund_no: str, request: Request) -> Response:
        def work(body: bytes) -> tuple[int, dict[str, Any]]:
            with sandbox.state.lock:
                return desk(sandbox).wechat_query(out_refund_no)

        return await answer(request, work)

    sandbox.include_router(_knob_routes(sandbox))
    return router


def _knob_routes(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(prefix="/sandbox", tags=["sandbox"])

    @router.post("/refund-outcome")
    async def refund_outcome(request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            number, outcome = data["number"], data["outcome"]
        except (ValueError, KeyError, TypeError):
            return Response(b'{"error": "number and outcome"}', status_code=400)
        if outcome not in OUTCOMES or not isinstance(number, str) or not 0 < len(number) <= 64:
            return Response(b'{"error": "outcome SUCCESS, CLOSED or ABNORMAL"}', status_code=400)
        with sandbox.state.lock:
            desk(sandbox).knob[number] = outcome
        return Response(status_code=204)

    return router

"""Alipay's open-API gateway as the sandbox plays it.

    POST /gateway.do   a form with `method`, signed by the app (RSA2): one of `METHODS`
                       (`sandbox.alipay_methods`), answered `{"<method>_response": …, "sign"}`
    GET  /gateway.do   `alipay.trade.wap.pay`: the phone opens it, the sandbox makes the
                       order and shows its page `/pay/{out_trade_no}`

`trade_notice` is the paid notification: a form signed by Alipay (`sign(notification=True)`)
in the knobs' charset, utf-8 or GBK, posted to the order's notify_url until it answers
`success`.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from cloud.errors import Invalid, PaymentRefused
from cloud.payments import alipay_scheme, money
from cloud.payments.sandbox.notifier import ALIPAY_RETRY_S, Notice, alipay_accepted
from cloud.payments.sandbox.state import ALIPAY_STATE, PAID, WAITING, SandboxOrder

if TYPE_CHECKING:
    from cloud.payments.sandbox.app import Sandbox

SUCCESS = {"code": "10000", "msg": "Success"}


class AlipayError(Exception):
    """A business failure (`code` 40004) or bad arguments (40002), as Alipay answers them."""

    def __init__(self, sub_code: str, sub_msg: str, code: str = "40004") -> None:
        super().__init__(sub_msg)
        self.content = {
            "code": code, "msg": "Business Failed" if code == "40004" else "Invalid Arguments",
            "sub_code": sub_code, "sub_msg": sub_msg,
        }  # fmt: skip


def _text(biz: dict[str, Any], name: str, max_length: int = 256) -> str:
    value = biz.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise AlipayError("isv.missing-parameter", f"{name} is required", "40002")
    return value


def _fen(biz: dict[str, Any], name: str) -> int:
    try:
        fen = money.fen_of(biz.get(name))
    except Invalid:
        raise AlipayError("isv.invalid-parameter", f"{name} must be yuan like 19.90",
                          "40002") from None  # fmt: skip
    if fen <= 0:
        raise AlipayError("isv.invalid-parameter", f"{name} must be positive", "40002")
    return fen


def _order(sandbox: Sandbox, biz: dict[str, Any]) -> SandboxOrder:
    order = sandbox.state.order(_text(biz, "out_trade_no", 64))
    if order is None or order.provider != "alipay":
        raise AlipayError("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return order


def _new_order(sandbox: Sandbox, channel: str, params: dict[str, str],
               biz: dict[str, Any]) -> SandboxOrder:  # fmt: skip
    order = SandboxOrder(
        provider="alipay", out_trade_no=_text(biz, "out_trade_no", 64), channel=channel,
        merchant=sandbox.keys.app_id, appid="", fen=_fen(biz, "total_amount"),
        description=_text(biz, "subject"), notify_url=params.get("notify_url", ""),
        return_url=params.get("return_url", ""), created=sandbox.now(),
        time_expire=str(biz.get("time_expire", "")),
    )  # fmt: skip
    with sandbox.state.lock:
        existing = sandbox.state.orders.get(order.out_trade_no)
        if existing is None:
            sandbox.state.orders[order.out_trade_no] = order
            return order
    if existing.state != WAITING:
        raise AlipayError("ACQ.TRADE_HAS_SUCCESS" if existing.state == PAID
                          else "ACQ.TRADE_HAS_CLOSE", "交易已支付或已关闭")  # fmt: skip
    if (existing.provider, existing.fen) != ("alipay", order.fen):
        raise AlipayError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
    return existing


def precreate(sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
    order = _new_order(sandbox, "precreate", params, biz)
    return {**SUCCESS, "out_trade_no": order.out_trade_no,
            "qr_code": sandbox.pay_url(order.out_trade_no)}  # fmt: skip


def query(sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
    order = _order(sandbox, biz)
    with sandbox.state.lock:
        found = {**SUCCESS, "out_trade_no": order.out_trade_no,
                 "trade_status": ALIPAY_STATE[order.state],
                 "total_amount": money.yuan(order.fen)}  # fmt: skip
        if order.state == PAID:
            found.update(
                trade_no=order.transaction_id,
                buyer_user_id=order.payer,
                buyer_pay_amount=money.yuan(order.fen),
                send_pay_date=alipay_scheme.timestamp(order.paid_at or sandbox.now()),
            )
    return found


def close(sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
    order = _order(sandbox, biz)
    sandbox.close(order.out_trade_no)
    if order.state == PAID:
        raise AlipayError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    return {**SUCCESS, "out_trade_no": order.out_trade_no}


METHODS = {
    "alipay.trade.precreate": precreate,
    "alipay.trade.query": query,
    "alipay.trade.close": close,
}


def trade_notice(sandbox: Sandbox, order: SandboxOrder) -> Notice:
    """`trade_status_sync` for a paid order, in the knobs' charset, signed by Alipay."""
    notify_id = uuid.uuid4().hex
    charset = sandbox.state.knobs.alipay_charset
    paid = alipay_scheme.timestamp(order.paid_at or sandbox.now())
    fields = {
        "notify_type": "trade_status_sync", "notify_id": notify_id, "charset": charset,
        "version": "1.0", "sign_type": "RSA2", "app_id": order.merchant,
        "trade_no": order.transaction_id, "out_trade_no": order.out_trade_no,
        "buyer_id": order.payer, "seller_id": sandbox.keys.seller_id,
        "trade_status": "TRADE_SUCCESS", "total_amount": money.yuan(order.fen),
        "receipt_amount": money.yuan(order.fen), "buyer_pay_amount": money.yuan(order.fen),
        "subject": order.description, "gmt_create": alipay_scheme.timestamp(order.created),
        "gmt_payment": paid,
    }  # fmt: skip

    def build() -> tuple[bytes, dict[str, str]]:
        params = {**fields, "notify_time": alipay_scheme.timestamp(sandbox.now())}
        params["sign"] = alipay_scheme.sign(sandbox.keys.alipay, params, notification=True)
        content_type = f"application/x-www-form-urlencoded; charset={charset}"
        return alipay_scheme.encode_form(params), {"Content-Type": content_type}

    return Notice("alipay", order.out_trade_no, "transaction", order.notify_url, build,
                  alipay_accepted, ALIPAY_RETRY_S)  # fmt: skip


def _verified(sandbox: Sandbox, params: dict[str, str]) -> dict[str, Any]:
    """The biz_content of a call the app signed (the charset the call names)."""
    try:
        alipay_scheme.verify(sandbox.keys.app.public_key(), params, notification=False)
    except PaymentRefused as exc:
        raise AlipayError("isv.invalid-signature", str(exc), "40002") from None
    if params.get("app_id") != sandbox.keys.app_id:
        raise AlipayError("isv.invalid-app-id", "no such app", "40002")
    try:
        biz = json.loads(params.get("biz_content", ""))
    except json.JSONDecodeError:
        biz = None
    if not isinstance(biz, dict):
        raise AlipayError("isv.invalid-parameter", "biz_content is a JSON object", "40002")
    return biz


def routes(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(tags=["alipay"])

    def call(body: bytes) -> tuple[str, dict[str, Any]]:
        method = "alipay.error"
        try:
            params = alipay_scheme.parse_form(body)
            method = params.get("method", "") or method
            handler = sandbox.alipay_methods.get(method)
            if handler is None:
                raise AlipayError("isv.invalid-method", f"no method {method[:60]!r}", "40002")
            return method, handler(sandbox, params, _verified(sandbox, params))
        except PaymentRefused as exc:
            return method, AlipayError("isv.invalid-parameter", str(exc), "40002").content
        except AlipayError as exc:
            return method, exc.content

    @router.post("/gateway.do")
    async def gateway(request: Request) -> Response:
        body = await request.body()
        method, content = await run_in_threadpool(call, body)
        return Response(
            alipay_scheme.signed_answer(sandbox.keys.alipay, method, content),
            media_type="application/json; charset=utf-8",
        )

    @router.get("/gateway.do", response_model=None)
    def wap_pay(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            if params.get("method") != "alipay.trade.wap.pay":
                raise AlipayError("isv.invalid-method", "only alipay.trade.wap.pay is a page")
            order = _new_order(sandbox, "wap", params, _verified(sandbox, params))
        except AlipayError as exc:
            return Response(json.dumps(exc.content, ensure_ascii=False), status_code=400,
                            media_type="application/json; charset=utf-8")  # fmt: skip
        return RedirectResponse(sandbox.pay_url(order.out_trade_no), status_code=302)

    return router

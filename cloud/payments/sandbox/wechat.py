"""WeChat Pay API v3 as the sandbox plays it.

    POST /v3/pay/transactions/{jsapi|native|h5}           → prepay_id | code_url | h5_url
    GET  /v3/pay/transactions/out-trade-no/{no}?mchid=…   → the transaction (trade_state)
    POST /v3/pay/transactions/out-trade-no/{no}/close     → 204 (400 ORDERPAID if paid)

Every request must carry the merchant's signature (`wechat_scheme.verify_request`, by serial,
over the exact bytes); every answer, errors too, is signed with the platform key
(`signed_headers`), as the cloud requires. The paid notification (`transaction_notice`) is a
`TRANSACTION.SUCCESS` event whose resource is encrypted with the APIv3 key.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from cloud.errors import PaymentRefused
from cloud.payments import wechat_scheme
from cloud.payments.sandbox.notifier import WECHAT_RETRY_S, Notice, wechat_accepted
from cloud.payments.sandbox.state import (
    CLOSED,
    PAID,
    WECHAT_STATE,
    WECHAT_TRADE_TYPE,
    SandboxOrder,
)

if TYPE_CHECKING:
    from cloud.payments.sandbox.app import Sandbox

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
CHANNELS = ("jsapi", "native", "h5")


class WechatError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


def _nonce(length: int = 32) -> str:
    return secrets.token_hex(length // 2)


def signed(sandbox: Sandbox, status: int, content: dict[str, Any] | None) -> Response:
    body = b"" if content is None else json.dumps(content, ensure_ascii=False).encode()
    serial, key = sandbox.keys.signing_platform
    headers = wechat_scheme.signed_headers(
        key, serial, body, timestamp=int(sandbox.now().timestamp()), nonce=_nonce()
    )
    headers["Request-ID"] = uuid.uuid4().hex
    if content is not None:
        headers["Content-Type"] = "application/json"
    return Response(content=body, status_code=status, headers=headers)


def _path_query(request: Request) -> str:
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query_bytes: bytes = request.scope.get("query_string", b"")
    path, query = raw.decode("latin-1"), query_bytes.decode("latin-1")
    return path + (f"?{query}" if query else "")


def _authorised(sandbox: Sandbox, request: Request, body: bytes) -> None:
    keys = {sandbox.keys.merchant_serial: sandbox.keys.merchant.public_key()}
    try:
        auth = wechat_scheme.verify_request(
            request.headers.get("authorization", ""), method=request.method,
            path_query=_path_query(request), body=body, keys=keys,
            now=int(sandbox.now().timestamp()),
        )  # fmt: skip
    except PaymentRefused as exc:
        raise WechatError(401, "SIGN_ERROR", str(exc)) from None
    if auth.mchid != sandbox.keys.mchid:
        raise WechatError(401, "SIGN_ERROR", "the Authorization names another mchid")


def transaction(sandbox: Sandbox, order: SandboxOrder) -> dict[str, Any]:
    """The transaction as a query answers it and a notification carries it."""
    found: dict[str, Any] = {
        "appid": order.appid, "mchid": order.merchant, "out_trade_no": order.out_trade_no,
        "trade_type": WECHAT_TRADE_TYPE[order.channel], "trade_state": WECHAT_STATE[order.state],
        "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "未支付", "CLOSED": "已关闭"}[
            WECHAT_STATE[order.state]],
        "attach": "", "amount": {"total": order.fen, "currency": "CNY"},
    }  # fmt: skip
    if order.state == PAID:
        found["transaction_id"] = order.transaction_id
        found["bank_type"] = "OTHERS"
        found["success_time"] = rfc3339(order.paid_at or sandbox.now())
        found["payer"] = {"openid": order.payer}
        found["amount"].update(payer_total=order.fen, payer_currency="CNY")
    return found


def transaction_notice(sandbox: Sandbox, order: SandboxOrder) -> Notice:
    """`TRANSACTION.SUCCESS` for a paid order, built (encrypted, signed) anew per attempt."""
    event_id = str(uuid.uuid4())
    plaintext = json.dumps(transaction(sandbox, order), ensure_ascii=False).encode()

    def build() -> tuple[bytes, dict[str, str]]:
        resource = wechat_scheme.encrypt_resource(
            sandbox.keys.apiv3_key, plaintext, nonce=_nonce(12),
            associated_data="transaction", original_type="transaction",
        )  # fmt: skip
        body = json.dumps({
            "id": event_id, "create_time": rfc3339(sandbox.now()),
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功", "resource": resource,
        }, ensure_ascii=False).encode()  # fmt: skip
        serial, key = sandbox.keys.signing_platform
        headers = wechat_scheme.signed_headers(
            key, serial, body, timestamp=int(sandbox.now().timestamp()), nonce=_nonce()
        )
        return body, {**headers, "Content-Type": "application/json"}

    return Notice("wechat", order.out_trade_no, "transaction", order.notify_url, build,
                  wechat_accepted, WECHAT_RETRY_S)  # fmt: skip


def _field(data: dict[str, Any], name: str, max_length: int = 256) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise WechatError(400, "PARAM_ERROR", f"{name} is required (1-{max_length} characters)")
    return value


def _new_order(sandbox: Sandbox, channel: str, data: dict[str, Any]) -> SandboxOrder:
    if _field(data, "mchid") != sandbox.keys.mchid:
        raise WechatError(400, "MCH_NOT_EXISTS", "no such merchant")
    if _field(data, "appid") != sandbox.keys.appid:
        raise WechatError(400, "APPID_MCHID_NOT_MATCH", "the appid is not this merchant's")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if type(total) is not int or total <= 0:
        raise WechatError(400, "PARAM_ERROR", "amount.total is a positive integer of fen")
    if amount.get("currency", "CNY") != "CNY":  # type: ignore[union-attr]
        raise WechatError(400, "PARAM_ERROR", "amount.currency must be CNY")
    payer = data.get("payer")
    openid = payer.get("openid") if isinstance(payer, dict) else None
    if channel == "jsapi" and not (isinstance(openid, str) and openid):
        raise WechatError(400, "PARAM_ERROR", "a JSAPI order needs payer.openid")
    notify_url = _field(data, "notify_url")
    if not notify_url.startswith(("http://", "https://")):
        raise WechatError(400, "PARAM_ERROR", "notify_url must be a URL")
    out_trade_no = _field(data, "out_trade_no", 32)
    return SandboxOrder(
        provider="wechat", out_trade_no=out_trade_no, channel=channel,
        merchant=sandbox.keys.mchid, appid=sandbox.keys.appid, fen=total,
        description=_field(data, "description", 127), notify_url=notify_url,
        return_url="", created=sandbox.now(), time_expire=str(data.get("time_expire", "")),
        payer=openid if isinstance(openid, str) else "",
    )  # fmt: skip


def _created_answer(sandbox: Sandbox, order: SandboxOrder) -> dict[str, Any]:
    if order.channel == "jsapi":
        return {"prepay_id": order.extra.setdefault("prepay_id", "wx" + _nonce(32))}
    if order.channel == "native":
        return {"code_url": sandbox.pay_url(order.out_trade_no)}
    return {"h5_url": sandbox.pay_url(order.out_trade_no)}


def create_order(sandbox: Sandbox, channel: str, body: bytes) -> dict[str, Any]:
    try:
        data = wechat_scheme.json_body(body)
    except PaymentRefused as exc:
        raise WechatError(400, "PARAM_ERROR", str(exc)) from None
    order = _new_order(sandbox, channel, data)
    with sandbox.state.lock:
        existing = sandbox.state.orders.get(order.out_trade_no)
        if existing is not None:
            if existing.state == PAID:
                raise WechatError(400, "ORDERPAID", "the order is paid")
            if existing.state == CLOSED:
                raise WechatError(400, "ORDER_CLOSED", "the order is closed")
            same = (existing.provider, existing.channel, existing.fen) == (
                "wechat", order.channel, order.fen)  # fmt: skip
            if not same:
                raise WechatError(400, "INVALID_REQUEST", "out_trade_no used with other "
                                  "parameters")  # fmt: skip
            order = existing
        else:
            sandbox.state.orders[order.out_trade_no] = order
    if sandbox.state.knobs.notify_before_answer:
        sandbox.pay(order.out_trade_no, notify=False)
        sandbox.notify(order, now=True)
    return _created_answer(sandbox, order)


def routes(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(prefix="/v3/pay/transactions", tags=["wechat"])

    async def answer(request: Request, work: Any) -> Response:
        body = await request.body()
        try:
            _authorised(sandbox, request, body)
            status, content = await run_in_threadpool(work, body)
        except WechatError as exc:
            return signed(sandbox, exc.status, {"code": exc.code, "message": exc.message})
        return signed(sandbox, status, content)

    @router.post("/out-trade-no/{out_trade_no}/close")
    async def close(out_trade_no: str, request: Request) -> Response:
        def work(body: bytes) -> tuple[int, dict[str, Any] | None]:
            order = sandbox.state.order(out_trade_no)
            if order is None or order.provider != "wechat":
                raise WechatError(404, "ORDER_NOT_EXIST", "no such order")
            if sandbox.close(out_trade_no) is not None and order.state == PAID:
                raise WechatError(400, "ORDERPAID", "the order is paid")
            return 204, None

        return await answer(request, work)

    @router.get("/out-trade-no/{out_trade_no}")
    async def query(out_trade_no: str, request: Request) -> Response:
        def work(body: bytes) -> tuple[int, dict[str, Any] | None]:
            order = sandbox.state.order(out_trade_no)
            if request.query_params.get("mchid") != sandbox.keys.mchid:
                raise WechatError(400, "PARAM_ERROR", "mchid is this merchant's")
            if order is None or order.provider != "wechat":
                raise WechatError(404, "ORDER_NOT_EXIST", "no such order")
            with sandbox.state.lock:
                return 200, transaction(sandbox, order)

        return await answer(request, work)

    @router.post("/{channel}")
    async def create(channel: str, request: Request) -> Response:
        if channel not in CHANNELS:
            return signed(sandbox, 404, {"code": "NOT_FOUND", "message": "no such API"})
        return await answer(request, lambda body: (200, create_order(sandbox, channel, body)))

    return router

"""The page a person pays on: `/pay/{out_trade_no}` (what a QR code, an H5 link or Alipay's
wap page opens), in Simplified Chinese, two buttons: 确认支付 (pay) and 取消 (walk away).

Paying marks the order paid and sends the notification (`Sandbox.pay`); both buttons then send
the browser to the order's return_url (Alipay's wap) or the H5 link's `redirect_url` (WeChat),
or to a result page. An order past its `time_expire` cannot be paid (the providers close it).
"""

from __future__ import annotations

import html
import urllib.parse
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.payments import money
from cloud.payments.sandbox.state import PAID, WAITING, SandboxOrder, SandboxRefused

if TYPE_CHECKING:
    from cloud.payments.sandbox.app import Sandbox

PROVIDER_NAME = {"wechat": "微信支付", "alipay": "支付宝"}
STATE_NAME = {WAITING: "待支付", PAID: "已支付", "closed": "已关闭"}

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:26em;margin:2em auto;padding:0 1em}}
.amount{{font-size:2.4em;margin:.4em 0}} button{{font-size:1.2em;width:100%;padding:.6em;
margin:.3em 0}} .pay{{background:#07c160;color:#fff;border:0}}</style></head>
<body><h1>{title}</h1>{content}</body></html>"""


def _page(title: str, content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), content=content), status)


def _order_page(order: SandboxOrder, redirect_url: str | None) -> HTMLResponse:
    no = html.escape(order.out_trade_no)
    back = (
        ""
        if not redirect_url
        else "?" + html.escape(urllib.parse.urlencode({"redirect_url": redirect_url}))
    )
    facts = (
        f"<p>{html.escape(order.description)}</p>"
        f'<p class="amount" id="amount">¥{money.yuan(order.fen)}</p>'
        f'<p>订单号 <span id="order">{no}</span> · <span id="state">'
        f"{STATE_NAME[order.state]}</span></p>"
    )
    if order.state != WAITING:
        return _page(PROVIDER_NAME[order.provider], facts)
    buttons = (
        f'<form method="post" action="/pay/{no}/confirm{back}"><button class="pay" id="pay">'
        "确认支付</button></form>"
        f'<form method="post" action="/pay/{no}/cancel{back}">'
        '<button id="cancel">取消</button></form>'
    )
    return _page(PROVIDER_NAME[order.provider], facts + buttons)


def _after(order: SandboxOrder, said: str, redirect_url: str | None) -> Response:
    back = order.return_url or redirect_url  # Alipay's return_url; WeChat H5's redirect_url
    if back and back.startswith(("http://", "https://")):
        return RedirectResponse(back, status_code=303)
    return _page(PROVIDER_NAME[order.provider], f'<p id="result">{said}</p>')


def routes(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(prefix="/pay", tags=["page"])

    @router.get("/{out_trade_no}", response_class=HTMLResponse)
    def show(out_trade_no: str, redirect_url: str | None = None) -> HTMLResponse:
        order = sandbox.state.order(out_trade_no)
        if order is None:
            return _page("订单不存在", "<p>没有这个订单。</p>", 404)
        with sandbox.state.lock:
            return _order_page(order, redirect_url)

    @router.post("/{out_trade_no}/confirm", response_model=None)
    def confirm(out_trade_no: str, redirect_url: str | None = None) -> Response:
        try:
            order = sandbox.pay(out_trade_no)
        except SandboxRefused as exc:
            return _page("无法支付", f"<p>{html.escape(str(exc))}</p>", 409)
        return _after(order, "支付成功", redirect_url)

    @router.post("/{out_trade_no}/cancel", response_model=None)
    def cancel(out_trade_no: str, redirect_url: str | None = None) -> Response:
        try:
            order = sandbox.cancel(out_trade_no)
        except SandboxRefused as exc:
            return _page("订单不存在", f"<p>{html.escape(str(exc))}</p>", 404)
        return _after(order, "已取消支付", redirect_url)

    return router

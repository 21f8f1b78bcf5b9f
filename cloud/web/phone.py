"""`/m/`: the merchant's phone page — its one account's balance, what it buys, the subsidy left,
monthly use, top-up, payments with receipts, monthly statements, alarms and notices.

    GET  /m/                         the account (log in first: → /m/login)
    GET  /m/login     POST /m/login  password login (WeChat login: `cloud.web.wechat_login`)
    POST /m/logout                   end the session
    POST /m/topup                    start a payment (`cloud.web.topup`) → the provider's page
    GET  /m/paid                     back from the provider's page → the order's page
    GET  /m/orders/{out_trade_no}    an order's state, refreshing until it is credited
    GET  /m/receipts/{number}.pdf    a receipt of the account's own payments
    GET  /m/statement.pdf?month=…    the account's monthly statement

Every page takes `?lang=zh|en` (`cloud.web.i18n`). Only a merchant's login sees an account,
and only its own: no route takes an account id, and a receipt, order or statement is looked up
through the login's account (another's receipt number is "not found", exactly as a number that
does not exist). Staff who log in here are told to use the console. Errors are pages in the
merchant's words (`PageError` and the handlers in `EXCEPTION_HANDLERS`), never JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from cloud.api.common import DbSession, Now
from cloud.api.guards import client_address
from cloud.db.operations import Receipt
from cloud.errors import CloudError, Invalid, NotFound
from cloud.operations import receipt_print
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.payments.providers import Providers
from cloud.people.auth import Principal, Role
from cloud.reports import statement
from cloud.reports.core import month_window
from cloud.web import i18n, sessions, topup, wechat_login
from cloud.web.chart import bars
from cloud.web.forms import AmountError, fen_of_yuan, read_form
from cloud.web.i18n import Lang
from cloud.web.merchant_view import account_view
from cloud.web.page_errors import NotMerchant, PageError
from cloud.web.render import page

router = APIRouter(prefix="/m", include_in_schema=False)

PRESETS_YUAN = (50, 100, 200, 500)
MIN_TOPUP_FEN = 100  # 1 yuan: below it a provider's fee is most of the payment
ORDER_REFRESH_S = 3
ORDER_COOKIE = "vb_order"  # the order this browser went to pay (`/m/paid` returns to it)
ORDER_COOKIE_AGE = 3600
Form = Annotated[dict[str, str], Depends(read_form)]


def _providers(request: Request) -> Providers | None:
    found: Providers | None = getattr(request.app.state, "providers", None)
    return found


def _merchant(request: Request, session: DbSession, now: Now) -> Principal:
    who = sessions.principal(request, session, now)
    if who.role is not Role.MERCHANT or not who.account:
        raise NotMerchant(f"{who.user} is {who.role.value}, not a merchant")
    return who


Merchant = Annotated[Principal, Depends(_merchant)]


def _home(
    request: Request,
    lang: tuple[str, bool],
    who: Principal,
    session: DbSession,
    now: dt.datetime,
    *,
    error: tuple[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    assert who.account is not None  # `_merchant` checked it
    view = account_view(session, who.account, now)
    t = i18n.translator(lang[0])
    labels = [
        t("this_month") if index == len(view.months) - 1
        else t("month_label", month=m.month, month_name=m.strftime("%b"))
        for index, (m, _) in enumerate(view.months)
    ]  # fmt: skip
    return page(
        request, "home.html", lang, status=status,
        view=view, who=who, presets=PRESETS_YUAN,
        bars=bars([(label, wh) for label, (_, wh) in zip(labels, view.months, strict=True)]),
        csrf=sessions.csrf_token(sessions.token_of(request)),
        providers=topup.available(_providers(request)),
        error=None if error is None else t(error[0], **error[1]),
    )  # fmt: skip


@router.get("")
def root() -> Response:
    return RedirectResponse("/m/", status_code=303)


@router.get("/")
def home(request: Request, lang: Lang, who: Merchant, session: DbSession, now: Now) -> Response:
    return _home(request, lang, who, session, now)


# -- logging in and out -----------------------------------------------------------------------


def _login_page(request: Request, lang: tuple[str, bool], *, error: str | None = None,
                status: int = 200, user: str = "") -> Response:  # fmt: skip
    token = sessions.login_csrf(request)
    in_wechat = topup.WECHAT_BROWSER in request.headers.get("user-agent", "").lower()
    wechat = in_wechat and getattr(request.app.state, "wechat_oauth", None) is not None
    binding = wechat_login.BIND_COOKIE in request.cookies
    response = page(request, "login.html", lang, status=status, csrf=token, error=error,
                    user=user, wechat=wechat, binding=binding)  # fmt: skip
    sessions.keep_login_csrf(response, request, token)
    return response


@router.get("/login")
def login_form(
    request: Request,
    lang: Lang,
    bind: Annotated[int | None, Query(ge=1, le=1, description="a WeChat login to bind")] = None,
) -> Response:
    return _login_page(request, lang)


@router.post("/login")
def login(request: Request, lang: Lang, form: Form, session: DbSession, now: Now) -> Response:
    try:
        done = sessions.form_login(request, form, session, now)
    except sessions.LoginFailed as failed:
        return _login_page(request, lang, error=failed.key, status=failed.status,
                           user=failed.user)  # fmt: skip
    response = RedirectResponse("/m/", status_code=303)
    sessions.start(response, request, done, now)
    who = Principal(done.user.name, Role(done.user.role), done.user.account,
                    client_address(request))  # fmt: skip
    wechat_login.bind_pending(request, response, session, who, now)
    return response


@router.post("/logout")
def logout(request: Request, form: Form, session: DbSession, now: Now) -> Response:
    response = RedirectResponse("/m/login", status_code=303)
    sessions.form_logout(request, form, session, now, response)
    return response


# -- top-up -----------------------------------------------------------------------------------


def topup_amount(form: dict[str, str]) -> int:
    """The fen a top-up form asks for: the free amount when typed, else the preset chosen."""
    typed = form.get("amount_other", "").strip()
    chosen = typed or form.get("amount", "").strip()
    return fen_of_yuan(chosen, min_fen=MIN_TOPUP_FEN, max_fen=MAX_RECHARGE_FEN)


@router.post("/topup")
def start_topup(
    *, request: Request, lang: Lang, form: Form, who: Merchant, session: DbSession, now: Now
) -> Response:
    sessions.check_csrf(request, form.get("csrf"))
    try:
        fen = topup_amount(form)
    except AmountError as exc:
        return _home(request, lang, who, session, now, error=(exc.key, exc.values), status=422)
    provider = form.get("provider", "")
    if provider not in topup.PROVIDERS:
        return _home(request, lang, who, session, now, error=("provider_bad", {}), status=422)
    openid = wechat_login.openid_of_account(session, who.account or "")
    channel = topup.channel_for(provider, request.headers.get("user-agent", ""), bool(openid))
    asked = topup.TopUp(fen, provider, channel, openid, str(request.url_for("paid_return")),
                        client_address(request) or None)  # fmt: skip
    try:
        started = topup.start_payment(session, _providers(request), who, asked, now)
    except topup.PaymentsUnavailable:
        return _home(request, lang, who, session, now, error=("payment_unavailable", {}),
                     status=503)  # fmt: skip
    except CloudError:  # refused by the provider, or no answer from it: nothing was charged
        session.rollback()
        return _home(request, lang, who, session, now, error=("payment_failed", {}), status=502)
    if started.redirect:
        response = RedirectResponse(started.redirect, status_code=303)
        # Which order `/m/paid` returns to (a provider may send the browser back bare).
        response.set_cookie(ORDER_COOKIE, started.out_trade_no, max_age=ORDER_COOKIE_AGE,
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/m")  # fmt: skip
        return response
    if started.jsapi:
        return page(request, "wxpay.html", lang, order=started.out_trade_no,
                    params=dict(started.jsapi))  # fmt: skip
    return RedirectResponse(f"/m/orders/{started.out_trade_no}", status_code=303)


# What Alipay appends to a wap payment's return_url (WeChat H5 appends nothing): declared so the
# query guard lets the browser back in; only `out_trade_no` is read, and only to find the page.
ReturnParam = Annotated[str | None, Query(max_length=512)]


@router.get("/paid", name="paid_return")
def paid_return(  # noqa: PLR0917 (the parameters Alipay appends)
    request: Request,
    who: Merchant,
    session: DbSession,
    out_trade_no: ReturnParam = None,
    trade_no: ReturnParam = None,
    total_amount: ReturnParam = None,
    seller_id: ReturnParam = None,
    app_id: ReturnParam = None,
    auth_app_id: ReturnParam = None,
    method: ReturnParam = None,
    charset: ReturnParam = None,
    sign: ReturnParam = None,
    sign_type: ReturnParam = None,
    timestamp: ReturnParam = None,
    version: ReturnParam = None,
) -> Response:
    """Back from the provider's page: to the order's own page (its state is what the provider's
    notification said, never this URL's parameters) — the one the URL names, else the one this
    browser last went to pay, else the newest —, else home."""
    assert who.account is not None
    named = [n for n in (out_trade_no, request.cookies.get(ORDER_COOKIE)) if n]
    newest = [o.out_trade_no for o in topup.recent_orders(session, who.account, limit=1)]
    for number in [*named, *newest]:
        try:
            topup.order_view(session, who, number)
        except NotFound:
            continue
        return RedirectResponse(f"/m/orders/{number}", status_code=303)
    return RedirectResponse("/m/", status_code=303)


@router.get("/orders/{out_trade_no}")
def order(
    request: Request,
    lang: Lang,
    who: Merchant,
    session: DbSession,
    out_trade_no: Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,32}$")],
) -> Response:
    try:
        found = topup.order_view(session, who, out_trade_no)
    except (NotFound, topup.PaymentsUnavailable):
        raise PageError("order_not_found", 404) from None
    return page(request, "order.html", lang, order=found, refresh=ORDER_REFRESH_S)


# -- documents --------------------------------------------------------------------------------


def own_receipt(session: DbSession, who: Principal, number: str) -> Receipt:
    """The receipt `number` if it is of the caller's account; else as if it did not exist."""
    found = session.get(Receipt, number)
    if found is None or found.account != who.account:
        raise PageError("receipt_not_found", 404)
    return found


@router.get("/receipts/{number}.pdf")
def receipt_pdf(
    lang: Lang,
    who: Merchant,
    session: DbSession,
    number: Annotated[str, Path(pattern=r"^\d{4}-\d{6,9}$")],
) -> Response:
    document = receipt_print.pdf(session, own_receipt(session, who, number),
                                 "en" if lang[0] == "en" else "zh")  # fmt: skip
    return Response(document, media_type=receipt_print.PDF_MEDIA_TYPE, headers={
        "Content-Disposition": f'inline; filename="receipt-{number}.pdf"',
        "Cache-Control": "no-store"})  # fmt: skip


@router.get("/statement.pdf")
def statement_pdf(
    lang: Lang,
    who: Merchant,
    session: DbSession,
    now: Now,
    month: Annotated[str, Query(max_length=7, description="YYYY-MM")] = "",
) -> Response:
    assert who.account is not None
    try:
        window = month_window(month)
    except Invalid:
        raise PageError("statement_bad_month", 422) from None
    found = statement.monthly(session, who.account, month, window)
    body = statement.printable(found, generated=now, lang="en" if lang[0] == "en" else "zh")
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="statement-{who.account}-{month}.pdf"',
        "Cache-Control": "no-store"})  # fmt: skip

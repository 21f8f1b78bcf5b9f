"""Logging in with WeChat on the phone page: the Official Account's web OAuth (`snsapi_base`: the
openid only, no confirmation asked of the merchant), bound to the merchant once with a password.

    GET /m/wechat/login   a random `state` in a 10-minute HttpOnly cookie, then a redirect to
                          <authorize>/connect/oauth2/authorize?appid=…&redirect_uri=<cloud>/m/
                          wechat/back&response_type=code&scope=snsapi_base&state=…#wechat_redirect
    GET /m/wechat/back    refuse a `state` that is not the cookie's (CSRF); exchange `code` at
                          <api>/sns/oauth2/access_token?appid&secret&code&grant_type=
                          authorization_code, server to server (a timeout, the answer bounded
                          and checked: an `errcode` is a refusal) → `openid`; then
                          - bound (`registry_merchants.wechat_openid`) to a merchant with one
                            active merchant user: that user is logged in
                            (`cloud.people.auth.login_as_merchant`, logged as method `wechat`);
                          - not bound: the openid waits in a cookie signed with the cloud's key
                            (`vb_wx_bind`, 10 minutes) and the password form says so; the next
                            successful password login of a merchant binds it to its merchant
                            (`bind_pending`, through the registry, so it is in the operator log).

Off unless the app is given a `WechatOAuth` (`create_app(wechat_oauth=…)`; the server makes it
from `[notices.wechat_oa]`, `oauth_of`): without one the routes answer "not available" and the
login form shows no WeChat button (it shows one only inside WeChat's browser). The openid is
also what a JSAPI payment needs (`cloud.web.topup.channel_for`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.common import DbSession, Now
from cloud.api.guards import client_address
from cloud.db.auth import User
from cloud.db.registry import Account, Merchant
from cloud.errors import CloudError
from cloud.people import auth
from cloud.people.auth import Principal, Role
from cloud.registry import entities
from cloud.registry import rows as registry
from cloud.web import sessions
from cloud.web.page_errors import PageError
from ledger.chain import NodeKey
from ledger.errors import DecodeError
from ledger.untrusted import load_json

AUTHORIZE_PATH = "/connect/oauth2/authorize"
TOKEN_PATH = "/sns/oauth2/access_token"
SCOPE = "snsapi_base"  # the openid only, without asking the merchant to confirm
STATE_COOKIE = "vb_wx_state"
BIND_COOKIE = "vb_wx_bind"
PENDING_S = 600  # a state, and an openid waiting for a password, live 10 minutes
MAX_ANSWER = 16 * 1024
OPENID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
CODE = r"^[A-Za-z0-9_\-]{1,128}$"

router = APIRouter(prefix="/m/wechat", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class WechatOAuth:
    """The Official Account whose web OAuth the phone page uses, and where its API is (the
    real one, or the stand-in of the tests and the demo)."""

    appid: str
    secret: str
    authorize_base: str = "https://open.weixin.qq.com"
    api_base: str = "https://api.weixin.qq.com"
    timeout_s: float = 5.0


REAL_API = "https://api.weixin.qq.com"
REAL_AUTHORIZE = "https://open.weixin.qq.com"


def oauth_of(api_base: str, appid: str, secret: str) -> WechatOAuth:
    """The OAuth of the Official Account configured for notices (`[notices.wechat_oa]`): at
    WeChat the authorize page is on open.weixin.qq.com; a stand-in serves both on one base."""
    api = api_base.rstrip("/")
    return WechatOAuth(appid, secret, REAL_AUTHORIZE if api == REAL_API else api, api)


class WechatLoginFailed(CloudError):
    """The OAuth exchange failed (refused code, unreachable API, an answer we do not take)."""


def authorize_url(config: WechatOAuth, redirect_uri: str, state: str) -> str:
    query = urlencode({"appid": config.appid, "redirect_uri": redirect_uri,
                       "response_type": "code", "scope": SCOPE, "state": state})  # fmt: skip
    return f"{config.authorize_base.rstrip('/')}{AUTHORIZE_PATH}?{query}#wechat_redirect"


def openid_of_answer(body: bytes) -> str:
    """The openid in the API's answer; `WechatLoginFailed` for an error or anything else."""
    if len(body) > MAX_ANSWER:
        raise WechatLoginFailed("the OAuth answer is too large")
    try:
        answer: Any = load_json(body, max_bytes=MAX_ANSWER, max_depth=4)
    except DecodeError as exc:
        raise WechatLoginFailed(f"the OAuth answer is not JSON we take: {exc}") from None
    if not isinstance(answer, dict):
        raise WechatLoginFailed("the OAuth answer is not an object")
    if answer.get("errcode") not in (None, 0):
        raise WechatLoginFailed(f"WeChat refused the code: errcode {answer.get('errcode')!r}")
    openid = answer.get("openid")
    if not isinstance(openid, str) or not OPENID.fullmatch(openid):
        raise WechatLoginFailed("the OAuth answer has no valid openid")
    return openid


def exchange(config: WechatOAuth, code: str, client: httpx.Client | None = None) -> str:
    """The openid for an OAuth `code` (server to server)."""
    params = {"appid": config.appid, "secret": config.secret, "code": code,
              "grant_type": "authorization_code"}  # fmt: skip
    url = f"{config.api_base.rstrip('/')}{TOKEN_PATH}"
    try:
        if client is None:
            with httpx.Client(timeout=config.timeout_s) as own:
                answer = own.get(url, params=params)
        else:
            answer = client.get(url, params=params, timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        raise WechatLoginFailed(f"the WeChat API could not be reached: {exc}") from exc
    if answer.status_code != 200:
        raise WechatLoginFailed(f"the WeChat API answered {answer.status_code}")
    return openid_of_answer(answer.content)


# -- the openid waiting for a password: a cookie signed with the cloud's key -------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pending_cookie(key: NodeKey, openid: str, now: dt.datetime) -> str:
    until = int(now.timestamp()) + PENDING_S
    message = f"wx-bind|{openid}|{until}".encode()
    return f"{openid}|{until}|{_b64(key.private_key.sign(message))}"


def pending_openid(key: NodeKey, value: str, now: dt.datetime) -> str | None:
    """The openid of a `pending_cookie` we signed and that has not expired, else None."""
    parts = value.split("|")
    if len(parts) != 3 or not OPENID.fullmatch(parts[0]) or not parts[1].isdigit():
        return None
    openid, until = parts[0], int(parts[1])
    if until < now.timestamp() or len(parts[2]) > 100:
        return None
    try:
        signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        key.public_key.verify(signature, f"wx-bind|{openid}|{until}".encode())
    except (InvalidSignature, ValueError):
        return None
    return openid


def bind_pending(
    request: Request, response: Response, session: Session, who: Principal, now: dt.datetime
) -> bool:
    """After a password login: bind a pending openid (if any) to the merchant of `who`'s
    account, through the registry (logged). Whether one was bound."""
    value = request.cookies.get(BIND_COOKIE)
    if not value or who.role is not Role.MERCHANT or not who.account:
        return False
    response.delete_cookie(BIND_COOKIE, path="/")
    openid = pending_openid(request.app.state.key, value, now)
    account = session.get(Account, who.account)
    if openid is None or account is None:
        return False
    for other in session.scalars(select(Merchant).where(Merchant.wechat_openid == openid)):
        if other.id != account.merchant_id:  # one WeChat user is one merchant's
            registry.update(session, entities.MERCHANTS, other.id, {"wechat_openid": None},
                            who.actor, now)  # fmt: skip
    merchant = session.get(Merchant, account.merchant_id)
    if merchant is not None and merchant.wechat_openid != openid:
        registry.update(session, entities.MERCHANTS, merchant.id, {"wechat_openid": openid},
                        who.actor, now)  # fmt: skip
    return True


def merchant_user(session: Session, openid: str) -> str | None:
    """The one active merchant user of the merchant `openid` is bound to, or None (unbound,
    or several users: the merchant then logs in with a password)."""
    names = session.scalars(
        select(User.name)
        .join(Account, Account.id == User.account)
        .join(Merchant, Merchant.id == Account.merchant_id)
        .where(
            Merchant.wechat_openid == openid,
            User.active.is_(True),
            User.role == Role.MERCHANT.value,
        )
        .limit(2)
    ).all()
    return names[0] if len(names) == 1 else None


def openid_of_account(session: Session, account: str) -> str | None:
    """The openid bound to the merchant of `account` (what a JSAPI payment is paid by)."""
    return session.scalar(
        select(Merchant.wechat_openid)
        .join(Account, Account.merchant_id == Merchant.id)
        .where(Account.id == account)
    )


# -- the routes -------------------------------------------------------------------------------


def config_of(request: Request) -> WechatOAuth:
    config: WechatOAuth | None = getattr(request.app.state, "wechat_oauth", None)
    if config is None:
        raise PageError("wechat_unavailable", 404)
    return config


def _cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, max_age=PENDING_S, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")  # fmt: skip


@router.get("/login")
def start(request: Request) -> Response:
    config = config_of(request)
    state = secrets.token_urlsafe(16)
    back = str(request.url_for("wechat_back"))
    response = RedirectResponse(authorize_url(config, back, state), status_code=303)
    _cookie(response, request, STATE_COOKIE, state)
    return response


@router.get("/back", name="wechat_back")
def back(
    request: Request,
    session: DbSession,
    now: Now,
    code: Annotated[str, Query(pattern=CODE)],
    state: Annotated[str, Query(max_length=64)],
) -> Response:
    config = config_of(request)
    expected = request.cookies.get(STATE_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, state):
        raise sessions.CsrfRefused("the OAuth state is not the one this browser was given")
    try:
        openid = exchange(config, code)
    except WechatLoginFailed:
        raise PageError("wechat_failed", 502) from None
    name = merchant_user(session, openid)
    if name is None:
        response = RedirectResponse("/m/login?bind=1", status_code=303)
        _cookie(response, request, BIND_COOKIE, pending_cookie(request.app.state.key, openid, now))
    else:
        done = auth.login_as_merchant(session, name, client_address(request), now,
                                      method="wechat")  # fmt: skip
        response = RedirectResponse("/m/", status_code=303)
        sessions.start(response, request, done, now)
    response.delete_cookie(STATE_COOKIE, path="/")
    return response

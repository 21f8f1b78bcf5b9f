"""Cookie sessions for the pages, on the API's own logins and tokens (`cloud.people.auth`).

- **Log in**: the form's name and password go to `auth.login` (its lockout, per-address
  throttle and operator log apply as to `POST /auth/login`); the bearer token it issues is kept
  in the `vb_session` cookie: HttpOnly (no script reads it), SameSite=Lax (a cross-site POST
  does not carry it; a link from a WeChat message still opens the page logged in), Secure when
  the request came over https, Path `/`, expiring with the token.
- **Each page**: `auth.authenticate` of the cookie's token, exactly as a bearer header is.
- **CSRF**: every POST form carries `csrf`, an HMAC of the session token (`csrf_token`): a page
  of ours can print it, another site cannot compute it, and it dies with the session. The
  login form, before any session, uses a double-submit token instead: a random `vb_login`
  cookie whose value the form repeats.
- **Log out**: `auth.logout` revokes the token and the cookie is cleared.

Behind a TLS-terminating proxy the request arrives over http, so the cookie is not marked
Secure; such a proxy should set it (or the cloud be served over https directly).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Literal

from fastapi import Request, Response
from sqlalchemy.orm import Session

from cloud.api.guards import client_address
from cloud.errors import TooManyAttempts, Unauthorized
from cloud.people import auth
from cloud.people.auth import Principal

COOKIE = "vb_session"
LOGIN_COOKIE = "vb_login"
MAX_TOKEN = 128  # characters: a token is 43; anything longer is not ours


class NoSession(Unauthorized):
    """No valid session cookie: the page sends the browser to the login form."""


class LoginFailed(Exception):
    """A login form refused: `key` is its catalogue message, `status` the HTTP status, `user`
    the name typed (shown again)."""

    def __init__(self, key: str, status: int, user: str) -> None:
        super().__init__(key)
        self.key, self.status, self.user = key, status, user


class CsrfRefused(Exception):
    """A POST form without the token tied to the session (or the login cookie)."""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def token_of(request: Request) -> str:
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > MAX_TOKEN:
        raise NoSession("no session")
    return token


def principal(request: Request, session: Session, now: dt.datetime) -> Principal:
    """Who the session cookie belongs to; `NoSession` without a valid one."""
    token = token_of(request)
    try:
        return auth.authenticate(session, token, client_address(request), now)
    except Unauthorized as exc:
        raise NoSession(str(exc)) from exc


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"voltbook web csrf", hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str | None) -> None:
    """A POST of a logged-in page: `sent` must be the session's token."""
    token = request.cookies.get(COOKIE, "")
    if not token or not sent or not hmac.compare_digest(csrf_token(token), sent):
        raise CsrfRefused("the form's CSRF token does not match the session")


def login_csrf(request: Request) -> str:
    """The login form's token: the `vb_login` cookie's, or a new one (set by `keep_login_csrf`)."""
    known = request.cookies.get(LOGIN_COOKIE, "")
    return known if 20 <= len(known) <= 64 else secrets.token_urlsafe(24)


def keep_login_csrf(response: Response, request: Request, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, httponly=True, samesite="lax",
                        secure=_secure(request), path="/")  # fmt: skip


def check_login_csrf(request: Request, sent: str | None) -> None:
    known = request.cookies.get(LOGIN_COOKIE, "")
    if not known or not sent or not hmac.compare_digest(known, sent):
        raise CsrfRefused("the login form's token does not match its cookie")


def start(
    response: Response, request: Request, done: auth.Login, now: dt.datetime,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:  # fmt: skip
    """Keep a fresh login's token in the session cookie (the console's is SameSite=Strict: no
    link from elsewhere is ever needed to arrive logged in there)."""
    age = max(0, int((done.expires - now).total_seconds()))
    response.set_cookie(COOKIE, done.token, max_age=age, httponly=True, samesite=samesite,
                        secure=_secure(request), path="/")  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/")


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def form_login(request: Request, form: dict[str, str], session: Session,
               now: dt.datetime) -> auth.Login:  # fmt: skip
    """A login form's password login (its CSRF token checked); `LoginFailed` says why not. A
    refused attempt is committed: the failure count, the throttle and the log row stay."""
    check_login_csrf(request, form.get("csrf"))
    name, password = form.get("user", "").strip(), form.get("password", "")
    if not name or not password:
        raise LoginFailed("login_missing", 422, name)
    try:
        return auth.login(session, name, password, client_address(request), now)
    except TooManyAttempts:
        session.commit()
        raise LoginFailed("login_throttled", 429, name) from None
    except auth.LoginRefused:
        session.commit()
        raise LoginFailed("login_refused", 401, name) from None


def form_logout(request: Request, form: dict[str, str], session: Session, now: dt.datetime,
                response: Response) -> None:  # fmt: skip
    """A logout form (its CSRF token checked): the token is revoked, the cookie cleared."""
    check_csrf(request, form.get("csrf"))
    try:
        who = principal(request, session, now)
    except NoSession:
        pass  # already over: just clear the cookie
    else:
        auth.logout(session, token_of(request), who, now)
    end(response)

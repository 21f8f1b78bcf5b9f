"""`/console/people` and `/console/oplog`: the admin's users and roles, and the operator log
with the check of its hash chain — through the services `/users` and `/operator-log` call
(`cloud.people.auth`, `cloud.people.oplog`), with the same roles and the same log rows.

    GET  /console/people                  the users, a page at a time, and the form to add one
    POST /console/people                  create (`auth.create_user`: `user.create`)
    GET  /console/people/{name}           one user: its role, name, state and lockout
    POST /console/people/{name}           role, display name, enabled (`user.update`)
    POST /console/people/{name}/password  set a password (`user.password_reset`; sessions end)
    POST /console/people/{name}/unlock    lift a lockout (`user.unlock`)
    GET  /console/oplog?user=&target=&since=&until=&verify=1   the log, newest first (by
                                          operator, target and days); `verify` walks
                                          the chain (`/operator-log/verify`), on demand: it
                                          reads every row

People is the admin's (as `/users`); the operator log is every staff role's (as
`/operator-log`). Each form is checked here first, so a bad field is told in words and changes
nothing; what the service still refuses (a name taken, the last admin) is told the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.common import CloudKey, DbSession, Now, count
from cloud.api.oplog import chain_verdict
from cloud.db.auth import OperatorLogEntry, User
from cloud.errors import Conflict, Invalid
from cloud.people import auth, oplog
from cloud.people.auth import STAFF, Principal, Role
from cloud.reports.core import Window
from cloud.web import sessions
from cloud.web.console import Form, allowed, frame
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError
from cloud.web.render import page

router = APIRouter(prefix="/console", include_in_schema=False)

Admin = Annotated[Principal, allowed(Role.ADMIN)]
Staff = Annotated[Principal, allowed(*STAFF)]
UserName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@\-]{1,64}$")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Day = Annotated[str, Query(pattern=r"^(|\d{4}-\d{2}-\d{2})$")]
PAGE_SIZE = 50
MAX_DISPLAY = 200  # as `/users`
DONE = ("created", "saved", "password", "unlocked")  # ?done=: what the last form did
ROLES = tuple(Role)


class FormError(Exception):
    """A form field refused: `key` is its catalogue message."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _role(form: dict[str, str]) -> Role:
    try:
        return Role(form.get("role", ""))
    except ValueError:
        raise FormError("role_bad") from None


def _password(form: dict[str, str]) -> str:
    password = form.get("password", "")
    if len(password) < auth.MIN_PASSWORD:
        raise FormError("password_short")
    if password != form.get("password2", ""):
        raise FormError("password_mismatch")
    return password


def _display_name(form: dict[str, str]) -> str:
    name = form.get("display_name", "").strip()
    if len(name) > MAX_DISPLAY:
        raise FormError("display_name_long")
    return name


def _account(form: dict[str, str], role: Role) -> str | None:
    account = form.get("account", "").strip() or None
    if (role is Role.MERCHANT) != bool(account):
        raise FormError("merchant_account")
    return account


def _locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


# -- users ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screen:
    """An admin's request on the people screens: what every one of their pages needs."""

    request: Request
    lang: tuple[str, bool]
    who: Principal
    session: Session
    now: dt.datetime


def _screen(request: Request, lang: Lang, who: Admin, session: DbSession, now: Now) -> Screen:
    return Screen(request, lang, who, session, now)


AdminScreen = Annotated[Screen, Depends(_screen)]


def _users_page(at: Screen, offset: int, *, error: str | None = None,
                form: dict[str, str] | None = None, status: int = 200) -> Response:  # fmt: skip
    query = select(User).order_by(User.name)
    total = count(at.session, query)
    users = list(at.session.scalars(query.limit(PAGE_SIZE).offset(offset)))
    return page(at.request, "console/people.html", at.lang, status=status,
                **frame(at.request, at.who), users=users, total=total, offset=offset,
                size=PAGE_SIZE, roles=ROLES, locked={u.name for u in users if _locked(u, at.now)},
                error=error, form=form or {}, min_password=auth.MIN_PASSWORD)  # fmt: skip


@router.get("/people")
def people(at: AdminScreen, offset: Offset = 0) -> Response:
    return _users_page(at, offset)


@router.post("/people")
def create_user(at: AdminScreen, form: Form) -> Response:
    sessions.check_csrf(at.request, form.get("csrf"))
    name = form.get("name", "").strip()
    try:
        if not auth.USER_NAME.fullmatch(name):
            raise FormError("user_name_bad")
        role = _role(form)
        account = _account(form, role)
        display_name = _display_name(form)
        password = _password(form)
        auth.create_user(at.session, name, role, password, account=account,
                         display_name=display_name, actor=at.who.actor, now=at.now)  # fmt: skip
    except (FormError, Conflict, Invalid) as refused:
        at.session.rollback()
        key = _refusal(refused, "user_exists")
        kept = {k: v for k, v in form.items() if k not in {"csrf", "password", "password2"}}
        return _users_page(at, 0, error=key, form=kept,
                           status=409 if isinstance(refused, Conflict) else 422)  # fmt: skip
    return RedirectResponse(f"/console/people/{name}?done=created", status_code=303)


def _refusal(refused: Exception, conflict: str) -> str:
    """The catalogue message of a refused form: the field's, `conflict` for the service's
    `Conflict`, a general one for what else it found `Invalid`."""
    if isinstance(refused, FormError):
        return refused.key
    return conflict if isinstance(refused, Conflict) else "user_refused"


def _user_page(at: Screen, name: str, *, done: str = "", error: str | None = None,
               status: int = 200) -> Response:  # fmt: skip
    user = at.session.get(User, name)
    if user is None:
        raise PageError("user_not_found", 404)
    return page(at.request, "console/person.html", at.lang, status=status,
                **frame(at.request, at.who), user=user, roles=ROLES,
                locked=_locked(user, at.now), done=f"done_{done}" if done else "", error=error,
                min_password=auth.MIN_PASSWORD)  # fmt: skip


@router.get("/people/{name}")
def person(
    at: AdminScreen,
    name: UserName,
    done: Annotated[str, Query(pattern="^(|" + "|".join(DONE) + ")$")] = "",
) -> Response:
    return _user_page(at, name, done=done)


def _change(at: Screen, name: str, form: dict[str, str], done: str,
            action: Callable[[], object]) -> Response:  # fmt: skip
    """Run `action()` (a service call) for a form of user `name`'s page: its CSRF checked, a
    refusal shown on the page in words (nothing changed), success sent back to the page."""
    sessions.check_csrf(at.request, form.get("csrf"))
    if at.session.get(User, name) is None:
        raise PageError("user_not_found", 404)
    try:
        action()
    except (FormError, Conflict, Invalid) as refused:
        at.session.rollback()
        return _user_page(at, name, error=_refusal(refused, "last_admin"),
                          status=409 if isinstance(refused, Conflict) else 422)  # fmt: skip
    return RedirectResponse(f"/console/people/{name}?done={done}", status_code=303)


@router.post("/people/{name}")
def update_user(at: AdminScreen, form: Form, name: UserName) -> Response:
    def action() -> object:
        role = _role(form)
        if form.get("active", "") not in {"", "1"}:
            raise FormError("user_refused")
        return auth.update_user(at.session, name, role=role, account=_account(form, role),
                                display_name=_display_name(form),
                                active=form.get("active") == "1", actor=at.who.actor,
                                now=at.now)  # fmt: skip

    return _change(at, name, form, "saved", action)


@router.post("/people/{name}/password")
def set_password(at: AdminScreen, form: Form, name: UserName) -> Response:
    return _change(at, name, form, "password", lambda: auth.reset_password(
        at.session, name, _password(form), actor=at.who.actor, now=at.now))  # fmt: skip


@router.post("/people/{name}/unlock")
def unlock_user(at: AdminScreen, form: Form, name: UserName) -> Response:
    return _change(
        at,
        name,
        form,
        "unlocked",
        lambda: auth.unlock(at.session, name, actor=at.who.actor, now=at.now),
    )


# -- the operator log -------------------------------------------------------------------------


def _day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        raise PageError("date_bad", 422) from None


def change_text(entry: OperatorLogEntry) -> str:
    """What an entry changed, short: `{before} → {after}` as compact JSON."""
    parts = [json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)
             for v in (entry.before, entry.after) if v is not None]  # fmt: skip
    text = " → ".join(parts)
    return text if len(text) <= 160 else text[:159] + "…"


@router.get("/oplog")
def operator_log(  # noqa: PLR0917 (the log's filters)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    key: CloudKey,
    user: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    since: Day = "",
    until: Day = "",
    verify: Annotated[int, Query(ge=0, le=1)] = 0,
    offset: Offset = 0,
) -> Response:
    first, last = _day(since), _day(until)
    if first and last and first > last:
        raise PageError("date_order", 422)
    # First: the walk detaches what the session holds (`oplog.verify` reads in batches).
    verdict = chain_verdict(request, session, key) if verify else None
    query = oplog.entries(
        user=user.strip() or None,
        target=target.strip() or None,
        since=Window(first, first).start if first else None,
        until=Window(last, last).end if last else None,
        sort="-seq",
    )
    total = count(session, query)
    rows = list(session.scalars(query.limit(PAGE_SIZE).offset(offset)))
    asked = (("user", user.strip()), ("target", target.strip()), ("since", since), ("until", until))
    filters = {k: v for k, v in asked if v}

    def link(**changes: object) -> str:
        merged = {**filters, **{k: str(v) for k, v in changes.items()}}
        return "/console/oplog?" + urlencode(merged)

    return page(request, "console/oplog.html", lang, **frame(request, who), rows=rows,
                total=total, offset=offset, size=PAGE_SIZE, filters=filters, link=link,
                verdict=verdict, change_text=change_text,
                head=None if verdict is None else bytes(verdict.head).hex()[:16])  # fmt: skip

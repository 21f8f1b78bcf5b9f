"""`/console/`: the operator console for staff (admin, operator, finance, auditor, installer),
on the pages' foundation (`sessions`, `i18n`, `render`, `static`). A merchant is sent to `/m/`.

    GET  /console/                    → the first screen of the menu
    GET  /console/login   POST        password login (SameSite=Strict session cookie)
    POST /console/logout              end the session
    GET  /console/monitoring          the tree and the table of meters (`monitoring`); asked by
                                      htmx (`HX-Request`), only the table is answered
    GET  /console/meters/{address}    a meter's values and its recent daily use (ECharts)

The table's batch control (tick meters, a floor or the filter's result; trip, close,
keep-power) posts to `console_batches`; only `OPERATIONS` roles see it.

The menu lists only the screens a role may open (`MENU`, from the role groups of
`cloud.people.auth`); a screen's route takes its principal through `allowed(*roles)`, and a
staff role opening a screen not its own gets the refusal page (403) inside the console's
frame. Every link works without script; htmx (from /static) only swaps the
table in place. The balance columns are not shown to installers (`/accounts` refuses them).
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from cloud.api.common import DbSession, HeardSince, Now
from cloud.people.auth import OPERATIONS, READ_ALL, STAFF, Principal, Role
from cloud.web import i18n, monitoring, sessions
from cloud.web.chart import kwh_text
from cloud.web.forms import read_form
from cloud.web.i18n import Lang
from cloud.web.monitoring import MeterFilters
from cloud.web.page_errors import NotStaff, PageError, Refused
from cloud.web.render import page

router = APIRouter(prefix="/console", include_in_schema=False)

# (catalogue key, path, roles that may open it): the menu shows a role only its own rows.
# The first row a role may open is its home: the dashboard for roles that may see money,
# monitoring for installers.
MENU: tuple[tuple[str, str, tuple[Role, ...]], ...] = (
    ("menu_dashboard", "/console/dashboard", STAFF),
    ("menu_monitoring", "/console/monitoring", READ_ALL),
    ("menu_reports", "/console/reports", STAFF),
    ("menu_subsidy_months", "/console/subsidies", STAFF),
    ("menu_alarms", "/console/alarms", READ_ALL),
    ("menu_desk", "/console/desk", STAFF),
    ("menu_swaps", "/console/meter-swaps", READ_ALL),  # forms for FIELD only
    ("menu_takeovers", "/console/takeovers", STAFF),  # asked by OPERATIONS, approved by admin
    ("menu_registry", "/console/registry", READ_ALL),
    ("menu_people", "/console/people", (Role.ADMIN,)),  # as `/users`
    ("menu_oplog", "/console/oplog", STAFF),  # as `/operator-log`
)
Form = Annotated[dict[str, str], Depends(read_form)]
Text = Annotated[str, Query(max_length=monitoring.MAX_Q)]


def staff(request: Request, session: DbSession, now: Now) -> Principal:
    who = sessions.principal(request, session, now)
    if who.role not in READ_ALL:
        raise NotStaff(f"{who.user} is {who.role.value}")
    return who


Staff = Annotated[Principal, Depends(staff)]


def allowed(*roles: Role) -> Any:
    """A route's principal when its role is one of `roles`; `Refused` (the refusal page)
    for another staff role."""

    def check(who: Staff) -> Principal:
        if who.role not in roles:
            raise Refused(who)
        return who

    return Depends(check)


def menu(who: Principal) -> list[tuple[str, str]]:
    return [(key, href) for key, href, roles in MENU if who.role in roles]


def frame(request: Request, who: Principal) -> dict[str, Any]:
    """What `console/frame.html` needs: who is in, its menu, the forms' CSRF token."""
    return {"who": who, "menu": menu(who),
            "csrf": sessions.csrf_token(sessions.token_of(request))}  # fmt: skip


def refused_page(request: Request, who: Principal) -> Response:
    """A screen this role may not open: said in the console's frame, with its own menu."""
    lang = i18n.choose(request, request.query_params.get("lang"))
    return page(request, "console/refused.html", lang, status=403, **frame(request, who))


@router.get("")
def root() -> Response:
    return RedirectResponse("/console/", status_code=303)


@router.get("/")
def home(who: Staff) -> Response:
    return RedirectResponse(menu(who)[0][1], status_code=303)


# -- logging in and out -----------------------------------------------------------------------


def _login_page(request: Request, lang: tuple[str, bool], *, error: str | None = None,
                status: int = 200, user: str = "") -> Response:  # fmt: skip
    token = sessions.login_csrf(request)
    response = page(request, "console/login.html", lang, status=status, csrf=token,
                    error=error, user=user)  # fmt: skip
    sessions.keep_login_csrf(response, request, token)
    return response


@router.get("/login")
def login_form(
    request: Request,
    lang: Lang,
    expired: Annotated[int | None, Query(ge=1, le=1, description="the session ended")] = None,
) -> Response:
    return _login_page(request, lang, error="session_ended" if expired else None)


@router.post("/login")
def login(request: Request, lang: Lang, form: Form, session: DbSession, now: Now) -> Response:
    try:
        done = sessions.form_login(request, form, session, now)
    except sessions.LoginFailed as failed:
        return _login_page(request, lang, error=failed.key, status=failed.status,
                           user=failed.user)  # fmt: skip
    target = "/console/" if Role(done.user.role) in READ_ALL else "/m/"
    response = RedirectResponse(target, status_code=303)
    sessions.start(response, request, done, now, samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request, form: Form, session: DbSession, now: Now) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    sessions.form_logout(request, form, session, now, response)
    return response


# -- monitoring -------------------------------------------------------------------------------


@router.get("/monitoring")
def monitoring_page(  # noqa: PLR0917 (the table's filters)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    heard_since: HeardSince,
    q: Text = "",
    site: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    building: Text = "",
    floor: Text = "",
    shop: Text = "",
    state: Annotated[str, Query(pattern="^(|online|offline|arrears)$")] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    size: Annotated[int, Query(ge=1, le=monitoring.MAX_SIZE)] = monitoring.PAGE_SIZE,
) -> Response:
    filters = MeterFilters(q.strip(), site, building, floor, shop, state, heard_since)
    found = monitoring.meter_page(session, filters, now, offset, size)
    query = filters.query()

    def link(**changes: object) -> str:
        merged = {**query, **{k: str(v) for k, v in changes.items() if v is not None}}
        return "/console/monitoring?" + urlencode(merged) if merged else "/console/monitoring"

    other = "en" if lang[0] == "zh" else "zh"
    money = who.role in STAFF
    context: dict[str, Any] = {"found": found, "filters": filters, "link": link,
                               "money": money, "lang_link": link(lang=other),
                               "batch": who.role in OPERATIONS}  # fmt: skip
    # htmx asking for the table alone (a boosted link from the tree wants the whole page)
    if request.headers.get("hx-request") == "true" and "hx-boosted" not in request.headers:
        return page(request, "console/_meters.html", lang, **context,
                    csrf=sessions.csrf_token(sessions.token_of(request)))  # fmt: skip
    return page(request, "console/monitoring.html", lang, **frame(request, who), **context,
                tree=monitoring.tree(session, filters), states=monitoring.STATES)  # fmt: skip


@router.get("/meters/{address}")
def meter_detail(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    heard_since: HeardSince,
    address: Annotated[str, Path(pattern=r"^[0-9A-Za-z_\-]{1,32}$")],
) -> Response:
    rows = monitoring.meters_at(session, address, now, heard_since)
    if not rows:
        raise PageError("meter_not_found", 404)
    t = i18n.translator(lang[0])
    charts = []
    for row in rows:
        use = monitoring.daily_use(session, row, now)
        charts.append(json.dumps({
            "days": [day.strftime("%m-%d") for day, _ in use],
            "kwh": [kwh_text(wh) for _, wh in use],
            "name": t("daily_use_kwh"),
        }, ensure_ascii=False))  # fmt: skip
    other = "en" if lang[0] == "zh" else "zh"
    return page(request, "console/meter.html", lang, **frame(request, who), rows=rows,
                charts=charts, money=who.role in STAFF,
                lang_link=f"/console/meters/{address}?lang={other}")  # fmt: skip

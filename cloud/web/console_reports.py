"""`/console/reports`: the console's report centre and the monthly subsidy view, for staff (the
roles `GET /reports/*` allows: installers do not see money).

    GET /console/reports                      the reports, and the saved templates
    GET /console/reports/{name}               one report: filters, chart, a page of rows with
                                              the totals of every row, printable (A4)
    GET /console/reports/{name}/export        the same report as the API's Excel or PDF
    POST /console/reports/refunds/templates   an admin saves the ticked columns as a template
    GET /console/subsidies                    the monthly subsidy view: per shop, one month's
                                              subsidy issued, used, cleared and left over

Every number comes from the API's own route functions (`report_filters`): the page, its
Excel and its PDF answer what `GET /reports/<name>` answers for the same filters. A filter typed
wrong is answered 422 with the form and a sentence saying what to write; nothing else is run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from cloud.api import reports as reports_api
from cloud.api.common import DbSession, Now
from cloud.chains.rollups import SITE_ZONE
from cloud.db import registry as reg
from cloud.errors import Invalid, NotFound
from cloud.people.auth import STAFF, Principal, Role
from cloud.reports import templates
from cloud.reports.core import Column, Kind, month_window
from cloud.reports.words import word
from cloud.web import console, i18n, report_filters, sessions
from cloud.web.forms import read_form
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError, Refused
from cloud.web.render import local_time, page
from cloud.web.report_filters import (
    AREA,
    MAX_SIZE,
    PAGE_SIZE,
    REPORTS,
    FilterError,
    Report,
    Table,
    Typed,
)

router = APIRouter(prefix="/console", include_in_schema=False)

Text = Annotated[str, Query(max_length=100)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Size = Annotated[int, Query(ge=1, le=MAX_SIZE)]
MONTHS_CHARTED = 12


# Staff may read reports, as the API's `allow(*STAFF)`; an installer gets the refusal page.
Reader = Annotated[Principal, console.allowed(*STAFF)]


def _typed(  # noqa: PLR0917 (one query parameter each)
    first: Annotated[str, Query(alias="from", max_length=100)] = "",
    last: Annotated[str, Query(alias="to", max_length=100)] = "",
    building: Text = "", floor: Text = "", shop: Text = "", account: Text = "",
    merchant: Text = "", id_number: Text = "", group: Text = "", operator: Text = "",
    method: Text = "", status: Text = "", template: Text = "", node: Text = "",
    relay: Text = "", sort: Text = "", site: Annotated[str, Query(max_length=200)] = "",
) -> Typed:  # fmt: skip
    return Typed(first, last, building, floor, shop, account, merchant, id_number, group,
                 operator, method, status, template, node, relay, sort, site)  # fmt: skip


Filters = Annotated[Typed, Depends(_typed)]


@dataclass(frozen=True, slots=True)
class Field:
    """A field of a report's filter form."""

    name: str  # the query parameter
    label: str  # catalogue key
    kind: str = "text"  # text, date, month, select
    options: tuple[tuple[str, str], ...] = ()  # (value, words) of a select


def _area(t: i18n.Translate, sites: list[str]) -> list[Field]:
    """The area fields: the site (a select of the registry's sites), then the typed ones."""
    site = Field("site", "filter_site", "select", (("", t("filter_any")), *((n, n) for n in sites)))
    return [site, *(Field(name, f"filter_{name}") for name in AREA if name != "site")]


def _site_names(session: DbSession) -> list[str]:
    return list(session.scalars(select(reg.Site.name).order_by(reg.Site.name)))


def _fields(
    report: Report, t: i18n.Translate, lang: str, saved: list[tuple[str, str]], sites: list[str]
) -> list[Field]:
    """The form's fields: the window, the report's own filters, then site, area and merchant."""
    own: list[Field] = []
    for name in report.own:
        if name == "group":
            own.append(Field(name, "filter_group", "select", tuple(
                (g, " × ".join(t(f"group_{part}") for part in g.split(",")))
                for g in report_filters.GROUP_CHOICES)))  # fmt: skip
        elif name == "method":
            own.append(Field(name, "filter_method", "select", _options(
                t, lang, "method", report_filters.METHODS)))  # fmt: skip
        elif name == "status":
            states = (report_filters.DEPOSIT_STATES if report.name == "deposits"
                      else report_filters.REFUND_STATES)  # fmt: skip
            own.append(Field(name, "filter_status", "select", _options(t, lang, "status", states)))
        elif name == "relay":
            own.append(Field(name, "col_relay", "select", (("", t("filter_any")),
                       ("1", t("relay_closed")), ("0", t("relay_open")))))  # fmt: skip
        elif name == "template":
            if saved:
                choices = (("", t("filter_none")), *saved)
                own.append(Field(name, "filter_template", "select", choices))
        else:
            own.append(Field(name, f"filter_{name}"))
    window = [Field("from", "filter_from", "date"), Field("to", "filter_to", "date")]
    return [*window, *own, *_area(t, sites)]


def _form(
    report: Report, t: i18n.Translate, lang: str, who: Principal, session: DbSession
) -> list[Field]:
    """The report's form fields, with the saved templates and the registry's sites offered."""
    return _fields(report, t, lang, _refund_templates(who, session), _site_names(session))


def _options(
    t: i18n.Translate, lang: str, column: str, codes: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """A select's options: any, then each code in the printed report's words."""
    return (("", t("filter_any")), *((c, word(column, c, lang)) for c in codes))


def _sites(session: DbSession) -> str:
    return " · ".join(session.scalars(select(reg.Site.name).order_by(reg.Site.name)).all()[:3])


def _places(session: DbSession) -> dict[str, list[str]]:
    """The registry's building and floor names, offered as the area fields' suggestions."""
    return {
        "building": list(session.scalars(select(reg.Building.name).distinct().order_by(
            reg.Building.name))),
        "floor": list(session.scalars(select(reg.Floor.name).distinct().order_by(
            reg.Floor.name))),
    }  # fmt: skip


def _linker(path: str, query: dict[str, str]) -> Any:
    def link(**changes: object) -> str:
        merged = {**query, **{k: str(v) for k, v in changes.items() if v is not None}}
        merged = {k: v for k, v in merged.items() if v != ""}
        return f"{path}?{urlencode(merged)}" if merged else path

    return link


def _screen(
    request: Request, lang: tuple[str, bool], who: Principal, session: DbSession, now: Now, *,
    heading: str, fields: list[Field], values: dict[str, str], found: Table | None = None,
    error: str = "", period: str = "", chart: str = "", exports: dict[str, str] | None = None,
    note: str = "", sortable: bool = True, template_columns: list[tuple[str, str]] | None = None,
) -> Response:  # fmt: skip
    code = lang[0]
    t = i18n.translator(code)
    link = _linker(request.url.path, values)
    other = "en" if code == "zh" else "zh"
    context = {
        "heading": heading, "fields": fields, "values": values, "found": found,
        "error": error, "period": period, "chart": chart, "exports": exports or {},
        "note": note, "sortable": sortable, "link": link, "lang_link": link(lang=other),
        "sites": _sites(session), "printed": local_time(now), "places": _places(session),
        "cell": lambda c, v: report_filters.cell(c, v, code),
        "head": lambda c: report_filters.heading(c, code),
        "template_columns": template_columns or [],
    }  # fmt: skip
    context["chosen"] = [
        (t(f.label), dict(f.options).get(values[f.name], values[f.name]))
        for f in fields
        if values.get(f.name) and f.name not in {"from", "to", "month"}
    ]
    status = 422 if error else 200
    return page(request, "console/report.html", lang, status=status,
                **console.frame(request, who), **context)  # fmt: skip


def _error(t: i18n.Translate, failed: Exception) -> str:
    if isinstance(failed, FilterError):
        values = {k: t(f"filter_{v}") if k == "which" else v for k, v in failed.values.items()}
        return t(failed.key, **values)
    return t("filter_refused", detail=str(failed))


# -- the index ---------------------------------------------------------------------------------


@router.get("/reports")
def reports_index(request: Request, lang: Lang, who: Reader, session: DbSession) -> Response:
    saved = reports_api.list_templates(who=who, session=session)
    return page(request, "console/reports.html", lang, **console.frame(request, who),
                reports=list(REPORTS), templates=saved,
                lang_link=f"/console/reports?lang={'en' if lang[0] == 'zh' else 'zh'}")  # fmt: skip


# -- the monthly subsidy view --------------------------------------------------------------------


def _month(text: str, now: dt.datetime) -> str:
    chosen = text.strip() or now.astimezone(SITE_ZONE).strftime("%Y-%m")
    try:
        month_window(chosen)
    except Invalid:
        raise FilterError("filter_bad_month", text=text) from None
    return chosen


def _months_before(month: str, count: int) -> list[str]:
    year, number = int(month[:4]), int(month[5:])
    index = year * 12 + number - 1
    return [f"{(index - back) // 12:04d}-{(index - back) % 12 + 1:02d}"
            for back in reversed(range(count))]  # fmt: skip


CARRIED = Column("left_wh", "结余(Wh)", Kind.WH, total=True)


def with_left_over(found: Table) -> Table:
    """The subsidies report with what is left of each row's month: issued − used − cleared
    (from the same row and the same totals: not counted a second way)."""

    def left(row: dict[str, Any]) -> int:
        return int(row["issued_wh"]) - int(row["used_wh"]) - int(row["expired_wh"])

    rows = [{**r, "left_wh": left(r)} for r in found.rows]
    return replace(found, columns=(*found.columns, CARRIED), rows=rows,
                   totals={**found.totals, "left_wh": left(found.totals)})  # fmt: skip


@router.get("/subsidies")
def subsidy_months(  # noqa: PLR0917 (FastAPI's parameters)
    request: Request, lang: Lang, who: Reader, session: DbSession, now: Now, typed: Filters,
    month: Annotated[str, Query(max_length=100)] = "", offset: Offset = 0,
    size: Size = PAGE_SIZE,
) -> Response:  # fmt: skip
    t = i18n.translator(lang[0])
    area = typed.query((*AREA, "sort"))
    values = {"month": month.strip(), **area}
    fields = [Field("month", "filter_month", "month"), *_area(t, _site_names(session))]
    frame: dict[str, Any] = {"heading": t("menu_subsidy_months"), "fields": fields,
                             "values": values, "note": t("subsidy_left_note")}  # fmt: skip
    try:
        chosen = values["month"] = _month(month, now)
        span = month_window(chosen)
        typed = replace(typed, first=span.first.isoformat(), last=span.last.isoformat())
        args = report_filters.arguments(REPORTS["subsidies"], typed, now)
        answer = reports_api.subsidies_report(who=who, session=session, now=now, limit=size,
                                              offset=offset, **args)  # fmt: skip
        history = []
        for each in _months_before(chosen, MONTHS_CHARTED):
            whole = month_window(each)
            sums = reports_api.subsidies_report(
                who=who, session=session, now=now, limit=1, offset=0,
                **{**args, "first": whole.first, "last": whole.last},
            ).totals  # fmt: skip
            history.append((each, sums))
    except (FilterError, Invalid) as failed:
        return _screen(request, lang, who, session, now, error=_error(t, failed), **frame)
    found = with_left_over(report_filters.table(answer, size))
    series = [{"name": t(f"subsidy_{k}"), "data": [report_filters.kwh(s[k]) for _, s in history]}
              for k in ("issued_wh", "used_wh", "expired_wh")]  # fmt: skip
    chart = json.dumps({"categories": [m for m, _ in history], "series": series,
                        "unit": t("kwh_unit"), "line": False}, ensure_ascii=False)  # fmt: skip
    exported = {**area, "from": span.first.isoformat(), "to": span.last.isoformat()}
    return _screen(request, lang, who, session, now, found=found, period=span.text(),
                   chart=chart, exports=_exports("subsidies", exported, lang[0]),
                   **frame)  # fmt: skip


# -- one report -------------------------------------------------------------------------------


def _report(name: str) -> Report:
    found = REPORTS.get(name)
    if found is None:
        raise PageError("report_not_found", 404)
    return found


def _exports(name: str, query: dict[str, str], lang: str) -> dict[str, str]:
    base = f"/console/reports/{name}/export?"
    return {fmt: base + urlencode({**query, "format": fmt, "lang": lang})
            for fmt in ("xlsx", "pdf")}  # fmt: skip


def _refund_templates(who: Principal, session: DbSession) -> list[tuple[str, str]]:
    """(name, title) of the saved refunds templates."""
    return [(s.name, s.title) for s in reports_api.list_templates(who=who, session=session)
            if s.report == "refunds"]  # fmt: skip


@router.get("/reports/{name}")
def report_page(  # noqa: PLR0917 (FastAPI's parameters)
    request: Request, lang: Lang, who: Reader, session: DbSession, now: Now, typed: Filters,
    name: Annotated[str, Path(pattern=r"^[a-z]{1,20}$")], offset: Offset = 0,
    size: Size = PAGE_SIZE,
) -> Response:  # fmt: skip
    report = _report(name)
    t = i18n.translator(lang[0])
    values = typed.query(("first", "last", *report.own, *AREA, "sort"))
    frame: dict[str, Any] = {
        "heading": t(f"report_{name}"), "values": values,
        "fields": _form(report, t, lang[0], who, session),
    }  # fmt: skip
    if name in templates.COLUMNS and who.role is Role.ADMIN:  # only an admin saves templates
        frame["template_columns"] = report_filters.template_columns(name, lang[0])
    try:
        args = report_filters.arguments(report, typed, now)
        answer = report.route(who=who, session=session, now=now, limit=size, offset=offset,
                              **args)  # fmt: skip
    except (FilterError, Invalid, NotFound) as failed:
        return _screen(request, lang, who, session, now, error=_error(t, failed), **frame)
    found = report_filters.table(answer, size)
    names = {
        "wh": t("chart_kwh"),
        "kwh": t("kwh_unit"),
        **{k: t(f"subsidy_{k}") for k in ("issued_wh", "used_wh", "expired_wh")},
    }
    chart = report_filters.chart(report, found, lang[0], names)
    period = f"{args['first'].isoformat()} ~ {args['last'].isoformat()}"
    values.update({"from": args["first"].isoformat(), "to": args["last"].isoformat()})
    frame["heading"] = report_filters.title(found.title, lang[0])
    return _screen(request, lang, who, session, now, found=found, period=period, chart=chart,
                   exports=_exports(name, values, lang[0]), **frame)  # fmt: skip


@router.get("/reports/{name}/export")
def report_export(  # noqa: PLR0917 (FastAPI's parameters)
    request: Request, lang: Lang, who: Reader, session: DbSession, now: Now, typed: Filters,
    name: Annotated[str, Path(pattern=r"^[a-z]{1,20}$")],
    fmt: Annotated[str, Query(alias="format", pattern="^(xlsx|pdf)$")] = "xlsx",
) -> Response:  # fmt: skip
    """The API's own file for these filters (`format=xlsx|pdf`), for the page's links: the
    browser has the console's cookie, not the API's bearer token."""
    report = _report(name)
    t = i18n.translator(lang[0])
    try:
        args = report_filters.arguments(report, typed, now)
        file: Response = report.route(who=who, session=session, now=now, limit=1, offset=0,
                                      fmt=fmt, lang=lang[0], **args)  # fmt: skip
        return file
    except (FilterError, Invalid, NotFound) as failed:
        values = typed.query(("first", "last", *report.own, *AREA, "sort"))
        return _screen(request, lang, who, session, now, heading=t(f"report_{name}"),
                       fields=_form(report, t, lang[0], who, session),
                       values=values, error=_error(t, failed))  # fmt: skip


# -- saving a template ------------------------------------------------------------------------

TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_TITLE = 200


@router.post("/reports/{name}/templates")
def save_template(  # noqa: PLR0917 (FastAPI's parameters)
    request: Request, lang: Lang, who: Reader, session: DbSession, now: Now,
    form: Annotated[dict[str, str], Depends(read_form)],
    name: Annotated[str, Path(pattern=r"^[a-z]{1,20}$")],
) -> Response:  # fmt: skip
    """Save the columns ticked and a title as a template (admin), as `PUT /report-templates`
    does: through `cloud.reports.templates.save`, logged in the operator log the same way."""
    sessions.check_csrf(request, form.get("csrf"))
    report = _report(name)
    if name not in templates.COLUMNS or who.role is not Role.ADMIN:
        raise Refused(who)
    t = i18n.translator(lang[0])
    saved, title = form.get("template_name", "").strip(), form.get("title", "").strip()
    columns = [k for k in templates.COLUMNS[name] if form.get(f"col_{k}") == "on"]
    problem = ""
    if not TEMPLATE_NAME.fullmatch(saved):
        problem = "template_bad_name"
    elif not title or len(title) > MAX_TITLE:
        problem = "template_bad_title"
    elif not columns:
        problem = "template_no_columns"
    if problem:
        return _screen(request, lang, who, session, now, heading=t(f"report_{name}"),
                       fields=_form(report, t, lang[0], who, session),
                       values={}, error=t(problem),
                       template_columns=report_filters.template_columns(name, lang[0]))  # fmt: skip
    body = reports_api.TemplateIn.model_validate({"report": name, "columns": columns,
                                                 "title": title})  # fmt: skip
    reports_api.save_template(name=saved, body=body, who=who, session=session, now=now)
    return RedirectResponse(f"/console/reports/{name}?{urlencode({'template': saved})}",
                            status_code=303)  # fmt: skip

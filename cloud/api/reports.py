"""`/reports/*`, `/report-templates/*`, `/statements/{account}`: the queries and reports of
`cloud.reports`, each as a JSON page (`format=json`, amounts integer fen and Wh, with the
totals over every matching row), an Excel file (`xlsx`) or a printable PDF (`pdf`).

Windows are days in the site's zone (`from`, `to`, inclusive; default this month so far).
Every report takes the area filters (`building`, `floor`, `shop`, `account`), the site's
(`site`: its name; the accounts of its shops, as the registry has them now) and the
merchant's (`merchant`: its name, `id_number`: its identity number).
Filters are checked: an unknown group, sort column or template column, a bad month, or
`from` after `to` is 422 naming what is allowed. Staff read every report; a merchant only its
own monthly statement; only an admin saves or deletes templates (logged in the operator log).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import Field, StrictStr

from cloud.api.auth import allow
from cloud.api.common import (
    Day,
    DbSession,
    Limit,
    Now,
    Out,
    Owner,
    Page,
    StrictBody,
    answers,
    aware,
)
from cloud.people.auth import STAFF, Principal, Role
from cloud.reports import excel, pdf, queries, statement, templates
from cloud.reports.core import Spec, fetch, month_window, stream, totals, window

router = APIRouter(tags=["reports"])

Staff = Annotated[Principal, allow(*STAFF)]
Admin = Annotated[Principal, allow(Role.ADMIN)]
Format = Annotated[Literal["json", "xlsx", "pdf"], Query(alias="format")]
Lang = Annotated[Literal["zh", "en"], Query(description="a PDF's language: zh or en")]
From = Annotated[Day | None, Query(alias="from", description="first day (site zone)")]
To = Annotated[Day | None, Query(alias="to", description="last day, inclusive")]
Sort = Annotated[
    str | None, Query(max_length=200, description="columns, comma separated; -column descending")
]
Text = Annotated[str | None, Query(max_length=64)]
Merchant = Annotated[str | None, Query(max_length=64, description="the merchant's name")]
Site = Annotated[
    str | None, Query(max_length=200, description="the registry's site name (its shops' accounts)")
]
IdNumber = Annotated[str | None, Query(max_length=32, description="the merchant's ID number")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
TemplateName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
REFUSALS = answers(e422="a bad filter, group, sort or window (the allowed values are named)")


class ColumnOut(Out):
    key: str
    label: str
    kind: str
    total: bool


class ReportPage(Page[dict[str, Any]]):
    title: str
    columns: list[ColumnOut]
    totals: dict[str, int] = Field(description="sums over every matching row, not just the page")


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: aware(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


def _answer(
    session: DbSession,
    spec: Spec,
    fmt: str,
    *,
    sort: str | None,
    limit: int,
    offset: int,
    now: dt.datetime,
    lang: str,
) -> Any:
    if fmt == "json":
        result = fetch(session, spec, sort=sort, limit=limit, offset=offset)
        return ReportPage(
            items=[_json_row(r) for r in result.rows], total=result.total, limit=limit,
            offset=offset, title=spec.title, totals=result.totals,
            columns=[ColumnOut(key=c.key, label=c.label, kind=c.kind.value, total=c.total)
                     for c in spec.columns],
        )  # fmt: skip
    if fmt == "xlsx":
        body = excel.workbook(spec, stream(session, spec, sort=sort))
        return _file(body, excel.MEDIA_TYPE, f"{spec.name}.xlsx")
    _, sums = totals(session, spec)
    body = pdf.report(spec, stream(session, spec, sort=sort), sums, generated=now, lang=lang)
    return _file(body, pdf.MEDIA_TYPE, f"{spec.name}.pdf")


def _file(body: bytes, media_type: str, name: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_FILES = {200: {"content": {excel.MEDIA_TYPE: {}, pdf.MEDIA_TYPE: {}},
                "description": "a page as JSON, or the whole report as xlsx / pdf"},
          **REFUSALS}  # fmt: skip


def _filters(
    first: dt.date | None, last: dt.date | None, now: dt.datetime, **area: str | None
) -> queries.Filters:
    return queries.Filters(window(first, last, now), **area)


@router.get("/reports/consumption", response_model=ReportPage, responses=_FILES,
            summary="Consumption (Wh, fen) classified or itemised by group")  # fmt: skip
def consumption_report(
    *,
    who: Staff, session: DbSession, now: Now, first: From = None, last: To = None,
    group: Annotated[str, Query(description=f"1-3 of {', '.join(queries.GROUPS)}, comma "
                                "separated (e.g. account,day)")] = "account",
    building: Text = None, floor: Text = None, shop: Text = None, account: Text = None,
    merchant: Merchant = None, id_number: IdNumber = None, site: Site = None,
    sort: Sort = None, limit: Limit = 50, offset: Offset = 0, fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:  # fmt: skip
    filters = _filters(first, last, now, building=building, floor=floor, shop=shop,
                       account=account, merchant=merchant, id_number=id_number,
                       site=site)  # fmt: skip
    spec = queries.consumption(filters, queries.parse_groups(group))
    return _answer(session, spec, fmt, sort=sort, limit=limit, offset=offset, now=now, lang=lang)


@router.get("/reports/deposits", response_model=ReportPage, responses=_FILES,
            summary="Recharges with shop, amount, operator, method, time, status")  # fmt: skip
def deposits_report(
    *,
    who: Staff, session: DbSession, now: Now, first: From = None, last: To = None,
    account: Text = None, shop: Text = None, building: Text = None, floor: Text = None,
    operator: Text = None, method: Text = None, status_: Annotated[
        str | None, Query(alias="status", max_length=16)] = None,
    merchant: Merchant = None, id_number: IdNumber = None, site: Site = None,
    sort: Sort = None, limit: Limit = 50, offset: Offset = 0, fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:  # fmt: skip
    filters = _filters(first, last, now, building=building, floor=floor, shop=shop,
                       account=account, merchant=merchant, id_number=id_number,
                       site=site)  # fmt: skip
    spec = queries.deposits(filters, operator=operator, method=method, status=status_)
    return _answer(session, spec, fmt, sort=sort, limit=limit, offset=offset, now=now, lang=lang)


@router.get("/reports/subsidies", response_model=ReportPage, responses=_FILES,
            summary="Subsidy Wh issued, used and expired per account")  # fmt: skip
def subsidies_report(
    *,
    who: Staff, session: DbSession, now: Now, first: From = None, last: To = None,
    account: Text = None, shop: Text = None, building: Text = None, floor: Text = None,
    merchant: Merchant = None, id_number: IdNumber = None, site: Site = None,
    sort: Sort = None, limit: Limit = 50, offset: Offset = 0, fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:  # fmt: skip
    filters = _filters(first, last, now, building=building, floor=floor, shop=shop,
                       account=account, merchant=merchant, id_number=id_number,
                       site=site)  # fmt: skip
    spec = queries.subsidies(filters)
    return _answer(session, spec, fmt, sort=sort, limit=limit, offset=offset, now=now, lang=lang)


@router.get("/reports/refunds", response_model=ReportPage, responses=_FILES,
            summary="Refunds, per refund method, with a saved template's columns")  # fmt: skip
def refunds_report(
    *,
    who: Staff, session: DbSession, now: Now, first: From = None, last: To = None,
    method: Text = None,
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    account: Text = None, shop: Text = None, building: Text = None, floor: Text = None,
    template: Annotated[str | None, Query(max_length=64, description="saved template")] = None,
    merchant: Merchant = None, id_number: IdNumber = None, site: Site = None,
    sort: Sort = None, limit: Limit = 50, offset: Offset = 0, fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:  # fmt: skip
    filters = _filters(first, last, now, building=building, floor=floor, shop=shop,
                       account=account, merchant=merchant, id_number=id_number,
                       site=site)  # fmt: skip
    shape: dict[str, Any] = {}
    if template is not None:
        saved = templates.get(session, template, "refunds")
        shape = {"columns": tuple(saved.columns), "title": saved.title}
    spec = queries.refunds(filters, method=method, status=status_, **shape)
    return _answer(session, spec, fmt, sort=sort, limit=limit, offset=offset, now=now, lang=lang)


@router.get("/reports/meters", response_model=ReportPage, responses=_FILES,
            summary="Meter status and read success rate over the window")  # fmt: skip
def meters_report(
    *,
    who: Staff, session: DbSession, now: Now, first: From = None, last: To = None,
    node: Text = None, account: Text = None, shop: Text = None, building: Text = None,
    floor: Text = None, relay: Annotated[int | None, Query(ge=0, le=1)] = None,
    merchant: Merchant = None, id_number: IdNumber = None, site: Site = None,
    sort: Sort = None, limit: Limit = 50, offset: Offset = 0, fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:  # fmt: skip
    filters = _filters(first, last, now, building=building, floor=floor, shop=shop,
                       account=account, merchant=merchant, id_number=id_number,
                       site=site)  # fmt: skip
    spec = queries.meters(filters, now, node=node, relay=relay)
    return _answer(session, spec, fmt, sort=sort, limit=limit, offset=offset, now=now, lang=lang)


# -- templates ------------------------------------------------------------------------------------


class TemplateIn(StrictBody):
    report: Literal["refunds"]
    columns: list[StrictStr] = Field(min_length=1, max_length=len(queries.REFUND_COLUMNS),
                                     examples=[["time", "shop", "fen", "method"]])  # fmt: skip
    title: StrictStr = Field("退款清单", min_length=1, max_length=200)


class TemplateOut(Out):
    name: str
    report: str
    title: str
    columns: list[str]


@router.get("/report-templates", response_model=list[TemplateOut], summary="Saved templates")
def list_templates(who: Staff, session: DbSession) -> list[TemplateOut]:
    return [TemplateOut(**templates.view(t)) for t in templates.listing(session)]


@router.get("/report-templates/{name}", response_model=TemplateOut, summary="One template",
            responses=answers(e404="no such template"))  # fmt: skip
def get_template(name: TemplateName, who: Staff, session: DbSession) -> TemplateOut:
    return TemplateOut(**templates.view(templates.get(session, name)))


@router.put("/report-templates/{name}", response_model=TemplateOut, responses=REFUSALS,
            summary="Save a report's columns and title under a name (admin)")  # fmt: skip
def save_template(
    name: TemplateName, body: TemplateIn, who: Admin, session: DbSession, now: Now
) -> TemplateOut:
    saved = templates.save(session, who.actor, name, report=body.report, columns=body.columns,
                           title=body.title, now=now)  # fmt: skip
    return TemplateOut(**templates.view(saved))


@router.delete(
    "/report-templates/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a template (admin)",
    responses=answers(e404="no such template"),
)
def delete_template(name: TemplateName, who: Admin, session: DbSession, now: Now) -> Response:
    templates.delete(session, who.actor, name, now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- statements -----------------------------------------------------------------------------------


class PocketOut(Out):
    opening: int
    movements: dict[str, int]
    closing: int


class StatementOut(Out):
    account: str
    month: str
    shop: str
    building: str
    floor: str
    prepaid: PocketOut = Field(description="fen")
    subsidy: PocketOut = Field(description="Wh")
    debt: PocketOut = Field(description="fen owed for energy used with no money left (≤ 0)")
    consumption: list[dict[str, Any]]
    items: list[dict[str, Any]]


def _pocket_out(lines: statement.PocketLines) -> PocketOut:
    return PocketOut(opening=lines.opening, movements=lines.movements, closing=lines.closing)


@router.get("/statements/{account}", response_model=StatementOut,
            responses={**_FILES, **answers(e403="a merchant asking for another account")},
            summary="Monthly statement: opening, movements, closing")  # fmt: skip
def monthly_statement(
    *,
    account: Annotated[Owner, Path()],
    who: Annotated[Principal, allow(*STAFF, Role.MERCHANT)],
    session: DbSession,
    now: Now,
    month: Annotated[str, Query(max_length=7, description="YYYY-MM")],
    fmt: Format = "json",
    lang: Lang = "zh",
) -> Any:
    who.require_account(account)
    found = statement.monthly(session, account, month, month_window(month))
    if fmt == "json":
        return StatementOut(
            account=found.account, month=found.month, shop=found.shop,
            building=found.building, floor=found.floor,
            prepaid=_pocket_out(found.prepaid), subsidy=_pocket_out(found.subsidy),
            debt=_pocket_out(found.debt),
            consumption=found.consumption, items=[_json_row(i) for i in found.items],
        )  # fmt: skip
    tables = statement.sections(found)
    name = f"statement-{account}-{month}"
    if fmt == "xlsx":
        body = excel.sheets([(heading, cols, excel.rows_of(cols, rows), any(c.total for c in cols))
                             for heading, cols, rows in tables])  # fmt: skip
        return _file(body, excel.MEDIA_TYPE, f"{name}.xlsx")
    body = statement.printable(found, generated=now, lang=lang)
    return _file(body, pdf.MEDIA_TYPE, f"{name}.pdf")

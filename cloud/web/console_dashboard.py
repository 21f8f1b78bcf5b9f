"""`/console/dashboard`: the figures across every site on one screen, for the roles that may
see money (staff). Each figure is read the way the API or its reports read it, never summed a
second way:

| figure                         | from                                                        |
|--------------------------------|-------------------------------------------------------------|
| energy and sales, today/month  | the consumption report's totals (`/reports/consumption`:    |
| and per day of the month       | `reports.queries.consumption` over the rollup), by `day`    |
| recharges, today/month         | the deposits report's net total (`/reports/deposits`)       |
| accounts in arrears            | monitoring's `state=arrears` filter (`planner.in_arrears`)  |
| concentrators offline          | offline or silent (`cloud.db.presence`), the cloud's chain  |
|                                | left out (as `/concentrators`)                              |
| read success, last 24 h        | `/alarms/read-success` (`operations.alarms.read_success`)   |
| open alarms by kind            | `/alarms/counts?cleared=false` (`operations.alarms.counts`) |
| per site: concentrators, read  | the same, with the API's `site` filter (`alarms.site_nodes`:|
| success, open alarms           | the concentrators serving the site's shops and meters)      |
| per site: the month's energy,  | the same reports with their `site` filter (`/reports/…?site=`:|
| sales and recharges            | the accounts of the site's shops, as the registry has them) |

An account without a shop is in no site: the sites' money may add up to less than the total.

The charts (ECharts, `static/dashboard.js`) get their numbers from `data-chart` attributes the
page writes; no inline script.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.common import DbSession, HeardSince, Now
from cloud.chains.rollups import SITE_ZONE
from cloud.db import models
from cloud.db import registry as reg
from cloud.db.presence import on_line
from cloud.keys import CLOUD_NODE
from cloud.operations import alarms
from cloud.operations.alarms import AlarmFilters, BusSuccess
from cloud.people.auth import STAFF, Principal
from cloud.reports import core, queries
from cloud.reports.core import Window
from cloud.web import i18n, monitoring
from cloud.web.chart import kwh_text
from cloud.web.console import allowed, frame
from cloud.web.forms import yuan_text
from cloud.web.i18n import Lang
from cloud.web.render import page

router = APIRouter(prefix="/console", include_in_schema=False)

Staff = Annotated[Principal, allowed(*STAFF)]
READ_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Period:
    wh: int
    sales_fen: int  # energy sold (the consumption report's fen)
    recharge_fen: int  # recharges booked, net of corrections (the deposits report's net)


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: int
    name: str
    nodes: int
    offline: int
    read: int
    attempted: int
    alarms: int  # open
    month: Period  # the month so far, of the site's accounts


@dataclass(frozen=True, slots=True)
class Figures:
    today: Period
    month: Period
    days: list[tuple[dt.date, int, int]]  # each day of the month to today: (day, Wh, fen)
    arrears: int
    nodes: int
    offline: int
    read: int
    attempted: int
    buses: list[BusSuccess]
    alarms: list[tuple[str, str, int]]  # (severity, kind, count), the most severe first
    sites: list[SiteRow]


def percent(read: int, attempted: int) -> str | None:
    """`"98.5"`: read / attempted as a percentage, one decimal, rounded down; None for none."""
    if not attempted:
        return None
    tenths = read * 1000 // attempted
    return f"{tenths // 10}.{tenths % 10}"


def _period(session: Session, window: Window, site: str | None = None) -> Period:
    filters = queries.Filters(window, site=site)
    _, energy = core.totals(session, queries.consumption(filters))
    _, paid = core.totals(session, queries.deposits(filters))
    return Period(energy["wh"], energy["fen"], paid["net_fen"])


def _nodes(session: Session, heard_since: dt.datetime, site: str | None = None) -> tuple[int, int]:
    """(concentrators, of them offline or silent: `cloud.db.presence`), the cloud's own chain
    left out (as `/concentrators`)."""
    node = models.Concentrator
    query = select(func.count(), func.count().filter(~on_line(node, heard_since))).where(
        node.node != CLOUD_NODE
    )
    if site is not None:
        query = query.where(node.node.in_(alarms.site_nodes(site)))
    total, offline = session.execute(query).one()
    return int(total), int(offline)


def _sites(
    session: Session, since: dt.datetime, month: Window, heard_since: dt.datetime
) -> list[SiteRow]:
    rows = []
    for site_id, name in session.execute(
        select(reg.Site.id, reg.Site.name).order_by(reg.Site.name)
    ):
        nodes, offline = _nodes(session, heard_since, name)
        buses = alarms.read_success(session, since, site=name)
        open_alarms = alarms.counts(session, AlarmFilters(site=name, cleared=False))
        rows.append(SiteRow(site_id, name, nodes, offline, sum(b.read for b in buses),
                            sum(b.attempted for b in buses),
                            sum(n for _, _, n in open_alarms),
                            _period(session, month, name)))  # fmt: skip
    return rows


def figures(session: Session, now: dt.datetime, heard_since: dt.datetime) -> Figures:
    today = now.astimezone(SITE_ZONE).date()
    month = Window(today.replace(day=1), today)
    by_day = queries.consumption(queries.Filters(month), ("day",))
    used = {day: (int(wh), int(fen))
            for day, wh, _subsidy_wh, fen in core.stream(session, by_day, sort="day")}  # fmt: skip
    every = (month.first + dt.timedelta(days=n) for n in range((today - month.first).days + 1))
    days = [(day, *used.get(day, (0, 0))) for day in every]
    nodes, offline = _nodes(session, heard_since)
    buses = alarms.read_success(session, now - READ_WINDOW)
    return Figures(
        today=_period(session, Window(today, today)),
        month=_period(session, month),
        days=days,
        arrears=monitoring.arrears_accounts(session),
        nodes=nodes,
        offline=offline,
        read=sum(b.read for b in buses),
        attempted=sum(b.attempted for b in buses),
        buses=buses,
        alarms=alarms.counts(session, AlarmFilters(cleared=False)),
        sites=_sites(session, now - READ_WINDOW, month, heard_since),
    )


def _charts(found: Figures, t: i18n.Translate) -> dict[str, str]:
    """Each chart's data as the JSON its `data-chart` attribute carries."""

    def chart(labels: Sequence[str], series: list[dict[str, object]], whole: bool = False) -> str:
        data = {"labels": list(labels), "series": series, "whole": whole}  # whole: counts
        return json.dumps(data, ensure_ascii=False)

    by_kind: dict[str, int] = {}
    for _, kind, n in found.alarms:
        by_kind[kind] = by_kind.get(kind, 0) + n
    return {
        "days": chart([d.strftime("%m-%d") for d, _, _ in found.days], [
            {"name": t("dash_energy_kwh"), "type": "bar",
             "values": [kwh_text(wh) for _, wh, _ in found.days]},
            {"name": t("dash_sales_yuan"), "type": "line", "axis": 1,
             "values": [yuan_text(fen) for _, _, fen in found.days]},
        ]),
        "alarms": chart([i18n.alarm_kind(t, k) for k in by_kind], [
            {"name": t("dash_alarms_open"), "type": "bar", "values": list(by_kind.values())},
        ], whole=True),
        "reads": chart([f"{b.node} {b.bus}" for b in found.buses], [
            {"name": t("dash_read_percent"), "type": "bar",
             "values": [round(100 * b.read / b.attempted, 1) if b.attempted else 0
                        for b in found.buses]},
        ]),
    }  # fmt: skip


@router.get("/dashboard")
def dashboard(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, now: Now, heard_since: HeardSince
) -> Response:
    found = figures(session, now, heard_since)
    charts = _charts(found, i18n.translator(lang[0]))
    return page(request, "console/dashboard.html", lang, **frame(request, who), found=found,
                charts=charts, today=now.astimezone(SITE_ZONE).date(),
                percent=percent)  # fmt: skip

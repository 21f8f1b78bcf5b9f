"""What the console's report screens ask the API's report routes (`cloud.api.reports`) for: the
filters a person typed, checked into the arguments of those routes, and the page of rows they
answer, ready to show.

The screens call the API's own route functions (the same builders in `cloud.reports.queries`,
the same `fetch` with its totals, the same exporters), so a page, its Excel and its PDF hold the
numbers `GET /reports/<name>` gives for the same filter. What is checked here is only what a
person may mistype, turned into a message in words (`FilterError`, a catalogue key): a day that
is not a date, `from` after `to`, a window too long, an unknown group or relay state. Anything
else the builders refuse (`cloud.errors.Invalid`) is shown with the builder's own sentence.

| report       | its own filters (besides window, site, area and merchant) | chart              |
|--------------|----------------------------------------------------------|---------------------|
| consumption  | group (1-3 of `queries.GROUPS`)                           | kWh by first group |
| deposits     | operator, method, status                                  | —                  |
| refunds      | method, status, a saved template                          | —                  |
| subsidies    | —                                                         | issued/used/cleared|
| meters       | concentrator, relay                                       | —                  |
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cloud.api import reports as reports_api
from cloud.api.common import FIRST_TIME, LAST_TIME
from cloud.chains.rollups import SITE_ZONE
from cloud.errors import Invalid
from cloud.reports import pdf, queries
from cloud.reports.core import MAX_DAYS, Column, Kind, Window, window
from cloud.reports.words import in_lang

PAGE_SIZE = 50
MAX_SIZE = 200
# The area filters every report takes; `site` is the registry's site name (a select).
AREA = ("site", "building", "floor", "shop", "account", "merchant", "id_number")
# Groupings offered in the consumption form (any 1-3 of `queries.GROUPS` is taken from a URL).
GROUP_CHOICES = ("account", "shop", "building", "floor", "tariff_period", "account_type", "day",
                 "meter", "account,day", "account,tariff_period", "shop,meter",
                 "building,floor", "account_type,tariff_period")  # fmt: skip
METHODS = ("cash", "card", "wechat", "alipay", "transfer", "original")
DEPOSIT_STATES = ("pending", "posted", "voided")
REFUND_STATES = ("requested", "reserved", "paid", "cancelled", "failed")


class FilterError(Exception):
    """A filter a person typed that is not one we take: `key` is its catalogue message."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    route: Callable[..., Any]  # the API's route function
    own: tuple[str, ...]  # its filters besides the window and the area
    chart: str = ""  # "first_group", "subsidy" or none


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report("consumption", reports_api.consumption_report, ("group",), "first_group"),
        Report("deposits", reports_api.deposits_report, ("operator", "method", "status")),
        Report("refunds", reports_api.refunds_report, ("method", "status", "template")),
        Report("subsidies", reports_api.subsidies_report, (), "subsidy"),
        Report("meters", reports_api.meters_report, ("node", "relay")),
    )
}


@dataclass(frozen=True, slots=True)
class Typed:
    """The filters as typed (empty: any); each a query parameter of the screen."""

    first: str = ""  # `from`
    last: str = ""  # `to`
    building: str = ""
    floor: str = ""
    shop: str = ""
    account: str = ""
    merchant: str = ""
    id_number: str = ""
    group: str = ""
    operator: str = ""
    method: str = ""
    status: str = ""
    template: str = ""
    node: str = ""
    relay: str = ""
    sort: str = ""
    site: str = ""  # the registry's site name

    def query(self, keep: tuple[str, ...] | None = None) -> dict[str, str]:
        """The filters as URL parameters (empty ones, and those not in `keep`, left out)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name).strip()
            if value and (keep is None or f.name in keep):
                out[{"first": "from", "last": "to"}.get(f.name, f.name)] = value
        return out


def _day(text: str, which: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise FilterError("filter_bad_day", which=which, text=text) from None
    if not FIRST_TIME.date() <= day < LAST_TIME.date():
        raise FilterError("filter_bad_day", which=which, text=text)
    return day


def checked_window(typed: Typed, now: dt.datetime) -> Window:
    """The window the API will use for these filters (its default: this month so far)."""
    first, last = _day(typed.first, "from"), _day(typed.last, "to")
    try:
        return window(first, last, now)
    except Invalid:
        chosen_last = last or now.astimezone(SITE_ZONE).date()
        if first is not None and first > chosen_last:
            raise FilterError("filter_from_after_to") from None
        raise FilterError("filter_window_long", days=MAX_DAYS) from None


def arguments(report: Report, typed: Typed, now: dt.datetime) -> dict[str, Any]:
    """The API route's keyword arguments for these filters (checked, see the docstring)."""
    span = checked_window(typed, now)
    args: dict[str, Any] = {"first": span.first, "last": span.last}
    for key in AREA:
        args[key] = getattr(typed, key).strip() or None
    for key in report.own:
        value = getattr(typed, key).strip() or None
        if key == "group":
            try:
                value = ",".join(queries.parse_groups(value))
            except Invalid:
                raise FilterError("filter_bad_group") from None
        elif key == "relay" and value is not None:
            if value not in {"0", "1"}:
                raise FilterError("filter_bad_relay")
            value = int(value)
        args["status_" if key == "status" else key] = value
    args["sort"] = typed.sort.strip() or None
    return args


@dataclass(frozen=True, slots=True)
class Table:
    """A page of a report as shown: its columns, rows, row count and totals (of every row)."""

    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    total: int
    totals: dict[str, int]
    offset: int
    size: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.size if self.offset + self.size < self.total else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.size) if self.offset > 0 else None


def table(answer: Any, size: int) -> Table:
    """The API's `ReportPage` as a `Table`."""
    columns = tuple(Column(c.key, c.label, Kind(c.kind), c.total) for c in answer.columns)
    return Table(answer.title, columns, list(answer.items), answer.total, dict(answer.totals),
                 answer.offset, size)  # fmt: skip


def cell(column: Column, value: Any, lang: str) -> str:
    """A value as the printed report shows it (`cloud.reports.pdf.text_of`)."""
    return pdf.text_of(column, value, lang)


def heading(column: Column, lang: str) -> str:
    return pdf.label(column, lang)


def title(text: str, lang: str) -> str:
    return in_lang(text, lang)


def kwh(wh: int) -> str:
    """Integer Wh as kWh for a chart axis (exact: three decimals)."""
    whole, rest = divmod(abs(wh), 1000)
    return f"{'-' if wh < 0 else ''}{whole}.{rest:03d}"


def chart(report: Report, found: Table, lang: str, names: Mapping[str, str]) -> str:
    """The chart's data for `static/console_reports.js` (JSON in a data- attribute), or ""."""
    if not found.rows or not report.chart:
        return ""
    first = found.columns[0]
    labels = [cell(first, r[first.key], lang) or "—" for r in found.rows]
    keys = ("wh",) if report.chart == "first_group" else ("issued_wh", "used_wh", "expired_wh")
    if report.chart == "subsidy":
        labels = [r.get("shop") or r["account"] for r in found.rows]
    series = [{"name": names[k], "data": [kwh(int(r[k] or 0)) for r in found.rows]}
              for k in keys]  # fmt: skip
    return json.dumps({"categories": labels, "series": series, "unit": names["kwh"],
                       "line": first.key == "day"}, ensure_ascii=False)  # fmt: skip


def template_columns(report: str, lang: str) -> list[tuple[str, str]]:
    """(key, label) of every column a template of `report` may choose (refunds: the builder's
    own columns, built without a query being run)."""
    today = dt.date.today()
    spec = queries.refunds(queries.Filters(Window(today, today)))
    assert report == spec.name
    return [(c.key, heading(c, lang)) for c in spec.columns]

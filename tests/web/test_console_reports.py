"""The console's reports through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
each report page holds the numbers the JSON API gives for the same filters (rows, row count,
totals), pages in SQL, exports the API's own Excel and PDF, refuses a mistyped filter with a
sentence (never a 500), and is for the roles the API allows; the monthly subsidy view and the
operator log likewise."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db import models
from cloud.people.auth import Role
from cloud.reports import queries
from cloud.reports.core import month_window
from cloud.web import catalogue, report_filters
from ledger.transfers import Code
from tests.cloud.api.conftest import NODE
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import MERCHANT, NOW, PASSWORD, World

HALF_YEAR = {"from": "2026-06-01", "to": "2026-11-30"}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def api(client: TestClient, path: str, params: dict[str, Any], user: str = "op-1") -> Any:
    """`GET path` from the JSON API with a bearer token of `user` (the cookie plays no part)."""
    token = client.post("/auth/login", json={"user": user, "password": PASSWORD}).json()["token"]
    answer = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json() if params.get("format", "json") == "json" else answer.content


def totals_of(html: str) -> dict[str, int]:
    """The totals row's integers (the page writes each as `data-value`)."""
    found = re.search(r'<tr class="totals".*?</tr>', html, re.S)
    assert found, html
    return {k: int(v) for k, v in re.findall(r'data-key="(\w+)" data-value="(-?\d+)"', found[0])}


def rows_of(html: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    if body is None:
        return []
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", body[1], re.S)]  # fmt: skip


def cells(xlsx: bytes) -> list[list[Any]]:
    return [[c.value for c in row] for row in load_workbook(io.BytesIO(xlsx)).active.iter_rows()]


def count_of(html: str) -> int:
    found = re.search(r"共 (\d+) 条", html)
    assert found, html
    return int(found[1])


CASES = [
    ("consumption", {"group": "tariff_period"}),
    ("consumption", {"group": "account,day", **HALF_YEAR}),
    ("consumption", {"group": "shop", "building": "B1", **HALF_YEAR}),
    ("consumption", {"merchant": "Li Wei", **HALF_YEAR}),
    ("consumption", {"merchant": "Wang Fang", **HALF_YEAR}),  # none: an empty page
    ("consumption", {"id_number": "110101199003071234", **HALF_YEAR}),
    ("deposits", {"operator": "op-1"}),
    ("deposits", {"method": "cash", "shop": "S101"}),
    ("refunds", {}),
    ("subsidies", {"floor": "1F"}),
    ("meters", {"relay": "1"}),
    ("meters", {}),
]


def test_each_report_page_holds_the_apis_numbers(client: TestClient) -> None:
    log_in(client, "fin-c")
    for name, params in CASES:
        _holds_the_apis_numbers(client, name, params)


def _holds_the_apis_numbers(client: TestClient, name: str, params: dict[str, str]) -> None:
    page = client.get(f"/console/reports/{name}", params=params)
    assert page.status_code == 200, page.text
    answer = api(client, f"/reports/{name}", params)
    assert count_of(page.text) == answer["total"]
    if answer["total"] == 0:
        assert "没有符合条件的记录" in page.text and not any(answer["totals"].values())
        return
    assert totals_of(page.text) == answer["totals"]
    shown = rows_of(page.text)
    assert len(shown) == len(answer["items"])
    first = answer["columns"][0]["key"]
    if first in {"account", "shop", "node", "tariff_period"}:  # texts shown as they are stored
        words = {"peak": "峰", "valley": "谷", "flat": "平"} if first == "tariff_period" else {}
        assert [r[0] for r in shown] == [words.get(i[first], i[first]) for i in answer["items"]]
    assert 'id="export-xlsx"' in page.text and "<script>" not in page.text


def test_the_world_has_something_to_total(client: TestClient) -> None:
    """The cases above compare non-trivial numbers: the half year has use, money and subsidy."""
    answer = api(client, "/reports/consumption", {"group": "account,day", **HALF_YEAR})
    assert answer["totals"]["wh"] > 200_000 and answer["total"] >= 6
    assert api(client, "/reports/deposits", {})["total"] == 2  # the desk's recharges
    assert api(client, "/reports/subsidies", {})["totals"]["issued_wh"] == 100_000


def test_paging_shows_every_row_once_with_the_same_totals(client: TestClient) -> None:
    log_in(client, "op-1")
    params = {"group": "account,day", **HALF_YEAR}
    answer = api(client, "/reports/consumption", {**params, "limit": 1000})
    pages = [client.get("/console/reports/consumption", params={**params, "size": 2,
                        "offset": n}) for n in range(0, answer["total"], 2)]  # fmt: skip
    days = [row[1] for p in pages for row in rows_of(p.text)]
    assert days == [i["day"] for i in answer["items"]]
    assert all(totals_of(p.text) == answer["totals"] for p in pages)
    assert 'id="page-next"' in pages[0].text and 'id="page-next"' not in pages[-1].text
    ordered = client.get("/console/reports/consumption", params={**params, "sort": "-wh"})
    heaviest = max(answer["items"], key=lambda i: i["wh"])
    assert rows_of(ordered.text)[0][1] == heaviest["day"]


def test_ten_thousand_meters_are_paged_in_sql(client: TestClient, world: World) -> None:
    with Session(world.engine) as session, session.begin():
        session.execute(insert(models.MeterState), [
            {"node": NODE, "address": f"8{n:011d}", "account": "", "protocol": "dlt645",
             "relay": 1, "energy_wh": n * 10}
            for n in range(10_000)
        ])  # fmt: skip
    log_in(client, "op-1")
    page = client.get("/console/reports/meters", params={"size": 200, "offset": 5_000})
    assert len(rows_of(page.text)) == 200 and len(page.content) < 1_000_000
    answer = api(client, "/reports/meters", {"limit": 1})
    assert count_of(page.text) == answer["total"] >= 10_000
    assert totals_of(page.text) == answer["totals"]


def test_the_site_filter_gives_the_apis_site_totals_on_every_report(client: TestClient) -> None:
    log_in(client, "fin-c")
    for name in report_filters.REPORTS:
        _holds_the_apis_numbers(client, name, {"site": "Market", **HALF_YEAR})
        _holds_the_apis_numbers(client, name, {"site": "Empty", **HALF_YEAR})
    market = {"site": "Market", "group": "account", **HALF_YEAR}
    assert api(client, "/reports/consumption", market)["totals"]["wh"] > 200_000
    assert api(client, "/reports/consumption", {**market, "site": "Empty"})["total"] == 0
    page = client.get("/console/reports/consumption", params=market)
    assert '<option value="Market" selected>Market</option>' in page.text
    assert '<option value="Empty">Empty</option>' in page.text
    for fmt in ("xlsx", "pdf"):  # the print and file links keep the site
        link = re.search(rf'id="export-{fmt}" href="([^"]+)"', page.text)
        assert link and "site=Market" in link[1], page.text
    got = client.get(link[1].replace("&amp;", "&"))
    assert got.status_code == 200 and got.content.startswith(b"%PDF")
    xlsx = re.search(r'id="export-xlsx" href="([^"]+)"', page.text)
    assert xlsx
    mine = client.get(xlsx[1].replace("&amp;", "&")).content
    assert cells(mine) == cells(api(client, "/reports/consumption", {**market, "format": "xlsx"}))
    months = client.get("/console/subsidies", params={"month": "2026-11", "site": "Empty"})
    assert months.status_code == 200 and '<option value="Empty" selected>' in months.text
    assert "没有符合条件的记录" in months.text


def test_exports_are_the_apis_files(client: TestClient) -> None:
    log_in(client, "aud-c")
    params = {"group": "account,day", "building": "B1", **HALF_YEAR}
    page = client.get("/console/reports/consumption", params=params)
    link = re.search(r'id="export-xlsx" href="([^"]+)"', page.text)
    assert link
    got = client.get(link[1].replace("&amp;", "&"))
    assert got.status_code == 200
    assert got.headers["content-disposition"] == 'attachment; filename="consumption.xlsx"'
    sheet = load_workbook(io.BytesIO(got.content)).active
    last = [c.value for c in list(sheet.iter_rows())[-1]]
    header = [c.value for c in next(sheet.iter_rows())]
    sums = dict(zip(header, last, strict=True))
    shown = totals_of(page.text)
    assert sums["用电量(Wh)"] == shown["wh"]
    assert Decimal(str(sums["电费(元)"])) * 100 == shown["fen"]
    theirs = api(client, "/reports/consumption", {**params, "format": "xlsx"})
    assert cells(got.content) == cells(theirs)  # the same file (bytes differ by zip times)
    pdf = client.get("/console/reports/deposits/export", params={"format": "pdf", "lang": "en"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


BAD = [
    ("/console/reports/consumption", {"from": "2026-13-01"}, "不是日期"),
    ("/console/reports/consumption", {"from": "yesterday"}, "2026-11-01"),
    ("/console/reports/deposits", {"from": "2026-11-20", "to": "2026-11-01"}, "开始日期晚于"),
    ("/console/reports/subsidies", {"from": "2024-01-01", "to": "2026-11-01"}, "最长 400 天"),
    ("/console/reports/consumption", {"group": "weather"}, "分组方式不对"),
    ("/console/reports/consumption", {"group": "day,day"}, "分组方式不对"),
    ("/console/reports/meters", {"relay": "2"}, "合闸或分闸"),
    ("/console/reports/deposits", {"sort": "-price"}, "cannot sort by"),
    ("/console/reports/refunds", {"template": "nope"}, "no refunds template"),
    ("/console/subsidies", {"month": "2026-13"}, "2026-11"),
    ("/console/reports/meters", {"to": "2026-02-30"}, "不是日期"),
    ("/console/reports/consumption/export", {"format": "xlsx", "from": "x"}, "不是日期"),
]


def test_a_mistyped_filter_is_told_in_words_and_nothing_runs(client: TestClient) -> None:
    log_in(client, "op-1")
    for path, params, words in BAD:
        _refused(client, path, params, words)


def _refused(client: TestClient, path: str, params: dict[str, str], words: str) -> None:
    answer = client.get(path, params={**params, "lang": "zh"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    error = re.search(r'<p class="error" role="alert" id="filter-error">(.*?)</p>', answer.text)
    assert error and words in error[1], answer.text
    assert "<tbody>" not in answer.text  # no rows under a refused filter
    english = client.get(path, params={**params, "lang": "en"})
    assert english.status_code == 422 and "filter-error" in english.text


def test_the_url_cannot_reach_around_the_form(client: TestClient) -> None:
    log_in(client, "op-1")
    assert client.get("/console/reports/ledger").status_code == 404
    assert client.get("/console/reports/consumption?colour=red").status_code == 422
    assert client.get("/console/reports/consumption/export?format=csv").status_code == 422
    assert client.get("/console/reports/consumption?size=201").status_code == 422


def test_reports_are_for_the_roles_the_api_allows(client: TestClient) -> None:
    for role in STAFF_USERS:
        _allowed_as_the_api(client, role)


def _allowed_as_the_api(client: TestClient, role: Role) -> None:
    log_in(client, STAFF_USERS[role])
    allowed = role is not Role.INSTALLER
    for path in (
        "/console/reports",
        "/console/reports/deposits",
        "/console/subsidies",
        "/console/reports/deposits/export?format=xlsx",
    ):
        answer = client.get(path)
        assert answer.status_code == (200 if allowed else 403), (path, answer.status_code)
    token = client.post("/auth/login", json={"user": STAFF_USERS[role], "password": PASSWORD})
    api_answer = client.get(
        "/reports/deposits", headers={"Authorization": f"Bearer {token.json()['token']}"}
    )
    assert (api_answer.status_code == 200) is allowed  # the same rule as the API's


def test_a_merchant_never_sees_a_report(client: TestClient) -> None:
    log_in(client, MERCHANT)
    answer = client.get("/console/reports/deposits", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/m/")


def ledger_sum(world: World, code: Code, month: str) -> int:
    """Wh the ledger booked under `code` in the month (site zone), posted value only."""
    span = month_window(month)
    entry = models.LedgerEntry
    with Session(world.engine) as session:
        return int(session.scalar(
            select(func.coalesce(func.sum(entry.amount), 0)).where(
                entry.code == code.value, entry.kind.in_(("single", "post")),
                entry.time >= span.start, entry.time < span.end)
        ) or 0)  # fmt: skip


def test_the_monthly_subsidy_view_adds_up_to_the_ledger(client: TestClient, world: World) -> None:
    log_in(client, "op-1")
    page = client.get("/console/subsidies", params={"month": "2026-11"})
    assert page.status_code == 200
    answer = api(client, "/reports/subsidies", {"from": "2026-11-01", "to": "2026-11-30"})
    issued, used, cleared = (answer["totals"][k] for k in ("issued_wh", "used_wh", "expired_wh"))
    assert totals_of(page.text) == {**answer["totals"], "left_wh": issued - used - cleared}
    assert (issued, used) == (100_000, 1_200)  # the opening's subsidies and the use of them
    assert issued == ledger_sum(world, Code.SUBSIDY_ISSUE, "2026-11")
    assert cleared == ledger_sum(world, Code.SUBSIDY_EXPIRE, "2026-11")
    assert count_of(page.text) == answer["total"] == len(rows_of(page.text))
    chart = re.search(r'data-report-chart="([^"]+)"', page.text)
    months = re.findall(r"\d{4}-\d{2}", chart[1]) if chart else []
    assert months[0] == "2025-12" and months[11] == "2026-11"  # the year up to the month
    assert "/console/reports/subsidies/export?" in page.text
    assert "sort=left_wh" not in page.text  # computed here: not a column the builder sorts by
    by_used = client.get("/console/subsidies", params={"month": "2026-11", "sort": "-used_wh"})
    assert [r[0] for r in rows_of(by_used.text)] == ["A0001", "A0002"]
    default = client.get("/console/subsidies")  # this month
    assert totals_of(default.text) == totals_of(page.text)
    wang = client.get("/console/subsidies", params={"month": "2026-11", "merchant": "Wang Fang"})
    assert [r[0] for r in rows_of(wang.text)] == ["A0002"]


def test_english_and_the_words_of_every_report() -> None:
    keys = {f"report_{n}" for n in report_filters.REPORTS}
    keys |= {f"{k}_about" for k in keys} | {f"group_{g}" for g in queries.GROUPS}
    keys |= {"report_oplog_about", "report_subsidy_months_about", "menu_oplog"}
    keys |= {
        f"filter_{f}"
        for f in (
            *report_filters.AREA,
            "group",
            "operator",
            "method",
            "status",
            "template",
            "node",
            "from",
            "to",
            "month",
        )
    }
    assert keys - set(catalogue.MESSAGES) == set()


def test_a_report_in_english(client: TestClient) -> None:
    log_in(client, "op-1")
    page = client.get("/console/reports/consumption", params={"lang": "en", **HALF_YEAR})
    assert '<h1 id="report-title">Consumption</h1>' in page.text
    assert "Energy (kWh)" in page.text and "Total (all rows)" in page.text


def test_an_admin_saves_a_template_and_everyone_uses_it(client: TestClient, world: World) -> None:
    log_in(client, "op-1")  # an operator reads, but may not save
    page = client.get("/console/reports/refunds")
    assert 'id="save-template"' not in page.text
    form = {"csrf": csrf_of(page.text), "template_name": "slim", "title": "退款简表",
            "col_time": "on", "col_shop": "on", "col_fen": "on"}  # fmt: skip
    assert client.post("/console/reports/refunds/templates", data=form).status_code == 403
    client.cookies.clear()
    log_in(client, "admin-c")
    page = client.get("/console/reports/refunds")
    assert 'id="save-template"' in page.text
    form["csrf"] = csrf_of(page.text)
    for wrong, words in (
        ({"template_name": "a b"}, "模板代号"),
        ({"title": ""}, "报表标题"),
        ({"col_time": "", "col_shop": "", "col_fen": ""}, "至少选择一列"),
    ):
        refused = client.post("/console/reports/refunds/templates", data={**form, **wrong})
        assert refused.status_code == 422 and words in refused.text
    assert client.post("/console/reports/refunds/templates",
                       data={**form, "csrf": "forged"}).status_code == 403  # fmt: skip
    saved = client.post("/console/reports/refunds/templates", data=form, follow_redirects=False)
    assert saved.headers["location"] == "/console/reports/refunds?template=slim"
    shown = client.get(saved.headers["location"])
    assert '<h1 id="report-title">退款简表</h1>' in shown.text
    answer = api(client, "/reports/refunds", {"template": "slim"})
    assert [c["key"] for c in answer["columns"]] == ["time", "shop", "fen"]
    assert len(rows_of(shown.text)[0]) == 3 and totals_of(shown.text) == answer["totals"]
    logged = api(client, "/operator-log", {"action": "template.save"})
    assert [(e["user"], e["target"]) for e in logged["items"]] == [("admin-c", "slim")]
    assert "退款简表" in client.get("/console/reports").text  # listed in the index

"""Reports and statements through the API, on data uploaded by the real ingest: numbers checked
against expectations worked out from the uploaded transfers, Excel read back with openpyxl,
PDFs with pypdf (text, embedded subset font), templates, roles and refused filters."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import Engine, select

from cloud.db import models
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.people.auth import Role
from cloud.registry import entities
from cloud.registry import rows as registry
from cloud.reports.statement import StatementMismatch
from edge.drivers.reading import Reading
from edge.rules.commodities import WATER
from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.pockets import Pockets
from edge.rules.subsidy import (
    WATER_SUBSIDY,
    SubsidyAccount,
    SubsidyPolicy,
    SubsidyState,
    SubsidyTable,
    run_subsidy,
)
from edge.rules.tariffs import FlatTariff
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code, Kind, TimeSource, Transfer
from ledger.units import Price, Wh
from ledger.wire import AckStatus
from tests.cloud.api.conftest import (
    CASH,
    M1,
    M3,
    NODE,
    SALES,
    SUBSIDY_USED,
    Site,
    bearer,
    transfer,
)
from tests.cloud.fake_edge import T0
from tests.cloud.registry_world import ME, make_registry

SH = dt.timezone(dt.timedelta(hours=8))
NOV = {"from": "2026-11-01", "to": "2026-11-30"}
REFUND_7 = derive_id("test", NODE, 7)  # the pending refund of the site's opening


def _at(  # noqa: PLR0917 (the conftest's transfer(), at a time)
    number: int, debit: str, credit: str, amount: int, code: Code, when: dt.datetime, **extra: Any
) -> Transfer:
    base = transfer(number, debit, credit, amount, code, **extra)
    return Transfer(**{**{f: getattr(base, f) for f in base.__slots__}, "time": when.isoformat()})


@pytest.fixture
def month(site: Site) -> Site:
    """On top of the site's opening (all at T0, 2026-11-24 16:00 in Shanghai): a recharge in
    October, priced consumption on 2 and 3 November, a subsidy expiry, the refund posted."""
    a1, a2 = "A0001", "A0002"
    tou = {"meter": M1, "reg_from": 101_200, "reg_to": 102_700, "energy_wh": 1500,
           "tariff": "peak:1000@8365;valley:500@3120", "cost_cum": 1}  # fmt: skip
    late = {"meter": M1, "reg_from": 102_700, "reg_to": 102_850, "energy_wh": 150,
            "tariff": "valley:150@8000", "cost_cum": 2}  # fmt: skip
    transfers = [
        _at(20, CASH, pocket_id(a1, Pocket.PREPAID), 500, Code.RECHARGE,
            dt.datetime(2026, 10, 15, 12, tzinfo=SH), refs={"payment": "OCT-1"}),
        _at(21, pocket_id(a1, Pocket.PREPAID), SALES, 99, Code.CONSUME,
            dt.datetime(2026, 11, 2, 10, tzinfo=SH), refs=tou),
        _at(22, pocket_id(a1, Pocket.PREPAID), SALES, 12, Code.CONSUME,
            dt.datetime(2026, 11, 3, 0, 30, tzinfo=SH), refs=late),
        _at(23, pocket_id(a2, Pocket.SUBSIDY), SUBSIDY_USED, 3_000, Code.CONSUME,
            dt.datetime(2026, 11, 2, 23, 59, tzinfo=SH),
            refs={"meter": M3, "reg_from": 7_000, "reg_to": 10_000, "energy_wh": 3_000}),
        _at(24, pocket_id(a2, Pocket.SUBSIDY), system_id(System.SUBSIDY_EXPIRED), 500,
            Code.SUBSIDY_EXPIRE, dt.datetime(2026, 11, 30, 23, tzinfo=SH)),
        Transfer(id=derive_id("test", NODE, 25), debit=pocket_id(a1, Pocket.PREPAID),
                 credit=system_id(System.REFUNDS_PAYABLE), amount=1_000, unit=Unit.FEN,
                 code=Code.REFUND, time=(T0 + dt.timedelta(hours=1)).isoformat(),
                 time_source=TimeSource.NTP, kind=Kind.POST, pending_id=REFUND_7),
    ]  # fmt: skip
    assert site.upload(NODE, transfers).status is AckStatus.OK
    return site


# Independently: the site's opening (conftest) plus `month`, by account.
CONSUMPTION = {  # account → (wh, subsidy_wh, fen) in November
    "A0001": (1_200 + 0 + 1_500 + 150, 1_200, 837 + 99 + 12),  # the opening's 837 fen: no Wh ref
    "A0002": (3_000, 3_000, 0),
}


def _get(client: TestClient, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json() if params.get("format", "json") == "json" else answer.content


def test_consumption_by_account_area_period_and_day(client: TestClient, month: Site) -> None:
    page = _get(client, "/reports/consumption", group="account", **NOV)
    got = {r["account"]: (r["wh"], r["subsidy_wh"], r["fen"]) for r in page["items"]}
    assert got == CONSUMPTION
    assert page["items"][0]["shop"] == "S101"
    assert page["totals"] == {"wh": 5_850, "subsidy_wh": 4_200, "fen": 948}
    periods = _get(client, "/reports/consumption", group="tariff_period", **NOV)
    by_period = {r["tariff_period"]: (r["wh"], r["fen"]) for r in periods["items"]}
    # 99 fen shared by exact cost: peak 83.43 → 83, valley 15.57 → 16.
    assert by_period == {"": (4_200, 837), "peak": (1_000, 83), "valley": (650, 28)}
    days = _get(client, "/reports/consumption", group="account,day", sort="day,account", **NOV)
    itemised = [(r["account"], r["day"], r["fen"]) for r in days["items"]]
    assert itemised == [("A0001", "2026-11-02", 99), ("A0002", "2026-11-02", 0),
                        ("A0001", "2026-11-03", 12), ("A0001", "2026-11-24", 837)]  # fmt: skip
    floor = _get(client, "/reports/consumption", group="floor", building="B1", **NOV)
    assert [(r["floor"], r["fen"]) for r in floor["items"]] == [("1F", 948)]
    paged = _get(client, "/reports/consumption", group="account", sort="-fen", limit=1,
                 offset=1, **NOV)  # fmt: skip
    assert [r["account"] for r in paged["items"]] == ["A0002"]
    assert (paged["total"], paged["totals"]["fen"]) == (2, 948)
    # Days of October (daily rollup) and the whole of November (monthly rollup) together;
    # and days only, ending inside November.
    wide = _get(client, "/reports/consumption", **{"from": "2026-10-15", "to": "2026-11-30"})
    assert {r["account"]: (r["wh"], r["subsidy_wh"], r["fen"]) for r in wide["items"]} == got
    early = _get(client, "/reports/consumption", **{"from": "2026-10-15", "to": "2026-11-02"})
    assert early["totals"] == {"wh": 1_500 + 3_000, "subsidy_wh": 3_000, "fen": 99}
    october = _get(client, "/reports/consumption", **{"from": "2026-10-01", "to": "2026-10-31"})
    assert october["items"] == [] and october["totals"]["fen"] == 0


def test_deposits_subsidies_refunds_and_meters(client: TestClient, month: Site) -> None:
    made = client.post("/recharges", json={"account": "A0002", "fen": 5_000, "method": "cash",
                                           "payment": "P-0001"})  # fmt: skip
    assert made.status_code == 201, made.text
    deposits = _get(client, "/reports/deposits", operator="admin-1", **NOV)
    rows = [(r["payment"], r["shop"], r["fen"], r["method"], r["status"])
            for r in deposits["items"]]  # fmt: skip
    assert rows == [("P-0001", "S102", 5_000, "cash", "pending")]
    assert _get(client, "/reports/deposits", method="wechat", **NOV)["total"] == 0
    subsidies = _get(client, "/reports/subsidies", **NOV)
    assert {r["account"]: (r["issued_wh"], r["used_wh"], r["expired_wh"])
            for r in subsidies["items"]} == {"A0001": (50_000, 1_200, 0),
                                             "A0002": (50_000, 3_000, 500)}  # fmt: skip
    refunds = _get(client, "/reports/refunds", **NOV)
    [row] = refunds["items"]
    assert (row["account"], row["shop"], row["fen"], row["status"]) == ("A0001", "S101", 1_000,
                                                                         "paid")  # fmt: skip
    assert _get(client, "/reports/refunds", method="cash", **NOV)["total"] == 0
    meters = _get(client, "/reports/meters", **{"from": "2026-11-24", "to": "2026-11-24"})
    by_meter = {r["meter"]: r for r in meters["items"]}
    # T0 is 16:00 in Shanghai: 64 quarter hours of the day have passed.
    assert by_meter[M1]["expected"] == 64 and by_meter[M1]["reads"] == 2
    assert by_meter[M1]["read_rate"] == pytest.approx(2 / 64)
    assert (by_meter[M3]["relay"], by_meter[M3]["energy_wh"]) == (0, 7_000)
    tripped = _get(client, "/reports/meters", relay=0, node=NODE)
    assert [r["meter"] for r in tripped["items"]] == [M3]


def test_merchant_and_id_number_filters_pick_the_merchants_accounts(
    client: TestClient, month: Site, engine: Engine
) -> None:
    with session_factory(engine).begin() as session:  # Li Wei's accounts; A0002 then Wang's
        make_registry(session, register=False)
        wang = registry.create(session, entities.MERCHANTS, {"name": "Wang Fang",
                               "phone": None, "wechat_openid": None, "id_number": "W-42"},
                               ME, T0)  # fmt: skip
        registry.update(session, entities.ACCOUNTS, "A0002", {"merchant_id": wang.id}, ME, T0)
    li = {"merchant": "Li Wei", **NOV}
    page = _get(client, "/reports/consumption", **li)
    assert {r["account"] for r in page["items"]} == {"A0001"}
    assert page["totals"]["fen"] == CONSUMPTION["A0001"][2]
    by_id = _get(client, "/reports/subsidies", id_number="W-42", **NOV)
    assert [(r["account"], r["issued_wh"]) for r in by_id["items"]] == [("A0002", 50_000)]
    assert _get(client, "/reports/refunds", merchant="Wang Fang", **NOV)["total"] == 0
    assert _get(client, "/reports/refunds", **li)["total"] == 1
    assert _get(client, "/reports/meters", merchant="Nobody")["total"] == 0
    both = _get(client, "/reports/deposits", merchant="Li Wei", id_number="W-42", **NOV)
    assert both["total"] == 0  # filters combine with AND


def test_excel_export_is_typed_frozen_and_totalled(client: TestClient, month: Site) -> None:
    body = _get(client, "/reports/consumption", group="account,day", format="xlsx", **NOV)
    sheet = load_workbook(io.BytesIO(body)).active
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    assert header[:2] == ["账户", "日期"] and header[-1] == "电费(元)"
    assert all(c.font.b for c in sheet[1])
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    data, totals = rows[:-1], rows[-1]
    assert len(data) == 4 and totals[0] == "合计"
    fen = header.index("电费(元)")
    assert isinstance(data[0][header.index("用电量(Wh)")], int)
    assert isinstance(data[0][1], dt.datetime)  # a date cell
    assert sheet.cell(2, fen + 1).number_format == "#,##0.00"
    assert sorted(Decimal(str(r[fen])) for r in data) == [
        Decimal("0"),
        Decimal("0.12"),
        Decimal("0.99"),
        Decimal("8.37"),
    ]
    assert Decimal(str(totals[fen])) == Decimal("9.48")
    assert sheet.auto_filter.ref == f"A1:{chr(ord('A') + len(header) - 1)}5"


def _fonts(reader: PdfReader) -> list[Any]:
    fonts = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.append(font.get_object())
    return fonts


def test_pdf_has_chinese_text_and_an_embedded_subset_font(client: TestClient, month: Site) -> None:
    body = _get(client, "/reports/consumption", group="account", format="pdf", **NOV)
    assert len(body) < 60_000
    reader = PdfReader(io.BytesIO(body))
    text = "".join(page.extract_text() for page in reader.pages)
    assert "用电报表" in text and "合计" in text and "9.48" in text and "S101" in text
    assert "第 1 页 / 共 1 页" in text
    font = _fonts(reader)[0]
    assert re.fullmatch(r"/[A-Z]{6}\+NotoSansSC\S*", font["/BaseFont"])
    descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
    assert "/FontFile2" in descriptor or "/FontFile3" in descriptor


def test_refund_template_chooses_columns_admin_only(
    client: TestClient, month: Site, engine: Engine, tokens: dict[Role, str]
) -> None:
    template = {"report": "refunds", "columns": ["time", "shop", "fen", "status"],
                "title": "退款单(现金)"}  # fmt: skip
    refused = client.put("/report-templates/cash", json=template,
                         headers=bearer(tokens[Role.FINANCE]))  # fmt: skip
    assert refused.status_code == 403
    bad = client.put("/report-templates/cash", json={**template, "columns": ["shop", "nope"]})
    assert bad.status_code == 422 and "allowed" in bad.json()["detail"]
    saved = client.put("/report-templates/cash", json=template)
    assert saved.status_code == 200, saved.text
    assert client.get("/report-templates/cash").json()["columns"] == template["columns"]
    page = _get(client, "/reports/refunds", template="cash", sort="-fen", **NOV)
    assert page["title"] == "退款单(现金)"
    assert [list(r) for r in page["items"]] == [template["columns"]]
    body = _get(client, "/reports/refunds", template="cash", format="pdf", **NOV)
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)
    assert "退款单(现金)" in text and "10.00" in text
    assert client.get("/reports/refunds", params={"template": "none"}).status_code == 404
    with session_factory(engine)() as session:
        logged = session.scalars(select(OperatorLogEntry).where(
            OperatorLogEntry.action == "template.save")).all()  # fmt: skip
        assert [(e.user, e.target, e.before) for e in logged] == [("admin-1", "cash", None)]
    assert client.delete("/report-templates/cash").status_code == 204
    assert client.get("/report-templates/cash").status_code == 404


def test_debt_is_consumption_charged_and_the_statement_shows_it_owed_and_repaid(
    client: TestClient, site: Site
) -> None:
    a2 = "A0002"  # no prepaid money: 500 Wh used with none left, owed, then paid back
    owed = {"meter": M3, "reg_from": 10_000, "reg_to": 10_500, "energy_wh": 500,
            "tariff": "single:500@8000", "cost_cum": 400_000}  # fmt: skip
    transfers = [
        _at(30, pocket_id(a2, Pocket.DEBT), SALES, 40, Code.CONSUME,
            dt.datetime(2026, 11, 4, 12, tzinfo=SH), refs=owed),
        _at(31, CASH, pocket_id(a2, Pocket.PREPAID), 100, Code.RECHARGE,
            dt.datetime(2026, 11, 5, 9, tzinfo=SH), refs={"payment": "NOV-DEBT"}),
        _at(32, pocket_id(a2, Pocket.PREPAID), pocket_id(a2, Pocket.DEBT), 40, Code.DEBT_REPAY,
            dt.datetime(2026, 11, 5, 9, 15, tzinfo=SH), refs={"owed": 40}),
    ]  # fmt: skip
    assert site.upload(NODE, transfers).status is AckStatus.OK
    statement = _get(client, f"/statements/{a2}", month="2026-11")
    assert statement["debt"] == {
        "opening": 0, "movements": {"owed": -40, "debt_repaid": 40, "other": 0}, "closing": 0
    }  # fmt: skip
    prepaid = statement["prepaid"]
    assert (prepaid["movements"]["recharges"], prepaid["movements"]["debt_repaid"]) == (100, -40)
    assert prepaid["closing"] == prepaid["opening"] + 60
    assert [i["code"] for i in statement["items"]] == ["recharge", "debt_repay"]
    by_pocket = {(c["pocket"], c["wh"], c["fen"]) for c in statement["consumption"]}
    assert ("debt", 500, 40) in by_pocket
    page = _get(client, "/reports/consumption", group="account", **NOV)
    [row] = [r for r in page["items"] if r["account"] == a2]
    assert (row["wh"], row["fen"]) == (500, 40)  # the site opened with none for A0002
    assert client.get(f"/accounts/{a2}").json()["debt_fen"] == 0


def test_statement_adds_up_and_merchants_see_only_theirs(
    client: TestClient, month: Site, tokens: dict[Role, str]
) -> None:
    merchant = bearer(tokens[Role.MERCHANT])  # owns A0001
    answer = client.get("/statements/A0001", params={"month": "2026-11"}, headers=merchant)
    assert answer.status_code == 200, answer.text
    statement = answer.json()
    prepaid = statement["prepaid"]
    assert prepaid["opening"] == 500  # October's recharge
    assert prepaid["movements"] == {"recharges": 10_000, "consumption": -(837 + 99 + 12),
                                    "debt_repaid": 0, "refunds": -1_000, "corrections": 0,
                                    "other": 0}  # fmt: skip
    assert prepaid["closing"] == 500 + 10_000 - 948 - 1_000
    assert prepaid["opening"] + sum(prepaid["movements"].values()) == prepaid["closing"]
    subsidy = statement["subsidy"]
    assert (subsidy["opening"], subsidy["closing"]) == (0, 50_000 - 1_200)
    assert {(c["tariff_period"], c["pocket"]): c["fen"] for c in statement["consumption"]} == {
        ("", "prepaid"): 837, ("", "subsidy"): 0, ("peak", "prepaid"): 83,
        ("valley", "prepaid"): 28}  # fmt: skip
    assert [i["code"] for i in statement["items"]] == ["recharge", "refund"]
    october = client.get("/statements/A0001", params={"month": "2026-10"}, headers=merchant)
    assert october.json()["prepaid"]["closing"] == 500
    other = client.get("/statements/A0002", params={"month": "2026-11"}, headers=merchant)
    assert other.status_code == 403
    printed = client.get("/statements/A0001", params={"month": "2026-11", "format": "pdf"})
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
    assert "月结单" in text and "期末余额" in text and "85.52" in text
    book = client.get("/statements/A0001", params={"month": "2026-11", "format": "xlsx"})
    sheets = load_workbook(io.BytesIO(book.content))
    assert sheets.sheetnames[0] == "预付余额"


def test_statement_mismatch_is_an_error() -> None:
    from cloud.reports.statement import PocketLines

    PocketLines(5, {"recharges": 3}, 8).check("ok")
    with pytest.raises(StatementMismatch):
        PocketLines(5, {"recharges": 3}, 9).check("off by one")


BAD_FILTERS = [
    ("/reports/consumption", {"from": "2026-11-30", "to": "2026-11-01"}, "after"),
    ("/reports/consumption", {"group": "colour"}, "tariff_period"),
    ("/reports/consumption", {"sort": "colour"}, "allowed"),
    ("/reports/deposits", {"sort": "-fen;drop"}, "allowed"),
    ("/reports/meters", {"from": "2020-01-01", "to": "2026-01-01"}, "at most"),
    ("/statements/A0001", {"month": "2026-13"}, "YYYY-MM"),
    ("/reports/subsidies", {"format": "docx"}, "format"),
]


def test_bad_filters_are_422(client: TestClient) -> None:
    for path, params, needle in BAD_FILTERS:
        answer = client.get(path, params=params)
        assert answer.status_code == 422, (path, params, answer.text)
        assert needle in answer.text, (path, params, answer.text)


def test_reports_are_for_staff(client: TestClient, tokens: dict[Role, str]) -> None:
    merchant = bearer(tokens[Role.MERCHANT])
    assert client.get("/reports/consumption", headers=merchant).status_code == 403
    assert client.get("/reports/deposits", headers=bearer(tokens[Role.AUDITOR])).status_code == 200


def test_water_projects_shows_its_free_litres_and_is_never_counted_as_wh(
    client: TestClient, site: Site, engine: Engine
) -> None:
    """Water entries as the edge's rules book them (free water issued, a water meter's volume
    billed free water first, then money): the projection has them, `/accounts` shows the free
    litres left, and the consumption reports (Wh) do not count the litres."""
    a1, tap = "A0001", "78330000000001"
    before = _get(client, "/reports/consumption", group="account", **NOV)
    when = dt.datetime(2026, 11, 10, 12, tzinfo=SH)
    issue = run_subsidy(
        when, SubsidyAccount(a1, "merchant"), SubsidyState(), Wh(0),
        SubsidyPolicy(SubsidyTable(by_type={"merchant": 1_000})), source=TimeSource.NTP,
        books=WATER_SUBSIDY,
    ).decisions.transfers  # fmt: skip
    policy = ConsumptionPolicy(FlatTariff(Price(35_000)), max_power_w=2_500, commodity=WATER)
    state = ConsumptionState(
        MeterBilling.first(Reading(tap, volume_l=200_000), when, WATER), AccountCharges()
    )
    billed = bill_reading(
        when + dt.timedelta(hours=2), Reading(tap, volume_l=202_500), state, policy, owner=a1,
        pockets=Pockets(prepaid_fen=8_000, water_subsidy_l=1_000),
        source=TimeSource.NTP,
    ).decisions.transfers  # fmt: skip
    assert [t.unit for t in billed] == [Unit.L, Unit.FEN]
    assert site.upload(NODE, [*issue, *billed]).status is AckStatus.OK

    account = client.get(f"/accounts/{a1}").json()
    assert account["water_subsidy_l"] == 0  # 1 000 L issued, 1 000 L used
    assert account["prepaid_fen"] == 10_000 - 837 - 525  # 1.5 m³ at 3.50 CNY
    with session_factory(engine)() as session:
        balances = {
            row.account: row.credits_posted - row.debits_posted
            for row in session.scalars(select(models.Balance))
        }
    assert balances[system_id(System.WATER_SALES)] == 525
    assert balances[system_id(System.WATER_SUBSIDY_USED)] == 1_000
    after = _get(client, "/reports/consumption", group="account", **NOV)
    assert after["items"] == before["items"]  # no litre summed as a Wh, no water fen as energy's
    statement = _get(client, f"/statements/{a1}", month="2026-11")  # still adds up
    assert statement["prepaid"]["closing"] == account["prepaid_fen"]

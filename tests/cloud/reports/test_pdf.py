"""Report PDFs as finance reads them (`cloud.reports.pdf`), text extracted with pypdf: every
order number whole, energy in kWh, coded values in words (现金, 已入账, 峰 …). The reports'
own specs (`cloud.reports.queries`) with rows as the queries stream them (values in order)."""

from __future__ import annotations

import datetime as dt
import io

from pypdf import PdfReader

from cloud.reports import pdf, queries
from cloud.reports.core import Window
from cloud.reports.excel import rows_of

NOW = dt.datetime(2026, 11, 24, 8, tzinfo=dt.UTC)
NOV = queries.Filters(Window(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
ORDERS = ["WX20261124093000-" + "8" * 47, "ALI2026112409-" + "7" * 50, "P-0001"]


def text_of(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


def test_deposits_print_whole_order_numbers_and_words() -> None:
    spec = queries.deposits(NOV)
    rows = [
        {"time": NOW, "payment": ORDERS[0], "account": "A0001", "shop": "S101", "fen": 100_000,
         "corrected_fen": 2_050, "net_fen": 102_050, "method": "wechat", "operator": "op-li",
         "status": "posted"},
        {"time": NOW, "payment": ORDERS[1], "account": "A0002", "shop": "S102", "fen": 2_000,
         "corrected_fen": 0, "net_fen": 0, "method": "alipay", "operator": "op-li",
         "status": "voided"},
        {"time": NOW, "payment": ORDERS[2], "account": "A0002", "shop": "S102", "fen": 50,
         "corrected_fen": 0, "net_fen": 0, "method": "cash", "operator": "op-li",
         "status": "pending"},
    ]  # fmt: skip
    rows = [{c.key: row.get(c.key, "") for c in spec.columns} for row in rows]
    totals = {"corrected_fen": 2_050, "net_fen": 102_050}
    printed = text_of(pdf.report(spec, rows_of(spec.columns, rows), totals, generated=NOW))
    for order in ORDERS:
        assert order in printed, order  # never cut
    assert "…" not in printed
    for words in ("微信支付", "支付宝", "现金", "已入账", "已作废(应退款)", "待入账", "1,020.50"):
        assert words in printed, words
    for code in ("wechat", "alipay", "posted", "voided", "pending"):
        assert code not in printed, code


def test_consumption_prints_kwh_and_tariff_periods_in_words() -> None:
    spec = queries.consumption(NOV, ("account", "tariff_period"))
    rows = [
        {"account": "A0001", "tariff_period": "peak", "wh": 1_000, "subsidy_wh": 0, "fen": 84},
        {"account": "A0001", "tariff_period": "valley", "wh": 1_234_567, "subsidy_wh": 500,
         "fen": 3_852},
    ]  # fmt: skip
    rows = [{c.key: row.get(c.key, "") for c in spec.columns} for row in rows]
    totals = {"wh": 1_235_567, "subsidy_wh": 500, "fen": 3_936}
    printed = text_of(pdf.report(spec, rows_of(spec.columns, rows), totals, generated=NOW))
    assert "用电量(kWh)" in printed and "补贴电量(kWh)" in printed and "(Wh)" not in printed
    for value in ("1.000", "1,234.567", "0.500", "1,235.567", "峰", "谷"):
        assert value in printed, value
    assert "1,234,567" not in printed and "peak" not in printed


def test_in_english_on_request() -> None:
    spec = queries.deposits(NOV, method="wechat")
    row = {"time": NOW, "payment": ORDERS[0], "account": "A0001", "shop": "S101",
           "fen": 100_000, "corrected_fen": 0, "net_fen": 100_000, "method": "wechat",
           "operator": "op-li", "status": "posted"}  # fmt: skip
    rows = [{c.key: row.get(c.key, "") for c in spec.columns}]
    totals = {"corrected_fen": 0, "net_fen": 100_000}
    printed = text_of(
        pdf.report(spec, rows_of(spec.columns, rows), totals, generated=NOW, lang="en")
    )
    for words in ("Recharges", "Filters: Date: 2026-11-01 ~ 2026-11-30", "Order no.",
                  "Amount (yuan)", "WeChat Pay", "Booked", "Total", "Generated: 2026-11-24 16:00",
                  "Page 1 of 1", ORDERS[0]):  # fmt: skip
        assert words in printed, words
    assert not any("\u4e00" <= char <= "\u9fff" for char in printed), printed

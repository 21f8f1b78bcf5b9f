"""Excel exports (`cloud.reports.excel`) read back with openpyxl: every kind of column as its
typed cell, text never taken for a formula, a number or a link, the header bold and frozen, and
a bold totals row of the exact sums."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import literal, select

from cloud.reports import excel
from cloud.reports.core import Column, Kind, Spec

SH = dt.timezone(dt.timedelta(hours=8))
COLUMNS = (
    Column("text", "文本"),
    Column("count", "次数", Kind.INT, total=True),
    Column("wh", "电量(Wh)", Kind.WH, total=True),
    Column("fen", "金额(元)", Kind.FEN, total=True),
    Column("time", "时间", Kind.TIME),
    Column("day", "日期", Kind.DATE),
    Column("rate", "成功率", Kind.RATE),
)
SPEC = Spec("kinds", "类型", COLUMNS, select(literal(1)), ("text",))
ROWS: list[tuple[Any, ...]] = [
    ("=SUM(B2:B3)", 3, 1_500, 12_345, dt.datetime(2026, 11, 3, 1, 30, tzinfo=dt.UTC),
     "2026-11-03", 0.5),
    ("http://example.com", 0, 0, 7, dt.datetime(2026, 11, 3, 9, 30), dt.date(2026, 11, 4), 1.0),
    ("0042", None, 250, -99, None, None, None),
    (17, 1, 1, 1, dt.datetime(2026, 11, 30, 23, 59, tzinfo=SH), "2026-11-30", 0.0),
]  # fmt: skip


def read_back() -> tuple[Any, list[list[Any]]]:
    sheet = load_workbook(io.BytesIO(excel.workbook(SPEC, iter(ROWS)))).active
    return sheet, [list(row) for row in sheet.iter_rows()]


def test_every_kind_is_its_typed_cell() -> None:
    sheet, rows = read_back()
    assert [c.value for c in rows[0]] == [c.label for c in COLUMNS]
    first, second, third, fourth = rows[1:5]
    assert [(c.value, c.data_type) for c in first[:1] + second[:1] + third[:1]] == [
        ("=SUM(B2:B3)", "s"), ("http://example.com", "s"), ("0042", "s")
    ]  # fmt: skip
    assert not sheet._hyperlinks  # text is never made a link
    assert (fourth[0].value, fourth[0].data_type) == (17, "n")  # a number in a text column
    counts = [r[1].value for r in rows[1:5]]
    assert counts == [3, 0, None, 1] and all(type(v) is int for v in counts if v is not None)
    assert [type(r[2].value) for r in rows[1:5]] == [int] * 4
    assert [Decimal(str(r[3].value)) for r in rows[1:5]] == [
        Decimal("123.45"), Decimal("0.07"), Decimal("-0.99"), Decimal("0.01")
    ]  # fmt: skip
    # Times in the site's zone (Excel has none): 01:30 UTC is 09:30 there, a naive time is UTC.
    assert [r[4].value for r in rows[1:5]] == [
        dt.datetime(2026, 11, 3, 9, 30), dt.datetime(2026, 11, 3, 17, 30), None,
        dt.datetime(2026, 11, 30, 23, 59),
    ]  # fmt: skip
    assert [r[5].value for r in rows[1:5]] == [
        dt.datetime(2026, 11, 3), dt.datetime(2026, 11, 4), None, dt.datetime(2026, 11, 30)
    ]  # fmt: skip
    assert [r[6].value for r in rows[1:5]] == [0.5, 1.0, None, 0.0]
    formats = [c.number_format for c in first[1:]]
    assert formats == [excel.WH, excel.WH, excel.YUAN, excel.TIME, excel.DATE, excel.RATE]


def test_the_header_is_bold_and_frozen_and_the_totals_are_exact_sums() -> None:
    sheet, rows = read_back()
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:G5"
    assert all(c.font.b for c in rows[0]) and not any(c.font.b for c in rows[1])
    totals = rows[-1]
    assert len(rows) == 1 + len(ROWS) + 1
    assert [c.value for c in totals[:3]] == ["合计", 4, 1_751]
    assert Decimal(str(totals[3].value)) == Decimal("122.54")
    assert totals[3].number_format == excel.YUAN and all(c.font.b for c in totals[:4])
    assert [c.value for c in totals[4:]] == [None, None, None]
